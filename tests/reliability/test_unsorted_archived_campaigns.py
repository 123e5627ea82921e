"""Klaviyo serves archived campaigns slightly unsorted (docs/emulator.md, "Quirks"), and so
does the emulator by default. This is why `streams.py` declares campaigns `assume_sorted=False`: the
engine then checkpoints a partition only once it is read whole.

The scenario: read campaigns, the read dies right after writing a STATE, a new read resumes from that
state. As declared, whichever state the crash follows, every archived campaign of the emulator's
truth is emitted by the two reads together. Declared `assume_sorted=True` (monkeypatched), a page that
ends on a record swapped one place forward yields a state whose cursor is past a record of the next
page: the resumed read starts at that cursor and the record is lost, which proves the quirk is
exercised. With the emulator's quirk switched off, the same declaration never over-promises.

Every page is a checkpoint opportunity here (`CHECKPOINT_EVERY_PAGES` = 1, pages of 4 records over 37
archived campaigns per channel), so every page boundary a swapped pair straddles is a chance to lose
a record; production checkpoints every 10 pages of 100, the same hazard at a lower rate.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from klaviyo_emulator.runner import RunningEmulator
from source_klaviyo import engine
from source_klaviyo.config import parse_config
from source_klaviyo.datetimes import parse_datetime
from source_klaviyo.engine import ReadResult, read_streams
from source_klaviyo.http import KlaviyoClient
from source_klaviyo.streams import STREAMS_BY_NAME
from tests.conftest import CAMPAIGNS_ANCHOR
from tests.connector.helpers import CollectingSink, InstantClock
from tests.reliability.helpers import API_KEY, configured, fixed

ANCHOR = CAMPAIGNS_ANCHOR
NOW = ANCHOR + timedelta(hours=1)  # every campaign is stamped at or before the anchor
PAGE_SIZE = 4  # medium scale: 37 archived campaigns per channel, 10 pages per archived partition
STREAM = "campaigns"


@pytest.fixture(autouse=True)
def checkpoint_after_every_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "CHECKPOINT_EVERY_PAGES", 1)  # read at run time by the engine


def declare_campaigns_sorted(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the declaration would be if the connector trusted Klaviyo's order."""
    stream = STREAMS_BY_NAME[STREAM]
    assert stream.incremental is not None
    assert not stream.incremental.assume_sorted
    trusting = dataclasses.replace(stream.incremental, assume_sorted=True)
    monkeypatch.setitem(STREAMS_BY_NAME, STREAM, dataclasses.replace(stream, incremental=trusting))


class SimulatedCrash(Exception):
    """The process died right after writing a STATE line."""


@dataclass
class CrashingSink(CollectingSink):
    """Keeps what a read wrote until `crash_after(self)` says the campaigns STATE just written was the
    last line out: the read is then stopped and anything it does later is dropped, as if killed."""

    crash_after: Callable[[CollectingSink], bool] = lambda sink: False
    crashed: bool = False

    def records(self, stream: str, records: list[dict]) -> None:
        if not self.crashed:
            super().records(stream, records)

    def state(self, stream: str, stream_state: dict, record_count: int) -> None:
        if self.crashed:
            return
        super().state(stream, stream_state, record_count)
        if stream == STREAM and self.crash_after(self):
            self.crashed = True
            raise SimulatedCrash

    def stream_status(self, stream: str, status: str) -> None:
        if not self.crashed:
            super().stream_status(stream, status)

    def error(self, stream: str | None, error: Any) -> None:
        if not self.crashed:
            super().error(stream, error)


def read(url: str, state: dict[str, Any] | None, sink: CollectingSink) -> ReadResult:
    """One in-process read of campaigns (the current declaration) into `sink`, on simulated time."""
    config, _ = parse_config({"api_key": API_KEY, "base_url": url})

    async def go() -> ReadResult:
        async with KlaviyoClient(config, clock=InstantClock()) as client:
            streams = configured([STREAM], page_size=PAGE_SIZE)
            return await read_streams(config, streams, {STREAM: state} if state else {}, sink,  # type: ignore[arg-type]
                                      client=client, clock=fixed(NOW))

    return asyncio.run(go())


def archived_truth(emu: RunningEmulator) -> dict[str, tuple[str, datetime]]:
    """Archived campaign id -> (channel, updated_at), from the emulator's ground truth."""
    return {row["id"]: (row["channel"], parse_datetime(row["updated_at"]))
            for row in emu.truth("campaigns") if row["archived"]}


def promised_but_not_emitted(sink: CollectingSink, archived: dict[str, tuple[str, datetime]]) -> set[str]:
    """Archived campaigns the last state vouches for (cursor below its partition's) that the read has
    not emitted: a read resuming from that state starts at the cursor and never sees them."""
    state = sink.final_state(STREAM) or {}
    emitted = set(sink.ids(STREAM))
    missing: set[str] = set()
    for entry in state.get("states", []):
        if entry["partition"]["archived"] != "true":
            continue
        channel, cursor = entry["partition"]["campaign_type"], parse_datetime(entry["cursor"]["updated_at"])
        missing |= {rid for rid, (ch, updated) in archived.items()
                    if ch == channel and updated < cursor and rid not in emitted}
    return missing


def crash_and_resume(url: str, k: int) -> tuple[CrashingSink, CollectingSink]:
    """A read killed right after its k-th campaigns STATE, and the read resuming from that state."""
    cut = CrashingSink(crash_after=lambda sink: len(sink.states[STREAM]) == k)
    read(url, None, cut)
    assert cut.crashed, f"the read ended before its state {k}"
    resumed = CollectingSink()
    result = read(url, cut.final_state(STREAM), resumed)
    assert result.ok, result.errors
    return cut, resumed


@dataclass
class Outcome:
    states: int  # in an uninterrupted read
    lost: dict[int, set[str]]  # crash after state k -> archived campaigns neither read emitted
    promised: dict[int, set[str]]  # crash after state k -> what that state vouched for but was not emitted


def crash_after_every_state(emu: RunningEmulator) -> Outcome:
    """The scenario: for every state an uninterrupted read writes, a read killed right after it and
    resumed from it; the union of the two reads is compared with the truth."""
    archived = archived_truth(emu)
    everything = {row["id"] for row in emu.truth("campaigns")}
    whole = CollectingSink()
    assert read(emu.url, None, whole).ok
    states = len(whole.states[STREAM])
    outcome = Outcome(states, {}, {})
    for k in range(1, states + 1):
        cut, resumed = crash_and_resume(emu.url, k)
        union = set(cut.ids(STREAM)) | set(resumed.ids(STREAM))
        outcome.lost[k] = set(archived) - union
        outcome.promised[k] = promised_but_not_emitted(cut, archived)
        assert union <= everything, f"crash after state {k}"
        assert everything - union == outcome.lost[k], f"crash after state {k}"
    return outcome


def test_as_declared_a_crash_after_any_state_loses_no_archived_campaign(faithful: RunningEmulator) -> None:
    outcome = crash_after_every_state(faithful)
    assert outcome.states >= 6, "a state at least per partition (3 channels x archived or not)"
    lost = {k: ids for k, ids in outcome.lost.items() if ids}
    assert not lost, f"archived campaigns lost after a crash: {lost}"
    assert not any(outcome.promised.values()), "a state vouched for records not emitted"


def test_trusting_the_order_checkpoints_past_swapped_records_and_resumes_lose_them(
    faithful: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    declare_campaigns_sorted(monkeypatch)
    outcome = crash_after_every_state(faithful)
    assert outcome.states > 30, "the archived partitions were checkpointed page by page"
    losing = [k for k, ids in outcome.lost.items() if ids]
    assert losing, "the quirk was not exercised: no crash point lost an archived campaign"
    # the mechanism: exactly what the state vouched for without having emitted it is lost
    assert outcome.lost == outcome.promised


def test_trusting_the_order_is_harmless_only_when_the_order_is_perfect(
    perfectly_sorted: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: against sorted archived campaigns the same declaration never writes a state that
    vouches for a record not yet emitted (what the test above shows a resume loses), so the losses
    come from the unsorted pages and nothing else."""
    declare_campaigns_sorted(monkeypatch)
    archived = archived_truth(perfectly_sorted)
    watched = CrashingSink(crash_after=lambda sink: bool(promised_but_not_emitted(sink, archived)))
    assert read(perfectly_sorted.url, None, watched).ok
    assert not watched.crashed, f"over-promised: {promised_but_not_emitted(watched, archived)}"
    assert len(watched.states[STREAM]) > 30, "the archived partitions were checkpointed page by page"
    assert set(archived) <= set(watched.ids(STREAM))
