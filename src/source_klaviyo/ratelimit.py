"""Client-side pacing that reaches Klaviyo's rate ceiling without provoking 429s.

Klaviyo limits every endpoint per account with two fixed windows: a burst window (1 s) and a steady
window (60 s), plus 225/day for the reporting endpoints (`streams.TIERS`). We cannot see where the
server's windows start, so each `TierLimiter` (one per endpoint bucket and tier) combines:

1. **Sliding-window logs**, one per server window (1 s, 60 s, and 1 day when the tier has one), each
   stretched by a small guard (`_GUARD`) for latency jitter. If no sliding interval of 60.5 s holds
   more than `steady` of our request starts, no fixed 60 s window on the server can either,
   wherever it is aligned. The logs are the hard safety cap; they almost never bind after the
   first minute, because of (2).
2. **A pacing token bucket** refilled at `steady / 60 * (1 - margin)` per second (margin 3 %). It starts
   full with `burst` tokens, the **opening credit**: a run may send that much ahead of the pace, so
   the round trips of its first pages (1.5 s each at a realistic page size, when nothing arrives)
   are made up, and the in-flight limit is sized to spend it (`_OPENING_SPEED`, `concurrency.py`).
   The logs of (1) still bound it: at worst the first minute's budget is reached a few seconds
   before the minute ends. Once the credit is spent, or the first minute is over, the bucket's
   capacity drops to what `_CATCH_UP` seconds of pacing earn (at least one token), and
   from then on requests are spread evenly. That small reserve is what a late wake-up makes up
   for: a loop busy with a 1,000-event page wakes the waiting request a few ms late, and at the
   XL pace (one request per 17.7 ms) a one-token bucket lost that time for good: ~88 % of the
   events ceiling instead of 97 %. Without
   this, the steady budget would be spent in the first seconds of every minute (at burst speed)
   followed by ~50 s of idling: the average is the same, but the engine's pipeline stalls, progress
   stutters and, on a quota shared with other integrations, we would collide with them at each
   window start. Evenly paced at 97 % we sustain >= 95 % of the ceiling; the first minute (burst +
   pacing) briefly meets the 60 s log, which holds us at exactly `steady` for that window. The
   first request of a bucket goes alone: its answer's headers calibrate the limits (see 3).
3. **Server feedback.** Private keys share one quota with every other integration of the account,
   so we also trust the server: `RateLimit-Limit` lower than the table lowers our limits (burst
   scaled in proportion; Klaviyo reports only the steady window); `RateLimit-Remaining` /
   `RateLimit-Reset` give a budget for the rest of the server's current window, reduced by our own
   requests that left after the answered one (the server had not counted them) and only ever
   lowered within one window (a stale response must not raise it). Where Remaining falls faster
   than our own requests explain, the difference is another integration's use: we estimate its
   rate (the last window's estimate weighing as 10 s of the current one) and leave it its share of
   what is left. When the budget left for us is lower than our own pace would use, by more than our
   opening credit and the requests in flight can have taken from it, requests are spread evenly over
   the time left; at zero we wait for the window to reset (+ a guard, since Reset is whole seconds).
   A smaller shortfall is a window that turned over while we spent the credit: spreading it would
   slow us for nobody's sake, so only zero stops us. A 429's `Retry-After` blocks the whole bucket.
   Absent headers leave the local model in charge; the IETF draft forms (`RateLimit-Limit: 150,
   150;w=60` and the combined `RateLimit: limit=…, remaining=…, reset=…`) are read too.

`acquire()` is FIFO (an `asyncio.Lock`): only the head waiter sleeps, and it re-evaluates every
constraint after waking, so a Retry-After or a lower Remaining learned meanwhile is respected.
Time comes from a `Clock` (injectable `monotonic` and `sleep`) so tests run on simulated time.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol

from source_klaviyo.concurrency import MAX_IN_FLIGHT, InFlight
from source_klaviyo.errors import TransientError
from source_klaviyo.streams import TIERS, Tier, TierName

__all__ = [
    "Clock",
    "RateLimiters",
    "SystemClock",
    "TierLimiter",
    "parse_rate_limit_headers",
    "parse_retry_after",
]

STEADY_WINDOW = 60.0
BURST_WINDOW = 1.0
DAY = 86_400.0
_GUARD = 0.5  # seconds added to every window: arrival-time jitter and whole-second Reset values
_DEFAULT_MARGIN = 0.03
_EPSILON = 1e-6
_OPENING_SPEED = 2.0  # x the pace, while the opening credit lasts (see 2. above)
_PRIOR_SECONDS = 10.0  # how much the last window's estimate of others' use weighs in the next
_CATCH_UP = 0.1  # seconds of pacing the bucket may hold once paced: lateness made up, never a burst


class Clock(Protocol):
    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True)
class RateLimitInfo:
    """What one response said about the steady window; any field may be missing."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None
    window: float | None = None  # seconds of the window `limit` applies to, when stated
    # The quota of a `;w=60` policy listed after a limit of another window: Klaviyo leads with the
    # burst (`350, 350;w=1, 3500;w=60`), and Remaining/Reset then describe the burst, not this.
    steady_policy: int | None = None


_INT = re.compile(r"\s*(\d+)")
_POLICY_WINDOW = re.compile(r";\s*w\s*=\s*(\d+)")
_DICT_ITEM = re.compile(r"(limit|remaining|reset)\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def _leading_number(value: str | None) -> float | None:
    if value is None:
        return None
    match = _INT.match(value)
    return float(match.group(1)) if match else None


def parse_rate_limit_headers(headers: Mapping[str, str]) -> RateLimitInfo:
    """Read `RateLimit-Limit/-Remaining/-Reset` (plain or IETF draft list form) or `RateLimit`."""
    limit_raw = headers.get("RateLimit-Limit")
    limit = _leading_number(limit_raw)
    remaining = _leading_number(headers.get("RateLimit-Remaining"))
    reset = _leading_number(headers.get("RateLimit-Reset"))
    window = None
    steady_policy = None
    if limit_raw is not None and limit is not None:
        # "150, 150;w=60": the first item is the current limit, the others are policies; the policy
        # with the same quota names the window it applies to (the first such: "1, 1;w=1, 2;w=60").
        for item in limit_raw.split(",")[1:]:
            quota, w = _leading_number(item), _POLICY_WINDOW.search(item)
            if quota == limit and w and window is None:
                window = float(w.group(1))
            elif quota is not None and w and float(w.group(1)) == STEADY_WINDOW:
                steady_policy = int(quota)
    combined = headers.get("RateLimit")
    if combined is not None and limit is None and remaining is None:
        fields = {k.lower(): float(v) for k, v in _DICT_ITEM.findall(combined)}
        limit, remaining, reset = fields.get("limit"), fields.get("remaining"), fields.get("reset")
    return RateLimitInfo(
        limit=int(limit) if limit is not None else None,
        remaining=int(remaining) if remaining is not None else None,
        reset=reset,
        window=window,
        steady_policy=steady_policy,
    )


def parse_retry_after(value: str | None, *, now_epoch: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (delta-seconds, or an HTTP date); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now_epoch is None else now_epoch))


class _WindowLog:
    """Start times of our last `capacity` requests; full + oldest within `span` means wait."""

    __slots__ = ("capacity", "span", "starts")

    def __init__(self, capacity: int, span: float) -> None:
        self.capacity = capacity
        self.span = span
        self.starts: deque[float] = deque(maxlen=capacity)

    def resize(self, capacity: int) -> None:
        if capacity != self.capacity:
            self.capacity = capacity
            self.starts = deque(self.starts, maxlen=capacity)  # keeps the most recent starts

    def delay(self, now: float) -> float:
        if len(self.starts) < self.capacity:
            return 0.0
        return self.starts[0] + self.span - now


class TierLimiter:
    """Paces the requests of one endpoint bucket (see the module docstring for the design)."""

    def __init__(
        self,
        tier: Tier,
        *,
        clock: Clock | None = None,
        margin: float = _DEFAULT_MARGIN,
        name: str = "",
        cap: int = MAX_IN_FLIGHT,
    ) -> None:
        self.tier = tier
        self.name = name or tier.name
        self.margin = margin
        self._clock: Clock = clock or SystemClock()
        self._lock = asyncio.Lock()
        self.burst = tier.burst_per_second
        self.steady = tier.steady_per_minute
        self._burst_log = _WindowLog(self.burst, BURST_WINDOW + _GUARD / 10)
        self._steady_log = _WindowLog(self.steady, STEADY_WINDOW + _GUARD)
        self._logs = [self._burst_log, self._steady_log]
        if tier.daily:
            self._logs.append(_WindowLog(tier.daily, DAY + _GUARD))
        self._rate = self.steady / STEADY_WINDOW * (1 - margin)
        self._capacity = float(self.burst)  # the first burst; `_paced_capacity()` once it has been spent
        self._paced = False
        self._tokens = float(self.burst)
        self._refilled_at = self._clock.monotonic()
        self._opened_at: float | None = None
        self._blocked_until = 0.0
        self._server_end = 0.0  # end of the server's steady window as last reported
        self._server_left = math.inf  # what the server still allows before `_server_end`
        self._window_seen_at = 0.0  # when we first heard of the current server window
        self._foreign_taken = 0.0  # requests others made in it (shared quota), estimated
        self._foreign_rate = 0.0  # per second, estimated
        self._foreign_prior = 0.0  # the estimate when the current server window began
        self.inflight = 0
        self.queued = 0  # requests waiting in acquire() for their turn
        self.flight = InFlight(self._sizing_rate, cap)
        self._released = asyncio.Event()  # set whenever a request of this bucket ends

    def __repr__(self) -> str:
        return f"TierLimiter({self.name!r}, burst={self.burst}/s, steady={self.steady}/min)"

    @property
    def pace_per_second(self) -> float:
        return self._rate

    @property
    def opening(self) -> bool:
        """Whether the bucket still spends its opening credit (it paces evenly once that is over)."""
        return not self._paced

    # -- acquiring ---------------------------------------------------------------------------

    async def acquire(self, *, max_wait: float | None = None, gate: asyncio.Semaphore | None = None) -> float:
        """Wait until a request may start and count it; returns the seconds waited on rate limits.

        `gate` (the client's in-flight semaphore) is taken last, just before the start is counted,
        and stays held for the caller to release when the request ends: the count then matches
        the moment the request really leaves, and no worker slot is held while we sleep on a limit.

        Raises `TransientError` if a single wait would exceed `max_wait` (e.g. a used-up daily
        budget), without counting a request.
        """
        waited = 0.0
        holding = False
        self.queued += 1
        try:
            async with self._lock:
                while True:
                    now = self._clock.monotonic()
                    if self.inflight >= self.flight.limit_at(now):
                        # Enough in flight for the pace (Little's law, `concurrency.py`). Until the
                        # first answer the limit is one: we know neither the account's real limits
                        # nor how much of the quota others use, so the first request goes alone.
                        self._released.clear()
                        await self._released.wait()
                        continue
                    delay = self._delay(now)
                    if delay <= _EPSILON:  # float residue of an exact wait must not cause a re-sleep
                        if gate is not None and not holding:
                            await gate.acquire()
                            holding = True
                            continue  # time passed and answers came in while we queued: re-check
                        self._take(now)
                        return waited
                    if holding:
                        assert gate is not None
                        gate.release()
                        holding = False
                    if max_wait is not None and delay > max_wait:
                        raise TransientError(
                            f"the rate limit of {self.name} would need a wait of {delay:.0f} s "
                            f"(more than the {max_wait:.0f} s allowed); try again later"
                        )
                    await self._clock.sleep(delay)
                    waited += delay
        except BaseException:
            if holding and gate is not None:
                gate.release()
            raise
        finally:
            self.queued -= 1

    def _refill(self, now: float) -> None:
        elapsed = now - self._refilled_at
        if elapsed > 0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._refilled_at = now

    def _delay(self, now: float) -> float:
        self._refill(now)
        delay = max(self._blocked_until - now, (1.0 - self._tokens) / self._rate)
        for log in self._logs:
            delay = max(delay, log.delay(now))
        if now < self._server_end:
            delay = max(delay, self._server_delay(now))
        return delay

    def _server_delay(self, now: float) -> float:
        time_left = self._server_end - now
        # Leave what the other integrations of the account will take before the window resets.
        ours = self._server_left - self._foreign_rate * time_left
        if ours < 1:
            return self._server_end + _GUARD - now
        shortfall = self._rate * time_left - ours  # what the window lacks to hold our pace to its end
        if shortfall <= self.burst + self.inflight:
            # Our own opening credit and the requests in flight can have taken that much from it ahead
            # of the pace: there is nobody to share it with, and our logs keep us within it. Spread,
            # a window that turned over while the credit was being spent held a fifth of the 1.5-s
            # backfills at ~51 requests/s from their 7th second to their end, below the pace.
            return 0.0
        # Spread what is left evenly over the rest of the server's window.
        spacing = time_left / (ours + 1)
        last = self._steady_log.starts[-1] if self._steady_log.starts else -math.inf
        return last + spacing - now

    def _take(self, now: float) -> None:
        self._tokens -= 1.0
        if self._opened_at is None:
            self._opened_at = now
        if self._tokens < 1.0 or now - self._opened_at > STEADY_WINDOW:
            # The opening credit is spent or the first minute is over: pace evenly from now on, so
            # saved-up tokens never turn into a burst at a window start (others may be there).
            self._paced = True
            self._capacity = self._paced_capacity()
            self._tokens = min(self._tokens, 1.0)
        for log in self._logs:
            log.starts.append(now)
        if now < self._server_end:
            self._server_left -= 1
        self.inflight += 1

    # -- feedback ----------------------------------------------------------------------------

    def release(self, headers: Mapping[str, str] | None = None, round_trip: float | None = None) -> None:
        """A request started by `acquire` finished; `headers` of its response, if any, and
        `round_trip`: seconds from leaving to its whole answer, when it got one."""
        self.inflight = max(0, self.inflight - 1)
        self._released.set()
        if round_trip is not None:
            self.flight.answered(round_trip, now=self._clock.monotonic())
        if headers is not None:
            self.observe(parse_rate_limit_headers(headers), round_trip)

    def observe(self, info: RateLimitInfo, round_trip: float | None = None) -> None:
        """Learn from one answer's RateLimit headers; `round_trip`: how long ago its request left."""
        now = self._clock.monotonic()
        is_steady = info.window is None or info.window == STEADY_WINDOW
        steady = info.limit if is_steady else info.steady_policy
        if steady is not None and 0 < steady < self.steady:
            self._lower_limits(steady)
        if info.remaining is None or info.reset is None or not is_steady:
            return
        end = now + info.reset
        left = info.remaining - self._not_yet_counted(now, round_trip)
        if abs(end - self._server_end) <= 2 * _GUARD + 1.0:
            # Same server window. What the server's count fell by beyond our own requests was
            # taken by someone else: a signed sum, so in-flight noise averages out.
            self._foreign_taken += self._server_left - left
            # Remaining only goes down within a window: a stale answer must never raise it.
            self._server_left = min(self._server_left, left)
            self._server_end = max(self._server_end, end)
            # The last window's rate weighs as `_PRIOR_SECONDS` of this one: early in a window a
            # few requests of jitter must not look like a busy neighbour (3 in its first second
            # read as 2.5/s, and the rest of the window was left to nobody).
            span = now - self._window_seen_at
            self._foreign_rate = max(0.0, (self._foreign_taken + self._foreign_prior * _PRIOR_SECONDS)
                                     / (span + _PRIOR_SECONDS))
        else:
            # A new window: the other integrations' rate of the last one is our best guess for it.
            self._server_end, self._server_left = end, left
            self._window_seen_at, self._foreign_taken = now, 0.0
            self._foreign_prior = self._foreign_rate

    def _not_yet_counted(self, now: float, round_trip: float | None) -> int:
        """Our requests the server had not counted when it wrote an answer's Remaining: those that
        left after that answer's request. Subtracting every request in flight instead counts the
        ones that left before it twice: with 100+ pages in flight at a long round trip, that looked
        like another integration's use and slowed us below our pace."""
        if round_trip is None:
            return self.inflight  # when the request left is unknown: the cautious count
        since = now - round_trip
        starts = self._steady_log.starts
        count = 0
        for index in range(len(starts) - 1, -1, -1):  # newest first; stops at the first older start
            if starts[index] <= since:
                break
            count += 1
        return count

    def block(self, seconds: float) -> None:
        """A 429 said `Retry-After: seconds`: no request of this bucket starts before then, and
        fewer are sent at once afterwards."""
        now = self._clock.monotonic()
        self._blocked_until = max(self._blocked_until, now + seconds)
        self.flight.throttled(seconds, now=now)

    def _lower_limits(self, steady: int) -> None:
        scale = steady / self.steady
        self.steady = steady
        self.burst = max(1, math.floor(self.burst * scale))
        self._steady_log.resize(steady)
        self._burst_log.resize(self.burst)
        self._rate = steady / STEADY_WINDOW * (1 - self.margin)
        self._capacity = min(self._paced_capacity() if self._paced else self._capacity, float(self.burst))
        self._tokens = min(self._tokens, self._capacity)

    def _sizing_rate(self) -> float:
        """The rate the in-flight limit is sized for: faster than the pace while the opening credit
        lasts, so that the credit is spent while the first pages are in flight."""
        return self._rate if self._paced else self._rate * _OPENING_SPEED

    def _paced_capacity(self) -> float:
        return 1.0 + self._rate * _CATCH_UP


class RateLimiters:
    """The limiters of one run, one per (bucket, tier): Klaviyo counts per endpoint per account."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        margin: float = _DEFAULT_MARGIN,
        tiers: Mapping[TierName, Tier] = TIERS,
        cap: int = MAX_IN_FLIGHT,
    ) -> None:
        self._clock = clock
        self._margin = margin
        self._tiers = tiers  # e.g. Klaviyo's table scaled to match an emulator's --rate-limit-scale
        self._cap = cap  # requests in flight per bucket at most (the user's num_workers, if set)
        self._limiters: dict[tuple[str, str], TierLimiter] = {}

    def get(self, bucket: str, tier: TierName) -> TierLimiter:
        key = (bucket, tier)
        limiter = self._limiters.get(key)
        if limiter is None:
            if tier not in self._tiers:
                raise ValueError(f"unknown rate-limit tier {tier!r}; expected one of {sorted(self._tiers)}")
            limiter = TierLimiter(self._tiers[tier], clock=self._clock, margin=self._margin, name=bucket,
                                  cap=self._cap)
            self._limiters[key] = limiter
        return limiter

    def __iter__(self) -> Iterator[TierLimiter]:
        return iter(self._limiters.values())
