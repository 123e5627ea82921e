"""Per-endpoint tiers: bursts past the limit are 429s with Retry-After; 2xx responses carry RateLimit-*
headers: by default as Klaviyo writes them (`RateLimit-Limit: 10, 10;w=1, 150;w=60`: the window closest
to exhaustion first, every window listed; quirks.py `ratelimit_policies`), with --spec-strict the steady
window's plain numbers.  Every assertion is about counts, none about timings: a burst that spans two
1-second windows can pass at most twice the burst limit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from klaviyo_emulator.endpoints import TIERS
from klaviyo_emulator.ratelimit import RateLimiter
from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from tests.emulator.helpers import burst, request

CAMPAIGN_VALUES = {
    "data": {
        "type": "campaign-values-report",
        "attributes": {
            "statistics": ["opens"],
            "timeframe": {"key": "last_30_days"},
            "conversion_metric_id": "X",
        },
    }
}


@pytest.fixture
def limited() -> Iterator[RunningEmulator]:
    with run_emulator_in_thread(EmulatorOptions(seed=13, scale="tiny", rate_limits=True)) as emu:
        yield emu


@pytest.fixture
def strict() -> Iterator[RunningEmulator]:
    options = EmulatorOptions(seed=13, scale="tiny", rate_limits=True, spec_strict=True)
    with run_emulator_in_thread(options) as emu:
        yield emu


def _statuses(responses) -> Counter:
    return Counter(r.status for r in responses)


def policies(header: str) -> tuple[int, dict[int, int]]:
    """`"10, 10;w=1, 150;w=60"` -> (10, {1: 10, 60: 150}): the current limit, and quota per window."""
    first, *items = (item.strip() for item in header.split(","))
    return int(first), {int(w): int(q) for q, w in (item.split(";w=") for item in items)}


def steady_limit(resp) -> int:
    return policies(resp.headers["RateLimit-Limit"])[1][60]


def test_burst_over_the_s_tier_is_throttled_with_retry_after(limited, spec):
    responses = burst(lambda: request(limited.url, "/api/flows"), 30)  # S tier: 3/s
    statuses = _statuses(responses)
    assert set(statuses) <= {200, 429}
    assert 3 <= statuses[200] <= 6
    for resp in responses:
        if resp.status == 429:
            assert resp.header_int("Retry-After") >= 1
            assert resp.headers["Retry-After"].strip().isdigit(), "Retry-After is an integer of seconds"
            assert resp.error["code"] == "throttled"
            spec.validate("get_flows", 429, resp.json())


def test_throttled_endpoint_leaves_other_endpoints_alone(limited):
    statuses = _statuses(burst(lambda: request(limited.url, "/api/tags"), 20))  # S tier
    assert statuses[429] > 0
    assert request(limited.url, "/api/metrics").status == 200
    assert request(limited.url, "/api/events").status == 200


def test_success_headers_list_every_window_and_describe_the_burst_first(limited):
    for _ in range(4):
        resp = request(limited.url, "/api/metrics")  # M tier: 10/s, 150/m
        assert resp.status == 200
        assert resp.headers["RateLimit-Limit"] == "10, 10;w=1, 150;w=60"
        assert resp.header_int("RateLimit-Reset") == 1  # the burst window's
        assert 0 <= resp.header_int("RateLimit-Remaining") <= 9


def test_the_window_closest_to_exhaustion_is_the_one_described():
    """A steady trickle (one request a second) leaves the burst fresh while the minute fills up: from
    then on Remaining and Reset are the steady window's."""
    now = [999_960.0]  # a minute boundary
    limiter = RateLimiter(clock=lambda: now[0])
    shown = []
    for second in range(30):
        now[0] = 999_960.0 + second + 0.5
        headers = limiter.hit("/api/metrics", TIERS["M"], policies=True)
        current, windows = policies(headers["RateLimit-Limit"])
        assert windows == {1: 10, 60: 150}
        shown.append((current, int(headers["RateLimit-Remaining"]), int(headers["RateLimit-Reset"])))
    assert shown[0] == (10, 9, 1)  # 9/10 left of the burst, 149/150 of the minute: the burst is closer
    assert shown[29] == (150, 120, 31)  # 120/150 left of the minute is closer than 9/10
    assert all(reset <= 1 for current, _, reset in shown if current == 10)


def test_reporting_headers_list_the_daily_window_too(limited):
    metric = limited.truth("metrics")[0]["id"]
    CAMPAIGN_VALUES["data"]["attributes"]["conversion_metric_id"] = metric
    resp = request(limited.url, "/api/campaign-values-reports", method="POST", body=CAMPAIGN_VALUES)
    assert resp.status == 200
    assert resp.headers["RateLimit-Limit"] == "1, 1;w=1, 2;w=60, 225;w=86400"


def test_spec_strict_headers_describe_the_steady_window_and_count_down(strict):
    remaining = []
    for _ in range(4):
        resp = request(strict.url, "/api/metrics")  # M tier: 10/s, 150/m
        assert resp.status == 200
        assert resp.headers["RateLimit-Limit"] == "150"
        assert 0 <= resp.header_int("RateLimit-Reset") <= 60
        remaining.append(resp.header_int("RateLimit-Remaining"))
    assert remaining == sorted(remaining, reverse=True), remaining
    assert len(set(remaining)) == 4, remaining
    assert remaining[0] <= 149


@pytest.mark.parametrize(
    ("path", "params", "steady"),
    [
        ("/api/events", {}, 3500),
        ("/api/profiles", {}, 750),
        ("/api/profiles", {"additional-fields[profile]": "predictive_analytics"}, 150),
        ("/api/profiles", {"additional-fields[profile]": "subscriptions"}, 750),
        ("/api/flows", {}, 60),
        ("/api/lists", {}, 750),
    ],
)
def test_each_endpoint_reports_its_tier(limited, path, params, steady):
    resp = request(limited.url, path, params)
    assert resp.status == 200
    assert steady_limit(resp) == steady


def test_rate_limit_scale_raises_limits_proportionally():
    options = EmulatorOptions(seed=13, rate_limits=True, rate_limit_scale=4.0)
    with run_emulator_in_thread(options) as emu:
        assert steady_limit(request(emu.url, "/api/tags")) == 240  # S tier x4
        statuses = _statuses(burst(lambda: request(emu.url, "/api/flows"), 60))  # S tier x4: 12/s
    assert 12 <= statuses[200] <= 24
    assert statuses[429] == 60 - statuses[200]


def test_profile_count_is_xs_tier(limited):
    list_id = limited.truth("lists")[0]["id"]

    def counted():
        return request(limited.url, f"/api/lists/{list_id}", {"additional-fields[list]": "profile_count"})

    first = counted()
    assert first.status == 200
    assert first.headers["RateLimit-Limit"] == "1, 1;w=1, 15;w=60"
    statuses = _statuses(burst(counted, 8))
    assert statuses[429] >= 6, "1/s burst: at most one more call in this and the next second"
    plain = _statuses(burst(lambda: request(limited.url, f"/api/lists/{list_id}"), 8))
    assert plain == Counter({200: 8}), "the same list without profile_count is L tier"


def test_reporting_endpoints_allow_two_per_minute(limited):
    CAMPAIGN_VALUES["data"]["attributes"]["conversion_metric_id"] = limited.truth("metrics")[0]["id"]

    def report():
        return request(limited.url, "/api/campaign-values-reports", method="POST", body=CAMPAIGN_VALUES)

    statuses = _statuses(burst(report, 6))
    assert 1 <= statuses[200] <= 2
    assert statuses[429] == 6 - statuses[200]


def test_throttled_requests_are_counted_in_stats(limited):
    limited.reset_stats()
    statuses = _statuses(burst(lambda: request(limited.url, "/api/tags"), 15))
    assert statuses[429] > 0
    assert _count_status(limited.stats(), 429) == statuses[429]


def _count_status(node, status: int) -> int:
    """Sum of every count filed under ``status`` anywhere in the stats document."""
    if isinstance(node, dict):
        total = 0
        for key, value in node.items():
            if str(key) == str(status) and isinstance(value, int):
                total += value
            else:
                total += _count_status(value, status)
        return total
    if isinstance(node, list):
        return sum(_count_status(item, status) for item in node)
    return 0
