"""The sink's batch files: each batch written to a file on a thread of its own, then handed to the writer.

A batch of a row group of events is ~16 MB. Written on the event loop, its file held every chain of the
read for ~14 ms, ~60 times in a million-event sync (~0.9 s, docs/performance.md). Here the loop only
hands the batch over: the thread writes it (the system calls release the GIL, and they are most of the
cost) and then hands the file to the writer, in the order the batches came, so the writer loads them in
that order.

A file that cannot be written fails its batch with `BatchFileError`, and every later batch of that
stream is `Dropped` unwritten, as the writer drops the batches behind a failed load: a later state must
never be committed without the records of the failed batch.
"""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from source_klaviyo.contracts import JSONObject
from source_klaviyo.errors import SourceError
from source_klaviyo.sync.duckdb_store import Batch, BatchCounts
from source_klaviyo.sync.writer import Dropped, Writer


class BatchFileError(SourceError):
    """A batch's file could not be written (e.g. the temporary directory is full)."""


class BatchFiles:
    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self._dir = Path(tempfile.mkdtemp(prefix="source-klaviyo-batches-"))
        self._count = 0
        self._failed: set[str] = set()  # streams whose file failed: their later batches are dropped
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-files")

    def hand_over(self, stream: str, batch: Batch, state: JSONObject | None) -> Future[BatchCounts]:
        """The batch's file written and loaded with `state`, behind every batch handed over before it.
        The caller must not touch `batch` again."""
        self._count += 1
        path = str(self._dir / f"{self._count}.rows")
        loaded: Future[BatchCounts] = Future()
        self._pool.submit(self._write_then_load, loaded, stream, batch, path, state)
        return loaded

    def close(self) -> None:
        """After every batch handed over was written (the files themselves are the writer's to delete)."""
        self._pool.shutdown(wait=True)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _write_then_load(self, loaded: Future[BatchCounts], stream: str, batch: Batch, path: str,
                         state: JSONObject | None) -> None:
        if stream in self._failed:
            loaded.set_exception(Dropped(stream))
            return
        try:
            written = batch.save(path)
            load = self.writer.load(stream, written, state)
        except Exception as exc:  # else it would be lost in the thread, and `loaded` never done
            self._failed.add(stream)
            if isinstance(exc, OSError):
                exc = BatchFileError(f"writing to DuckDB failed: the batch file: {exc}")
            loaded.set_exception(exc)
            return
        load.add_done_callback(lambda done: _pass_on(done, loaded))


def _pass_on(done: Future[BatchCounts], loaded: Future[BatchCounts]) -> None:
    exc = done.exception()
    if exc is None:
        loaded.set_result(done.result())
    else:
        loaded.set_exception(exc)
