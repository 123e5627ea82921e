"""Record hooks: the few per-stream transformations a declaration cannot express as plain fields.

A hook is a small frozen dataclass whose fields say what it does, so that what must know a stream's
record shape without running it reads those fields: the schema generator
(`tools/generate_schemas.py`) and the tests' ground truth (`tests/truth.py`). Called, it takes the
page's records (cursor already lifted), the whole parsed page (for `included`), the declaration's
parent key and the parent id when the stream is a child, and returns the records to emit. Hooks
must not reorder records of sorted streams: the engine checkpoints on the last record's cursor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from source_klaviyo.contracts import JSONObject, Record

Hook = Callable[[list[Record], JSONObject, str | None, str | None], list[Record]]


def _included(page: JSONObject, type_: str) -> dict[str, Record]:
    return {item["id"]: item for item in page.get("included") or () if item.get("type") == type_}


def _related_ids(record: Record, relationship: str) -> list[str]:
    data = ((record.get("relationships") or {}).get(relationship) or {}).get("data")
    if isinstance(data, dict):
        return [data["id"]]
    return [item["id"] for item in data or ()]


@dataclass(frozen=True)
class EmbedIncluded:
    """Each record gets `key`: the full included resources of `included_type` it relates to through
    `relationship` (campaigns_detailed: a campaign with its messages)."""

    key: str
    included_type: str
    relationship: str

    def __call__(self, records: list[Record], page: JSONObject, _key: str | None,
                 _parent: str | None) -> list[Record]:
        included = _included(page, self.included_type)
        for record in records:
            record[self.key] = [included[id_] for id_ in _related_ids(record, self.relationship)
                                if id_ in included]
        return records


@dataclass(frozen=True)
class IncludedAsRecords:
    """One record per included resource of `included_type` a record relates to through
    `relationship`, carrying that record's id as `parent_field` and its own `cursor` attribute lifted
    (campaign_messages: the messages of each campaign)."""

    included_type: str
    relationship: str
    parent_field: str
    cursor: str

    def __call__(self, records: list[Record], page: JSONObject, _key: str | None,
                 _parent: str | None) -> list[Record]:
        included = _included(page, self.included_type)
        out: list[Record] = []
        for record in records:
            for id_ in _related_ids(record, self.relationship):
                resource = included.get(id_)
                if resource is not None:
                    out.append({**resource, self.parent_field: record["id"],
                                self.cursor: (resource.get("attributes") or {}).get(self.cursor)})
        return out


@dataclass(frozen=True)
class MergeIncluded:
    """The attributes of the included resource a record relates to through `relationship` merged into
    `relationships.<relationship>.data` (events_detailed: each event with its metric)."""

    relationship: str
    included_type: str

    def __call__(self, records: list[Record], page: JSONObject, _key: str | None,
                 _parent: str | None) -> list[Record]:
        included = _included(page, self.included_type)
        for record in records:
            data = ((record.get("relationships") or {}).get(self.relationship) or {}).get("data")
            if isinstance(data, dict) and data.get("id") in included:
                data.update(included[data["id"]].get("attributes") or {})
        return records


@dataclass(frozen=True)
class Membership:
    """`{<parent key>, profile_id, joined_group_at}` per profile of a list or segment."""

    def __call__(self, records: list[Record], _page: JSONObject, key: str | None,
                 parent: str | None) -> list[Record]:
        assert key is not None, "a membership stream is the child of its group"
        return [
            {key: parent, "profile_id": record["id"],
             "joined_group_at": (record.get("attributes") or {}).get("joined_group_at")}
            for record in records
        ]


@dataclass(frozen=True)
class OnlySuppressed:
    """Only profiles with an email marketing suppression (global_exclusions). Defensive: the
    declaration's server-side filter already keeps only those."""

    def __call__(self, records: list[Record], _page: JSONObject, _key: str | None,
                 _parent: str | None) -> list[Record]:
        return [record for record in records if _suppressed(record)]


def _suppressed(record: Record) -> bool:
    email = ((record.get("attributes") or {}).get("subscriptions") or {}).get("email") or {}
    return bool((email.get("marketing") or {}).get("suppression"))
