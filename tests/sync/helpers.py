"""Helpers of the sync suite: run a sync in-process against an emulator, read a DuckDB file back."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import duckdb

from source_klaviyo.checkpoints import UPPER_MARGIN, read_upper
from source_klaviyo.config import parse_config
from source_klaviyo.contracts import JSONObject
from source_klaviyo.datetimes import ONE_SECOND, parse_datetime, utc_now
from source_klaviyo.http import KlaviyoClient
from source_klaviyo.sync.demo import scaled_tiers
from source_klaviyo.sync.duckdb_store import BatchCounts, BatchFile, Store, Target
from source_klaviyo.sync.run import SyncOptions, sync
from source_klaviyo.sync.summary import SyncSummary
from tests.truth import TRUTHS


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


Key = Any  # a record's id, or the tuple of its composite key (memberships, children)


def _key(values: tuple[Any, ...]) -> Key:
    return values[0] if len(values) == 1 else values


def truth(emulator: Any, stream: str, read_at: datetime) -> dict[Key, datetime | None]:
    """key -> cursor of what a sync started at `read_at` must land (tests/truth.py says which rows).

    Records stamped in the future (the emulator plants a few) are left for a later sync: the engine
    never moves a cursor past now.
    """
    expected = TRUTHS[stream]
    rows = {_key(expected.key_of(row)): parse_datetime(row[expected.cursor])
            if expected.cursor and row.get(expected.cursor) else None
            for row in expected.rows(emulator)}
    return {key: value for key, value in rows.items() if value is None or value < read_at}


def landed(db: Path, stream: str) -> dict[Key, datetime | None]:
    """key -> cursor of the rows of the stream's table, which must hold each key once."""
    expected = TRUTHS[stream]
    columns = ", ".join([*(f'"{column}"' for column in expected.key), expected.cursor or "NULL"])
    rows = table_rows(db, stream, columns)
    keys = [_key(row[:-1]) for row in rows]
    assert len(keys) == len(set(keys)), f"duplicates in {stream}"
    return dict(zip(keys, (row[-1] for row in rows), strict=True))


# -- a DuckDB writer process that fails (tests/sync/test_writer_process.py) ---------------------------
# The writer process unpickles its store's opener by reference, so these live in an importable module;
# they are told what to do through the environment, which the writer process inherits.
FAIL_STREAM = "SOURCE_KLAVIYO_TEST_FAIL_STREAM"  # the stream whose second load fails ...
FAIL_HOW = "SOURCE_KLAVIYO_TEST_FAIL_HOW"  # ... by "raise" (an IOException) or "exit" (the process ends)


class FailingStore(Store):
    """A store whose second load of the stream named in FAIL_STREAM fails as FAIL_HOW says."""

    loads = 0

    def load_batch(self, target: Target, batch: BatchFile, state: JSONObject | None) -> BatchCounts:
        if target.stream == os.environ.get(FAIL_STREAM):
            FailingStore.loads += 1
            if FailingStore.loads == 2:
                if os.environ.get(FAIL_HOW) == "exit":
                    os._exit(3)
                raise duckdb.IOException("disk full")
        return super().load_batch(target, batch, state)
