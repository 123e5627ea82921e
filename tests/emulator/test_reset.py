"""`POST /_emulator/reset`: the emulator as just started, with its data as it is. A benchmark runs many
times on one emulator, and each run must meet what a fresh emulator of the same seed would: empty
rate-limit windows, the same latency and fault draws, a cold page cache, zeroed stats."""

from __future__ import annotations

import pytest

from klaviyo_emulator.runner import EmulatorOptions, run_emulator_in_thread
from tests.emulator.helpers import request

FROZEN = 1_800_000_000.5  # the limiter's clock stands still: no window ends by itself during a test


def reset(url: str) -> dict:
    resp = request(url, "/_emulator/reset", method="POST", api_key=None, revision=None)
    assert resp.status == 200
    return resp.json()


def test_reset_empties_every_rate_limit_window() -> None:
    options = EmulatorOptions(seed=3, scale="tiny", rate_limits=True, rate_limit_clock=lambda: FROZEN)
    with run_emulator_in_thread(options) as emu:
        first = request(emu.url, "/api/flows")  # S tier: 3 a second
        statuses = [request(emu.url, "/api/flows").status for _ in range(5)]
        assert statuses.count(429) >= 2, "the frozen second's burst is spent"
        assert request(emu.url, "/api/flows").status == 429, "and stays spent without a reset"

        assert reset(emu.url) == {"reset": ["rate_limit_windows", "latency_and_fault_draws", "page_cache",
                                            "stats"]}
        again = request(emu.url, "/api/flows")
        assert again.status == 200
        assert again.headers["RateLimit-Limit"] == first.headers["RateLimit-Limit"]
        assert again.headers["RateLimit-Remaining"] == first.headers["RateLimit-Remaining"]


def test_reset_replays_the_fault_draws_from_the_first() -> None:
    options = EmulatorOptions(seed=29, scale="tiny", faults="503=0.5", rate_limits=False)
    with run_emulator_in_thread(options) as emu:
        def statuses() -> list[int]:
            return [request(emu.url, "/api/metrics").status for _ in range(12)]

        first, following = statuses(), statuses()
        assert first != following, "each retry of a request meets a draw of its own"
        reset(emu.url)
        assert statuses() == first


def test_reset_replays_the_latency_draws_from_the_first() -> None:
    options = EmulatorOptions(seed=29, scale="tiny", latency_ms=4.0, rate_limits=False)

    def latency_of(url: str) -> float:
        request(url, "/_emulator/stats/reset", method="POST", api_key=None, revision=None)
        for _ in range(6):
            assert request(url, "/api/metrics").status == 200
        return request(url, "/_emulator/stats", api_key=None, revision=None).json()["latency_seconds"]

    with run_emulator_in_thread(options) as emu:
        first, following = latency_of(emu.url), latency_of(emu.url)
        assert first != following
        reset(emu.url)
        assert latency_of(emu.url) == first


@pytest.mark.parametrize("path", ["/api/metrics", "/api/profiles"])
def test_reset_zeroes_the_stats_and_empties_the_page_cache(path: str) -> None:
    with run_emulator_in_thread(EmulatorOptions(seed=5, scale="tiny", rate_limits=False)) as emu:
        for _ in range(3):
            assert request(emu.url, path).status == 200
        before = request(emu.url, "/_emulator/stats", api_key=None, revision=None).json()
        assert before["page_cache"]["hits"] == 2
        reset(emu.url)
        assert request(emu.url, path).status == 200
        after = request(emu.url, "/_emulator/stats", api_key=None, revision=None).json()
        assert (after["page_cache"]["hits"], after["page_cache"]["misses"]) == (0, 1), "rendered again"
        api_requests = sum(count for route, by_status in after["requests"].items()
                           if route.startswith("/api/") for count in by_status.values())
        assert api_requests == 1
