"""The store's catalog and what shoppers do with it: catalog categories, items and their variants,
the codes of the account's coupons, and product reviews.

Relationships point at existing records: a variant belongs to its item, a category lists its items
(and each item its categories, which `filter=equals(category.id,…)` reads), a coupon code to an existing
coupon and, once assigned, an existing profile; a review is of an existing item and, when the shopper
bought it, names the existing "Ordered Product" event of the order and carries that profile's email.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from ..jsontext import JSONObject
from ..table import RowTable
from .rng import base32, id_offset, iso, mix, record_rng, salt
from .rows import DAY, RowBuilder, spread_times
from .words import FIRST_NAMES, PRODUCTS

if TYPE_CHECKING:
    from ..scale import Scale
    from .events import Events
    from .profiles import Profiles

CATALOG = "$shopify:::$default:::"  # Klaviyo's catalog ids: integration, catalog, then the external id
CATEGORIES = ("Été", "Sale", "Home", "服", "🧦 Socks", "Kitchen", "Gifts", "New in")
SIZES = ("S", "M", "L", "XL")
CODE_STATUSES = ("UNASSIGNED", "UNASSIGNED", "ASSIGNED_TO_PROFILE", "USED", "ASSIGNED_TO_PROFILE")
REVIEW_TYPES = ("review", "review", "review", "rating", "question", "store")
REVIEW_TEXTS = (  # (title, content)
    ("Je recommande", "Super qualité, je recommande !"), ("Runs small", "Runs small — order a size up."),
    ("最高", "とても良い"), ("Broken", "Arrived broken 😞"), ("Perfect gift", "My sister loved it."),
    ("Blue?", "Does it come in blue?"),
)
REVIEW_STATUSES = ("published", "published", "featured", "pending", "unpublished")
REJECTIONS = ("fake", "profanity_or_inappropriate", "unrelated")
BULK_EVERY = 5  # every fifth coupon had a bulk upload of unique codes; the others a few


class Commerce(RowBuilder):
    def __init__(self, seed: int, anchor: int, scale: Scale, coupons: RowTable, profiles: Profiles,
                 events: Events, ordered_product_id: str | None, quirks: bool = True) -> None:
        super().__init__(seed, anchor, scale, quirks)
        self.coupons = coupons
        self.profiles = profiles
        self.events = events
        self.own("catalog-categories", "catalog-category", "updated")
        self.own("catalog-items", "catalog-item", "updated")
        self.own("catalog-variants", "catalog-variant", "updated")
        self.own("coupon-codes", "coupon-code", "unique_code")
        self.own("reviews", "review", "updated")
        self.fill("catalog-categories", scale.catalog_categories)
        self.fill("catalog-items", scale.catalog_items)
        for coupon in range(len(coupons)):
            self._codes_of(coupon)
        # Orders old enough to have been reviewed, oldest first: the review of item k names one of them.
        self._orders = [] if ordered_product_id is None else [
            i for i in events.by_metric(ordered_product_id) if events.ts[i] < anchor - 2 * DAY]
        self.fill("reviews", scale.reviews)

    # the catalog -------------------------------------------------------------------------------------

    def _make_catalog_categories(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        created, updated = spread_times(rnd, self.anchor, now, 4 * 365)
        external_id = str(300_000_000 + i)
        name = CATEGORIES[i % len(CATEGORIES)] + (f" {i}" if i >= len(CATEGORIES) else "")
        row: JSONObject = {
            "id": CATALOG + external_id,
            "attributes": {"external_id": external_id, "name": name},
            # items name their categories as they are made; the filter `item.id` reads the same list
            "rels": {"items": []},
            "keys": {"ids": CATALOG + external_id, "name": name, "item.id": [], "created": created},
        }
        self.stamp("catalog-categories", row, "updated", updated)
        return row

    def _make_catalog_items(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        created, updated = spread_times(rnd, self.anchor, now, 3 * 365)
        external_id = str(7_000_000_000 + i)
        item_id = CATALOG + external_id
        title = f"{PRODUCTS[i % len(PRODUCTS)]} {i}"
        price = round(rnd.uniform(4, 240), 2)
        image = f"https://cdn.shop.example.com/products/{external_id}.jpg"
        published = now is not None or i % 11 != 10
        categories = self.tables["catalog-categories"]
        chosen = sorted({rnd.randrange(len(categories)) for _ in range(rnd.randrange(0, 3))}) \
            if len(categories) else []
        row: JSONObject = {
            "id": item_id,
            "attributes": {
                "external_id": external_id,
                "title": title,
                "description": None if i % 7 == 0 else f"{title}: made to last. Livraison dès 50 CHF.",
                "price": price,
                "url": f"https://shop.example.com/products/{external_id}",
                "image_full_url": image,
                "image_thumbnail_url": image + "?width=200",
                "images": [image, image.replace(".jpg", "-2.jpg")],
                "custom_metadata": {"vendor": "Example Store", "tags": ["Été"] if i % 3 == 0 else []},
                "published": published,
            },
            "rels": {"variants": []},
            "keys": {"ids": item_id, "title": title, "published": published,
                     "category.id": [categories.id(c) for c in chosen]},
        }
        self.stamp("catalog-items", row, "created", created)
        self.stamp("catalog-items", row, "updated", updated)
        for c in chosen:
            category = categories.rows[c]
            category["rels"]["items"].append(("catalog-item", item_id))
            category["keys"]["item.id"].append(item_id)
        for size in SIZES[: rnd.randrange(1, len(SIZES) + 1)]:
            variant = self._variant(row, size, created, updated, now)
            row["rels"]["variants"].append(("catalog-variant", variant))
        return row

    def _variant(self, item: JSONObject, size: str, created: int, updated: int, now: int | None) -> str:
        table = self.tables["catalog-variants"]
        index = table.appended
        rnd = record_rng(self.seed, "catalog-variants", index)
        attributes = item["attributes"]
        external_id = f"{attributes['external_id']}-{size}"
        variant_id = CATALOG + external_id
        sku = f"SKU-{attributes['external_id'][-5:]}-{size}"
        title = f"{attributes['title']} / {size}"
        published = bool(attributes["published"])
        row: JSONObject = {
            "id": variant_id,
            "attributes": {
                "external_id": external_id,
                "title": title,
                "description": attributes["description"],
                "sku": sku,
                "inventory_policy": (0, 1, 2)[index % 3],
                "inventory_quantity": rnd.randrange(0, 400),
                "price": round(float(attributes["price"]) * (1 + 0.1 * SIZES.index(size)), 2),
                "url": f"{attributes['url']}?variant={external_id}",
                "image_full_url": attributes["image_full_url"],
                "image_thumbnail_url": attributes["image_thumbnail_url"],
                "images": list(attributes["images"]),
                "custom_metadata": {"size": size},
                "published": published,
            },
            "rels": {"item": ("catalog-item", item["id"])},
            "keys": {"ids": variant_id, "item.id": item["id"], "sku": sku, "title": title,
                     "published": published},
        }
        # a variant changes with its item or on its own (stock), never before it was made
        changed = now if now is not None else min(self.anchor, updated + rnd.randrange(0, 20 * DAY))
        self.stamp("catalog-variants", row, "created", created if now is None else now)
        self.stamp("catalog-variants", row, "updated", changed)
        table.append(row)
        return variant_id

    # coupon codes ------------------------------------------------------------------------------------

    def _codes_of(self, coupon: int) -> None:
        rnd = record_rng(self.seed, "coupon-code-counts", coupon)
        bulk = coupon % BULK_EVERY == 0
        size = self.scale.coupon_codes
        count = rnd.randrange(size // 2, size) if bulk else rnd.randrange(0, 12)
        for _ in range(count):
            self._add_code(self.coupons.rows[coupon])

    def _add_code(self, coupon: JSONObject) -> str:
        table = self.tables["coupon-codes"]
        index = table.appended
        rnd = record_rng(self.seed, "coupon-codes", index)
        # upper-case and unique: the index through an injective map (1_000_003 is odd, 32**8 a power of 2)
        serial = (index * 1_000_003 + id_offset(self.seed, "coupon-codes")) % 32**8
        code = f"{coupon['id']}-{base32(serial, 8)}"
        status = CODE_STATUSES[index % len(CODE_STATUSES)]
        profile = None
        if status != "UNASSIGNED" and len(self.profiles):
            holder = mix(self.seed, salt("coupon-code-profile"), index) % len(self.profiles)
            profile = self.profiles.id(holder)
        expires = None if index % 4 == 0 else self.anchor + rnd.randrange(-200 * DAY, 400 * DAY)
        row: JSONObject = {
            "id": code,
            "attributes": {"unique_code": code, "status": status},
            "rels": {"coupon": ("coupon", coupon["id"]),
                     "profile": None if profile is None else ("profile", profile)},
            "keys": {"coupon.id": coupon["id"], "profile.id": profile, "status": status},
            "truth": {"coupon_id": coupon["id"]},
        }
        self.stamp("coupon-codes", row, "expires_at", expires)
        table.append(row)
        return code

    # reviews -----------------------------------------------------------------------------------------

    def _make_reviews(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        items = self.tables["catalog-items"]
        kind = REVIEW_TYPES[i % len(REVIEW_TYPES)]
        item = None if kind == "store" or not len(items) else items.rows[rnd.randrange(len(items))]
        events: list[tuple[str, str]] = []
        email = None
        created, updated = spread_times(rnd, self.anchor, now, 2 * 365)
        orders = self._orders
        if now is None and kind in ("review", "rating") and orders and i % 3 != 2:
            # a verified purchase: reviewed some days after the order, by the shopper who placed it
            order = orders[i * len(orders) // max(1, self.scale.reviews)]
            created = min(self.anchor - 60, self.events.ts[order] + rnd.randrange(DAY, 21 * DAY))
            edited = rnd.random() >= 0.6
            updated = min(self.anchor, created + rnd.randrange(0, 30 * DAY)) if edited else created
            events = [("event", self.events.id(order))]
            email = self.profiles.email(self.events.profile_index(order))
        # mostly five stars, a long tail down to one
        rating = None if kind == "question" else 5 - (mix(self.seed, salt("rating"), i) % 100) ** 2 // 2000
        status: JSONObject = {"value": REVIEW_STATUSES[i % len(REVIEW_STATUSES)]}
        if i % 13 == 12:
            status = {"value": "rejected", "rejection_reason": {"reason": REJECTIONS[i % len(REJECTIONS)]}}
        reply = None
        if i % 4 == 1:
            reply = {"content": "Merci beaucoup ! 🙏", "author": "Example Store", "updated": iso(updated)}
        product = None if item is None else {
            "url": item["attributes"]["url"],
            "name": item["attributes"]["title"],
            "image_url": item["attributes"]["image_full_url"],
            "external_id": item["attributes"]["external_id"],
        }
        title, content = REVIEW_TEXTS[i % len(REVIEW_TEXTS)]
        row: JSONObject = {
            "id": f"{mix(self.seed, salt('reviews'), i):016x}{mix(self.seed, salt('reviews2'), i):016x}",
            "attributes": {
                "email": email,
                "status": status,
                "verified": bool(events),
                "review_type": kind,
                "images": [] if i % 6 else [f"https://reviews.example.com/photos/{i}.jpg"],
                "product": product,
                "rating": rating,
                "author": f"{FIRST_NAMES[i % len(FIRST_NAMES)]} {chr(65 + i % 26)}.",
                "content": content,
                "title": None if kind in ("rating", "question") else title,
                "smart_quote": None,
                "public_reply": reply,
            },
            "rels": {"events": events, "item": None if item is None else ("catalog-item", item["id"])},
            "keys": {"rating": rating, "item.id": None if item is None else item["id"],
                     "status": status["value"],
                     "review_type": kind, "verified": bool(events), "content": content},
        }
        self.stamp("reviews", row, "created", created)
        self.stamp("reviews", row, "updated", updated)
        return row
