"""No request goes out per record: reading any stream costs its pages, counted in the emulator's stats.

Each stream is read alone from a fresh emulator; the requests the emulator saw must equal the pages
the declaration implies — `max(1, ceil(records / page size))` per request chain (partition, window or
parent), plus the parent stream's own pages — computed here from the emulator's ground truth. The
only per-record requests are the declared fan-outs: a `Parent` child's one chain per parent record,
and lists_detailed's one `profile_count` request per list (`Detail`; the API has no bulk way).

Events are read in windows whose number and length the engine chooses from the first page's density;
the test does not redo that arithmetic. It takes the windows from the requests' own filters, checks
they cut the range into disjoint, adjoining pieces, and counts in the ground truth the events each
window's filter selects: each window costs exactly its pages, and the opening page of the whole range
one request when the range is cut.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from source_klaviyo.datetimes import floor_second, format_datetime, parse_datetime, utc_now
from source_klaviyo.engine import UPPER_MARGIN
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


def recording_client() -> tuple[type[KlaviyoClient], list[dict[str, str]]]:
    """A client class that keeps the query of every GET it makes (a `links.next` URL's own query)."""
    queries: list[dict[str, str]] = []

    class Recording(KlaviyoClient):
        async def get(self, url: str, params: Any = None, **kwargs: Any) -> Any:
            queries.append({**dict(parse_qsl(urlsplit(url).query)), **dict(params or ())})
            return await super().get(url, params, **kwargs)

    return Recording, queries


Window = tuple[datetime | None, datetime | None]
_BOUND = re.compile(r"(greater-or-equal|less-than)\(datetime,([^)]+)\)")


def window_of(query: dict[str, str]) -> Window:
    """The [lower, upper) range an events request asks for, from its `filter` (None: unbounded)."""
    text = query.get("filter", "")
    bounds = dict(_BOUND.findall(text))
    assert ",".join(f"{op}(datetime,{value})" for op, value in _BOUND.findall(text)) == text, text
    lower, upper = bounds.get("greater-or-equal"), bounds.get("less-than")
    return (parse_datetime(lower) if lower else None, parse_datetime(upper) if upper else None)


def windowed_requests(emu, stream: str, now: datetime, queries: list[dict[str, str]]) -> int:
    """Events: the requests each window the engine chose must cost, from the ground truth."""
    stamps = [parse_datetime(row["datetime"]) for row in emu.truth("events")]
    per_window = Counter(window_of(query) for query in queries)
    opening = window_of(queries[0])

    def served(window: Window) -> int:
        low, high = window
        return sum(1 for s in stamps if (low is None or low <= s) and (high is None or s < high))

    if len(per_window) == 1:  # the first page began the one chain: no window was cut
        return pages(served(opening), size(stream))
    cut = per_window.keys() - {opening}
    assert all(low is not None for low, _high in cut), cut
    windows = sorted(cut, key=lambda window: str(window[0]))  # ISO text of one zone sorts by time
    upper = floor_second(now) - UPPER_MARGIN
    # Disjoint, adjoining windows from the first event's second to the read's upper bound (or open).
    assert len(windows) >= 2, "a range is cut into two windows at least"
    assert windows[0][0] == floor_second(min(stamps))
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows)), windows
    assert windows[-1][1] in (None, upper), windows[-1]
    assert per_window[opening] == 1, "the opening page of the whole range, dropped when it is cut"
    for window in windows:
        assert per_window[window] == pages(served(window), size(stream)), window
    return 1 + sum(pages(served(window), size(stream)) for window in windows)


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
        case "email_templates" | "lists" | "segments" | "tags" | "coupons" | "metrics" | "profiles":
            resource = {"email_templates": "templates"}.get(stream, stream)
            return pages(len(emu.truth(resource)), size(stream))
        case "global_exclusions":
            return pages(sum(1 for row in emu.truth("profiles") if row["suppressed"]), size(stream))
        case "events" | "events_detailed":
            return windowed_requests(emu, stream, now, queries)
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
            members = Counter(row[key] for row in emu.truth(resource))
            return pages(len(parents), size(parent_stream)) + chains(
                members, [row["id"] for row in parents], stream
            )
        case "campaign_values_reports":
            return 3 * len(placed_order(emu)) + 1  # 3 days x metrics, + the metrics page
        case "flow_series_reports":
            return 1 * len(placed_order(emu)) + 1  # one 60-day window x metrics, + the metrics page
    raise AssertionError(f"no expectation for {stream}")


@pytest.mark.parametrize("stream", [stream.name for stream in STREAMS])
def test_requests_are_the_pages_not_the_records(fresh_emulator, stream):
    now = utc_now()
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
