"""A 2.11+ concurrent date-range state resumes where the CDK that wrote it would (issue 14).

airbyte-cdk 6.x `ConcurrentCursor.stream_slices` counts every slice `[start, end]` as read; its next
sync reads the gaps between slices, `[start_date, first start)` when start_date is earlier, and
`[last end - lookback, now)`. Each case below migrates a legacy events state, reads it against the
emulator with each range as one chain (`split=False`, so a range is one request chain and its
bounds are visible), and checks the chains' bounds and the records against the ground truth:
nothing lost, and nothing before the last slice's end read again except what the lookback asks.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from source_klaviyo.datetimes import parse_datetime
from source_klaviyo.http import KlaviyoClient
from source_klaviyo.state_migrations import migrate_state
from tests.reliability.helpers import configured, fast_read, fixed, keys_read, upper_for

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)  # the tiny emulator's events: April and May 2026, ~25 a day
UPPER = upper_for(NOW)


def at(day: int) -> datetime:
    """Midnight of the `day`-th day from 2026-04-01 (day 1)."""
    return datetime(2026, 4, 1, tzinfo=UTC) + timedelta(days=day - 1)


def text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # as the concurrent CDK wrote them


@pytest.fixture(scope="module")
def emu() -> Iterator[RunningEmulator]:
    options = EmulatorOptions(seed=41, scale="tiny", rate_limits=False, anchor=NOW)
    with run_emulator_in_thread(options) as emulator:
        yield emulator


def recorder() -> tuple[type[KlaviyoClient], list[tuple[datetime, datetime]]]:
    """A client class noting the range of each chain's first request (a `links.next` has a cursor)."""
    chains: list[tuple[datetime, datetime]] = []

    class Recording(KlaviyoClient):
        async def get(self, url: str, params: Any = None, **kwargs: Any) -> Any:
            query = {**dict(parse_qsl(urlsplit(url).query)), **dict(params or ())}
            if "page[cursor]" not in query:
                parts = query["filter"].split("),")
                bounds = {op: parse_datetime(value) for op, value in
                          (part.rstrip(")").split("(datetime,") for part in parts)}
                chains.append((bounds["greater-or-equal"], bounds["less-than"]))
            return await super().get(url, params, **kwargs)

    return Recording, chains


Chains = list[tuple[datetime, datetime]]


def read_from_legacy(emu: RunningEmulator, slices: list[dict[str, str]], *, start_date: datetime,
                     lookback_days: int = 0) -> tuple[set[tuple[Any, ...]], Chains]:
    legacy = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "events"},
                                            "stream_state": {"state_type": "date-range", "slices": slices}}}]
    migrated = migrate_state(legacy, start_date, now=NOW).streams
    client_class, chains = recorder()
    sink, result = fast_read(emu.url, configured(["events"], split=False), state=migrated,
                             clock=fixed(NOW), client_class=client_class, start_date=text(start_date),
                             lookback_window=lookback_days)
    assert result.ok, sink.errors
    keys = keys_read(sink, "events")
    assert len(keys) == len(set(keys)), "a record emitted twice in one read"
    return set(keys), sorted(chains)


def truth_in(emu: RunningEmulator, *ranges: tuple[datetime, datetime]) -> set[tuple[Any, ...]]:
    return {(row["id"],) for row in emu.truth("events")
            if any(low <= parse_datetime(row["datetime"]) < high for low, high in ranges)}


@pytest.mark.parametrize("most_recent", [None, at(12)], ids=["without-most-recent", "with-most-recent"])
def test_one_slice_resumes_at_its_end_whatever_its_most_recent_cursor(emu, most_recent) -> None:
    slices = [{"start": text(at(1)), "end": text(at(31)),
               **({"most_recent_cursor_value": text(most_recent)} if most_recent else {})}]
    records, chains = read_from_legacy(emu, slices, start_date=at(1))
    assert chains == [(at(31), UPPER)]
    assert records == truth_in(emu, (at(31), UPPER))
    assert len(truth_in(emu, (at(1), at(31)))) > 500, "the slice held records, which are not read again"


def test_the_gap_between_two_slices_is_read_then_the_read_goes_on_after_the_last(emu) -> None:
    slices = [{"start": text(at(1)), "end": text(at(14))}, {"start": text(at(21)), "end": text(at(40))}]
    records, chains = read_from_legacy(emu, slices, start_date=at(1))
    assert chains == [(at(14), at(21)), (at(40), UPPER)]
    assert records == truth_in(emu, (at(14), at(21)), (at(40), UPPER))


def test_a_start_date_before_the_first_slice_reads_up_to_it(emu) -> None:
    slices = [{"start": text(at(10)), "end": text(at(40))}]
    records, chains = read_from_legacy(emu, slices, start_date=at(3))
    assert chains == [(at(3), at(10)), (at(40), UPPER)]
    assert records == truth_in(emu, (at(3), at(10)), (at(40), UPPER))


def test_the_lookback_window_reaches_back_from_the_last_slice_end_only(emu) -> None:
    slices = [{"start": text(at(1)), "end": text(at(14))}, {"start": text(at(21)), "end": text(at(45))}]
    records, chains = read_from_legacy(emu, slices, start_date=at(1), lookback_days=10)
    assert chains == [(at(14), at(21)), (at(35), UPPER)]
    assert records == truth_in(emu, (at(14), at(21)), (at(35), UPPER))
