"""How a windowed read (events) is cut: enough chains to keep every request slot busy, never more
requests than a page's worth of them, and exactly the truth whatever the cut.

A window is one chain of pages, read one page per round trip; the read opens with the first page of
its whole range and cuts the rest by that page's density.
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klaviyo_emulator.runner import EmulatorOptions, run_emulator_in_thread
from source_klaviyo.datetimes import format_datetime, parse_datetime
from source_klaviyo.engine import (
    PAGES_PER_WINDOW,
    SHORTEST_WINDOW,
    UPPER_MARGIN,
    WINDOWS_PER_REQUEST_SLOT,
    _window_edges,
    _window_length,
)
from tests.connector.helpers import read_in_process

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
SLOTS = 10  # num_workers' default; the XL burst does not bound it


@settings(max_examples=300, deadline=None)
@given(
    start=st.datetimes(
        min_value=datetime(2015, 1, 1), max_value=datetime(2026, 1, 1), timezones=st.just(UTC)
    ),
    span=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=1200)),
    declared=st.timedeltas(min_value=timedelta(hours=1), max_value=timedelta(days=60)),
    wanted=st.integers(min_value=1, max_value=200),
)
def test_a_range_is_cut_into_the_windows_asked_for_and_covered_exactly(start, span, declared, wanted) -> None:
    start = start.replace(microsecond=0)
    upper = start + span
    edges = _window_edges(start, upper, _window_length(declared, span, wanted))
    gaps = [b - a for a, b in itertools.pairwise(edges)]
    assert edges[0] == start
    assert edges[-1] == upper
    assert all(gap > timedelta(0) for gap in gaps)  # disjoint, half-open, in order
    assert all(gap <= declared for gap in gaps)  # the declared window is the longest
    assert all(gap >= SHORTEST_WINDOW for gap in gaps[:-1])
    assert len(gaps) >= min(wanted, span // SHORTEST_WINDOW)
    assert len(gaps) <= max(math.ceil(span / declared), 2 * wanted, 1) + 1


@pytest.fixture(scope="module")
def medium():
    # medium: ~16,000 events a month, spread over ~19 months
    with run_emulator_in_thread(
        EmulatorOptions(seed=3, scale="medium", rate_limits=False, anchor=NOW)
    ) as emu:
        yield emu


def truth_between(emu, low: datetime, high: datetime) -> set[str]:
    return {row["id"] for row in emu.truth("events") if low <= parse_datetime(row["datetime"]) < high}


@pytest.mark.parametrize("days", [14, 30])
def test_an_incremental_read_of_many_pages_is_cut_into_concurrent_chains(medium, days: int) -> None:
    start = NOW - timedelta(days=days)
    upper = NOW - UPPER_MARGIN
    expected = truth_between(medium, start, upper)
    pages = math.ceil(len(expected) / 1000)
    assert pages > 2  # the scenario needs a range the first page does not cover
    medium.reset_stats()
    sink, result = read_in_process(
        medium.url, ["events"], state={"events": {"datetime": format_datetime(start)}}, clock=lambda: NOW
    )
    assert result.ok, sink.errors
    ids = [record["id"] for record in sink.by_stream["events"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == expected
    assert sink.states["events"][-1] == {"datetime": format_datetime(upper)}
    windows = result.progress["events"].windows_total
    cap = WINDOWS_PER_REQUEST_SLOT * SLOTS
    assert min(math.ceil(pages / PAGES_PER_WINDOW), cap) // 2 <= windows <= cap + 1
    assert windows > 1
    # The opening page, then at most one more request than pages per window (a window's last page
    # is part-full): requests stay pages, not records.
    assert medium.stats()["requests_total"] <= 1 + pages + windows


def test_a_range_the_first_page_holds_is_read_with_that_one_request(medium) -> None:
    start = NOW - timedelta(hours=12)
    upper = NOW - UPPER_MARGIN
    expected = truth_between(medium, start, upper)
    assert 0 < len(expected) < 1000
    medium.reset_stats()
    sink, result = read_in_process(
        medium.url, ["events"], state={"events": {"datetime": format_datetime(start)}}, clock=lambda: NOW
    )
    assert result.ok, sink.errors
    assert {record["id"] for record in sink.by_stream["events"]} == expected
    assert medium.stats()["requests_total"] == 1
    assert result.progress["events"].windows_total == 1
