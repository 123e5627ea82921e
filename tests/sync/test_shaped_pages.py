"""The DuckDB sync's pages are decoded once per record (`pages.shaped_format`): against the table's record
shape, for the cursor, the key and the fit together. Whatever a page holds, the records, their cursors
and the batch's rows come out exactly as on the raw path, where the page parser and the batch each
decode the record."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from source_klaviyo.pages import PageFormat, raw_page_parser, shaped_format
from source_klaviyo.schemas import load_schema
from source_klaviyo.streams import STREAMS_BY_NAME
from source_klaviyo.sync.duckdb_store import Batch
from source_klaviyo.sync.layout import table_layout

EVENTS = STREAMS_BY_NAME["events"]
LAYOUT = table_layout(EVENTS, load_schema(EVENTS.schema_name))
SHAPE = LAYOUT.shape
assert SHAPE is not None

MISSING = object()
ids = st.one_of(st.text(min_size=1, max_size=8), st.integers(-5, 10**20), st.floats(allow_nan=False),
                st.none(), st.booleans(), st.just(MISSING))
cursors = st.one_of(st.just("2024-01-02T03:04:05+00:00"), st.just("2024-01-02 03:04:05.123456+00:00"),
                    st.integers(0, 2**40), st.none(), st.just(MISSING))
free_form = st.one_of(st.dictionaries(st.text(max_size=5), st.integers(), max_size=3), st.text(max_size=5),
                      st.none())


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    record: dict[str, Any] = {"type": "event"}
    if (key := draw(ids)) is not MISSING:
        record["id"] = key
    attributes = draw(st.one_of(st.none(), st.just({}), st.fixed_dictionaries({}, optional={
        "timestamp": st.integers(0, 2**40),
        "event_properties": free_form,
        "uuid": st.text(max_size=6),
        "a_field_the_schema_lacks": st.integers(),
    })))
    if isinstance(attributes, dict) and (cursor := draw(cursors)) is not MISSING:
        attributes["datetime"] = cursor
    record["attributes"] = attributes
    extra = draw(st.fixed_dictionaries({}, optional={
        "relationships": st.one_of(st.none(), st.just({"metric": {"data": {"type": "metric", "id": "m"}}}),
                                   st.just("not an object")),
        "links": st.just({"self": "https://a.klaviyo.com/api/events/x"}),
        "new_top_level": st.integers(),
        "_underscored": st.integers(),
    }))
    return {**record, **extra}


def shaped() -> PageFormat:
    cursor = SHAPE.raw_leaf("attributes", "datetime")
    assert cursor is not None
    assert len(cursor) == 2
    return shaped_format("datetime", SHAPE.decode, SHAPE.key_attributes[0], cursor)


def batch() -> Batch:
    return Batch(LAYOUT.primary_key, LAYOUT.fields, SHAPE)


@settings(max_examples=300, deadline=None)
@given(records=st.lists(events(), max_size=12), indent=st.sampled_from([None, 2]))
def test_a_page_decoded_once_gives_the_raw_path_s_records_cursors_and_rows(
        records: list[dict[str, Any]], indent: int | None) -> None:
    body = json.dumps({"data": records, "links": {"next": None}}, indent=indent).encode()
    plain = raw_page_parser("datetime")(body)["data"]
    once = shaped().parse(body)["data"]
    assert [line for line, _ in plain] == [line for line, _, _ in once]
    assert [bytes(cursor) for _, cursor in plain] == [bytes(cursor) for _, cursor, _ in once]

    twice, single = batch(), batch()
    twice.add_raw([line for line, _ in plain])
    single.add_shaped(once)
    assert single.rows == twice.rows
    assert (single.bytes, single.longest, single.skipped) == (twice.bytes, twice.longest, twice.skipped)
    assert single.new_columns == twice.new_columns


def test_records_of_the_shape_come_with_their_keys_and_others_without() -> None:
    body = json.dumps({"data": [
        {"type": "event", "id": "e1", "attributes": {"datetime": "2024-01-02T03:04:05+00:00"}},
        {"type": "event", "id": "e2", "attributes": {"datetime": "2024-01-02T03:04:07+00:00", "new": 1}},
    ]}).encode()
    keys = [key for _, _, key in shaped().parse(body)["data"]]
    assert keys == ["e1", None]  # a field the schema does not know of: the batch looks itself
    odd = json.dumps({"data": [{"type": "event", "id": 7, "attributes": None}]}).encode()
    assert [key for _, _, key in shaped().parse(odd)["data"]] == [None]  # re-encoded, as the raw path does
