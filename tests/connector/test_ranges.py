"""Spans of a read, cut while their chains run: every record is emitted once, and every state vouches
only for records already emitted (`ranges.py`)."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from source_klaviyo.ranges import NO_LOWER_BOUND, Span, Spans, normalised, plan_cuts, to_read

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def vouched(state: tuple[datetime, list[tuple[datetime, datetime]]], stamp: datetime) -> bool:
    """Does a state `(cursor, gaps)` say a record stamped `stamp` was emitted?"""
    cursor, gaps = state
    return stamp < cursor and not any(low <= stamp < high for low, high in gaps)


def test_spans_finishing_out_of_order_leave_gaps_below_the_cursor() -> None:
    spans = Spans([(day(0), day(30))], upper=day(30))
    first = spans.take()
    assert first is not None
    spans.page(first, records=1, first=day(1), last=day(2))
    second, third = spans.split(first, [day(10), day(20)])
    second.running = third.running = True
    spans.finish(third)
    assert spans.state() == (day(30), [(day(2), day(20))])  # two unread ranges that touch are one gap
    spans.page(second, records=1, first=day(11), last=day(15))
    assert spans.state() == (day(30), [(day(2), day(10)), (day(15), day(20))])
    spans.finish(first)
    assert spans.state() == (day(30), [(day(15), day(20))])
    spans.finish(second)
    assert spans.state() == (day(30), [])
    assert spans.finished


def test_the_last_unread_range_reaching_upper_is_the_cursor() -> None:
    spans = Spans([(day(0), day(30))], upper=day(30))
    span = spans.take()
    assert span is not None
    assert spans.state() == (day(0), [])
    spans.page(span, records=3, first=day(0), last=day(50))  # clamped to the span's high
    assert span.reached == day(30)


def test_a_split_must_cut_past_what_was_emitted_and_below_the_high() -> None:
    spans = Spans([(day(0), day(30))], upper=day(30))
    span = spans.take()
    assert span is not None
    spans.page(span, records=1, first=day(1), last=day(5))
    with pytest.raises(ValueError, match="do not cut"):
        spans.split(span, [day(5)])
    with pytest.raises(ValueError, match="do not cut"):
        spans.split(span, [day(30)])
    with pytest.raises(ValueError, match="do not cut"):
        spans.split(span, [day(20), day(10)])


def test_a_split_edge_inside_a_second_is_refused() -> None:
    """The new span's chain filters at second precision: an edge at `…:07.000321` would give the records
    of `…:07` before it to both chains (Klaviyo writes some cursors with microseconds)."""
    spans = Spans([(day(0), day(30))], upper=day(30))
    span = spans.take()
    assert span is not None
    with pytest.raises(ValueError, match="whole seconds"):
        spans.split(span, [day(10) + timedelta(microseconds=321)])
    assert span.high == day(30)


# -- a model of the engine's chains against a sorted server --------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    stamps=st.lists(st.integers(0, 400), min_size=0, max_size=120),
    page=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
)
def test_chains_cut_while_they_run_emit_each_record_once_and_states_only_vouch_for_emitted(
    stamps: list[int], page: int, seed: int
) -> None:
    """Records share seconds (ties); chains read sorted pages of `page` records from their low, at
    random turns; at random moments the scheduler cuts the running spans where `plan_cuts` says. A
    chain drops records at or past its span's (lowered) high and stops at the first page past it."""
    rng = random.Random(seed)
    upper = T0 + timedelta(seconds=401)
    records = sorted((T0 + timedelta(seconds=s), index) for index, s in enumerate(stamps))
    spans = Spans([(T0, upper)], upper=upper)
    chains: dict[int, tuple[Span, int]] = {}  # id(span) -> (span, how many records it has fetched)
    emitted: list[tuple[datetime, int]] = []
    vouched_before: set[int] = set()
    while True:
        while (span := spans.take()) is not None:
            chains[id(span)] = (span, 0)
        if not chains:
            break
        if rng.random() < 0.3:
            for group, span, edges in plan_cuts([spans], rng.randint(1, 4), min_records=page):
                assert group is spans
                for part in group.split(span, edges):
                    part.running = True
                    chains[id(part)] = (part, 0)
        key = rng.choice(sorted(chains))
        span, fetched = chains[key]
        served = [r for r in records if r[0] >= span.low and r[0] < upper][fetched:fetched + page]
        high = span.high
        past = bool(served) and served[-1][0] >= high
        mine = [r for r in served if r[0] < high]
        emitted.extend(mine)
        spans.page(span, records=len(mine), first=served[0][0] if served else None,
                   last=served[-1][0] if served else None)
        chains[key] = (span, fetched + len(served))
        if past or len(served) < page:
            spans.finish(span)
            del chains[key]
        state = spans.state()
        now_vouched = {index for stamp, index in records if vouched(state, stamp)}
        assert now_vouched <= {index for _, index in emitted}, "a state vouches for a record not emitted"
        assert vouched_before <= now_vouched, "a state took back what an earlier one vouched for"
        vouched_before = now_vouched
    assert sorted(index for _, index in emitted) == list(range(len(stamps)))  # each record exactly once
    assert spans.state() == (upper, [])


def test_cuts_go_to_the_spans_with_the_most_left_each_in_even_parts() -> None:
    spans = Spans([(day(0), day(100))], upper=day(100))
    span = spans.take()
    assert span is not None
    spans.page(span, records=100, first=day(0), last=day(1))  # 100 records a day: ~9,900 left
    plan = plan_cuts([spans], wanted=3, min_records=1000)
    assert len(plan) == 1
    group, cut, edges = plan[0]
    assert (group, cut) == (spans, span)
    assert edges == [day(1) + (day(100) - day(1)) * k / 4 for k in (1, 2, 3)]


def test_a_span_with_under_two_shares_left_is_not_cut() -> None:
    spans = Spans([(day(0), day(3))], upper=day(3))
    span = spans.take()
    assert span is not None
    spans.page(span, records=100, first=day(0), last=day(1))  # ~200 left
    assert plan_cuts([spans], wanted=10, min_records=101) == []
    assert plan_cuts([spans], wanted=10, min_records=100)[0][2] == [day(2)]


def test_nothing_is_cut_before_the_density_is_known() -> None:
    spans = Spans([(day(0), day(30))], upper=day(30))
    assert spans.take() is not None
    assert plan_cuts([spans], wanted=10, min_records=1) == []


def test_cut_edges_are_whole_seconds() -> None:
    spans = Spans([(day(0), day(0) + timedelta(seconds=7))], upper=day(0) + timedelta(seconds=7))
    span = spans.take()
    assert span is not None
    spans.page(span, records=10, first=day(0), last=day(0) + timedelta(seconds=1))
    (_, _, edges), = plan_cuts([spans], wanted=5, min_records=1)
    assert all(edge.microsecond == 0 for edge in edges)
    assert edges == sorted(set(edges))


# -- what a read covers --------------------------------------------------------------------------------


def test_a_read_covers_the_gaps_then_the_cursor_less_the_lookback() -> None:
    ranges = to_read(day(30), [(day(1), day(2)), (day(5), day(6))], start_date=None,
                     lookback=timedelta(days=3), upper=day(40))
    assert ranges == [(day(1), day(2)), (day(5), day(6)), (day(27), day(40))]


def test_gaps_and_lookback_that_overlap_are_one_range_and_start_date_clips() -> None:
    ranges = to_read(day(30), [(day(1), day(2)), (day(28), day(29))], start_date=day(1.5),
                     lookback=timedelta(days=3), upper=day(40))
    assert ranges == [(day(1.5), day(2)), (day(27), day(40))]


def test_without_state_a_read_starts_at_start_date_or_at_the_first_record() -> None:
    assert to_read(None, [], start_date=day(3), lookback=timedelta(0), upper=day(9)) == [(day(3), day(9))]
    unbounded = to_read(None, [], start_date=None, lookback=timedelta(0), upper=day(9))
    assert unbounded == [(NO_LOWER_BOUND, day(9))]


def test_a_cursor_past_upper_reads_nothing_but_its_gaps() -> None:
    assert to_read(day(50), [(day(1), day(2))], start_date=None, lookback=timedelta(0), upper=day(40)) == [
        (day(1), day(2))]


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), max_size=12))
def test_normalised_ranges_are_sorted_disjoint_and_cover_the_same_instants(
    pairs: list[tuple[int, int]],
) -> None:
    ranges = [(day(a), day(b)) for a, b in pairs]
    merged = normalised(ranges)
    assert all(a < b for a, b in merged)
    assert all(prev[1] < nxt[0] for prev, nxt in itertools.pairwise(merged))
    for n in range(0, 51):
        moment = day(n) + timedelta(hours=12)
        assert any(a <= moment < b for a, b in ranges) == any(a <= moment < b for a, b in merged)
