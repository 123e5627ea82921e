"""No request goes out per record: reading any stream costs its pages, counted in the emulator's stats.

Each stream is read alone from a fresh emulator; the requests the emulator saw must equal the pages
the declaration implies — `max(1, ceil(records / page size))` per request chain (partition or
parent), plus the parent stream's own pages — computed here from the emulator's ground truth. The
only per-record requests are the declared fan-outs: a `Parent` child's one chain per parent record,
and lists_detailed's one `profile_count` request per list (`Detail`; the API has no bulk way).

Streams with `split_by` (events, profiles, memberships) are read in chains the engine cuts while
they run; the test does not redo that arithmetic. It takes the chains from the requests' own filters
and checks that, per parent, they cut the range into adjoining pieces. A chain whose range was cut
stops at the first page holding a record past the cut, so it costs `floor(n / size) + 1` pages for
the `n` records before the cut; one that was not cut costs `max(1, ceil(n / size))`.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from source_klaviyo.datetimes import format_datetime, parse_datetime, utc_now
from source_klaviyo.http import KlaviyoClient
from source_klaviyo.streams import STREAMS, STREAMS_BY_NAME
from tests.connector.helpers import read_in_process
from tests.connector.test_reports import DAY, placed_order, today

METRICS_SERVER_PAGE = 200  # /api/metrics has no page[size]


def pages(count: int, size: int) -> int:
    return max(1, math.ceil(count / size))


def size(stream: str) -> int:
    return STREAMS_BY_NAME[stream].page_size or METRICS_SERVER_PAGE


def chains(counts: Counter, keys: list, stream: str) -> int:
    """The pages of one chain per key (partition or parent), empty chains costing one request."""
    return sum(pages(counts[key], size(stream)) for key in keys)


def stamped(rows: list[dict[str, Any]], field: str) -> list[datetime]:
    return [parse_datetime(row[field]) for row in rows]


def recording_client() -> tuple[type[KlaviyoClient], list[dict[str, str]]]:
    """A client class that keeps the path and query of every GET it makes (a `links.next` URL's own)."""
    queries: list[dict[str, str]] = []

    class Recording(KlaviyoClient):
        async def get(self, url: str, params: Any = None, **kwargs: Any) -> Any:
            parts = urlsplit(url)
            queries.append({**dict(parse_qsl(parts.query)), **dict(params or ()), "_path": parts.path})
            return await super().get(url, params, **kwargs)

    return Recording, queries


Bound = tuple[str, datetime]  # (filter operator, value)
_BOUND = re.compile(r"(greater-or-equal|greater-than|less-than)\((\w+),([^)]+)\)")


@dataclass(frozen=True)
class ChainOf:
    """One chain of requests: the parent's path, its page size and its range (None: unbounded)."""

    path: str
    size: int
    lower: Bound | None
    upper: datetime | None

    def selects(self, stamp: datetime, upper: datetime | None = None) -> bool:
        """The server's own filter: is a record stamped `stamp` in this chain (below `upper` if given)?"""
        if self.lower is not None:
            operator, value = self.lower
            if stamp < value or (operator == "greater-than" and stamp == value):
                return False
        high = self.upper if upper is None else upper
        return high is None or stamp < high


def chain_of(query: dict[str, str], field: str, fixed: str) -> ChainOf:
    """A request's chain, from its `filter` (the range on `field`, after the stream's `fixed` filters)."""
    text = query.get("filter", "")
    found = _BOUND.findall(text)
    ranged = [(op, value) for op, name, value in found if name == field]
    assert ",".join([*([fixed] if fixed else []), *(f"{op}({field},{v})" for op, v in ranged)]) == text, text
    lower = [(op, parse_datetime(v)) for op, v in ranged if op != "less-than"]
    upper = [parse_datetime(v) for op, v in ranged if op == "less-than"]
    return ChainOf(query["_path"], int(query["page[size]"]),
                   lower[0] if lower else None, upper[0] if upper else None)


def lower_edge(chain: ChainOf) -> datetime:
    """Where a chain's range starts, as a read's cut writes it (greater-than is a second before)."""
    if chain.lower is None:
        return datetime.min.replace(tzinfo=UTC)
    operator, value = chain.lower
    return value + timedelta(seconds=1) if operator == "greater-than" else value


def split_requests(stream: str, queries: list[dict[str, str]], stamps: dict[str, list[datetime]]) -> int:
    """The requests of a stream read in chains cut while they run, from the chains' own filters and
    the truth (`stamps`: the records' range attribute, per parent path)."""
    declared = STREAMS_BY_NAME[stream]
    assert declared.split_by is not None
    mine = [q for q in queries if q["_path"] in stamps]
    requests = Counter(chain_of(q, declared.split_by, declared.filter or "") for q in mine)
    # Cuts follow the density seen so far: a range of a few pages may read as one chain.
    big = [path for path, rows in stamps.items() if len(rows) > 8 * (declared.page_size or 0)]
    assert all(sum(c.path == path for c in requests) > 1 for path in big), "a range of many pages is cut"
    total = 0
    for path, rows in stamps.items():
        chains = sorted((c for c in requests if c.path == path), key=lower_edge)
        assert chains, path
        assert chains[0].lower is None, "a full refresh starts at the first record"
        assert chains[-1].upper is None, "and ends open-ended"
        for chain, following in itertools.zip_longest(chains, chains[1:]):
            cut = lower_edge(following) if following is not None else None
            if following is not None:
                assert chain.upper is None or cut <= chain.upper, (chain, following)  # the pieces adjoin
            before = sum(1 for stamp in rows if chain.selects(stamp, cut))
            beyond = cut is not None and any(chain.selects(stamp) and stamp >= cut for stamp in rows)
            expected = before // chain.size + 1 if beyond else pages(before, chain.size)
            assert requests[chain] == expected, (chain, before, beyond)
            total += expected
    return total


def expected_requests(emu, stream: str, now: datetime, queries: list[dict[str, str]]) -> int:
    campaigns = emu.truth("campaigns")
    flows = emu.truth("flows")
    lists = emu.truth("lists")
    segments = emu.truth("segments")
    actions = emu.truth("flow-actions")
    campaign_keys = [(c, a) for c in ("email", "sms", "mobile_push") for a in (False, True)]
    by_campaign_partition = Counter((row["channel"], row["archived"]) for row in campaigns)
    flow_pages = chains(Counter(row["archived"] for row in flows), [False, True], "flows")
    action_pages = chains(
        Counter(row["flow_id"] for row in actions), [row["id"] for row in flows], "flow_actions"
    )
    match stream:
        case "campaigns" | "campaigns_detailed" | "campaign_messages":
            return chains(by_campaign_partition, campaign_keys, stream)  # include=, not one call per campaign
        case "email_templates" | "lists" | "segments" | "tags" | "coupons" | "metrics":
            resource = {"email_templates": "templates"}.get(stream, stream)
            return pages(len(emu.truth(resource)), size(stream))
        case "profiles" | "global_exclusions":
            rows = [row for row in emu.truth("profiles") if stream == "profiles" or row["suppressed"]]
            return split_requests(stream, queries, {"/api/profiles": stamped(rows, "updated")})
        case "events" | "events_detailed":
            return split_requests(stream, queries, {"/api/events": stamped(emu.truth("events"), "datetime")})
        case "flows":
            return flow_pages
        case "flow_actions":
            return flow_pages + action_pages
        case "flow_messages":
            messages = Counter(row["flow_action_id"] for row in emu.truth("flow-messages"))
            return flow_pages + action_pages + chains(messages, [row["id"] for row in actions], stream)
        case "lists_detailed":
            return pages(len(lists), size(stream)) + len(lists)  # Detail: profile_count, one per list
        case "list_memberships" | "segment_memberships":
            parents, resource, key = ((lists, "list-memberships", "list_id") if stream == "list_memberships"
                                      else (segments, "segment-memberships", "segment_id"))
            parent_stream = "lists" if stream == "list_memberships" else "segments"
            joined: dict[str, list[datetime]] = {f"/api/{parent_stream}/{row['id']}/profiles": []
                                                 for row in parents}
            for row in emu.truth(resource):
                joined[f"/api/{parent_stream}/{row[key]}/profiles"].append(parse_datetime(row["joined_group_at"]))
            return pages(len(parents), size(parent_stream)) + split_requests(stream, queries, joined)
        case "campaign_values_reports":
            return 3 * len(placed_order(emu)) + 1  # 3 days x metrics, + the metrics page
        case "flow_series_reports":
            return 1 * len(placed_order(emu)) + 1  # one 60-day window x metrics, + the metrics page
    raise AssertionError(f"no expectation for {stream}")


@pytest.mark.parametrize("stream", [stream.name for stream in STREAMS])
def test_requests_are_the_pages_not_the_records(fresh_emulator, stream):
    now = utc_now()  # a fixed clock for the read: every record the truth has is read
    extra = {"start_date": format_datetime(today() - 3 * DAY)} if STREAMS_BY_NAME[stream].report else {}
    fresh_emulator.reset_stats()
    client_class, queries = recording_client()
    sink, result = read_in_process(fresh_emulator.url, [stream], sync_mode="full_refresh", clock=lambda: now,
                                   client_class=client_class, **extra)
    assert result.ok, sink.errors
    records = len(sink.by_stream.get(stream, []))
    stats = fresh_emulator.stats()
    expected = expected_requests(fresh_emulator, stream, now, queries)
    assert stats["requests_total"] == expected, (records, stats["requests"])
    assert all(set(statuses) == {"200"} for statuses in stats["requests"].values()), stats["requests"]
