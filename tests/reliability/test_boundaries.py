"""Property tests at the edges: start dates, window and page sizes, many records in one second at window
and page edges, records dated in the future, clock skew, empty windows, archived records."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from source_klaviyo import checkpoints, engine
from source_klaviyo.datetimes import floor_second, parse_datetime, utc_now
from source_klaviyo.streams import STREAMS_BY_NAME
from tests.reliability.helpers import (
    assert_exact,
    configured,
    covered_by_last_state,
    cursor_by_key,
    expected_keys,
    fast_read,
    fixed,
    key_of,
    keys_read,
    states_cursor,
    truth_rows,
    upper_for,
)
from tests.truth import PLAIN_INCREMENTAL, TRUTHS

ANCHOR = datetime(2026, 6, 1, 12, tzinfo=UTC)
NOW = ANCHOR + timedelta(hours=1)  # the emulator plants a few records days after its anchor: the future
STREAMS = PLAIN_INCREMENTAL  # every cursor, partition and filter shape


def one_sorted_cursor(name: str) -> bool:
    """Pages sorted by the stream's one cursor (no partitions) over every record of its resource."""
    stream = STREAMS_BY_NAME[name]
    incremental = stream.incremental
    assert incremental is not None
    return (TRUTHS[name].keep is None and not stream.partitions and incremental.sortable
            and incremental.assume_sorted)


# Where bursts of records in one second are planted, and checkpoints land inside them.
SORTED = [name for name in STREAMS if one_sorted_cursor(name)]
# Archiving moves a record to the other partition of a stream partitioned by `archived`.
ARCHIVABLE = [name for name in STREAMS
              if "archived" in {axis.key for axis in STREAMS_BY_NAME[name].partitions}]
PROPERTY = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def emu() -> Iterator[RunningEmulator]:
    with run_emulator_in_thread(
        EmulatorOptions(seed=31, scale="tiny", rate_limits=False, anchor=ANCHOR)
    ) as emulator:
        yield emulator


def cursors(emu: RunningEmulator, stream: str) -> list[datetime]:
    return sorted(cursor_by_key(emu, stream).values())


def busiest_second(emu: RunningEmulator) -> datetime:
    values = cursors(emu, "events")
    return max(set(values), key=values.count)


def test_the_emulator_has_the_edges_these_properties_need(emu: RunningEmulator) -> None:
    events = cursors(emu, "events")
    assert events.count(busiest_second(emu)) >= 50, "no burst of records in one second"
    assert any(moment > NOW for moment in events), "no record dated in the future"


@PROPERTY
@given(data=st.data(), stream=st.sampled_from(STREAMS), mode=st.sampled_from(["incremental", "full_refresh"]),
       nudge=st.sampled_from([-1, 0, 1]))
def test_any_start_date_reads_exactly_the_records_from_its_second(emu, data, stream, mode, nudge) -> None:
    values = [*cursors(emu, stream), busiest_second(emu)]
    start = data.draw(st.sampled_from(values)) + timedelta(
        seconds=nudge, microseconds=data.draw(st.sampled_from([0, 999_999]))
    )
    sink, result = fast_read(emu.url, [stream], sync_mode=mode, clock=fixed(NOW),
                             start_date=start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    assert result.ok, sink.errors
    upper = upper_for(NOW) if mode == "incremental" else None
    assert_exact(sink, stream, expected_keys(emu, stream, lower=floor_second(start), upper=upper))


@PROPERTY
@given(data=st.data(), cut=st.booleans(), page_size=st.sampled_from([None, 10, 37]),
       lag=st.sampled_from([0, 1, 5, 6]))
def test_two_reads_split_at_any_second_read_each_record_exactly_once(emu, data, cut, page_size, lag) -> None:
    """The first read's upper edge (now - 5 s) falls on a record's second, on the busiest second, or
    next to it; chains cut while they run and pages cut the data anywhere. Nothing is lost or read
    twice, and no state passes the first read's now."""
    stream = data.draw(st.sampled_from(STREAMS))
    at = data.draw(st.sampled_from([*cursors(emu, stream)[1:-1], busiest_second(emu)]))
    split = at + timedelta(seconds=lag)
    chosen = configured([stream], split=cut, page_size=page_size)
    first, result = fast_read(emu.url, chosen, clock=fixed(split))
    assert result.ok, first.errors
    upper1 = upper_for(split)
    assert_exact(first, stream, expected_keys(emu, stream, upper=upper1), " (first read)")
    assert all(cursor == upper1 for cursor in states_cursor(stream, first.final_state(stream)))

    second, result = fast_read(emu.url, chosen, state={stream: first.final_state(stream)}, clock=fixed(NOW))
    assert result.ok, second.errors
    assert_exact(
        second, stream, expected_keys(emu, stream, lower=upper1, upper=upper_for(NOW)), " (second read)"
    )
    assert not set(keys_read(first, stream)) & set(keys_read(second, stream))



def probe_ends_inside_a_microsecond_second(emu: RunningEmulator) -> list[datetime]:
    """Start seconds from which the first page of an events read (the engine's `PROBE_RECORDS`) ends
    on a record of a second whose events carry microseconds (`2026-06-01 10:00:07.000321+00:00`, the
    emulator's quirk `event_datetime_space`), after another record of that same second."""
    rows = sorted((parse_datetime(row["datetime"]), "." in row["datetime"])
                  for row in truth_rows(emu, "events"))
    seconds = [floor_second(moment) for moment, _ in rows]
    firsts = [i for i in range(len(rows)) if i == 0 or seconds[i - 1] < seconds[i]]
    starts = []
    for q in firsts:
        p = q + engine.PROBE_RECORDS - 1
        if p + 1 < len(rows) and rows[p][1] and seconds[p - 1] == seconds[p]:
            starts.append(seconds[q])
    return starts


def test_a_probe_page_ending_inside_a_microsecond_second_reads_that_second_once(emu: RunningEmulator) -> None:
    """The engine cuts a range where its first (probe) page ends, to read the rest in full-size pages.
    Cut at the last record's own instant (with its microseconds), the rest's `greater-or-equal` filter,
    at second precision, would re-read the records of that second the probe had emitted."""
    starts = probe_ends_inside_a_microsecond_second(emu)
    assert starts, "no probe page of this world ends inside a second with microseconds"
    for start in starts[:: max(1, len(starts) // 4)]:
        for mode in ("incremental", "full_refresh"):
            sink, result = fast_read(emu.url, ["events"], sync_mode=mode, clock=fixed(NOW),
                                     start_date=start.isoformat())
            assert result.ok, sink.errors
            upper = upper_for(NOW) if mode == "incremental" else None
            expected = expected_keys(emu, "events", lower=start, upper=upper)
            assert_exact(sink, "events", expected, f" from {start} ({mode})")


@pytest.fixture(scope="module")
def bursty() -> Iterator[RunningEmulator]:
    """Bursts of records sharing one second (the real now: mutations stamp it) in every sorted stream."""
    with run_emulator_in_thread(EmulatorOptions(seed=37, scale="tiny", rate_limits=False)) as emulator:
        for resource in dict.fromkeys(TRUTHS[name].resource for name in SORTED):
            emulator.mutate(resource, add=23)
        yield emulator


@PROPERTY
@given(
    stream=st.sampled_from(SORTED),
    page_size=st.sampled_from([1, 2, 3, 4, 7, 10]),
)
def test_resuming_from_any_checkpoint_inside_a_burst_loses_nothing(
    bursty, monkeypatch, stream, page_size
) -> None:
    """A state after every page puts checkpoints inside runs of records sharing one second. Resuming from
    each of them, the records emitted before it plus the resumed read are the truth, and only records of
    the checkpoint's own second are read twice."""
    monkeypatch.setattr(engine, "CHECKPOINT_EVERY_PAGES", 1)
    now = utc_now() + timedelta(seconds=8)
    upper = upper_for(now)
    since = now - timedelta(hours=2)  # the bursts and a little before them: small reads
    options = {"clock": fixed(now), "start_date": since.strftime("%Y-%m-%dT%H:%M:%SZ")}
    full, result = fast_read(bursty.url, configured([stream], page_size=page_size), **options)
    assert result.ok, full.errors
    expected = expected_keys(bursty, stream, lower=floor_second(since), upper=upper)
    assert_exact(full, stream, expected)
    states = full.states[stream]
    assert len(states) >= 3
    emitted_before: list[set] = []
    seen: list = []
    position = 0
    records = full.by_stream[stream]
    for kind, payload in full.events:
        if kind == "records" and payload[0] == stream:
            seen += [key_of(stream, r) for r in records[position:position + payload[1]]]
            position += payload[1]
        elif kind == "state" and payload[0] == stream:
            emitted_before.append(set(seen))
    times = cursor_by_key(bursty, stream)
    for state, before in list(zip(states, emitted_before, strict=True))[:: max(1, len(states) // 6)]:
        resumed, result = fast_read(
            bursty.url, configured([stream], page_size=page_size), state={stream: state}, **options
        )
        assert result.ok
        again = set(keys_read(resumed, stream))
        assert before | again == expected
        edge = states_cursor(stream, state)[0]
        assert all(times[key] >= edge for key in before & again), "re-read a record below the checkpoint"
        if STREAMS_BY_NAME[stream].split_by is None:  # one chain: only the checkpoint's second comes twice
            assert all(times[key] == edge for key in before & again), "re-read a record before the checkpoint"
    assert covered_by_last_state(full, stream) == expected


@pytest.mark.parametrize("skew", [timedelta(hours=-3), timedelta(hours=3), timedelta(days=2)])
def test_clock_skew_never_moves_state_past_the_connectors_now_and_loses_nothing(skew: timedelta) -> None:
    """The emulator's clock runs `skew` ahead of ours: its newest records are in our future."""
    ours = utc_now()
    with run_emulator_in_thread(
        EmulatorOptions(
            seed=41,
            scale="tiny",
            rate_limits=False,
            anchor=(ours + skew).replace(minute=0, second=0, microsecond=0),
        )
    ) as emu:
        first, result = fast_read(emu.url, STREAMS, clock=fixed(ours))
        assert result.ok
        for stream in STREAMS:
            assert all(
                cursor <= ours - checkpoints.UPPER_MARGIN
                for cursor in states_cursor(stream, first.final_state(stream))
            )
            assert_exact(first, stream, expected_keys(emu, stream, upper=upper_for(ours)))
        later = ours + skew + timedelta(days=10)  # our clock catches up
        states = {stream: first.final_state(stream) for stream in STREAMS}
        second, result = fast_read(emu.url, STREAMS, state=states, clock=fixed(later))
        assert result.ok
        for stream in STREAMS:
            assert set(keys_read(first, stream)) | set(keys_read(second, stream)) == expected_keys(
                emu, stream
            )
            assert not set(keys_read(first, stream)) & set(keys_read(second, stream))


def test_empty_windows_and_reads_with_nothing_new_complete_and_advance_state(emu: RunningEmulator) -> None:
    last_event = cursors(emu, "events")
    after_all = max(m for m in last_event if m < NOW) + timedelta(seconds=1)
    chosen = configured(["events"], page_size=50)  # cut into many chains, some of them over nothing
    nine_days = (NOW - timedelta(days=9)).isoformat()
    sink, result = fast_read(emu.url, chosen, clock=fixed(NOW), start_date=nine_days)
    assert result.ok
    assert_exact(
        sink, "events", expected_keys(emu, "events", lower=NOW - timedelta(days=9), upper=upper_for(NOW))
    )
    nothing, result = fast_read(emu.url, ["events", "profiles"], clock=fixed(NOW),
                                state={"events": {"datetime": after_all.isoformat()},
                                       "profiles": {"updated": upper_for(NOW).isoformat()}})
    assert result.ok
    assert not nothing.by_stream.get("events")
    assert not nothing.by_stream.get("profiles")
    assert nothing.final_state("events") == {"datetime": upper_for(NOW).isoformat()}
    assert nothing.final_state("profiles") == {"updated": upper_for(NOW).isoformat()}


@pytest.mark.parametrize("stream", ARCHIVABLE)
def test_archived_records_move_partition_and_are_read_once(fresh_emulator: RunningEmulator,
                                                           stream: str) -> None:
    """Klaviyo lists archived campaigns and flows only under `archived=true`; archiving bumps the cursor."""
    now = utc_now()
    first, _ = fast_read(fresh_emulator.url, [stream], clock=fixed(now))
    changed = fresh_emulator.mutate(TRUTHS[stream].resource, archive=2)
    later = utc_now() + timedelta(seconds=8)
    second, result = fast_read(fresh_emulator.url, [stream], state={stream: first.final_state(stream)},
                               clock=fixed(later))
    assert result.ok
    assert sorted(r["id"] for r in second.by_stream[stream]) == sorted(changed["archived"])
    assert all(r["attributes"]["archived"] is True for r in second.by_stream[stream])
    archived = {row["id"] for row in truth_rows(fresh_emulator, stream) if row.get("archived")}
    assert set(changed["archived"]) <= archived
    assert {p["partition"]["archived"] for p in second.final_state(stream)["states"]} == {"true", "false"}
    assert parse_datetime(
        second.final_state(stream)["states"][0]["cursor"][TRUTHS[stream].cursor]
    ) == upper_for(later)
