"""What a read of one partition has emitted, over cursor ranges read by chains that can be split.

A read covers half-open ranges of the cursor: `[start, upper)`, plus any gaps its saved state names.
Each range starts as one **span**, read by one chain of pages sorted by the cursor. To keep every
request slot busy, a running span can be **split** at an instant past what it has emitted: its
chain stops there (records at or past the new edge are dropped from its pages), and a new chain
reads the rest. Nothing is emitted twice: records below the edge come from the old chain only,
records at or past it from the new one only.

What has been emitted is always stated exactly, so a resumed read skips what is done:

* a sorted page ending at cursor `c` proves every record of its span below `c` was emitted
  (`reached`); a span whose chain ended is done up to its `high`;
* `state()` gives `(cursor, gaps)`: every record whose cursor is below `cursor` was emitted, except
  those inside a gap. The last unread range ending at `upper` becomes the cursor; unread ranges
  before it are gaps. When no range is left unread, the cursor is `upper`.

    >>> from datetime import datetime, UTC
    >>> d = lambda day: datetime(2024, 1, day, tzinfo=UTC)
    >>> spans = Spans([(d(1), d(30))], upper=d(30))
    >>> whole = spans.take()
    >>> spans.page(whole, records=10, first=d(1), last=d(3))
    >>> tail = spans.split(whole, [d(20)])[0]
    >>> (whole.high, tail.low, tail.high) == (d(20), d(20), d(30))
    True
    >>> spans.finish(whole); spans.state() == (d(20), [])
    True
    >>> spans.page(spans.take(), records=5, first=d(20), last=d(25)); spans.state() == (d(25), [])
    True
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from .datetimes import floor_second

Range = tuple[datetime, datetime]
# The key of a state's gaps: `[{"start": …, "end": …}]`, ranges below its cursor never read.
GAPS = "gaps"
# The lower edge of a read without any lower bound (no state, no start_date): its chain has no filter.
NO_LOWER_BOUND = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(eq=False)
class Span:
    """`[low, high)` of the cursor, read by one chain of pages."""

    low: datetime
    high: datetime  # exclusive; lowered when the span is split
    reached: datetime  # every record in [low, reached) was emitted
    running: bool = False
    done: bool = False
    records: int = 0  # emitted so far
    first: datetime | None = None  # the first cursor seen: where the span's data starts

    def unread(self) -> Range | None:
        return None if self.done or self.reached >= self.high else (self.reached, self.high)

    def density(self) -> float | None:
        """Records per second of cursor seen so far, or None before any span of data."""
        if self.first is None or self.records == 0:
            return None
        covered = (self.reached - self.first).total_seconds()
        return self.records / covered if covered >= 1 else None


class Spans:
    """The spans of one partition's read, in cursor order; see the module docstring."""

    def __init__(self, ranges: Iterable[Range], upper: datetime) -> None:
        self.spans = [Span(low, high, low) for low, high in normalised(ranges)]
        self.upper = upper

    # -- the life of a span ------------------------------------------------------------------------
    def take(self) -> Span | None:
        """The first span nobody reads yet, marked running; None when every span has a chain."""
        for span in self.spans:
            if not span.running and not span.done:
                span.running = True
                return span
        return None

    def page(self, span: Span, *, records: int, first: datetime | None, last: datetime | None,
             sorted_pages: bool = True) -> None:
        """A page of `span` was emitted: `records` of it, its first and last cursors."""
        span.records += records
        if span.first is None and first is not None:
            span.first = max(first, span.low)
        if sorted_pages and last is not None and last > span.reached:
            span.reached = min(last, span.high)

    def finish(self, span: Span) -> None:
        """The chain of `span` ended: every record of `[low, high)` was emitted."""
        span.done, span.running, span.reached = True, False, span.high

    def split(self, span: Span, edges: Sequence[datetime]) -> list[Span]:
        """Cut `span` at `edges` (increasing, past what it emitted, below its high): it keeps the
        first part, and a new span (not running) is made for each of the others. Edges are whole
        seconds: the new span's chain filters `greater-or-equal(edge)` at second precision, so an
        edge inside a second would hand the records of that second to both chains."""
        if any(edge.microsecond for edge in edges):
            raise ValueError(f"split edges {edges} are not whole seconds")
        bounds = [span.reached, *edges, span.high]
        if any(a >= b for a, b in pairwise(bounds)):
            raise ValueError(f"split edges {edges} do not cut ({span.reached}, {span.high})")
        new = [Span(low, high, low) for low, high in zip(edges, [*edges[1:], span.high], strict=True)]
        span.high = edges[0]
        at = self.spans.index(span) + 1
        self.spans[at:at] = new
        return new

    def running_left(self) -> Iterator[tuple[Span, float]]:
        """Each running span with the records it has left by estimate: its density so far, else the
        group's. A span with no estimate is left out."""
        fallback = self.density()
        for span in self.spans:
            if span.running and not span.done and (density := span.density() or fallback):
                yield span, (span.high - span.reached).total_seconds() * density

    def density(self) -> float | None:
        """Records per second of cursor over the spans with data: for spans that have none yet."""
        measured = [span for span in self.spans if span.density() is not None]
        seconds = sum((span.reached - span.first).total_seconds() for span in measured if span.first)
        return sum(span.records for span in measured) / seconds if seconds >= 1 else None

    # -- what the state says ---------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return all(span.done for span in self.spans)

    def state(self) -> tuple[datetime, list[Range]]:
        """`(cursor, gaps)`: every record below `cursor` was emitted except those in the gaps."""
        unread = normalised(r for span in self.spans if (r := span.unread()) is not None)
        if unread and unread[-1][1] >= self.upper:
            return unread[-1][0], unread[:-1]
        return self.upper, unread


def plan_cuts(groups: Sequence[Spans], wanted: int, min_records: int,
              ) -> list[tuple[Spans, Span, list[datetime]]]:
    """Where to cut running spans so that up to `wanted` more chains can start.

    A chain reads a page per round trip, so the span with the most records left sets when the read
    ends, and a bucket with room for more chains than it runs leaves rate-limit budget unused. So the
    piece with the most left is halved, again and again, until `wanted` new pieces exist or no piece
    holds two parts of at least `min_records` (a cut costs a part-full page). Records left are
    estimated by each span's density so far (else its group's); a span with no estimate is left alone.
    """
    pieces: list[tuple[float, int, Spans, Span, datetime, datetime]] = []  # a heap, most left first
    for group in groups:
        for span, left in group.running_left():
            heapq.heappush(pieces, (-left, len(pieces), group, span, span.reached, span.high))
    edges: dict[int, tuple[Spans, Span, list[datetime]]] = {}
    order = len(pieces)
    while wanted > 0 and pieces:
        negative_left, _, group, span, low, high = heapq.heappop(pieces)
        if -negative_left < 2 * min_records:
            break  # the piece with the most left is too small to cut: so is every other
        middle = floor_second(low + (high - low) / 2)
        if not low < middle < high:
            continue  # too narrow to cut on a whole second
        edges.setdefault(id(span), (group, span, []))[2].append(middle)
        wanted -= 1
        for part in ((low, middle), (middle, high)):
            order += 1
            heapq.heappush(pieces, (negative_left / 2, order, group, span, *part))
    return [(group, span, sorted(cut)) for group, span, cut in edges.values()]


def normalised(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, with overlapping or touching ranges merged and empty ones dropped."""
    merged: list[Range] = []
    for low, high in sorted(r for r in ranges if r[0] < r[1]):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def to_read(cursor: datetime | None, gaps: Sequence[Range], *, start_date: datetime | None,
            lookback: timedelta, upper: datetime) -> list[Range]:
    """The ranges a read covers from a saved `(cursor, gaps)`: the gaps, then `[cursor - lookback,
    upper)`; nothing before `start_date`. Without state or start date, `[NO_LOWER_BOUND, upper)`:
    the read starts at the first record."""
    if cursor is None:
        low = NO_LOWER_BOUND if start_date is None else floor_second(start_date)
        return normalised([(low, upper)])
    tail_start = floor_second(cursor - lookback)
    ranges = [*gaps, (tail_start, upper)]
    if start_date is not None:
        floor = floor_second(start_date)
        ranges = [(max(low, floor), high) for low, high in ranges]
    return normalised((low, min(high, upper)) for low, high in ranges)


