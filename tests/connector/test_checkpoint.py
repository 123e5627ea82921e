"""Ordered checkpoints: a state never passes a record that has not been emitted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from source_klaviyo.checkpoint import Checkpointer

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def test_windows_finishing_out_of_order_hold_the_position_at_the_earliest_unfinished():
    cp = Checkpointer([day(0), day(10), day(20), day(30)])
    cp.window_done(2)
    assert cp.position() == day(0)
    cp.window_done(0)
    assert cp.position() == day(10)
    cp.page_emitted(1, day(15))
    assert cp.position() == day(15)
    cp.window_done(1)
    assert cp.position() == day(30)
    assert cp.finished


def test_a_page_cursor_beyond_the_window_is_clamped_to_its_upper_edge():
    cp = Checkpointer([day(0), day(10), day(20)])
    cp.page_emitted(0, day(50))
    assert cp.position() == day(10)


# A scenario: windows of 10 days, each holding records on given days (sorted); the reader emits
# pages (one record each) in an arbitrary interleaving of windows, each window in its own order.
@given(
    st.lists(st.lists(st.integers(0, 9), max_size=6).map(sorted), min_size=1, max_size=6),
    st.randoms(use_true_random=False),
)
def test_emitted_state_never_passes_an_unemitted_record(windows, rnd):
    edges = [day(10 * i) for i in range(len(windows) + 1)]
    cp = Checkpointer(edges)
    records = [(w, day(10 * w + d)) for w, days in enumerate(windows) for d in days]
    queues = {w: [day(10 * w + d) for d in days] for w, days in enumerate(windows)}
    emitted: set[tuple[int, datetime]] = set()
    open_windows = list(queues)
    last = None
    while open_windows:
        w = rnd.choice(open_windows)
        if queues[w]:
            cursor = queues[w].pop(0)
            emitted.add((w, cursor))
            cp.page_emitted(w, cursor)
        else:
            cp.window_done(w)
            open_windows.remove(w)
        position = cp.position()
        assert all(r in emitted for r in records if r[1] < position)
        assert last is None or position >= last  # a state never goes back
        last = position
    assert cp.position() == edges[-1]
