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
the `KlaviyoClient` API (`get`, `stats`); when None the engine opens its own `KlaviyoClient`.

Incremental semantics — one rule everywhere: a saved cursor `S` means every record whose cursor is
`< S` was emitted (see `checkpoint.py`). A read covers `[start, upper)` where
`start = max(S - lookback, start_date)` and `upper = now - UPPER_MARGIN` (never past now: records
stamped later, e.g. in the future, are left for a later sync). The lower bound is inclusive:
`greater-or-equal(S)`, or `greater-than(S - 1 s)` plus a client-side `>= S` check where the endpoint
has only `greater-than`; the upper bound is `less-than(upper)` server-side where supported, else
checked here. Windows are half-open and disjoint, so a read never emits a record twice; a read that
resumes from a mid-window checkpoint `S` may re-emit the records stamped exactly `S` (at-least-once;
the destination de-duplicates by primary key). After a complete read the state is `upper`, so the
next read returns exactly the records changed since.

Windows (events): a read opens with the first page of its whole range; when that is all, it is the
read. Otherwise the range is cut into windows of at most the declared length, as many as that page's
density says it has pages (one per `PAGES_PER_WINDOW`), up to `WINDOWS_PER_REQUEST_SLOT` per
concurrent request, read concurrently.

Checkpoints: sorted streams emit a state at least every `CHECKPOINT_EVERY_PAGES` pages and at every
window end; unsorted streams (`assume_sorted=False`) only when a whole window/partition is done;
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
import functools
import gc
import itertools
import json
import math
import os
import time
import traceback
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

import msgspec
import orjson

from .catalog import ConfiguredStream
from .checkpoint import Checkpointer
from .contracts import JSON, Client, JSONObject, Record, StreamState
from .datetimes import ONE_SECOND, floor_second, format_datetime, parse_datetime, utc_now
from .errors import ApiError, SourceError
from .hooks import HOOKS
from .protocol import dumps
from .streams import STREAMS_BY_NAME, TIERS, Stream

if TYPE_CHECKING:
    from .config import Config
    from .http import HttpStats

UPPER_MARGIN = timedelta(seconds=5)
CHECKPOINT_EVERY_PAGES = 10
# A windowed read opens with the first page of its whole range. When that page is all there is, it
# is the read (one request, as before). Otherwise its density says how many pages the range holds,
# and the range is cut into a window per PAGES_PER_WINDOW of them, up to WINDOWS_PER_REQUEST_SLOT
# per concurrent request (the declared window stays the longest): one window is one chain of pages,
# read a page per round trip, so a one-day incremental read of events was a single chain, a tenth of
# what the XL limit allows. Windows are not cut finer: each ends in a part-full page, a request
# that counts against the rate limit (at 4 windows per slot the events ceiling fell from 95 to 93 %).
# When the range is cut, the opening page is dropped (one request) and each window reads its own.
PAGES_PER_WINDOW = 4
WINDOWS_PER_REQUEST_SLOT = 2
SHORTEST_WINDOW = timedelta(minutes=1)
GC_THRESHOLD = 50_000  # gen-0 allocations between collections while reading (default 700)
HEARTBEAT_SECONDS = 30.0  # the longest silence of a read; Airbyte's maxSecondsBetweenMessages is 600
HEARTBEAT_ENV = "SOURCE_KLAVIYO_HEARTBEAT_SECONDS"
# A stand-in lower edge for a stream read without any lower bound (no state, no start_date).
NO_LOWER_BOUND = datetime(1970, 1, 1, tzinfo=UTC)

Partition = dict[str, str]
# A record on the raw path: its JSON object (lifted cursor spliced in) and the cursor's JSON text.
RawRecord = tuple[bytes, bytes | msgspec.Raw]
# A record of a page: a `Record` (parsed path) or a `RawRecord` (raw path). Which one is fixed per
# stream by its parser and checked once per page in `Reader.pages`; a union would need a check or a
# cast per record on the hot path, hence Any.
AnyRecord = Any
# One page of a chain: its records and the whole parsed page (`links`, `included`).
Page = tuple[list[AnyRecord], JSONObject]
# A range read as one window, its first page fetched: the chain, that page, the rest of its pages.
Opened = tuple["Chain", Page, AsyncGenerator[Page, None]]


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
_DIGITS_ONLY = bytes(48 if 48 <= byte <= 57 else 120 for byte in range(256))
_LONG_NUMBER = b"0" * 20  # 20 digits in a row: possibly an integer beyond 64 bits


def parse_page(body: bytes) -> JSONObject:
    """Parse a JSON:API page with orjson, keeping integers beyond 64 bits exact.

    orjson turns such integers into floats silently. A page holding a run of 20+ digits is scanned
    for integer tokens that long; the floats they became are put back as Python ints (orjson cannot
    write them; the protocol writer falls back to `json` for those records). When two tokens would
    collapse to the same float, the page is parsed by `json` instead (rare, slower, always exact)."""
    digits = body.translate(_DIGITS_ONLY)
    page: JSONObject
    if digits.find(_LONG_NUMBER) < 0:
        try:
            page = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _parse_slow(body)  # e.g. a lone surrogate escape, which `json` accepts
        return page
    tokens = _big_integer_tokens(body, digits)
    try:
        page = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _parse_slow(body)
    if tokens and _restore(_holders(page, body, tokens), tokens, [0]) != len(tokens):
        return _parse_slow(body)  # a token we could not place: let `json` do it exactly
    return page


def _holders(page: JSONObject, body: bytes, tokens: list[int]) -> list[JSON]:
    """The records of `data` that hold the tokens: the nearest `"id"` before each token names its
    record (type and id come first in Klaviyo's resources). A wrong guess is caught by the caller,
    which then parses the page with `json`."""
    ids: set[str] = set()
    after = 0  # tokens are in document order: a value seen twice is looked up past the previous one
    for number in tokens:
        text = str(number).encode()
        at = body.find(text, after)
        key = body.rfind(b'"id"', 0, at)
        if at < 0 or key < 0:
            return [page]
        after = at + len(text)
        quote = body.find(b'"', body.find(b":", key + 4) + 1)
        ids.add(body[quote + 1:body.find(b'"', quote + 1)].decode("utf-8", "replace"))
    data = page.get("data")
    if not isinstance(data, list):
        return [page]
    return [record for record in data if isinstance(record, dict) and record.get("id") in ids]


_BEFORE = frozenset(b":,[ \t\r\n")
_AFTER = frozenset(b",}] \t\r\n")
_INT64_RANGE = 2.0**63


def _big_integer_tokens(body: bytes, digits: bytes) -> list[int]:
    """The integer tokens of 20+ digits, in document order (runs inside strings are skipped)."""
    tokens: list[int] = []
    position = digits.find(_LONG_NUMBER)
    while position >= 0:
        end = digits.find(b"x", position)
        end = len(body) if end < 0 else end
        start, sign = position, 1
        if start > 0 and body[start - 1] == 0x2D:  # '-'
            start, sign = start - 1, -1
        if (start == 0 or body[start - 1] in _BEFORE) and (end == len(body) or body[end] in _AFTER):
            tokens.append(sign * int(body[position:end]))
        position = digits.find(_LONG_NUMBER, end)
    return tokens


def _restore(node: JSON, tokens: list[int], placed: list[int]) -> int:
    """Walk in document order (orjson keeps key order) and put the k-th token back where orjson left
    the k-th float outside the 64-bit range; stops once every token is placed. Returns how many were."""
    if isinstance(node, dict):
        items: Iterable[tuple[JSON, JSON]] = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return placed[0]
    for key, value in items:
        if placed[0] >= len(tokens):
            break
        if type(value) is float:
            if abs(value) >= _INT64_RANGE and float(tokens[placed[0]]) == value:
                node[key] = tokens[placed[0]]
                placed[0] += 1
        elif isinstance(value, dict | list):
            _restore(value, tokens, placed)
    return placed[0]


def _parse_slow(body: bytes) -> JSONObject:
    try:
        page: JSON = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise SourceError(
            "Klaviyo returned a page that is not valid JSON", f"{type(exc).__name__}: {exc}"
        ) from None
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
    head = orjson.dumps(lifted)[:-1] + b'":' if lifted else b""

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
        except msgspec.DecodeError:
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
        records.append((dumps(record), dumps(record.get(lifted))))
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
    if stream.include:
        params.append(("include", ",".join(stream.include)))
    tier, additional = _tier_and_fields(stream, config)
    if additional:
        params.append((f"additional-fields[{stream.resource_type}]", ",".join(additional)))
    template = stream.parent.path if stream.parent else stream.path
    bucket = template + ("?" + ",".join(additional) if tier != stream.tier else "")
    return Chain(path or stream.path, params, bucket, tier, partition, parent_id, check_lower, check_upper)


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
        self._requests = asyncio.Semaphore(max(1, config.num_workers))

    async def run(self) -> ReadResult:
        # Parsed pages are acyclic and freed by reference counting, but with the default gen-0
        # threshold (700) the collector traverses each page while orjson builds it (~30,000
        # containers per 1,000 events): ~4 µs of CPU per record. Restored when the read ends.
        threshold = gc.get_threshold()
        gc.set_threshold(GC_THRESHOLD, *threshold[1:])
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
        async with self._requests:
            return await client.get(url, params, bucket=bucket, tier=tier, parse=parse)

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


class _StreamRead:
    """The read of one configured stream."""

    def __init__(self, reader: Reader, cs: ConfiguredStream) -> None:
        self.r = reader
        self.cs = cs
        self.stream = cs.stream
        self.name = cs.name
        self.progress = reader.progress[cs.name]
        self.hook = HOOKS[self.stream.hook] if self.stream.hook else None
        self.since_state = 0
        self.running = False
        self.incremental = cs.incremental and self.stream.incremental is not None
        tier = TIERS[self.stream.tier]
        self.concurrency = max(1, min(reader.config.num_workers, tier.burst_per_second))
        self.positions: dict[str, Callable[[], datetime | None]] = {}
        self.last_state: StreamState | None = None
        # Records passed on unparsed when nothing here needs more of them than id and cursor.
        stream = self.stream
        self.raw = (hasattr(reader.sink.inner, "raw_records") and stream.hook is None
                    and stream.detail is None and stream.parent is None and stream.report is None)
        self.parse = raw_page_parser(stream.lifted) if self.raw else parse_page

    async def run(self) -> None:
        if self.stream.report is not None:
            from .reports import read_report  # late: reports.py builds on this module

            await read_report(self)
            return
        if self.stream.parent is not None:
            await self._read_children()
            return
        partitions = partitions_of(self.stream)
        self.progress.partitions_total = len(partitions)
        upper = floor_second(self.r.clock()) - UPPER_MARGIN
        await _run_bounded((self._read_partition(p, upper) for p in partitions), len(partitions))
        if self.incremental:
            self._emit_state(force=True)

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
        cursor = self.stream.incremental.cursor  # type: ignore[union-attr]
        if not self.stream.partitions:
            position = self.positions[""]() if "" in self.positions else None
            return {cursor: format_datetime(position)} if position else None
        states = []
        for partition in partitions_of(self.stream):
            position = self.positions.get(_key(partition), lambda: None)()
            if position is not None:
                states.append({"partition": partition, "cursor": {cursor: format_datetime(position)}})
        return {"states": states} if states else None

    def _emit_state(self, force: bool = False) -> None:
        value = self._state_value()
        if value is None or (value == self.last_state and not force):
            return
        self.r.sink.state(self.name, value, self.since_state)
        self.last_state = value
        self.since_state = 0

    # -- incremental bounds ------------------------------------------------------------------------
    def _saved(self, partition: Partition) -> datetime | None:
        saved = self.r.state.get(self.name) or {}
        cursor = self.stream.incremental.cursor if self.stream.incremental else ""
        if self.stream.partitions:
            entries = [s for s in saved.get("states") or () if s.get("partition") == partition]
            value = (entries[0].get("cursor") or {}).get(cursor) if entries else None
        else:
            value = saved.get(cursor)
        if value is None:
            return None
        try:
            return parse_datetime(value)
        except ValueError:
            return None

    def _start(self, partition: Partition, upper: datetime) -> datetime | None:
        inc = self.stream.incremental
        start_date = self.r.config.start_date
        saved = self._saved(partition) if self.incremental else None
        if saved is not None and inc is not None:
            lookback = inc.lookback
            if inc.config_lookback:
                lookback += timedelta(days=self.r.config.lookback_window_days)
            saved -= lookback
        candidates = [moment for moment in (saved, start_date) if moment is not None]
        if not candidates:
            return None
        return min(floor_second(max(candidates)), upper)

    # -- partitions and windows ----------------------------------------------------------------------
    async def _read_partition(self, partition: Partition, upper: datetime) -> None:
        inc = self.stream.incremental
        start = self._start(partition, upper) if inc else None
        key = _key(partition)
        if start is not None and start >= upper:  # nothing can have changed since
            self.positions[key] = lambda: upper
            self.progress.partitions_done += 1
            return
        window = inc.window if inc else None
        opened: Opened | None = None
        if window is not None:
            opened, first, last = await self._open_range(partition, start, upper)
            if start is None:  # no state and no start_date: from the first record
                start = floor_second(first) if first else None
            if last is None:  # the opening page is the whole range
                window = None
            elif start is not None:
                window = _window_length(window, upper - start, self._windows_for(start, last, upper))
        checkpoint = Checkpointer(_window_edges(start or NO_LOWER_BOUND, upper, window))
        if opened is not None and checkpoint.windows > 1:
            await opened[2].aclose()
            opened = None
        self.positions[key] = lambda: None if (p := checkpoint.position()) == NO_LOWER_BOUND else p
        self.progress.windows_total += checkpoint.windows
        if opened is not None:
            await self._read_window(partition, checkpoint, 0, start is not None, opened)
        else:
            tasks = (self._read_window(partition, checkpoint, index, start is not None)
                     for index in range(checkpoint.windows))
            await _run_bounded(tasks, self.concurrency)
        self.progress.partitions_done += 1

    def _window_chain(
        self, partition: Partition, lower: datetime | None, upper: datetime, last: bool
    ) -> Chain:
        # A full refresh reads the last window open-ended: there is no state to keep consistent.
        open_ended = not self.incremental and last
        return build_chain(self.stream, self.r.config, partition=partition, lower=lower,
                           upper=None if open_ended else upper)

    async def _read_window(self, partition: Partition, checkpoint: Checkpointer, index: int,
                           bounded_below: bool, opened: Opened | None = None,
                           ) -> None:
        """One window's chain of pages; `opened`: its chain, first page and pages when under way."""
        low, high = checkpoint.window(index)
        source: AsyncIterator[Page]
        if opened is not None:
            chain, first_page, rest = opened
            source = _replayed(first_page, rest)
        else:
            chain = self._window_chain(partition, low if (index > 0 or bounded_below) else None, high,
                                       index == checkpoint.windows - 1)
            source = self.r.pages(chain, self.parse)
        inc = self.stream.incremental
        sorted_pages = bool(inc and inc.sortable and inc.assume_sorted)
        cursor = self.stream.lifted
        pages = 0
        records: list[AnyRecord]
        async for data, page in source:
            if self.raw:  # never a stream with details (see __init__)
                records = self._prepare_raw(data, chain)
            else:
                records = self._prepare(data, page, chain)
                if self.stream.detail is not None:
                    records = await self._with_details(records)
            self._emit(records)
            pages += 1
            if self.incremental and sorted_pages and data and cursor:
                last = _raw_cursor(data[-1][1]) if self.raw else data[-1].get(cursor)
                checkpoint.page_emitted(index, _cursor_value(last))
                if pages % CHECKPOINT_EVERY_PAGES == 0:
                    self._emit_state()
            del data, page, records  # free the page before awaiting the next one (peak RSS)
        checkpoint.window_done(index)
        self.progress.windows_done += 1
        if self.incremental:
            self._emit_state()

    async def _open_range(self, partition: Partition, lower: datetime | None, upper: datetime,
                          ) -> tuple[Opened | None, datetime | None, datetime | None]:
        """A windowed range read as one window, its first page fetched: ((the chain, that page, the
        rest of its pages), the first record's cursor, the last record's cursor when more pages
        follow, else None)."""
        chain = self._window_chain(partition, lower, upper, True)
        pages = self.r.pages(chain, self.parse)
        async for data, page in pages:
            links = page.get("links")
            more = isinstance(links, dict) and bool(links.get("next"))
            first = self._cursor_of(data[0]) if data else None
            last = self._cursor_of(data[-1]) if data and more else None
            return (chain, (data, page), pages), first, last
        return None, None, None

    def _cursor_of(self, record: AnyRecord) -> datetime | None:
        if self.raw:
            return _cursor_value(_raw_cursor(record[1]))
        return _cursor_value((record.get("attributes") or {}).get(self.stream.lifted))

    def _windows_for(self, start: datetime, opened_to: datetime, upper: datetime) -> int:
        """Windows for `[start, upper)` whose first page ended at `opened_to`: a window per
        PAGES_PER_WINDOW pages at that page's density, capped at what keeps every request slot busy."""
        covered = max((opened_to - start).total_seconds(), 1.0)
        pages = (upper - start).total_seconds() / covered
        return min(math.ceil(pages / PAGES_PER_WINDOW), WINDOWS_PER_REQUEST_SLOT * self.concurrency)

    # -- records ---------------------------------------------------------------------------------------
    def _prepare(self, data: list[Record], page: JSONObject, chain: Chain) -> list[Record]:
        lifted = self.stream.lifted
        if lifted:
            try:
                for record in data:
                    record[lifted] = record["attributes"][lifted]
            except (KeyError, TypeError):
                for record in data:
                    record[lifted] = (record.get("attributes") or {}).get(lifted)
        if (chain.lower or chain.upper) and lifted:
            data = [r for r in data if _within(_cursor_value(r.get(lifted)), chain.lower, chain.upper)]
        if self.stream.parent is not None and self.stream.hook is None:
            for record in data:
                record[self.stream.parent.key] = chain.parent_id
        if self.hook is not None:
            key = self.stream.parent.key if self.stream.parent else None
            data = self.hook(data, page, key, chain.parent_id)
        return data

    def _prepare_raw(self, data: list[RawRecord], chain: Chain) -> list[RawRecord]:
        if (chain.lower or chain.upper) and self.stream.lifted:
            return [r for r in data if _within(_cursor_value(_raw_cursor(r[1])), chain.lower, chain.upper)]
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

    # -- parent -> child fan-out (full refresh) ------------------------------------------------------
    async def _read_children(self) -> None:
        parent = self.stream.parent
        assert parent is not None
        ids = [pid async for pid in _ids_of(self.r, STREAMS_BY_NAME[parent.stream])]
        self.progress.partitions_total = len(ids)

        async def child(pid: str) -> None:
            chain = build_chain(self.stream, self.r.config, path=parent.path.format(id=pid), parent_id=pid)
            async for data, page in self.r.pages(chain):
                self._emit(self._prepare(data, page, chain))
            self.progress.partitions_done += 1

        await _run_bounded((child(pid) for pid in ids), self.concurrency)


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


async def _replayed(first: Page, rest: AsyncIterator[Page]) -> AsyncIterator[Page]:
    yield first
    async for item in rest:
        yield item


def _window_length(declared: timedelta, span: timedelta, at_least: int) -> timedelta:
    """The declared window, shortened so that `span` makes at least `at_least` windows (whole
    seconds, never under `SHORTEST_WINDOW`)."""
    shared = timedelta(seconds=int(span.total_seconds() // max(1, at_least)))
    return max(SHORTEST_WINDOW, min(declared, shared))


def _window_edges(start: datetime, upper: datetime, window: timedelta | None) -> list[datetime]:
    if window is None or start == NO_LOWER_BOUND:
        return [start, upper]
    edges = [start]
    while edges[-1] + window < upper:
        edges.append(edges[-1] + window)
    edges.append(upper)
    return edges


async def _run_bounded(coroutines: Iterable[Awaitable[None]], limit: int) -> None:
    """Run coroutines with at most `limit` at once, in order of the iterable; the first error wins."""
    iterator = iter(coroutines)
    lock = asyncio.Lock()

    async def worker() -> None:
        while True:
            async with lock:
                coroutine = next(iterator, None)
            if coroutine is None:
                return
            await coroutine

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, limit)):
                group.create_task(worker())
    except BaseExceptionGroup as failures:
        raise _first_leaf(failures) from None


def _first_leaf(error: BaseException) -> BaseException:
    """The error that stopped a task group (the others were cancellations it caused)."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def read_streams(config: Config, configured: list[ConfiguredStream],
                       state: dict[str, StreamState] | None, sink: Sink, *, client: Client | None = None,
                       clock: Callable[[], datetime] = utc_now,
                       heartbeat_seconds: float | None = None) -> ReadResult:
    """Read `configured` streams into `sink`; see the module docstring for the contract."""
    return await Reader(config, configured, state, sink, client=client, clock=clock,
                        heartbeat_seconds=heartbeat_seconds).run()
