"""What the emulator's reports count: statistics computed from the account's own data, deterministically,
so that a test can ask the same question and compare (see `reports.py` for the endpoints).

- **Conversions** come from events. Each event is attributed to at most one message, by a fixed rule
  (`Attributions`): one event in four to a flow message, one in four to a campaign message sent in the
  `ATTRIBUTION_WINDOW` before it (when there is one). A report's `conversions`, `conversion_uniques`
  (distinct profiles) and `conversion_value` (the orders' totals) are those of the events of its
  conversion metric attributed to the message, over the message's life (campaigns) or per day (flows).
- **Deliveries** the data does not hold (recipients, opens, clicks, bounces, ...) are drawn from the
  seed: per campaign message (one send), per flow message and day (flows send every day from the day
  the message was created). They are consistent with each other (opens ≤ delivered ≤ recipients).
- **Rates** are ratios of those counts, as fractions; money is rounded to cents.
- **Forms** are viewed every day from the day they were created while they are live (a draft form
  is not shown): the day's views are drawn from the seed, and every other count is a share of them
  (uniques ≤ views, submits ≤ qualified ≤ viewed steps). Counts add up over days; `submit_rate` is
  submits over unique views.
- **Segments**: `members_added` counts the memberships that started in the period (`joined_group_at`),
  `total_members` those started before its end; nobody leaves a segment here (`members_removed` 0).

Nothing depends on the timeframe a report is asked with beyond which days it covers, so a day's or a
campaign's values are the same however a reader windows its requests.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from .data.rng import mix, salt
from .store import World

DAY = 86_400
ATTRIBUTION_WINDOW = 5 * DAY
# How many recipients a send reaches: one campaign send, or one flow message's day.
CAMPAIGN_AUDIENCE = 5_000
FLOW_DAILY_AUDIENCE = 60

MESSAGE_STATISTICS = frozenset(
    [
        "average_order_value", "bounce_rate", "bounced", "bounced_or_failed", "bounced_or_failed_rate",
        "click_rate", "click_to_open_rate", "clicks", "clicks_unique", "conversion_rate",
        "conversion_uniques", "conversion_value", "conversions", "delivered", "delivery_rate", "failed",
        "failed_rate", "message_segment_count_sum", "open_rate", "opens", "opens_unique", "recipients",
        "revenue_per_recipient", "spam_complaint_rate", "spam_complaints",
        "text_message_credit_usage_amount", "text_message_roi", "text_message_spend", "unsubscribe_rate",
        "unsubscribe_uniques", "unsubscribes",
    ]
)  # fmt: skip
FORM_STATISTICS = frozenset(
    [
        "closed_form", "closed_form_uniques", "qualified_form", "qualified_form_uniques", "submit_rate",
        "submits", "submitted_form_step", "submitted_form_step_uniques", "viewed_form", "viewed_form_step",
        "viewed_form_step_uniques", "viewed_form_uniques",
    ]
)  # fmt: skip
# How many visitors a live form is shown to in a day, at most.
FORM_DAILY_VIEWS = 400
SEGMENT_STATISTICS = frozenset(["members_added", "members_removed", "net_members_changed", "total_members"])


# --------------------------------------------------------------------------- deliveries


@dataclass
class Tally:
    """The counts of a message over some sends; `add` sums them, `statistics` derives the rest."""

    counts: dict[str, int] = field(default_factory=dict)
    conversion_value: float = 0.0
    converters: set[int] = field(default_factory=set)  # profile indices

    def add(self, counts: dict[str, int]) -> None:
        for name, value in counts.items():
            self.counts[name] = self.counts.get(name, 0) + value

    def convert(self, conversions: Iterable[Conversion]) -> None:
        for conversion in conversions:
            self.counts["conversions"] = self.counts.get("conversions", 0) + 1
            self.conversion_value += conversion.value
            self.converters.add(conversion.profile)

    def statistics(self, names: Iterable[str]) -> dict[str, float | int]:
        c = dict.fromkeys(_COUNTED, 0) | self.counts
        c["conversion_uniques"] = len(self.converters)
        c["bounced_or_failed"] = c["bounced"] + c["failed"]
        value = round(self.conversion_value, 2)
        spend = round(c["message_segment_count_sum"] * 0.01, 2)
        derived: dict[str, float | int] = {
            "conversion_value": value,
            "text_message_credit_usage_amount": c["message_segment_count_sum"],
            "text_message_spend": spend,
            "text_message_roi": _ratio(value - spend, spend),
            "average_order_value": round(value / c["conversions"], 2) if c["conversions"] else 0.0,
            "revenue_per_recipient": round(value / c["recipients"], 2) if c["recipients"] else 0.0,
            "bounce_rate": _ratio(c["bounced"], c["recipients"]),
            "failed_rate": _ratio(c["failed"], c["recipients"]),
            "bounced_or_failed_rate": _ratio(c["bounced_or_failed"], c["recipients"]),
            "delivery_rate": _ratio(c["delivered"], c["recipients"]),
            "open_rate": _ratio(c["opens_unique"], c["delivered"]),
            "click_rate": _ratio(c["clicks_unique"], c["delivered"]),
            "click_to_open_rate": _ratio(c["clicks_unique"], c["opens_unique"]),
            "conversion_rate": _ratio(c["conversion_uniques"], c["delivered"]),
            "unsubscribe_rate": _ratio(c["unsubscribe_uniques"], c["delivered"]),
            "spam_complaint_rate": _ratio(c["spam_complaints"], c["delivered"]),
        }
        return {name: derived[name] if name in derived else c[name] for name in names}


_COUNTED = ("recipients", "delivered", "bounced", "failed", "opens", "opens_unique", "clicks",
            "clicks_unique", "unsubscribes", "unsubscribe_uniques", "spam_complaints",
            "message_segment_count_sum", "conversions")


def _ratio(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


def deliveries(seed: int, message_id: str, channel: str, audience: int, day: int = 0) -> dict[str, int]:
    """The drawn counts of one send of a message (`day`: a flow message's day; 0 for a campaign)."""
    h = mix(seed, salt("deliveries"), salt(message_id), day)
    g = mix(h, 1)
    recipients = audience // 2 + h % audience
    bounced = (h >> 16) % (recipients // 25 + 1)
    failed = (h >> 24) % (recipients // 50 + 1)
    delivered = recipients - bounced - failed
    opens_unique = delivered * (15 + (h >> 32) % 40) // 100
    clicks_unique = opens_unique * ((h >> 40) % 25) // 100
    unsubscribe_uniques = delivered * ((g >> 8) % 3) // 100
    return {
        "recipients": recipients,
        "bounced": bounced,
        "failed": failed,
        "delivered": delivered,
        "opens_unique": opens_unique,
        "opens": opens_unique + g % (opens_unique + 1),
        "clicks_unique": clicks_unique,
        "clicks": clicks_unique + (g >> 16) % (clicks_unique + 1),
        "unsubscribe_uniques": unsubscribe_uniques,
        "unsubscribes": unsubscribe_uniques + (g >> 24) % 2 * min(1, unsubscribe_uniques),
        "spam_complaints": delivered * ((g >> 32) % 2) // 500,
        "message_segment_count_sum": recipients * (1 + (g >> 40) % 2) if channel.lower() == "sms" else 0,
    }


# --------------------------------------------------------------------------- conversions


@dataclass(frozen=True)
class Conversion:
    day: int  # the event's epoch day
    profile: int
    value: float


class Attributions:
    """The events of each metric attributed to each message (see the module docstring), computed once
    per metric and data version (a mutation may add events, campaigns or flows)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._cache: dict[str, tuple[int, dict[str, list[Conversion]]]] = {}

    def of(self, metric_id: str) -> dict[str, list[Conversion]]:
        cached = self._cache.get(metric_id)
        if cached is not None and cached[0] == self.world.generation:
            return cached[1]
        found = self._attribute(metric_id)
        self._cache[metric_id] = (self.world.generation, found)
        return found

    def _attribute(self, metric_id: str) -> dict[str, list[Conversion]]:
        world = self.world
        events = world.events
        flow_messages = [world.table("flow-messages").id(i) for i in world.table("flow-messages").live()]
        sends = campaign_sends(world)
        send_times = [stamp for stamp, _ in sends]
        found: dict[str, list[Conversion]] = {}
        attribution = salt("attribution")
        for index in events.by_metric(metric_id):
            h = mix(world.seed, attribution, index)
            stamp = events.ts[index]
            message: str | None = None
            if h % 4 == 0 and flow_messages:
                message = flow_messages[(h >> 2) % len(flow_messages)]
            elif h % 4 == 1:
                low = bisect_right(send_times, stamp - ATTRIBUTION_WINDOW)
                high = bisect_right(send_times, stamp)
                if high > low:
                    message = sends[low + (h >> 2) % (high - low)][1]
            if message is not None:
                conversion = Conversion(stamp // DAY, events.profile_index(index), events.order_value(index))
                found.setdefault(message, []).append(conversion)
        return found


def campaign_sends(world: World) -> list[tuple[int, str]]:
    """(send time, campaign message id) of every sent campaign's messages, by send time."""
    campaigns = world.table("campaigns")
    sends = []
    for i in campaigns.live():
        row = campaigns.rows[i]  # type: ignore[attr-defined]
        send_time = row["attributes"]["send_time"]
        if send_time is not None:
            stamp = int(datetime.fromisoformat(send_time).timestamp())
            sends += [(stamp, message_id) for _, message_id in row["rels"]["campaign-messages"]]
    return sorted(sends)


# --------------------------------------------------------------------------- segments


def join_times(world: World, segment_id: str) -> list[int]:
    """When each member joined the segment (epoch seconds), sorted."""
    members = world.members("segments", segment_id) or ()
    return sorted(world.profiles.joined_at("segments", segment_id, i) for i in members)


def segment_statistics(joined: list[int], start: int, end: int, names: Iterable[str]) -> dict[str, int]:
    """A segment's statistics over `[start, end)` from its members' join times."""
    added = bisect_left(joined, end) - bisect_left(joined, start)
    values = {"members_added": added, "members_removed": 0, "net_members_changed": added,
              "total_members": bisect_left(joined, end)}
    return {name: values[name] for name in names}


# --------------------------------------------------------------------------- forms


def form_day(seed: int, form_id: str, day: int) -> dict[str, int]:
    """The drawn counts of one live form on one epoch day."""
    h = mix(seed, salt("form-day"), salt(form_id), day)
    viewed = h % FORM_DAILY_VIEWS
    viewed_uniques = viewed * (70 + (h >> 12) % 30) // 100
    qualified = viewed * (40 + (h >> 20) % 40) // 100
    steps = viewed + viewed * ((h >> 28) % 50) // 100
    submitted_steps = qualified * (20 + (h >> 36) % 50) // 100
    submits = submitted_steps * (50 + (h >> 44) % 50) // 100
    closed = (viewed - qualified) * (30 + (h >> 52) % 60) // 100
    return {
        "viewed_form": viewed,
        "viewed_form_uniques": viewed_uniques,
        "qualified_form": qualified,
        "qualified_form_uniques": qualified * viewed_uniques // max(viewed, 1),
        "viewed_form_step": steps,
        "viewed_form_step_uniques": steps * viewed_uniques // max(viewed, 1),
        "submitted_form_step": submitted_steps,
        "submitted_form_step_uniques": submitted_steps * viewed_uniques // max(viewed, 1),
        "submits": submits,
        "closed_form": closed,
        "closed_form_uniques": closed * viewed_uniques // max(viewed, 1),
    }


@dataclass(frozen=True)
class Form:
    id: str
    created: int  # epoch seconds
    live: bool  # a draft form is not shown


_FORM_COUNTS = sorted(FORM_STATISTICS - {"submit_rate"})


def form_statistics(seed: int, forms: Iterable[Form], days: range,
                    names: Iterable[str]) -> dict[str, float | int]:
    """The statistics of some forms together over `days` (epoch days): each live form's days from its
    creation on."""
    counts = dict.fromkeys(_FORM_COUNTS, 0)
    for form in forms:
        if not form.live:
            continue
        for day in days:
            if day >= form.created // DAY:
                for name, value in form_day(seed, form.id, day).items():
                    counts[name] += value
    values: dict[str, float | int] = {**counts,
                                      "submit_rate": _ratio(counts["submits"], counts["viewed_form_uniques"])}
    return {name: values[name] for name in names}
