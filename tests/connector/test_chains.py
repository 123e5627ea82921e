"""The engine reads a range in as many chains as its bucket has room for, cutting running chains while
they run (work stealing), against the emulator: each record exactly once, states that only vouch for
what was emitted, and the room filled — an incremental read of a few busy days as much as a backfill.

The client here holds a fixed in-flight limit (the controller's own sizing is tested on simulated time
in test_concurrency.py), so the number of chains the engine runs is known."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from source_klaviyo.checkpoints import UPPER_MARGIN
from source_klaviyo.datetimes import format_datetime, parse_datetime
from source_klaviyo.http import KlaviyoClient
from source_klaviyo.streams import STREAMS_BY_NAME
from tests.connector.helpers import CollectingSink, read_in_process

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
UPPER = NOW - UPPER_MARGIN
ROOM = 12


@pytest.fixture(scope="module")
def medium() -> Iterator[RunningEmulator]:
    # medium: ~16,000 events a month over ~18 months; 80 lists of up to thousands of members
    options = EmulatorOptions(seed=3, scale="medium", rate_limits=False, anchor=NOW)
    with run_emulator_in_thread(options) as emu:
        yield emu


class Roomy(KlaviyoClient):
    """Room for ROOM requests in flight per bucket, whatever the round trips measured."""

    def in_flight_limit(self, bucket: str, tier: str) -> int:
        return ROOM


def stamps(emu: RunningEmulator, resource: str, field: str) -> dict[str, datetime]:
    return {row["id"]: parse_datetime(row[field]) for row in emu.truth(resource)}


def assert_states_vouch_only_for_emitted(sink: CollectingSink, stream: str, cursor: str,
                                         truth: dict[str, datetime], since: datetime | None = None) -> None:
    """At every STATE, each truth record it vouches for (below its cursor, outside its gaps, and in the
    read's range, from `since`) was emitted before it; and no state takes back what an earlier one
    vouched for."""
    emitted: set[str] = set()
    position = 0
    vouched_before: set[str] = set()
    records = sink.by_stream.get(stream, [])
    for kind, payload in sink.events:
        if kind == "records" and payload[0] == stream:
            emitted.update(record["id"] for record in records[position:position + payload[1]])
            position += payload[1]
        elif kind == "state" and payload[0] == stream:
            state = payload[1]
            below = parse_datetime(state[cursor])
            gaps = [(parse_datetime(g["start"]), parse_datetime(g["end"])) for g in state.get("gaps", ())]
            vouched = {key for key, at in truth.items()
                       if (since is None or since <= at) and at < below and at < UPPER
                       and not any(lo <= at < hi for lo, hi in gaps)}
            assert vouched - vouched_before <= emitted, "a state vouches for records not yet emitted"
            assert vouched_before <= vouched, "a state took back what an earlier one vouched for"
            vouched_before = vouched


@pytest.mark.parametrize("days", [5, 14, 30])
def test_an_incremental_read_of_busy_days_fills_the_room_and_reads_each_event_once(medium, days) -> None:
    start = NOW - timedelta(days=days)
    truth = stamps(medium, "events", "datetime")
    expected = {key for key, at in truth.items() if start <= at < UPPER}
    assert len(expected) > 3000, "the read spans a few pages of 1,000"
    state = {"events": {"datetime": format_datetime(start)}}
    sink, result = read_in_process(medium.url, ["events"], state=state, clock=lambda: NOW, client_class=Roomy)
    assert result.ok, sink.errors
    ids = sink.ids("events")
    assert len(ids) == len(set(ids))
    assert set(ids) == expected
    assert sink.final_state("events") == {"datetime": format_datetime(UPPER)}
    # The probe's page, then the range cut into chains: as many as the room holds, or the pages.
    assert result.progress["events"].windows_total >= min(ROOM, len(expected) // 1000)
    assert_states_vouch_only_for_emitted(sink, "events", "datetime", truth, since=start)


@pytest.mark.parametrize("days", [5, 7, 9])
def test_a_read_of_a_few_pages_reads_each_chain_in_one_page_after_the_probe(medium, days) -> None:
    """The range past the probe's page is cut by a density a hundred records measured: pieces of an
    estimated page could hold two, and the read would wait a round trip more. Here more than a page
    is left and the room is more than the pages: every chain, the probe's included, reads one page
    (a request per window)."""
    start = NOW - timedelta(days=days)
    expected = {key for key, at in stamps(medium, "events", "datetime").items() if start <= at < UPPER}
    assert 3000 < len(expected) < ROOM * 1000 // 2, "a few pages, fewer than the room"
    state = {"events": {"datetime": format_datetime(start)}}
    sink, result = read_in_process(medium.url, ["events"], state=state, clock=lambda: NOW, client_class=Roomy)
    assert result.ok, sink.errors
    assert set(sink.ids("events")) == expected
    assert result.client_stats.requests == result.progress["events"].windows_total


def test_a_backfill_cut_while_it_runs_emits_each_profile_once_with_states_in_order(
    medium, monkeypatch
) -> None:
    profiles = dataclasses.replace(STREAMS_BY_NAME["profiles"], page_size=73)  # pages end anywhere
    monkeypatch.setitem(STREAMS_BY_NAME, "profiles", profiles)
    since = NOW - timedelta(days=200)
    truth = {key: at for key, at in stamps(medium, "profiles", "updated").items() if at >= since}
    sink, result = read_in_process(medium.url, ["profiles"], clock=lambda: NOW, client_class=Roomy,
                                   disable_fetching_predictive_analytics=True,
                                   start_date=format_datetime(since))
    assert result.ok, sink.errors
    ids = sink.ids("profiles")
    assert len(ids) == len(set(ids))
    assert set(ids) == {key for key, at in truth.items() if at < UPPER}
    assert result.progress["profiles"].windows_total >= ROOM
    assert_states_vouch_only_for_emitted(sink, "profiles", "updated", truth, since=since)


def test_a_big_list_s_members_are_read_in_chains_cut_by_join_date(medium) -> None:
    rows = medium.truth("list-memberships")
    members: dict[str, set[tuple[str, str]]] = {}
    for row in rows:
        members.setdefault(row["list_id"], set()).add((row["list_id"], row["profile_id"]))
    biggest = max(len(keys) for keys in members.values())
    assert biggest > 10 * 100, "a list of more than ten pages"
    sink, result = read_in_process(medium.url, ["list_memberships"], sync_mode="full_refresh",
                                   clock=lambda: NOW, client_class=Roomy)
    assert result.ok, sink.errors
    got = [(r["list_id"], r["profile_id"]) for r in sink.by_stream["list_memberships"]]
    assert len(got) == len(set(got))
    assert set(got) == {key for keys in members.values() for key in keys}
    progress = result.progress["list_memberships"]
    assert progress.windows_total > len(members)  # some list was read in more than one chain
    assert progress.partitions_done == progress.partitions_total == len(members)
