"""How many requests one rate-limit bucket keeps in flight, sized from what we measure.

Klaviyo's rate limit, not the round trip, should set the pace. A bucket paced at `λ` requests a
second whose requests take `W` seconds needs `λ·W` of them in flight (Little's law): fewer leaves
budget unused whatever the limiter allows; more only queue at the limiter, and cut the work into
more chains of pages than needed (each ends in a part-full page that counts against the limit).

`InFlight` keeps two running averages of the round trip (from the request leaving to its whole
body read): a quick one over about the last `QUICK_SECONDS` and a slow one over `SLOW_SECONDS`
(both the plain mean of every answer until they have seen that many). The limit is

    ceil(λ · W_slow · HEADROOM) + SPARE          within [1, cap]

`HEADROOM` covers the spread of `W`: a slow answer holds its slot longer than the mean says. While
the limiter spends its opening credit (`ratelimit.py`), `λ` is twice the pace, so the credit goes out
while the first pages are in flight instead of being lost to their round trip; the cap still bounds
what lands at once.

It backs off, never provoking a 429 to find the limit:

* on a 429 the limit halves at once and does not grow back for `max(Retry-After, COOL_DOWN)` s;
* when latency rises (the quick average above `RISE` times the slow one) the server is slowing
  down: instead of growing with `W`, as Little's law would, the limit shrinks by the ratio of the
  slow average to the quick one, so we add no load to a struggling server. A lasting change moves
  the slow average, and the limit follows it.

`cap` is the user's `num_workers` when set, else `MAX_IN_FLIGHT`: a hard bound on memory too (each
request in flight may hold a page of up to a few MB when its answer lands).

    >>> flight = InFlight(pace=lambda: 50.0, cap=100)
    >>> flight.limit        # before any answer: the limiter sends a bucket's first request alone
    1
    >>> for _ in range(20): flight.answered(0.6, now=0.0)
    >>> flight.limit        # 50/s * 0.6 s * 1.2 + 2
    38
"""

from __future__ import annotations

import math
from collections.abc import Callable

HEADROOM = 1.2
SPARE = 2
QUICK_SECONDS = 2.0
SLOW_SECONDS = 30.0
RISE = 1.5  # quick/slow ratio at which the server counts as slowing down
COOL_DOWN = 5.0  # seconds without growth after a 429
MAX_IN_FLIGHT = 128  # per bucket, when the user sets no cap


class InFlight:
    """The in-flight limit of one bucket; see the module docstring."""

    def __init__(self, pace: Callable[[], float], cap: int) -> None:
        self._pace = pace  # requests per second the bucket's limiter allows now
        self.cap = max(1, cap)
        self._quick: float | None = None
        self._slow: float | None = None
        self._answers = 0
        self._throttled_limit: int | None = None  # the limit a 429 left, while cooling down
        self._cool_until = -math.inf

    @property
    def round_trip(self) -> float | None:
        """The slow average of the round trip, in seconds (None before any answer)."""
        return self._slow

    @property
    def limit(self) -> int:
        return self.limit_at(None)

    def limit_at(self, now: float | None) -> int:
        """Requests this bucket may have in flight; `now` ends a 429's cool-down when it is over."""
        if self._slow is None or self._quick is None:
            return 1
        if self._throttled_limit is not None:
            if now is None or now < self._cool_until:
                return self._throttled_limit
            self._throttled_limit = None
        wanted = self._pace() * self._slow * HEADROOM
        if self._quick > RISE * self._slow:
            wanted *= self._slow / self._quick
        return max(1, min(self.cap, math.ceil(wanted) + SPARE))

    def answered(self, seconds: float, *, now: float) -> None:
        """A request of this bucket took `seconds` from leaving to its whole answer."""
        self._answers += 1
        per_second = max(self._pace(), 1e-3)
        self._quick = _average(self._quick, seconds, self._answers, per_second * QUICK_SECONDS)
        self._slow = _average(self._slow, seconds, self._answers, per_second * SLOW_SECONDS)
        if self._throttled_limit is not None and now >= self._cool_until:
            self._throttled_limit = None

    def throttled(self, retry_after: float | None, *, now: float) -> None:
        """A 429: halve what is allowed in flight, and keep it there for a while."""
        current = self.limit_at(now)
        self._throttled_limit = max(1, current // 2)
        self._cool_until = now + max(retry_after or 0.0, COOL_DOWN)


def _average(current: float | None, sample: float, count: int, span: float) -> float:
    """A running mean of the first `span` samples, then an exponential average over about `span`."""
    if current is None:
        return sample
    weight = max(1.0 / count, 1.0 / max(span, 1.0))
    return current + weight * (sample - current)
