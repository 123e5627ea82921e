"""Ordered checkpoints over the date windows of one partition.

A saved cursor `S` means exactly one thing everywhere in this connector: **every record whose
cursor is < S has been emitted**. The next read starts at `>= S`, so nothing is lost; records
stamped exactly `S` may be read again after an interruption (at-least-once), but never twice in the
same read because windows are half-open `[lower, upper)` and never overlap.

Windows may finish in any order (they are read concurrently). The position is the lower bound of the
earliest unfinished window, raised to the greatest cursor of the fully-emitted *sorted* pages inside
it (a sorted page ending at `c` proves everything `< c` in that window was emitted). When every window
is done the position is the upper bound of the last one.

    >>> from datetime import datetime, UTC
    >>> d = lambda day: datetime(2024, 1, day, tzinfo=UTC)
    >>> cp = Checkpointer([d(1), d(10), d(20)])
    >>> cp.window_done(1); cp.position() == d(1)
    True
    >>> cp.page_emitted(0, d(5)); cp.position() == d(5)
    True
    >>> cp.window_done(0); cp.position() == d(20)
    True
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise


class Checkpointer:
    """Tracks emitted progress over windows `[edges[i], edges[i+1])`, i = 0 … len(edges) - 2."""

    def __init__(self, edges: list[datetime]) -> None:
        if len(edges) < 2 or any(a >= b for a, b in pairwise(edges)):
            raise ValueError("window edges must be at least two strictly increasing datetimes")
        self._edges = edges
        self._progress: list[datetime] = list(edges[:-1])
        self._done = [False] * (len(edges) - 1)
        self._first_open = 0

    @property
    def windows(self) -> int:
        return len(self._done)

    def window(self, index: int) -> tuple[datetime, datetime]:
        return self._edges[index], self._edges[index + 1]

    def page_emitted(self, index: int, max_cursor: datetime | None) -> None:
        """A sorted page of window `index`, whose greatest cursor is `max_cursor`, was emitted."""
        if max_cursor is not None and max_cursor > self._progress[index]:
            self._progress[index] = min(max_cursor, self._edges[index + 1])

    def window_done(self, index: int) -> None:
        self._done[index] = True
        while self._first_open < len(self._done) and self._done[self._first_open]:
            self._first_open += 1

    @property
    def finished(self) -> bool:
        return self._first_open == len(self._done)

    def position(self) -> datetime:
        """Every record with a cursor below this has been emitted."""
        if self.finished:
            return self._edges[-1]
        return self._progress[self._first_open]
