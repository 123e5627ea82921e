"""The report streams: the records are what the emulator computes, each once; the request count is the
plan the declaration implies; incremental reads ask only what changed; the budget stops a sync cleanly.

Expectations derive from each stream's `Report` declaration and the emulator's data, never from the
stream's name: a series is compared day by day, a values report by send date per campaign (asked
one day at a time here, in year-long windows by the connector: a value must not depend on how a
reader windows), a trailing values report over its whole year.
"""

from __future__ import annotations

import itertools
import math
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klaviyo_emulator import reports as emulated
from klaviyo_emulator.endpoints import BY_ROUTE
from klaviyo_emulator.runner import EmulatorOptions, run_emulator_in_thread
from source_klaviyo import reports
from source_klaviyo.datetimes import format_datetime, utc_now
from source_klaviyo.report_plan import (
    DAILY_BUDGET,
    StreamPlan,
    allot,
    first_whole_day,
    plan_reports,
    plan_windows,
    start_of_day,
)
from source_klaviyo.schemas import load_schema
from source_klaviyo.streams import CONVERSION_METRICS_STREAM, STREAMS_BY_NAME, Report, Stream
from tests.connector.helpers import InstantClock, read_in_process, record_validator
from tests.truth import REPORT_STREAMS

DAY = timedelta(days=1)
REPORTS = [stream.name for stream in REPORT_STREAMS]
METRICS_PATH = STREAMS_BY_NAME[CONVERSION_METRICS_STREAM].path  # where the "Placed Order" metrics are found
LONG_AGO = datetime(2010, 1, 1, tzinfo=UTC)  # before any report's history: every stream reads its most
DEFAULT_LOOKBACK = timedelta(days=30)  # the config's default campaign_lookback_days


def today() -> datetime:
    return utc_now().replace(hour=0, minute=0, second=0, microsecond=0)


def placed_order(emulator) -> list[str]:
    table = emulator.handle.world.table("metrics")
    return sorted(row["id"] for row in table.rows if row["attributes"]["name"] == "Placed Order")


def report_of(stream: str) -> Report:
    report = STREAMS_BY_NAME[stream].report
    assert report is not None
    return report


def metrics_of(stream: str, metrics: list[str]) -> list[str | None]:
    """The conversion metrics a report is asked per (one request per window for a report without)."""
    return list(metrics) if report_of(stream).conversion_metric else [None]


def first_read_start(stream: str, start_date: datetime, upper: datetime) -> datetime:
    """Where a first read of `stream` with `start_date` starts, by its declaration: whole days for a
    series, at most `history_days` back; a trailing values report a year back at most; never before
    the data the API has (`earliest`)."""
    report = report_of(stream)
    start = first_whole_day(start_date) if report.interval else start_date
    if report.history_days is not None:
        start = max(start, upper - report.history_days * DAY)
    if report.timeframes == "trailing":
        start = max(start, upper - report.days_per_request * DAY)
    if report.earliest is not None:
        start = max(start, report.earliest)
    return start


def windows_between(stream: str, start: datetime, end: datetime) -> int:
    """The requests per conversion metric of reading `[start, end)`: one per `days_per_request` days."""
    return math.ceil((end - start) / (report_of(stream).days_per_request * DAY))


def ask(emulator, stream: str, metric: str | None, low: datetime, high: datetime) -> list[dict]:
    """The emulator's own report builder's results for one timeframe, as the spec's request asks it."""
    report = report_of(stream)
    statistics = sorted(load_schema(stream)["properties"]["statistics"]["properties"])
    attributes: dict = {"statistics": statistics,
                        "timeframe": {"start": low.isoformat(), "end": high.isoformat()}}
    if metric is not None:
        attributes["conversion_metric_id"] = metric
    if report.group_by:
        attributes["group_by"] = list(report.groupings)
    if report.interval:
        attributes["interval"] = report.interval
    build = emulated.BUILDERS[BY_ROUTE[STREAMS_BY_NAME[stream].path].operation]
    body = orjson.dumps({"data": {"type": report.type, "attributes": attributes}})
    answer = build(emulator.handle.world, body)
    return answer["data"]["attributes"]["results"]


def record(groupings: dict, metric: str | None, date: datetime, statistics: dict) -> dict:
    out = {"date": format_datetime(date), **groupings}
    if metric is not None:
        out["conversion_metric_id"] = metric
    return {**out, "statistics": statistics}


def send_days(emulator, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The UTC days (clipped to `[start, end)`) on which the emulator's account sent a campaign."""
    days = set()
    for row in emulator.handle.world.table("campaigns").rows:
        sent = row["attributes"]["send_time"]
        if sent is not None and start <= datetime.fromisoformat(sent) < end:
            days.add(start_of_day(datetime.fromisoformat(sent)))
    return [(max(day, start), min(day + DAY, end)) for day in sorted(days)]


def expected(emulator, stream: str, metrics: list[str], start: datetime, end: datetime) -> dict[tuple, dict]:
    """What reading `[start, end)` of `stream` must emit, keyed by primary key, from the emulator's
    builders asked independently of how the connector windows: a series day by day (a one-day
    timeframe answers one value per statistic), campaigns sent in the range by their send day (each
    record dated `end`, where the read ends), a trailing report over the whole range."""
    report = report_of(stream)
    records: list[dict] = []
    for metric in metrics_of(stream, metrics):
        if report.interval:
            day = start
            while day < end:
                for result in ask(emulator, stream, metric, day, day + DAY):
                    values = {name: series[0] for name, series in result["statistics"].items()}
                    records.append(record(result["groupings"], metric, day, values))
                day += DAY
            continue
        timeframes = send_days(emulator, start, end) if report.timeframes == "sent" else [(start, end)]
        for low, high in timeframes:
            records += [record(result["groupings"], metric, end, result["statistics"])
                        for result in ask(emulator, stream, metric, low, high)]
    return keyed(records, stream)


def keyed(records: list[dict], stream: str) -> dict[tuple, dict]:
    key = STREAMS_BY_NAME[stream].primary_key
    out = {tuple(record[field] for field in key): record for record in records}
    assert len(out) == len(records), "a record was emitted twice"
    return out


def report_requests(emulator, stream: str) -> int:
    return sum(emulator.stats()["requests"].get(STREAMS_BY_NAME[stream].path, {}).values())


def start_dates() -> list[tuple[str, datetime]]:
    # Long ago: every stream reads as far back as its declaration lets it. A few days more than the
    # longest window back, mid-day: plans of more than one window, the first day partial.
    longest = max(report_of(name).days_per_request for name in REPORTS)
    return [("2010", LONG_AGO), ("mid-day", today() - (longest + 3) * DAY + timedelta(hours=12))]


@pytest.mark.parametrize("stream", REPORTS)
@pytest.mark.parametrize(("case", "start_date"), start_dates(), ids=[case for case, _ in start_dates()])
def test_a_first_read_is_the_emulators_values_each_once_at_the_planned_cost(fresh_emulator, stream, case,
                                                                              start_date):
    now = utc_now()
    fresh_emulator.reset_stats()
    sink, result = read_in_process(fresh_emulator.url, [stream], start_date=format_datetime(start_date),
                                   clock=lambda: now)
    assert result.statuses[stream] == "COMPLETE", sink.errors
    metrics = placed_order(fresh_emulator)
    assert metrics, "the emulator has a Placed Order metric"
    start = first_read_start(stream, start_date, today())
    records = sink.by_stream.get(stream, [])
    want = expected(fresh_emulator, stream, metrics, start, today())
    assert want, "the emulator's account has something to report in the range"
    assert keyed(records, stream) == want
    validator = record_validator(stream)
    for emitted in records:
        assert not list(validator.iter_errors(emitted)), emitted
    assert sink.final_state(stream) == {"date": format_datetime(today())}
    # The plan: one request per window and conversion metric, plus one metrics chain for the default.
    windows = windows_between(stream, start, today())
    assert report_requests(fresh_emulator, stream) == windows * len(metrics_of(stream, metrics))
    lookups = sum(fresh_emulator.stats()["requests"].get(METRICS_PATH, {}).values())
    assert lookups == (1 if report_of(stream).conversion_metric else 0)


def test_metric_ids_choose_the_conversion_metrics_and_multiply_the_plan(fresh_emulator):
    metrics = sorted(row["id"] for row in fresh_emulator.truth("metrics"))[:2]
    start_date = today() - 3 * DAY
    fresh_emulator.reset_stats()
    sink, result = read_in_process(fresh_emulator.url, REPORTS, start_date=format_datetime(start_date),
                                   metric_ids=",".join(metrics))
    assert result.ok, sink.errors
    for stream in REPORTS:
        start = first_read_start(stream, start_date, today())
        assert keyed(sink.by_stream.get(stream, []), stream) == expected(fresh_emulator, stream, metrics,
                                                                         start, today())
        assert report_requests(fresh_emulator, stream) == (
            windows_between(stream, start, today()) * len(metrics_of(stream, metrics)))
    assert METRICS_PATH not in fresh_emulator.stats()["requests"]


@pytest.mark.parametrize("stream", REPORTS)
def test_the_next_days_read_asks_only_the_new_days_or_the_lookback(fresh_emulator, stream):
    """Three days later a series reads the three new days; a values report by send date reads the
    campaigns sent since the last read and those of the lookback before it, again; a trailing values
    report its year again. A third read the same day sends nothing, not even the metrics lookup."""
    then = utc_now() - 3 * DAY
    start_date = today() - 40 * DAY
    first, result = read_in_process(fresh_emulator.url, [stream], start_date=format_datetime(start_date),
                                    clock=lambda: then)
    assert result.ok, first.errors
    last_read = today() - 3 * DAY
    state = first.final_state(stream)
    assert state == {"date": format_datetime(last_read)}

    fresh_emulator.reset_stats()
    now = utc_now()
    second, result = read_in_process(fresh_emulator.url, [stream], start_date=format_datetime(start_date),
                                     state={stream: state}, clock=lambda: now)
    assert result.ok, second.errors
    report = report_of(stream)
    start = {"days": last_read, "sent": max(last_read - DEFAULT_LOOKBACK, start_date)}.get(
        report.timeframes, first_read_start(stream, start_date, today()))
    metrics = placed_order(fresh_emulator)
    assert keyed(second.by_stream.get(stream, []), stream) == expected(fresh_emulator, stream, metrics,
                                                                       start, today())
    assert report_requests(fresh_emulator, stream) == (
        windows_between(stream, start, today()) * len(metrics_of(stream, metrics)))
    assert second.final_state(stream) == {"date": format_datetime(today())}

    fresh_emulator.reset_stats()
    third, result = read_in_process(fresh_emulator.url, [stream], state={stream: second.final_state(stream)},
                                    clock=lambda: now)
    assert result.ok
    assert third.by_stream.get(stream, []) == []
    assert fresh_emulator.stats()["requests_total"] == 0  # nothing to plan: not even the metrics
    assert third.final_state(stream) == {"date": format_datetime(today())}


@pytest.mark.parametrize("stream", REPORTS)
def test_a_state_in_the_future_is_pulled_back_to_today(emulator, stream):
    future = {stream: {"date": "2999-01-01T00:00:00+00:00"}}
    sink, result = read_in_process(emulator.url, [stream], state=future)
    assert result.ok
    assert sink.by_stream.get(stream, []) == []
    assert sink.final_state(stream) == {"date": format_datetime(today())}


def test_a_plan_over_the_budget_stops_incomplete_and_resumes_to_every_window(fresh_emulator, monkeypatch):
    monkeypatch.setattr(reports, "REQUESTS_PER_SYNC", 5)
    # A series with a conversion metric: a resumed read starts where the last one ended.
    stream = next(name for name in REPORTS if report_of(name).conversion_metric and report_of(name).interval)
    metrics = sorted(row["id"] for row in fresh_emulator.truth("metrics"))[:2]
    per_window = report_of(stream).days_per_request * DAY
    start_date = today() - 5 * per_window  # five windows x two metrics: 10 requests, 4 fit a sync
    now = utc_now()
    state: dict = {}
    collected: list[dict] = []
    syncs = []
    for _ in range(4):
        fresh_emulator.reset_stats()
        sink, result = read_in_process(fresh_emulator.url, [stream], start_date=format_datetime(start_date),
                                       metric_ids=",".join(metrics), state=state, clock=lambda: now)
        syncs.append((result.statuses[stream], report_requests(fresh_emulator, stream),
                      sink.final_state(stream)["date"]))
        collected += sink.by_stream.get(stream, [])
        if result.statuses[stream] == "INCOMPLETE":
            assert [(s, e.failure_type) for s, e in sink.errors] == [(stream, "transient_error")]
            assert "resumes" in sink.errors[0][1].message
        state = {stream: sink.final_state(stream)}
    assert syncs == [
        ("INCOMPLETE", 4, format_datetime(start_date + 2 * per_window)),
        ("INCOMPLETE", 4, format_datetime(start_date + 4 * per_window)),
        ("COMPLETE", 2, format_datetime(today())),
        ("COMPLETE", 0, format_datetime(today())),
    ]
    assert keyed(collected, stream) == expected(fresh_emulator, stream, metrics, start_date, today())


# --------------------------------------------------------------------------- the plan, for any input

moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(stream=st.sampled_from(REPORT_STREAMS), now=moments, start_date=st.none() | moments,
       saved=st.none() | moments, lookback_days=st.integers(0, 365))
def test_windows_tile_the_plan_within_the_declarations_limits(stream: Stream, now, start_date, saved,
                                                              lookback_days):
    report = stream.report
    assert report is not None
    start, windows = plan_windows(report, saved, start_date, now, lookback=timedelta(days=lookback_days))
    upper = start_of_day(now)
    if saved is not None and start_of_day(saved) >= upper:
        assert windows == []  # read today already: nothing is asked again the same day
        return
    if windows:
        assert windows[0][0] == start
        assert windows[-1][1] == upper
        assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))  # contiguous
    assert all(low < high for low, high in windows)
    assert all(high - low <= report.days_per_request * DAY for low, high in windows)
    if report.earliest is not None:
        assert start >= min(report.earliest, upper)
    if report.history_days is not None:
        assert start >= upper - report.history_days * DAY
    if report.timeframes == "trailing":
        assert len(windows) <= 1
    if report.interval:
        assert all(low == start_of_day(low) for low, _ in windows)  # whole days


# --------------------------------------------------------------------------- the budget rule


def first_sync_requests(stream: str, metrics: list[str], start_date: datetime) -> int:
    """A first sync's report requests of `stream`, from its declaration and the conversion metrics."""
    start = first_read_start(stream, start_date, today())
    return windows_between(stream, start, today()) * len(metrics_of(stream, metrics))


def planned_count(sink) -> int:
    """The request count the plan logged before any report request."""
    lines = [message for kind, (level, message) in ((k, v) for k, v in sink.events if k == "log")
             if message.startswith("report plan: ") and level == "INFO"]
    assert len(lines) == 1, lines  # one plan for all the report streams of a sync
    return int(lines[0].removeprefix("report plan: ").split(" ", 1)[0])


def test_a_first_sync_of_every_report_stream_from_2010_fits_one_days_budget():
    """Klaviyo's own limits (1/s, 2/min, 225/day per endpoint) enforced by the emulator on the client's
    virtual clock: every report stream read together from 2010 is COMPLETE within one day, its request
    count is the plan's (logged up front) and within one day's quota for all the streams together, each
    value arrives once and is the emulator's; a second sync the same day sends no request."""
    pacing = InstantClock()
    options = EmulatorOptions(seed=11, scale="tiny", rate_limits=True,
                              rate_limit_clock=lambda: time.time() + pacing.offset)
    with run_emulator_in_thread(options) as emulator:
        now = utc_now()
        sink, result = read_in_process(emulator.url, REPORTS, start_date=format_datetime(LONG_AGO),
                                       clock=lambda: now, pacing=pacing)
        assert result.ok, sink.errors
        metrics = placed_order(emulator)
        requests = emulator.stats()["requests"]
        # Answered requests: what the quota counts (a 429 is not counted, and was waited out).
        answered = {stream: requests[STREAMS_BY_NAME[stream].path]["200"] for stream in REPORTS}
        assert answered == {stream: first_sync_requests(stream, metrics, LONG_AGO) for stream in REPORTS}
        total = sum(first_sync_requests(stream, metrics, LONG_AGO) for stream in REPORTS)
        assert planned_count(sink) == total <= DAILY_BUDGET
        assert pacing.offset < 86_400, "done within the day the quota is counted over"
        for stream in REPORTS:
            start = first_read_start(stream, LONG_AGO, today())
            assert keyed(sink.by_stream.get(stream, []), stream) == expected(emulator, stream, metrics,
                                                                             start, today())

        emulator.reset_stats()
        state = {stream: sink.final_state(stream) for stream in REPORTS}
        again, result = read_in_process(emulator.url, REPORTS, start_date=format_datetime(LONG_AGO),
                                        state=state, clock=lambda: now, pacing=pacing)
        assert result.ok, again.errors
        assert emulator.stats()["requests_total"] == 0
        assert planned_count(again) == 0


@settings(max_examples=200, deadline=None)
@given(start_date=st.none() | st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2040, 1, 1),
                                           timezones=st.just(UTC)),
       now=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2040, 1, 1),
                        timezones=st.just(UTC)),
       metrics=st.integers(1, 3))
def test_a_first_sync_of_every_report_stream_needs_one_days_budget_at_most(start_date, now, metrics):
    plan = plan_reports(dict.fromkeys(REPORT_STREAMS), start_date, now, conversion_metrics=metrics)
    assert plan.total <= DAILY_BUDGET
    assert plan.spent == plan.total  # all of it fits: nothing is left for the next sync


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 6)), min_size=1, max_size=8),
       budget=st.integers(0, 300))
def test_a_plan_over_the_budget_is_cut_to_the_budget_fairly(sizes, budget):
    day = datetime(2026, 1, 1, tzinfo=UTC)
    plans = [StreamPlan(f"s{i}", day, ((day, day + DAY),) * windows, per_window)
             for i, (windows, per_window) in enumerate(sizes)]
    allowed = allot(plans, budget)
    assert sum(allowed[plan.name] * plan.per_window for plan in plans) <= budget
    assert all(0 <= allowed[plan.name] <= len(plan.windows) for plan in plans)
    if sum(plan.requests for plan in plans) <= budget:
        assert all(allowed[plan.name] == len(plan.windows) for plan in plans)
    else:  # no stream is left waiting while another could have had fewer windows and it one more
        for short in plans:
            if allowed[short.name] < len(short.windows):
                assert all(allowed[other.name] <= allowed[short.name] + 1 or
                           budget - sum(allowed[p.name] * p.per_window for p in plans) < short.per_window
                           for other in plans)
