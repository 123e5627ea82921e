"""Where a sync's DuckDB writes run while the read goes on: a thread beside it, or a process of its own.

Either writer runs the writes one at a time, in the order they were handed over, against a `Store`
only it uses, with its own copy of each stream's target. A write that fails poisons its stream: the
stream's writes queued behind it are dropped unwritten (`Dropped`), because a later state must never
be committed without the records of the failed batch.

The sync uses the process (`ProcessWriter`). On a thread, DuckDB's Python client takes the GIL back
after every task of a query (to check for Ctrl-C), and the reader holds it up to a switch interval
(5 ms) at a time: the writer's wall time was ~1.6 times its CPU time, and it held a million-event
sync back by a third (docs/performance.md, "The DuckDB sync's writer process"). In a process of its
own the writer has its own interpreter, and on a machine with two cores, its own core. The thread
(`ThreadWriter`) remains for tests that reach into a `Store` in-process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import resource
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Literal, Protocol

from source_klaviyo.contracts import JSONObject
from source_klaviyo.sync.duckdb_store import LOAD_HEADROOM_MB, BatchCounts, BatchFile, Store, Target

Method = Literal["load", "publish"]


class Dropped(Exception):
    """A write not made because an earlier write of its stream failed."""


class WriterExited(Exception):
    """The writer process ended before answering."""


class Writer(Protocol):
    def load(self, stream: str, batch: BatchFile, state: JSONObject | None) -> Future[BatchCounts]:
        """Upsert the batch (deleting its file) and save `state` with it, in one transaction."""

    def publish(self, stream: str, state: JSONObject | None) -> Future[BatchCounts]:
        """Swap the stream's complete staging table in for its live one (`Store.publish`)."""

    def close(self) -> None:
        """Wait for the writes handed over, then stop."""


def writer_copy(target: Target) -> Target:
    """The target as a writer keeps it: its own list of columns, and no record decoders (the writer
    only runs SQL; the decoders, built at run time, cannot be pickled)."""
    return replace(target, layout=replace(target.layout, shape=None),
                   extra_columns=list(target.extra_columns))


class StoreWrites:
    """The writer's side of a sync: the store, a copy of each target, the streams whose write failed."""

    def __init__(self, store: Store, targets: Mapping[str, Target], memory_mb: int) -> None:
        self.store = store
        self.targets = {name: writer_copy(target) for name, target in targets.items()}
        store.fit_memory(memory_mb + LOAD_HEADROOM_MB)
        self._poisoned: set[str] = set()

    def load(self, stream: str, batch: BatchFile, state: JSONObject | None) -> BatchCounts:
        try:
            if stream in self._poisoned:
                raise Dropped(stream)
            try:
                return self.store.load_batch(self.targets[stream], batch, state)
            except BaseException:
                self._poisoned.add(stream)
                raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(batch.path)

    def publish(self, stream: str, state: JSONObject | None) -> BatchCounts:
        return self.store.publish(self.targets[stream], state)


class ThreadWriter:
    """The writes on one thread of this process, against `store` (which the caller keeps and closes)."""

    def __init__(self, store: Store, targets: Mapping[str, Target]) -> None:
        self._writes = StoreWrites(store, targets, store.memory_mb)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-writer")

    def load(self, stream: str, batch: BatchFile, state: JSONObject | None) -> Future[BatchCounts]:
        return self._pool.submit(self._writes.load, stream, batch, state)

    def publish(self, stream: str, state: JSONObject | None) -> Future[BatchCounts]:
        return self._pool.submit(self._writes.publish, stream, state)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class ProcessWriter:
    """The writes in a child process, which opens the DuckDB file with `opener` and owns it until
    `close`; the caller's own connection to the file must be closed in between (DuckDB lets one
    process at a time write a file).

    The child is started here, so that its imports overlap with the sync's planning; `start` hands
    it the targets once the file is free. It dies with this process (Linux: PR_SET_PDEATHSIG), so a
    killed sync never leaves the file locked behind it.
    """

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-c", f"from source_klaviyo.sync.writer import serve; serve({theirs.fileno()})"],  # noqa: E501
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env=_with_our_path(os.environ),
            )
            self._conn = Connection(ours.detach())
        self._futures: dict[int, Future[BatchCounts]] = {}
        self._lock = threading.Lock()
        self._sent = 0
        self._exited: BaseException | None = None
        self._receiver: threading.Thread | None = None
        self._closed = False
        self.peak_rss_mb: float | None = None  # the child's, once closed

    def start(self, opener: Callable[[], Store], targets: Mapping[str, Target], memory_mb: int) -> None:
        """Tell the child to open the file, without waiting for it: the child may still be importing
        DuckDB (~0.1 s), and the read's first answers are a round trip away. Opening should not fail,
        since the caller has just opened and closed the file; if it does, every write fails with what
        opening raised (e.g. another process took the file's lock in between)."""
        copies = {name: writer_copy(target) for name, target in targets.items()}
        try:
            self._conn.send(("open", opener, copies, memory_mb))
        except OSError as exc:
            raise WriterExited(self._exit_message()) from exc
        self._receiver = threading.Thread(target=self._receive, name="duckdb-writer-answers", daemon=True)
        self._receiver.start()

    def load(self, stream: str, batch: BatchFile, state: JSONObject | None) -> Future[BatchCounts]:
        return self._submit("load", (stream, batch, state))

    def publish(self, stream: str, state: JSONObject | None) -> Future[BatchCounts]:
        return self._submit("publish", (stream, state))

    def _submit(self, method: Method, args: tuple[object, ...]) -> Future[BatchCounts]:
        future: Future[BatchCounts] = Future()
        with self._lock:
            if self._exited is not None:
                future.set_exception(self._exited)
                return future
            self._sent += 1
            self._futures[self._sent] = future
            seq = self._sent
        with contextlib.suppress(OSError):  # the child is gone: its answers' reader fails the futures
            self._conn.send((seq, method, args))
        return future

    def close(self) -> None:
        """Wait for the writes handed over, then let the child close the file and exit."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._conn.send(None)
        if self._receiver is not None:
            self._receiver.join()
        else:
            with contextlib.suppress(EOFError, OSError):
                self._conn.recv()
        self._process.wait()
        self._conn.close()

    def _receive(self) -> None:
        try:
            opened, failure = self._conn.recv()  # the answer to "open", before any write's
        except (EOFError, OSError):
            opened, failure = False, None
        while opened:
            try:
                seq, ok, answer = self._conn.recv()
            except (EOFError, OSError):
                break
            if seq == 0:  # the child's goodbye: its peak RSS
                self.peak_rss_mb = answer
                continue
            with self._lock:
                future = self._futures.pop(seq)
            if ok:
                future.set_result(answer)
            else:
                future.set_exception(answer)
        exited = failure if isinstance(failure, BaseException) else WriterExited(self._exit_message())
        with self._lock:
            self._exited = exited
            pending, self._futures = self._futures, {}
        for future in pending.values():
            future.set_exception(exited)

    def _exit_message(self) -> str:
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        return f"the DuckDB writer process ended unexpectedly (exit code {code})"


# -- the child ----------------------------------------------------------------------------------


def serve(fd: int) -> None:
    """The child's main: open the store when told, run each write sent, answer each in order."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it closes us
    conn = Connection(fd)
    message = conn.recv()
    if message is None:  # closed before it was started
        return
    try:
        _, opener, targets, memory_mb = message
        writes = StoreWrites(opener(), targets, memory_mb)
    except BaseException as exc:  # whatever it was, the parent raises it
        conn.send((False, _picklable(exc)))
        return
    conn.send((True, None))
    try:
        while (message := conn.recv()) is not None:
            seq, method, args = message
            try:
                answer, ok = getattr(writes, method)(*args), True
            except BaseException as exc:  # sent to the parent, which reports it
                answer, ok = _picklable(exc), False
            conn.send((seq, ok, answer))
    except (EOFError, OSError):  # the parent is gone: nothing more to write, no one to answer
        pass
    finally:
        writes.store.close()
    with contextlib.suppress(OSError):
        conn.send((0, True, own_peak_rss_mb()))
    # The file is closed and the goodbye sent: nothing is left to do, and the parent waits for this
    # exit. The interpreter's teardown (DuckDB's module among others) took ~30 ms of that wait.
    os._exit(0)


def _with_our_path(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment with this interpreter's module path as PYTHONPATH, so that the child imports
    this very package (however this process found it) and unpickles what it is sent as it pickled."""
    return {**environ, "PYTHONPATH": os.pathsep.join(entry or os.curdir for entry in sys.path)}


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes, just made
    except Exception:  # one that does not survive the trip is described
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def own_peak_rss_mb() -> float:
    """This process's peak RSS so far (not its children's)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
