"""The small resources of the account's marketing (everything but profiles, events, the commerce
resources of `commerce.py` and the account-level ones of `account.py`), held as rows.

Each `_make_*` builds one row from (seed, index) and an optional `now` (see `rows.py`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from ..jsontext import JSONObject
from .rng import iso, mix, record_rng, salt, short_id, ulid
from .rows import DAY, RowBuilder, spread_times
from .words import WORDS

if TYPE_CHECKING:
    from ..scale import Scale

CHANNELS = ("email", "sms", "mobile_push")
METRIC_NAMES = (
    "Viewed Product", "Opened Email", "Received Email", "Active on Site", "Clicked Email", "Added to Cart",
    "Started Checkout", "Placed Order", "Ordered Product", "Subscribed to List", "Received SMS",
    "Clicked SMS", "Fulfilled Order", "Unsubscribed", "Refunded Order", "Marked Email as Spam",
    "Bounced Email", "Dropped Email", "Received Push", "Opened Push",
)  # fmt: skip
INTEGRATIONS = (
    {"object": "integration", "id": "0eMvjm", "key": "shopify", "name": "Shopify", "category": "eCommerce"},
    {"object": "integration", "id": "0rG4eQ", "key": "klaviyo", "name": "Klaviyo", "category": "Internal"},
    {"object": "integration", "id": "7FtS4J", "key": "api", "name": "API", "category": "API"},
)
CAMPAIGN_STATUSES = ("Sent", "Sent", "Sent", "Draft", "Scheduled", "Cancelled", "Variations Sent")
# The first tag groups of every account (the default one first); larger scales add named ones.
TAG_GROUPS = (("Default", False, True), ("Season 🌸", True, False), ("Équipe", False, False))
REPEATED_METRIC = 11  # `repeated_names`: this metric is a second "Clicked Email" (instead of "Clicked SMS")
REPEATED_LISTS = 5  # `repeated_names`: the first five lists share one name
FLOW_CHANNEL_CASE = {"email": "Email", "sms": "SMS"}  # `channel_case`


def _title(rnd: random.Random, n: int = 2) -> str:
    return " ".join(rnd.choice(WORDS) for _ in range(n))


_times = spread_times


class Catalog(RowBuilder):
    """Builds and owns the RowTables; `tables` maps the API path segment to its table."""

    # quirks.py `datetime_microseconds`: the attributes Klaviyo writes with microseconds
    microsecond_fields: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "campaigns": ("created_at", "updated_at", "scheduled_at"),
        "campaign-messages": ("created_at", "updated_at"),
    }

    def __init__(self, seed: int, anchor: int, scale: Scale, quirks: bool = True) -> None:
        super().__init__(seed, anchor, scale, quirks)
        for name, type_, cursor in (
            ("tag-groups", "tag-group", "name"),
            ("tags", "tag", "name"),
            ("metrics", "metric", "updated"),
            ("templates", "template", "updated"),
            ("lists", "list", "updated"),
            ("segments", "segment", "updated"),
            ("flows", "flow", "updated"),
            ("flow-actions", "flow-action", "updated"),
            ("flow-messages", "flow-message", "updated"),
            ("campaigns", "campaign", "updated_at"),
            ("campaign-messages", "campaign-message", "updated_at"),
            ("coupons", "coupon", "external_id"),
        ):
            self.own(name, type_, cursor)
        self.fill("tag-groups", scale.tag_groups)
        self.fill("tags", scale.tags)
        self.fill("metrics", scale.metrics)
        self.fill("templates", scale.templates)
        self.fill("lists", scale.lists)
        self.fill("segments", scale.segments)
        self.fill("flows", scale.flows)
        self.fill("campaigns", scale.campaigns_per_channel * len(CHANNELS))
        self.fill("coupons", scale.coupons)
        self._tag_assignments()

    def _make_tag_groups(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        name, exclusive, default = TAG_GROUPS[i] if i < len(TAG_GROUPS) else (
            f"{_title(rnd, 1)} group {i}", rnd.random() < 0.3, False)
        return {
            "id": short_id(self.seed, "tag-groups", i, 8),
            "attributes": {"name": name, "exclusive": exclusive, "default": default},
            "rels": {"tags": []},  # each tag names its group as it is made
            "keys": {},
        }

    def senders(self) -> list[tuple[str | None, str]]:
        """What a conversion can be attributed to: each campaign message (no flow), then each flow
        message with its flow."""
        flow_of = {row["id"]: row["keys"]["flow_id"] for row in self.tables["flow-actions"].rows}
        campaign = [(None, row["id"]) for row in self.tables["campaign-messages"].rows]
        flow = [(flow_of.get(row["keys"]["flow_action_id"]), row["id"])
                for row in self.tables["flow-messages"].rows]
        return [*campaign, *flow]

    def _tags_for(self, rnd: random.Random) -> list[tuple[str, str]]:
        tags = self.tables["tags"]
        if not len(tags):
            return []
        return [("tag", tags.id(rnd.randrange(len(tags)))) for _ in range(rnd.randrange(0, 3))]

    def _make_tags(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        groups = self.tables["tag-groups"]
        tag_id = short_id(self.seed, "tags", i, 8) + "-" + short_id(self.seed, "tags2", i, 4)
        if self.quirks:  # `uuid_tag_ids`
            h = f"{mix(self.seed, salt('tags'), i):016x}{mix(self.seed, salt('tags2'), i):016x}"
            tag_id = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"
        group = groups.rows[i % len(groups)]
        group["rels"]["tags"].append(("tag", tag_id))
        return {
            "id": tag_id,
            "attributes": {"name": f"{_title(rnd, 1)} {i}"},
            "rels": {
                "tag-group": ("tag-group", group["id"]),
                "lists": None,
                "segments": None,
                "campaigns": None,
                "flows": None,
            },
            "keys": {},
        }

    def _make_metrics(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        created, updated = _times(rnd, self.anchor, now, 6 * 365)
        name = METRIC_NAMES[i] if i < len(METRIC_NAMES) else f"Custom Event {i} ✨"
        if self.quirks and i == REPEATED_METRIC:  # `repeated_names`
            name = METRIC_NAMES[4]  # "Clicked Email", twice
        integration = dict(
            INTEGRATIONS[0] if i % 4 in (0, 2) and i < len(METRIC_NAMES) else INTEGRATIONS[1 + i % 2]
        )
        if not self.quirks:  # `extra_fields`: the spec does not name `object`
            del integration["object"]
        return {
            "id": short_id(self.seed, "metrics", i),
            "attributes": {
                "name": name,
                "created": iso(created),
                "updated": iso(updated),
                "integration": integration,
            },
            "rels": {"flow-triggers": None},
            "keys": {
                "created": created,
                "updated": updated,
                "integration.name": integration["name"],
                "integration.category": integration["category"],
            },
        }

    def _make_templates(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        created, updated = _times(rnd, self.anchor, now)
        editor = ("CODE", "USER_DRAGGABLE", "SYSTEM_DRAGGABLE")[i % 3]
        name = f"{_title(rnd)} template {i}"
        row: JSONObject = {
            "id": short_id(self.seed, "templates", i),
            "attributes": {
                "name": name,
                "editor_type": editor,
                "html": f"<html><body><h1>{name}</h1><p>Hallo Welt — こんにちは 👋</p></body></html>",
                "text": None if i % 5 == 0 else f"{name}\nHallo Welt",
                "amp": None,
                "created": iso(created),
                "updated": iso(updated),
            },
            "rels": {},
            "keys": {"created": created, "updated": updated},
        }
        if editor == "SYSTEM_DRAGGABLE":
            row["additional"] = {
                "definition": {
                    "id": None,
                    "template_id": row["id"],
                    "body": {
                        "id": None,
                        "properties": {"id": None, "css_class": None},
                        "styles": {"background_color": "#ffffff"},
                    },
                    "styles": [],
                }
            }
        return row

    def _make_lists(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        created, updated = _times(rnd, self.anchor, now)
        name = f"{_title(rnd)} list {i}"
        if self.quirks and i < REPEATED_LISTS and now is None:  # `repeated_names`
            name = "Newsletter"
        return {
            "id": short_id(self.seed, "lists", i),
            "attributes": {
                "name": name,
                "created": iso(created),
                "updated": iso(updated),
                "opt_in_process": "double_opt_in" if i % 3 == 0 else "single_opt_in",
            },
            "rels": {"profiles": None, "tags": self._tags_for(rnd), "flow-triggers": []},
            "keys": {"created": created, "updated": updated},
        }

    def _make_segments(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        created, updated = _times(rnd, self.anchor, now)
        lists = self.tables["lists"]
        metrics = self.tables["metrics"]
        if i % 2 == 0 and len(lists):
            condition: JSONObject = {
                "type": "profile-group-membership",
                "is_member": True,
                "group_ids": [lists.id(rnd.randrange(len(lists)))],
                "timeframe_filter": None,
            }
        else:
            condition = {
                "type": "profile-metric",
                "metric_id": metrics.id(rnd.randrange(len(metrics))),
                "measurement": "count",
                "measurement_filter": {
                    "type": "numeric",
                    "operator": "greater-than",
                    "value": rnd.randrange(0, 5) + 0.5,  # oneOf integer|number: an int would match both
                },
                "timeframe_filter": {"type": "date", "operator": "alltime"},
                "metric_filters": None,
            }
        return {
            "id": short_id(self.seed, "segments", i),
            "attributes": {
                "name": f"{_title(rnd)} segment {i}",
                "definition": {"condition_groups": [{"conditions": [condition]}]},
                "created": iso(created),
                "updated": iso(updated),
                "is_active": i % 5 != 4,
                "is_processing": i % 7 == 3,
                "is_starred": i % 4 == 0,
            },
            "rels": {"profiles": None, "tags": self._tags_for(rnd), "flow-triggers": []},
            "keys": {"created": created, "updated": updated},
        }

    def _make_flows(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        created, updated = _times(rnd, self.anchor, now)
        archived = now is None and i % 5 == 4
        trigger = ("Added to List", "Metric", "Date Based", "Price Drop", "Low Inventory", "Unconfigured")[
            i % 6
        ]
        flow_id = short_id(self.seed, "flows", i)
        row: JSONObject = {
            "id": flow_id,
            "attributes": {
                "name": f"{_title(rnd)} flow {i}",
                "status": "draft" if archived else ("live", "manual", "draft")[i % 3],
                "archived": archived,
                "created": iso(created),
                "updated": iso(updated),
                "trigger_type": trigger,
            },
            "rels": {"flow-actions": [], "tags": self._tags_for(rnd)},
            "keys": {"created": created, "updated": updated},
            "truth": {"archived": archived},
        }
        if trigger == "Added to List" and len(self.tables["lists"]):
            lists = self.tables["lists"]
            lists.rows[i % len(lists)]["rels"]["flow-triggers"].append(("flow", flow_id))
        for _ in range(rnd.randrange(2, 6)):
            action_id = self._add_child("flow-actions", created, updated, now, parent=("flow", flow_id))
            row["rels"]["flow-actions"].append(("flow-action", action_id))
        return row

    def _add_child(
        self,
        resource: str,
        created: int,
        updated: int,
        now: int | None,
        parent: tuple[str, str],
        **extra: object,
    ) -> str:
        table = self.tables[resource]
        index = table.appended
        rnd = record_rng(self.seed, resource, index)
        builder = getattr(self, "_make_" + resource.replace("-", "_"))
        row: JSONObject = builder(index, rnd, now, parent=parent, span=(created, updated), **extra)
        table.append(row)
        record_id: str = row["id"]
        return record_id

    def _child_times(self, rnd: random.Random, span: tuple[int, int], now: int | None) -> tuple[int, int]:
        if now is not None:
            return now, now
        created = span[0] + rnd.randrange(0, 3600)
        updated = min(max(created, span[1] - rnd.randrange(0, 3 * DAY)), max(created, span[1]))
        return created, updated

    def _make_flow_actions(
        self,
        i: int,
        rnd: random.Random,
        now: int | None,
        parent: tuple[str, str] | None = None,
        span: tuple[int, int] | None = None,
    ) -> JSONObject:
        parent = parent or ("flow", self.tables["flows"].id(rnd.randrange(len(self.tables["flows"]))))
        created, updated = self._child_times(rnd, span or (self.anchor - 30 * DAY, self.anchor), now)
        action_id = str(10_000_000 + i)
        kind = ("time-delay", "send-email", "send-sms", "send-email")[i % 4]
        row: JSONObject = {
            "id": action_id,
            "attributes": {"created": iso(created), "updated": iso(updated), "definition": None},
            "rels": {"flow": parent, "flow-messages": []},
            "keys": {
                "created": created,
                "updated": updated,
                "action_type": kind.upper().replace("-", "_"),
                "status": "live",
                "flow_id": parent[1],
            },
            "truth": {"flow_id": parent[1]},
        }
        if kind == "time-delay":
            row["attributes"]["definition"] = {
                "id": action_id,
                "type": "time-delay",
                "data": {
                    "unit": "days",
                    "value": rnd.randrange(1, 8),
                    "secondary_value": None,
                    "delay_until_time": None,
                    "delay_until_weekdays": None,
                },
            }
        else:
            message_id = self._add_child(
                "flow-messages",
                created,
                updated,
                now,
                parent=("flow-action", action_id),
                channel="sms" if kind == "send-sms" else "email",
            )
            row["rels"]["flow-messages"].append(("flow-message", message_id))
            message = self.tables["flow-messages"].rows[-1]["attributes"]["definition"]
            row["attributes"]["definition"] = {
                "id": action_id,
                "type": kind,
                "data": {"message": message, "status": rnd.choice(["live", "manual", "draft"])},
            }
        return row

    def _make_flow_messages(
        self,
        i: int,
        rnd: random.Random,
        now: int | None,
        parent: tuple[str, str] | None = None,
        span: tuple[int, int] | None = None,
        channel: str | None = None,
    ) -> JSONObject:
        if parent is None:
            actions = self.tables["flow-actions"]
            parent = ("flow-action", actions.id(rnd.randrange(len(actions))))
        created, updated = self._child_times(rnd, span or (self.anchor - 30 * DAY, self.anchor), now)
        templates = self.tables["templates"]
        template_id = templates.id(rnd.randrange(len(templates))) if len(templates) else None
        name = f"{_title(rnd)} message {i}"
        channel = channel or ("sms" if i % 3 == 2 else "email")
        definition: JSONObject
        if channel == "email":
            definition = {
                "from_email": "store@example.com",
                "from_label": "Example Store ✨",
                "reply_to_email": None,
                "cc_email": None,
                "bcc_email": None,
                "subject_line": f"{_title(rnd, 3)}",
                "preview_text": None if i % 4 == 0 else "Découvrez nos nouveautés",
                "template_id": template_id,
                "smart_sending_enabled": True,
                "transactional": False,
                "add_tracking_params": i % 2 == 0,
                "custom_tracking_params": None,
                "additional_filters": None,
                "name": name,
                "id": str(20_000_000 + i),
            }
        else:
            definition = {
                "body": "Sale! 🎉 Reply STOP to opt out",
                "image_id": None,
                "dynamic_image": None,
                "shorten_links": True,
                "include_contact_card": False,
                "add_org_prefix": True,
                "add_info_link": True,
                "add_opt_out_language": False,
                "smart_sending_enabled": True,
                "sms_quiet_hours_enabled": True,
                "transactional": False,
                "add_tracking_params": False,
                "custom_tracking_params": None,
                "template_id": None,
                "additional_filters": None,
                "name": name,
                "id": str(20_000_000 + i),
            }
        rels: JSONObject = {
            "flow-action": parent,
            "template": None if template_id is None else ("template", template_id),
        }
        if self.quirks:
            rels["image"] = None  # `flow_message_image`
        return {
            "id": str(20_000_000 + i),
            "attributes": {
                # `channel_case`: "Email" here, "email" on campaign messages
                "channel": FLOW_CHANNEL_CASE.get(channel, channel) if self.quirks else channel,
                "created": iso(created),
                "updated": iso(updated),
                "definition": definition,
            },
            "rels": rels,
            "keys": {"created": created, "updated": updated, "name": name, "flow_action_id": parent[1]},
            "truth": {"flow_action_id": parent[1]},
        }

    def _make_campaigns(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        channel = CHANNELS[i % 3]
        created, updated = _times(rnd, self.anchor, now)
        archived = now is None and (i // 3) % 4 == 3
        status = "Draft" if now is not None else CAMPAIGN_STATUSES[(i // 3) % len(CAMPAIGN_STATUSES)]
        send_time = (
            None if status in ("Draft", "Cancelled") else min(created + rnd.randrange(DAY, 20 * DAY), updated)
        )
        scheduled = None if send_time is None else max(created, send_time - rnd.randrange(3600, 5 * DAY))
        campaign_id = ulid(self.seed, "campaigns", i)
        method = ("static", "throttled", "smart_send_time", "immediate")[i % 4] if send_time else "static"
        strategy: JSONObject
        if method == "static":
            strategy = {
                "method": "static",
                "datetime": iso(send_time or created + 7 * DAY),
                "options": {"is_local": False},
            }
        elif method == "throttled":
            strategy = {
                "method": "throttled",
                "datetime": iso(send_time or created),
                "throttle_percentage": 20,
            }
        elif method == "smart_send_time":
            strategy = {"method": "smart_send_time", "date": iso(send_time or created)[:10]}
        else:
            strategy = {"method": "immediate"}
        lists = self.tables["lists"]
        tracking: JSONObject | None
        if channel == "email":
            tracking = {
                "add_tracking_params": True,
                "custom_tracking_params": [
                    {"type": "dynamic", "value": "campaign_name", "name": "utm_campaign"},
                    {"type": "static", "value": "email", "name": "utm_medium"},
                ],
                "is_tracking_clicks": True,
                "is_tracking_opens": i % 2 == 0,
            }
        elif channel == "sms":
            tracking = {"add_tracking_params": False, "custom_tracking_params": None}
        else:
            tracking = None
        row: JSONObject = {
            "id": campaign_id,
            "attributes": {
                "name": f"{_title(rnd, 3)} {channel} {i}",
                "status": status,
                "archived": archived,
                "audiences": {
                    "included": [lists.id(rnd.randrange(len(lists)))] if len(lists) else [],
                    "excluded": [] if i % 2 else None,
                },
                "send_options": {"use_smart_sending": i % 3 != 1},  # + `extra_fields` below
                "tracking_options": tracking,
                "send_strategy": strategy,
                "created_at": iso(created),
                "scheduled_at": None if scheduled is None else iso(scheduled),
                "updated_at": iso(updated),
                "send_time": None if send_time is None else iso(send_time),
            },
            "rels": {"campaign-messages": [], "tags": self._tags_for(rnd)},
            "keys": {
                "created_at": created,
                "updated_at": updated,
                "scheduled_at": scheduled,
                "messages.channel": channel,
            },
            "truth": {"channel": channel, "archived": archived},
        }
        for field, epoch in (("created_at", created), ("scheduled_at", scheduled), ("updated_at", updated)):
            self.stamp("campaigns", row, field, epoch)
        if self.quirks:
            row["attributes"]["send_options"]["ignore_unsubscribes"] = False
        for _ in range(2 if channel == "email" and i % 4 == 0 else 1):
            message_id = self._add_child(
                "campaign-messages", created, updated, now, parent=("campaign", campaign_id)
            )
            message = self.tables["campaign-messages"].rows[-1]
            message["attributes"]["definition"] = _message_definition(channel, row["attributes"]["name"], rnd)
            message["attributes"]["send_times"] = (
                [] if send_time is None else [{"datetime": iso(send_time), "is_local": False}]
            )
            if channel != "email":
                message["rels"]["template"] = None
            row["rels"]["campaign-messages"].append(("campaign-message", message_id))
        return row

    def _make_campaign_messages(
        self,
        i: int,
        rnd: random.Random,
        now: int | None,
        parent: tuple[str, str] | None = None,
        span: tuple[int, int] | None = None,
    ) -> JSONObject:
        campaigns = self.tables["campaigns"]
        if parent is None:
            parent_index = rnd.randrange(len(campaigns))
            parent = ("campaign", campaigns.id(parent_index))
            campaigns.rows[parent_index]["rels"]["campaign-messages"].append(
                ("campaign-message", ulid(self.seed, "campaign-messages", i))
            )
        created, updated = self._child_times(rnd, span or (self.anchor - 30 * DAY, self.anchor), now)
        templates = self.tables["templates"]
        channel = "email"
        found = campaigns.index_of(parent[1])
        if found is not None:
            channel = campaigns.rows[found]["keys"]["messages.channel"]
        row: JSONObject = {
            "id": ulid(self.seed, "campaign-messages", i),
            "attributes": {
                "definition": _message_definition(channel, "Message", rnd),
                "send_times": [],
                "created_at": iso(created),
                "updated_at": iso(updated),
            },
            "rels": {
                "campaign": parent,
                "template": ("template", templates.id(rnd.randrange(len(templates))))
                if channel == "email" and len(templates)
                else None,
                "image": None,
            },
            "keys": {"created_at": created, "updated_at": updated, "campaign_id": parent[1]},
            "truth": {"campaign_id": parent[1]},
        }
        self.stamp("campaign-messages", row, "created_at", created)
        self.stamp("campaign-messages", row, "updated_at", updated)
        return row

    def _make_coupons(self, i: int, rnd: random.Random, now: int | None) -> JSONObject:
        return {
            "id": f"{rnd.choice(['SUMMER', 'WELCOME', 'VIP', 'ÉTÉ'])}{i}",
            "attributes": {
                "external_id": f"{rnd.choice(['SUMMER', 'WELCOME', 'VIP', 'ETE'])}{i}",
                "description": None if i % 3 == 0 else f"{rnd.randrange(5, 50)}% off — {_title(rnd, 1)}",
                "monitor_configuration": None if i % 2 else {"low_balance_threshold": rnd.randrange(5, 100)},
            },
            "rels": {},
            "keys": {},
        }

    def _tag_assignments(self) -> None:
        """Fill each tag's to-many relationships from the objects that carry it."""
        tags = self.tables["tags"]
        for row in tags.rows:
            for name in ("lists", "segments", "campaigns", "flows"):
                row["rels"][name] = []
        for resource in ("lists", "segments", "campaigns", "flows"):
            table = self.tables[resource]
            for row in table.rows:
                for _, tag_id in row["rels"].get("tags") or []:
                    index = tags.index_of(tag_id)
                    if index is not None:
                        entry = (table.type, row["id"])
                        if entry not in tags.rows[index]["rels"][resource]:
                            tags.rows[index]["rels"][resource].append(entry)


def _message_definition(channel: str, name: str, rnd: random.Random) -> JSONObject:
    if channel == "email":
        return {
            "channel": "email",
            "label": f"{name} - Email",
            "content": {
                "subject": rnd.choice(
                    ["Up to 40% off this weekend", "Nouveautés d'été ☀️", "限定セール", "Last chance!"]
                ),
                "preview_text": rnd.choice(["Our biggest summer sale", None]),
                "from_email": "store@example.com",
                "from_label": "Example Store",
                "reply_to_email": rnd.choice(["support@example.com", None]),
                "cc_email": None,
                "bcc_email": None,
            },
        }
    if channel == "sms":
        return {
            "channel": "sms",
            "content": {"body": "Sale! 🎉 Reply STOP to opt out", "media_url": None},
            "render_options": {
                "shorten_links": True,
                "add_org_prefix": True,
                "add_info_link": True,
                "add_opt_out_language": False,
            },
        }
    return {
        "channel": "mobile_push",
        "notification_type": "standard",
        "content": {
            "title": "Psst… 👀",
            "body": "Your cart misses you",
            "dynamic_image": None,
            "action_buttons": None,
        },
        "kv_pairs": None,
        "options": {"on_open": None, "badge": None, "play_sound": True},
    }
