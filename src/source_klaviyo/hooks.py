"""Record hooks: the few per-stream transformations a declaration cannot express as data.

A hook takes the page's records (cursor already lifted), the whole parsed page (for `included`) and
the parent id when the stream is a child, and returns the records to emit. Hooks must not reorder
records of sorted streams: the engine checkpoints on the last record's cursor.
"""

from __future__ import annotations

from collections.abc import Callable

from source_klaviyo.contracts import JSONObject, Record

Hook = Callable[[list[Record], JSONObject, str | None, str | None], list[Record]]


def _included(page: JSONObject, type_: str) -> dict[str, Record]:
    return {item["id"]: item for item in page.get("included") or () if item.get("type") == type_}


def _related_ids(record: Record, relationship: str) -> list[str]:
    data = ((record.get("relationships") or {}).get(relationship) or {}).get("data")
    if isinstance(data, dict):
        return [data["id"]]
    return [item["id"] for item in data or ()]


def attach_campaign_messages(records: list[Record], page: JSONObject, _key: str | None,
                             _parent: str | None) -> list[Record]:
    """campaigns_detailed: each campaign with `campaign_messages`, the full included message objects."""
    messages = _included(page, "campaign-message")
    for record in records:
        record["campaign_messages"] = [
            messages[id_] for id_ in _related_ids(record, "campaign-messages") if id_ in messages
        ]
    return records


def emit_included_campaign_messages(records: list[Record], page: JSONObject, _key: str | None,
                                    _parent: str | None) -> list[Record]:
    """campaign_messages: one record per included campaign-message, with its `campaign_id`."""
    messages = _included(page, "campaign-message")
    out: list[Record] = []
    for campaign in records:
        for id_ in _related_ids(campaign, "campaign-messages"):
            message = messages.get(id_)
            if message is not None:
                out.append({**message, "campaign_id": campaign["id"],
                            "updated_at": (message.get("attributes") or {}).get("updated_at")})
    return out


def merge_included_metric(records: list[Record], page: JSONObject, _key: str | None,
                          _parent: str | None) -> list[Record]:
    """events_detailed: the included metric's attributes merged into `relationships.metric.data`."""
    metrics = _included(page, "metric")
    for record in records:
        data = ((record.get("relationships") or {}).get("metric") or {}).get("data")
        if isinstance(data, dict) and data.get("id") in metrics:
            data.update(metrics[data["id"]].get("attributes") or {})
    return records


def membership_record(records: list[Record], _page: JSONObject, key: str | None,
                      parent: str | None) -> list[Record]:
    """list_/segment_memberships: `{list_id|segment_id, profile_id, joined_group_at}` per profile."""
    assert key is not None
    return [
        {key: parent, "profile_id": record["id"],
         "joined_group_at": (record.get("attributes") or {}).get("joined_group_at")}
        for record in records
    ]


def only_suppressed(records: list[Record], _page: JSONObject, _key: str | None,
                    _parent: str | None) -> list[Record]:
    """global_exclusions: defensive, the server-side filter already keeps only suppressed profiles."""
    def suppressed(record: Record) -> bool:
        email = ((record.get("attributes") or {}).get("subscriptions") or {}).get("email") or {}
        return bool((email.get("marketing") or {}).get("suppression"))

    return [record for record in records if suppressed(record)]

