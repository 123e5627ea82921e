"""Klaviyo's misbehaviours the emulator reproduces by default (docs/emulator.md, "Quirks").

Archived campaigns sorted by `updated_at` come back slightly unsorted: a few adjacent records swapped,
across page boundaries too, the same sequence for every page size; every record still exactly once."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klaviyo_emulator.cli import parser
from tests.conftest import CAMPAIGNS_ANCHOR, campaigns_emulator
from tests.emulator.helpers import CHANNELS, assert_unique, ids, parse_dt, records, request, walk

ANCHOR = CAMPAIGNS_ANCHOR
FEW = settings(max_examples=15, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture])


def _archived(channel: str) -> str:
    return f"equals(messages.channel,'{channel}'),equals(archived,true)"


def _walk(emu, channel: str, sort: str, size: int) -> list[list[tuple[str, datetime]]]:
    pages = walk(emu.url, "/api/campaigns", {"filter": _archived(channel), "sort": sort, "page[size]": size})
    return [
        [(r["id"], parse_dt(r["attributes"]["updated_at"])) for r in page.json()["data"]] for page in pages
    ]


def _true_order(emu, channel: str, descending: bool) -> list[str]:
    rows = [r for r in emu.truth("campaigns") if r["channel"] == channel and r["archived"]]
    return [r["id"] for r in sorted(rows, key=lambda r: parse_dt(r["updated_at"]), reverse=descending)]


def _inversions(flat: list[tuple[str, datetime]], descending: bool) -> int:
    return sum(1 for (_, a), (_, b) in pairwise(flat) if (a < b if descending else a > b))


@FEW
@given(size=st.integers(1, 40), channel=st.sampled_from(CHANNELS), descending=st.booleans())
def test_archived_campaigns_come_slightly_unsorted_but_each_exactly_once(faithful, size, channel, descending):
    pages = _walk(faithful, channel, "-updated_at" if descending else "updated_at", size)
    flat = [record for page in pages for record in page]
    got = [rid for rid, _ in flat]
    assert_unique(got)
    true_order = _true_order(faithful, channel, descending)
    assert sorted(got) == sorted(true_order)
    assert all(len(page) == size for page in pages[:-1]), "every page but the last is full"
    # Slightly: no record is more than one place from where it belongs.
    assert all(abs(got.index(rid) - pos) <= 1 for pos, rid in enumerate(true_order))
    assert _inversions(flat, descending) >= 2
    # The same sequence whatever the page size: a walk sees what another walk sees.
    one_by_one = [rid for page in _walk(faithful, channel, "-updated_at" if descending else "updated_at", 1)
                  for rid, _ in page]
    assert got == one_by_one


def test_swapped_pairs_straddle_page_boundaries(faithful):
    crossings = 0
    for channel in CHANNELS:
        pages = _walk(faithful, channel, "updated_at", 4)
        crossings += sum(1 for a, b in pairwise(pages) if b and a[-1][1] > b[0][1])
    assert crossings >= 2, "a page ends on a record that belongs after the first of the next page"


@pytest.mark.parametrize(
    ("sort", "archived"), [("updated_at", "false"), ("created_at", "true"), ("id", "true")]
)
def test_other_campaign_queries_stay_sorted(faithful, sort, archived):
    flt = f"equals(messages.channel,'email'),equals(archived,{archived})"
    got = records(walk(faithful.url, "/api/campaigns", {"filter": flt, "sort": sort, "page[size]": 5}))
    values = [r["id"] if sort == "id" else parse_dt(r["attributes"][sort]) for r in got]
    assert len(values) > 5
    assert values == sorted(values)


def test_the_quirk_can_be_switched_off(perfectly_sorted):
    for channel in CHANNELS:
        flat = [record for page in _walk(perfectly_sorted, channel, "updated_at", 4) for record in page]
        assert [rid for rid, _ in flat] == _true_order(perfectly_sorted, channel, False)
    args = parser().parse_args(["serve", "--port", "0", "--sorted-archived-campaigns"])
    assert args.sorted_archived_campaigns is True


def test_updates_between_pages_never_skip_a_held_back_record():
    """Records updated mid-walk move to the end (keyset: served again, in their new version); no record
    still archived at the end of the walk is ever skipped, held back or not."""
    with campaigns_emulator() as emu:
        served: list[str] = []
        updated: set[str] = set()
        url: str | None = None
        params = {"filter": _archived("sms"), "sort": "updated_at", "page[size]": 3}
        while True:
            page = request(emu.url, url or "/api/campaigns", None if url else params).json()
            served += ids(page["data"])
            url = page["links"]["next"]
            if url is None:
                break
            updated |= set(emu.mutate("campaigns", update=4)["updated"])
        still = {r["id"] for r in emu.truth("campaigns") if r["channel"] == "sms" and r["archived"]}
        assert still <= set(served)
        repeated = {rid for rid in served if served.count(rid) > 1}
        assert repeated <= updated
