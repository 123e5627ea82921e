"""An append-only stream (events: records are never changed) synced into a table that was empty when
the sync began is inserted batch by batch, never upserted: one read meets each record once, and a
delete by key would scan the whole table once per batch. Any other case keeps the upsert."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from source_klaviyo.sync.duckdb_store import Store, new_batch
from source_klaviyo.sync.layout import Column, TableLayout

COLUMNS = (Column("id", "VARCHAR"), Column("datetime", "TIMESTAMPTZ"), Column("attributes", "JSON"))


def layout(*, append_only: bool) -> TableLayout:
    return TableLayout("events", COLUMNS, ("id",), "datetime", "fingerprint", schema_json="{}",
                       append_only=append_only)


def write(store: Store, target: object, ids: list[int], day: int) -> None:
    batch = new_batch(target)  # type: ignore[arg-type]
    batch.add_raw([json.dumps({"id": f"e{n}", "datetime": f"2026-01-{day:02d}T00:00:00+00:00",
                               "attributes": {"n": n, "day": day}}).encode() for n in ids])
    store.write_batch(target, batch, {"datetime": f"2026-01-{day:02d}T00:00:00+00:00"})  # type: ignore[arg-type]


def rows(db: Path) -> list[tuple[str, int]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT id, attributes->>'day' FROM events ORDER BY id").fetchall()


def test_a_fresh_append_only_table_takes_every_batch_as_new_rows(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    store = Store(db, sync_id="one", connector_version="test")
    target = store.open_target(layout(append_only=True), "live", fresh=False)
    assert target.keys_once
    write(store, target, [1, 2, 3], day=1)
    write(store, target, [4, 5], day=2)
    store.close()
    assert rows(db) == [("e1", "1"), ("e2", "1"), ("e3", "1"), ("e4", "2"), ("e5", "2")]


def test_a_table_with_rows_before_the_sync_is_upserted_even_for_an_append_only_stream(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    first = Store(db, sync_id="one", connector_version="test")
    write(first, first.open_target(layout(append_only=True), "live", fresh=False), [1, 2], day=1)
    first.close()
    second = Store(db, sync_id="two", connector_version="test")
    target = second.open_target(layout(append_only=True), "live", fresh=False)
    assert not target.keys_once  # a lookback re-reads events this table already holds
    write(second, target, [2, 3], day=3)
    second.close()
    assert rows(db) == [("e1", "1"), ("e2", "3"), ("e3", "3")]


def test_a_stream_whose_records_change_is_always_upserted(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    store = Store(db, sync_id="one", connector_version="test")
    target = store.open_target(layout(append_only=False), "live", fresh=False)
    assert not target.keys_once
    write(store, target, [1, 2], day=1)
    write(store, target, [2, 3], day=2)  # record 2 changed during the read: it came again
    store.close()
    assert rows(db) == [("e1", "1"), ("e2", "2"), ("e3", "2")]


def test_the_events_streams_are_declared_append_only_and_no_other() -> None:
    from source_klaviyo.streams import STREAMS

    declared = {s.name for s in STREAMS if s.incremental and s.incremental.append_only}
    assert declared == {"events", "events_detailed"}
    # The flag is not part of the table's identity: flipping it never resets a table.
    assert layout(append_only=True) == layout(append_only=False)
