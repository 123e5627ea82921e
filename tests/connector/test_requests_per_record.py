"""No request goes out per record: reading any stream costs its pages, counted in the emulator's stats.

Each stream is read alone from a fresh emulator; the requests the emulator saw must equal the pages
the declaration implies — `max(1, ceil(records / page size))` per request chain (partition, window or
parent), plus the parent stream's own pages — computed here from the emulator's ground truth. The
only per-record requests are the declared fan-outs: a `Parent` child's one chain per parent record,
and lists_detailed's one `profile_count` request per list (`Detail`; the API has no bulk way).
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta

import pytest

from source_klaviyo.config import Config
from source_klaviyo.datetimes import format_datetime, parse_datetime, utc_now
from source_klaviyo.engine import PAGES_PER_WINDOW, UPPER_MARGIN, WINDOWS_PER_REQUEST_SLOT, _window_length
from source_klaviyo.streams import STREAMS, STREAMS_BY_NAME, TIERS
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


def expected_requests(emu, stream: str, now) -> int:
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
            # A full refresh: one chain over everything, unless its first page shows more pages than
            # one window takes, then windows (the declared 30 days at the longest), a chain each.
            upper = now.replace(microsecond=0) - UPPER_MARGIN
            stamps = sorted(parse_datetime(row["datetime"]) for row in emu.truth("events"))
            start, page = stamps[0].replace(microsecond=0), size(stream)
            window = timedelta(days=30)
            if len(stamps) > page:
                estimated = (upper - start) / max(stamps[page - 1] - start, timedelta(seconds=1))
                slots = min(Config.num_workers, TIERS[STREAMS_BY_NAME[stream].tier].burst_per_second)
                wanted = min(math.ceil(estimated / PAGES_PER_WINDOW), WINDOWS_PER_REQUEST_SLOT * slots)
                window = _window_length(window, upper - start, wanted)
            edges = [start]
            while edges[-1] + window < upper:
                edges.append(edges[-1] + window)
            counts = [sum(1 for s in stamps if low <= s and (high is None or s < high))
                      for low, high in zip(edges, [*edges[1:], None], strict=True)]
            if len(counts) == 1:
                return pages(counts[0], page)  # the first page began the one chain
            return 1 + sum(pages(n, page) for n in counts)  # 1: the first page, dropped when cut
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
    sink, result = read_in_process(fresh_emulator.url, [stream], sync_mode="full_refresh", clock=lambda: now,
                                   **extra)
    assert result.ok, sink.errors
    records = len(sink.by_stream.get(stream, []))
    stats = fresh_emulator.stats()
    assert stats["requests_total"] == expected_requests(fresh_emulator, stream, now), (
        records,
        stats["requests"],
    )
    assert all(set(statuses) == {"200"} for statuses in stats["requests"].values()), stats["requests"]
