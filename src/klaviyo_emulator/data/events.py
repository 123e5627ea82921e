"""Events, indexed in datetime order: the timestamps live in one int array (so a datetime filter is a
binary search) and everything else is rebuilt from (seed, index) when a page is rendered."""

from __future__ import annotations

import random
from array import array
from bisect import bisect_left, bisect_right
from typing import Any

from ..jsontext import BigInt
from ..table import Rel, Table
from .rng import iso, mix, record_rng, salt, short_id
from .words import PRODUCTS

DAY = 86_400
BIG_INT = 18446744073709551616123  # the value that crashed a serializer upstream (Airbyte PR #51010)


class Events(Table):
    type = "event"
    cursor_field = "datetime"

    def __init__(
        self,
        seed: int,
        count: int,
        anchor: int,
        days: int,
        metric_ids: list[str],
        metric_names: list[str],
        profiles: Table,
    ) -> None:
        super().__init__()
        self.seed = seed
        self._salt = salt("events")
        self.metric_ids = metric_ids
        self.metric_names = metric_names
        self.profiles = profiles
        self.profile_count = len(profiles)
        # Zipf-ish metric popularity: views and opens dominate, refunds are rare.
        weights = [1.0 / (k + 1) for k in range(len(metric_ids))]
        total = sum(weights)
        self._metric_cdf = []
        acc = 0.0
        for w in weights:
            acc += w / total
            self._metric_cdf.append(int(acc * (1 << 32)))
        self.ts = _timeline(seed, count, anchor, days)
        self._order: array | None = None  # identity until an added event lands before future-dated ones
        self._by_metric: tuple[int, dict[str, array]] | None = None
        self._base_ids = count

    def __len__(self) -> int:
        return len(self.ts)

    def id(self, index: int) -> str:
        return short_id(self.seed, "events", index, 11)

    def index_of(self, record_id: str) -> int | None:
        return None  # no single-event endpoint is emulated

    def metric_index(self, index: int) -> int:
        return bisect_right(self._metric_cdf, mix(self.seed, self._salt, index, 1) & 0xFFFFFFFF) % len(
            self.metric_ids
        )

    def profile_index(self, index: int) -> int:
        return mix(self.seed, self._salt, index, 2) % self.profile_count

    def value(self, field: str, index: int) -> Any:
        if field in ("datetime", "timestamp"):
            return self.ts[index]
        if field == "metric_id":
            return self.metric_ids[self.metric_index(index)]
        if field == "profile_id":
            return self.profiles.id(self.profile_index(index))
        if field in ("metric", "profile"):
            return True
        if field == "id":
            return self.id(index)
        return None

    def order(self, field: str):  # type: ignore[override]
        if self._order is None:
            return range(len(self))
        return self._order

    def by_metric(self, metric_id: str) -> array:
        """Indices of one metric's events in datetime order, built once per data version."""
        if self._by_metric is None or self._by_metric[0] != self.version:
            groups: dict[str, array] = {m: array("l") for m in self.metric_ids}
            for i in self.order("datetime"):
                groups[self.metric_ids[self.metric_index(i)]].append(i)
            self._by_metric = (self.version, groups)
        return self._by_metric[1].get(metric_id, array("l"))

    def add(self, now: int) -> int:
        index = len(self.ts)
        self.ts.append(now)
        if self._order is None and index > 0 and self.ts[index - 1] > now:
            self._order = array("l", range(index))
        if self._order is not None:
            pos = bisect_right(self._order, now, key=self.ts.__getitem__)
            self._order.insert(pos, index)
        self.touched()
        return index

    def attributes(self, index: int, additional: frozenset[str]) -> dict[str, Any]:
        ts = self.ts[index]
        h = mix(self.seed, self._salt, index, 3)
        return {
            "timestamp": ts,
            "event_properties": self._properties(index),
            "datetime": iso(ts),
            "uuid": f"{h >> 32 & 0xFFFFFFFF:08x}-{h >> 16 & 0xFFFF:04x}-11ef-{0x8000 | h & 0x3FFF:04x}-{mix(h) & 0xFFFFFFFFFFFF:012x}",
        }

    def _properties(self, index: int) -> dict[str, Any]:
        rnd = record_rng(self.seed, "events", index)
        name = self.metric_names[self.metric_index(index)]
        props: dict[str, Any] = {"$event_id": f"{index}-{rnd.randrange(10**6)}"}
        if name in (
            "Placed Order",
            "Ordered Product",
            "Started Checkout",
            "Added to Cart",
            "Refunded Order",
            "Fulfilled Order",
        ):
            items = []
            for _ in range(rnd.randrange(1, 4)):
                items.append(
                    {
                        "ProductName": PRODUCTS[rnd.randrange(len(PRODUCTS))],
                        "SKU": f"SKU-{rnd.randrange(10_000)}",
                        # integer and fractional quantities both occur (weights, meters)
                        "quantity": rnd.randrange(1, 5)
                        if rnd.random() < 0.7
                        else round(rnd.uniform(0.1, 3.0), 3),
                        "ItemPrice": round(rnd.uniform(1, 200), 2),
                        "Categories": rnd.sample(["Été", "Sale", "Home", "服", "🧦"], rnd.randrange(0, 3)),
                    }
                )
            props.update(
                {
                    "$value": round(sum(i["ItemPrice"] * i["quantity"] for i in items), 2),
                    "OrderId": str(80_000 + index),
                    "Items": items,
                    "ItemNames": [i["ProductName"] for i in items],
                    "Discount Codes": [] if rnd.random() < 0.7 else ["ÉTÉ20"],
                    "$extra": {
                        "shipping": {
                            "method": rnd.choice(["standard", "express", None]),
                            "cost": rnd.choice([0, 4.99, 12]),
                        }
                    },
                }
            )
            if index % 7 == 0:
                props["external_order_ref"] = BigInt(BIG_INT + index)
        elif name in ("Viewed Product", "Active on Site"):
            props.update(
                {
                    "ProductName": PRODUCTS[rnd.randrange(len(PRODUCTS))],
                    "URL": f"https://shop.example.com/p/{rnd.randrange(500)}?ref=✓",
                    "page": {"referrer": None, "depth": rnd.randrange(1, 9)},
                }
            )
        else:
            props.update(
                {
                    "Subject": rnd.choice(
                        ["Up to 40% off ✨", "Votre panier vous attend", "ようこそ", "Last chance"]
                    ),
                    "Campaign Name": f"Campaign {rnd.randrange(100)}",
                    "$message": short_id(self.seed, "campaign-messages", rnd.randrange(100), 26),
                    "machine_open": rnd.random() < 0.2,
                }
            )
        if index % 13 == 0:
            props["$value"] = BigInt(BIG_INT) if index % 2 else props.get("$value", 0)
        return props

    def relationships(self, index: int) -> dict[str, Rel]:
        return {
            "profile": ("profile", self.profiles.id(self.profile_index(index))),
            "metric": ("metric", self.metric_ids[self.metric_index(index)]),
            "attributions": [],
        }

    def truth_row(self, index: int) -> dict[str, Any]:
        return {
            "id": self.id(index),
            "datetime": iso(self.ts[index]),
            "metric_id": self.metric_ids[self.metric_index(index)],
        }

    def range_of(self, lo_ts: float | None, hi_ts: float | None) -> tuple[int, int]:
        order = self.order("datetime")
        key = self.ts.__getitem__
        lo = 0 if lo_ts is None else bisect_left(order, lo_ts, key=key)
        hi = len(order) if hi_ts is None else bisect_right(order, hi_ts, key=key)
        return lo, hi


def _timeline(seed: int, count: int, anchor: int, days: int) -> array:
    """Sorted epoch seconds for `count` events over `days` before the anchor, with same-second bursts
    (some straddling page boundaries) and a few events dated up to three days after the anchor."""
    rnd = random.Random(mix(seed, salt("timeline")))
    future = max(3, count // 400)
    past = count - future
    start = anchor - days * DAY
    span = days * DAY - 600  # the last past event lands at least 10 minutes before the anchor
    gaps = array("d")
    bursts = 0
    total = 0.0
    random_ = rnd.random
    expo = rnd.expovariate
    for i in range(past):
        if bursts:
            bursts -= 1
            gap = 0.0
        elif (i % 1000 in (950, 150) and i % 3000 < 1000) or random_() < 0.002:
            bursts = rnd.randrange(30, 300)  # a burst: many events in one second, across page edges
            gap = 0.0
        elif random_() < 0.35:
            gap = 0.0
        else:
            gap = expo(1.0)
        total += gap
        gaps.append(total)
    scale = span / total if total else 0.0
    ts = array("q", (start + int(g * scale) for g in gaps))
    # Snap a burst onto a UTC midnight, where windowed readers slice.
    if past > 50:
        midnight = (ts[past // 2] // DAY + 1) * DAY
        pos = bisect_left(ts, midnight)
        for j in range(pos, min(pos + 40, past)):
            ts[j] = midnight
    ts.extend(sorted(anchor + rnd.randrange(60, 3 * DAY) for _ in range(future)))
    return ts
