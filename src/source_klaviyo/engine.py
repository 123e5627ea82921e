"""The read engine: interprets the stream table (`streams.py`) with one HTTP client per run.

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
the `Client` API (`contracts.py`); when None the engine opens its own `KlaviyoClient`. A sink that is
also a `RawSink` gets the records of streams that change nothing in them as the bytes Klaviyo sent.

The parts: `chains.py` builds each chain's first request, `pages.py` parses and walks its pages,
`records.py` turns a page's records into what the stream emits, `checkpoints.py` reads a saved state
into ranges and states what was read, `ranges.py` keeps the spans of those ranges; this module
schedules the chains and passes records and states to the sink. Report streams are read by
`reports.py` through `StreamRead`'s public methods.

Bounds: ranges are half-open and disjoint, so a read never emits a record twice; the lower bound is
inclusive (`greater-or-equal(S)`, or `greater-than(S - 1 s)` plus a check here where the endpoint
has only `greater-than`), the upper bound `less-than(upper)` server-side where supported. Both are
checked here as well, since Klaviyo was seen to accept a filter and not honour it: on a sorted page
by its first and last record, else record by record. A read that resumes from a mid-range
position `S` may re-emit the records stamped exactly `S` (at-least-once; the destination
de-duplicates by primary key). After a complete read the state is `upper`, so the next read returns
exactly the records changed since.

Chains: each range is read by a chain of pages sorted by its attribute, one request in flight per
chain. A bucket runs as many chains as its rate and measured round trip call for (`Reader.room`); a
stream whose endpoint sorts and filters an attribute on both sides (`split_by`: events, profiles,
memberships) cuts its running ranges when it has room for more chains than it has ranges, from the
first page's density at the start to the last pages of a backfill, so the whole read runs at the
pace the rate limit allows.

Checkpoints: sorted streams emit a state at least every `CHECKPOINT_EVERY_PAGES` pages and whenever a
chain ends; unsorted streams (`assume_sorted=False`) only when a whole partition is done;
partitioned streams keep one cursor per partition.

Errors: a failing stream gets a TRACE ERROR and INCOMPLETE, keeps its last emitted state, and the
others go on; a 401 stops the whole read with one config_error.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from .allocator import keep_large_buffers
from .catalog import ConfiguredStream
from .chains import Chain, Partition, bucket_of, build_chain, partitions_of, tier_and_fields
from .checkpoints import ranges_to_read, read_upper, saved_position, stream_state
from .config import Config
from .contracts import Client, Record, StreamState
from .datetimes import floor_second, utc_now
from .errors import ApiError, SourceError
from .pages import (
    PARSED,
    AnyRecord,
    PageFormat,
    ShapedRecord,
    chain_pages,
    cursor_value,
    has_next,
    ids_of,
    raw_cursor_value,
    raw_format,
)
from .ranges import NO_LOWER_BOUND, Range, Span, Spans, plan_cuts
from .records import prepare, prepare_raw, with_details, within
from .reports import read_report
from .streams import STREAMS_BY_NAME, Stream, TierName

if TYPE_CHECKING:
    from .http import HttpStats

CHECKPOINT_EVERY_PAGES = 10
PROBE_RECORDS = 100  # the first page of a splittable range nothing is known of (see _probe_size)
GC_THRESHOLD = 50_000  # gen-0 allocations between collections while reading (default 700)

T = TypeVar("T")


class Sink(Protocol):
    def records(self, stream: str, records: list[Record]) -> None: ...
    def state(self, stream: str, stream_state: StreamState, record_count: int) -> None: ...
    def stream_status(self, stream: str, status: str) -> None: ...
    def error(self, stream: str | None, error: SourceError) -> None: ...
    def log(self, level: str, message: str) -> None: ...


@runtime_checkable
class RawSink(Protocol):
    """A sink that writes JSON as it is: it gets each record of a stream without hooks, details or
    parents as its JSON object (the bytes Klaviyo sent, the lifted cursor spliced in), never parsed."""

    def raw_records(self, stream: str, records: list[bytes]) -> None: ...


@runtime_checkable
class ShapedSink(RawSink, Protocol):
    """A raw sink that decodes each record against its stream's shape anyway (the DuckDB sync): its
    `page_format` lets the page parser do that decode once, and the records come with their keys."""

    def page_format(self, stream: Stream) -> PageFormat | None: ...
    def shaped_records(self, stream: str, records: list[ShapedRecord]) -> None: ...


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


class _Unauthorized(Exception):
    def __init__(self, error: SourceError) -> None:
        self.error = error


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
    ) -> None:
        self.config = config
        self.configured = configured
        self.state = state or {}
        self.sink = sink
        self._client: Client | None = client  # opened by run() when None
        self.clock = clock
        self.progress: dict[str, StreamProgress] = {cs.name: StreamProgress() for cs in configured}
        self.errors: list[tuple[str | None, SourceError]] = []
        self._chains: dict[str, int] = {}  # chains of pages running, per rate-limit bucket
        self._watchers: dict[str, set[asyncio.Event]] = {}  # schedulers waiting for room in a bucket
        self._once: dict[str, asyncio.Future[Any]] = {}

    @property
    def client(self) -> Client:
        assert self._client is not None, "run() opens the client before any request"
        return self._client

    @property
    def stats(self) -> HttpStats | None:
        """The client's counters, once it is open (a progress display polls them)."""
        return None if self._client is None else self._client.stats

    def in_progress(self) -> list[str]:
        """The streams started and not yet COMPLETE or INCOMPLETE."""
        return [name for name, progress in self.progress.items() if progress.status in ("STARTED", "RUNNING")]

    async def run(self) -> ReadResult:
        # Parsed pages are acyclic and freed by reference counting, but with the default gen-0
        # threshold (700) the collector traverses each page while the decoder builds it (~30,000
        # containers per 1,000 events): ~4 µs of CPU per record. Restored when the read ends.
        threshold = gc.get_threshold()
        gc.set_threshold(GC_THRESHOLD, *threshold[1:])
        keep_large_buffers()
        try:
            if self._client is None:
                from .http import KlaviyoClient  # late: protocol commands never need aiohttp

                async with KlaviyoClient(self.config) as client:
                    self._client = client
                    return await self._run_all()
            return await self._run_all()
        finally:
            gc.set_threshold(*threshold)

    async def _run_all(self) -> ReadResult:
        try:
            async with asyncio.TaskGroup() as group:
                for cs in self.configured:
                    group.create_task(self._run_stream(cs))
        except* _Unauthorized as failures:
            error = failures.exceptions[0].error  # type: ignore[union-attr]  # a task's leaf, never a group
            self.errors.append((None, error))
            self.sink.error(None, error)
            for name in self.in_progress():
                self.status(name, "INCOMPLETE")
        statuses = {name: p.status for name, p in self.progress.items()}
        return ReadResult(statuses, self.progress, self.errors, self.stats)

    def status(self, stream: str, status: str) -> None:
        self.progress[stream].status = status
        self.sink.stream_status(stream, status)

    async def _run_stream(self, cs: ConfiguredStream) -> None:
        self.status(cs.name, "STARTED")
        try:
            await StreamRead(self, cs).run()
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
            self.status(cs.name, "COMPLETE")

    def _fail(self, stream: str, error: SourceError) -> None:
        self.errors.append((stream, error))
        self.sink.error(stream, error)
        self.status(stream, "INCOMPLETE")

    async def once(self, key: str, compute: Callable[[], Awaitable[T]]) -> T:
        """`compute()`'s result, computed once per read and shared by every stream asking for `key`."""
        shared = self._once.get(key)
        if shared is None:
            shared = self._once[key] = asyncio.ensure_future(compute())
        result: T = await shared
        return result

    # -- chains per bucket -----------------------------------------------------------------------------
    def room(self, bucket: str, tier: TierName) -> int:
        """How many more chains of pages `bucket` may run now: one request in flight each, up to what
        its rate and round trip call for (`Client.in_flight_limit`)."""
        return self.client.in_flight_limit(bucket, tier) - self._chains.get(bucket, 0)

    def idle(self, bucket: str, tier: TierName) -> bool:
        """No request of `bucket` waits for its turn at the rate limit: its pace is not all used."""
        return self.client.queued(bucket, tier) == 0

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


@dataclass(eq=False)
class _Unit:
    """A partition of a stream's read, or one parent's children, with the spans of its range."""

    partition: Partition
    spans: Spans
    parent_id: str | None = None


class StreamRead:
    """The read of one configured stream. Its public methods are what `reports.ReportRead` needs."""

    def __init__(self, reader: Reader, cs: ConfiguredStream) -> None:
        self.r = reader
        self.stream = stream = cs.stream
        self.name = cs.name
        self.progress = reader.progress[cs.name]
        self.since_state = 0
        self.running = False
        self.incremental = cs.incremental and stream.incremental is not None
        self.units: list[_Unit] = []
        self.ready: deque[_Unit] = deque()  # units that may have spans without a chain, in order
        self.last_state: StreamState | None = None
        self.bucket = bucket_of(stream, reader.config)
        self.tier = tier_and_fields(stream, reader.config)[0]
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
        self.raw_sink = reader.sink if isinstance(reader.sink, RawSink) else None
        self.raw = (self.raw_sink is not None and stream.hook is None and stream.detail is None
                    and stream.parent is None and stream.report is None)
        shaped = reader.sink if self.raw and isinstance(reader.sink, ShapedSink) else None
        shaped_format = shaped.page_format(stream) if shaped is not None else None
        self.shaped_sink = shaped if shaped_format is not None else None
        self.page_format = shaped_format or (raw_format(stream.lifted) if self.raw else PARSED)

    # -- what reports.py uses --------------------------------------------------------------------------
    @property
    def config(self) -> Config:
        return self.r.config

    @property
    def client(self) -> Client:
        return self.r.client

    def now(self) -> datetime:
        return self.r.clock()

    def saved(self, partition: Partition) -> tuple[datetime | None, list[Range]]:
        """The saved cursor of `partition` and the gaps below it that were never read."""
        return saved_position(self.stream, self.r.state.get(self.name), partition)

    def report_positions(self) -> dict[Stream, datetime | None]:
        """The saved cursor of every report stream of this read (None where it reads from the start:
        no state, or full refresh), for the plan they share."""
        positions: dict[Stream, datetime | None] = {}
        for cs in self.r.configured:
            if cs.stream.report is not None:
                incremental = cs.incremental and cs.stream.incremental is not None
                saved = self.r.state.get(cs.name) if incremental else None
                positions[cs.stream] = saved_position(cs.stream, saved, {})[0]
        return positions

    def track(self, spans: Spans, partition: Partition | None = None) -> _Unit:
        """Read `spans` (of `partition`) as part of this stream: its state states them."""
        unit = _Unit(partition or {}, spans)
        self.units.append(unit)
        return unit

    def emit(self, records: list[AnyRecord]) -> None:
        self.progress.pages += 1
        if not records:
            return
        if not self.running:
            self.running = True
            self.r.status(self.name, "RUNNING")
        if self.shaped_sink is not None:
            self.shaped_sink.shaped_records(self.name, records)
        elif self.raw_sink is not None and self.raw:
            self.raw_sink.raw_records(self.name, [record for record, _cursor in records])
        else:
            self.r.sink.records(self.name, records)
        self.progress.records += len(records)
        self.since_state += len(records)

    def checkpoint(self, *, force: bool = False) -> None:
        """The stream's state to the sink, when it changed (always with `force`); nothing for a full
        refresh."""
        if not self.incremental:
            return
        value = stream_state(self.stream, ((unit.partition, unit.spans) for unit in self.units))
        if value is None or (value == self.last_state and not force):
            return
        self.r.sink.state(self.name, value, self.since_state)
        self.last_state = value
        self.since_state = 0

    def log(self, level: str, message: str) -> None:
        self.r.sink.log(level, message)

    async def once(self, key: str, compute: Callable[[], Awaitable[T]]) -> T:
        return await self.r.once(key, compute)

    # -- collections -----------------------------------------------------------------------------------
    async def run(self) -> None:
        if self.stream.report is not None:
            await read_report(self)
            return
        upper = read_upper(self.r.clock())
        wake = asyncio.Event()
        if self.stream.parent is None:
            saved = self.r.state.get(self.name) if self.incremental else None
            for partition in partitions_of(self.stream):
                self._add(partition, Spans(ranges_to_read(self.stream, self.config, saved, partition, upper),
                                           upper))
            await self._schedule(wake)
        else:
            # Children start as their parents' ids arrive, not once every parent page has been read.
            await self._schedule(wake, self._add_children(upper, wake))
        self.checkpoint(force=True)

    def _add(self, partition: Partition, spans: Spans, parent_id: str | None = None) -> None:
        unit = self.track(spans, partition)
        unit.parent_id = parent_id
        self.ready.append(unit)
        self.progress.partitions_total += 1
        self.progress.partitions_done += spans.finished
        self.progress.windows_total += len(spans.spans)

    async def _add_children(self, upper: datetime, wake: asyncio.Event) -> None:
        parent = self.stream.parent
        assert parent is not None
        async for pid in ids_of(self.client, STREAMS_BY_NAME[parent.stream], self.config):
            self._add({}, Spans([(NO_LOWER_BOUND, upper)], upper), pid)
            wake.set()

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
                    for cut_unit, span, edges in _cuts(self.units, room, self._min_split()):
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
        return build_chain(self.stream, self.config, partition=unit.partition, lower=lower,
                           upper=self._high(unit, span), parent_id=unit.parent_id, page_size=page_size)

    def _min_split(self) -> int:
        """Records a cut leaves each side at least: half a page, so that a piece is one page. While
        the first page (the probe's) is all the stream has read and more than a page is left by
        its estimate, an eighth of a page: a hundred records can put the density off severalfold,
        and a piece that turns out to hold two pages keeps the read waiting a round trip more. A
        read of a few to tens of pages then goes out in one wave after the probe. A rest of one
        page by estimate stays whole (pieces answer together only as fast as the slowest of them);
        a backfill's first cut is unchanged (its pieces hold many pages)."""
        if self.progress.pages > 1:  # every page this stream's chains emitted
            return self.min_split
        left = sum(records for unit in self.units for _span, records in unit.spans.running_left())
        return self.min_split if left <= (self.stream.page_size or 1) else self.min_split // 4

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
            async with contextlib.aclosing(chain_pages(self.client, chain, self.page_format)) as source:
                async for data, page in source:
                    first = last = None
                    if data and self.range_field is not None:
                        first, last = self._cursor_of(data[0]), self._cursor_of(data[-1])
                    # The probe's last second may go on in the next page: the rest of the range,
                    # from that second, goes to a chain of full-size pages. The edge is the whole
                    # second: filters compare seconds, and a record's cursor may carry microseconds
                    # (`2024-04-01 17:33:15.004217+00:00`), which a filter would drop, re-reading the
                    # records of that second the probe emitted.
                    edge = floor_second(last) if last is not None else None
                    if probe and edge is not None and span.reached < edge < span.high and has_next(page):
                        spans.split(span, [edge])
                        self.ready.appendleft(unit)
                        self.progress.windows_total += 1
                    high = self._high(unit, span)  # lowered when the span is split while it runs
                    past = self.sorted_pages and last is not None and high is not None and last >= high
                    lower, upper = chain.lower, high if past else chain.upper
                    if self.sorted_pages and within(first, lower, upper) and within(last, lower, upper):
                        lower = upper = None  # a sorted page whose ends are in range: all of it is
                    if self.raw:  # never a stream with details (see __init__)
                        records = prepare_raw(self.stream, data, lower, upper)
                    else:
                        records = prepare(self.stream, data, page, chain, lower, upper, self.range_field)
                        if self.stream.detail is not None:
                            records = await with_details(self.client, self.stream.detail, records)
                    self.emit(records)
                    spans.page(span, records=len(records), first=first, last=last,
                               sorted_pages=self.sorted_pages)
                    pages += 1
                    if self.sorted_pages and pages % CHECKPOINT_EVERY_PAGES == 0:
                        self.checkpoint()
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
        self.checkpoint()

    def _cursor_of(self, record: AnyRecord) -> datetime | None:
        if self.raw:  # the raw path lifts the cursor, which is the range's attribute
            return raw_cursor_value(record[1])
        return cursor_value((record.get("attributes") or {}).get(self.range_field))


def _cuts(units: list[_Unit], room: int, min_records: int) -> list[tuple[_Unit, Span, list[datetime]]]:
    unit_of = {id(unit.spans): unit for unit in units}
    return [(unit_of[id(group)], span, edges)
            for group, span, edges in plan_cuts([unit.spans for unit in units], room, min_records)]


async def read_streams(config: Config, configured: list[ConfiguredStream],
                       state: dict[str, StreamState] | None, sink: Sink, *, client: Client | None = None,
                       clock: Callable[[], datetime] = utc_now) -> ReadResult:
    """Read `configured` streams into `sink`; see the module docstring for the contract."""
    return await Reader(config, configured, state, sink, client=client, clock=clock).run()
