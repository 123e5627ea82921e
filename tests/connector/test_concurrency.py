"""How many requests a bucket keeps in flight (`concurrency.py`), on simulated time: it converges on
what the pace and the round trip call for, backs off on 429s and on rising latency, and never passes
its cap."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from source_klaviyo.concurrency import COOL_DOWN, HEADROOM, MAX_IN_FLIGHT, SPARE, InFlight
from source_klaviyo.ratelimit import TierLimiter
from source_klaviyo.streams import TIERS
from tests.connector.test_ratelimit import FakeClock, simulate

XL_PACE = 3500 / 60 * 0.97  # what the limiter paces the XL tier at


def little(pace: float, round_trip: float) -> int:
    return math.ceil(pace * round_trip * HEADROOM) + SPARE


def test_one_request_until_the_first_answer_then_little_s_law() -> None:
    flight = InFlight(lambda: XL_PACE, cap=MAX_IN_FLIGHT)
    assert flight.limit == 1
    flight.answered(0.6, now=0.0)
    assert flight.limit == little(XL_PACE, 0.6) == 43


def test_the_limit_follows_the_mean_round_trip_and_the_pace() -> None:
    flight = InFlight(lambda: 12.5 * 0.97, cap=MAX_IN_FLIGHT)
    for seconds in (1.0, 2.0, 3.0):
        flight.answered(seconds, now=0.0)
    assert flight.round_trip == pytest.approx(2.0)
    assert flight.limit == little(12.5 * 0.97, 2.0)


def test_the_cap_bounds_the_limit() -> None:
    flight = InFlight(lambda: XL_PACE, cap=7)
    flight.answered(5.0, now=0.0)
    assert flight.limit == 7


def test_a_429_halves_the_limit_for_its_retry_after_or_the_cool_down() -> None:
    flight = InFlight(lambda: XL_PACE, cap=MAX_IN_FLIGHT)
    flight.answered(1.0, now=0.0)
    before = flight.limit_at(10.0)
    flight.throttled(30.0, now=10.0)
    assert flight.limit_at(10.0) == before // 2
    assert flight.limit_at(39.9) == before // 2  # Retry-After 30 s: no growth until it has passed
    assert flight.limit_at(40.0) == before
    flight.throttled(None, now=50.0)
    assert flight.limit_at(50.0 + COOL_DOWN - 0.1) == before // 2
    assert flight.limit_at(50.0 + COOL_DOWN) == before


def test_rising_latency_shrinks_the_limit_instead_of_growing_it() -> None:
    flight = InFlight(lambda: XL_PACE, cap=MAX_IN_FLIGHT)
    for _ in range(2000):  # a long steady half second
        flight.answered(0.5, now=0.0)
    steady = flight.limit
    assert steady == little(XL_PACE, 0.5)
    for _ in range(150):  # the server slows down to 2 s a page
        flight.answered(2.0, now=0.0)
    assert flight.limit < steady
    # A lasting change moves the slow average too: the limit then follows the new round trip.
    for _ in range(20_000):
        flight.answered(2.0, now=0.0)
    assert flight.limit == min(MAX_IN_FLIGHT, little(XL_PACE, 2.0))


# -- a bucket with chains of requests against a server of some latency, on simulated time ----------


def run_bucket(*, chains: int, latency: float, seconds: float, cap: int = MAX_IN_FLIGHT,
               slow_down_at: float | None = None, throttle_at: float | None = None,
               ) -> tuple[list[tuple[float, int, int]], int, float]:
    """`chains` workers each send one request after another through one XL limiter; answers take
    `latency` s (x4 from `slow_down_at`; a 429 with Retry-After 5 at `throttle_at`). Returns samples
    (time, in flight, limit) every 0.1 s, the requests answered, and when the opening credit was
    spent (the bucket paces evenly from then on)."""

    async def scenario(clock: FakeClock) -> tuple[list[tuple[float, int, int]], int, float]:
        limiter = TierLimiter(TIERS["XL"], clock=clock, cap=cap)
        rng = random.Random(3)
        samples: list[tuple[float, int, int]] = []
        done = [0]
        paced_at = [math.inf]
        throttled = [False]

        async def chain() -> None:
            while clock.now < seconds:
                await limiter.acquire()
                sent = clock.now
                wait = latency * rng.uniform(0.5, 1.5)
                if slow_down_at is not None and sent >= slow_down_at:
                    wait *= 4
                await clock.sleep(wait)
                if throttle_at is not None and sent >= throttle_at and not throttled[0]:
                    throttled[0] = True
                    limiter.release(None, clock.now - sent)
                    limiter.block(5.0)
                    continue
                limiter.release(None, clock.now - sent)
                done[0] += 1

        async def sampler() -> None:
            while clock.now < seconds:
                samples.append((clock.now, limiter.inflight, limiter.flight.limit_at(clock.now)))
                if not limiter.opening:
                    paced_at[0] = min(paced_at[0], clock.now)
                await clock.sleep(0.1)

        await asyncio.gather(sampler(), *(chain() for _ in range(chains)))
        return samples, done[0], paced_at[0]

    return simulate(scenario)  # type: ignore[return-value]


@pytest.mark.parametrize("latency", [0.15, 0.6, 1.5])
def test_in_flight_converges_within_seconds_and_the_pace_is_reached(latency: float) -> None:
    seconds = 40.0
    samples, answered, paced_at = run_bucket(chains=200, latency=latency, seconds=seconds)
    expected = little(XL_PACE, latency)
    assert paced_at < 20.0  # the opening credit is spent within seconds, even at 1.5 s a page
    settled = [limit for t, _in_flight, limit in samples if t >= paced_at + 2 * latency + 1.0]
    assert settled
    assert all(abs(limit - expected) <= 0.15 * expected + 1 for limit in settled)
    assert max(in_flight for _t, in_flight, limit in samples) <= max(limit for *_, limit in samples)
    # Enough in flight for the pace: the bucket answers what the limiter lets start.
    assert answered >= 0.93 * XL_PACE * (seconds - 2 * latency)


@pytest.mark.parametrize("latency", [0.15, 0.6, 1.5])
def test_the_opening_credit_makes_up_for_the_first_round_trips(latency: float) -> None:
    # Evenly paced from the first request, a backfill loses the round trip of its calibrating request
    # and of its first pages for good: at 1.5 s a page, 3 s of a 20 s backfill. The bucket's opening
    # credit (Klaviyo's burst allowance, 350 XL requests) sends ahead of the pace while those pages
    # are in flight, so the first 20 s carry 20 s of pace and most of that credit besides.
    seconds = 20.0
    _samples, answered, _paced_at = run_bucket(chains=200, latency=latency, seconds=seconds)
    assert answered >= XL_PACE * seconds + 0.75 * TIERS["XL"].burst_per_second


def test_in_flight_never_passes_the_cap() -> None:
    samples, _answered, _paced_at = run_bucket(chains=50, latency=1.0, seconds=20.0, cap=6)
    assert max(in_flight for _t, in_flight, _limit in samples) == 6


def test_a_429_holds_fewer_in_flight_for_its_retry_after() -> None:
    samples, _answered, _paced_at = run_bucket(chains=200, latency=0.6, seconds=30.0, throttle_at=10.0)
    before = [limit for t, _f, limit in samples if 8.0 <= t < 10.0]
    during = [in_flight for t, in_flight, _l in samples if 11.5 <= t < 15.0]
    after = [limit for t, _f, limit in samples if t >= 20.0]
    assert max(during) <= max(before) // 2 + 1
    assert min(after) >= min(before) - 1


def test_when_latency_rises_the_bucket_backs_off_before_it_grows_again() -> None:
    samples, _answered, _paced_at = run_bucket(chains=300, latency=0.5, seconds=40.0, slow_down_at=10.0)
    steady = [limit for t, _f, limit in samples if 6.0 <= t < 10.0]
    slowed = [limit for t, _f, limit in samples if 13.0 <= t < 16.0]
    assert max(slowed) < min(steady)
