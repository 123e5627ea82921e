"""The report streams (declared with a `Report`): Klaviyo's POST reporting API, flattened to records.

Klaviyo allows the reporting endpoints 1 request/s, 2/min and **225 a day** per endpoint and account,
so the report streams of a sync plan their requests together before sending any (`report_plan.py`:
which timeframes, and the budget rule), and the plan's request count is logged first.

- **Requests.** Each planned window is asked once per conversion metric: `metric_ids` from the
  config, else every metric named "Placed Order" (one GET /api/metrics chain, shared by the streams)
  — never all metrics. A report without a conversion metric asks each window once.
- **Budget.** One sync spends at most `REQUESTS_PER_SYNC` (one day's quota, 225) on all its report
  streams together. A stream whose windows do not all fit reads its oldest windows, checkpoints
  after each, and ends INCOMPLETE with a transient_error naming where it reached: the next sync
  resumes there. A stream is never COMPLETE with a window missing.
- **Records.** `{date, <groupings>, conversion_metric_id, statistics{...}}`, statistics being every
  name the stream's schema declares (the request's whole `statistics` enum). A series record's `date`
  is its day; a values record's `date` is where the plan ends (the start of today): its statistics
  are Klaviyo's totals as read then, and a later read replaces them (same primary key).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from .chains import Partition, bucket_of, build_chain
from .checkpoints import read_upper
from .config import Config
from .contracts import Client, JSONObject, Record
from .datetimes import format_datetime, parse_datetime
from .errors import ConfigError, SourceError, TransientError
from .pages import chain_pages, parse_page
from .ranges import Range, Spans
from .report_plan import DAILY_BUDGET, ReportPlan, plan_reports
from .schemas import load_schema
from .streams import CONVERSION_METRICS_STREAM, STREAMS_BY_NAME, Stream

REQUESTS_PER_SYNC = DAILY_BUDGET
DEFAULT_CONVERSION_METRIC = "Placed Order"
T = TypeVar("T")


class WindowCounts(Protocol):
    windows_total: int
    windows_done: int


class ReportRead(Protocol):
    """What a report stream needs of the engine's read of it (`engine.StreamRead`)."""

    name: str
    stream: Stream
    incremental: bool

    @property
    def progress(self) -> WindowCounts: ...
    @property
    def config(self) -> Config: ...
    @property
    def client(self) -> Client: ...
    def now(self) -> datetime: ...
    def saved(self, partition: Partition) -> tuple[datetime | None, list[Range]]: ...
    def report_positions(self) -> dict[Stream, datetime | None]: ...
    def track(self, spans: Spans) -> object: ...
    def emit(self, records: list[Record]) -> None: ...
    def checkpoint(self, *, force: bool = False) -> None: ...
    def log(self, level: str, message: str) -> None: ...
    async def once(self, key: str, compute: Callable[[], Awaitable[T]]) -> T: ...


def request_body(stream: Stream, metric_id: str | None, low: datetime, high: datetime) -> JSONObject:
    report = stream.report
    assert report is not None
    attributes: JSONObject = {
        "statistics": statistics_of(stream),
        "timeframe": {"start": format_datetime(low), "end": format_datetime(high)},
    }
    if metric_id is not None:
        attributes["conversion_metric_id"] = metric_id
    if report.group_by:
        attributes["group_by"] = list(report.groupings)
    if report.interval:
        attributes["interval"] = report.interval
    return {"data": {"type": report.type, "attributes": attributes}}


def statistics_of(stream: Stream) -> list[str]:
    """Every statistic the stream's schema declares (the request's `statistics` enum)."""
    return sorted(load_schema(stream.schema_name)["properties"]["statistics"]["properties"])


def _record(groupings: JSONObject, metric_id: str | None, date: str, statistics: JSONObject) -> Record:
    record: Record = {"date": date, **groupings}
    if metric_id is not None:
        record["conversion_metric_id"] = metric_id
    record["statistics"] = statistics
    return record


def records_of(stream: Stream, page: JSONObject, metric_id: str | None, low: datetime, high: datetime,
               as_of: datetime) -> list[Record]:
    """The records of one report answer: one per grouping (values, dated `as_of`) or per grouping and
    day in `[low, high)` (series)."""
    report = stream.report
    assert report is not None
    data = page.get("data")
    attributes = data.get("attributes") if isinstance(data, dict) else None
    results = attributes.get("results") if isinstance(attributes, dict) else None
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise SourceError(f"Klaviyo answered {stream.path} without data.attributes.results")
    if report.interval is None:
        date = format_datetime(as_of)
        return [_record(result.get("groupings") or {}, metric_id, date, dict(result.get("statistics") or {}))
                for result in results]
    date_times = attributes.get("date_times")  # type: ignore[union-attr]
    if not isinstance(date_times, list):
        raise SourceError(f"Klaviyo answered {stream.path} without data.attributes.date_times")
    dates = []
    for value in date_times:
        try:
            dates.append(parse_datetime(value))
        except ValueError:
            raise SourceError(f"Klaviyo answered {stream.path} with a date_times entry {value!r}") from None
    records: list[Record] = []
    for result in results:
        groupings = result.get("groupings") or {}
        statistics = result.get("statistics") or {}
        for index, moment in enumerate(dates):
            if not low <= moment < high:
                continue
            values = {name: (series[index] if isinstance(series, list) and index < len(series) else None)
                      for name, series in statistics.items()}
            records.append(_record(groupings, metric_id, format_datetime(moment), values))
    return records


async def conversion_metrics(read: ReportRead) -> tuple[str, ...]:
    """`metric_ids` from the config, else the account's "Placed Order" metrics (found once per read)."""
    if read.config.metric_ids:
        return tuple(read.config.metric_ids)

    async def placed_order_metrics() -> tuple[str, ...]:
        metrics = STREAMS_BY_NAME[CONVERSION_METRICS_STREAM]
        found: set[str] = set()
        async for data, _page in chain_pages(read.client, build_chain(metrics, read.config)):
            found |= {record["id"] for record in data
                      if (record.get("attributes") or {}).get("name") == DEFAULT_CONVERSION_METRIC}
        return tuple(sorted(found))

    metrics = await read.once("conversion metrics", placed_order_metrics)
    if not metrics:
        raise ConfigError(f"{read.name}: the account has no {DEFAULT_CONVERSION_METRIC!r} metric to report "
                          "conversions by; set metric_ids to the conversion metrics to report")
    return metrics


@dataclass(frozen=True)
class SharedPlan:
    """The plan of every report stream of a read, with the conversion metrics it was made for (or why
    they could not be found: only the streams that need them fail)."""

    plan: ReportPlan
    metrics: tuple[str, ...]
    metrics_error: SourceError | None = None


async def shared_plan(read: ReportRead) -> SharedPlan:
    """Plan every report stream of the read once, and log the plan's request count before any request."""

    async def compute() -> SharedPlan:
        positions = read.report_positions()
        lookback = timedelta(days=read.config.campaign_lookback_days)
        upper = read_upper(read.now())
        # The metrics are looked up only when a stream that needs them has something to read.
        draft = plan_reports(positions, read.config.start_date, upper, conversion_metrics=1,
                             lookback=lookback)
        metrics: tuple[str, ...] = ()
        error: SourceError | None = None
        if any(stream.report and stream.report.conversion_metric and draft.streams[stream.name].windows
               for stream in positions):
            try:
                metrics = await conversion_metrics(read)
            except SourceError as exc:
                error = exc
        plan = plan_reports(positions, read.config.start_date, upper, conversion_metrics=len(metrics),
                            lookback=lookback, budget=REQUESTS_PER_SYNC)
        read.log("INFO", plan.describe())
        return SharedPlan(plan, metrics, error)

    return await read.once("report plan", compute)


async def read_report(read: ReportRead) -> None:
    """Read one report stream as the shared plan says (see the module docstring)."""
    stream = read.stream
    report = stream.report
    assert report is not None
    shared = await shared_plan(read)
    mine = shared.plan.streams[read.name]
    windows = list(mine.windows)
    end = windows[-1][1] if windows else mine.start
    spans = Spans([(mine.start, end)], upper=end)
    read.track(spans)
    span = spans.take()
    if windows:
        if report.conversion_metric and shared.metrics_error is not None:
            raise shared.metrics_error
        metrics: tuple[str | None, ...] = shared.metrics if report.conversion_metric else (None,)
        fit = shared.plan.allowed[read.name]
        read.progress.windows_total = fit
        bucket = bucket_of(stream, read.config)
        for low, high in windows[:fit]:
            emitted = 0
            for metric_id in metrics:
                body = request_body(stream, metric_id, low, high)
                page = await read.client.post(stream.path, body, bucket=bucket, tier=stream.tier,
                                              parse=parse_page)
                records = records_of(stream, page, metric_id, low, high, as_of=end)
                read.emit(records)
                emitted += len(records)
            assert span is not None  # there are windows, so the range is not empty
            spans.page(span, records=emitted, first=None, last=high)  # every metric's window is in
            read.progress.windows_done += 1
            read.checkpoint()
        if fit < len(windows):
            read_up_to = format_datetime(spans.state()[0])
            raise TransientError(
                f"{read.name} needs {mine.requests} report requests ({len(windows)} windows x "
                f"{len(metrics)} conversion metrics); with the other report streams that is more than "
                f"the {shared.plan.budget} one sync may spend of Klaviyo's reporting budget "
                f"({DAILY_BUDGET} a day), so it read up to {read_up_to}; the next sync resumes there",
                internal_message=f"plan {shared.plan.total} requests, budget {shared.plan.budget} per sync",
            )
    read.checkpoint(force=True)
