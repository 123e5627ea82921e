"""The report streams: the records are what the emulator computes for each requested day, incremental
reads only new days, the request count is the plan, and the reporting budget stops a sync cleanly."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import jsonschema
import orjson
import pytest

from klaviyo_emulator import reports as emulated
from klaviyo_emulator.endpoints import BY_ROUTE
from source_klaviyo import reports
from source_klaviyo.datetimes import format_datetime, utc_now
from source_klaviyo.schemas import load_schema
from source_klaviyo.streams import CONVERSION_METRICS_STREAM, STREAMS_BY_NAME, Report
from tests.connector.helpers import read_in_process
from tests.truth import REPORT_STREAMS

DAY = timedelta(days=1)
REPORTS = [stream.name for stream in REPORT_STREAMS]
METRICS_PATH = STREAMS_BY_NAME[CONVERSION_METRICS_STREAM].path  # where the "Placed Order" metrics are found


def today() -> datetime:
    return utc_now().replace(hour=0, minute=0, second=0, microsecond=0)


def placed_order(emulator) -> list[str]:
    table = emulator.handle.world.table("metrics")
    return sorted(row["id"] for row in table.rows if row["attributes"]["name"] == "Placed Order")


def report_of(stream: str) -> Report:
    report = STREAMS_BY_NAME[stream].report
    assert report is not None
    return report


def windows_of(stream: str, days: int) -> int:
    """The requests per conversion metric of reading `days` whole days: one per window of the declaration's
    `days_per_request` days."""
    return math.ceil(days / report_of(stream).days_per_request)


def expected(emulator, stream: str, days: list[datetime], metrics: list[str]) -> dict[tuple, dict]:
    """Ask the emulator's own report builders about each day alone (one-day timeframes), and key the
    values by primary key (date, metric, message): a day's values must not depend on how the
    connector windows. A series report answers a one-value series per statistic for a one-day timeframe."""
    world = emulator.handle.world
    report = report_of(stream)
    build = emulated.BUILDERS[BY_ROUTE[STREAMS_BY_NAME[stream].path].operation]
    statistics = sorted(load_schema(stream)["properties"]["statistics"]["properties"])
    records: list[dict] = []
    for day in days:
        for metric in metrics:
            attributes = {"statistics": statistics, "conversion_metric_id": metric,
                          "timeframe": {"start": day.isoformat(), "end": (day + DAY).isoformat()}}
            if report.interval:
                attributes["interval"] = report.interval
            answer = build(world, orjson.dumps({"data": {"type": report.type, "attributes": attributes}}))
            for result in answer["data"]["attributes"]["results"]:
                values = result["statistics"]
                if report.interval:
                    values = {name: series[0] for name, series in values.items()}
                records.append({"date": format_datetime(day), **result["groupings"],
                                "conversion_metric_id": metric, "statistics": values})
    return keyed(records, stream)


def keyed(records: list[dict], stream: str) -> dict[tuple, dict]:
    key = STREAMS_BY_NAME[stream].primary_key
    out = {tuple(record[field] for field in key): record for record in records}
    assert len(out) == len(records), "a record was emitted twice"
    return out


def report_requests(emulator, stream: str) -> int:
    return sum(emulator.stats()["requests"].get(STREAMS_BY_NAME[stream].path, {}).values())


@pytest.mark.parametrize("stream", REPORTS)
def test_records_are_the_emulators_values_for_each_requested_day(fresh_emulator, stream):
    # A start a few days more than one request's days back, mid-day (the next whole day is first): the
    # plan has more than one window, the last of them cut short at today where windows are longer than a day.
    days_back = report_of(stream).days_per_request + 3
    windows = windows_of(stream, days_back - 1)
    now = utc_now()
    start_date = today() - days_back * DAY + timedelta(hours=12)
    days = [today() - n * DAY for n in range(days_back - 1, 0, -1)]
    fresh_emulator.reset_stats()
    sink, result = read_in_process(fresh_emulator.url, [stream], start_date=format_datetime(start_date),
                                   clock=lambda: now)
    assert result.statuses[stream] == "COMPLETE", sink.errors
    metrics = placed_order(fresh_emulator)
    assert metrics, "the emulator has a Placed Order metric"
    records = sink.by_stream[stream]
    assert keyed(records, stream) == expected(fresh_emulator, stream, days, metrics)
    validator = jsonschema.Draft7Validator(load_schema(stream))
    for record in records:
        assert not list(validator.iter_errors(record)), record
    assert sink.final_state(stream) == {"date": format_datetime(today())}
    # The plan: one request per window and conversion metric, plus one metrics chain for the default.
    assert report_requests(fresh_emulator, stream) == windows * len(metrics)
    assert sum(fresh_emulator.stats()["requests"][METRICS_PATH].values()) == 1


def test_metric_ids_choose_the_conversion_metrics_and_multiply_the_plan(fresh_emulator):
    metrics = sorted(row["id"] for row in fresh_emulator.truth("metrics"))[:2]
    start_date = today() - 3 * DAY
    fresh_emulator.reset_stats()
    sink, result = read_in_process(fresh_emulator.url, REPORTS, start_date=format_datetime(start_date),
                                   metric_ids=",".join(metrics))
    assert result.ok, sink.errors
    days = [today() - 3 * DAY, today() - 2 * DAY, today() - DAY]
    for stream in REPORTS:
        assert keyed(sink.by_stream[stream], stream) == expected(fresh_emulator, stream, days, metrics)
        assert report_requests(fresh_emulator, stream) == windows_of(stream, 3) * 2
    assert METRICS_PATH not in fresh_emulator.stats()["requests"]


@pytest.mark.parametrize("stream", REPORTS)
def test_an_incremental_read_returns_only_the_new_days(fresh_emulator, stream):
    then = utc_now() - 3 * DAY
    start_date = today() - 6 * DAY
    first, result = read_in_process(fresh_emulator.url, [stream], start_date=format_datetime(start_date),
                                    clock=lambda: then)
    assert result.ok, first.errors
    state = first.final_state(stream)
    assert state == {"date": format_datetime(today() - 3 * DAY)}
    assert {r["date"] for r in first.by_stream[stream]} == {
        format_datetime(today() - n * DAY) for n in (6, 5, 4)
    }

    fresh_emulator.reset_stats()
    now = utc_now()
    second, result = read_in_process(fresh_emulator.url, [stream], start_date=format_datetime(start_date),
                                     state={stream: state}, clock=lambda: now)
    assert result.ok, second.errors
    new_days = [today() - n * DAY for n in (3, 2, 1)]
    metrics = placed_order(fresh_emulator)
    assert keyed(second.by_stream[stream], stream) == expected(fresh_emulator, stream, new_days, metrics)
    assert report_requests(fresh_emulator, stream) == windows_of(stream, len(new_days))
    assert second.final_state(stream) == {"date": format_datetime(today())}

    fresh_emulator.reset_stats()
    third, result = read_in_process(fresh_emulator.url, [stream], state={stream: second.final_state(stream)},
                                    clock=lambda: now)
    assert result.ok
    assert third.by_stream.get(stream, []) == []
    assert fresh_emulator.stats()["requests_total"] == 0  # nothing to plan: not even the metrics
    assert third.final_state(stream) == {"date": format_datetime(today())}


def test_a_state_in_the_future_is_pulled_back_to_today(emulator):
    sink, result = read_in_process(emulator.url, ["flow_series_reports"],
                                   state={"flow_series_reports": {"date": "2999-01-01T00:00:00+00:00"}})
    assert result.ok
    assert sink.by_stream.get("flow_series_reports", []) == []
    assert sink.final_state("flow_series_reports") == {"date": format_datetime(today())}


def test_a_plan_over_the_budget_stops_incomplete_and_resumes_to_every_day(fresh_emulator, monkeypatch):
    monkeypatch.setattr(reports, "REQUESTS_PER_SYNC", 5)
    stream = "campaign_values_reports"
    metrics = sorted(row["id"] for row in fresh_emulator.truth("metrics"))[:2]
    start_date = today() - 5 * DAY
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
    # 5 days x 2 metrics = 10 requests; 5 a sync fit 2 whole days (4 requests) per sync.
    assert syncs == [
        ("INCOMPLETE", 4, format_datetime(today() - 3 * DAY)),
        ("INCOMPLETE", 4, format_datetime(today() - DAY)),
        ("COMPLETE", 2, format_datetime(today())),
        ("COMPLETE", 0, format_datetime(today())),
    ]
    days = [today() - n * DAY for n in range(5, 0, -1)]
    assert keyed(collected, stream) == expected(fresh_emulator, stream, days, metrics)


def test_windows_follow_the_declaration():
    now = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
    series = STREAMS_BY_NAME["flow_series_reports"].report
    values = STREAMS_BY_NAME["campaign_values_reports"].report
    start, windows = reports.plan_windows(series, None, None, now)
    assert start == datetime(2025, 3, 10, tzinfo=UTC)
    assert len(windows) == 7
    assert all(high - low <= 60 * DAY for low, high in windows)
    assert windows[-1][1] == datetime(2026, 3, 10, tzinfo=UTC)
    start, windows = reports.plan_windows(values, None, datetime(2026, 3, 1, tzinfo=UTC), now)
    assert len(windows) == 9
    assert all(high - low == DAY for low, high in windows)
    assert reports.plan_windows(values, datetime(2026, 3, 10, tzinfo=UTC), None, now)[1] == []
