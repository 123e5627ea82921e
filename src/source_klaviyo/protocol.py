"""Airbyte protocol messages, written as one JSON line each (`json_codec`) to a buffered binary stream.

Messages are plain dicts; only RECORD lines take a faster path, because they are the hot path: the
`{"type":"RECORD","record":{"stream":…,"emitted_at":…,"data":` prefix is encoded once per page and
spliced around each encoded record. `raw_records` takes records that are already JSON (the engine's
raw path) and writes them as they are.

The writer flushes at every STATE message (so the platform never sees a state before the records it
covers), at every stream status (the heartbeat is one) and at `close()`.

Heartbeat: a read that has written nothing for `heartbeat_seconds` (waiting out a rate limit or a
long Retry-After, or paging slowly) writes a RUNNING stream status for every stream still in
progress (`keep_alive`), so the platform (`maxSecondsBetweenMessages`) never sees a silent
connector. The default is `HEARTBEAT_SECONDS`; the environment variable
`SOURCE_KLAVIYO_HEARTBEAT_SECONDS` overrides it (tests use a fraction of a second).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from typing import BinaryIO

from .contracts import JSONObject
from .errors import SourceError
from .json_codec import dumps

_RECORD_SUFFIX = b"}}\n"
HEARTBEAT_SECONDS = 30.0  # the longest silence of a read; Airbyte's maxSecondsBetweenMessages is 600
HEARTBEAT_ENV = "SOURCE_KLAVIYO_HEARTBEAT_SECONDS"


def now_ms() -> int:
    return int(time.time() * 1000)


def trace_error_message(error: SourceError, stream: str | None = None) -> JSONObject:
    """A TRACE ERROR message; `stack_trace` only for system errors (bugs), never with a key in it."""
    trace: JSONObject = {
        "message": error.message,
        "internal_message": error.internal_message or error.message,
        "failure_type": error.failure_type,
    }
    if stream is not None:
        trace["stream_descriptor"] = {"name": stream}
    if error.failure_type == "system_error" and error.__traceback__ is not None:
        trace["stack_trace"] = "".join(traceback.format_exception(error))
    return {"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": now_ms(), "error": trace}}


def _record_prefix(stream: str) -> bytes:
    """Everything of a RECORD line before its data; one per batch, so a record costs one splice."""
    return (
        b'{"type":"RECORD","record":{"stream":'
        + dumps(stream)
        + b',"emitted_at":'
        + str(now_ms()).encode()
        + b',"data":'
    )


class MessageWriter:
    """Writes protocol messages to `out` (stdout's buffer by default)."""

    def __init__(self, out: BinaryIO | None = None) -> None:
        self._out = out if out is not None else sys.stdout.buffer
        self.last_write = time.monotonic()  # what the heartbeat measures silence by

    # -- records: the hot path ------------------------------------------------------------------
    def records(self, stream: str, records: list[JSONObject]) -> None:
        if not records:
            return
        prefix = _record_prefix(stream)
        suffix = _RECORD_SUFFIX
        lines: list[bytes] = []
        append = lines.append
        for record in records:
            append(prefix + dumps(record) + suffix)
        self._out.write(b"".join(lines))
        self.last_write = time.monotonic()

    def raw_records(self, stream: str, records: list[bytes]) -> None:
        """Records that are already JSON objects (the engine's raw path): spliced, never re-encoded."""
        if not records:
            return
        prefix = _record_prefix(stream)
        # Three writes, not `prefix + joined + suffix`: each `+` copied the page's ~1 MB of lines again
        # (the read's CPU fell 4 % without them; docs/performance.md).
        write = self._out.write
        write(prefix)
        write((_RECORD_SUFFIX + prefix).join(records))
        write(_RECORD_SUFFIX)
        self.last_write = time.monotonic()

    # -- everything else --------------------------------------------------------------------------
    def write(self, message: JSONObject, *, flush: bool = False) -> None:
        self._out.write(dumps(message) + b"\n")
        self.last_write = time.monotonic()
        if flush:
            self._out.flush()

    def state(self, stream: str, stream_state: JSONObject, record_count: int) -> None:
        self.write(
            {
                "type": "STATE",
                "state": {
                    "type": "STREAM",
                    "stream": {"stream_descriptor": {"name": stream}, "stream_state": stream_state},
                    "sourceStats": {"recordCount": float(record_count)},
                },
            },
            flush=True,
        )

    def stream_status(self, stream: str, status: str) -> None:
        self.write(
            {
                "type": "TRACE",
                "trace": {
                    "type": "STREAM_STATUS",
                    "emitted_at": now_ms(),
                    "stream_status": {"stream_descriptor": {"name": stream}, "status": status},
                },
            },
            flush=True,  # rare, and the heartbeat: the platform must see it now, not when a buffer fills
        )

    def error(self, stream: str | None, error: SourceError) -> None:
        self.write(trace_error_message(error, stream), flush=True)

    def log(self, level: str, message: str) -> None:
        self.write({"type": "LOG", "log": {"level": level.upper(), "message": message}})

    def spec(self, specification: JSONObject) -> None:
        self.write({"type": "SPEC", "spec": specification})

    def connection_status(self, succeeded: bool, message: str | None = None) -> None:
        status: JSONObject = {"status": "SUCCEEDED" if succeeded else "FAILED"}
        if message:
            status["message"] = message
        self.write({"type": "CONNECTION_STATUS", "connectionStatus": status})

    def catalog(self, catalog: JSONObject) -> None:
        self.write({"type": "CATALOG", "catalog": catalog})

    def control_config(self, config: JSONObject) -> None:
        self.write(
            {
                "type": "CONTROL",
                "control": {
                    "type": "CONNECTOR_CONFIG",
                    "emitted_at": now_ms(),
                    "connectorConfig": {"config": config},
                },
            },
            flush=True,
        )

    def flush(self) -> None:
        self._out.flush()


def heartbeat_seconds_from_env() -> float:
    """`SOURCE_KLAVIYO_HEARTBEAT_SECONDS` when it is a positive number, else `HEARTBEAT_SECONDS`."""
    try:
        seconds = float(os.environ.get(HEARTBEAT_ENV, HEARTBEAT_SECONDS))
    except ValueError:
        return HEARTBEAT_SECONDS
    return seconds if seconds > 0 else HEARTBEAT_SECONDS


async def keep_alive(writer: MessageWriter, in_progress: Callable[[], Iterable[str]], seconds: float) -> None:
    """Until cancelled: whenever `writer` has been silent for `seconds`, a RUNNING status for each
    stream `in_progress()` names."""
    while True:
        silent = time.monotonic() - writer.last_write
        if silent >= seconds:
            for stream in in_progress():
                writer.stream_status(stream, "RUNNING")
            silent = 0.0
        await asyncio.sleep(seconds - silent)
