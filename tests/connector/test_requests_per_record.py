"""No request goes out per record: reading any stream costs its pages, counted in the emulator's stats.

Each stream is read alone from a fresh emulator; the requests the emulator saw must equal the pages
its declaration implies, computed here from the emulator's ground truth by the declaration's features
(never its name, so a new declaration needs no edit here):

- a chain of pages costs `max(1, ceil(records / page size))`: the declared `page[size]`, else the
  endpoint's own page (`klaviyo_emulator.endpoints`); an endpoint without pages answers in one;
- one chain per partition, or per record of the parent stream (`Parent`), whose ids cost the parent's
  own pages first (recursively); the truth says which chain reads a row (`tests/truth.py`);
- a `Detail` adds one request per record, the only per-record requests besides the parent fan-out;
- a `Report` costs one request per window of `days_per_request` days (from where its declaration
  starts a first read) and conversion metric, plus the conversion metrics stream's pages that find the
  "Placed Order" metrics (`tests/connector/test_reports.py` derives both).

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

from klaviyo_emulator.endpoints import BY_ROUTE
from source_klaviyo.datetimes import format_datetime, parse_datetime, utc_now
from source_klaviyo.http import KlaviyoClient
from source_klaviyo.streams import CONVERSION_METRICS_STREAM, STREAMS, STREAMS_BY_NAME, Stream
from tests.connector.helpers import read_in_process
from tests.connector.test_reports import (
    DAY,
    first_read_start,
    metrics_of,
    placed_order,
    today,
    windows_between,
)
from tests.truth import TRUTHS, ChainKey, chain_key, chain_keys

REPORT_DAYS = 3  # how far back a report stream's read starts: a few windows, quick at 1 request/s


def records_per_page(stream: Stream) -> int | None:
    """How many records a page of the stream's chain holds in the emulator: the declared page[size],
    else the endpoint's default or fixed page; None where the endpoint answers in one page."""
    endpoint = BY_ROUTE[stream.path]
    default = endpoint.page_size[0] if endpoint.page_size else endpoint.server_page
    return stream.page_size or default


def pages(count: int, size: int | None) -> int:
    """The pages of one chain of `count` records: an empty chain costs its one request too."""
    return 1 if size is None else max(1, math.ceil(count / size))


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


def split_requests(declared: Stream, queries: list[dict[str, str]], stamps: dict[str, list[datetime]]) -> int:
    """The requests of a stream read in chains cut while they run, from the chains' own filters and
    the truth (`stamps`: the records' range attribute, per parent path)."""
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


def chain_requests(emu, stream: Stream) -> int:
    """The requests of reading every record of `stream` in chains that are not cut into ranges: each
    chain's pages, after the reads of the parent's ids."""
    rows = TRUTHS[stream.name].paged_rows(emu)
    records = Counter(chain_key(stream, row) for row in rows)
    keys = chain_keys(stream, emu)
    assert set(records) <= set(keys), "every row is read by some chain"
    size = records_per_page(stream)
    return parent_requests(emu, stream) + sum(pages(records[key], size) for key in keys)


def parent_requests(emu, stream: Stream) -> int:
    """What finding the parent's ids costs: reading the parent stream's pages (and its own parent's)."""
    return 0 if stream.parent is None else chain_requests(emu, STREAMS_BY_NAME[stream.parent.stream])


def chain_path(stream: Stream, key: ChainKey) -> str:
    return stream.path.format(id=key[0]) if stream.parent is not None else stream.path


def cut_chain_requests(emu, stream: Stream, queries: list[dict[str, str]]) -> int:
    """The requests of a stream read in chains cut by `split_by`, per parent (see `split_requests`)."""
    assert stream.split_by is not None
    assert not stream.partitions, "split_requests tells chains apart by path: teach it partitions' filters"
    stamps: dict[str, list[datetime]] = {chain_path(stream, key): [] for key in chain_keys(stream, emu)}
    for row in TRUTHS[stream.name].paged_rows(emu):
        stamps[chain_path(stream, chain_key(stream, row))].append(parse_datetime(row[stream.split_by]))
    return parent_requests(emu, stream) + split_requests(stream, queries, stamps)


def report_requests(emu, stream: Stream, start_date: datetime) -> int:
    """One request per window and conversion metric, plus finding the "Placed Order" metrics."""
    report = stream.report
    assert report is not None
    windows = windows_between(stream.name, first_read_start(stream.name, start_date, today()), today())
    lookup = chain_requests(emu, STREAMS_BY_NAME[CONVERSION_METRICS_STREAM]) if report.conversion_metric \
        else 0
    return windows * len(metrics_of(stream.name, placed_order(emu))) + lookup


def expected_requests(emu, stream: Stream, queries: list[dict[str, str]], start_date: datetime | None) -> int:
    if stream.report is not None:
        assert start_date is not None
        return report_requests(emu, stream, start_date)
    reads = cut_chain_requests(emu, stream, queries) if stream.split_by else chain_requests(emu, stream)
    details = len(TRUTHS[stream.name].rows(emu)) if stream.detail is not None else 0
    return reads + details


@pytest.mark.parametrize("stream", STREAMS, ids=lambda stream: stream.name)
def test_requests_are_the_pages_not_the_records(fresh_emulator, stream):
    now = utc_now()  # a fixed clock for the read: every record the truth has is read
    start_date = today() - REPORT_DAYS * DAY if stream.report else None
    extra = {"start_date": format_datetime(start_date)} if start_date else {}
    fresh_emulator.reset_stats()
    client_class, queries = recording_client()
    sink, result = read_in_process(fresh_emulator.url, [stream.name], sync_mode="full_refresh",
                                   clock=lambda: now, client_class=client_class, **extra)
    assert result.ok, sink.errors
    records = len(sink.by_stream.get(stream.name, []))
    stats = fresh_emulator.stats()
    expected = expected_requests(fresh_emulator, stream, queries, start_date)
    assert stats["requests_total"] == expected, (records, stats["requests"])
    assert all(set(statuses) == {"200"} for statuses in stats["requests"].values()), stats["requests"]
