"""The report streams: the records are what the emulator computes for each requested day, incremental
reads only new days, the request count is the plan, and the reporting budget stops a sync cleanly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jsonschema
import orjson
import pytest

from klaviyo_emulator import reports as emulated
from source_klaviyo import reports
from source_klaviyo.datetimes import format_datetime, utc_now
from source_klaviyo.schemas import load_schema
from source_klaviyo.streams import STREAMS_BY_NAME
from tests.connector.helpers import read_in_process

DAY = timedelta(days=1)
ROUTE = {"campaign_values_reports": "/api/campaign-values-reports",
         "flow_series_reports": "/api/flow-series-reports"}
MESSAGE_KEY = {"campaign_values_reports": "campaign_message_id", "flow_series_reports": "flow_message_id"}


def today() -> datetime:
    return utc_now().replace(hour=0, minute=0, second=0, microsecond=0)


def placed_order(emulator) -> list[str]:
    table = emulator.handle.world.table("metrics")
    return sorted(row["id"] for row in table.rows if row["attributes"]["name"] == "Placed Order")


def expected(emulator, stream: str, days: list[datetime], metrics: list[str]) -> dict[tuple, dict]:
    """Ask the emulator's own report builders about each day alone (one-day timeframes), and key the
    values by (date, metric, message): a day's values must not depend on how the connector windows."""
    world = emulator.handle.world
    statistics = sorted(load_schema(stream)["properties"]["statistics"]["properties"])
    out: dict[tuple, dict] = {}
    for day in days:
        for metric in metrics:
            attributes = {"statistics": statistics, "conversion_metric_id": metric,
                          "timeframe": {"start": day.isoformat(), "end": (day + DAY).isoformat()}}
            if stream == "flow_series_reports":
                attributes["interval"] = "daily"
                answer = emulated.flow_series(world, orjson.dumps(
                    {"data": {"type": "flow-series-report", "attributes": attributes}}))
                rows = [(r["groupings"], {k: v[0] for k, v in r["statistics"].items()})
                        for r in answer["data"]["attributes"]["results"]]
            else:
                answer = emulated.campaign_values(world, orjson.dumps(
                    {"data": {"type": "campaign-values-report", "attributes": attributes}}))
                rows = [(r["groupings"], r["statistics"]) for r in answer["data"]["attributes"]["results"]]
            for groupings, values in rows:
                key = (format_datetime(day), metric, groupings[MESSAGE_KEY[stream]])
                out[key] = {"date": format_datetime(day), **groupings, "conversion_metric_id": metric,
                            "statistics": values}
    return out


def keyed(records: list[dict], stream: str) -> dict[tuple, dict]:
    out = {(r["date"], r["conversion_metric_id"], r[MESSAGE_KEY[stream]]): r for r in records}
    assert len(out) == len(records), "a record was emitted twice"
    return out


def report_requests(emulator, stream: str) -> int:
    return sum(emulator.stats()["requests"].get(ROUTE[stream], {}).values())


@pytest.mark.parametrize(("stream", "days_back", "windows"),
                         [("campaign_values_reports", 4, 3), ("flow_series_reports", 70, 2)])
def test_records_are_the_emulators_values_for_each_requested_day(fresh_emulator, stream, days_back, windows):
    now = utc_now()
    start_date = today() - days_back * DAY + timedelta(hours=12)  # mid-day: the next whole day is first
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
    assert sum(fresh_emulator.stats()["requests"]["/api/metrics"].values()) == 1


def test_metric_ids_choose_the_conversion_metrics_and_multiply_the_plan(fresh_emulator):
    metrics = sorted(row["id"] for row in fresh_emulator.truth("metrics"))[:2]
    start_date = today() - 3 * DAY
    fresh_emulator.reset_stats()
    sink, result = read_in_process(fresh_emulator.url, list(ROUTE), start_date=format_datetime(start_date),
                                   metric_ids=",".join(metrics))
    assert result.ok, sink.errors
    days = [today() - 3 * DAY, today() - 2 * DAY, today() - DAY]
    for stream in ROUTE:
        assert keyed(sink.by_stream[stream], stream) == expected(fresh_emulator, stream, days, metrics)
    assert report_requests(fresh_emulator, "campaign_values_reports") == 3 * 2
    assert report_requests(fresh_emulator, "flow_series_reports") == 1 * 2
    assert "/api/metrics" not in fresh_emulator.stats()["requests"]


@pytest.mark.parametrize("stream", list(ROUTE))
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
    assert report_requests(fresh_emulator, stream) == (3 if stream == "campaign_values_reports" else 1)
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
