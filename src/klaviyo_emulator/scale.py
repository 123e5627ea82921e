"""How many records of each resource a scale generates."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    profiles: int
    events: int
    metrics: int
    campaigns_per_channel: int
    flows: int
    lists: int
    segments: int
    templates: int
    tags: int
    coupons: int
    event_days: int  # events are spread over this many days before the anchor


SCALES = {
    "tiny": Scale(150, 1_500, 12, 8, 6, 12, 11, 30, 10, 15, 60),
    "small": Scale(5_000, 50_000, 20, 40, 20, 30, 15, 100, 25, 60, 365),
    "medium": Scale(50_000, 300_000, 30, 150, 60, 80, 40, 300, 50, 200, 540),
    "large": Scale(200_000, 1_000_000, 40, 400, 120, 150, 60, 600, 80, 400, 730),
}
