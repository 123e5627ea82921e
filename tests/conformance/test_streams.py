"""The generic per-stream suite: for every stream `discover` lists, the catalog entry, a read of it
(with every other stream, in one run), and a second read from the state the first one saved.

Adding a stream to the table adds it here; nothing in this file names a stream.
"""

from __future__ import annotations

import pytest

from source_klaviyo.catalog import discover
from tests.conformance.kit import (
    check_catalog_entry,
    check_records_match_schema,
    check_state_round_trip,
    check_status_sequence,
)

STREAMS = [stream["name"] for stream in discover()["streams"]]
INCREMENTAL = [s["name"] for s in discover()["streams"] if "incremental" in s["supported_sync_modes"]]
FULL_REFRESH = [name for name in STREAMS if name not in INCREMENTAL]


@pytest.mark.parametrize("stream", STREAMS)
def test_catalog_entry_is_valid(by_name, stream):
    check_catalog_entry(by_name[stream])


@pytest.mark.parametrize("stream", STREAMS)
def test_read_emits_records_matching_the_catalog(first_read, by_name, stream):
    entry = by_name[stream]
    assert first_read.records(stream), f"{stream}: the emulator has data for every stream in the window read"
    check_records_match_schema(first_read, stream, entry["json_schema"], entry["source_defined_primary_key"])


@pytest.mark.parametrize("stream", STREAMS)
def test_read_reports_started_running_complete(first_read, stream):
    check_status_sequence(first_read, stream)


@pytest.mark.parametrize("stream", INCREMENTAL)
def test_state_round_trips(first_read, resumed_read, by_name, stream):
    check_state_round_trip(first_read, resumed_read, stream, by_name[stream]["default_cursor_field"][0])
    check_status_sequence(resumed_read, stream)


@pytest.mark.parametrize("stream", FULL_REFRESH)
def test_full_refresh_streams_emit_no_cursor_state(first_read, stream):
    assert first_read.states(stream) == []


def test_a_read_emits_only_the_selected_streams(resumed_read, incremental_names):
    assert resumed_read.streams_with_records() <= set(incremental_names)
    selected = {t["stream_status"]["stream_descriptor"]["name"] for t in resumed_read.traces("STREAM_STATUS")}
    assert selected == set(incremental_names)
    assert {s["stream"]["stream_descriptor"]["name"] for s in resumed_read.last_states()} <= set(
        incremental_names
    )


def test_every_message_is_protocol_and_no_error_is_traced(first_read, resumed_read):
    # run_protocol validated each line as an AirbyteMessage; a clean read traces no ERROR.
    assert not first_read.traces("ERROR")
    assert not resumed_read.traces("ERROR")
    assert {m["type"] for m in first_read.messages} <= {"RECORD", "STATE", "TRACE", "LOG"}
