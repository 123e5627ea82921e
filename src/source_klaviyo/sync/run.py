"""One sync: plan every stream from the DuckDB file, run the engine in-process into the sink, summarise."""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

from rich.console import Console

from source_klaviyo.catalog import ConfiguredStream
from source_klaviyo.datetimes import utc_now
from source_klaviyo.engine import Reader
from source_klaviyo.errors import ConfigError
from source_klaviyo.streams import STREAMS, STREAMS_BY_NAME, Stream
from source_klaviyo.sync.duckdb_store import ROW_GROUP_SIZE, Store
from source_klaviyo.sync.migrate import migrate
from source_klaviyo.sync.plan import StreamPlan, plan_stream
from source_klaviyo.sync.progress import Progress
from source_klaviyo.sync.sink import DuckDBSink
from source_klaviyo.sync.summary import SyncSummary, render, stream_summary
from source_klaviyo.sync.views import create_views
from source_klaviyo.sync.writer import ProcessWriter, own_peak_rss_mb

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from source_klaviyo.config import Config
    from source_klaviyo.contracts import Client

T = TypeVar("T")


def connector_version() -> str:
    try:
        return metadata.version("source-klaviyo")
    except metadata.PackageNotFoundError:
        return "3.0.0"


def new_sync_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def select_streams(names: list[str] | None) -> list[Stream]:
    if not names:
        return list(STREAMS)
    unknown = [name for name in names if name not in STREAMS_BY_NAME]
    if unknown:
        raise ConfigError(
            f"unknown stream(s) {', '.join(unknown)}; the streams are: {', '.join(STREAMS_BY_NAME)}"
        )
    return [STREAMS_BY_NAME[name] for name in dict.fromkeys(names)]


@dataclass
class SyncOptions:
    db_path: Path
    streams: list[str] | None = None
    full_refresh: bool = False
    live_progress: bool = False  # rich redraws in place; else plain lines
    quiet: bool = False  # neither progress nor summary
    checkpoint_log: Path | None = None  # a line per committed checkpoint (tests kill on it)
    flush_records: int = ROW_GROUP_SIZE
    flush_seconds: float = 1.0
    command: str = "sync"
    keep_raw: bool = False  # `_raw` for every record (else only where the typed columns miss something)
    clock: Callable[[], datetime] | None = (
        None  # the engine's "now" (tests read ahead of it instead of sleeping)
    )


async def sync(config: Config, options: SyncOptions, *, client: Client | None = None,
               stderr: TextIO | None = None) -> SyncSummary:
    """Sync the selected streams into `options.db_path`; the returned summary says what happened."""
    started = time.monotonic()
    streams = select_streams(options.streams)
    open_store = partial(Store, options.db_path, sync_id=new_sync_id(), connector_version=connector_version(),
                         keep_raw=options.keep_raw)
    writer = ProcessWriter()  # starts now: its imports overlap with the planning
    store = _open_or_stop(open_store, writer)
    sink: DuckDBSink | None = None
    out = stderr or sys.stderr
    # Off a terminal rich assumes 80 columns, which folds the summary table into a tall mess.
    console = Console(file=out, highlight=False, width=None if out.isatty() else 132)
    try:
        store.sync_started(options.command)
        migration = migrate(store, (lambda _line: None) if options.quiet else
                            (lambda line: console.print(line, markup=False, soft_wrap=True)))
        plans = [plan_stream(store, stream, full_refresh=options.full_refresh) for stream in streams]
        targets = {plan.name: store.open_target(plan.layout, plan.slot, fresh=plan.fresh) for plan in plans}
        configured = [
            ConfiguredStream(plan.stream, "incremental" if plan.stream.incremental else "full_refresh")
            for plan in plans
        ]
        states = {plan.name: plan.state for plan in plans if plan.state}
        # The writer owns the file while the read goes on; this process opens it again after.
        store.close()
        writer.start(open_store, targets, store.memory_mb)
        sink = DuckDBSink(
            writer, targets, flush_records=options.flush_records, flush_seconds=options.flush_seconds,
            on_checkpoint=_checkpoint_logger(options.checkpoint_log),
        )
        reader = Reader(config, configured, states, sink, client=client, clock=options.clock or utc_now)
        progress = Progress(sink.tallies, reader, live=options.live_progress and not options.quiet,
                            stream=console.file)
        sink.on_log = progress.log
        if not options.quiet:
            progress.start()
        try:
            await _with_ticks(reader.run(), None if options.quiet else progress.refresh)
        finally:
            if not options.quiet:
                progress.stop()
        sink.finish()
        store = open_store()
        tables = set(store.tables_starting_with(""))  # one query, not one per view's table
        views, view_failures = create_views(store.con, tables.__contains__)
        summary = _summarise(store, plans, sink, reader, time.monotonic() - started, str(options.db_path))
        summary.views, summary.warnings = views, view_failures
        summary.converted = migration.converted
        summary.peak_rss_mb, summary.writer_peak_rss_mb = own_peak_rss_mb(), writer.peak_rss_mb
        if migration.failure:
            summary.warnings.append(migration.failure)
        store.sync_finished(summary.status, summary.to_json())
    finally:
        if sink is not None:
            sink.close()  # no write may still be running on the file being closed
        writer.close()
        store.close()
    if not options.quiet:
        render(summary, console)
    return summary


async def _with_ticks(work: Awaitable[T], tick: Callable[[], None] | None) -> T:
    task = asyncio.ensure_future(work)
    while tick is not None and not task.done():
        await asyncio.wait([task], timeout=0.5)
        tick()
    return await task


def _open_or_stop(open_store: Callable[[], Store], writer: ProcessWriter) -> Store:
    try:
        return open_store()
    except BaseException:
        writer.close()
        raise


def _checkpoint_logger(path: Path | None) -> Callable[[str, int], None] | None:
    if path is None:
        return None
    log = path.open("a", buffering=1, encoding="utf-8")  # line-buffered: a reader sees each commit

    def write(stream: str, checkpoints: int) -> None:
        log.write(f"{stream}\t{checkpoints}\n")

    return write


def _summarise(store: Store, plans: list[StreamPlan], sink: DuckDBSink, reader: Reader, seconds: float,
               db_path: str) -> SyncSummary:
    stats = reader.stats
    summary = SyncSummary(
        sync_id=store.sync_id,
        db_path=db_path,
        seconds=seconds,
        requests=getattr(stats, "requests", 0),
        throttled=getattr(stats, "throttled", 0),
        retries=getattr(stats, "retries", 0),
        rate_limit_wait_seconds=getattr(stats, "rate_limit_wait_seconds", 0.0),
        errors=list(sink.global_errors),
    )
    for plan in plans:
        rows = store.count(plan.name) if store.table_exists(plan.name) else 0
        summary.streams.append(stream_summary(plan, sink.tallies[plan.name], rows))
    return summary
