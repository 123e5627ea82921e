"""Klaviyo's fixed-window rate limits: per endpoint per account, a 1 s burst and a 60 s steady window
(plus a daily window for reporting endpoints)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from .endpoints import Tier
from .errors import ApiError

WINDOWS = (("burst", 1), ("steady", 60), ("daily", 86_400))


class RateLimiter:
    def __init__(self, scale: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.scale = scale
        self.clock = clock
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}  # (bucket, window) -> (window start, count)

    def reset(self) -> None:
        """Every window of every bucket empty, as at start-up."""
        self._counts.clear()

    def limits(self, tier: Tier) -> dict[str, int]:
        out = {
            "burst": max(1, round(tier.burst * self.scale)),
            "steady": max(1, round(tier.steady * self.scale)),
        }
        if tier.daily:
            out["daily"] = tier.daily  # the daily cap is a contract, not a throughput knob
        return out

    def hit(self, bucket: str, tier: Tier, policies: bool = False) -> dict[str, str]:
        """Count one request; raise a 429 ApiError if a window is full, else return the RateLimit-*
        headers: of the steady window, or with `policies` (quirks.py `ratelimit_policies`) every
        window listed (`350, 350;w=1, 3500;w=60`) after the limit of the one closest to exhaustion,
        which Remaining and Reset then describe."""
        now = self.clock()
        limits = self.limits(tier)
        states: dict[str, tuple[int, int]] = {}
        for window, length in WINDOWS:
            if window not in limits:
                continue
            start = int(now // length) * length
            prev_start, count = self._counts.get((bucket, window), (start, 0))
            count = count if prev_start == start else 0
            if count >= limits[window]:
                wait = max(1, math.ceil(start + length - now))
                raise ApiError(
                    429,
                    f"Request was throttled. Expected available in {wait} second{'s' if wait != 1 else ''}.",
                    headers={"Retry-After": str(wait)},
                )
            states[window] = (start, count)
        for window, (start, count) in states.items():
            self._counts[(bucket, window)] = (start, count + 1)
        lengths = dict(WINDOWS)
        shown = "steady"
        if policies:
            # the window closest to exhaustion (the shorter one on a tie), as the IETF draft's list form
            shown = min(states, key=lambda w: (limits[w] - states[w][1] - 1) / limits[w])
        start, count = states[shown]
        limit = str(limits[shown])
        if policies:
            limit += "".join(f", {limits[w]};w={lengths[w]}" for w in states)
        return {
            "RateLimit-Limit": limit,
            "RateLimit-Remaining": str(max(0, limits[shown] - count - 1)),
            "RateLimit-Reset": str(max(1, math.ceil(start + lengths[shown] - now))),
        }
