"""Klaviyo's real answers differ from its spec: datetimes with a space or microseconds, null where an
object is declared, fields the spec lacks, integers or floats or strings for `$value`. Whatever comes,
no record is lost: a value lands in its typed column where it fits, and the record is kept whole in
`_raw` wherever some of it does not."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sync.test_sink import open_sink

SCALARS = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8) | st.from_regex(r"-?[0-9]{1,20}(\.[0-9])?", fullmatch=True)
    | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=3), st.integers())
)


def event(n: int, datetime_: Any = "2024-04-01T17:33:15+00:00", **attributes: Any) -> dict[str, Any]:
    return {"datetime": datetime_, "type": "event", "id": f"e{n}",
            "attributes": {"timestamp": 1711992795, "datetime": datetime_, "uuid": f"u{n}",
                           "event_properties": {"$value": 9.5}, **attributes},
            "relationships": {"metric": {"data": {"type": "metric", "id": "M1"}},
                              "profile": {"data": {"type": "profile", "id": "P1"}}}}


def sync_events(db: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write `records` through the raw path; every row back as a dict, by id."""
    store, sink = open_sink(db, "events")
    sink.raw_records("events", [json.dumps(record).encode() for record in records])
    sink.stream_status("events", "COMPLETE")
    store.close()
    assert sink.tallies["events"].status == "COMPLETE", sink.tallies["events"].errors
    with duckdb.connect(str(db), read_only=True) as con:
        cursor = con.execute("SELECT * FROM events ORDER BY id")
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_datetimes_as_klaviyo_writes_them_are_timestamps(tmp_path: Path) -> None:
    written = {
        "2024-04-01 17:33:15+00:00": datetime(2024, 4, 1, 17, 33, 15, tzinfo=UTC),
        "2024-04-01T17:33:15.123456+00:00": datetime(2024, 4, 1, 17, 33, 15, 123456, tzinfo=UTC),
        "2024-04-01T17:33:15Z": datetime(2024, 4, 1, 17, 33, 15, tzinfo=UTC),
        "2024-04-01T19:33:15+02:00": datetime(2024, 4, 1, 17, 33, 15, tzinfo=UTC),
    }
    rows = sync_events(tmp_path / "k.duckdb", [event(n, text) for n, text in enumerate(written)])
    assert [(row["datetime"], row["_raw"]) for row in rows] == [(moment, None) for moment in written.values()]


def test_what_does_not_fit_keeps_the_record_whole_and_the_rest_typed(tmp_path: Path) -> None:
    records = [
        event(0, "not a date"),                                    # a date that is none
        event(1, timestamp=1.5),                                    # a fraction where an integer is declared
        event(2, location={"city": "Berlin"}),                      # an attribute the schema lacks
        event(3, event_properties={"$value": "12.50", "x": {"y": [1]}}),  # free-form: never unmapped
        {**event(4), "relationships": {"metric": None, "profile": {"data": None}}},  # nulls for objects
        {**event(5), "attributes": "n/a"},                          # a string for the declared object
        {**event(6), "attributes": None, "brand_new": {"a": 1}},    # a top-level field the schema lacks
    ]
    rows = {row["id"]: row for row in sync_events(tmp_path / "k.duckdb", records)}
    assert len(rows) == len(records)  # nothing lost
    kept = {id_ for id_, row in rows.items() if row["_raw"] is not None}
    assert kept == {"e0", "e1", "e2", "e5"}
    for id_ in kept:
        assert json.loads(rows[id_]["_raw"]) == records[int(id_[1:])]  # whole, as sent
    assert (rows["e0"]["datetime"], rows["e0"]["uuid"], rows["e0"]["metric_id"]) == (None, "u0", "M1")
    assert rows["e1"]["timestamp"] == 2  # rounded by the cast; the exact value is in `_raw`
    assert rows["e3"]["value"] == 12.5
    assert json.loads(rows["e3"]["event_properties"]) == {"$value": "12.50", "x": {"y": [1]}}
    assert (rows["e4"]["metric_id"], rows["e4"]["profile_id"], rows["e4"]["uuid"]) == (None, None, "u4")
    assert json.loads(rows["e6"]["brand_new"]) == {"a": 1}  # a column of its own: nothing to keep


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(timestamp=SCALARS, value=SCALARS)
def test_an_integer_column_holds_its_value_exactly_or_the_record_is_kept(
    tmp_path_factory: Any, timestamp: Any, value: Any
) -> None:
    """`timestamp` is a declared integer (a checked column); `$value` is promoted from a free-form
    object kept whole, so it never keeps the record."""
    record = event(0, timestamp=timestamp, event_properties={"$value": value})
    (row,) = sync_events(tmp_path_factory.mktemp("odd") / "k.duckdb", [record])
    # an integer, or the text of one (the same number: its column holds it exactly)
    canonical = isinstance(timestamp, str) and re.fullmatch(r"0|-?[1-9][0-9]*", timestamp)
    number = timestamp if type(timestamp) is int else int(timestamp) if canonical else None
    if timestamp is None or (number is not None and -(2**63) <= number < 2**63):
        assert (row["timestamp"], row["_raw"]) == (number, None)
    else:
        assert json.loads(row["_raw"]) == record
    assert json.loads(row["event_properties"]) == {"$value": value}
    if type(value) in (int, float) and abs(value) < 1e300:
        assert row["value"] == float(value)


def test_free_form_values_of_every_json_kind_land_as_json_extract_gives_them(tmp_path: Path) -> None:
    # The load reads every column's text in one parse and casts a free-form value's text to JSON; a
    # JSON string (whose text is not its JSON) has its record typed again: either way a free-form
    # column holds what `json_extract` of the value gives, and a string is never taken for JSON.
    values: list[Any] = ["plain", '{"looks": "like json"}', "[1]", "12", 5, 1.10, 2**70, True, [1, "a"], {},
                         {"$value": 3, "s": "\u2728\n"}, None]
    relationships: list[Any] = ['[{"id": "A1"}]', [{"type": "event", "id": "A1"}], [], None, "A1"]
    records = [event(n, event_properties=value) for n, value in enumerate(values)]
    for n, data in enumerate(relationships, start=len(values)):
        record = event(n)
        record["relationships"]["attributions"] = {"data": data}
        records.append(record)
    by_id = {row["id"]: row for row in sync_events(tmp_path / "k.duckdb", records)}
    rows = [by_id[record["id"]] for record in records]
    with duckdb.connect() as con:
        for record, row in zip(records, rows, strict=True):
            text = json.dumps(record)
            expected = con.execute(
                "SELECT NULLIF(json_extract(?, '/attributes/event_properties'), 'null'), "
                "CASE WHEN starts_with(json_extract(?, '/relationships/attributions/data'), '[') "
                "THEN json_extract_string(json_extract(?, '/relationships/attributions/data'), '$[*].id') "
                "END", [text] * 3).fetchall()[0]
            assert (row["event_properties"], row["attribution_ids"], row["_raw"]) == (*expected, None), record
    assert [row["attribution_ids"] for row in rows[len(values):]] == [None, ["A1"], [], None, None]
    assert json.loads(rows[1]["event_properties"]) == '{"looks": "like json"}'  # a string, as sent
