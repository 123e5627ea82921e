"""What a page's records become before the sink gets them.

Parsed records (dicts): the cursor lifted to the top level, records outside the chain's bounds
dropped (where the server could not filter them, or did not), the parent's id added to a child's records, the
stream's hook applied, and a record's detail (one more request) merged in. Raw records
(`pages.RawRecord`) already carry their lifted cursor: only the bounds are checked.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from .chains import Chain, detail_chain
from .contracts import Client, JSONObject, Record
from .pages import RawRecord, cursor_value, parse_page, raw_cursor_value
from .streams import Detail, Stream


def within(value: datetime | None, lower: datetime | None, upper: datetime | None) -> bool:
    """`value` in `[lower, upper)`; a record without a readable value is kept (never lost)."""
    if value is None:
        return True
    return (lower is None or value >= lower) and (upper is None or value < upper)


def prepare(stream: Stream, data: list[Record], page: JSONObject, chain: Chain, lower: datetime | None,
            upper: datetime | None, range_field: str | None) -> list[Record]:
    """A page's parsed records as the stream emits them, those outside `[lower, upper)` dropped: the
    chain's bounds, `upper` lower where its range was cut while it ran, none where the page is known
    to be within them."""
    lifted = stream.lifted
    if lifted:
        try:
            for record in data:
                record[lifted] = record["attributes"][lifted]
        except (KeyError, TypeError):
            for record in data:
                record[lifted] = (record.get("attributes") or {}).get(lifted)
    if (lower or upper) and range_field:
        data = [r for r in data
                if within(cursor_value((r.get("attributes") or {}).get(range_field)), lower, upper)]
    parent = stream.parent
    if parent is not None and stream.hook is None:
        for record in data:
            record[parent.key] = chain.parent_id
    if stream.hook is not None:
        data = stream.hook(data, page, parent.key if parent else None, chain.parent_id)
    return data


def prepare_raw(stream: Stream, data: list[RawRecord], lower: datetime | None, upper: datetime | None,
                ) -> list[RawRecord]:
    if (lower or upper) and stream.lifted:
        return [r for r in data if within(raw_cursor_value(r[1]), lower, upper)]
    return data


async def with_details(client: Client, detail: Detail, records: list[Record]) -> list[Record]:
    """Each record with the `detail.fields` of its own detail request (paced by the client, in its
    own rate-limit bucket)."""

    async def fetch(record: Record) -> None:
        chain = detail_chain(detail, record["id"])
        answer = await client.get(chain.path, chain.params, bucket=chain.bucket, tier=chain.tier,
                                  parse=parse_page)
        attributes = (answer.get("data") or {}).get("attributes") or {}
        target = record.setdefault("attributes", {})
        for name in detail.fields:
            if name in attributes:
                target[name] = attributes[name]

    await asyncio.gather(*(fetch(record) for record in records))
    return records
