"""A file written in layout 1 (JSON columns) is converted to typed columns in place, never half-way.

The layout-1 file is made from a real sync kept whole (`keep_raw`), rewritten by the old rules
(`tests/sync/layout1.py`): its rows are the records as read, its states real ones.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from klaviyo_emulator.runner import RunningEmulator
from source_klaviyo.datetimes import utc_now
from source_klaviyo.schemas import load_schema
from source_klaviyo.streams import STREAMS, STREAMS_BY_NAME
from source_klaviyo.sync import migrate as migrate_module
from source_klaviyo.sync.duckdb_store import Store, new_batch
from source_klaviyo.sync.layout import METADATA_COLUMNS, table_layout
from source_klaviyo.sync.migrate import migrate
from tests.sync.helpers import ahead, fixed, landed, run_sync, table_rows, truth, upper_of
from tests.sync.layout1 import layout1_schema_json, to_layout_1
from tests.truth import TRUTHS

NAMES = [stream.name for stream in STREAMS]
PROFILE_WITH_NEWS = 0  # the profile (by position) given an attribute and a top-level field the schema lacks


def current_columns(stream: str) -> list[str]:
    layout = table_layout(STREAMS_BY_NAME[stream], load_schema(STREAMS_BY_NAME[stream].schema_name))
    return [*layout.column_names, *(name for name, _type in METADATA_COLUMNS)]


def columns(db: Path, table: str) -> list[str]:
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                           "ORDER BY ordinal_position", [table]).fetchall()
    return [row[0] for row in rows]


def bookkeeping(db: Path) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT stream, slot, state::VARCHAR, schema_fingerprint FROM _source_klaviyo_state UNION ALL "
            "SELECT stream, sync_id, schema_json::VARCHAR, schema_fingerprint FROM _source_klaviyo_versions "
            "ORDER BY ALL").fetchall()


def contents(db: Path, stream: str, exclude: str = "") -> list[tuple[Any, ...]]:
    """Every row, `_raw` left out where the table has it (and the columns named in `exclude`)."""
    return table_rows(db, stream, f"* EXCLUDE (_raw{exclude})" if "_raw" in columns(db, stream) else "*")


def layout1_file(emulator: RunningEmulator, tmp_path: Path) -> tuple[Path, Path, str]:
    """(a typed file synced with keep_raw, the same in layout 1, the profile given new fields)."""
    typed, old = tmp_path / "typed.duckdb", tmp_path / "old.duckdb"
    first = run_sync(emulator.url, typed, clock=fixed(utc_now()), keep_raw=True)
    assert first.status == "SUCCEEDED", first.to_json()
    shutil.copyfile(typed, old)
    to_layout_1(old, NAMES)
    with duckdb.connect(str(old)) as con:
        (profile,) = con.execute("SELECT id FROM profiles ORDER BY id").fetchall()[PROFILE_WITH_NEWS]
        con.execute("""UPDATE profiles SET attributes = json_merge_patch(attributes, '{"brand_new": [1, 2]}')
                       WHERE id = ?""", [profile])
        con.execute("ALTER TABLE profiles ADD COLUMN meta JSON")
        con.execute("""UPDATE profiles SET meta = '{"cohort": 7}' WHERE id = ?""", [profile])
    return typed, old, profile


def test_every_table_is_converted_in_place_equal_to_a_typed_sync_of_the_same_records(
    fresh_emulator: RunningEmulator, tmp_path: Path
) -> None:
    typed, old, profile = layout1_file(fresh_emulator, tmp_path)
    assert "attributes" in columns(old, "profiles")
    states_before = [row for row in bookkeeping(old) if row[1] == "live"]
    printed: list[str] = []
    store = Store(old, sync_id="convert", connector_version="test")
    result = migrate(store, printed.append)
    store.close()

    assert result.failure is None
    assert result.converted == NAMES
    assert printed[0].startswith(f"converting {len(NAMES)} table(s) of old.duckdb to typed columns")
    for stream in NAMES:
        extra = ["meta"] if stream == "profiles" else []
        assert columns(old, stream) == [*current_columns(stream), *extra], stream
        # the same typed values, `_extracted_at` and `_sync_id` as the typed sync of the same records
        exclude = ", meta" if stream == "profiles" else ""
        assert contents(old, stream, exclude) == contents(typed, stream), stream
    # nothing the columns do not hold is lost: that profile alone is kept whole, with its new fields
    kept = table_rows(old, "profiles", "id, _raw->'attributes'->'brand_new', meta")
    assert [(id_, json.loads(new), json.loads(meta)) for id_, new, meta in kept if new is not None] == [
        (profile, [1, 2], {"cohort": 7})]
    # the states are kept; the versions say the new layout
    assert [row for row in bookkeeping(old) if row[1] == "live"] == [
        (stream, slot, state, table_layout(STREAMS_BY_NAME[stream], load_schema(stream)).fingerprint)
        for stream, slot, state, _fingerprint in states_before]


def test_the_sync_converts_a_file_then_continues_incrementally_and_resets_only_a_breaking_schema(
    fresh_emulator: RunningEmulator, tmp_path: Path
) -> None:
    _typed, old, _profile = layout1_file(fresh_emulator, tmp_path)
    with duckdb.connect(str(old)) as con:  # profiles as a 2.13 file recorded them: a breaking change
        schema = load_schema("profiles")
        schema["properties"]["segments"] = {"type": ["null", "object"]}
        con.execute("UPDATE _source_klaviyo_versions SET schema_json = ? WHERE stream = 'profiles'",
                    [layout1_schema_json(schema)])
    added = {resource: set(fresh_emulator.mutate(resource, add=2)["added"])
             for resource in ("events", "lists")}
    fresh_emulator.reset_stats()

    printed = io.StringIO()
    clock = ahead()
    second = run_sync(fresh_emulator.url, old, clock=clock, stderr=printed)
    assert second.status == "SUCCEEDED", second.to_json()
    assert second.converted == [name for name in NAMES if name != "profiles"]
    assert f"converted to typed columns in place: {', '.join(second.converted)}" in printed.getvalue()
    by_stream = {s.stream: s for s in second.streams}
    profiles = by_stream["profiles"]
    assert (profiles.mode, profiles.reset_reason is not None) == ("full refresh", True)
    assert profiles.reset_reason is not None
    assert profiles.reset_reason.endswith(": removed: segments")
    for stream in NAMES:
        assert columns(old, stream)[: len(current_columns(stream))] == current_columns(stream), stream
        if stream != "profiles" and STREAMS_BY_NAME[stream].incremental:
            assert (by_stream[stream].mode, by_stream[stream].reset_reason) == ("incremental", None), stream
    for stream, resource in (("events", "events"), ("lists", "lists")):
        new = {row[0] for row in table_rows(old, stream, f"id, _sync_id = '{second.sync_id}'") if row[1]}
        assert added[resource] <= new, stream
    stats = fresh_emulator.stats()["requests"]
    requests = {route: sum(by_status.values()) for route, by_status in stats.items()}
    # only what was added since: one page for each stream of events
    assert requests["/api/events"] == sum(1 for stream in STREAMS if stream.path == "/api/events")
    for stream in TRUTHS:
        assert landed(old, stream) == truth(fresh_emulator, stream, upper_of(clock)), stream
    assert second.views  # made on the converted tables


def test_an_interrupted_conversion_leaves_the_file_as_it_was_and_the_next_one_completes(
    fresh_emulator: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _typed, old, _profile = layout1_file(fresh_emulator, tmp_path)
    before = {stream: (columns(old, stream), contents(old, stream)) for stream in NAMES}
    books = bookkeeping(old)
    real_version = Store._record_version
    swapped: list[str] = []

    def crash_midway(self: Store, layout: Any) -> None:
        swapped.append(layout.stream)
        if len(swapped) == 3:  # two tables swapped in already, inside the transaction
            raise KeyboardInterrupt
        real_version(self, layout)

    monkeypatch.setattr(Store, "_record_version", crash_midway)
    store = Store(old, sync_id="crash", connector_version="test")
    with pytest.raises(KeyboardInterrupt):
        migrate(store, lambda _line: None)
    store.close()
    monkeypatch.undo()
    assert {stream: (columns(old, stream), contents(old, stream)) for stream in NAMES} == before
    assert bookkeeping(old) == books

    store = Store(old, sync_id="again", connector_version="test")
    assert migrate(store, lambda _line: None).converted == NAMES
    assert not store.tables_starting_with("_source_klaviyo_migrating__")  # the crash's leftovers dropped
    store.close()


def test_a_failed_conversion_rebuilds_the_tables_from_a_full_read_and_says_why(
    fresh_emulator: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _typed, old, _profile = layout1_file(fresh_emulator, tmp_path)
    real_convert = migrate_module._convert

    def fail_on_lists(store: Store, stream: Any) -> Any:
        if stream.name == "lists":
            raise duckdb.IOException("disk full")
        return real_convert(store, stream)

    monkeypatch.setattr(migrate_module, "_convert", fail_on_lists)
    printed = io.StringIO()
    summary = run_sync(fresh_emulator.url, old, ["events", "lists"], clock=ahead(), stderr=printed)
    assert summary.status == "SUCCEEDED", summary.to_json()
    assert summary.converted == []
    assert "converting to typed columns failed (disk full)" in printed.getvalue()
    for s in summary.streams:
        assert s.mode == "full refresh"
        assert s.reset_reason is not None
        assert s.reset_reason.endswith("the table is in layout 1, not converted to typed columns in place")
        assert columns(old, s.stream)[: len(current_columns(s.stream))] == current_columns(s.stream)
    # the streams this sync did not read stay in layout 1, whole, until a sync converts or reads them
    assert "attributes" in columns(old, "profiles")


def test_a_converted_row_keeps_its_stamps_and_one_without_is_stamped_now(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    store = Store(db, sync_id="converting", connector_version="test")
    layout = table_layout(STREAMS_BY_NAME["tags"], load_schema("tags"))
    target = store.open_target(layout, "live", fresh=False)
    batch = new_batch(target)
    batch.add_converted([
        ('{"type": "tag", "id": "t1", "attributes": {"name": "a"}}', "2024-01-02 03:04:05.678901+00",
         "old-sync"),
        ('{"type": "tag", "id": "t2", "attributes": {"name": "b"}}', None, None),
    ])
    store.write_batch(target, batch, None)
    store.close()
    stamp = "strftime(_extracted_at, '%Y-%m-%d %H:%M:%S.%f')"
    (kept, stamped) = table_rows(db, "tags", f"id, name, {stamp}, _sync_id")
    assert kept == ("t1", "a", "2024-01-02 03:04:05.678901", "old-sync")
    assert (stamped[0], stamped[1], stamped[3]) == ("t2", "b", "converting")
    assert stamped[2] is not None
