"""Added latency (`klaviyo_emulator.latency`): each request's draw is a function of the seed and the
request (and how often it was seen), not of arrival order; the factor's distribution is the documented
one; the size parts grow with the body. No test here measures time."""

from __future__ import annotations

import asyncio
import math
import random
import re
import statistics
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from klaviyo_emulator.cli import main
from klaviyo_emulator.latency import CLAMP, PROFILES, Z99, LatencyModel, LatencyPlan, resolve, unit_draw
from klaviyo_emulator.runner import EmulatorOptions, run_emulator_in_thread
from tests.emulator.helpers import API_KEY, REVISION

ANCHOR = datetime(2026, 6, 1, 12, tzinfo=UTC)
HEADERS = {"Authorization": f"Klaviyo-API-Key {API_KEY}", "revision": REVISION}


def draws(seed: int = 7, count: int = 20_000) -> list[float]:
    return [unit_draw(seed, "GET", f"/api/events?page%5Bcursor%5D={i}", 1) for i in range(count)]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the draw ------------------------------------------------------------------------------------------


def test_a_draw_is_a_pure_function_of_seed_request_and_occurrence() -> None:
    first = unit_draw(3, "GET", "/api/events?page%5Bsize%5D=1000", 1)
    assert unit_draw(3, "GET", "/api/events?page%5Bsize%5D=1000", 1) == first
    others = {
        unit_draw(4, "GET", "/api/events?page%5Bsize%5D=1000", 1),
        unit_draw(3, "POST", "/api/events?page%5Bsize%5D=1000", 1),
        unit_draw(3, "GET", "/api/events?page%5Bsize%5D=999", 1),
        unit_draw(3, "GET", "/api/events?page%5Bsize%5D=1000", 2),
    }
    assert first not in others
    assert len(others) == 4
    assert all(0 < u < 1 for u in [first, *others])


def test_draws_do_not_depend_on_the_order_requests_arrive_in() -> None:
    rng = random.Random(5)
    targets = [f"/api/profiles?page%5Bcursor%5D={rng.randrange(40)}" for _ in range(400)]  # with repeats
    shuffled = targets[:]
    rng.shuffle(shuffled)

    def by_occurrence(order: list[str]) -> dict[tuple[str, int], float]:
        plan = LatencyPlan(LatencyModel(fixed_ms=100), seed=11)
        seen: dict[str, int] = {}
        out: dict[tuple[str, int], float] = {}
        for target in order:
            seen[target] = seen.get(target, 0) + 1
            out[(target, seen[target])] = plan.draw("GET", target)
        return out

    in_order = by_occurrence(targets)
    assert by_occurrence(shuffled) == in_order
    assert in_order == {key: unit_draw(11, "GET", key[0], key[1]) for key in in_order}


def test_draws_are_uniform() -> None:
    values = draws()
    assert statistics.fmean(values) == pytest.approx(0.5, abs=0.01)
    for q in (0.1, 0.5, 0.9, 0.99):
        assert quantile(values, q) == pytest.approx(q, abs=0.01)


# -- the factor J --------------------------------------------------------------------------------------


def test_without_a_tail_the_factor_is_uniform_from_half_to_one_and_a_half() -> None:
    model = LatencyModel(fixed_ms=150)
    assert [model.factor(q) for q in (0.0, 0.5, 0.9, 0.99)] == pytest.approx([0.5, 1.0, 1.4, 1.49])
    factors = [model.factor(u) for u in draws()]
    assert min(factors) >= 0.5
    assert max(factors) <= 1.5
    assert statistics.fmean(factors) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("tail", [2.0, 3.0, 5.0])
def test_with_a_tail_the_factor_is_lognormal_with_mean_one_and_p99_tail_times_the_median(tail: float) -> None:
    model = LatencyModel(fixed_ms=120, tail=tail)
    sigma = math.log(tail) / Z99
    median = math.exp(-sigma * sigma / 2)
    # the documented quantiles, exactly
    assert model.factor(0.5) == pytest.approx(median)
    assert model.factor(0.9) == pytest.approx(median * math.exp(1.2816 * sigma), rel=1e-4)
    assert model.factor(0.99) == pytest.approx(tail * median)
    # and over many requests
    factors = [model.factor(u) for u in draws()]
    assert statistics.fmean(factors) == pytest.approx(1.0, abs=0.03)
    assert quantile(factors, 0.5) == pytest.approx(median, rel=0.03)
    assert quantile(factors, 0.9) == pytest.approx(median * math.exp(1.2816 * sigma), rel=0.04)
    assert quantile(factors, 0.99) / quantile(factors, 0.5) == pytest.approx(tail, rel=0.08)
    z = statistics.NormalDist().inv_cdf(1 - CLAMP)  # 3.719: the clamp
    assert median * math.exp(-z * sigma) <= min(factors)
    assert max(factors) <= median * math.exp(z * sigma)


def test_the_tail_is_clamped() -> None:
    model = LatencyModel(fixed_ms=120, tail=3)
    assert model.factor(1e-12) == model.factor(CLAMP)
    assert model.factor(1 - 1e-12) == model.factor(1 - CLAMP)
    ceiling = math.exp(3.719 * model.sigma - model.sigma**2 / 2)
    assert model.factor(1 - CLAMP) == pytest.approx(ceiling, rel=1e-4)


# -- the parts -----------------------------------------------------------------------------------------


def test_the_wait_before_the_handler_is_half_the_fixed_part_and_both_add_up_to_the_whole() -> None:
    model = LatencyModel(fixed_ms=100, per_kb_ms=0.2, per_raw_kb_ms=0.5, tail=3)
    for u in draws(count=200):
        j = model.factor(u)
        assert model.before_s(u) == pytest.approx(j * 0.050)
        total = model.before_s(u) + model.after_s(u, raw_bytes=1_048_576, sent_bytes=131_072)
        assert total == pytest.approx(j * (100 + 0.5 * 1024 + 0.2 * 128) / 1000)


def test_the_size_parts_count_kib_sent_and_kib_uncompressed() -> None:
    raw, sent = 10 * 1024, 1024  # a body gzipped to a tenth
    assert LatencyModel(per_kb_ms=1).mean_ms(raw, sent) == pytest.approx(1)
    assert LatencyModel(per_raw_kb_ms=1).mean_ms(raw, sent) == pytest.approx(10)
    assert LatencyModel(fixed_ms=5, per_kb_ms=1, per_raw_kb_ms=1).mean_ms(raw, sent) == pytest.approx(16)


@pytest.mark.parametrize("q", [0.1, 0.5, 0.99])
def test_the_size_parts_are_proportional_to_the_body(q: float) -> None:
    model = LatencyModel(fixed_ms=120, per_kb_ms=0.1, per_raw_kb_ms=0.6, tail=3)
    small = model.quantile_ms(q, 1024, 1024)
    page = model.quantile_ms(q, 1024 * 1024, 140 * 1024)
    twice = model.quantile_ms(q, 2 * 1024 * 1024, 280 * 1024)
    assert small < page < twice
    assert twice - page == pytest.approx(page - model.quantile_ms(q, 0, 0))  # linear in the sizes
    assert page - small == pytest.approx(model.factor(q) * (0.6 * 1023 + 0.1 * 139))


def test_the_real_profile_puts_a_page_at_several_times_a_small_answer_with_a_heavy_tail() -> None:
    real = PROFILES["real"]
    error = real.quantile_ms(0.5, 300, 300)
    page = real.quantile_ms(0.5, 1_066_000, 143_000)  # a 1,000-event page, gzipped at level 1
    assert 80 < error < 150
    assert 500 < page < 1000
    assert real.quantile_ms(0.99, 1_066_000, 143_000) == pytest.approx(3 * page)
    assert real.quantile_ms(0.5, 1_066_000, 1_066_000) > page  # identity: more bytes on the wire


# -- options -------------------------------------------------------------------------------------------


def test_a_profile_gives_the_values_not_set_and_the_ones_set_replace_its_own() -> None:
    assert resolve() == LatencyModel()
    assert not resolve().enabled
    assert resolve(fixed_ms=150) == LatencyModel(fixed_ms=150)
    assert resolve("real") == PROFILES["real"]
    assert resolve("real", tail=0) == LatencyModel(fixed_ms=120, per_kb_ms=0.1, per_raw_kb_ms=0.6, tail=0)
    assert resolve("real", fixed_ms=0, per_kb_ms=0, per_raw_kb_ms=0).enabled is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fixed_ms": -1.0}, "latency fixed_ms must be a finite number >= 0, not -1.0"),
        ({"per_kb_ms": math.nan}, "latency per_kb_ms must be a finite number >= 0, not nan"),
        ({"per_raw_kb_ms": math.inf}, "latency per_raw_kb_ms must be a finite number >= 0, not inf"),
        ({"tail": 1.0}, "latency tail is p99/median: 0 (no tail) or more than 1, not 1.0"),
        ({"tail": 0.5}, "latency tail is p99/median: 0 (no tail) or more than 1, not 0.5"),
    ],
)
def test_invalid_latency_values_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        LatencyModel(**kwargs)


def test_an_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="real"):
        resolve("slow")


@pytest.mark.parametrize(
    "args",
    [["--latency-tail", "0.5"], ["--latency-ms", "-3"], ["--latency-per-kb", "nan"]],
)
def test_the_cli_refuses_invalid_latency_before_serving(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--port", "0", *args]) == 2
    assert "latency" in capsys.readouterr().err


# -- in the emulator -----------------------------------------------------------------------------------


async def _get_all(url: str, targets: list[str], concurrently: bool) -> None:
    async with aiohttp.ClientSession(headers=HEADERS) as session:

        async def one(target: str) -> None:
            async with session.get(url + target) as resp:
                assert resp.status == 200
                await resp.read()

        if concurrently:
            await asyncio.gather(*(one(t) for t in targets))
        else:
            for target in targets:
                await one(target)


def _latency_added(targets: list[str], concurrently: bool) -> Any:
    options = EmulatorOptions(seed=9, rate_limits=False, anchor=ANCHOR, latency_ms=2.0, latency_tail=3.0)
    with run_emulator_in_thread(options) as emu:
        asyncio.run(_get_all(emu.url, targets, concurrently))
        return emu.stats()["latency_seconds"]


def test_the_emulator_adds_the_same_latencies_whatever_the_order_and_concurrency() -> None:
    targets = [f"/api/flows?page%5Bsize%5D={n}" for n in (1, 2, 3, 1, 2, 1)] + ["/api/lists"] * 3
    sequential = _latency_added(targets, concurrently=False)
    expected = sum(
        LatencyModel(fixed_ms=2.0, tail=3.0).factor(unit_draw(9, "GET", target, n)) * 2.0 / 1000
        for target, n in _occurrences(targets)
    )
    assert sequential == pytest.approx(expected, abs=1e-5)
    assert _latency_added(targets[::-1], concurrently=True) == pytest.approx(sequential, abs=1e-5)


def _occurrences(targets: list[str]) -> list[tuple[str, int]]:
    seen: dict[str, int] = {}
    out = []
    for target in targets:
        seen[target] = seen.get(target, 0) + 1
        out.append((target, seen[target]))
    return out


def test_a_request_waiting_out_its_latency_holds_up_no_other_request() -> None:
    async def scenario(url: str) -> float:
        async with aiohttp.ClientSession(headers=HEADERS) as session:

            async def slow_request() -> None:
                async with session.get(url + "/api/metrics") as resp:
                    await resp.read()

            slow = asyncio.ensure_future(slow_request())
            try:
                while True:  # the emulator answers its own endpoints while the API request waits
                    async with session.get(url + "/_emulator/stats") as resp:
                        waited: float = (await resp.json())["latency_seconds"]
                    if waited > 0:
                        return waited
                    await asyncio.sleep(0.01)
            finally:
                slow.cancel()

    options = EmulatorOptions(seed=9, rate_limits=False, anchor=ANCHOR, latency_ms=600_000.0)
    with run_emulator_in_thread(options) as emu:
        waited = asyncio.run(scenario(emu.url))
    draw = unit_draw(9, "GET", "/api/metrics", 1)
    assert waited == pytest.approx(LatencyModel(fixed_ms=600_000.0).before_s(draw))
