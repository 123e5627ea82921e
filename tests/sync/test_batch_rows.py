"""What goes into a stream table is what Klaviyo sent: typed where the schema declares it, and the
record itself in `_raw` wherever the columns do not hold all of it (or always, with `keep_raw`).

The sink gets records two ways: parsed dicts (hook, detail and parent streams) and raw JSON objects
(the engine's raw path, as Klaviyo's bytes). Both must land the same, whatever the values hold:
quotes, backslashes, control characters, the separator byte of the batch file, non-ASCII text,
integers beyond 64 bits, nulls, and bodies pretty-printed across lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sync.test_sink import open_sink

JSON_SCALARS = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
ENCODINGS = ("dicts", "compact", "pretty")
TEXT = "tab\tsep\x1fquote\"back\\slash\nline ✨"


def profile(n: int, attributes: Any, **top: Any) -> dict[str, Any]:
    return {
        "type": "profile",
        "id": f"p{n}",
        "updated": "2024-05-01T10:00:00+00:00",
        "attributes": attributes,
        "relationships": {"lists": {"data": []}},
        "links": {"self": f"https://a.klaviyo.com/api/profiles/p{n}/"},
        **top,
    }


def write(db: Path, records: list[dict[str, Any]], encoding: str, *, keep_raw: bool = False) -> None:
    store, sink = open_sink(db, "profiles", keep_raw=keep_raw)
    if encoding == "dicts":
        sink.records("profiles", records)
    else:
        # The stdlib writes integers of any width; indent=2 puts newlines between tokens.
        indent = 2 if encoding == "pretty" else None
        sink.raw_records(
            "profiles", [json.dumps(r, indent=indent, ensure_ascii=False).encode() for r in records]
        )
    sink.stream_status("profiles", "COMPLETE")
    store.close()


def table(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(JSON_VALUES, min_size=1, max_size=8), encoding=st.sampled_from(ENCODINGS),
       keep_raw=st.booleans())
def test_every_value_survives_the_batch_file(tmp_path_factory: Any, values: list[Any], encoding: str,
                                             keep_raw: bool) -> None:
    db = tmp_path_factory.mktemp("rows") / "k.duckdb"
    # `properties` is free-form (a JSON column); `email` a declared string (a VARCHAR column).
    records = [profile(n, {"properties": {"value": value, "text": TEXT}, "email": TEXT})
               for n, value in enumerate(values)]
    write(db, records, encoding, keep_raw=keep_raw)
    rows = table(db, "SELECT id, properties, email, updated, list_ids, _raw FROM profiles ORDER BY id")
    assert [row[0] for row in rows] == sorted(r["id"] for r in records)
    by_id = {r["id"]: r for r in records}
    for id_, properties, email, updated, list_ids, raw in rows:
        sent = by_id[id_]
        assert json.loads(properties) == sent["attributes"]["properties"]
        assert email == TEXT
        assert updated.isoformat() == "2024-05-01T10:00:00+00:00"
        assert list_ids == []
        # mapped whole: `_raw` only on request, and then the record as sent
        assert (raw and json.loads(raw)) == (sent if keep_raw else None)


def test_compact_json_is_kept_byte_for_byte_in_raw(tmp_path: Path) -> None:
    properties = {"email": "a@b.c", "big": 18446744073709551616123, "emoji": "✨", "escaped": "\u001f"}
    text = json.dumps(properties, separators=(",", ":"), ensure_ascii=False)
    record = orjson.dumps(profile(1, {})).replace(
        b'"attributes":{}', b'"attributes":{"properties":' + text.encode() + b"}")
    for keep_raw in (False, True):
        db = tmp_path / f"{keep_raw}.duckdb"
        store, sink = open_sink(db, "profiles", keep_raw=keep_raw)
        sink.raw_records("profiles", [record])
        sink.stream_status("profiles", "COMPLETE")
        store.close()
        (properties_column, raw), = table(db, "SELECT properties, _raw FROM profiles")
        # a free-form object: the same JSON, as DuckDB writes it (integers of any width exact)
        assert json.loads(properties_column) == properties
        assert '"big":18446744073709551616123' in properties_column
        assert raw == (record.decode() if keep_raw else None)


def test_json_null_is_sql_null_in_every_column(tmp_path: Path) -> None:
    record = profile(1, None, relationships=None, updated=None, type=None)
    for encoding in ("dicts", "compact"):
        db = tmp_path / f"{encoding}.duckdb"
        write(db, [record], encoding)
        assert table(db, "SELECT id, type, updated, email, properties, list_ids, _raw FROM profiles") == [
            ("p1", None, None, None, None, None, None)]


def test_a_field_first_seen_mid_batch_gets_a_column_and_earlier_rows_null(tmp_path: Path) -> None:
    for encoding in ("dicts", "compact"):
        db = tmp_path / f"{encoding}.duckdb"
        write(db, [profile(1, {}), profile(2, {}, meta={"cohort": 7}, _private=1), profile(3, {})], encoding)
        rows = table(db, "SELECT id, meta, _raw->>'_private' FROM profiles ORDER BY id")
        assert [(id_, meta and json.loads(meta), private) for id_, meta, private in rows] == [
            ("p1", None, None),
            ("p2", {"cohort": 7}, "1"),  # a name of ours (leading "_") gets no column: kept in `_raw`
            ("p3", None, None),
        ]
        columns = [row[0] for row in table(db, "SELECT column_name FROM information_schema.columns "
                                               "WHERE table_name = 'profiles'")]
        assert "_private" not in columns


def test_a_record_of_several_megabytes_loads(tmp_path: Path) -> None:
    big = {"notes": "x" * (3 << 20)}  # an attribute the schema lacks: the record is kept in `_raw`
    db = tmp_path / "k.duckdb"
    write(db, [profile(1, {}), profile(2, big)], "compact")
    assert table(db, "SELECT id, length(_raw->'attributes'->>'notes') FROM profiles ORDER BY id") == [
        ("p1", None), ("p2", 3 << 20)]
