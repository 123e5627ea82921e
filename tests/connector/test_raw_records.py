"""The raw path: a sink with `raw_records` gets each record's JSON as Klaviyo sent it (the lifted cursor
spliced in), and what it gets is the same records and state as the parsed path gives `records`."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from source_klaviyo.config import parse_config
from source_klaviyo.datetimes import format_datetime, utc_now
from source_klaviyo.engine import read_streams
from source_klaviyo.errors import SourceError
from source_klaviyo.http import KlaviyoClient
from source_klaviyo.pages import cursor_value, parse_page, raw_cursor, raw_cursor_value, raw_page_parser
from source_klaviyo.protocol import MessageWriter
from source_klaviyo.streams import STREAMS_BY_NAME
from tests.connector.helpers import CollectingSink, InstantClock, config_for, configured
from tests.truth import INCREMENTAL_TRUTHS


class RawCollectingSink(CollectingSink):
    """Collects like `CollectingSink`, but takes the raw path (parsed with `json`: exact integers)."""

    raw_calls: int = 0

    def raw_records(self, stream: str, records: list[bytes]) -> None:
        self.raw_calls += 1
        self.by_stream.setdefault(stream, []).extend(json.loads(record) for record in records)
        self.events.append(("records", (stream, len(records))))


def read(url: str, names: list[str], sink: CollectingSink, *, state: dict[str, dict] | None = None,
         **config_extra: Any) -> None:
    config, _ = parse_config(config_for(url, **config_extra))

    async def run() -> None:
        async with KlaviyoClient(config, clock=InstantClock()) as client:
            result = await read_streams(config, configured(names), state or {}, sink, client=client,
                                        clock=lambda: NOW)
            assert result.ok, result.errors

    asyncio.run(run())


def sorted_by_id(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda record: json.dumps(record, sort_keys=True))


NOW = utc_now()  # both paths read up to the same upper bound
# Every incremental stream: those the raw path serves and those it leaves to the parsed path (hooks,
# details) read side by side.
STREAMS = list(INCREMENTAL_TRUTHS)
# Read by one request chain (no partitions, no range cut while it runs): the API's order, every run.
ONE_CHAIN = [name for name in STREAMS
             if not STREAMS_BY_NAME[name].partitions and STREAMS_BY_NAME[name].split_by is None]


def test_raw_and_parsed_paths_emit_the_same_records_states_and_order(emulator) -> None:
    parsed, raw = CollectingSink(), RawCollectingSink()
    read(emulator.url, STREAMS, parsed)
    read(emulator.url, STREAMS, raw)
    assert raw.raw_calls > 0
    for stream in STREAMS:
        assert sorted_by_id(raw.by_stream[stream]) == sorted_by_id(parsed.by_stream[stream]), stream
        assert raw.final_state(stream) == parsed.final_state(stream), stream
    # Order, where a read has one: a single chain's records and states come in the same order on
    # both paths; campaigns' six partitions are read concurrently, each in its own order, so the
    # records of each partition (channel and archived, from the ground truth) come in the same order.
    # (Events' windows are read concurrently and interleave differently from run to run.)
    for stream in ONE_CHAIN:
        assert raw.by_stream[stream] == parsed.by_stream[stream], stream
        assert raw.states[stream] == parsed.states[stream], stream
    partition = {row["id"]: (row["channel"], row["archived"]) for row in emulator.truth("campaigns")}
    assert len(set(partition.values())) == 6
    for key in set(partition.values()):
        raw_part = [r for r in raw.by_stream["campaigns"] if partition[r["id"]] == key]
        parsed_part = [r for r in parsed.by_stream["campaigns"] if partition[r["id"]] == key]
        assert raw_part == parsed_part, key
    truth = {row["id"]: row["datetime"] for row in emulator.truth("events")}
    emitted = {record["id"]: record["datetime"] for record in raw.by_stream["events"]}
    upper = datetime.fromisoformat(raw.final_state("events")["datetime"])  # type: ignore[index]
    assert emitted == {i: d for i, d in truth.items() if datetime.fromisoformat(d) < upper}


def test_a_raw_read_from_a_state_filters_client_side_like_the_parsed_one(emulator) -> None:
    """metrics have no server-side filter: the bound is checked on the raw record's cursor alone."""
    updated = sorted(row["updated"] for row in emulator.truth("metrics"))
    state = {"metrics": {"updated": updated[len(updated) // 2]}}
    parsed, raw = CollectingSink(), RawCollectingSink()
    read(emulator.url, ["metrics"], parsed, state=state)
    read(emulator.url, ["metrics"], raw, state=state)
    assert raw.raw_calls > 0
    want = {row["id"] for row in emulator.truth("metrics") if row["updated"] >= updated[len(updated) // 2]}
    assert set(raw.ids("metrics")) == want
    assert sorted_by_id(raw.by_stream["metrics"]) == sorted_by_id(parsed.by_stream["metrics"])


ODD_PAGE = (
    b'{ "data" : [\n  { "type": "event", "id": "e1", "attributes": {"datetime": "2026-01-01T00:00:00+00:00",'
    b' "event_properties": {"big": 123456789012345678901234567890, "neg": -98765432109876543210987,'
    b' "text": "\\u2728 \xe2\x9c\xa8 \\"q\\""}}},\n'
    b'  {"type": "event", "id": "e2"}\n ],\n "links": {"self": "x", "next": "https://x/next"} }'
)


def test_the_raw_parser_keeps_every_byte_and_lifts_the_cursor() -> None:
    page = raw_page_parser("datetime")(ODD_PAGE)
    assert page["links"] == {"next": "https://x/next"}
    first, second = (record for record, _cursor in page["data"])
    assert first.startswith(b'{"datetime":"2026-01-01T00:00:00+00:00",')
    assert b'123456789012345678901234567890, "neg": -98765432109876543210987' in first
    assert b'"\\u2728 \xe2\x9c\xa8 \\"q\\""' in first
    assert json.loads(second) == {"datetime": None, "type": "event", "id": "e2"}
    out = io.BytesIO()
    MessageWriter(out).raw_records("events", [first, second])
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    expected = [
        {**r, "datetime": r.get("attributes", {}).get("datetime")} for r in json.loads(ODD_PAGE)["data"]
    ]
    assert [line["record"]["data"] for line in lines] == expected
    assert {line["record"]["stream"] for line in lines} == {"events"}


@pytest.mark.parametrize("body", [
    b'{"data": [{"id": "e1", "attributes": {"datetime": "2026-01-01T00:00:00Z", "s": "\\ud800"}}]}',
    b'{"data": [{"type": "event", "attributes": {"datetime": "2026-01-01T00:00:00Z"}}]}',  # no id
    b'{"data": [{"id": "e1", "attributes": "not an object"}], "links": []}',
])
def test_a_page_msgspec_refuses_gives_what_the_parsed_path_gives(body: bytes) -> None:
    page = raw_page_parser("datetime")(body)
    want = parse_page(body)["data"]
    for record in want:
        attributes = record.get("attributes")
        record["datetime"] = attributes.get("datetime") if isinstance(attributes, dict) else None
    assert [json.loads(record) for record, _cursor in page["data"]] == want


@pytest.mark.parametrize("body", [ODD_PAGE[:-30], b'{"data": [{"id": "e1"', b"<html>", b""])
def test_a_raw_page_cut_short_is_refused_so_the_client_fetches_it_again(body: bytes) -> None:
    with pytest.raises((ValueError, SourceError)):
        raw_page_parser("datetime")(body)



_ZONES = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7))]
_MOMENTS = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31),
                        timezones=st.sampled_from(_ZONES))


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(
    _MOMENTS.map(lambda m: json.dumps(m.isoformat())),  # offsets, microseconds
    _MOMENTS.map(lambda m: json.dumps(format_datetime(m))),  # Klaviyo's own form
    _MOMENTS.map(lambda m: json.dumps(m.replace(tzinfo=None).isoformat(sep=" "))),  # naive, space
    _MOMENTS.map(lambda m: json.dumps(m.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))),
    st.integers(10**9, 2 * 10**9).map(str),  # epoch seconds
    st.integers(10**9, 2 * 10**9).map(lambda n: json.dumps(str(n))),
    st.sampled_from(["null", "true", '"2024-13-01T00:00:00+00:00"', '"soon"', '""', '"2024-01-01"']),
    st.text(max_size=30).map(json.dumps),
))
def test_a_raw_cursor_is_read_as_the_general_parser_reads_it(text: str) -> None:
    """The raw path's fast cursor reading (msgspec's RFC 3339) gives what the general parser gives,
    for every form a cursor may take, so bounds keep and drop the same records."""
    assert raw_cursor_value(text.encode()) == cursor_value(raw_cursor(text.encode()))
    value = raw_cursor_value(text.encode())
    assert value is None or value.tzinfo is UTC
