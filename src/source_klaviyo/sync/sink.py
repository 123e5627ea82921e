"""The engine's sink for the DuckDB sync: buffers records per stream, commits them with their state.

The engine calls `state()` only after every record that state covers went through `records()`, so
at that moment the buffer is exactly what the state covers: writing both in one transaction keeps
the file consistent at every instant. Records may also be written ahead of any state (a full buffer,
a stream that ends without state): an upsert of a record read again later is harmless, while a state
ahead of its records would lose data.

Checkpoints are coalesced (a commit costs ~5 ms): the buffer is written at the first `state()` after
`flush_records` records or `flush_seconds` seconds, so a crash costs at most that much re-reading.
And as soon as it holds a table's row group (`ROW_GROUP_SIZE` rows), exactly that many rows are
written, with the state pending: DuckDB writes a full row group of a transaction straight to the
file, compressed once, where fewer rows go through its write-ahead log and are compressed at the
next checkpoint. Replayed, the writer's CPU per record is ~20 % less (docs/performance.md,
"Inflating, compressing and batches of a row group").

Writes run on a writer (`writer.py`: a process of its own in a sync), one at a time and in order,
while the engine goes on reading into the next batch. Each batch is written to a file off the event
loop (`batch_files.py`) and the writer loads it. Up to `WRITES_AHEAD` batches may wait for the
writer (the read only blocks beyond that): with one, the event loop waited for every write to end
before handing over the next batch, a quarter of a million-event sync's wall time. A write's outcome
(its counts, the checkpoint callback, or its failure) is taken in as soon as it is done, at the
stream's next call; a failed write is raised there, once, so the engine ends that stream, and the
stream's writes queued behind it are dropped unwritten (a later state must never be committed
without the records of the failed batch).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from source_klaviyo.contracts import JSONObject
from source_klaviyo.errors import SourceError
from source_klaviyo.pages import PageFormat, ShapedRecord, shaped_format
from source_klaviyo.streams import Stream
from source_klaviyo.sync.batch_files import BatchFileError, BatchFiles
from source_klaviyo.sync.duckdb_store import ROW_GROUP_SIZE, Batch, BatchCounts, Target, new_batch
from source_klaviyo.sync.layout import Column
from source_klaviyo.sync.writer import Dropped, Writer

TERMINAL = ("COMPLETE", "INCOMPLETE")
WRITES_AHEAD = 3  # batches handed to the writer and not yet written, at most (files of ~17 MB of events)


@dataclass
class StreamTally:
    """What the sink saw and wrote for one stream during this sync."""

    records: int = 0
    checkpoints: int = 0
    status: str = "PENDING"
    counts: BatchCounts = field(default_factory=BatchCounts)
    errors: list[str] = field(default_factory=list)
    published: bool = False
    broken: bool = False  # a write failed: nothing more is written for this stream in this sync
    first_record_at: float | None = None
    last_record_at: float | None = None

    @property
    def rate(self) -> float:
        if self.first_record_at is None or self.last_record_at is None:
            return 0.0
        return self.records / max(self.last_record_at - self.first_record_at, 1.0)


@dataclass
class _Buffer:
    batch: Batch
    state: JSONObject | None = None  # the latest state the engine gave
    state_pending: bool = False  # ... and it is not committed yet
    last_flush: float = field(default_factory=time.monotonic)


class DuckDBSink:
    def __init__(
        self,
        writer: Writer,
        targets: dict[str, Target],
        *,
        flush_records: int = ROW_GROUP_SIZE,
        flush_seconds: float = 1.0,
        # Beyond this much JSON a batch is written ahead of its state (records of ~2 KB and more fill
        # it before a row group; a row group of events is ~17 MB).
        max_buffered_bytes: int = 32 << 20,
        row_group: int = ROW_GROUP_SIZE,  # the rows cut as a batch of their own (the tables' row group)
        on_checkpoint: Callable[[str, int], None] | None = None,
        on_log: Callable[[str, str], None] | None = None,
    ) -> None:
        self.writer = writer
        self.targets = targets
        self.flush_records = flush_records
        self.flush_seconds = flush_seconds
        self.max_buffered_bytes = max_buffered_bytes
        self.row_group = row_group
        self.on_checkpoint = on_checkpoint
        self.on_log = on_log
        self.tallies: dict[str, StreamTally] = {name: StreamTally() for name in targets}
        self.global_errors: list[str] = []
        self._buffers: dict[str, _Buffer] = {
            name: _Buffer(new_batch(target)) for name, target in targets.items()
        }
        self._writes: deque[tuple[str, Future[BatchCounts], bool]] = deque()  # stream, write, with state
        self._failed: dict[str, SourceError] = {}  # raised at the stream's next call
        self._files = BatchFiles(writer)

    # -- the engine's Sink protocol -----------------------------------------------------------

    def records(self, stream: str, records: list[JSONObject]) -> None:
        self._raise_failure(stream)
        if records and not self.tallies[stream].broken:
            self._buffers[stream].batch.add(records)
            self._added(stream, len(records))

    def raw_records(self, stream: str, records: list[bytes]) -> None:
        """The engine's raw path: each record's JSON object as Klaviyo sent it, never parsed into dicts."""
        self._raise_failure(stream)
        if records and not self.tallies[stream].broken:
            self._buffers[stream].batch.add_raw(records)
            self._added(stream, len(records))

    def page_format(self, stream: Stream) -> PageFormat | None:
        """The pages of `stream` decoded against its table's record shape (`pages.shaped_format`), so
        each record is decoded once for its cursor, its key and its fit (None: the raw path's)."""
        target = self.targets.get(stream.name)
        shape = target.layout.shape if target is not None else None
        if shape is None or stream.lifted is None or len(shape.key_attributes) != 1:
            return None
        cursor = shape.raw_leaf("attributes", stream.lifted)
        if cursor is None:
            return None
        return shaped_format(stream.lifted, shape.decode, shape.key_attributes[0], cursor)

    def shaped_records(self, stream: str, records: list[ShapedRecord]) -> None:
        """Records of a `page_format` page: as `raw_records`, each with its key when the page parser
        found the record of the table's shape."""
        self._raise_failure(stream)
        if records and not self.tallies[stream].broken:
            self._buffers[stream].batch.add_shaped(records)
            self._added(stream, len(records))

    def _added(self, stream: str, count: int) -> None:
        buffer, tally = self._buffers[stream], self.tallies[stream]
        now = time.monotonic()
        if tally.first_record_at is None:
            tally.first_record_at = now
        tally.last_record_at = now
        tally.records += count
        while len(buffer.batch) >= self.row_group and not tally.broken:  # a row group, written as one
            self._flush(stream, self.row_group)
        if buffer.batch.bytes >= self.max_buffered_bytes and not tally.broken:
            self._flush(stream)  # bound memory when a stream checkpoints rarely

    def state(self, stream: str, stream_state: JSONObject, record_count: int = 0) -> None:
        self._raise_failure(stream)
        if self.tallies[stream].broken:
            return
        buffer = self._buffers[stream]
        buffer.state = stream_state
        buffer.state_pending = True
        due = (
            len(buffer.batch) >= self.flush_records
            or time.monotonic() - buffer.last_flush >= self.flush_seconds
        )
        if due:
            self._flush(stream)

    def stream_status(self, stream: str, status: str) -> None:
        tally = self.tallies[stream]
        if tally.status in TERMINAL:
            return
        tally.status = status
        if status not in TERMINAL or tally.broken:
            return
        target = self.targets[stream]
        try:
            self._flush(stream)
            self._settle(wait=True)
            if tally.broken:
                return  # the write failed: its error is on the stream already
            if status == "COMPLETE" and target.slot == "staging":
                # What changed is measured against the table being replaced, not the staging loads.
                published = self.writer.publish(stream, self._buffers[stream].state).result()
                target.slot = "live"
                published.skipped = tally.counts.skipped
                tally.counts = published
                tally.published = True
        except Exception as exc:
            # Reported on the stream, not raised: the engine calls this outside its per-stream guard.
            tally.status = "INCOMPLETE"
            if not tally.errors:
                tally.errors.append(f"writing to DuckDB failed: {exc}")
            return
        # An incomplete staging table stays, with its state, for the next run to continue.

    def error(self, stream: str | None, error: SourceError | BaseException) -> None:
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        if stream is not None and stream in self.tallies:
            if message not in self.tallies[stream].errors:  # a failed write, raised back to us
                self.tallies[stream].errors.append(message)
        else:
            self.global_errors.append(message)

    def log(self, level: str, message: str) -> None:
        if self.on_log is not None:
            self.on_log(level, message)

    # -- for the runner -----------------------------------------------------------------------

    def finish(self) -> None:
        """Commit what is buffered of streams the engine never closed (e.g. after it failed)."""
        for stream, tally in self.tallies.items():
            if tally.status not in TERMINAL:
                if not tally.broken:
                    self._flush(stream)
                    self._settle(wait=True)
                if tally.status != "PENDING" or tally.records:
                    tally.status = "INCOMPLETE"
                    if not tally.errors:
                        tally.errors.append("the read ended before the stream completed")
        self.close()

    def close(self) -> None:
        """Wait for the writes handed over (their outcomes are kept) and close the writer."""
        self._settle(wait=True)
        self._files.close()
        self.writer.close()

    def _flush(self, stream: str, rows: int | None = None) -> None:
        """Hand the stream's batch, or its first `rows` rows, to the writer behind the writes queued,
        with the state pending. Either holds every record that state covers: a batch is cut as soon
        as a record fills it (`_added`), so a state always comes with fewer rows buffered."""
        buffer = self._buffers[stream]
        if not buffer.batch.rows and not buffer.batch.skipped and not buffer.state_pending:
            return
        self._settle()
        while len(self._writes) >= WRITES_AHEAD:  # the writer is behind: the read waits for it
            self._settle_oldest()
        if self.tallies[stream].broken:
            return
        target = self.targets[stream]
        batch = buffer.batch if rows is None else buffer.batch.take(rows)
        # Fields first seen in this batch become the target's columns, so that the next batch knows them.
        target.extra_columns += [Column(name, "JSON") for name in batch.new_columns]
        if rows is None:
            buffer.batch = new_batch(target)
        buffer.last_flush = time.monotonic()
        state = buffer.state if buffer.state_pending else None
        buffer.state_pending = False
        self._writes.append((stream, self._files.hand_over(stream, batch, state), state is not None))

    def _settle(self, *, wait: bool = False) -> None:
        """Take in the outcomes of the writes done, in order; with `wait`, of every write handed over."""
        while self._writes and (wait or self._writes[0][1].done()):
            self._settle_oldest()

    def _settle_oldest(self) -> None:
        stream, write, with_state = self._writes.popleft()
        tally = self.tallies[stream]
        try:
            counts = write.result()
        except Dropped:
            return  # its stream is broken already, by the write that failed
        except BatchFileError as exc:
            self._fail(stream, exc)
            return
        except Exception as exc:
            if tally.broken:  # a consequence of the first failure (the writer process died with it)
                return
            # The transaction rolled back: the table and its state are as of the last commit.
            self._fail(stream, SourceError(f"writing to DuckDB failed: {exc}"))
            return
        tally.counts.add(counts)
        if with_state:
            tally.checkpoints += 1
            if self.on_checkpoint is not None:
                self.on_checkpoint(stream, tally.checkpoints)

    def _fail(self, stream: str, failure: SourceError) -> None:
        """End the stream's writes: nothing more of it is written, `failure` is raised at its next call."""
        tally = self.tallies[stream]
        tally.broken = True
        tally.status = "INCOMPLETE"
        tally.errors.append(failure.message)
        self._failed[stream] = failure
        self._buffers[stream].batch = new_batch(self.targets[stream])

    def _raise_failure(self, stream: str) -> None:
        self._settle()  # a finished write's failure is reported without waiting for the next one
        failure = self._failed.pop(stream, None)
        if failure is not None:
            raise failure
