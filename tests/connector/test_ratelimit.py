"""The rate limiter, on simulated time: a fake clock and, where it matters, a model of Klaviyo's
fixed windows with a random phase, so pacing and 429s are measured without sleeping."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from source_klaviyo.errors import TransientError
from source_klaviyo.ratelimit import (
    RateLimiters,
    RateLimitInfo,
    TierLimiter,
    parse_rate_limit_headers,
    parse_retry_after,
)
from source_klaviyo.streams import TIERS, Tier


class FakeClock:
    """Virtual time: `sleep` parks the caller until `drive` advances time to its wake-up.

    `late` (seconds, drawn per sleep) models an event loop busy with other work: a wake-up is
    never early, but it may come that much after the time asked for."""

    def __init__(self, late: Callable[[], float] | None = None) -> None:
        self.late = late
        self.now = 0.0
        self.sleeps = 0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lateness = self.late() if self.late is not None else 0.0
        heapq.heappush(self._timers, (self.now + max(0.0, seconds) + lateness, self._seq, future))
        self._seq += 1
        await future

    async def drive(self, *coros: Awaitable[object]) -> list[object]:
        tasks = [asyncio.ensure_future(c) for c in coros]
        loop = asyncio.get_running_loop()
        while True:
            # Let every runnable task reach its next fake sleep before time moves on (the ready
            # queue is private to asyncio, but it is the only exact "all tasks are blocked" signal).
            await asyncio.sleep(0)
            while loop._ready:  # type: ignore[attr-defined]
                await asyncio.sleep(0)
            if all(t.done() for t in tasks):
                return [t.result() for t in tasks]
            if not self._timers:
                raise RuntimeError("deadlock: tasks wait but no timer is pending")
            when, _, future = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            future.set_result(None)


def simulate(coro_factory: Callable[[FakeClock], Awaitable[object]], *,
             late: Callable[[], float] | None = None) -> object:
    async def main() -> object:
        clock = FakeClock(late)
        (result,) = await clock.drive(coro_factory(clock))
        return result

    return asyncio.run(main())


# -- the server model ---------------------------------------------------------------------------


@dataclass
class FixedWindowServer:
    """Klaviyo's limits as documented: fixed 1 s and 60 s windows per account, starting at `phase`."""

    burst: int
    steady: int
    phase: float
    counts: dict[tuple[str, int], int] = field(default_factory=dict)
    throttled_at: list[float] = field(default_factory=list)  # our 429s
    foreign_throttled: int = 0
    served: int = 0

    def hit(self, now: float, *, foreign: bool = False) -> tuple[int, dict[str, str]]:
        t = now - self.phase
        second, minute = ("s", math.floor(t)), ("m", math.floor(t / 60))
        if self.counts.get(second, 0) >= self.burst or self.counts.get(minute, 0) >= self.steady:
            if foreign:
                self.foreign_throttled += 1
            else:
                self.throttled_at.append(now)
            wait = 1 if self.counts.get(minute, 0) < self.steady else math.ceil((minute[1] + 1) * 60 - t)
            return 429, {"Retry-After": str(wait)}
        self.counts[second] = self.counts.get(second, 0) + 1
        self.counts[minute] = self.counts.get(minute, 0) + 1
        self.served += 1
        reset = math.ceil((minute[1] + 1) * 60 - t)
        return 200, {
            "RateLimit-Limit": f"{self.steady}, {self.steady};w=60",
            "RateLimit-Remaining": str(self.steady - self.counts[minute]),
            "RateLimit-Reset": str(reset),
        }


async def _worker(
    clock: FakeClock,
    limiter: TierLimiter,
    server: FixedWindowServer,
    until: float,
    latency: float,
    rng: random.Random,
) -> int:
    ok = 0
    while clock.now < until:
        await limiter.acquire()
        sent_at = clock.now
        if clock.now >= until:
            limiter.release()
            break
        # Latency varies +-50 % around its mean, the server counts at arrival.
        await clock.sleep(latency / 2 * rng.uniform(0.5, 1.5))
        status, headers = server.hit(clock.now)
        await clock.sleep(latency / 2 * rng.uniform(0.5, 1.5))
        limiter.release(headers, round_trip=clock.now - sent_at)
        if status == 429:
            limiter.block(float(headers["Retry-After"]))
        else:
            ok += 1
    return ok


async def _foreign_integration(
    clock: FakeClock, server: FixedWindowServer, per_second: float, until: float
) -> int:
    """Another integration of the same account using part of the shared quota, evenly."""
    sent = 0
    while clock.now < until:
        status, _ = server.hit(clock.now, foreign=True)
        sent += status != 429
        await clock.sleep(1 / per_second)
    return sent


def run_ceiling(
    tier: str,
    minutes: float,
    *,
    workers: int = 10,
    latency: float = 0.15,
    foreign_share: float = 0.0,
    seed: int = 1,
    late_ms: float = 0.0,
    phase: float | None = None,  # when the server's 60 s windows turn over (s after the run starts)
) -> tuple[int, FixedWindowServer]:
    rng = random.Random(seed)
    t = TIERS[tier]
    drawn = rng.uniform(0, 60)  # drawn either way: the latencies that follow stay the same
    server = FixedWindowServer(t.burst_per_second, t.steady_per_minute,
                               phase=drawn if phase is None else phase)
    until = minutes * 60

    async def scenario(clock: FakeClock) -> int:
        limiter = TierLimiter(t, clock=clock)
        jobs = [_worker(clock, limiter, server, until, latency, rng) for _ in range(workers)]
        if foreign_share:
            jobs.append(_foreign_integration(clock, server, t.steady_per_minute / 60 * foreign_share, until))
        results = await asyncio.gather(*jobs)
        return sum(results[:workers])

    lateness = random.Random(seed + 1)
    late = (lambda: lateness.uniform(0, late_ms / 1000)) if late_ms else None
    return simulate(scenario, late=late), server  # type: ignore[return-value]


# -- pacing ------------------------------------------------------------------------------------


def test_a_run_opens_with_the_burst_then_paces_evenly_at_the_steady_rate() -> None:
    async def scenario(clock: FakeClock) -> list[float]:
        limiter = TierLimiter(TIERS["M"], clock=clock)
        starts = []
        for _ in range(40):
            await limiter.acquire()
            starts.append(clock.now)
            limiter.release()
        return starts

    starts: list[float] = simulate(scenario)  # type: ignore[assignment]
    assert starts[:10] == [0.0] * 10  # M allows 10 at once
    gaps = [b - a for a, b in itertools.pairwise(starts[10:])]
    expected = 60 / (150 * 0.97)
    # The 11th waited for the 1 s burst log, past its token: the bucket's 0.1 s reserve makes up
    # that much of the next gap, and from then on the spacing is exact.
    assert expected - 0.1 - 1e-9 <= gaps[0] < expected
    assert all(g == pytest.approx(expected, rel=1e-6) for g in gaps[1:])
    assert starts[-1] < 30 * expected + 1  # no early exhaustion followed by a long idle


@pytest.mark.parametrize(("tier", "minutes"), [("S", 5), ("M", 5), ("L", 4), ("XL", 2)])
def test_sustains_at_least_95_percent_of_the_steady_ceiling_without_any_429(tier: str, minutes: int) -> None:
    ok, server = run_ceiling(tier, minutes, workers=12)
    ceiling = TIERS[tier].steady_per_minute * minutes
    assert server.throttled_at == []
    assert ok >= 0.95 * ceiling
    assert ok <= ceiling


@pytest.mark.parametrize("latency", [0.6, 1.5])
def test_the_opening_credit_at_a_high_latency_provokes_no_429(latency: float) -> None:
    # Many chains and slow answers: the in-flight limit is sized to spend the opening credit, which
    # the burst and steady logs still bound wherever the server's fixed windows lie.
    for seed in (1, 2, 3):
        ok, server = run_ceiling("XL", 3, workers=200, latency=latency, seed=seed)
        assert server.throttled_at == []
        assert ok >= 0.95 * TIERS["XL"].steady_per_minute * 3


@pytest.mark.parametrize("turns_at", [3.0, 6.0, 9.0])
def test_a_server_window_that_turns_over_while_the_opening_credit_is_spent_does_not_slow_the_read(
    turns_at: float,
) -> None:
    # 20 s of a backfill at 1.5 s round trips, the server's minute turning over at `turns_at` against
    # one that turns over after: alone on the quota, the new window's budget must not be spread over
    # its 60 s (it was: ~51 requests/s instead of the credit's ~85, then the pace's 57).
    seconds = 20.0
    turning, server = run_ceiling("XL", seconds / 60, workers=128, latency=1.5, phase=turns_at)
    later, _ = run_ceiling("XL", seconds / 60, workers=128, latency=1.5, phase=50.0)
    assert server.throttled_at == []
    assert turning >= 0.97 * later


@pytest.mark.parametrize(("tier", "late_ms"), [("XL", 4), ("XL", 12), ("L", 12), ("M", 12)])
def test_wake_ups_a_busy_loop_delays_are_made_up_not_lost(tier: str, late_ms: float) -> None:
    # Parsing a 1,000-event page holds the loop for a few ms; at the XL pace (a request per 17.7 ms)
    # a limiter that forgets the time its waiter overslept falls to ~85 % of the ceiling.
    minutes = 2
    ok, server = run_ceiling(tier, minutes, workers=25, late_ms=late_ms)
    assert server.throttled_at == []
    assert 0.95 * TIERS[tier].steady_per_minute * minutes <= ok <= TIERS[tier].steady_per_minute * minutes


@pytest.mark.parametrize("seed", [2, 3, 4, 5, 6, 7])
def test_a_shared_quota_used_by_another_integration_costs_429s_only_in_the_first_burst(seed: int) -> None:
    minutes = 4
    ok, server = run_ceiling("M", minutes, foreign_share=0.4, seed=seed)
    late = [t for t in server.throttled_at if t > 2.0]
    assert late == []
    assert len(server.throttled_at) <= TIERS["M"].burst_per_second
    # We take what the other integration leaves: ~60 % of the ceiling, minus the margin.
    assert ok >= 0.5 * 150 * minutes


def test_the_first_request_of_a_bucket_goes_alone_and_its_answer_calibrates_the_rest() -> None:
    async def scenario(clock: FakeClock) -> tuple[list[float], TierLimiter]:
        limiter = TierLimiter(TIERS["XL"], clock=clock)
        starts: list[float] = []

        async def one() -> None:
            await limiter.acquire()
            starts.append(clock.now)
            await clock.sleep(0.2)  # the answer takes 200 ms
            limiter.release({"RateLimit-Limit": "175", "RateLimit-Remaining": "170", "RateLimit-Reset": "50"},
                            round_trip=0.2)

        await asyncio.gather(*(one() for _ in range(30)))
        return starts, limiter

    starts, limiter = simulate(scenario)  # type: ignore[misc]
    assert starts[0] == 0.0
    assert starts[1] == pytest.approx(0.2)  # the others waited for the first answer
    # Then the learned limits (steady 175, burst 350 * 175/3500 = 17), not Klaviyo's table's.
    assert (limiter.steady, limiter.burst) == (175, 17)
    assert max(sum(1 for u in starts if t <= u < t + 1.0) for t in starts) <= 17


def test_the_in_flight_gate_is_taken_last_and_given_back_if_acquire_fails() -> None:
    async def scenario(clock: FakeClock) -> tuple[int, int]:
        gate = asyncio.Semaphore(2)
        limiter = TierLimiter(TIERS["REPORTING"], clock=clock)
        await limiter.acquire(gate=gate)
        held = gate._value  # one slot handed to the caller with the rate-limit slot
        limiter.release()
        gate.release()
        with pytest.raises(TransientError):
            await limiter.acquire(max_wait=1.0, gate=gate)  # the next slot is ~31 s away
        return held, gate._value

    assert simulate(scenario) == (1, 2)


def test_retry_after_blocks_the_whole_bucket() -> None:
    async def scenario(clock: FakeClock) -> list[float]:
        limiter = TierLimiter(TIERS["XL"], clock=clock)
        await limiter.acquire()
        limiter.release()
        limiter.block(7.0)  # a 429 for one request holds back every request of the bucket

        async def one() -> float:
            await limiter.acquire()
            limiter.release()
            return clock.now

        return list(await asyncio.gather(*(one() for _ in range(5))))

    starts: list[float] = simulate(scenario)  # type: ignore[assignment]
    assert min(starts) == 7.0


def test_acquire_reports_the_seconds_it_waited() -> None:
    async def scenario(clock: FakeClock) -> list[float]:
        limiter = TierLimiter(TIERS["XS"], clock=clock)
        waits = []
        for _ in range(3):
            waits.append(await limiter.acquire())
            limiter.release()
        return waits

    waits: list[float] = simulate(scenario)  # type: ignore[assignment]
    assert waits[0] == 0.0
    assert waits[1] == pytest.approx(60 / (15 * 0.97))
    assert waits[2] == pytest.approx(60 / (15 * 0.97))


def test_waiting_sleeps_instead_of_spinning() -> None:
    async def scenario(clock: FakeClock) -> int:
        limiter = TierLimiter(TIERS["S"], clock=clock)

        async def one() -> None:
            await limiter.acquire()
            limiter.release()

        await asyncio.gather(*(one() for _ in range(30)))
        return clock.sleeps

    sleeps: int = simulate(scenario)  # type: ignore[assignment]
    assert sleeps <= 30  # about one sleep per paced request, no polling loop


def test_server_remaining_lower_than_ours_spreads_what_is_left_then_waits_for_the_reset() -> None:
    async def scenario(clock: FakeClock) -> list[float]:
        limiter = TierLimiter(TIERS["XL"], clock=clock)
        await limiter.acquire()
        # Another integration used the quota: 4 left for the next 20 s although we sent one request.
        limiter.release({"RateLimit-Limit": "3500", "RateLimit-Remaining": "4", "RateLimit-Reset": "20"})
        starts = []
        for _ in range(6):
            await limiter.acquire()
            starts.append(clock.now)
            limiter.release()
        return starts

    starts: list[float] = simulate(scenario)  # type: ignore[assignment]
    assert starts[:4] == pytest.approx([4.0, 8.0, 12.0, 16.0])
    assert starts[4] == pytest.approx(20.5)  # budget spent: wait for the server's window to reset
    assert starts[5] - starts[4] < 0.1  # then our own pace again (XL: ~58/s)


def test_a_stale_response_never_raises_the_server_budget() -> None:
    async def scenario(clock: FakeClock) -> float:
        limiter = TierLimiter(TIERS["XL"], clock=clock)
        await limiter.acquire()
        limiter.release({"RateLimit-Limit": "3500", "RateLimit-Remaining": "0", "RateLimit-Reset": "10"})
        # A slow response from earlier in the same window still says 3,000 left.
        limiter.release({"RateLimit-Limit": "3500", "RateLimit-Remaining": "3000", "RateLimit-Reset": "10"})
        await limiter.acquire()
        return clock.now

    assert simulate(scenario) >= 10.0


def test_a_server_limit_lower_than_the_table_lowers_steady_and_burst() -> None:
    async def scenario(clock: FakeClock) -> TierLimiter:
        limiter = TierLimiter(TIERS["XL"], clock=clock)
        await limiter.acquire()
        limiter.release({"RateLimit-Limit": "175", "RateLimit-Remaining": "174", "RateLimit-Reset": "59"})
        return limiter

    limiter: TierLimiter = simulate(scenario)  # type: ignore[assignment]
    assert (limiter.steady, limiter.burst) == (175, 17)
    assert limiter.pace_per_second == pytest.approx(175 / 60 * 0.97)


def test_a_higher_server_limit_does_not_raise_ours() -> None:
    limiter = TierLimiter(TIERS["M"], clock=FakeClock())
    limiter.observe(RateLimitInfo(limit=3500, remaining=3400, reset=30))
    assert limiter.steady == 150


def test_the_daily_reporting_budget_is_kept_and_an_over_long_wait_is_refused() -> None:
    async def scenario(clock: FakeClock) -> tuple[int, float]:
        limiter = TierLimiter(TIERS["REPORTING"], clock=clock)
        sent = 0
        with pytest.raises(TransientError, match="rate limit of REPORTING"):  # noqa: PT012 - sends until refused
            while True:
                await limiter.acquire(max_wait=900)
                limiter.release()
                sent += 1
        return sent, clock.now

    sent, now = simulate(scenario)  # type: ignore[misc]
    assert sent == 225
    assert now < 86_400


def test_each_bucket_and_tier_has_its_own_limiter() -> None:
    limiters = RateLimiters(clock=FakeClock())
    events = limiters.get("/api/events", "XL")
    assert limiters.get("/api/events", "XL") is events
    assert limiters.get("/api/lists/{id}+profile_count", "XS") is not limiters.get("/api/lists/{id}", "L")
    with pytest.raises(ValueError, match="unknown rate-limit tier"):
        limiters.get("/api/events", "XXL")


def test_a_run_may_use_its_own_tier_table() -> None:
    scaled = {"XL": Tier("XL", 17, 175)}  # e.g. an emulator started with --rate-limit-scale 0.05
    limiter = RateLimiters(clock=FakeClock(), tiers=scaled).get("/api/events", "XL")
    assert (limiter.burst, limiter.steady) == (17, 175)


# -- headers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, RateLimitInfo()),
        (
            {"RateLimit-Limit": "150", "RateLimit-Remaining": "148", "RateLimit-Reset": "42"},
            RateLimitInfo(150, 148, 42.0),
        ),
        (
            {"RateLimit-Limit": "150, 150;w=60", "RateLimit-Remaining": "148", "RateLimit-Reset": "42"},
            RateLimitInfo(150, 148, 42.0, 60.0),
        ),
        ({"RateLimit-Limit": "10, 10;w=1, 150;w=60"}, RateLimitInfo(10, None, None, 1.0, 150)),
        ({"RateLimit": "limit=150, remaining=3, reset=9"}, RateLimitInfo(150, 3, 9.0)),
        ({"RateLimit-Limit": "lots", "RateLimit-Remaining": ""}, RateLimitInfo()),
    ],
)
def test_rate_limit_headers_plain_draft_combined_or_absent(
    headers: dict[str, str], expected: RateLimitInfo
) -> None:
    assert parse_rate_limit_headers(headers) == expected


def test_a_policy_list_led_by_the_burst_still_teaches_the_steady_quota() -> None:
    """Klaviyo lists every window and leads with the burst (`18, 18;w=1, 175;w=60`; the emulator's
    quirk `ratelimit_policies`): the steady quota comes from its policy, and the burst's Remaining and
    Reset do not touch the steady budget."""
    limiter = TierLimiter(TIERS["XL"], clock=FakeClock())
    limiter.release({"RateLimit-Limit": "18, 18;w=1, 175;w=60", "RateLimit-Remaining": "0",
                     "RateLimit-Reset": "1"})
    assert (limiter.steady, limiter.burst) == (175, 17)
    assert limiter._server_left == math.inf  # no steady window was reported


def test_a_burst_window_report_does_not_touch_the_steady_budget() -> None:
    limiter = TierLimiter(TIERS["M"], clock=FakeClock())
    limiter.release({"RateLimit-Limit": "10, 10;w=1", "RateLimit-Remaining": "0", "RateLimit-Reset": "1"})
    assert limiter.steady == 150
    assert limiter._server_left == math.inf


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("30", 30.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
    ],
)
def test_retry_after_in_seconds_or_as_a_date(value: str | None, expected: float | None) -> None:
    now_epoch = 1445412480.0  # 2015-10-21T07:28:00Z
    assert parse_retry_after(value, now_epoch=now_epoch) == expected
