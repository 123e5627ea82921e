"""A sync into a real DuckDB file equals the emulator's ground truth; the next one upserts exactly the
changes."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from klaviyo_emulator.runner import RunningEmulator
from source_klaviyo.datetimes import parse_datetime, utc_now
from source_klaviyo.schemas import load_schema
from source_klaviyo.streams import STREAMS, STREAMS_BY_NAME
from source_klaviyo.sync.layout import quote_ident, table_layout
from tests.connector.helpers import read_in_process
from tests.sync.helpers import ahead, fixed, landed, run_sync, table_rows, truth, upper_of
from tests.truth import INCREMENTAL_TRUTHS, TRUTHS


def assert_equals_truth(emulator: RunningEmulator, db: Path, read_at) -> None:  # type: ignore[no-untyped-def]
    for stream in TRUTHS:
        assert landed(db, stream) == truth(emulator, stream, read_at), stream


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
    for stream in INCREMENTAL_TRUTHS:
        assert by_stream[stream].mode == "incremental"
        assert by_stream[stream].reset_reason is None
    assert set(added["added"] + added["updated"]) <= {row[0] for row in table_rows(db, "profiles", "id")}
    assert set(new_events["added"]) <= {row[0] for row in table_rows(db, "events", "id")}
    (campaign,) = archived["archived"]
    assert (campaign, "true") in table_rows(db, "campaigns", "id, archived::VARCHAR")


def test_space_separated_and_microsecond_datetimes_land_as_their_instants(
    fresh_emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Klaviyo writes `2024-04-01 17:33:15.123456+00:00` for some events and microseconds for campaign
    times (the emulator's quirks `event_datetime_space`, `datetime_microseconds`): the TIMESTAMPTZ
    columns hold each exact instant, microseconds included."""
    db = tmp_path / "klaviyo.duckdb"
    clock = fixed(utc_now())
    assert run_sync(fresh_emulator.url, db, ["events", "campaigns"], clock=clock).status == "SUCCEEDED"
    for stream, cursor in (("events", "datetime"), ("campaigns", "updated_at")):
        forms = {row["id"]: row[cursor] for row in fresh_emulator.truth(TRUTHS[stream].resource)}
        odd = {key for key, text in forms.items() if " " in text or "." in text}
        assert odd, f"the emulator serves {stream} with space-separated or microsecond datetimes"
        landed = dict(table_rows(db, stream, f"id, {cursor}"))
        assert {key: landed[key] for key in odd if key in landed} == {
            key: parse_datetime(forms[key]) for key in odd if key in landed
        }
        assert any(landed[key].microsecond for key in odd if key in landed)


def test_every_typed_column_holds_the_value_of_every_record(emulator: RunningEmulator,
                                                            tmp_path: Path) -> None:
    """Typed columns are filled with TRY_CAST, which turns a value it cannot read into NULL without a
    word: on Klaviyo's live shapes (the emulator's default quirks: space-separated and microsecond
    datetimes, integers where floats are declared, nulls) every scalar column holds the value at its
    path in the record as read."""
    streams = [stream.name for stream in STREAMS if stream.report is None]
    db = tmp_path / "klaviyo.duckdb"
    clock = fixed(utc_now())
    assert run_sync(emulator.url, db, streams, clock=clock).status == "SUCCEEDED"
    sink, result = read_in_process(emulator.url, streams, sync_mode="incremental", clock=clock)  # as synced
    assert result.ok, sink.errors
    checked = 0
    for name in streams:
        layout = table_layout(STREAMS_BY_NAME[name], load_schema(name))
        key = layout.primary_key
        typed = [c for c in layout.columns if not c.from_json and c.sql_type != "VARCHAR"]
        if not typed:
            continue
        landed = {row[: len(key)]: row[len(key):] for row in table_rows(db, name, ", ".join(
            quote_ident(c) for c in (*key, *(column.name for column in typed))))}
        for record in sink.by_stream[name]:
            values = landed[tuple(str(record[k]) for k in key)]
            for column, value in zip(typed, values, strict=True):
                sent = value_at(record, column.keys)
                if isinstance(sent, str) and isinstance(value, datetime):
                    sent = parse_datetime(sent)
                elif isinstance(sent, str) and isinstance(value, date):
                    sent = date.fromisoformat(sent)
                elif not column.checked and isinstance(sent, int | float) and isinstance(value, float):
                    # A key promoted out of a free-form object (`$value`) is a DOUBLE for arithmetic;
                    # the object itself keeps the exact number (a 23-digit integer in the emulator).
                    sent = pytest.approx(float(sent))
                assert value == sent, f"{name}.{column.name} of {record.get('id', key)}"
                checked += 1
    assert checked > 1000


def value_at(record: dict, keys: tuple[str, ...]) -> object:
    """The value at `keys` in a record; None where a level is missing or null."""
    value: object = record
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
