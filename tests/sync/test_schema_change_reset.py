"""Upgrading onto a DuckDB file written by an older connector: only streams whose schema changed are rebuilt.

The file of a 2.13 user is simulated from a real first sync: its bookkeeping is rewritten to say
2.13.0, with other schema fingerprints for `profiles` and `campaigns` (the 3.0.0 breaking set) and
those tables in their 2.13 shape (profiles with the top-level `segments` column, campaigns with
`message`/`channel` attributes, and a row each that no longer exists in Klaviyo).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import duckdb

from klaviyo_emulator.runner import RunningEmulator
from source_klaviyo.datetimes import utc_now
from source_klaviyo.schemas import load_schema
from source_klaviyo.streams import STREAMS_BY_NAME
from source_klaviyo.sync.layout import LAYOUT_VERSION, METADATA_COLUMNS, TableLayout, table_layout
from source_klaviyo.sync.run import connector_version
from source_klaviyo.sync.summary import SyncSummary
from tests.sync.helpers import ahead, fixed, landed, run_sync, table_rows, truth, upper_of
from tests.truth import TRUTHS

CHANGED = ["profiles", "campaigns"]  # their fingerprints differ in the aged file
CONTINUED = ["events", "lists"]
STREAMS = [*CHANGED, *CONTINUED]
OLD_VERSION = "2.13.0"
OLD_FINGERPRINTS = {"profiles": "2c7e9d0a51b3f4e6", "campaigns": "9a41f07bd2c58e13"}
STALE_ID = "01STALE2X0000000000000000"


def requests_by_route(emulator: RunningEmulator) -> dict[str, int]:
    return {route: sum(by_status.values()) for route, by_status in emulator.stats()["requests"].items()}


def assert_equals_truth(emulator: RunningEmulator, db: Path, stream: str, read_at: datetime) -> None:
    assert landed(db, stream) == truth(emulator, stream, read_at), stream


def current_layout(stream: str) -> TableLayout:
    return table_layout(STREAMS_BY_NAME[stream], load_schema(STREAMS_BY_NAME[stream].schema_name))


def expected_columns(stream: str) -> list[str]:
    return [*current_layout(stream).column_names, *(name for name, _type in METADATA_COLUMNS)]


def columns(db: Path, table: str) -> list[str]:
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                           "ORDER BY ordinal_position", [table]).fetchall()
    return [row[0] for row in rows]


OLD_CAMPAIGN_ATTRIBUTES = ["message", "channel"]


def recorded_schema(stream: str, edit: Callable[[dict], None]) -> dict:
    """The schema JSON the sync records for `stream` (layout version + schema), changed by `edit`."""
    stored = json.loads(current_layout(stream).schema_json)
    edit(stored["schema"])
    return stored


def age_file(db: Path, *, fingerprints: dict[str, str], old_shapes: bool,
             schemas: dict[str, dict | None] | None = None) -> None:
    """Make `db` look written by connector 2.13.0 (with other fingerprints for `fingerprints`' streams).

    `schemas` sets the recorded schema JSON of a stream (None: not recorded, as in files written
    before the schema itself was stored).
    """
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE _source_klaviyo_versions SET connector_version = ?", [OLD_VERSION])
        con.execute("UPDATE _source_klaviyo_syncs SET connector_version = ?", [OLD_VERSION])
        for stream, fingerprint in fingerprints.items():
            con.execute("UPDATE _source_klaviyo_versions SET schema_fingerprint = ? WHERE stream = ?",
                        [fingerprint, stream])
        for stream, schema in (schemas or {}).items():
            con.execute("UPDATE _source_klaviyo_versions SET schema_json = ? WHERE stream = ?",
                        [None if schema is None else json.dumps(schema), stream])
            con.execute("UPDATE _source_klaviyo_state SET schema_fingerprint = ? WHERE stream = ?",
                        [fingerprint, stream])
        if old_shapes:
            # 2.13 profiles carried `segments` at the top level; 2.13 campaigns had message and channel.
            con.execute("ALTER TABLE profiles ADD COLUMN segments JSON")
            con.execute("""UPDATE profiles SET segments = '{"data": []}'""")
            con.execute(
                """INSERT INTO profiles (id, type, updated, segments)
                   VALUES (?, 'profile', TIMESTAMPTZ '2024-03-01 00:00:00+00', '{"data": []}')""",
                [STALE_ID],
            )
            for name in OLD_CAMPAIGN_ATTRIBUTES:
                con.execute(f"ALTER TABLE campaigns ADD COLUMN {name} VARCHAR")
            con.execute("UPDATE campaigns SET message = '01OLDMESSAGE', channel = 'email'")
            con.execute("""INSERT INTO campaigns (id, type, updated_at, message, channel)
                           VALUES (?, 'campaign', TIMESTAMPTZ '2024-03-01 00:00:00+00',
                                   '01OLDMESSAGE', 'email')""", [STALE_ID])


def mutate(emulator: RunningEmulator) -> dict[str, set[str]]:
    """Changes on every stream; returns stream -> the ids an incremental read must fetch."""
    changed: dict[str, set[str]] = {}
    for stream, counts in (
        ("profiles", {"add": 2, "update": 3}),
        ("campaigns", {"add": 1, "update": 1}),
        ("events", {"add": 4}),
        ("lists", {"add": 1, "update": 2}),
    ):
        result = emulator.mutate(TRUTHS[stream].resource, **counts)
        changed[stream] = set(result["added"]) | set(result["updated"])
    return changed


def first_sync(emulator: RunningEmulator, db: Path) -> tuple[SyncSummary, dict[str, int]]:
    clock = fixed(utc_now())
    summary = run_sync(emulator.url, db, STREAMS, clock=clock)
    assert summary.status == "SUCCEEDED", summary.to_json()
    for stream in STREAMS:
        assert_equals_truth(emulator, db, stream, upper_of(clock))
    requests = requests_by_route(emulator)
    emulator.reset_stats()
    return summary, requests


def sync_again(emulator: RunningEmulator, db: Path) -> tuple[SyncSummary, str, datetime]:
    """The next sync of `STREAMS` into `db`, a day later: (its summary, what it printed, the upper
    bound it read to)."""
    printed = io.StringIO()
    clock = ahead()
    summary = run_sync(emulator.url, db, STREAMS, clock=clock, stderr=printed)
    assert summary.status == "SUCCEEDED", summary.to_json()
    return summary, printed.getvalue(), upper_of(clock)


def synced_in(db: Path, stream: str, sync_id: str) -> set[str]:
    return {row[0] for row in table_rows(db, stream, f"id, _sync_id = '{sync_id}'") if row[1]}


def test_upgrade_rebuilds_only_the_streams_whose_schema_changed(fresh_emulator: RunningEmulator,
                                                                 tmp_path: Path) -> None:
    db = tmp_path / "klaviyo.duckdb"
    _, initial_requests = first_sync(fresh_emulator, db)
    # 2.13's profiles schema had a top-level `segments` (removed since: breaking); the campaigns
    # row is as a file written before the schema was recorded: a reset without field-level reason.
    old_profiles = recorded_schema("profiles", lambda schema: schema["properties"].update(
        segments={"type": ["null", "object"]}))
    age_file(db, fingerprints=OLD_FINGERPRINTS, old_shapes=True,
             schemas={"profiles": old_profiles, "campaigns": None})
    assert set(OLD_CAMPAIGN_ATTRIBUTES) <= set(columns(db, "campaigns"))
    assert "segments" in columns(db, "profiles")
    changed = mutate(fresh_emulator)

    second, printed, read_at = sync_again(fresh_emulator, db)
    requests = requests_by_route(fresh_emulator)
    by_stream = {s.stream: s for s in second.streams}
    version = connector_version()
    assert version == "3.0.0"

    for stream in CHANGED:
        summary = by_stream[stream]
        assert summary.mode == "full refresh"
        assert summary.reset_reason is not None
        assert summary.reset_reason.startswith(f"schema changed from version {OLD_VERSION} to {version}")
        assert summary.reset_reason.endswith(
            {
                "profiles": ": removed: segments",
                "campaigns": f" -> {current_layout(stream).fingerprint[:8]})",
            }[stream]
        )
        assert f"reset {stream}: {summary.reset_reason} (old table replaced)" in printed
        # a full read: the same requests as the first sync, every record of the truth read again ...
        route = STREAMS_BY_NAME[stream].path
        assert requests[route] == initial_requests[route], stream
        assert summary.records == len(truth(fresh_emulator, stream, read_at)) == summary.rows
        # ... and the table is exactly the truth in today's layout: no stale row, column or attribute
        assert_equals_truth(fresh_emulator, db, stream, read_at)
        assert columns(db, stream) == expected_columns(stream)
        assert synced_in(db, stream, second.sync_id) == set(truth(fresh_emulator, stream, read_at))
        assert summary.removed == 1  # the row gone from Klaviyo since the old table was written
    assert not set(OLD_CAMPAIGN_ATTRIBUTES) & set(columns(db, "campaigns"))

    for stream in CONTINUED:
        summary = by_stream[stream]
        assert (summary.mode, summary.reset_reason) == ("incremental", None)
        assert f"reset {stream}:" not in printed
        # only the changed records were read, in one page each (page sizes are 10 and 1000) ...
        assert requests[STREAMS_BY_NAME[stream].path] == 1, stream
        assert summary.records - summary.unchanged == len(changed[stream])
        assert synced_in(db, stream, second.sync_id) == changed[stream]
        # ... and the table still equals the truth
        assert_equals_truth(fresh_emulator, db, stream, read_at)
    assert (by_stream["events"].new, by_stream["lists"].new, by_stream["lists"].updated) == (4, 1, 2)

    with duckdb.connect(str(db), read_only=True) as con:
        recorded = con.execute(
            "SELECT stream, connector_version, schema_fingerprint FROM _source_klaviyo_versions "
            "WHERE sync_id = ?",
            [second.sync_id],
        ).fetchall()
    assert {stream: (v, f) for stream, v, f in recorded} == {
        stream: (version, current_layout(stream).fingerprint)
        for stream in STREAMS
    }


def test_a_new_connector_version_with_the_same_schemas_resets_nothing(fresh_emulator: RunningEmulator,
                                                                       tmp_path: Path) -> None:
    db = tmp_path / "klaviyo.duckdb"
    first, _ = first_sync(fresh_emulator, db)
    age_file(db, fingerprints={}, old_shapes=False)
    changed = mutate(fresh_emulator)

    second, printed, read_at = sync_again(fresh_emulator, db)
    requests = requests_by_route(fresh_emulator)
    assert "reset " not in printed
    for summary in second.streams:
        assert (summary.mode, summary.reset_reason) == ("incremental", None), summary
        assert summary.records - summary.unchanged == len(changed[summary.stream])
        assert synced_in(db, summary.stream, second.sync_id) == changed[summary.stream]
        assert synced_in(db, summary.stream, first.sync_id) == (
            set(truth(fresh_emulator, summary.stream, read_at)) - changed[summary.stream])
        assert_equals_truth(fresh_emulator, db, summary.stream, read_at)
    # profiles took 2 pages at first; campaigns are read per channel and archived flag (6 partitions)
    assert {STREAMS_BY_NAME[s].path: requests[STREAMS_BY_NAME[s].path] for s in STREAMS} == {
        "/api/profiles": 1, "/api/events": 1, "/api/lists": 1, "/api/campaigns": 6,
    }


def test_a_table_keyed_otherwise_is_rebuilt_and_a_file_without_recorded_keys_continues(
    fresh_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Rows keyed another way cannot be upserted by today's key (3.0.0 took `date` out of
    campaign_values_reports' key, its fields unchanged): a table recorded with another key is rebuilt
    although its schema is the same. A file from before keys were recorded continues."""
    db = tmp_path / "klaviyo.duckdb"
    first_sync(fresh_emulator, db)
    with duckdb.connect(str(db)) as con:
        recorded = dict(con.execute("SELECT stream, primary_key FROM _source_klaviyo_versions").fetchall())
        assert recorded == {stream: list(STREAMS_BY_NAME[stream].primary_key) for stream in STREAMS}
        update = "UPDATE _source_klaviyo_versions SET primary_key = ? WHERE stream = ?"
        con.execute(update, [["updated", "id"], "lists"])
        con.execute(update, [None, "events"])
    age_file(db, fingerprints={}, old_shapes=False)
    changed = mutate(fresh_emulator)

    second, printed, read_at = sync_again(fresh_emulator, db)
    by_stream = {s.stream: s for s in second.streams}
    lists = by_stream["lists"]
    reason = f"primary key changed from version {OLD_VERSION} to {connector_version()} (updated, id -> id)"
    assert (lists.mode, lists.reset_reason) == ("full refresh", reason)
    assert f"reset lists: {reason} (old table replaced)" in printed
    assert lists.records == len(truth(fresh_emulator, "lists", read_at))
    for stream in ("events", "profiles", "campaigns"):
        summary = by_stream[stream]
        assert (summary.mode, summary.reset_reason) == ("incremental", None), summary
        assert summary.records - summary.unchanged == len(changed[stream])
    for stream in STREAMS:
        assert_equals_truth(fresh_emulator, db, stream, read_at)


def test_an_additive_schema_change_continues_incrementally(
    fresh_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """A stored schema lacking fields ours has is extended, not reset: the new attributes get their
    columns, filled from the records read from then on."""
    db = tmp_path / "klaviyo.duckdb"
    first, _ = first_sync(fresh_emulator, db)
    old_lists = recorded_schema("lists", lambda schema: schema["properties"]["attributes"]["properties"].pop(
        "opt_in_process"))
    old_events = recorded_schema(
        "events", lambda schema: schema["properties"]["attributes"]["properties"].pop("uuid"))
    age_file(db, fingerprints={"lists": "5d1e0c3b7a9f2468", "events": "0b8c4e2f6a1d3957"}, old_shapes=False,
             schemas={"lists": old_lists, "events": old_events})
    with duckdb.connect(str(db)) as con:
        con.execute("ALTER TABLE events DROP COLUMN uuid")  # the old schema had no such column
    changed = mutate(fresh_emulator)

    second, printed, read_at = sync_again(fresh_emulator, db)
    requests = requests_by_route(fresh_emulator)
    assert "reset " not in printed
    by_stream = {s.stream: s for s in second.streams}
    notes = {"lists": "schema extended (fields added: attributes.opt_in_process), continued",
             "events": "schema extended (fields added: attributes.uuid), continued"}
    for summary in second.streams:
        assert (summary.mode, summary.reset_reason) == ("incremental", None), summary
        assert summary.schema_note == notes.get(summary.stream)
        assert synced_in(db, summary.stream, second.sync_id) == changed[summary.stream]
        assert synced_in(db, summary.stream, first.sync_id) == (
            set(truth(fresh_emulator, summary.stream, read_at)) - changed[summary.stream])
        assert_equals_truth(fresh_emulator, db, summary.stream, read_at)
    for stream, note in notes.items():
        assert f"{stream}: {note}" in printed
        assert requests[STREAMS_BY_NAME[stream].path] == 1, stream  # incremental requests only
    assert (by_stream["events"].new, by_stream["lists"].new, by_stream["lists"].updated) == (4, 1, 2)
    # the new attribute got its column back, filled for the records read since
    assert "uuid" in columns(db, "events")
    filled = {row[0] for row in table_rows(db, "events", "id, uuid IS NOT NULL") if row[1]}
    assert filled == changed["events"]
    with duckdb.connect(str(db), read_only=True) as con:
        recorded = con.execute("SELECT stream, schema_fingerprint, schema_json FROM _source_klaviyo_versions "
                               "WHERE sync_id = ?", [second.sync_id]).fetchall()
    assert {stream: (f, json.loads(j)) for stream, f, j in recorded} == {
        stream: (current_layout(stream).fingerprint, json.loads(current_layout(stream).schema_json))
        for stream in STREAMS
    }


def test_layout_fingerprints_are_taken_over_sorted_compact_json():
    """A fingerprint that changed with the JSON library would rebuild every table of every file
    written before: the bytes are defined independently here, as the standard library writes them."""
    for stream in STREAMS_BY_NAME.values():
        schema = load_schema(stream.schema_name)
        layout = table_layout(stream, schema)
        expected = json.dumps({"layout": LAYOUT_VERSION, "schema": schema}, sort_keys=True,
                              separators=(",", ":"), ensure_ascii=False)
        assert layout.schema_json == expected, stream.name
        assert layout.fingerprint == hashlib.sha256(expected.encode()).hexdigest()[:16], stream.name
