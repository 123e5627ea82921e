"""The end-of-sync summary: one row per stream, totals, resets, and why a stream is incomplete."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rich.console import Console
from rich.table import Table

from source_klaviyo.contracts import JSONObject
from source_klaviyo.sync.plan import StreamPlan
from source_klaviyo.sync.sink import StreamTally


@dataclass
class StreamSummary:
    stream: str
    status: str
    mode: str
    records: int
    new: int
    updated: int
    unchanged: int
    removed: int
    rows: int  # rows in the stream's (live) table after the sync
    reset_reason: str | None
    errors: list[str]
    schema_note: str | None = None  # the schema changed without breaking: continued, no reset


@dataclass
class SyncSummary:
    sync_id: str
    db_path: str
    seconds: float
    requests: int
    throttled: int
    retries: int
    rate_limit_wait_seconds: float
    streams: list[StreamSummary] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # not tied to one stream (e.g. a refused key)
    views: list[str] = field(default_factory=list)  # created (views.py): those whose tables exist
    converted: list[str] = field(default_factory=list)  # tables converted in place from an older layout
    warnings: list[str] = field(default_factory=list)  # what went wrong without failing the sync
    # Peak RSS of this process and of the DuckDB writer process (`writer.py`), for bench/: the sum
    # bounds the sync's (`ru_maxrss` of a process that waited for a child is the larger of the two).
    peak_rss_mb: float | None = None
    writer_peak_rss_mb: float | None = None

    @property
    def incomplete(self) -> list[StreamSummary]:
        return [s for s in self.streams if s.status != "COMPLETE"]

    @property
    def status(self) -> str:
        return "SUCCEEDED" if not self.incomplete and not self.errors else "INCOMPLETE"

    def to_json(self) -> JSONObject:
        return asdict(self) | {"status": self.status}


def stream_summary(plan: StreamPlan, tally: StreamTally, rows: int) -> StreamSummary:
    counts = tally.counts
    status = tally.status if tally.status in ("COMPLETE", "INCOMPLETE") else "INCOMPLETE"
    return StreamSummary(
        stream=plan.name, status=status, mode=plan.mode, records=tally.records, new=counts.new,
        updated=counts.updated, unchanged=counts.unchanged, removed=counts.removed, rows=rows,
        reset_reason=plan.reset_reason, errors=list(tally.errors), schema_note=plan.schema_note,
    )


def render(summary: SyncSummary, console: Console) -> None:
    table = Table(title=f"Sync {summary.sync_id} into {summary.db_path}", title_justify="left")
    for header in ("stream", "status", "mode", "records", "new", "updated", "unchanged", "removed", "rows"):
        table.add_column(header, justify="left" if header in ("stream", "status", "mode") else "right")
    for s in summary.streams:
        style = "" if s.status == "COMPLETE" else "red"
        table.add_row(s.stream, s.status.lower(), s.mode, f"{s.records:,}", f"{s.new:,}", f"{s.updated:,}",
                      f"{s.unchanged:,}", f"{s.removed:,}", f"{s.rows:,}", style=style)
    console.print(table)
    console.print(
        f"{summary.seconds:,.1f}s, {summary.requests:,} requests, {summary.throttled} throttled (429), "
        f"{summary.retries} retries, {summary.rate_limit_wait_seconds:,.1f}s waiting on rate limits",
        markup=False,
    )
    for s in summary.streams:
        if s.reset_reason:
            outcome = "replaced" if s.status == "COMPLETE" else "kept, the replacement resumes next run"
            # soft_wrap: one line however long the field-level reason, so that it can be grepped
            console.print(
                f"reset {s.stream}: {s.reset_reason} (old table {outcome})", markup=False, soft_wrap=True
            )
        if s.schema_note:
            console.print(f"{s.stream}: {s.schema_note}", markup=False, soft_wrap=True)
    if summary.converted:
        console.print(f"converted to typed columns in place: {', '.join(summary.converted)}", markup=False,
                      soft_wrap=True)
    if summary.views:
        console.print(f"views: {', '.join(summary.views)} (docs/local-sync.md)", markup=False, soft_wrap=True)
    for message in summary.warnings:
        console.print(f"warning: {message}", markup=False, soft_wrap=True)
    for message in summary.errors:
        console.print(f"error: {message}", markup=False)
    for s in summary.incomplete:
        why = "; ".join(s.errors) or "the read did not complete"
        console.print(f"INCOMPLETE {s.stream}: {why}", style="red", markup=False)
    console.print(
        f"status: {summary.status}", style="bold green" if summary.status == "SUCCEEDED" else "bold red"
    )
