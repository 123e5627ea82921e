"""Incremental reads: after a mutation, a read from the previous final state returns exactly the changes."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from source_klaviyo.checkpoints import read_upper
from source_klaviyo.datetimes import parse_datetime, utc_now
from tests.connector.helpers import clock_ahead, read_in_process
from tests.truth import INCREMENTAL_TRUTHS, changes_of


@pytest.mark.parametrize("stream", list(INCREMENTAL_TRUTHS))
def test_incremental_read_returns_exactly_the_changed_records(fresh_emulator, stream):
    truth = INCREMENTAL_TRUTHS[stream]
    first, result = read_in_process(fresh_emulator.url, [stream])
    assert result.ok, first.errors
    state = first.final_state(stream)
    assert state is not None

    changed = fresh_emulator.mutate(truth.resource, **changes_of(truth.stream))
    changed_ids = set(changed["added"]) | set(changed["updated"]) | set(changed["archived"])
    changed_ids &= {row["id"] for row in truth.rows(fresh_emulator)}  # a stream of a subset: only its own
    assert changed_ids

    second, result = read_in_process(fresh_emulator.url, [stream], state={stream: state}, clock=clock_ahead)
    assert result.ok, second.errors
    ids = second.ids(stream)
    assert len(ids) == len(set(ids)), "a record was emitted twice in one read"
    assert set(ids) == changed_ids

    third, _ = read_in_process(fresh_emulator.url, [stream], state={stream: second.final_state(stream)},
                               clock=clock_ahead)
    assert third.ids(stream) == []


def test_a_state_is_never_past_now_even_with_future_dated_records(emulator):
    sink, _ = read_in_process(emulator.url, ["events", "profiles"], clock=utc_now)
    now = utc_now()
    assert datetime.fromisoformat(sink.final_state("events")["datetime"]) < now
    assert datetime.fromisoformat(sink.final_state("profiles")["updated"]) < now


def test_every_state_covers_only_emitted_records(emulator):
    """Replaying the read: at each STATE, every truth record below its cursor was already emitted."""
    sink, _ = read_in_process(emulator.url, ["events"], sync_mode="incremental")
    emitted: set[str] = set()
    records_by_id = {row["id"]: parse_datetime(row["datetime"]) for row in emulator.truth("events")}
    seen_states = 0
    position = 0
    for kind, payload in sink.events:
        if kind == "records":
            stream, count = payload
            emitted |= set(sink.ids(stream)[position:position + count])
            position += count
        elif kind == "state":
            seen_states += 1
            cursor = parse_datetime(payload[1]["datetime"])  # the records' are in several forms
            missing = [i for i, dt in records_by_id.items() if dt < cursor and i not in emitted]
            assert not missing
    assert seen_states >= 2


@pytest.mark.parametrize("days", [14, 3650])
def test_lookback_rereads_exactly_the_events_of_its_days(fresh_emulator, days):
    """From a state S, a read with a lookback of N days re-reads exactly the events stamped in
    [S - N days, now - UPPER_MARGIN), per the emulator's ground truth. The data spans about 60 days:
    14 days cut it, 3,650 days take all of it."""
    now = utc_now()
    first, _ = read_in_process(fresh_emulator.url, ["events"], clock=lambda: now)
    state = first.final_state("events")
    again, _ = read_in_process(fresh_emulator.url, ["events"], state={"events": state}, lookback_window=days,
                               clock=lambda: now)
    lower = datetime.fromisoformat(state["datetime"]) - timedelta(days=days)
    upper = read_upper(now)
    stamps = {row["id"]: datetime.fromisoformat(row["datetime"]) for row in fresh_emulator.truth("events")}
    want = {i for i, stamp in stamps.items() if lower <= stamp < upper}
    ids = again.ids("events")
    assert len(ids) == len(want)
    assert set(ids) == want
    everything = {i for i, stamp in stamps.items() if stamp < upper}
    assert set(first.ids("events")) == everything
    if days == 14:
        assert 0 < len(want) < len(everything)
    else:
        assert want == everything
