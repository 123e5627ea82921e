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
    # Below: sized so that each collection spans several pages of its largest page from small scale
    # on (medium for the few an account has only dozens of), and the tiny world still has some of each.
    tag_groups: int = 3
    catalog_items: int = 60  # each with 1 to 4 variants
    catalog_categories: int = 8
    coupon_codes: int = 160  # the codes of every fifth coupon (a bulk upload); the others have a few
    forms: int = 14
    images: int = 40
    reviews: int = 120
    universal_content: int = 12
    web_feeds: int = 6
    push_tokens: int = 40
    data_sources: int = 4
    custom_metrics: int = 3


SCALES = {
    "tiny": Scale(150, 1_500, 12, 8, 6, 12, 11, 30, 10, 15, 60),
    "small": Scale(5_000, 50_000, 20, 40, 20, 30, 15, 100, 25, 60, 365, tag_groups=8, catalog_items=400,
                   catalog_categories=30, coupon_codes=300, forms=40, images=300, reviews=1_500,
                   universal_content=40, web_feeds=25, push_tokens=1_200, data_sources=12, custom_metrics=5),
    "medium": Scale(50_000, 300_000, 30, 150, 60, 80, 40, 300, 50, 200, 540, tag_groups=30,
                    catalog_items=2_500, catalog_categories=120, coupon_codes=600, forms=150, images=1_500,
                    reviews=8_000, universal_content=150, web_feeds=60, push_tokens=10_000,
                    data_sources=120, custom_metrics=10),
    "large": Scale(200_000, 1_000_000, 40, 400, 120, 150, 60, 600, 80, 400, 730, tag_groups=50,
                   catalog_items=8_000, catalog_categories=300, coupon_codes=1_200, forms=300, images=4_000,
                   reviews=30_000, universal_content=300, web_feeds=100, push_tokens=40_000,
                   data_sources=200, custom_metrics=20),
}
