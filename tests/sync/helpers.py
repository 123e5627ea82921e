"""Helpers of the sync suite: run a sync in-process against an emulator, read a DuckDB file back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import duckdb

from source_klaviyo.checkpoints import UPPER_MARGIN, read_upper
from source_klaviyo.config import parse_config
from source_klaviyo.datetimes import ONE_SECOND, parse_datetime, utc_now
from source_klaviyo.http import KlaviyoClient
from source_klaviyo.sync.demo import scaled_tiers
from source_klaviyo.sync.run import SyncOptions, sync
from source_klaviyo.sync.summary import SyncSummary

# stream -> the emulator's truth resource and the cursor it reports
TRUTH: dict[str, tuple[str, str | None]] = {
    "campaigns": ("campaigns", "updated_at"),
    "email_templates": ("templates", "updated"),
    "events": ("events", "datetime"),
    "flows": ("flows", "updated"),
    "lists": ("lists", "updated"),
    "metrics": ("metrics", "updated"),
    "profiles": ("profiles", "updated"),
    "segments": ("segments", "updated"),
    "tags": ("tags", None),
    "coupons": ("coupons", None),
}


def config_for(url: str) -> Any:
    config, _ = parse_config({"api_key": "pk_emulator", "base_url": url})
    return config


def run_sync(url: str, db: Path, streams: list[str] | None = None, *, stderr: TextIO | None = None,
             **options: Any) -> SyncSummary:
    """An in-process sync, quiet unless `stderr` is given (then it gets the progress lines and summary).

    The client's tiers are scaled up (the emulator runs without limits).
    """

    async def go() -> SyncSummary:
        config = config_for(url)
        async with KlaviyoClient(config, tiers=scaled_tiers(100)) as client:
            return await sync(
                config,
                SyncOptions(db_path=db, streams=streams, quiet=stderr is None, **options),
                client=client,
                stderr=stderr,
            )

    return asyncio.run(go())


def fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def upper_of(clock: Callable[[], datetime]) -> datetime:
    """The engine's exclusive upper bound for a read at `clock()`: what truth must be cut at."""
    return read_upper(clock())


def ahead() -> Callable[[], datetime]:
    # The engine reads up to now - UPPER_MARGIN: a clock that far ahead covers mutations made just
    # now, without sleeping (mutations are stamped with the real, second-granular now).
    return fixed(utc_now() + UPPER_MARGIN + 2 * ONE_SECOND)


def table_rows(db: Path, table: str, columns: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f'SELECT {columns} FROM "{table}" ORDER BY ALL').fetchall()


def truth(emulator: Any, stream: str, read_at: datetime) -> dict[str, datetime | None]:
    """id -> cursor of what a sync started at `read_at` must land.

    Records stamped in the future (the emulator plants a few) are left for a later sync: the engine
    never moves a cursor past now.
    """
    resource, cursor = TRUTH[stream]
    rows = {row["id"]: parse_datetime(row[cursor]) if cursor and row.get(cursor) else None
            for row in emulator.truth(resource)}
    return {key: value for key, value in rows.items() if value is None or value < read_at}
