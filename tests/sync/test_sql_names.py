"""Names reach DuckDB only through `quote_ident`: a stream or field named with quotes, semicolons or
SQL in it is stored under exactly that name and nothing else happens.

Stream names are ours, but top-level field names are Klaviyo's (a field our schema lacks becomes a
column), so every statement the store builds is exercised here with hostile names: create, add
column, load, upsert (incremental), staging and publish (full refresh), and the state bookkeeping.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from source_klaviyo.sync.duckdb_store import Store, new_batch
from source_klaviyo.sync.layout import Column, TableLayout, quote_ident

STREAM = 'odd "stream"; DROP TABLE x; --'
KEY = 'i"d'
CURSOR = "up'dated\"; --"
NESTED = 'attri"butes ✨'
UNKNOWN = "new \"field\"'); DELETE FROM x; --"


def layout() -> TableLayout:
    columns = (Column(KEY, "VARCHAR"), Column(CURSOR, "TIMESTAMPTZ"), Column(NESTED, "JSON"))
    return TableLayout(STREAM, columns, (KEY,), CURSOR, "fingerprint", schema_json="{}")


def record(n: int, updated: str, **extra: object) -> dict[str, object]:
    return {KEY: f"r{n}", CURSOR: updated, NESTED: {'k"ey': n, "q'uote": "v\"al"}, **extra}


def rows(db: Path, table: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        columns = ", ".join(quote_ident(name) for name in (KEY, CURSOR, NESTED, UNKNOWN))
        return con.execute(f"SELECT {columns} FROM {quote_ident(table)} ORDER BY 1").fetchall()


def tables(db: Path) -> list[str]:
    with duckdb.connect(str(db), read_only=True) as con:
        return sorted(row[0] for row in con.execute("SHOW TABLES").fetchall())


@pytest.mark.parametrize("raw", [False, True], ids=["dicts", "raw"])
def test_odd_stream_and_field_names_round_trip(tmp_path: Path, raw: bool) -> None:
    db = tmp_path / "k.duckdb"
    store = Store(db, sync_id="test", connector_version="test")
    target = store.open_target(layout(), "live", fresh=False)

    def write(records: list[dict[str, object]], state: dict[str, object]) -> None:
        batch = new_batch(target)
        if raw:
            batch.add_raw([json.dumps(r).encode() for r in records])
        else:
            batch.add(records)
        store.write_batch(target, batch, state)

    write([record(1, "2024-01-01T00:00:00+00:00", **{UNKNOWN: [1]}), record(2, "2024-01-02T00:00:00+00:00")],
          {CURSOR: "2024-01-02T00:00:00+00:00"})
    # Incremental: r2 unchanged, r1 updated, r3 new (the DELETE ... USING and change count paths).
    write([record(1, "2024-01-03T00:00:00+00:00"), record(2, "2024-01-02T00:00:00+00:00"),
           record(3, "2024-01-03T00:00:00+00:00", **{UNKNOWN: "x"})],
          {CURSOR: "2024-01-03T00:00:00+00:00"})
    assert store.saved_state(STREAM, "live") == ({CURSOR: "2024-01-03T00:00:00+00:00"}, "fingerprint")
    assert store.count(STREAM) == 3
    assert store.columns_of(STREAM) == [KEY, CURSOR, NESTED, "_raw", "_extracted_at", "_sync_id", UNKNOWN]
    store.close()

    stored = rows(db, STREAM)
    assert [(key, updated.isoformat()) for key, updated, _nested, _unknown in stored] == [
        ("r1", "2024-01-03T00:00:00+00:00"),
        ("r2", "2024-01-02T00:00:00+00:00"),
        ("r3", "2024-01-03T00:00:00+00:00"),
    ]
    assert [json.loads(nested) for _key, _updated, nested, _unknown in stored] == [
        {'k"ey': n, "q'uote": 'v"al'} for n in (1, 2, 3)]
    assert [unknown for *_rest, unknown in stored] == [None, None, '"x"']
    assert STREAM in tables(db)


def test_odd_names_survive_staging_and_publish(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    store = Store(db, sync_id="test", connector_version="test")
    live = store.open_target(layout(), "live", fresh=False)
    batch = new_batch(live)
    batch.add([record(1, "2024-01-01T00:00:00+00:00"), record(2, "2024-01-01T00:00:00+00:00")])
    store.write_batch(live, batch, None)

    staging = store.open_target(layout(), "staging", fresh=True)
    batch = new_batch(staging)
    batch.add(
        [record(2, "2024-01-05T00:00:00+00:00", **{UNKNOWN: True}), record(3, "2024-01-05T00:00:00+00:00")]
    )
    store.write_batch(staging, batch, {CURSOR: "2024-01-05T00:00:00+00:00"})
    counts = store.publish(staging, {CURSOR: "2024-01-05T00:00:00+00:00"})
    assert (counts.new, counts.updated, counts.removed) == (1, 1, 1)
    assert store.saved_state(STREAM, "live") == ({CURSOR: "2024-01-05T00:00:00+00:00"}, "fingerprint")
    store.drop_staging(STREAM)
    store.close()

    assert [(key, unknown) for key, _updated, _nested, unknown in rows(db, STREAM)] == [
        ("r2", "true"),
        ("r3", None),
    ]
    assert [t for t in tables(db) if not t.startswith("_source_klaviyo_")] == [STREAM]
