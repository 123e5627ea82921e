"""The read engine: interprets the stream table (`streams.py`) with one `KlaviyoClient` per run.

In-process API (stable; the DuckDB `sync` and the tests build on it)::

    class Sink(Protocol):
        def records(self, stream: str, records: list[dict]) -> None           # in emission order
        def state(self, stream: str, stream_state: dict, record_count: int) -> None
            # every record the state covers was passed to records() before
        def stream_status(self, stream: str, status: str) -> None  # STARTED|RUNNING|COMPLETE|INCOMPLETE
        def error(self, stream: str | None, error: SourceError) -> None
        def log(self, level: str, message: str) -> None

    reader = Reader(config, configured, state, sink, client=None)
    reader.progress            # dict[str, StreamProgress], live while running (poll it)
    result = await reader.run()  # ReadResult(statuses, progress, errors, client_stats)

    result = await read_streams(config, configured, state, sink, client=None)  # the same, in one call

`state` maps a stream name to its 3.0.0 stream state (already migrated). `client` is any object with
the `Client` API (`contracts.py`); when None the engine opens its own `KlaviyoClient`.

Incremental semantics — one rule everywhere: a saved cursor `S` means every record whose cursor is
`< S` was emitted, except in the `gaps` the state lists (ranges below `S` never read: a read cut
short while its later ranges were done, or a 2.x concurrent state with holes). A read covers the
gaps and `[start, upper)` where `start = max(S - lookback, start_date)` and `upper = now -
UPPER_MARGIN` (never past now: records stamped later, e.g. in the future, are left for a later
sync). The lower bound is inclusive: `greater-or-equal(S)`, or `greater-than(S - 1 s)` plus a
client-side `>= S` check where the endpoint has only `greater-than`; the upper bound is
`less-than(upper)` server-side where supported, else checked here. Ranges are half-open and
disjoint, so a read never emits a record twice; a read that resumes from a mid-range position `S`
may re-emit the records stamped exactly `S` (at-least-once; the destination de-duplicates by
primary key). After a complete read the state is `upper`, so the next read returns exactly the
records changed since.

Chains (`ranges.py`): each range is read by a chain of pages sorted by its attribute, one request in
flight per chain. A bucket runs as many chains as its rate and measured round trip call for
(`Reader.room`); a stream whose endpoint sorts and filters an attribute on both sides (`split_by`:
events, profiles, memberships) cuts its running ranges when it has room for more chains than it has
ranges, from the first page's density at the start to the last pages of a backfill, so the whole
read runs at the pace the rate limit allows.

Checkpoints: sorted streams emit a state at least every `CHECKPOINT_EVERY_PAGES` pages and whenever a
chain ends; unsorted streams (`assume_sorted=False`) only when a whole partition is done;
partitioned streams keep one cursor per partition (`{"states": [{"partition", "cursor"}]}`).

Errors: a failing stream gets a TRACE ERROR and INCOMPLETE, keeps its last emitted state, and the
others go on; a 401 stops the whole read with one config_error.

Heartbeat: a read that has passed nothing to the sink for `heartbeat_seconds` (waiting out a rate
limit or a long Retry-After, or paging slowly) sends a RUNNING stream status for every stream still
in progress, so the platform (`maxSecondsBetweenMessages`) never sees a silent connector. The default
is `HEARTBEAT_SECONDS`; the environment variable `SOURCE_KLAVIYO_HEARTBEAT_SECONDS` overrides it
(tests use a fraction of a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import os
import time
import traceback
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

import msgspec

from . import json_codec
from .allocator import keep_large_buffers
from .catalog import ConfiguredStream
from .contracts import JSON, Client, JSONObject, Record, StreamState
from .datetimes import ONE_SECOND, floor_second, format_datetime, parse_datetime, utc_now
from .errors import ApiError, SourceError
from .hooks import HOOKS
from .ranges import GAPS, NO_LOWER_BOUND, Range, Span, Spans, plan_cuts, to_read
from .streams import STREAMS_BY_NAME, TIERS, Stream

if TYPE_CHECKING:
    from .config import Config
    from .http import HttpStats

UPPER_MARGIN = timedelta(seconds=5)
CHECKPOINT_EVERY_PAGES = 10
PROBE_RECORDS = 100  # the first page of a splittable range nothing is known of (see _probe_size)
GC_THRESHOLD = 50_000  # gen-0 allocations between collections while reading (default 700)
HEARTBEAT_SECONDS = 30.0  # the longest silence of a read; Airbyte's maxSecondsBetweenMessages is 600
HEARTBEAT_ENV = "SOURCE_KLAVIYO_HEARTBEAT_SECONDS"

Partition = dict[str, str]
# A record on the raw path: its JSON object (lifted cursor spliced in) and the cursor's JSON text.
RawRecord = tuple[bytes, bytes | msgspec.Raw]
# A record of a page: a `Record` (parsed path) or a `RawRecord` (raw path). Which one is fixed per
# stream by its parser and checked once per page in `Reader.pages`; a union would need a check or a
# cast per record on the hot path, hence Any.
AnyRecord = Any
# One page of a chain: its records and the whole parsed page (`links`, `included`).
Page = tuple[list[AnyRecord], JSONObject]


class Sink(Protocol):
    def records(self, stream: str, records: list[Record]) -> None: ...
    def state(self, stream: str, stream_state: StreamState, record_count: int) -> None: ...
    def stream_status(self, stream: str, status: str) -> None: ...
    def error(self, stream: str | None, error: SourceError) -> None: ...
    def log(self, level: str, message: str) -> None: ...
    # Optional: a sink with `raw_records(stream, list[bytes])` gets each record of a stream without
    # hooks as its JSON object (the bytes Klaviyo sent, lifted cursor spliced in), never parsed.


@dataclass
class StreamProgress:
    """Live counters of one stream, for a progress display to poll."""

    records: int = 0
    pages: int = 0
    partitions_done: int = 0
    partitions_total: int = 0
    windows_done: int = 0
    windows_total: int = 0
    status: str = "PENDING"


@dataclass
class ReadResult:
    statuses: dict[str, str]
    progress: dict[str, StreamProgress]
    errors: list[tuple[str | None, SourceError]] = field(default_factory=list)
    client_stats: HttpStats | None = None

    @property
    def ok(self) -> bool:
        return all(status == "COMPLETE" for status in self.statuses.values())


def heartbeat_seconds_from_env() -> float:
    """`SOURCE_KLAVIYO_HEARTBEAT_SECONDS` when it is a positive number, else `HEARTBEAT_SECONDS`."""
    try:
        seconds = float(os.environ.get(HEARTBEAT_ENV, HEARTBEAT_SECONDS))
    except ValueError:
        return HEARTBEAT_SECONDS
    return seconds if seconds > 0 else HEARTBEAT_SECONDS


class _Stamped:
    """The sink, noting when it last passed anything on (what the heartbeat measures silence by)."""

    def __init__(self, sink: Sink) -> None:
        self.inner = sink
        self.last = time.monotonic()

    def records(self, stream: str, records: list[Record]) -> None:
        self.last = time.monotonic()
        self.inner.records(stream, records)

    def raw_records(self, stream: str, records: list[bytes]) -> None:
        self.last = time.monotonic()
        self.inner.raw_records(stream, records)  # type: ignore[attr-defined]

    def state(self, stream: str, stream_state: StreamState, record_count: int) -> None:
        self.last = time.monotonic()
        self.inner.state(stream, stream_state, record_count)

    def stream_status(self, stream: str, status: str) -> None:
        self.last = time.monotonic()
        self.inner.stream_status(stream, status)

    def error(self, stream: str | None, error: SourceError) -> None:
        self.last = time.monotonic()
        self.inner.error(stream, error)

    def log(self, level: str, message: str) -> None:
        self.last = time.monotonic()
        self.inner.log(level, message)


class _Unauthorized(Exception):
    def __init__(self, error: SourceError) -> None:
        self.error = error


# -- page parsing: the hot path ----------------------------------------------------------------------
def parse_page(body: bytes) -> JSONObject:
    """A JSON:API page as Python objects (integers of any width kept exact, see `json_codec`)."""
    try:
        page = json_codec.loads(body)
    except json_codec.DecodeError as exc:
        raise SourceError("Klaviyo returned a page that is not valid JSON", str(exc)) from None
    if not isinstance(page, dict):
        raise SourceError("Klaviyo returned a page that is not a JSON object")
    return page


class _RawLinks(msgspec.Struct):
    next: JSON = None


class _RawPage(msgspec.Struct):
    data: list[msgspec.Raw]
    links: _RawLinks | None = None


_RAW_PAGE = msgspec.json.Decoder(_RawPage)
_NULL = msgspec.Raw(b"null")


class _Resource(Protocol):
    """What `raw_page_parser` decodes of a record (its Struct type is built at run time)."""

    id: str
    attributes: object | None


@functools.cache
def raw_page_parser(lifted: str | None) -> Callable[[bytes], JSONObject]:
    """A parser for streams whose records are passed on unparsed (`Sink.raw_records`): the page is
    split into its records' raw JSON and only `id` and the lifted cursor of each are decoded, so
    integers beyond 64 bits and every string pass through byte for byte. `data` holds `RawRecord`s:
    `{"<lifted>":<cursor>,` spliced before the record's own keys. A page msgspec will not take
    (a record without a string id, a lone surrogate, …) goes through `parse_page` and is re-encoded,
    so odd answers fail or pass exactly as on the parsed path. The bytes are not re-validated as
    UTF-8 (that alone would cost ~1.5 µs per 1 KB event)."""
    attributes = msgspec.defstruct("Attributes", [(lifted, msgspec.Raw, _NULL)] if lifted else [])
    record = msgspec.defstruct("Resource", [("id", str), ("attributes", attributes | None, None)])
    decoder = msgspec.json.Decoder(record)
    decode_record = cast("Callable[[msgspec.Raw], _Resource]", decoder.decode)
    head = json_codec.dumps(lifted)[:-1] + b'":' if lifted else b""

    def parse(body: bytes) -> JSONObject:
        try:
            page = _RAW_PAGE.decode(body)
            data: list[RawRecord] = []
            append = data.append
            for raw in page.data:
                if lifted:
                    found = decode_record(raw).attributes
                    cursor: msgspec.Raw = _NULL if found is None else getattr(found, lifted)
                    append((b"".join((b"{", head, cursor, b",", memoryview(raw)[1:])), cursor))
                else:
                    decode_record(raw)
                    append((bytes(raw), b"null"))
        except (msgspec.DecodeError, RecursionError):
            return _reencoded(parse_page(body), lifted)
        links = page.links
        return {"data": data, "links": None if links is None else {"next": links.next}}

    return parse


def _reencoded(page: JSONObject, lifted: str | None) -> JSONObject:
    data = page.get("data") if isinstance(page, dict) else None
    if not isinstance(data, list):
        return page
    records: list[JSON] = []
    for record in data:
        if type(record) is not dict:
            records.append(record)  # refused by `Reader.pages`, as on the parsed path
            continue
        if lifted:
            attributes = record.get("attributes")
            record[lifted] = attributes.get(lifted) if isinstance(attributes, dict) else None
        records.append((json_codec.dumps(record), json_codec.dumps(record.get(lifted))))
    page["data"] = records
    return page


def _raw_cursor(text: bytes | msgspec.Raw) -> JSON:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None


def _cursor_value(value: object) -> datetime | None:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None


# -- request building --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chain:
    """One chain of pages: a first request, then `links.next` until there is none."""

    path: str
    params: list[tuple[str, str]]
    bucket: str
    tier: str
    partition: Partition = field(default_factory=dict)
    parent_id: str | None = None
    lower: datetime | None = None  # checked here (inclusive) when the server cannot
    upper: datetime | None = None  # checked here (exclusive) when the server cannot


def partitions_of(stream: Stream) -> list[Partition]:
    axes = stream.partitions
    return [dict(zip((a.key for a in axes), values, strict=True))
            for values in itertools.product(*(a.values for a in axes))]


def _tier_and_fields(stream: Stream, config: Config) -> tuple[str, tuple[str, ...]]:
    fields, tier = stream.additional_fields, stream.tier
    if stream.reduced_tier is not None:
        extra, reduced, flag = stream.reduced_tier
        if getattr(config, flag, False):
            fields = tuple(f for f in fields if f != extra)
        elif extra in fields:
            tier = reduced
    return tier, fields


def build_chain(stream: Stream, config: Config, *, partition: Partition | None = None,
                lower: datetime | None = None, upper: datetime | None = None,
                path: str | None = None, parent_id: str | None = None, page_size: int | None = None,
                ) -> Chain:
    """The first request of a chain, from the declaration; bounds are `[lower, upper)`."""
    partition = partition or {}
    filters = [stream.filter] if stream.filter else []
    for axis in stream.partitions:
        filters.append(axis.filter.format(value=partition[axis.key]))
    check_lower = check_upper = None
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
            else:
                if inc.server_side_filter and inc.lower_operator == "greater-than":
                    filters.append(f"greater-than({cursor},{format_datetime(lower - ONE_SECOND)})")
                check_lower = lower
        if upper is not None:
            if inc.server_side_filter and inc.supports_less_than_filter:
                filters.append(f"less-than({cursor},{format_datetime(upper)})")
            else:
                check_upper = upper
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
    tier, additional = _tier_and_fields(stream, config)
    if additional:
        params.append((f"additional-fields[{stream.resource_type}]", ",".join(additional)))
    return Chain(path or stream.path, params, bucket_of(stream, config), tier, partition, parent_id,
                 check_lower, check_upper)


def bucket_of(stream: Stream, config: Config) -> str:
    """The rate-limit bucket of a stream's requests: Klaviyo counts per endpoint, and an endpoint
    whose additional field moves it to another tier is counted apart."""
    tier, additional = _tier_and_fields(stream, config)
    template = stream.parent.path if stream.parent else stream.path
    return template + ("?" + ",".join(additional) if tier != stream.tier else "")


# -- the reader ----------------------------------------------------------------------------------------
class Reader:
    """One read of the configured streams; see the module docstring."""

    def __init__(
        self,
        config: Config,
        configured: list[ConfiguredStream],
        state: dict[str, StreamState] | None,
        sink: Sink,
        *,
        client: Client | None = None,
        clock: Callable[[], datetime] = utc_now,
        heartbeat_seconds: float | None = None,
    ) -> None:
        self.config = config
        self.configured = configured
        self.state = state or {}
        self.sink = _Stamped(sink)
        self.heartbeat_seconds = heartbeat_seconds or heartbeat_seconds_from_env()
        self.client: Client | None = client  # set by run() when None
        self.clock = clock
        self.progress: dict[str, StreamProgress] = {cs.name: StreamProgress() for cs in configured}
        self.errors: list[tuple[str | None, SourceError]] = []
        self._chains: dict[str, int] = {}  # chains of pages running, per rate-limit bucket
        self._watchers: dict[str, set[asyncio.Event]] = {}  # schedulers waiting for room in a bucket

    async def run(self) -> ReadResult:
        # Parsed pages are acyclic and freed by reference counting, but with the default gen-0
        # threshold (700) the collector traverses each page while the decoder builds it (~30,000
        # containers per 1,000 events): ~4 µs of CPU per record. Restored when the read ends.
        threshold = gc.get_threshold()
        gc.set_threshold(GC_THRESHOLD, *threshold[1:])
        keep_large_buffers()
        try:
            if self.client is None:
                from .http import KlaviyoClient  # late: protocol commands never need aiohttp

                async with KlaviyoClient(self.config) as client:
                    self.client = client
                    return await self._run_all()
            return await self._run_all()
        finally:
            gc.set_threshold(*threshold)

    async def _run_all(self) -> ReadResult:
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            async with asyncio.TaskGroup() as group:
                for cs in self.configured:
                    group.create_task(self._run_stream(cs))
        except* _Unauthorized as failures:
            error = failures.exceptions[0].error  # type: ignore[union-attr]  # a task's leaf, never a group
            self.errors.append((None, error))
            self.sink.error(None, error)
            for name, progress in self.progress.items():
                if progress.status not in ("COMPLETE", "INCOMPLETE"):
                    self._status(name, "INCOMPLETE")
        finally:
            heartbeat.cancel()
        statuses = {name: p.status for name, p in self.progress.items()}
        return ReadResult(statuses, self.progress, self.errors, getattr(self.client, "stats", None))

    async def _heartbeat(self) -> None:
        while True:
            silent = time.monotonic() - self.sink.last
            if silent >= self.heartbeat_seconds:
                for name, progress in self.progress.items():
                    if progress.status in ("STARTED", "RUNNING"):
                        self.sink.stream_status(name, "RUNNING")
                silent = 0.0
            await asyncio.sleep(self.heartbeat_seconds - silent)

    def _status(self, stream: str, status: str) -> None:
        self.progress[stream].status = status
        self.sink.stream_status(stream, status)

    async def _run_stream(self, cs: ConfiguredStream) -> None:
        self._status(cs.name, "STARTED")
        try:
            await _StreamRead(self, cs).run()
        except asyncio.CancelledError:
            raise
        except ApiError as exc:
            if exc.status == 401:
                raise _Unauthorized(exc) from None
            self._fail(cs.name, exc)
        except SourceError as exc:
            self._fail(cs.name, exc)
        except Exception as exc:  # a bug: report it on this stream, keep the others going
            error = SourceError(f"Stream {cs.name} failed unexpectedly: {type(exc).__name__}",
                                "".join(traceback.format_exception(exc)))
            error.__traceback__ = exc.__traceback__
            self._fail(cs.name, error)
        else:
            self._status(cs.name, "COMPLETE")

    def _fail(self, stream: str, error: SourceError) -> None:
        self.errors.append((stream, error))
        self.sink.error(stream, error)
        self._status(stream, "INCOMPLETE")

    # -- HTTP ----------------------------------------------------------------------------------------
    async def get(self, url: str, params: list[tuple[str, str]] | None, bucket: str, tier: str,
                  parse: Callable[[bytes], JSONObject] = parse_page) -> JSONObject:
        """The parsed page; parsing happens inside the client's retries, so a 200 whose JSON was cut
        short is fetched again instead of failing the stream."""
        client = self.client
        assert client is not None, "run() opens the client before any request"
        return await client.get(url, params, bucket=bucket, tier=tier, parse=parse)

    # -- chains per bucket -----------------------------------------------------------------------------
    def room(self, bucket: str, tier: str) -> int:
        """How many more chains of pages `bucket` may run now: one request in flight each, up to what
        its rate and round trip call for (`KlaviyoClient.in_flight_limit`)."""
        client = self.client
        assert client is not None, "run() opens the client before any request"
        return client.in_flight_limit(bucket, tier) - self._chains.get(bucket, 0)

    def idle(self, bucket: str, tier: str) -> bool:
        """No request of `bucket` waits for its turn at the rate limit: its pace is not all used."""
        client = self.client
        assert client is not None, "run() opens the client before any request"
        return client.queued(bucket, tier) == 0

    def chain_started(self, bucket: str) -> None:
        self._chains[bucket] = self._chains.get(bucket, 0) + 1

    def chain_ended(self, bucket: str) -> None:
        self._chains[bucket] -= 1
        self.wake(bucket)

    def watch(self, bucket: str, event: asyncio.Event) -> None:
        self._watchers.setdefault(bucket, set()).add(event)

    def unwatch(self, bucket: str, event: asyncio.Event) -> None:
        self._watchers.get(bucket, set()).discard(event)

    def wake(self, bucket: str) -> None:
        """Something changed for `bucket` (a page or a chain ended): its schedulers look for room."""
        for event in self._watchers.get(bucket, ()):
            event.set()

    async def pages(self, chain: Chain, parse: Callable[[bytes], JSONObject] = parse_page,
                    ) -> AsyncGenerator[Page, None]:
        """Every page of a chain; refuses a `links.next` it has already followed (a server loop).
        Records are dicts, or `RawRecord`s with a `raw_page_parser`."""
        url: str | None = chain.path
        params: list[tuple[str, str]] | None = chain.params
        seen: set[str] = set()
        kind: type = dict if parse is parse_page else tuple
        while url is not None:
            page = await self.get(url, params, chain.bucket, chain.tier, parse)
            data = page.get("data")
            if not isinstance(data, list) or not all(type(record) is kind for record in data):
                raise SourceError(f"Klaviyo answered {chain.path} without a data list of resource objects")
            yield data, page
            links = page.get("links")
            next_url = links.get("next") if isinstance(links, dict) else None
            if next_url is not None:
                if not isinstance(next_url, str):
                    raise SourceError(f"Klaviyo answered {chain.path} with a links.next that is not a URL")
                if next_url in seen:
                    raise SourceError(f"Klaviyo returned the same next page twice for {chain.path}",
                                      "pagination loop detected; refusing to follow it again")
                seen.add(next_url)
            url, params = next_url, None
            del page, data, links  # not held while the next page is fetched: 4 MB per events page


@dataclass(eq=False)
class _Unit:
    """A partition of a stream's read, or one parent's children, with the spans of its range."""

    partition: Partition
    spans: Spans
    parent_id: str | None = None
    path: str | None = None  # the children's path, for a parent's unit


class _StreamRead:
    """The read of one configured stream."""

    def __init__(self, reader: Reader, cs: ConfiguredStream) -> None:
        self.r = reader
        self.cs = cs
        self.stream = stream = cs.stream
        self.name = cs.name
        self.progress = reader.progress[cs.name]
        self.hook = HOOKS[stream.hook] if stream.hook else None
        self.since_state = 0
        self.running = False
        self.incremental = cs.incremental and stream.incremental is not None
        self.units: list[_Unit] = []
        self.ready: deque[_Unit] = deque()  # units that may have spans without a chain, in order
        self.last_state: StreamState | None = None
        self.bucket = bucket_of(stream, reader.config)
        self.tier = _tier_and_fields(stream, reader.config)[0]
        inc = stream.incremental
        # Pages sorted by the range's attribute: a page ending at `c` proves everything before `c`
        # was read, and a chain may be split past it.
        self.sorted_pages = stream.split_by is not None or bool(inc and inc.sortable and inc.assume_sorted)
        self.range_field = stream.split_by or (inc.cursor if inc else None)
        self.splittable = stream.split_by is not None
        # A cut leaves at least half a page each side: the last pieces of a backfill are read a page
        # per round trip, so a chain left with two pages keeps the read waiting two round trips.
        self.min_split = max(1, (stream.page_size or 1) // 2)
        # Records passed on unparsed when nothing here needs more of them than id and cursor.
        self.raw = (hasattr(reader.sink.inner, "raw_records") and stream.hook is None
                    and stream.detail is None and stream.parent is None and stream.report is None)
        self.parse = raw_page_parser(stream.lifted) if self.raw else parse_page

    async def run(self) -> None:
        if self.stream.report is not None:
            from .reports import read_report  # late: reports.py builds on this module

            await read_report(self)
            return
        upper = floor_second(self.r.clock()) - UPPER_MARGIN
        wake = asyncio.Event()
        if self.stream.parent is None:
            for partition in partitions_of(self.stream):
                self._add(_Unit(partition, Spans(self._ranges(partition, upper), upper)))
            await self._schedule(wake)
        else:
            # Children start as their parents' ids arrive, not once every parent page has been read.
            await self._schedule(wake, self._add_children(upper, wake))
        if self.incremental:
            self._emit_state(force=True)

    def _add(self, unit: _Unit) -> None:
        self.units.append(unit)
        self.ready.append(unit)
        self.progress.partitions_total += 1
        self.progress.partitions_done += unit.spans.finished
        self.progress.windows_total += len(unit.spans.spans)

    async def _add_children(self, upper: datetime, wake: asyncio.Event) -> None:
        parent = self.stream.parent
        assert parent is not None
        async for pid in _ids_of(self.r, STREAMS_BY_NAME[parent.stream]):
            self._add(_Unit({}, Spans([(NO_LOWER_BOUND, upper)], upper), pid, parent.path.format(id=pid)))
            wake.set()

    # -- emission ------------------------------------------------------------------------------------
    def _emit(self, records: list[AnyRecord]) -> None:
        self.progress.pages += 1
        if not records:
            return
        if not self.running:
            self.running = True
            self.r._status(self.name, "RUNNING")
        if self.raw:
            self.r.sink.raw_records(self.name, [record for record, _cursor in records])
        else:
            self.r.sink.records(self.name, records)
        self.progress.records += len(records)
        self.since_state += len(records)

    def _state_value(self) -> StreamState | None:
        inc = self.stream.incremental
        assert inc is not None, "only incremental streams keep state"
        entries = [(unit.partition, _cursor_state(inc.cursor, unit.spans)) for unit in self.units]
        if not self.stream.partitions:
            return entries[0][1] if entries else None
        states: list[JSONObject] = []
        for partition, entry in entries:
            if entry is not None:
                gaps = entry.pop(GAPS, None)
                states.append({"partition": partition, "cursor": entry, **({GAPS: gaps} if gaps else {})})
        return {"states": states} if states else None

    def _emit_state(self, force: bool = False) -> None:
        value = self._state_value()
        if value is None or (value == self.last_state and not force):
            return
        self.r.sink.state(self.name, value, self.since_state)
        self.last_state = value
        self.since_state = 0

    # -- incremental bounds ------------------------------------------------------------------------
    def _saved(self, partition: Partition) -> tuple[datetime | None, list[Range]]:
        """The saved cursor of `partition` and the gaps below it that were never read."""
        saved = self.r.state.get(self.name) or {}
        inc = self.stream.incremental
        if inc is None:
            return None, []
        entry: JSONObject = saved
        value = saved.get(inc.cursor)
        if self.stream.partitions:
            entries = [s for s in saved.get("states") or () if s.get("partition") == partition]
            entry = entries[0] if entries else {}
            value = (entry.get("cursor") or {}).get(inc.cursor)
        gaps = [(parse_datetime(gap["start"]), parse_datetime(gap["end"])) for gap in entry.get(GAPS) or ()]
        try:
            return (parse_datetime(value) if value is not None else None), gaps
        except ValueError:
            return None, gaps

    def _ranges(self, partition: Partition, upper: datetime) -> list[Range]:
        """What the read of `partition` covers: from the state (its gaps, then `[cursor - lookback,
        upper)`), else from `start_date`, else from the first record."""
        inc = self.stream.incremental
        start_date = self.r.config.start_date if inc is not None else None
        cursor, gaps = self._saved(partition) if self.incremental else (None, [])
        lookback = timedelta(0)
        if inc is not None:
            lookback = inc.lookback + (timedelta(days=self.r.config.lookback_window_days)
                                       if inc.config_lookback else timedelta(0))
        return to_read(cursor, gaps, start_date=start_date, lookback=lookback, upper=upper)

    # -- chains: started while the bucket has room, split to keep it busy --------------------------------
    async def _schedule(self, wake: asyncio.Event,
                        producer: Coroutine[None, None, None] | None = None) -> None:
        """Read every unit's spans: a chain of pages per span, as many at once as the bucket has room
        for; when the spans run out while there is room, the running spans with the most left are
        cut (`plan_cuts`), so the last of a read runs as fast as the rest. `producer` adds units as it
        finds them (a parent's ids). The first error wins."""
        running: set[asyncio.Task[None]] = set()
        if producer is not None:
            feeding = asyncio.create_task(producer)
            feeding.add_done_callback(lambda _task: wake.set())
            running.add(feeding)
        self.r.watch(self.bucket, wake)
        try:
            while True:
                for task in [task for task in running if task.done()]:
                    running.discard(task)
                    task.result()  # a chain's error ends the stream
                room = self.r.room(self.bucket, self.tier)
                while room > 0 and self.ready:
                    span = self.ready[0].spans.take()
                    if span is None:
                        self.ready.popleft()
                        continue
                    running.add(self._start(self.ready[0], span, wake))
                    room -= 1
                # Cut only while the rate limit has turns to spare: a chain more than that would only
                # queue for a turn, and every cut ends in one more part-full page.
                if room > 0 and self.splittable and not self.ready and self.r.idle(self.bucket, self.tier):
                    for cut_unit, span, edges in _cuts(self.units, room, self.min_split):
                        for part in cut_unit.spans.split(span, edges):
                            part.running = True
                            running.add(self._start(cut_unit, part, wake))
                            self.progress.windows_total += 1
                if not running and not self.ready:
                    return
                wake.clear()  # a page of this bucket or the end of a chain, ours or another stream's
                await wake.wait()
        finally:
            self.r.unwatch(self.bucket, wake)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def _start(self, unit: _Unit, span: Span, wake: asyncio.Event) -> asyncio.Task[None]:
        self.r.chain_started(self.bucket)
        task = asyncio.create_task(self._read_span(unit, span))
        task.add_done_callback(lambda _task: wake.set())
        return task

    def _high(self, unit: _Unit, span: Span) -> datetime | None:
        """The span's upper bound; None for the last span of a full refresh, which is read open-ended
        (records stamped in the future too): there is no state to keep consistent."""
        return None if not self.incremental and span.high >= unit.spans.upper else span.high

    def _chain(self, unit: _Unit, span: Span, page_size: int | None = None) -> Chain:
        lower = None if span.low == NO_LOWER_BOUND else span.low
        return build_chain(self.stream, self.r.config, partition=unit.partition, lower=lower,
                           upper=self._high(unit, span), path=unit.path, parent_id=unit.parent_id,
                           page_size=page_size)

    def _probe_size(self, unit: _Unit) -> int | None:
        """A smaller first page for the first chain of a splittable range nothing is known of yet: it
        answers sooner (the first request of a bucket goes alone) and tells the density to cut by."""
        size = self.stream.page_size
        if not self.splittable or size is None or size <= PROBE_RECORDS:
            return None
        spans = unit.spans.spans
        first_chain = sum(span.running for span in spans) == 1 and not any(span.records for span in spans)
        return PROBE_RECORDS if first_chain else None

    async def _read_span(self, unit: _Unit, span: Span) -> None:
        """One span's chain of pages. When the span is split while it runs, records at or past its
        new high are dropped (the new span reads them) and the chain stops at the first page past it."""
        probe = self._probe_size(unit)
        chain = self._chain(unit, span, probe)
        spans = unit.spans
        pages = 0
        records: list[AnyRecord]
        try:
            async with contextlib.aclosing(self.r.pages(chain, self.parse)) as source:
                async for data, page in source:
                    first = last = None
                    if data and self.range_field is not None:
                        first, last = self._cursor_of(data[0]), self._cursor_of(data[-1])
                    if probe and last is not None and span.reached < last < span.high and _has_next(page):
                        # The probe's last second may go on in the next page: the rest of the range,
                        # from that second, goes to a chain of full-size pages.
                        spans.split(span, [last])
                        self.ready.appendleft(unit)
                        self.progress.windows_total += 1
                    high = self._high(unit, span)  # lowered when the span is split while it runs
                    past = self.sorted_pages and last is not None and high is not None and last >= high
                    upper = high if past else chain.upper
                    if self.raw:  # never a stream with details (see __init__)
                        records = self._prepare_raw(data, chain.lower, upper)
                    else:
                        records = self._prepare(data, page, chain, upper)
                        if self.stream.detail is not None:
                            records = await self._with_details(records)
                    self._emit(records)
                    spans.page(span, records=len(records), first=first, last=last,
                               sorted_pages=self.sorted_pages)
                    pages += 1
                    if self.incremental and self.sorted_pages and pages % CHECKPOINT_EVERY_PAGES == 0:
                        self._emit_state()
                    self.r.wake(self.bucket)
                    del data, page, records  # free the page before awaiting the next one (peak RSS)
                    if past:
                        break
            spans.finish(span)
        finally:
            self.r.chain_ended(self.bucket)
        self.progress.windows_done += 1
        if spans.finished:
            self.progress.partitions_done += 1
        if self.incremental:
            self._emit_state()

    def _cursor_of(self, record: AnyRecord) -> datetime | None:
        if self.raw:  # the raw path lifts the cursor, which is the range's attribute
            return _cursor_value(_raw_cursor(record[1]))
        return _cursor_value((record.get("attributes") or {}).get(self.range_field))

    # -- records ---------------------------------------------------------------------------------------
    def _prepare(self, data: list[Record], page: JSONObject, chain: Chain, upper: datetime | None,
                 ) -> list[Record]:
        lifted = self.stream.lifted
        if lifted:
            try:
                for record in data:
                    record[lifted] = record["attributes"][lifted]
            except (KeyError, TypeError):
                for record in data:
                    record[lifted] = (record.get("attributes") or {}).get(lifted)
        field = self.range_field
        if (chain.lower or upper) and field:
            data = [r for r in data
                    if _within(_cursor_value((r.get("attributes") or {}).get(field)), chain.lower, upper)]
        if self.stream.parent is not None and self.stream.hook is None:
            for record in data:
                record[self.stream.parent.key] = chain.parent_id
        if self.hook is not None:
            key = self.stream.parent.key if self.stream.parent else None
            data = self.hook(data, page, key, chain.parent_id)
        return data

    def _prepare_raw(self, data: list[RawRecord], lower: datetime | None, upper: datetime | None,
                     ) -> list[RawRecord]:
        if (lower or upper) and self.stream.lifted:
            return [r for r in data if _within(_cursor_value(_raw_cursor(r[1])), lower, upper)]
        return data

    async def _with_details(self, records: list[Record]) -> list[Record]:
        detail = self.stream.detail
        assert detail is not None
        limit = asyncio.Semaphore(max(1, TIERS[detail.tier].burst_per_second))

        async def fetch(record: Record) -> None:
            async with limit:
                answer = await self.r.get(detail.path.format(id=record["id"]), list(detail.params),
                                          detail.path + "?" + "&".join("=".join(p) for p in detail.params),
                                          detail.tier)
            attributes = (answer.get("data") or {}).get("attributes") or {}
            target = record.setdefault("attributes", {})
            for name in detail.fields:
                if name in attributes:
                    target[name] = attributes[name]

        await asyncio.gather(*(fetch(record) for record in records))
        return records


async def _ids_of(reader: Reader, stream: Stream) -> AsyncIterator[str]:
    """Every id of a (parent) stream, read in full whether or not it is selected."""
    if stream.parent is not None:
        parent = stream.parent
        parent_ids = [pid async for pid in _ids_of(reader, STREAMS_BY_NAME[parent.stream])]
        for pid in parent_ids:
            chain = build_chain(stream, reader.config, path=parent.path.format(id=pid), parent_id=pid)
            async for data, _page in reader.pages(chain):
                for record in data:
                    yield record["id"]
        return
    for partition in partitions_of(stream):
        async for data, _page in reader.pages(build_chain(stream, reader.config, partition=partition)):
            for record in data:
                yield record["id"]


def _within(value: datetime | None, lower: datetime | None, upper: datetime | None) -> bool:
    if value is None:
        return True
    return (lower is None or value >= lower) and (upper is None or value < upper)


def _key(partition: Partition) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(partition.items()))


def _has_next(page: JSONObject) -> bool:
    links = page.get("links")
    return isinstance(links, dict) and bool(links.get("next"))


def _cursor_state(cursor: str, spans: Spans) -> JSONObject | None:
    """A unit's state: `{cursor: …}`, with the `gaps` below it that were never read; None before the
    read has emitted anything of a range without a lower bound."""
    position, gaps = spans.state()
    if position == NO_LOWER_BOUND and not gaps:
        return None
    state: JSONObject = {cursor: format_datetime(position)}
    if gaps:
        state[GAPS] = [{"start": format_datetime(low), "end": format_datetime(high)} for low, high in gaps]
    return state


def _cuts(units: list[_Unit], room: int, min_records: int) -> list[tuple[_Unit, Span, list[datetime]]]:
    unit_of = {id(unit.spans): unit for unit in units}
    return [(unit_of[id(group)], span, edges)
            for group, span, edges in plan_cuts([unit.spans for unit in units], room, min_records)]


async def read_streams(config: Config, configured: list[ConfiguredStream],
                       state: dict[str, StreamState] | None, sink: Sink, *, client: Client | None = None,
                       clock: Callable[[], datetime] = utc_now,
                       heartbeat_seconds: float | None = None) -> ReadResult:
    """Read `configured` streams into `sink`; see the module docstring for the contract."""
    return await Reader(config, configured, state, sink, client=client, clock=clock,
                        heartbeat_seconds=heartbeat_seconds).run()
