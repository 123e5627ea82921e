"""The report streams (`kind="report"`): Klaviyo's POST reporting API, flattened to one record per day.

Klaviyo allows the reporting endpoints 1 request/s, 2/min and **225 a day** per endpoint and account,
so a report stream plans its requests before sending any:

- **Days.** A record is one whole UTC day, read once the day is over: the plan covers the days from
  the saved cursor (a state `{"date": D}` means every day before D was emitted) or else `start_date`
  (the first whole day at or after it) or else the declaration's `default_days`, up to the start of
  today. The state never passes now, and a sync on a day already read sends no report request.
- **Requests.** `flow_series_reports` asks a daily series of up to 60 days per request (the API's
  maximum for `interval: daily`); `campaign_values_reports` has no series, so it asks one day per
  request. Each window is asked once per conversion metric: `metric_ids` from the config, else every
  metric named "Placed Order" (one GET /api/metrics chain, shared by both streams) — never all metrics.
  `plan_windows(...)` x metrics is the exact number of report requests of a sync.
- **Budget.** One sync spends at most `REQUESTS_PER_SYNC` requests per report stream (less than half of
  the endpoint's 225 a day, leaving room for a retried or second sync that day and other integrations).
  A plan over it reads the oldest windows that fit, checkpoints after each, and ends the stream
  INCOMPLETE with a transient_error naming the day it reached: the next sync resumes there. A stream
  is never COMPLETE with days missing.
- **Records.** `{date, <group_by groupings>, conversion_metric_id, statistics{...}}`, statistics being
  every name the stream's schema declares (the request's whole `statistics` enum).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from .chains import Partition, bucket_of, build_chain
from .checkpoints import read_upper
from .config import Config
from .contracts import Client, JSONObject, Record
from .datetimes import format_datetime, parse_datetime
from .errors import ConfigError, SourceError, TransientError
from .pages import chain_pages, parse_page
from .ranges import Range, Spans
from .schemas import load_schema
from .streams import STREAMS_BY_NAME, TIERS, Report, Stream

REQUESTS_PER_SYNC = 100
DEFAULT_CONVERSION_METRIC = "Placed Order"
ONE_DAY = timedelta(days=1)

Window = tuple[datetime, datetime]
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
    def track(self, spans: Spans) -> object: ...
    def emit(self, records: list[Record]) -> None: ...
    def checkpoint(self, *, force: bool = False) -> None: ...
    def log(self, level: str, message: str) -> None: ...
    async def once(self, key: str, compute: Callable[[], Awaitable[T]]) -> T: ...


def start_of_day(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def first_whole_day(moment: datetime) -> datetime:
    day = start_of_day(moment)
    return day if day == moment else day + ONE_DAY


def plan_windows(report: Report, saved: datetime | None, start_date: datetime | None,
                 now: datetime) -> tuple[datetime, list[Window]]:
    """(first day, the request windows `[low, high)` up to the start of today, oldest first)."""
    upper = start_of_day(now)
    candidates = []
    if saved is not None:
        candidates.append(start_of_day(saved))  # a mid-day legacy cursor: that day is read again
    if start_date is not None:
        candidates.append(first_whole_day(start_date))
    start = max(candidates) if candidates else upper - report.default_days * ONE_DAY
    start = min(start, upper)  # a state in the future is pulled back to today
    step = report.days_per_request * ONE_DAY
    windows: list[Window] = []
    low = start
    while low < upper:
        windows.append((low, min(low + step, upper)))
        low += step
    return start, windows


def request_body(stream: Stream, metric_id: str, low: datetime, high: datetime) -> JSONObject:
    report = stream.report
    assert report is not None
    attributes: JSONObject = {
        "statistics": statistics_of(stream),
        "timeframe": {"start": format_datetime(low), "end": format_datetime(high)},
        "conversion_metric_id": metric_id,
        "group_by": list(report.group_by),
    }
    if report.interval:
        attributes["interval"] = report.interval
    return {"data": {"type": report.type, "attributes": attributes}}


def statistics_of(stream: Stream) -> list[str]:
    """Every statistic the stream's schema declares (the request's `statistics` enum)."""
    return sorted(load_schema(stream.schema_name)["properties"]["statistics"]["properties"])


def records_of(
    stream: Stream, page: JSONObject, metric_id: str, low: datetime, high: datetime
) -> list[Record]:
    """The records of one report answer: one per grouping (values) or per grouping and date (series)."""
    report = stream.report
    assert report is not None
    data = page.get("data")
    attributes = data.get("attributes") if isinstance(data, dict) else None
    results = attributes.get("results") if isinstance(attributes, dict) else None
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise SourceError(f"Klaviyo answered {stream.path} without data.attributes.results")
    records: list[Record] = []
    if report.interval is None:
        date = format_datetime(low)
        for result in results:
            records.append(
                {
                    "date": date,
                    **(result.get("groupings") or {}),
                    "conversion_metric_id": metric_id,
                    "statistics": dict(result.get("statistics") or {}),
                }
            )
        return records
    date_times = attributes.get("date_times")  # type: ignore[union-attr]
    if not isinstance(date_times, list):
        raise SourceError(f"Klaviyo answered {stream.path} without data.attributes.date_times")
    dates = []
    for value in date_times:
        try:
            dates.append(parse_datetime(value))
        except ValueError:
            raise SourceError(f"Klaviyo answered {stream.path} with a date_times entry {value!r}") from None
    for result in results:
        groupings = result.get("groupings") or {}
        statistics = result.get("statistics") or {}
        for index, moment in enumerate(dates):
            if not low <= moment < high:
                continue
            values = {name: (series[index] if isinstance(series, list) and index < len(series) else None)
                      for name, series in statistics.items()}
            records.append({"date": format_datetime(moment), **groupings, "conversion_metric_id": metric_id,
                            "statistics": values})
    return records


async def conversion_metrics(read: ReportRead) -> tuple[str, ...]:
    """`metric_ids` from the config, else the account's "Placed Order" metrics (found once per read)."""
    if read.config.metric_ids:
        return tuple(read.config.metric_ids)

    async def placed_order_metrics() -> tuple[str, ...]:
        metrics = STREAMS_BY_NAME["metrics"]
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


async def read_report(read: ReportRead) -> None:
    """Read one report stream as planned (see the module docstring)."""
    stream = read.stream
    assert stream.report is not None
    saved = read.saved({})[0] if read.incremental else None
    start, windows = plan_windows(stream.report, saved, read.config.start_date, read_upper(read.now()))
    end = windows[-1][1] if windows else start
    spans = Spans([(start, end)], upper=end)
    read.track(spans)
    span = spans.take()
    if windows:
        metrics = await conversion_metrics(read)
        allowed = min(REQUESTS_PER_SYNC, TIERS[stream.tier].daily or math.inf)
        fit = int(allowed // len(metrics))
        needed = len(windows) * len(metrics)
        read.log(
            "INFO",
            f"{read.name}: {needed} report requests planned ({len(windows)} windows of up "
            f"to {stream.report.days_per_request} days x {len(metrics)} conversion metrics)",
        )
        read.progress.windows_total = min(len(windows), fit)
        bucket = bucket_of(stream, read.config)
        for low, high in windows[:fit]:
            emitted = 0
            for metric_id in metrics:
                body = request_body(stream, metric_id, low, high)
                page = await read.client.post(stream.path, body, bucket=bucket, tier=stream.tier,
                                              parse=parse_page)
                records = records_of(stream, page, metric_id, low, high)
                read.emit(records)
                emitted += len(records)
            assert span is not None  # there are windows, so the range is not empty
            spans.page(span, records=emitted, first=None, last=high)  # every metric's day(s) are in
            read.progress.windows_done += 1
            read.checkpoint()
        if fit < len(windows):
            read_up_to = format_datetime(spans.state()[0])
            raise TransientError(
                f"{read.name} needs {needed} report requests ({len(windows)} windows x {len(metrics)} "
                f"conversion metrics), more than the {int(allowed)} one sync may spend of Klaviyo's "
                f"reporting budget (225 a day); read the days before {read_up_to}, the next sync resumes "
                "there",
                internal_message=f"plan {needed} requests, budget {int(allowed)} per sync",
            )
    read.checkpoint(force=True)
