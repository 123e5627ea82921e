"""Profiles: created/updated in compact arrays (they are what filters and sorts read), the rest rebuilt
from (seed, index) on demand, so 200,000 profiles cost a few MB."""

from __future__ import annotations

import random
from array import array
from collections.abc import Sequence

from ..jsontext import JSON, BigInt, JSONObject
from ..table import FieldValue, Rel, Table
from .rng import absorb, iso, iso_us, micros, mix, record_rng, salt, ulid_from
from .words import CITIES, FIRST_NAMES, LAST_NAMES, LOCALES, ORGANIZATIONS, TITLES

DAY = 86_400
SUPPRESSION_REASONS = ("HARD_BOUNCE", "INVALID_EMAIL", "SPAM_COMPLAINT", "UNSUBSCRIBE", "USER_SUPPRESSED")
_ASCII_FIRST = (
    "sarah",
    "jose",
    "zoe",
    "lukasz",
    "francois",
    "mo",
    "ngoc",
    "soren",
    "chloe",
    "ivan",
    "ana",
    "kai",
)


class Profiles(Table):
    type = "profile"
    cursor_field = "updated"

    def __init__(self, seed: int, count: int, anchor: int, quirks: bool = True) -> None:
        super().__init__()
        self.seed = seed
        self.quirks = quirks  # Klaviyo's observed shapes (quirks.py); False: the spec's
        self.anchor = anchor
        self._salt = salt("profiles")
        self.created = array("q")
        self.updated = array("q")
        rnd = random.Random(mix(seed, self._salt))
        five_years = 5 * 365 * DAY
        for i in range(count):
            created = anchor - rnd.randrange(DAY, five_years)
            if i % 97 == 5:
                # clock skew on the customer side: a few profiles claim to be updated in the future
                updated = anchor + rnd.randrange(60, 3 * DAY)
            elif rnd.random() < 0.2:
                updated = created
            else:
                updated = created + rnd.randrange(0, anchor - created)
            self.created.append(created)
            self.updated.append(updated)
        self._id_prefix = absorb(seed, self._salt)  # ulid(seed, "profiles", i) == ulid_from(prefix, i)
        # every event names its profile: the ids are derived once (~4 µs each, 0.8 s at large scale)
        self._ids = [ulid_from(self._id_prefix, i) for i in range(count)]
        self._memberships: dict[str, tuple[tuple[int, int], dict[str, array[int]]]] = {}
        # Indices deleted by a mutation (data-privacy deletion): ids are derived from the index, so
        # a deleted profile keeps its slot and is left out of every order, lookup and membership.
        self.deleted: set[int] = set()

    # identity -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.created)

    def id(self, index: int) -> str:
        ids = self._ids
        return ids[index] if index < len(ids) else ulid_from(self._id_prefix, index)  # added by mutations

    def index_of(self, record_id: str) -> int | None:
        index = self.key_tiebreak(record_id)
        return None if index is None or index in self.deleted else index

    def key_tiebreak(self, record_id: str) -> int | None:
        """The index of the profile with this id, deleted or not (ids encode their index)."""
        if len(record_id) != 26 or not record_id.startswith("01"):
            return None
        try:
            index = int(record_id[2:10].translate(_FROM_B32), 32)
        except ValueError:
            return None
        if index >= len(self):
            return None
        return index if self.id(index) == record_id else None

    def live(self) -> range | list[int]:
        if not self.deleted:
            return range(len(self))
        deleted = self.deleted
        return [i for i in range(len(self)) if i not in deleted]

    def delete(self, indices: list[int]) -> None:
        self.deleted.update(indices)
        self.touched()

    def email(self, index: int) -> str | None:
        h = mix(self.seed, self._salt, index, 1)
        if h % 33 == 0:
            return None  # SMS-only profile
        return f"{_ASCII_FIRST[h % len(_ASCII_FIRST)]}.{index}@example.com"

    def phone(self, index: int) -> str | None:
        h = mix(self.seed, self._salt, index, 2)
        return None if h % 5 < 2 else f"+1555{h % 10_000_000:07d}"

    def external_id(self, index: int) -> str | None:
        h = mix(self.seed, self._salt, index, 3)
        return None if h % 3 == 0 else f"cust-{index + 10_000}"

    def suppression(self, index: int) -> tuple[str, int] | None:
        h = mix(self.seed, self._salt, index, 4)
        if h % 100 >= 8:
            return None
        created = self.created[index]
        return SUPPRESSION_REASONS[h % 5], created + (h >> 8) % max(1, self.updated[index] - created + 1)

    def list_suppression(self, index: int) -> tuple[str, int] | None:
        h = mix(self.seed, self._salt, index, 5)
        if h % 100 >= 3:
            return None
        return "UNSUBSCRIBE", self.created[index] + (h >> 8) % (30 * DAY)

    # query keys -------------------------------------------------------------------------------------

    def value(self, field: str, index: int) -> FieldValue:
        match field:
            case "updated":
                return self.updated[index]
            case "created":
                return self.created[index]
            case "id":
                return self.id(index)
            case "email":
                return self.email(index)
            case "phone_number":
                return self.phone(index)
            case "external_id":
                return self.external_id(index)
            case "subscriptions.email.marketing.suppression.timestamp":
                s = self.suppression(index)
                return self._instant(s[1], index, _SUPPRESSED) if s else None
            case "subscriptions.email.marketing.suppression.reason":
                s = self.suppression(index)
                return s[0] if s else None
            case "subscriptions.email.marketing.list_suppressions.timestamp":
                s = self.list_suppression(index)
                return self._instant(s[1], index, _LIST_SUPPRESSED) if s else None
            case "subscriptions.email.marketing.list_suppressions.reason":
                s = self.list_suppression(index)
                return s[0] if s else None
        return None

    # `datetime_microseconds`: subscription `last_updated` and suppression timestamps carry microseconds;
    # filters and sorts on a suppression timestamp see the exact instant (a float key).

    def _micros(self, index: int, what: int) -> int:
        return micros(self.seed, self._salt, index, what) if self.quirks else 0

    def _instant(self, epoch: int, index: int, what: int) -> int | float:
        us = self._micros(index, what)
        return epoch + us / 1_000_000 if us else epoch

    def _stamp(self, epoch: int, index: int, what: int) -> str:
        us = self._micros(index, what)
        return iso_us(epoch, us) if us else iso(epoch)

    def order(self, field: str) -> Sequence[int]:
        if field == "id" and not self.deleted:
            return range(len(self))  # ulids sort in index order
        return super().order(field)

    # rendering -------------------------------------------------------------------------------------

    def attributes(self, index: int, additional: frozenset[str]) -> JSONObject:
        rnd = record_rng(self.seed, "profiles", index)
        created, updated = self.created[index], self.updated[index]
        city = CITIES[rnd.randrange(len(CITIES))]
        lat: JSON = city[5] + rnd.uniform(-0.05, 0.05)
        lon: JSON = city[6] + rnd.uniform(-0.05, 0.05)
        style = rnd.random()
        if style < 0.3:  # the API hands back latitude/longitude as strings for some profiles
            lat, lon = f"{lat:.4f}", f"{lon:.4f}"
        elif style < 0.4:
            lat = lon = None
        else:
            lat, lon = round(lat, 4), round(lon, 4)
        if rnd.random() < 0.15:
            location: JSONObject = dict.fromkeys(
                (
                    "address1",
                    "address2",
                    "city",
                    "country",
                    "latitude",
                    "longitude",
                    "region",
                    "zip",
                    "timezone",
                    "ip",
                )
            )
        else:
            location = {
                "address1": f"{rnd.randrange(1, 999)} {LAST_NAMES[rnd.randrange(len(LAST_NAMES))]} St",
                "address2": None if rnd.random() < 0.7 else f"Apt {rnd.randrange(1, 50)}",
                "city": city[0],
                "country": city[1],
                "latitude": lat,
                "longitude": lon,
                "region": city[2],
                "zip": city[4],
                "timezone": city[3],
                "ip": None if rnd.random() < 0.5 else f"203.0.113.{rnd.randrange(1, 255)}",
            }
        last_event = (
            None if rnd.random() < 0.25 else created + rnd.randrange(0, max(1, self.anchor - created))
        )
        attributes: JSONObject = {
            "email": self.email(index),
            "phone_number": self.phone(index),
            "external_id": self.external_id(index),
            "first_name": None if rnd.random() < 0.08 else FIRST_NAMES[rnd.randrange(len(FIRST_NAMES))],
            "last_name": None if rnd.random() < 0.12 else LAST_NAMES[rnd.randrange(len(LAST_NAMES))],
            "organization": None if rnd.random() < 0.6 else ORGANIZATIONS[rnd.randrange(len(ORGANIZATIONS))],
            "locale": None if rnd.random() < 0.3 else LOCALES[rnd.randrange(len(LOCALES))],
            "title": None if rnd.random() < 0.7 else TITLES[rnd.randrange(len(TITLES))],
            "image": None if rnd.random() < 0.9 else f"https://img.example.com/p/{index}.png",
            "created": iso(created),
            "updated": iso(updated),
            "last_event_date": None if last_event is None else iso(last_event),
            "location": location,
            "properties": self._properties(rnd, index),
        }
        if self.quirks:  # `extra_fields`: not in the spec
            h = mix(self.seed, self._salt, index, 6)
            attributes["anonymous_id"] = None if h % 4 else f"anon-{h >> 16:012x}"
            attributes["whatsapp_bsuid"] = None
        if "subscriptions" in additional:
            attributes["subscriptions"] = self._subscriptions(rnd, index)
        if "predictive_analytics" in additional:
            attributes["predictive_analytics"] = self._predictive(rnd)
        return attributes

    def _properties(self, rnd: random.Random, index: int) -> JSONObject:
        if rnd.random() < 0.25:
            return {}
        props: JSONObject = {
            "loyalty_tier": rnd.choice(["gold", "silver", "bronze", "🥇 platinum"]),
            "shoe_size": rnd.choice([9, 9.5, 10, "42 EU"]),
            "favorite_drink": rnd.choice(["抹茶", "café crème", "Kwas", None]),
        }
        if rnd.random() < 0.3:
            props["$source"] = rnd.choice(["Shopify", "API", "Форма"])
            props["preferences"] = {
                "channels": ["email", "sms"][: rnd.randrange(0, 3)],
                "frequency": {"per_week": rnd.randrange(0, 7)},
            }
        if index % 41 == 0:
            props["lifetime_points"] = BigInt(10**20 + index)  # > 64-bit, passed through as JSON text
        return props

    def _subscriptions(self, rnd: random.Random, index: int) -> JSONObject:
        created = self.created[index]
        suppression = self.suppression(index)
        list_suppression = self.list_suppression(index)
        consent = (
            "UNSUBSCRIBED"
            if suppression
            else rnd.choice(["SUBSCRIBED", "SUBSCRIBED", "NEVER_SUBSCRIBED", "UNSUBSCRIBED"])
        )
        consent_ts = None if consent == "NEVER_SUBSCRIBED" else iso(created)
        last_updated = None if consent_ts is None else self._stamp(created, index, _EMAIL_UPDATED)
        sms_consent = (
            rnd.choice(["SUBSCRIBED", "NEVER_SUBSCRIBED", "UNSUBSCRIBED"])
            if self.phone(index)
            else "NEVER_SUBSCRIBED"
        )
        subscriptions: JSONObject = {
            "email": {
                "marketing": {
                    "can_receive_email_marketing": consent == "SUBSCRIBED" and self.email(index) is not None,
                    "consent": consent,
                    "consent_timestamp": consent_ts,
                    "last_updated": last_updated,
                    "method": None if consent_ts is None else rnd.choice(["FORM", "API", "IMPORT"]),
                    "method_detail": None
                    if consent_ts is None
                    else rnd.choice(["footer-signup", "popup 🎁", None]),
                    "custom_method_detail": None,
                    "double_optin": None if consent_ts is None else rnd.random() < 0.3,
                    "suppression": []
                    if suppression is None
                    else [
                        {
                            "reason": suppression[0],
                            "timestamp": self._stamp(suppression[1], index, _SUPPRESSED),
                        }
                    ],
                    "list_suppressions": []
                    if list_suppression is None
                    else [
                        {
                            "list_id": "Y6nRLr",
                            "reason": list_suppression[0],
                            "timestamp": self._stamp(list_suppression[1], index, _LIST_SUPPRESSED),
                        }
                    ],
                }
            },
            "sms": {
                "marketing": {
                    "can_receive_sms_marketing": sms_consent == "SUBSCRIBED",
                    "consent": sms_consent,
                    "consent_timestamp": None if sms_consent == "NEVER_SUBSCRIBED" else iso(created),
                    "method": None if sms_consent == "NEVER_SUBSCRIBED" else "TEXT",
                    "method_detail": None if sms_consent == "NEVER_SUBSCRIBED" else "JOIN",
                    "last_updated": None
                    if sms_consent == "NEVER_SUBSCRIBED"
                    else self._stamp(created, index, _SMS_UPDATED),
                },
                "transactional": {
                    "can_receive_sms_transactional": False,
                    "consent": "NEVER_SUBSCRIBED",
                    "consent_timestamp": None,
                    "method": None,
                    "method_detail": None,
                    "last_updated": None,
                },
            },
            "mobile_push": {
                "marketing": {
                    "can_receive_push_marketing": False,
                    "consent": "NEVER_SUBSCRIBED",
                    "consent_timestamp": None,
                }
            },
        }
        if self.quirks:
            subscriptions["whatsapp"] = None  # `whatsapp_null`
            subscriptions["email"]["click_tracking"] = {  # `extra_fields`
                "can_receive": consent == "SUBSCRIBED",
                "consent": "SUBSCRIBED" if consent == "SUBSCRIBED" else "NEVER_SUBSCRIBED",
                "last_updated": last_updated,
            }
        return subscriptions

    def _predictive(self, rnd: random.Random) -> JSONObject:
        if rnd.random() < 0.2:
            return dict.fromkeys(
                (
                    "historic_clv", "predicted_clv", "total_clv", "historic_number_of_orders",
                    "predicted_number_of_orders", "average_days_between_orders", "average_order_value",
                    "churn_probability", "expected_date_of_next_order", "ranked_channel_affinity",
                )
            )  # fmt: skip
        historic = round(rnd.uniform(0, 900), 2)
        predicted = round(rnd.uniform(0, 300), 2)
        orders = rnd.randrange(0, 12)
        return {
            "historic_clv": historic,
            "predicted_clv": predicted,
            "total_clv": round(historic + predicted, 2),
            "historic_number_of_orders": orders,
            "predicted_number_of_orders": round(rnd.uniform(0, 3), 2),
            "average_days_between_orders": None if orders < 2 else rnd.randrange(7, 400),
            "average_order_value": round(historic / orders, 2) if orders else 0,
            "churn_probability": round(rnd.random(), 2),
            "expected_date_of_next_order": None
            if orders < 2
            else iso(self.anchor + rnd.randrange(DAY, 90 * DAY)),
            "ranked_channel_affinity": rnd.sample(["email", "sms", "push", "whatsapp"], rnd.randrange(0, 4)),
        }

    def relationships(self, index: int) -> dict[str, Rel]:
        return {"lists": None, "segments": None, "push-tokens": [], "conversations": []}

    def truth_row(self, index: int) -> JSONObject:
        return {
            "id": self.id(index),
            "updated": iso(self.updated[index]),
            "suppressed": self.suppression(index) is not None,
        }

    # memberships -------------------------------------------------------------------------------------

    def members(self, kind: str, group_ids: list[str]) -> dict[str, array[int]]:
        """Profile indices per list (or segment) id, built in one pass on first use and cached.

        `group_ids` are the groups a profile may join (the generated ones: their number is part of the
        rule, so adding or deleting a group never moves another group's members)."""
        version = (len(self), len(self.deleted))
        cached = self._memberships.get(kind)
        if cached is not None and cached[0] == version:
            return cached[1]
        groups: dict[str, array[int]] = {g: array("l") for g in group_ids}
        n_groups = len(group_ids)
        kind_salt = salt(kind)
        for i in self.live():
            h = mix(self.seed, kind_salt, i)
            # each profile joins 0-3 groups; group g's share falls with g so sizes vary
            for k in range(h % 4):
                g = (h >> (8 + 8 * k)) % n_groups
                g = min(g, (h >> (40 + k)) % n_groups)
                members = groups[group_ids[g]]
                if not members or members[-1] != i:
                    members.append(i)
        self._memberships[kind] = (version, groups)
        return groups

    def joined_at(self, kind: str, group_id: str, index: int) -> int:
        created, updated = self.created[index], self.updated[index]
        return created + mix(self.seed, salt(kind + group_id), index) % max(
            1, min(updated, self.anchor) - created + 1
        )


_EMAIL_UPDATED, _SMS_UPDATED, _SUPPRESSED, _LIST_SUPPRESSED = 11, 12, 13, 14  # micros() streams
_FROM_B32 = str.maketrans("0123456789ABCDEFGHJKMNPQRSTVWXYZ", "0123456789abcdefghijklmnopqrstuv")
