"""Records deleted in Klaviyo: the API simply stops returning them, with no tombstone.

A full-refresh stream (tags) replaces its table each sync, so the next sync drops the deleted rows and
counts them as removed. An incremental stream (profiles) reads only what changed since its cursor;
nothing tells it about a deletion, so the deleted rows stay in the table until a full refresh
(docs/local-sync.md). This test pins these behaviours down."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from klaviyo_emulator.runner import RunningEmulator
from source_klaviyo.datetimes import utc_now
from source_klaviyo.sync.duckdb_store import SYNCS_TABLE
from tests.sync.helpers import run_sync, table_rows, truth

DELETED = 3


def _ids(db: Path, table: str) -> set[str]:
    return {row[0] for row in table_rows(db, table, "id")}


def test_deleted_tags_leave_their_table_and_deleted_profiles_stay(fresh_emulator: RunningEmulator,
                                                                  tmp_path: Path) -> None:
    db = tmp_path / "klaviyo.duckdb"
    read_at = utc_now()
    first = run_sync(fresh_emulator.url, db, ["tags", "profiles"])
    assert first.status == "SUCCEEDED", first.to_json()
    profiles_first = _ids(db, "profiles")
    assert profiles_first == set(truth(fresh_emulator, "profiles", read_at))
    assert _ids(db, "tags") == set(truth(fresh_emulator, "tags", read_at))

    tags_gone = set(fresh_emulator.mutate("tags", delete=DELETED)["deleted"])
    profiles_gone = set(fresh_emulator.mutate("profiles", delete=DELETED)["deleted"])
    assert len(tags_gone) == len(profiles_gone) == DELETED
    assert profiles_gone <= profiles_first, "precondition: the first sync landed the profiles deleted since"

    second = run_sync(fresh_emulator.url, db, ["tags", "profiles"])
    assert second.status == "SUCCEEDED", second.to_json()
    by_stream = {s.stream: s for s in second.streams}

    # Full refresh: the table is the truth again, and the summary says what went.
    tags = by_stream["tags"]
    assert _ids(db, "tags") == {row["id"] for row in fresh_emulator.truth("tags")}
    assert not _ids(db, "tags") & tags_gone
    assert (tags.mode, tags.removed, tags.new, tags.rows) == (
        "full (no cursor)",
        DELETED,
        0,
        len(_ids(db, "tags")),
    )

    # Incremental: no tombstones, so the deleted profiles stay as they were; nothing else changed.
    profiles = by_stream["profiles"]
    assert profiles.mode == "incremental"
    assert _ids(db, "profiles") == profiles_first
    assert profiles_gone <= _ids(db, "profiles")
    assert not profiles_gone & {row["id"] for row in fresh_emulator.truth("profiles")}
    assert (profiles.removed, profiles.new, profiles.updated) == (0, 0, 0)

    # The summary kept in the file says the same.
    with duckdb.connect(str(db), read_only=True) as con:
        (stored,) = con.execute(f"SELECT summary FROM {SYNCS_TABLE} WHERE sync_id = ?",
                                [second.sync_id]).fetchone()
    stored_streams = {s["stream"]: s for s in json.loads(stored)["streams"]}
    assert (stored_streams["tags"]["removed"], stored_streams["profiles"]["removed"]) == (DELETED, 0)

    # A full refresh is what clears them out of an incremental stream.
    read_at = utc_now()
    rebuilt = run_sync(fresh_emulator.url, db, ["profiles"], full_refresh=True)
    assert rebuilt.status == "SUCCEEDED", rebuilt.to_json()
    assert _ids(db, "profiles") == set(truth(fresh_emulator, "profiles", read_at))
    assert rebuilt.streams[0].removed == DELETED
