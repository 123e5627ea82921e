"""Full refresh of every core stream returns exactly the emulator's truth, valid against its schema."""

from __future__ import annotations

import pytest

from source_klaviyo.datetimes import floor_second, parse_datetime
from tests.connector.helpers import read_in_process, record_validator

# stream -> (emulator resource, predicate on a truth row)
CORE_STREAMS = {
    "campaigns": ("campaigns", None),
    "email_templates": ("templates", None),
    "events": ("events", None),
    "flows": ("flows", None),
    "global_exclusions": ("profiles", lambda row: bool(row.get("suppressed"))),
    "lists": ("lists", None),
    "metrics": ("metrics", None),
    "profiles": ("profiles", None),
}


def truth_ids(emulator, stream: str) -> set[str]:
    resource, keep = CORE_STREAMS[stream]
    return {row["id"] for row in emulator.truth(resource) if keep is None or keep(row)}


@pytest.fixture(scope="module")
def full_read(emulator):
    sink, result = read_in_process(emulator.url, list(CORE_STREAMS), sync_mode="full_refresh")
    return sink, result


@pytest.mark.parametrize("stream", list(CORE_STREAMS))
def test_full_refresh_returns_exactly_the_truth(emulator, full_read, stream):
    sink, result = full_read
    assert result.statuses[stream] == "COMPLETE", sink.errors
    ids = sink.ids(stream)
    assert len(ids) == len(set(ids)), "duplicates"
    assert set(ids) == truth_ids(emulator, stream)
    assert sink.statuses[stream] == ["STARTED", "RUNNING", "COMPLETE"]


@pytest.mark.parametrize("stream", list(CORE_STREAMS))
def test_every_record_matches_its_schema(full_read, stream):
    sink, _ = full_read
    validator = record_validator(stream)
    for record in sink.by_stream[stream]:
        errors = list(validator.iter_errors(record))
        assert not errors, f"{record['id']}: {errors[0].message} at {list(errors[0].absolute_path)}"


@pytest.mark.parametrize("stream", ["events", "profiles", "campaigns", "flows"])
def test_cursor_is_lifted_to_the_top_level(full_read, stream):
    sink, _ = full_read
    cursor = {"campaigns": "updated_at", "events": "datetime"}.get(stream, "updated")
    for record in sink.by_stream[stream]:
        assert record[cursor] == record["attributes"][cursor]
        assert {"type", "id", "attributes"} <= set(record)


def test_profiles_carry_the_additional_fields_and_predictive_analytics_can_be_dropped(emulator, full_read):
    sink, _ = full_read
    assert all("subscriptions" in r["attributes"] for r in sink.by_stream["profiles"])
    assert any("predictive_analytics" in r["attributes"] for r in sink.by_stream["profiles"])
    lean, _ = read_in_process(emulator.url, ["profiles"], sync_mode="full_refresh",
                              disable_fetching_predictive_analytics=True)
    assert lean.by_stream["profiles"]
    assert not any("predictive_analytics" in r["attributes"] for r in lean.by_stream["profiles"])


def test_start_date_limits_a_full_refresh(emulator):
    """Reads from the start date's second: a record's datetime compared as an instant, whatever its
    form (`2024-04-01 17:33:15.123456+00:00` too: the emulator's quirk `event_datetime_space`)."""
    rows = sorted(emulator.truth("events"), key=lambda row: parse_datetime(row["datetime"]))
    start = rows[len(rows) // 2]["datetime"]
    sink, _ = read_in_process(emulator.url, ["events"], sync_mode="full_refresh", start_date=start)
    first_second = floor_second(parse_datetime(start))
    expected = {row["id"] for row in rows if parse_datetime(row["datetime"]) >= first_second}
    assert set(sink.ids("events")) == expected


def test_child_and_detail_streams(emulator):
    names = ["flow_actions", "flow_messages", "list_memberships", "campaign_messages", "campaigns_detailed",
             "lists_detailed", "events_detailed"]
    sink, result = read_in_process(emulator.url, names, sync_mode="full_refresh")
    assert result.ok, sink.errors
    assert set(sink.ids("flow_actions")) == {row["id"] for row in emulator.truth("flow-actions")}
    assert {(r["id"], r["flow_id"]) for r in sink.by_stream["flow_actions"]} == {
        (row["id"], row["flow_id"]) for row in emulator.truth("flow-actions")}
    assert set(sink.ids("flow_messages")) == {row["id"] for row in emulator.truth("flow-messages")}
    memberships = {(r["list_id"], r["profile_id"]) for r in sink.by_stream.get("list_memberships", [])}
    assert memberships == {(row["list_id"], row["profile_id"]) for row in emulator.truth("list-memberships")}
    assert {(r["id"], r["campaign_id"]) for r in sink.by_stream["campaign_messages"]} == {
        (row["id"], row["campaign_id"]) for row in emulator.truth("campaign-messages")}
    for campaign in sink.by_stream["campaigns_detailed"]:
        refs = [ref["id"] for ref in campaign["relationships"]["campaign-messages"]["data"]]
        assert [message["id"] for message in campaign["campaign_messages"]] == refs
    assert all("profile_count" in r["attributes"] for r in sink.by_stream["lists_detailed"])
    assert all("name" in r["relationships"]["metric"]["data"] for r in sink.by_stream["events_detailed"])
