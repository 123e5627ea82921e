"""The account itself and how it is set up: its settings (one account), the data sources of its custom
objects, its custom metrics and the conversion metrics it maps, and the push tokens of its profiles'
devices. Custom and mapped metrics name the existing metrics; push tokens existing profiles.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from ..jsontext import JSONObject
from ..table import RowTable
from .rng import iso, mix, salt, short_id, ulid
from .rows import DAY, RowBuilder, id_named, spread_times

if TYPE_CHECKING:
    from ..scale import Scale
    from .profiles import Profiles

DATA_SOURCES = (
    ("Loyalty points", "loyalty", "Points and tiers from the loyalty programme"),
    ("Bookings 📅", "bookings", "Appointments booked in the store"),
    ("Abonnements", "subscriptions", "Abonnements récurrents du site"),
    ("Warranty claims", "support", "Claims filed with customer service"),
)
# Klaviyo's conversion metrics an account maps to its own (`mapped-metric` ids are this enum) and the
# metric each maps to by name; a name the account does not have is mapped to a custom metric, or to
# nothing when it has none either.
MAPPED = (
    ("added_to_cart", "Added to Cart"),
    ("cancelled_sales", None),
    ("ordered_product", "Ordered Product"),
    ("refunded_sales", "Refunded Order"),
    ("revenue", "Placed Order"),
    ("started_checkout", "Started Checkout"),
    ("viewed_product", "Viewed Product"),
)
PLATFORMS = (("ios", "APNs", "swift"), ("android", "FCM", "android"))
ENABLEMENT = (
    "AUTHORIZED", "AUTHORIZED", "AUTHORIZED", "DENIED", "UNAUTHORIZED", "PROVISIONAL", "NOT_DETERMINED",
)


class AccountSetup(RowBuilder):
    def __init__(self, seed: int, anchor: int, scale: Scale, metrics: RowTable, profiles: Profiles,
                 quirks: bool = True) -> None:
        super().__init__(seed, anchor, scale, quirks)
        self.metrics = metrics
        self.profiles = profiles
        self.own("accounts", "account", "timezone")
        self.own("data-sources", "data-source", "title")
        self.own("custom-metrics", "custom-metric", "updated")
        self.own("mapped-metrics", "mapped-metric", "updated")
        self.own("push-tokens", "push-token", "created")
        self.fill("accounts", 1)
        self.fill("data-sources", scale.data_sources)
        self.fill("custom-metrics", scale.custom_metrics)
        self.fill("mapped-metrics", len(MAPPED))
        self.fill("push-tokens", min(scale.push_tokens, len(profiles)))

    def _make_accounts(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        return {
            "id": short_id(self.seed, "accounts", i),
            "attributes": {
                "test_account": False,
                "contact_information": {
                    "default_sender_name": "Example Store ✨",
                    "default_sender_email": "store@example.com",
                    "website_url": "https://shop.example.com",
                    "organization_name": "Example Store AG",
                    "street_address": {
                        "address1": "Bahnhofstrasse 1", "address2": None, "city": "Zürich", "region": "ZH",
                        "country": "Switzerland", "zip": "8001",
                    },
                },
                "industry": "Apparel & Accessories",
                # What every other number is read in: the account's day boundaries and its currency.
                "timezone": "Europe/Zurich",
                "preferred_currency": "CHF",
                "public_api_key": short_id(self.seed, "public-api-key", i),
                "locale": "de-CH",
            },
            "rels": {},
            "keys": {},
        }

    def _make_data_sources(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        title, namespace, description = DATA_SOURCES[i % len(DATA_SOURCES)]
        if i >= len(DATA_SOURCES):
            title, namespace = f"{title} {i}", f"{namespace}_{i}"
        return {
            "id": ulid(self.seed, "data-sources", i),
            "attributes": {
                "title": title,
                "visibility": "shared" if i % 3 == 1 else "private",
                "description": description,
                "namespace": namespace,
            },
            "rels": {},
            "keys": {},
        }

    def _make_custom_metrics(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        created, updated = spread_times(rnd, self.anchor, now, 2 * 365)
        metrics = self.metrics
        picked = sorted({rnd.randrange(len(metrics)) for _ in range(rnd.randrange(1, 4))})
        by_value = i % 2 == 0  # revenue-like metrics sum `$value`; the others count events
        groups: list[JSONObject] = []
        for index in picked:
            in_sale: JSONObject = {"type": "string", "operator": "in", "value": ["Été", "Sale"]}
            filters = None if rnd.random() < 0.5 else [{"property": "Categories", "filter": in_sale}]
            groups.append({"metric_id": metrics.id(index), "metric_filters": filters,
                           "value_property": "$value" if by_value else None})
        row: JSONObject = {
            "id": ulid(self.seed, "custom-metrics", i),
            "attributes": {
                "name": ("Revenue (all stores)", "Engaged sessions", "Net orders 🛒")[i % 3] + f" {i}",
                "definition": {"aggregation_method": "value" if by_value else "count",
                               "metric_groups": groups},
            },
            "rels": {"metrics": [("metric", metrics.id(index)) for index in picked]},
            "keys": {},
        }
        self.stamp("custom-metrics", row, "created", created)
        self.stamp("custom-metrics", row, "updated", updated)
        return row

    def _make_mapped_metrics(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        mapped_id, name = MAPPED[i % len(MAPPED)]
        metric_id = id_named(self.metrics, name)
        custom = self.tables["custom-metrics"]
        custom_id = custom.id(0) if metric_id is None and name is not None and len(custom) else None
        updated = now if now is not None else self.anchor - rnd.randrange(DAY, 400 * DAY)
        row: JSONObject = {
            "id": mapped_id,
            "attributes": {},
            "rels": {
                "metric": None if metric_id is None else ("metric", metric_id),
                "custom-metric": None if custom_id is None else ("custom-metric", custom_id),
            },
            "keys": {},
        }
        self.stamp("mapped-metrics", row, "updated", updated)
        return row

    def _make_push_tokens(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        profiles = self.profiles
        # every k-th profile installed the app: tokens spread over the whole profile base
        profile = (i * len(profiles) // max(1, self.scale.push_tokens)) % len(profiles)
        platform, vendor, sdk = PLATFORMS[i % 3 == 0]
        created = now if now is not None else max(
            profiles.created[profile], self.anchor - rnd.randrange(DAY, 2 * 365 * DAY))
        h = f"{mix(self.seed, salt('push-tokens'), i):016x}{mix(self.seed, salt('push-tokens2'), i):016x}"
        token = (h * 2) if platform == "ios" else f"f{h[:10]}:APA91b{h}"
        row: JSONObject = {
            "id": h[:26].upper(),
            "attributes": {
                "token": token,
                "enablement_status": ENABLEMENT[i % len(ENABLEMENT)],
                "platform": platform,
                "vendor": vendor,
                "background": "DENIED" if i % 5 == 4 else "AVAILABLE",
                "recorded_date": iso(created),
                "metadata": {
                    "device_id": h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32],
                    "klaviyo_sdk": sdk,
                    "sdk_version": "4.2.0",
                    "device_model": "iPhone15,2" if platform == "ios" else "Pixel 8",
                    "os_name": platform,
                    "os_version": "17.5" if platform == "ios" else "14",
                    "manufacturer": "Apple" if platform == "ios" else "Google",
                    "app_name": "Example Store",
                    "app_version": f"3.{i % 7}.0",
                    "app_build": str(400 + i % 30),
                    "app_id": "com.example.store",
                    "environment": "release",
                },
            },
            "rels": {"profile": ("profile", profiles.id(profile))},
            "keys": {"profile.id": profiles.id(profile)},
        }
        self.stamp("push-tokens", row, "created", created)
        return row
