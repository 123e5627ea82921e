"""The reporting endpoints: request bodies validated like the spec's DTOs; the statistics are computed
from the account's data by `report_model.py`."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from weakref import WeakKeyDictionary

import orjson

from .errors import invalid
from .jsontext import JSONObject
from .report_model import (
    CAMPAIGN_AUDIENCE,
    DAY,
    FLOW_DAILY_AUDIENCE,
    FORM_STATISTICS,
    MESSAGE_STATISTICS,
    SEGMENT_STATISTICS,
    Attributions,
    Conversion,
    Form,
    Tally,
    deliveries,
    form_statistics,
    join_times,
    segment_statistics,
)
from .store import World

TIMEFRAME_KEYS = frozenset(
    [
        "today",
        "yesterday",
        "this_week",
        "last_week",
        "this_month",
        "last_month",
        "this_year",
        "last_year",
        "last_7_days",
        "last_30_days",
        "last_90_days",
        "last_3_months",
        "last_12_months",
        "last_365_days",
    ]
)
CAMPAIGN_GROUP_BY = frozenset(
    [
        "campaign_id",
        "campaign_message_id",
        "campaign_message_name",
        "group",
        "group_name",
        "send_channel",
        "tag_id",
        "tag_name",
        "text_message_format",
        "variation",
        "variation_name",
    ]
)
FLOW_GROUP_BY = frozenset(
    [
        "flow_id",
        "flow_message_id",
        "flow_message_name",
        "flow_name",
        "send_channel",
        "tag_id",
        "tag_name",
        "text_message_format",
        "variation",
        "variation_name",
    ]
)
INTERVALS = {
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "weekly": timedelta(weeks=1),
    "monthly": timedelta(days=30),
}
INTERVAL_MAX = {
    "hourly": timedelta(days=7),
    "daily": timedelta(days=60),
    "weekly": timedelta(weeks=52),
    "monthly": timedelta(weeks=52),
}
_DAYS = {
    "today": 0,
    "yesterday": 1,
    "last_7_days": 7,
    "last_30_days": 30,
    "last_90_days": 90,
    "last_3_months": 91,
    "last_12_months": 365,
    "last_365_days": 365,
}


def _attributes(body: bytes, type_: str, statistics: frozenset[str] = MESSAGE_STATISTICS,
                conversion_metric: bool = True) -> JSONObject:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid("The request body is not valid JSON", pointer="/data") from None
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict):
        raise invalid("'data' is required", pointer="/data")
    if data.get("type") != type_:
        raise invalid(f"'type' must be '{type_}'", pointer="/data/type")
    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        raise invalid("'attributes' is required", pointer="/data/attributes")
    stats = attributes.get("statistics")
    if not isinstance(stats, list) or not stats or any(s not in statistics for s in stats):
        raise invalid(
            "'statistics' must be a non-empty list of known statistics", pointer="/data/attributes/statistics"
        )
    if conversion_metric and not isinstance(attributes.get("conversion_metric_id"), str):
        raise invalid("'conversion_metric_id' is required", pointer="/data/attributes/conversion_metric_id")
    filter_ = attributes.get("filter")
    if filter_ is not None and not isinstance(filter_, str):
        raise invalid("'filter' must be a string", pointer="/data/attributes/filter")
    return attributes


def _timeframe(value: object) -> tuple[datetime, datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    if isinstance(value, dict) and "key" in value:
        key = value["key"]
        if key not in TIMEFRAME_KEYS:
            raise invalid(f"Unknown timeframe key '{key}'", pointer="/data/attributes/timeframe/key")
        days = _DAYS.get(key, 30)
        start = (now - timedelta(days=days)).replace(hour=0, minute=0, second=0)
        return start, now
    if isinstance(value, dict) and "start" in value and "end" in value:
        try:
            start = datetime.fromisoformat(str(value["start"]).replace("Z", "+00:00"))
            end = datetime.fromisoformat(str(value["end"]).replace("Z", "+00:00"))
        except ValueError:
            raise invalid(
                "timeframe start and end must be ISO 8601 datetimes", pointer="/data/attributes/timeframe"
            ) from None
        start = start if start.tzinfo else start.replace(tzinfo=UTC)
        end = end if end.tzinfo else end.replace(tzinfo=UTC)
        if end <= start:
            raise invalid("timeframe end must be after start", pointer="/data/attributes/timeframe")
        if end - start > timedelta(days=366):
            raise invalid("timeframe must not be longer than one year", pointer="/data/attributes/timeframe")
        return start, end
    raise invalid("'timeframe' needs a 'key' or a 'start' and an 'end'", pointer="/data/attributes/timeframe")


def _group_by(attributes: JSONObject, allowed: frozenset[str], required: tuple[str, str]) -> list[str]:
    group_by = attributes.get("group_by")
    if group_by is None:
        return [*required, "send_channel"]
    if not isinstance(group_by, list) or any(g not in allowed for g in group_by):
        raise invalid(
            f"'group_by' values must be among {', '.join(sorted(allowed))}",
            pointer="/data/attributes/group_by",
        )
    if not set(required) <= set(group_by):
        raise invalid(
            f"'group_by' must contain {required[0]} and {required[1]}", pointer="/data/attributes/group_by"
        )
    return group_by


def _channel_filter(filter_: str | None) -> str | None:
    if not filter_:
        return None
    match = re.search(r"equals\(send_channel,['\"](\w+)['\"]\)", filter_)
    return match.group(1) if match else None


_ATTRIBUTIONS: WeakKeyDictionary[World, Attributions] = WeakKeyDictionary()


def attributions(world: World) -> Attributions:
    found = _ATTRIBUTIONS.get(world)
    if found is None:
        found = _ATTRIBUTIONS[world] = Attributions(world)
    return found


def campaign_values(world: World, body: bytes) -> JSONObject:
    """Each message of every campaign sent in the timeframe, with its statistics over its life (a
    campaign's totals, as Klaviyo's campaign view shows them: the timeframe selects by send date)."""
    attributes = _attributes(body, "campaign-values-report")
    start, end = _timeframe(attributes.get("timeframe"))
    group_by = _group_by(attributes, CAMPAIGN_GROUP_BY, ("campaign_id", "campaign_message_id"))
    channel_only = _channel_filter(attributes.get("filter"))
    converted = attributions(world).of(attributes["conversion_metric_id"])
    campaigns = world.table("campaigns")
    results = []
    ids = []
    for i in campaigns.live():
        row = campaigns.rows[i]  # type: ignore[attr-defined]
        channel = row["keys"]["messages.channel"]
        send_time = row["attributes"]["send_time"]
        if send_time is None or (channel_only and channel != channel_only):
            continue
        if not start <= datetime.fromisoformat(send_time) < end:
            continue
        ids.append(row["id"])
        for _, message_id in row["rels"]["campaign-messages"]:
            groupings: JSONObject = {"campaign_id": row["id"], "campaign_message_id": message_id}
            if "send_channel" in group_by:
                groupings["send_channel"] = channel
            tally = Tally()
            tally.add(deliveries(world.seed, message_id, channel, CAMPAIGN_AUDIENCE))
            tally.convert(converted.get(message_id, ()))
            results.append({"groupings": groupings, "statistics": tally.statistics(attributes["statistics"])})
    return {
        "data": {
            "type": "campaign-values-report",
            "attributes": {"results": results},
            "relationships": {"campaigns": {"data": [{"type": "campaign", "id": c} for c in ids]}},
        }
    }


def _flow_messages(world: World, channel_only: str | None) -> list[tuple[JSONObject, str, str]]:
    """(flow message row, its flow id, its channel) of every flow message, channel-filtered."""
    messages = world.table("flow-messages")
    actions = world.table("flow-actions")
    found = []
    for i in messages.live():
        row = messages.rows[i]  # type: ignore[attr-defined]
        channel = row["attributes"]["channel"]
        if channel_only and channel.lower() != channel_only:
            continue
        action_index = actions.index_of(row["keys"]["flow_action_id"])
        flow_id = actions.rows[action_index]["keys"]["flow_id"] if action_index is not None else ""  # type: ignore[attr-defined]
        found.append((row, flow_id, channel))
    return found


def _flow_tally(world: World, row: JSONObject, channel: str, days: range,
                converted: dict[int, list[Conversion]]) -> Tally:
    """A flow message's sends and conversions over `days` (epoch days): it sends from its creation on."""
    tally = Tally()
    first = row["keys"]["created"] // DAY
    for day in days:
        if day >= first:
            tally.add(deliveries(world.seed, row["id"], channel, FLOW_DAILY_AUDIENCE, day))
        tally.convert(converted.get(day, ()))
    return tally


def _by_day(conversions: list[Conversion]) -> dict[int, list[Conversion]]:
    days: dict[int, list[Conversion]] = {}
    for conversion in conversions:
        days.setdefault(conversion.day, []).append(conversion)
    return days


def _epoch_days(start: datetime, end: datetime) -> range:
    """The UTC days a timeframe covers (a partial first or last day counts whole)."""
    return range(int(start.timestamp()) // DAY, -(-int(end.timestamp()) // DAY))


def _periods(attributes: JSONObject, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """A series' periods: each value belongs to its period, whichever window it is asked in."""
    interval = attributes.get("interval")
    if interval not in INTERVALS:
        raise invalid(
            "'interval' must be hourly, daily, weekly or monthly", pointer="/data/attributes/interval"
        )
    if end - start > INTERVAL_MAX[interval]:
        raise invalid(f"timeframe too long for a {interval} interval", pointer="/data/attributes/interval")
    step = INTERVALS[interval]
    periods = []
    t = start
    while t < end:
        periods.append((t, min(t + step, end)))
        t += step
    return periods


def _flow_groupings(group_by: list[str], flow_id: str, row: JSONObject, channel: str) -> JSONObject:
    groupings: JSONObject = {"flow_id": flow_id, "flow_message_id": row["id"]}
    if "send_channel" in group_by:
        groupings["send_channel"] = channel
    return groupings


def _flow_relationships(found: list[tuple[JSONObject, str, str]]) -> JSONObject:
    flows = list(dict.fromkeys(flow_id for _, flow_id, _ in found))
    return {
        "flows": {"data": [{"type": "flow", "id": f} for f in flows]},
        "flow-messages": {"data": [{"type": "flow-message", "id": row["id"]} for row, _, _ in found]},
    }


def flow_values(world: World, body: bytes) -> JSONObject:
    """Each flow message's statistics over the timeframe: its daily sends and conversions summed."""
    attributes = _attributes(body, "flow-values-report")
    start, end = _timeframe(attributes.get("timeframe"))
    group_by = _group_by(attributes, FLOW_GROUP_BY, ("flow_id", "flow_message_id"))
    converted = attributions(world).of(attributes["conversion_metric_id"])
    found = _flow_messages(world, _channel_filter(attributes.get("filter")))
    results = []
    for row, flow_id, channel in found:
        by_day = _by_day(converted.get(row["id"], []))
        tally = _flow_tally(world, row, channel, _epoch_days(start, end), by_day)
        results.append({"groupings": _flow_groupings(group_by, flow_id, row, channel),
                        "statistics": tally.statistics(attributes["statistics"])})
    return {"data": {"type": "flow-values-report", "attributes": {"results": results},
                     "relationships": _flow_relationships(found)}}


def flow_series(world: World, body: bytes) -> JSONObject:
    attributes = _attributes(body, "flow-series-report")
    start, end = _timeframe(attributes.get("timeframe"))
    periods = _periods(attributes, start, end)
    group_by = _group_by(attributes, FLOW_GROUP_BY, ("flow_id", "flow_message_id"))
    channel_only = _channel_filter(attributes.get("filter"))
    converted = attributions(world).of(attributes["conversion_metric_id"])
    results = []
    found = _flow_messages(world, channel_only)
    names = attributes["statistics"]
    for row, flow_id, channel in found:
        by_day = _by_day(converted.get(row["id"], []))
        values = [_flow_tally(world, row, channel, _epoch_days(low, high), by_day).statistics(names)
                  for low, high in periods]
        results.append({"groupings": _flow_groupings(group_by, flow_id, row, channel),
                        "statistics": {name: [value[name] for value in values] for name in names}})
    return {
        "data": {
            "type": "flow-series-report",
            "attributes": {"results": results, "date_times": [low.isoformat() for low, _ in periods]},
            "relationships": _flow_relationships(found),
        }
    }


FORM_GROUP_BY = ("form_id", "form_version_id")


def _form_attributes(body: bytes, type_: str) -> tuple[JSONObject, list[str], datetime, datetime]:
    attributes = _attributes(body, type_, FORM_STATISTICS, conversion_metric=False)
    if "conversion_metric_id" in attributes:
        raise invalid("form reports take no 'conversion_metric_id'", pointer="/data/attributes")
    group_by = attributes.get("group_by") or []
    if not isinstance(group_by, list) or any(g not in FORM_GROUP_BY for g in group_by):
        raise invalid(f"'group_by' values must be among {', '.join(FORM_GROUP_BY)}",
                      pointer="/data/attributes/group_by")
    start, end = _timeframe(attributes.get("timeframe"))
    return attributes, group_by, start, end


def _form_groups(world: World, group_by: list[str]) -> list[tuple[JSONObject, list[Form]]]:
    """The answer's groups: one per form (each form has one version here, `<form id>-1`), or a single
    group of every form without `group_by`."""
    table = world.table("forms")
    forms = [Form(table.id(i), int(table.value("created_at", i) or 0), table.value("status", i) == "live")
             for i in table.live()]
    if not group_by:
        return [({}, forms)]
    groups: list[tuple[JSONObject, list[Form]]] = []
    for form in forms:
        names = {"form_id": form.id, "form_version_id": f"{form.id}-1"}
        groups.append(({name: names[name] for name in group_by}, [form]))
    return groups


def form_values(world: World, body: bytes) -> JSONObject:
    """Each form's views, submits, ... over the timeframe (`report_model.form_statistics`)."""
    attributes, group_by, start, end = _form_attributes(body, "form-values-report")
    days, names = _epoch_days(start, end), attributes["statistics"]
    results = [{"groupings": groupings, "statistics": form_statistics(world.seed, forms, days, names)}
               for groupings, forms in _form_groups(world, group_by)]
    return {"data": {"type": "form-values-report", "attributes": {"results": results}}}


def form_series(world: World, body: bytes) -> JSONObject:
    attributes, group_by, start, end = _form_attributes(body, "form-series-report")
    periods = _periods(attributes, start, end)
    names = attributes["statistics"]
    results = []
    for groupings, forms in _form_groups(world, group_by):
        values = [form_statistics(world.seed, forms, _epoch_days(low, high), names) for low, high in periods]
        results.append({"groupings": groupings,
                        "statistics": {name: [value[name] for value in values] for name in names}})
    date_times = [low.isoformat() for low, _ in periods]
    return {"data": {"type": "form-series-report",
                     "attributes": {"results": results, "date_times": date_times}}}


# Klaviyo keeps segment reporting data from this day on (the spec's timeframe description). Klaviyo's
# answer to an earlier timeframe is not known; the emulator refuses it, the strictest reading.
SEGMENT_DATA_SINCE = datetime(2023, 6, 1, tzinfo=UTC)


def _segment_attributes(body: bytes, type_: str) -> tuple[JSONObject, datetime, datetime]:
    attributes = _attributes(body, type_, SEGMENT_STATISTICS, conversion_metric=False)
    if "group_by" in attributes or "conversion_metric_id" in attributes:
        raise invalid("segment reports take no 'group_by' or 'conversion_metric_id'",
                      pointer="/data/attributes")
    start, end = _timeframe(attributes.get("timeframe"))
    if start < SEGMENT_DATA_SINCE:
        raise invalid("Data is unavailable before June 1st, 2023", pointer="/data/attributes/timeframe")
    return attributes, start, end


def _segments(world: World) -> list[tuple[str, list[int]]]:
    segments = world.table("segments")
    return [(segments.id(i), join_times(world, segments.id(i))) for i in segments.live()]


def segment_values(world: World, body: bytes) -> JSONObject:
    """Each segment's members added and in total over the timeframe, from its memberships."""
    attributes, start, end = _segment_attributes(body, "segment-values-report")
    low, high = int(start.timestamp()), int(end.timestamp())
    results = [{"groupings": {"segment_id": segment_id},
                "statistics": segment_statistics(joined, low, high, attributes["statistics"])}
               for segment_id, joined in _segments(world)]
    return {"data": {"type": "segment-values-report", "attributes": {"results": results}}}


def segment_series(world: World, body: bytes) -> JSONObject:
    attributes, start, end = _segment_attributes(body, "segment-series-report")
    periods = _periods(attributes, start, end)
    names = attributes["statistics"]
    results = []
    for segment_id, joined in _segments(world):
        values = [segment_statistics(joined, int(low.timestamp()), int(high.timestamp()), names)
                  for low, high in periods]
        results.append({"groupings": {"segment_id": segment_id},
                        "statistics": {name: [value[name] for value in values] for name in names}})
    date_times = [low.isoformat() for low, _ in periods]
    return {"data": {"type": "segment-series-report",
                     "attributes": {"results": results, "date_times": date_times}}}


# The answer of each reporting operation (its operationId), for the route that serves it and for tests.
BUILDERS: dict[str, Callable[[World, bytes], JSONObject]] = {
    "query_campaign_values": campaign_values,
    "query_flow_series": flow_series,
    "query_flow_values": flow_values,
    "query_form_series": form_series,
    "query_form_values": form_values,
    "query_segment_series": segment_series,
    "query_segment_values": segment_values,
}
