"""A full refresh of every stream returns exactly the emulator's truth, valid against its schema, with
what its declaration adds to each record: the lifted cursor, an included resource embedded or merged,
a detail request's fields, the additional fields. (Report streams: test_reports.py.)"""

from __future__ import annotations

import pytest

from source_klaviyo import hooks
from source_klaviyo.datetimes import floor_second, parse_datetime
from source_klaviyo.streams import Stream
from tests.connector.helpers import read_in_process, record_validator
from tests.truth import TRUTHS


def streams_with(feature) -> list[str]:
    """The streams (with a truth) whose declaration has `feature`."""
    return [name for name, truth in TRUTHS.items() if feature(truth.stream)]


def top_level_cursor(stream: Stream) -> str | None:
    """The attribute a record carries a copy of at its top level: the declaration's, or its hook's."""
    return stream.lifted or (stream.hook.cursor if isinstance(stream.hook, hooks.IncludedAsRecords) else None)


@pytest.fixture(scope="module")
def full_read(emulator):
    return read_in_process(emulator.url, list(TRUTHS), sync_mode="full_refresh")


@pytest.mark.parametrize("stream", list(TRUTHS))
def test_full_refresh_returns_exactly_the_truth(emulator, full_read, stream):
    sink, result = full_read
    assert result.statuses[stream] == "COMPLETE", sink.errors
    truth = TRUTHS[stream]
    keys = truth.records_keys(sink.by_stream.get(stream, []))
    assert keys, "the emulator has data for every stream"
    assert len(keys) == len(set(keys)), "duplicates"
    assert set(keys) == truth.keys(emulator)
    assert sink.statuses[stream] == ["STARTED", "RUNNING", "COMPLETE"]


@pytest.mark.parametrize("stream", list(TRUTHS))
def test_every_record_matches_its_schema(full_read, stream):
    sink, _ = full_read
    validator = record_validator(stream)
    for record in sink.by_stream[stream]:
        errors = list(validator.iter_errors(record))
        assert not errors, f"{errors[0].message} at {list(errors[0].absolute_path)} in {record}"


@pytest.mark.parametrize("stream", streams_with(top_level_cursor))
def test_cursor_is_lifted_to_the_top_level(full_read, stream):
    sink, _ = full_read
    cursor = top_level_cursor(TRUTHS[stream].stream)
    for record in sink.by_stream[stream]:
        assert record[cursor] == record["attributes"][cursor]
        assert {"type", "id", "attributes"} <= set(record)


@pytest.mark.parametrize("stream", streams_with(lambda s: isinstance(s.hook, hooks.EmbedIncluded)))
def test_embedded_resources_are_the_related_ones_in_order(full_read, stream):
    sink, _ = full_read
    hook = TRUTHS[stream].stream.hook
    assert any(record[hook.key] for record in sink.by_stream[stream])
    for record in sink.by_stream[stream]:
        related = [ref["id"] for ref in record["relationships"][hook.relationship]["data"]]
        assert [resource["id"] for resource in record[hook.key]] == related
        assert all(resource["type"] == hook.included_type for resource in record[hook.key])


@pytest.mark.parametrize("stream", streams_with(lambda s: isinstance(s.hook, hooks.MergeIncluded)))
def test_merged_resources_carry_the_included_attributes(full_read, stream):
    sink, _ = full_read
    hook = TRUTHS[stream].stream.hook
    for record in sink.by_stream[stream]:
        data = record["relationships"][hook.relationship]["data"]
        assert data["type"] == hook.included_type
        assert set(data) - {"type", "id"}, f"nothing merged into {record['id']}"


@pytest.mark.parametrize("stream", streams_with(lambda s: s.detail is not None))
def test_a_detail_request_adds_its_fields_to_every_record(full_read, stream):
    sink, _ = full_read
    for record in sink.by_stream[stream]:
        assert set(TRUTHS[stream].stream.detail.fields) <= set(record["attributes"])


@pytest.mark.parametrize("stream", streams_with(lambda s: s.additional_fields))
def test_additional_fields_are_read(full_read, stream):
    sink, _ = full_read
    for field in TRUTHS[stream].stream.additional_fields:
        assert any(field in record["attributes"] for record in sink.by_stream[stream]), field


@pytest.mark.parametrize("stream", streams_with(lambda s: s.reduced_tier))
def test_the_setting_that_keeps_the_faster_tier_drops_its_field(emulator, full_read, stream):
    reduced = TRUTHS[stream].stream.reduced_tier
    lean, result = read_in_process(emulator.url, [stream], sync_mode="full_refresh",
                                   **{reduced.dropped_by: True})
    assert result.ok, lean.errors
    assert lean.by_stream[stream]
    assert not any(reduced.field in record["attributes"] for record in lean.by_stream[stream])


def test_start_date_limits_a_full_refresh(emulator):
    """Reads from the start date's second: a record's datetime compared as an instant, whatever its
    form (`2024-04-01 17:33:15.123456+00:00` too: the emulator's quirk `event_datetime_space`)."""
    rows = sorted(emulator.truth("events"), key=lambda row: parse_datetime(row["datetime"]))
    start = rows[len(rows) // 2]["datetime"]
    sink, _ = read_in_process(emulator.url, ["events"], sync_mode="full_refresh", start_date=start)
    first_second = floor_second(parse_datetime(start))
    expected = {row["id"] for row in rows if parse_datetime(row["datetime"]) >= first_second}
    assert set(sink.ids("events")) == expected
