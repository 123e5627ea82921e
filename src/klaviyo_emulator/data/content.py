"""The account's content: sign-up forms, the image library, universal content blocks for templates,
and web feeds. Each is stamped with a time of change that a mutation moves, as the API filters and
sorts them by it.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from ..jsontext import JSONObject
from .rng import mix, salt, short_id, ulid
from .rows import RowBuilder, spread_times

if TYPE_CHECKING:
    from ..scale import Scale

FORM_NAMES = ("Welcome pop-up 10 %", "Newsletter footer", "Spin to win 🎡", "Back in stock", "Été: -20 %",
              "Exit intent", "VIP early access")
IMAGE_FORMATS = ("png", "jpeg", "gif")
FEEDS = (("Blog posts", "https://blog.example.com/feed.json", "json"),
         ("Nouveautés", "https://shop.example.com/fr/new.xml", "xml"),
         ("Weather", "https://api.weather.example.com/today", "json"),
         ("Bestsellers", "https://shop.example.com/bestsellers.json", "json"))
FEED_STATUSES = ("ok", "ok", "ok", "refreshing", "warning_periodic_refresh_timeout", "disabled")
SCREENSHOTS = ("completed", "completed", "stale", "generating", "never_generated")


class Content(RowBuilder):
    def __init__(self, seed: int, anchor: int, scale: Scale, quirks: bool = True) -> None:
        super().__init__(seed, anchor, scale, quirks)
        self.own("forms", "form", "updated_at")
        self.own("images", "image", "updated_at")
        self.own("template-universal-content", "template-universal-content", "updated")
        self.own("web-feeds", "web-feed", "updated")
        self.fill("forms", scale.forms)
        self.fill("images", scale.images)
        self.fill("template-universal-content", scale.universal_content)
        self.fill("web-feeds", scale.web_feeds)

    def _make_forms(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        created, updated = spread_times(rnd, self.anchor, now)
        name = f"{FORM_NAMES[i % len(FORM_NAMES)]} #{i}"
        ab_test = i % 6 == 2
        status = "draft" if now is not None or i % 4 == 3 else "live"
        row: JSONObject = {
            "id": short_id(self.seed, "forms", i),
            "attributes": {"name": name, "status": status, "ab_test": ab_test},
            "rels": {"form-versions": None},  # not served: links only
            "keys": {"name": name, "status": status, "ab_test": ab_test},
        }
        self.stamp("forms", row, "created_at", created)
        self.stamp("forms", row, "updated_at", updated)
        return row

    def _make_images(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        _, updated = spread_times(rnd, self.anchor, now, 4 * 365)
        extension = IMAGE_FORMATS[i % len(IMAGE_FORMATS)]
        image_id = str(90_000_000 + i)  # Klaviyo's image ids are numbers, written as strings
        name = f"{('hero', 'logo', 'produit', 'banner 🌞', 'footer')[i % 5]}-{i}.{extension}"
        size, hidden = rnd.randrange(2_000, 2_500_000), i % 9 == 8
        row: JSONObject = {
            "id": image_id,
            "attributes": {
                "name": name,
                "image_url": f"https://d3k81ch9hvuctc.cloudfront.net/company/XYZ123/images/{image_id}.{extension}",
                "format": extension,
                "size": size,
                "hidden": hidden,
            },
            "rels": {},
            "keys": {"name": name, "format": extension, "size": size, "hidden": hidden},
        }
        self.stamp("images", row, "updated_at", updated)
        return row

    def _make_template_universal_content(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        created, updated = spread_times(rnd, self.anchor, now, 2 * 365)
        name = f"{('Footer', 'Header', 'Social links', 'Promo banner', 'Unsubscribe text')[i % 5]} {i}"
        display: JSONObject = {"show_on": ("all", "desktop", "mobile")[i % 3], "visible_check": None,
                               "content_repeat": None}
        definition: JSONObject
        if i % 2 == 0:
            definition = {"content_type": "block", "type": "text", "data": {
                "content": "<p>Questions? Écrivez-nous — réponse sous 24 h ✉️</p>",
                "display_options": display,
                "styles": {"color": "#222222", "font_size": 14, "text_align": "center", "line_height": 1.5,
                           "block_padding_top": 12, "block_padding_bottom": 12},
            }}
        else:
            definition = {"content_type": "block", "type": "html", "data": {
                "content": f"<table role=\"presentation\"><tr><td>{name}</td></tr></table>",
                "display_options": display,
            }}
        universal_id = ulid(self.seed, "template-universal-content", i)
        row: JSONObject = {
            "id": universal_id,
            "attributes": {
                "name": name,
                "definition": definition,
                "screenshot_status": SCREENSHOTS[i % len(SCREENSHOTS)],
                "screenshot_url": f"https://screenshots.example.com/universal/{universal_id}.png",
            },
            "rels": {},
            "keys": {"name": name, "definition.content_type": "block", "definition.type": definition["type"]},
        }
        self.stamp("template-universal-content", row, "created", created)
        self.stamp("template-universal-content", row, "updated", updated)
        return row

    def _make_web_feeds(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        created, updated = spread_times(rnd, self.anchor, now, 2 * 365)
        name, url, content_type = FEEDS[i % len(FEEDS)]
        if i >= len(FEEDS):
            name, url = f"{name} {i}", f"{url}?v={mix(self.seed, salt('web-feeds'), i) % 1000}"
        row: JSONObject = {
            "id": short_id(self.seed, "web-feeds", i),
            "attributes": {
                "name": name,
                "url": url,
                "request_method": "post" if i % 5 == 3 else "get",
                "content_type": content_type,
                "status": FEED_STATUSES[i % len(FEED_STATUSES)],
            },
            "rels": {},
            "keys": {"name": name},
        }
        self.stamp("web-feeds", row, "created", created)
        self.stamp("web-feeds", row, "updated", updated)
        return row
