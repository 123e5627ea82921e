"""Added latency: a fixed part and parts proportional to the body, scaled by one seeded factor per request.

An API request with `raw` bytes of uncompressed body and `sent` bytes as sent (gzip or identity) waits

    J * fixed_ms / 2                                                 before its handler runs, and
    J * (fixed_ms / 2 + per_raw_kb_ms * raw / 1024 + per_kb_ms * sent / 1024)
                                                                     once its body is known, before sending

The first half of the fixed part is the request's way in: the rate limiter counts the request when it
"arrives", as Klaviyo's does. The rest is the server's work and the answer's way back: `per_raw_kb_ms`
stands for work that grows with the document (reading and rendering records; gzip does not shrink it),
`per_kb_ms` for the transfer of the bytes on the wire (gzip does shrink it).

J, the request's factor, has mean 1 (so `fixed_ms` keeps its old meaning, the mean of the fixed part):
- `tail == 0`: uniform on [0.5, 1.5] (median 1, p90 1.4, p99 1.49);
- `tail == F > 1`: lognormal, J = exp(s * Z - s**2 / 2) with Z standard normal and s = ln(F) / z99
  (z99 = 2.3263, the normal's 0.99-quantile), so p99 / median = F: median exp(-s**2 / 2),
  p90 exp(1.2816 * s - s**2 / 2), p99 F * exp(-s**2 / 2). Z is clamped to its quantiles 0.0001 and
  0.9999 (+-3.719), so J never exceeds exp(3.719 * s - s**2 / 2).

J comes from a hash of (seed, method, path and query, n) where n counts how often this exact request was
seen: the same requests get the same latencies whatever their order or concurrency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from . import draws
from .draws import RequestDraws

_NORMAL = NormalDist()
Z99 = _NORMAL.inv_cdf(0.99)
CLAMP = 1e-4  # lognormal draws are clamped to the quantiles [CLAMP, 1 - CLAMP]


@dataclass(frozen=True)
class LatencyModel:
    fixed_ms: float = 0.0  # mean of the fixed part
    per_kb_ms: float = 0.0  # per KiB of the body as sent (gzip or identity)
    per_raw_kb_ms: float = 0.0  # per KiB of the uncompressed body
    tail: float = 0.0  # 0: uniform jitter 0.5-1.5x; F > 1: lognormal with p99 = F x median

    def __post_init__(self) -> None:
        for name in ("fixed_ms", "per_kb_ms", "per_raw_kb_ms", "tail"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"latency {name} must be a finite number >= 0, not {value!r}")
        if 0 < self.tail <= 1:
            raise ValueError(f"latency tail is p99/median: 0 (no tail) or more than 1, not {self.tail!r}")

    @property
    def enabled(self) -> bool:
        return self.fixed_ms > 0 or self.per_kb_ms > 0 or self.per_raw_kb_ms > 0

    @property
    def sigma(self) -> float:
        return math.log(self.tail) / Z99 if self.tail else 0.0

    def factor(self, u: float) -> float:
        """J for a uniform draw `u` in (0, 1) (J's quantile function: `factor(0.99)` is J's p99)."""
        if not self.tail:
            return 0.5 + u
        sigma = self.sigma
        z = _NORMAL.inv_cdf(min(max(u, CLAMP), 1 - CLAMP))
        return math.exp(sigma * z - sigma * sigma / 2)

    def mean_ms(self, raw_bytes: int, sent_bytes: int) -> float:
        """The latency of a response of this size before its factor: its mean (J has mean 1)."""
        return self.fixed_ms + (self.per_raw_kb_ms * raw_bytes + self.per_kb_ms * sent_bytes) / 1024

    def quantile_ms(self, q: float, raw_bytes: int, sent_bytes: int) -> float:
        """The q-quantile of the latency of responses of this size."""
        return self.factor(q) * self.mean_ms(raw_bytes, sent_bytes)

    def before_s(self, u: float) -> float:
        """Seconds to wait before the handler runs (the request on its way in)."""
        return self.factor(u) * self.fixed_ms / 2 / 1000

    def after_s(self, u: float, raw_bytes: int, sent_bytes: int) -> float:
        """Seconds to wait once the body is known, before it is sent."""
        return self.factor(u) * (self.mean_ms(raw_bytes, sent_bytes) - self.fixed_ms / 2) / 1000


# Klaviyo over the internet, as assumed for benchmarks (docs/emulator.md, "Latency"): ~120 ms for a small
# answer, a 1,000-event page (~1 MB, ~140 KB gzipped) 0.76 s gzipped, 0.85 s identity on average, p99 3x
# the median.
PROFILES: dict[str, LatencyModel] = {
    "real": LatencyModel(fixed_ms=120.0, per_kb_ms=0.1, per_raw_kb_ms=0.6, tail=3.0),
}


def resolve(
    profile: str | None = None,
    fixed_ms: float | None = None,
    per_kb_ms: float | None = None,
    per_raw_kb_ms: float | None = None,
    tail: float | None = None,
) -> LatencyModel:
    """The profile's model (or no latency) with each value given here replacing the profile's."""
    if profile:
        if profile not in PROFILES:
            raise ValueError(f"unknown latency profile {profile!r}; known: {', '.join(PROFILES)}")
        base = PROFILES[profile]
    else:
        base = LatencyModel()
    return LatencyModel(
        fixed_ms=base.fixed_ms if fixed_ms is None else fixed_ms,
        per_kb_ms=base.per_kb_ms if per_kb_ms is None else per_kb_ms,
        per_raw_kb_ms=base.per_raw_kb_ms if per_raw_kb_ms is None else per_raw_kb_ms,
        tail=base.tail if tail is None else tail,
    )


LATENCY = b"latency"  # the purpose of latency draws (draws.py)


def unit_draw(seed: int, method: str, target: str, occurrence: int) -> float:
    """The request's latency draw: a pure function of the seed, the request and how often it was seen."""
    return draws.unit_draw(seed, method, target, occurrence, LATENCY)


class LatencyPlan(RequestDraws):
    """The latency draw of each request (draws.py), with the model it scales."""

    def __init__(self, model: LatencyModel, seed: int) -> None:
        super().__init__(seed, LATENCY)
        self.model = model
