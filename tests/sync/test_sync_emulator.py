"""A sync into a real DuckDB file equals the emulator's ground truth; the next one upserts exactly the
changes."""

from __future__ import annotations

from pathlib import Path

from klaviyo_emulator.runner import RunningEmulator
from source_klaviyo.datetimes import utc_now
from tests.sync.helpers import TRUTH, ahead, fixed, run_sync, table_rows, truth, upper_of


def assert_equals_truth(emulator: RunningEmulator, db: Path, read_at) -> None:  # type: ignore[no-untyped-def]
    for stream, (_resource, cursor) in TRUTH.items():
        landed = table_rows(db, stream, f"id, {cursor}" if cursor else "id, NULL")
        assert len(landed) == len({row[0] for row in landed}), f"duplicates in {stream}"
        assert dict(landed) == truth(emulator, stream, read_at), stream


def test_first_sync_equals_ground_truth_then_incremental_upserts_exactly_the_changes(
    fresh_emulator: RunningEmulator, tmp_path: Path
) -> None:
    db = tmp_path / "klaviyo.duckdb"
    clock = fixed(utc_now())
    first = run_sync(fresh_emulator.url, db, clock=clock)
    assert first.status == "SUCCEEDED", first.to_json()
    assert_equals_truth(fresh_emulator, db, upper_of(clock))

    added = fresh_emulator.mutate("profiles", add=3, update=2)
    archived = fresh_emulator.mutate("campaigns", archive=1)
    new_events = fresh_emulator.mutate("events", add=4)
    # The engine reads up to now - UPPER_MARGIN: a clock that far ahead takes the mutations in.
    clock = ahead()
    second = run_sync(fresh_emulator.url, db, clock=clock)
    assert second.status == "SUCCEEDED", second.to_json()
    assert_equals_truth(fresh_emulator, db, upper_of(clock))

    by_stream = {s.stream: s for s in second.streams}
    assert (by_stream["profiles"].new, by_stream["profiles"].updated) == (3, 2)
    assert (by_stream["events"].new, by_stream["events"].updated) == (4, 0)
    assert (by_stream["campaigns"].new, by_stream["campaigns"].updated) == (0, 1)
    for stream in ("profiles", "events", "email_templates", "flows", "lists", "metrics", "segments"):
        assert by_stream[stream].mode == "incremental"
        assert by_stream[stream].reset_reason is None
    assert set(added["added"] + added["updated"]) <= {row[0] for row in table_rows(db, "profiles", "id")}
    assert set(new_events["added"]) <= {row[0] for row in table_rows(db, "events", "id")}
    (campaign,) = archived["archived"]
    assert (campaign, "true") in table_rows(db, "campaigns", "id, archived::VARCHAR")
