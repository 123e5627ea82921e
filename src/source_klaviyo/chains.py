"""Request building: the first request of a chain of pages, from a stream's declaration.

A chain reads one range of one partition (or one parent's children): the declaration's fixed
filter, the partition's filters and the range's bounds on the cursor (or `split_by`) become one
`filter`, sorted by that attribute, with the page size, includes and additional fields. The bounds
are also kept in `Chain.lower`/`upper` for the reader to check: where the server cannot filter a
side, and because a server may accept a filter and not honour it (Klaviyo was seen to ignore one).

    >>> from source_klaviyo.config import Config
    >>> from source_klaviyo.streams import STREAMS_BY_NAME
    >>> chain = build_chain(STREAMS_BY_NAME["flows"], Config(api_key="pk_x"), partition={"archived": "true"})
    >>> chain.path, chain.bucket, chain.tier
    ('/api/flows', '/api/flows', 'S')
    >>> chain.params
    [('page[size]', '50'), ('filter', 'equals(archived,true)'), ('sort', 'updated')]
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from .datetimes import ONE_SECOND, format_datetime
from .streams import Detail, Stream, TierName

if TYPE_CHECKING:
    from .config import Config

Partition = dict[str, str]


@dataclass(frozen=True)
class Chain:
    """One chain of pages: a first request, then `links.next` until there is none."""

    path: str
    params: list[tuple[str, str]]
    bucket: str
    tier: TierName
    partition: Partition = field(default_factory=dict)
    parent_id: str | None = None
    lower: datetime | None = None  # checked here too (inclusive): the server may not filter it
    upper: datetime | None = None  # checked here too (exclusive)


def partitions_of(stream: Stream) -> list[Partition]:
    axes = stream.partitions
    return [dict(zip((a.key for a in axes), values, strict=True))
            for values in itertools.product(*(a.values for a in axes))]


def tier_and_fields(stream: Stream, config: Config) -> tuple[TierName, tuple[str, ...]]:
    """The tier the stream's requests count against and the additional fields they ask for."""
    fields, tier = stream.additional_fields, stream.tier
    reduced = stream.reduced_tier
    if reduced is not None:
        if reduced.dropped(config):
            fields = tuple(f for f in fields if f != reduced.field)
        elif reduced.field in fields:
            tier = reduced.tier
    return tier, fields


def build_chain(stream: Stream, config: Config, *, partition: Partition | None = None,
                lower: datetime | None = None, upper: datetime | None = None,
                parent_id: str | None = None, page_size: int | None = None) -> Chain:
    """The first request of a chain, from the declaration; bounds are `[lower, upper)`. A child
    stream's chain reads the children of `parent_id`."""
    partition = partition or {}
    filters = [stream.filter] if stream.filter else []
    if parent_id is not None and stream.parent is not None and stream.parent.filter:
        filters.append(stream.parent.filter.format(id=parent_id))
    for axis in stream.partitions:
        filters.append(axis.filter.format(value=partition[axis.key]))
    inc = stream.incremental
    if inc is None and stream.split_by is not None:
        # A range of an attribute that is not a cursor (memberships by `joined_group_at`).
        if lower is not None:
            filters.append(f"greater-or-equal({stream.split_by},{format_datetime(lower)})")
        if upper is not None:
            filters.append(f"less-than({stream.split_by},{format_datetime(upper)})")
    if inc is not None:
        cursor = inc.cursor
        if lower is not None:
            if inc.server_side_filter and inc.lower_operator == "greater-or-equal":
                filters.append(f"greater-or-equal({cursor},{format_datetime(lower)})")
            elif inc.server_side_filter and inc.lower_operator == "greater-than":
                filters.append(f"greater-than({cursor},{format_datetime(lower - ONE_SECOND)})")
        if upper is not None and inc.server_side_filter and inc.supports_less_than_filter:
            filters.append(f"less-than({cursor},{format_datetime(upper)})")
    params: list[tuple[str, str]] = []
    size = page_size or stream.page_size
    if size:
        params.append(("page[size]", str(size)))
    if filters:
        params.append(("filter", ",".join(filters)))
    if inc is not None and inc.sortable:
        params.append(("sort", inc.cursor))
    elif inc is None and stream.split_by is not None:
        params.append(("sort", stream.split_by))
    if stream.include:
        params.append(("include", ",".join(stream.include)))
    tier, additional = tier_and_fields(stream, config)
    if additional:
        params.append((f"additional-fields[{stream.resource_type}]", ",".join(additional)))
    path = stream.path if parent_id is None else stream.path.format(id=parent_id)
    ranged = inc is not None or stream.split_by is not None
    return Chain(path, params, bucket_of(stream, config), tier, partition, parent_id,
                 lower if ranged else None, upper if ranged else None)


def bucket(path: str, *qualifiers: str) -> str:
    """The rate-limit bucket of requests to `path`, a template (ids as `{id}`): Klaviyo counts each
    endpoint apart, and an endpoint that an additional field moves to another tier apart again."""
    return path + ("?" + ",".join(qualifiers) if qualifiers else "")


def bucket_of(stream: Stream, config: Config) -> str:
    tier, additional = tier_and_fields(stream, config)
    return bucket(stream.path, *(additional if tier != stream.tier else ()))


def detail_chain(detail: Detail, record_id: str) -> Chain:
    """The one request of a record's detail (`Detail`): its own endpoint, bucket and tier."""
    return Chain(detail.path.format(id=record_id), list(detail.params), bucket(detail.path, *detail.fields),
                 detail.tier)
