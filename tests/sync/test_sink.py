"""The DuckDB sink fed by a fake engine: state moves only together with the records it covers."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import duckdb
import pytest

from source_klaviyo.errors import SourceError
from source_klaviyo.schemas import load_schema
from source_klaviyo.streams import STREAMS_BY_NAME
from source_klaviyo.sync.duckdb_store import STATE_TABLE, Batch, Store
from source_klaviyo.sync.layout import table_layout
from source_klaviyo.sync.plan import plan_stream
from source_klaviyo.sync.sink import WRITES_AHEAD, DuckDBSink
from source_klaviyo.sync.writer import ThreadWriter


def profile(n: int, updated: str = "2024-01-01T00:00:00+00:00", **attributes: Any) -> dict[str, Any]:
    return {"type": "profile", "id": f"p{n}", "updated": updated, "attributes": {"n": n, **attributes},
            "relationships": {}, "links": {"self": f"https://a.klaviyo.com/api/profiles/p{n}/"}}


def open_sink(
    db: Path, *streams: str, full_refresh: bool = False, keep_raw: bool = False, **options: Any
) -> tuple[Store, DuckDBSink]:
    store = Store(db, sync_id="test", connector_version="test", keep_raw=keep_raw)
    targets = {}
    for name in streams:
        plan = plan_stream(store, STREAMS_BY_NAME[name], full_refresh=full_refresh)
        targets[name] = store.open_target(plan.layout, plan.slot, fresh=plan.fresh)
    writer = ThreadWriter(store, targets)
    return store, DuckDBSink(writer, targets, flush_records=options.pop("flush_records", 1), **options)


def sink_past_p1(db: Path) -> tuple[Store, DuckDBSink]:
    """A profiles sink that has taken p1 and then the state covering it, at 2024-01-01."""
    store, sink = open_sink(db, "profiles")
    sink.records("profiles", [profile(1)])
    sink.state("profiles", {"updated": "2024-01-01T00:00:00+00:00"}, 1)
    return store, sink


def saved_state(db: Path, stream: str) -> Any:
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            f"SELECT state FROM {STATE_TABLE} WHERE stream = ? AND slot = 'live'", [stream]
        ).fetchall()
    return json.loads(rows[0][0]) if rows else None


def ids(db: Path, table: str) -> list[str]:
    with duckdb.connect(str(db), read_only=True) as con:
        return [row[0] for row in con.execute(f'SELECT id FROM "{table}" ORDER BY id').fetchall()]


def test_state_is_committed_only_together_with_the_records_it_covers(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    store, sink = open_sink(db, "profiles", flush_records=10_000, flush_seconds=3600)
    sink.records("profiles", [profile(1), profile(2)])
    sink.state("profiles", {"updated": "2024-01-01T00:00:00+00:00"}, 2)  # coalesced: not yet due
    assert store.saved_state("profiles", "live") is None
    assert store.count("profiles") == 0
    sink.records("profiles", [profile(3)])
    sink.stream_status("profiles", "COMPLETE")  # flushes everything with the latest state
    assert store.saved_state("profiles", "live") == (
        {"updated": "2024-01-01T00:00:00+00:00"},
        store.live_fingerprint("profiles"),
    )
    store.close()
    assert ids(db, "profiles") == ["p1", "p2", "p3"]


def _fail_the_write_of(store: Store, failing_state: Any) -> None:
    """The write that carries `failing_state` fails after its upsert, inside its transaction (the
    writes before it may still be on their way to the writer: they go through)."""
    real_write = store.load_batch

    def failing_write(target: Any, batch: Any, state: Any) -> Any:
        if state != failing_state:
            return real_write(target, batch, state)

        def explode(*_: Any, **__: Any) -> None:
            raise duckdb.IOException("disk full")

        store._save_state = explode  # type: ignore[method-assign]
        return real_write(target, batch, state)

    store.load_batch = failing_write  # type: ignore[method-assign]


def test_a_failed_batch_leaves_the_previous_state_and_rows(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    store, sink = sink_past_p1(db)
    _fail_the_write_of(store, {"updated": "2024-02-01T00:00:00+00:00"})
    sink.records("profiles", [profile(2)])
    sink.state("profiles", {"updated": "2024-02-01T00:00:00+00:00"}, 1)  # written behind the read
    sink.stream_status("profiles", "COMPLETE")  # waits for that write: it failed
    assert sink.tallies["profiles"].status == "INCOMPLETE"
    assert sink.tallies["profiles"].errors == ["writing to DuckDB failed: disk full"]
    sink.finish()
    store.close()
    assert saved_state(db, "profiles") == {"updated": "2024-01-01T00:00:00+00:00"}
    assert ids(db, "profiles") == ["p1"]  # p2's upsert rolled back with the state


def test_a_failed_write_is_raised_once_at_its_streams_next_call_and_spares_the_others(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    store, sink = open_sink(db, "profiles", "tags")
    real_write = store.load_batch

    def profiles_fail(target: Any, batch: Any, state: Any) -> Any:
        if target.stream == "profiles":
            raise duckdb.IOException("disk full")
        return real_write(target, batch, state)

    store.load_batch = profiles_fail  # type: ignore[method-assign]
    sink.records("profiles", [profile(1)])
    sink.state("profiles", {"updated": "2024-02-01T00:00:00+00:00"}, 1)
    tags = [{"type": "tag", "id": "t1", "attributes": {"name": "a"}, "links": {}}]
    sink.records("tags", tags)
    sink.stream_status("tags", "COMPLETE")  # its write waits for the failed one first
    with pytest.raises(SourceError, match=r"^writing to DuckDB failed: disk full$"):
        sink.records("profiles", [profile(2)])
    sink.records("profiles", [profile(3)])  # once: the engine has ended the stream by now
    sink.finish()
    store.close()
    assert sink.tallies["tags"].status == "COMPLETE"
    assert ids(db, "tags") == ["t1"]
    assert sink.tallies["profiles"].status == "INCOMPLETE"
    assert ids(db, "profiles") == []


def test_writes_queued_behind_a_failed_one_are_dropped_so_no_later_state_skips_its_records(
    tmp_path: Path,
) -> None:
    """Batches wait for the writer (up to WRITES_AHEAD) while the read goes on. When one fails, the
    stream's batches queued behind it are not written: their states would vouch for the failed
    batch's records."""
    db = tmp_path / "k.duckdb"
    store, sink = open_sink(db, "profiles")
    real_write = store.load_batch
    gate = threading.Event()
    written: list[list[str]] = []

    def slow_then_failing(target: Any, batch: Any, state: Any) -> Any:
        gate.wait(5)  # hold the writer until every batch is queued
        rows = Path(batch.path).read_bytes().splitlines()
        keys = sorted(json.loads(row.split(b"\x1f")[0])["id"] for row in rows)
        if len(written) == 1:
            written.append(keys)
            raise duckdb.IOException("disk full")
        written.append(keys)
        return real_write(target, batch, state)

    store.load_batch = slow_then_failing  # type: ignore[method-assign]
    for n, month in ((1, "01"), (2, "02"), (3, "03")):  # three batches, each with its state
        sink.records("profiles", [profile(n)])
        sink.state("profiles", {"updated": f"2024-{month}-01T00:00:00+00:00"}, 1)
    assert len(sink._writes) == WRITES_AHEAD  # the read did not wait for the writer
    gate.set()
    sink.stream_status("profiles", "COMPLETE")
    sink.finish()
    store.close()
    assert len(written) == 2  # the third batch was never handed to DuckDB
    assert sink.tallies["profiles"].status == "INCOMPLETE"
    assert saved_state(db, "profiles") == {"updated": "2024-01-01T00:00:00+00:00"}
    assert ids(db, "profiles") == ["p1"]


def test_upsert_counts_new_updated_and_unchanged_and_never_duplicates(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    store, sink = open_sink(db, "profiles")
    sink.records("profiles", [profile(1), profile(2), profile(2, "2024-01-02T00:00:00+00:00")])
    sink.stream_status("profiles", "COMPLETE")
    store.close()
    store, sink = open_sink(db, "profiles")
    sink.records(
        "profiles",
        [profile(2, "2024-01-02T00:00:00+00:00"), profile(1, "2024-03-01T00:00:00+00:00"), profile(3)],
    )
    sink.state("profiles", {"updated": "2024-03-01T00:00:00+00:00"}, 3)
    sink.stream_status("profiles", "COMPLETE")
    counts = sink.tallies["profiles"].counts
    assert (counts.new, counts.updated, counts.unchanged) == (1, 1, 1)
    store.close()
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT id, strftime(updated, '%Y-%m-%d') FROM profiles ORDER BY id").fetchall()
    assert rows == [("p1", "2024-03-01"), ("p2", "2024-01-02"), ("p3", "2024-01-01")]


def test_integers_beyond_64_bits_survive_in_json_columns(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    store, sink = open_sink(db, "profiles")
    # `properties` is free-form (its own JSON column); `big` an attribute the schema lacks (`_raw`)
    sink.records("profiles", [profile(1, big=18446744073709551616123,
                                      properties={"big": 18446744073709551616124})])
    sink.stream_status("profiles", "COMPLETE")
    store.close()
    with duckdb.connect(str(db), read_only=True) as con:
        values = con.execute("SELECT properties->>'big', _raw->'attributes'->>'big' FROM profiles").fetchone()
    assert values == ("18446744073709551616124", "18446744073709551616123")


def test_composite_keys_upsert_flat_records(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    store, sink = open_sink(db, "list_memberships")
    members = [{"list_id": "L1", "profile_id": "p1", "joined_group_at": "2024-01-01T00:00:00+00:00"},
               {"list_id": "L1", "profile_id": "p2", "joined_group_at": "2024-01-02T00:00:00+00:00"},
               {"list_id": "L2", "profile_id": "p1", "joined_group_at": None}]
    sink.records("list_memberships", members + members[:1])
    sink.stream_status("list_memberships", "COMPLETE")
    store.close()
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM list_memberships").fetchone() == (3,)
        (column_type,) = con.execute(
            "SELECT data_type FROM information_schema.columns WHERE "
            "table_name = 'list_memberships' AND column_name = 'joined_group_at'"
        ).fetchone() or ("",)
    assert column_type == "TIMESTAMP WITH TIME ZONE"


def test_full_refresh_keeps_the_old_table_until_the_new_one_is_complete(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    tags = [{"type": "tag", "id": f"t{n}", "attributes": {"name": f"tag {n}"}, "links": {}} for n in range(3)]
    store, sink = open_sink(db, "tags")
    sink.records("tags", tags)
    sink.stream_status("tags", "COMPLETE")
    store.close()
    store, sink = open_sink(db, "tags")
    sink.records("tags", [*tags[1:], {"type": "tag", "id": "t9", "attributes": {}, "links": {}}])
    sink.stream_status("tags", "INCOMPLETE")  # the new table is not swapped in
    store.close()
    assert ids(db, "tags") == ["t0", "t1", "t2"]
    store, sink = open_sink(db, "tags")
    sink.records("tags", [*tags[1:], {"type": "tag", "id": "t9", "attributes": {}, "links": {}}])
    sink.stream_status("tags", "COMPLETE")
    counts = sink.tallies["tags"].counts
    assert (counts.new, counts.removed) == (1, 1)
    store.close()
    assert ids(db, "tags") == ["t1", "t2", "t9"]


def test_a_changed_schema_rebuilds_the_table_from_a_fresh_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "k.duckdb"
    store, sink = sink_past_p1(db)
    sink.stream_status("profiles", "COMPLETE")
    store.close()

    schema = load_schema("profiles")
    schema["properties"]["links"] = {"type": ["string", "null"]}  # retyped: a breaking change
    monkeypatch.setattr("source_klaviyo.sync.plan.load_schema", lambda _name: schema)
    store = Store(db, sync_id="second", connector_version="test")
    plan = plan_stream(store, STREAMS_BY_NAME["profiles"], full_refresh=False)
    assert plan.slot == "staging"
    assert plan.state is None
    assert plan.reset_reason is not None
    assert plan.reset_reason.startswith("schema changed")
    assert plan.reset_reason.endswith(": retyped: links (object -> string)")
    assert plan.layout == table_layout(STREAMS_BY_NAME["profiles"], schema)
    store.close()


def test_unknown_top_level_fields_become_json_columns(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    store, sink = open_sink(db, "profiles")
    sink.records("profiles", [profile(1) | {"brand_new": {"x": 1}}])
    sink.stream_status("profiles", "COMPLETE")
    store.close()
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT brand_new->>'x' FROM profiles").fetchone() == ("1",)


def test_raw_records_land_byte_for_byte_last_version_winning(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    store, sink = open_sink(db, "events")
    old = b'{"datetime":"2024-01-01T00:00:00+00:00","type":"event","id":"e1","attributes":{"v":1}}'
    new = (b'{"datetime":"2024-01-02T00:00:00+00:00","type":"event","id":"e1",'
           b'"attributes":{"v":18446744073709551616123}}')
    other = (
        b'{"datetime":"2024-01-01T00:00:00+00:00","type":"event","id":"e2","attributes":{},"brand_new":[1]}'
    )
    sink.raw_records("events", [old, other, b'{"type":"event","id":null}'])
    sink.raw_records("events", [new])
    sink.stream_status("events", "COMPLETE")
    counts = sink.tallies["events"].counts
    assert (counts.new, counts.skipped) == (2, 1)
    store.close()
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT id, _raw->'attributes'->>'v', brand_new::VARCHAR, strftime(datetime, '%d') FROM events "
            "ORDER BY id"
        ).fetchall()
        (raw,) = con.execute("SELECT _raw FROM events WHERE id = 'e1'").fetchone() or (None,)
    # `v` is not an attribute of events: the record is kept in `_raw`, as it was sent
    assert rows == [("e1", "18446744073709551616123", None, "02"), ("e2", None, "[1]", "01")]
    assert raw == new.decode()


def test_a_batch_file_that_cannot_be_written_ends_its_stream_and_nothing_behind_it_is_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files are written off the event loop: the next batch (with a later state) may be handed over
    before the first one's file fails. It must be dropped unwritten, not committed without p2."""
    db = tmp_path / "k.duckdb"
    store, sink = sink_past_p1(db)
    real_save = Batch.save
    saved: list[str] = []
    handed_both = threading.Event()

    def disk_full_once(batch: Batch, path: str) -> Any:
        saved.append(path)
        if len(saved) == 1:
            handed_both.wait(10)
            raise OSError(28, "No space left on device")
        return real_save(batch, path)

    monkeypatch.setattr(Batch, "save", disk_full_once)
    sink.records("profiles", [profile(2)])
    sink.state("profiles", {"updated": "2024-02-01T00:00:00+00:00"}, 1)  # its file fails
    sink.records("profiles", [profile(3)])
    sink.state("profiles", {"updated": "2024-03-01T00:00:00+00:00"}, 1)  # handed over behind it
    handed_both.set()
    sink.stream_status("profiles", "COMPLETE")  # waits for every write handed over
    message = "writing to DuckDB failed: the batch file: [Errno 28] No space left on device"
    with pytest.raises(SourceError) as raised:  # at the stream's next call, as a failed load is
        sink.records("profiles", [profile(4)])
    assert raised.value.message == message
    sink.error("profiles", raised.value)  # as the engine reports it
    sink.finish()
    store.close()
    assert len(saved) == 1, "the batch behind the failed one is dropped, its file never written"
    assert sink.tallies["profiles"].status == "INCOMPLETE"
    assert sink.tallies["profiles"].errors == [message]
    assert saved_state(db, "profiles") == {"updated": "2024-01-01T00:00:00+00:00"}
    assert ids(db, "profiles") == ["p1"]
