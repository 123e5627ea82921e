"""Injected failures, drawn per request from the seed (draws.py): a request meets the same faults in any
order and at any concurrency, its n-th attempt always the same one.

Grammar (interface.md): comma-separated `kind=rate`, kinds 500 502 503 504 429 timeout reset truncate html,
plus emulator extras:
  429storm=RATE     a 429 whose Retry-After is long (default 30 s, or `retry_after`)
  retry_after=SEC   Retry-After of `429` faults (default 1) and of `429storm` faults (default 30)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .draws import RequestDraws

FAULTS = b"faults"  # the purpose of fault draws (draws.py)
KINDS = ("500", "502", "503", "504", "429", "429storm", "timeout", "reset", "truncate", "html")


@dataclass
class FaultPlan:
    rates: list[tuple[str, float]] = field(default_factory=list)
    retry_after: int | None = None
    seed: int = 1
    _draws: RequestDraws = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._draws = RequestDraws(self.seed, FAULTS)

    def forget(self) -> None:
        self._draws.forget()

    @classmethod
    def parse(cls, spec: str, seed: int) -> FaultPlan:
        plan = cls(seed=seed)
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            kind, sep, value = part.partition("=")
            kind = kind.strip()
            if not sep:
                raise ValueError(f"fault {part!r}: expected kind=rate")
            if kind == "retry_after":
                plan.retry_after = int(value)
                continue
            if kind not in KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}, retry_after")
            rate = float(value)
            if not 0 <= rate <= 1:
                raise ValueError(f"fault {kind}: rate must be between 0 and 1")
            plan.rates.append((kind, rate))
        if sum(r for _, r in plan.rates) > 1:
            raise ValueError("fault rates add up to more than 1")
        return plan

    def draw(self, method: str, target: str) -> str | None:
        """The fault for this API request (method, path and query), or None."""
        if not self.rates:
            return None
        u = self._draws.draw(method, target)
        acc = 0.0
        for kind, rate in self.rates:
            acc += rate
            if u < acc:
                return kind
        return None

    def retry_after_for(self, kind: str) -> int:
        if kind == "429storm":
            return self.retry_after or 30
        return self.retry_after or 1
