"""Every stream beyond the core ones (those are in test_read_full_refresh.py): a full refresh validates
against the stream's schema and its ids (or composite keys) equal the emulator's ground truth."""

from __future__ import annotations

import pytest

from source_klaviyo.datetimes import format_datetime
from source_klaviyo.streams import STREAMS
from tests.connector.helpers import read_in_process, record_validator
from tests.connector.test_read_full_refresh import CORE_STREAMS
from tests.connector.test_reports import DAY, expected, keyed, placed_order, today

REPORTS = ("campaign_values_reports", "flow_series_reports")
# stream -> (emulator truth resource, the record's key, the truth row's key)
TRUTH = {
    "campaigns_detailed": ("campaigns", ("id",), ("id",)),
    "campaign_messages": ("campaign-messages", ("id", "campaign_id"), ("id", "campaign_id")),
    "events_detailed": ("events", ("id",), ("id",)),
    "flow_actions": ("flow-actions", ("id", "flow_id"), ("id", "flow_id")),
    "flow_messages": ("flow-messages", ("id", "flow_action_id"), ("id", "flow_action_id")),
    "lists_detailed": ("lists", ("id",), ("id",)),
    "list_memberships": ("list-memberships", ("list_id", "profile_id"), ("list_id", "profile_id")),
    "segments": ("segments", ("id",), ("id",)),
    "segment_memberships": (
        "segment-memberships",
        ("segment_id", "profile_id"),
        ("segment_id", "profile_id"),
    ),
    "tags": ("tags", ("id",), ("id",)),
    "coupons": ("coupons", ("id",), ("id",)),
}
OTHERS = [stream.name for stream in STREAMS if stream.name not in CORE_STREAMS]
REPORT_DAYS = 3


def test_every_stream_is_covered_here_or_by_the_core_suite():
    assert set(OTHERS) == set(TRUTH) | set(REPORTS)
    assert len(STREAMS) == len(CORE_STREAMS) + len(OTHERS) == 21


@pytest.fixture(scope="module")
def full_read(emulator):
    collections = [name for name in OTHERS if name not in REPORTS]
    sink, result = read_in_process(emulator.url, collections, sync_mode="full_refresh")
    assert result.ok, sink.errors
    # Report streams read days: a few recent ones keep the read (and the validation) small.
    start = format_datetime(today() - REPORT_DAYS * DAY)
    reports, result = read_in_process(emulator.url, list(REPORTS), sync_mode="full_refresh", start_date=start)
    assert result.ok, reports.errors
    return {**sink.by_stream, **reports.by_stream}


@pytest.mark.parametrize("stream", OTHERS)
def test_every_record_matches_its_schema(full_read, stream):
    records = full_read[stream]
    assert records, "the emulator has data for every stream"
    validator = record_validator(stream)
    for record in records:
        errors = list(validator.iter_errors(record))
        assert not errors, f"{errors[0].message} at {list(errors[0].absolute_path)} in {record}"


@pytest.mark.parametrize("stream", list(TRUTH))
def test_keys_equal_the_truth(emulator, full_read, stream):
    resource, record_key, truth_key = TRUTH[stream]
    keys = [tuple(record[k] for k in record_key) for record in full_read[stream]]
    assert len(keys) == len(set(keys)), "duplicates"
    assert set(keys) == {tuple(row[k] for k in truth_key) for row in emulator.truth(resource)}


@pytest.mark.parametrize("stream", REPORTS)
def test_report_keys_equal_the_emulators_reports(emulator, full_read, stream):
    days = [today() - n * DAY for n in range(REPORT_DAYS, 0, -1)]
    truth = expected(emulator, stream, days, placed_order(emulator))
    assert set(keyed(full_read[stream], stream)) == set(truth)
