"""Shared helpers of the connector suite: run the CLI in a subprocess, or the engine in-process."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema

from source_klaviyo.catalog import ConfiguredStream, configured_catalog, parse_configured_catalog
from source_klaviyo.checkpoints import UPPER_MARGIN
from source_klaviyo.config import parse_config
from source_klaviyo.datetimes import ONE_SECOND, utc_now
from source_klaviyo.engine import ReadResult, read_streams
from source_klaviyo.errors import SourceError
from source_klaviyo.http import KlaviyoClient
from source_klaviyo.schemas import load_schema

API_KEY = "pk_emulator"

_INSTANTS = jsonschema.FormatChecker(formats=())


@_INSTANTS.checks("date-time", raises=ValueError)
def _an_instant(value: object) -> bool:
    """A `date-time` is any form the DuckDB sync's TIMESTAMPTZ columns and `parse_datetime` read as an
    instant: `T` or a space, whole seconds or a fraction, always an offset (Klaviyo writes all four)."""
    if isinstance(value, str) and datetime.fromisoformat(value).tzinfo is None:
        raise ValueError(f"{value!r} has no offset")
    return True


def record_validator(stream: str) -> jsonschema.Draft7Validator:
    """The stream's declared schema, with its `date-time` formats checked (`_an_instant`)."""
    return jsonschema.Draft7Validator(load_schema(stream), format_checker=_INSTANTS)

# The emulator stamps mutations with the real now; a read right after would leave them for later
# (the upper bound is now - UPPER_MARGIN). Tests read with a clock that far ahead instead of sleeping.
def clock_ahead() -> datetime:
    return utc_now() + UPPER_MARGIN + 2 * ONE_SECOND


def config_for(url: str, **extra: Any) -> dict[str, Any]:
    return {"api_key": API_KEY, "base_url": url, **extra}


@dataclass
class CollectingSink:
    """A Sink that keeps everything, in order, for assertions."""

    events: list[tuple[str, Any]] = field(default_factory=list)
    by_stream: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    states: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    statuses: dict[str, list[str]] = field(default_factory=dict)
    errors: list[tuple[str | None, SourceError]] = field(default_factory=list)

    def records(self, stream: str, records: list[dict]) -> None:
        # Copy: the engine may reuse nothing, but a test must see what was emitted at that moment.
        self.by_stream.setdefault(stream, []).extend(copy.deepcopy(records))
        self.events.append(("records", (stream, len(records))))

    def state(self, stream: str, stream_state: dict, record_count: int) -> None:
        self.states.setdefault(stream, []).append(json.loads(json.dumps(stream_state)))
        self.events.append(("state", (stream, stream_state, record_count)))

    def stream_status(self, stream: str, status: str) -> None:
        self.statuses.setdefault(stream, []).append(status)
        self.events.append(("status", (stream, status)))

    def error(self, stream: str | None, error: SourceError) -> None:
        self.errors.append((stream, error))
        self.events.append(("error", (stream, error)))

    def log(self, level: str, message: str) -> None:
        self.events.append(("log", (level, message)))

    def ids(self, stream: str) -> list[str]:
        return [record["id"] for record in self.by_stream.get(stream, [])]

    def final_state(self, stream: str) -> dict[str, Any] | None:
        states = self.states.get(stream)
        return states[-1] if states else None


def configured(names: list[str], sync_mode: str = "incremental") -> list[ConfiguredStream]:
    return parse_configured_catalog(configured_catalog(names, sync_mode))  # type: ignore[arg-type]


class InstantClock:
    """Simulated time for the client's pacing: sleeping only moves the clock (the emulators of this
    suite have no rate limits, and the limiter's own behaviour is tested in test_ratelimit.py)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    async def sleep(self, seconds: float) -> None:
        self.offset += max(0.0, seconds)
        await asyncio.sleep(0)


def read_in_process(url: str, names: list[str], *, sync_mode: str = "incremental",
                    state: dict[str, dict] | None = None, clock: Callable[[], datetime] = utc_now,
                    api_key: str = API_KEY, client_class: type[KlaviyoClient] = KlaviyoClient,
                    pacing: InstantClock | None = None,
                    **config_extra: Any) -> tuple[CollectingSink, ReadResult]:
    """Read `names` with the engine in-process into a CollectingSink; the client paces on `pacing`
    (a fresh InstantClock by default), whose offset tells how long the read waited in virtual time."""
    config, _ = parse_config({**config_for(url, **config_extra), "api_key": api_key})
    sink = CollectingSink()

    async def read() -> ReadResult:
        async with client_class(config, clock=pacing or InstantClock()) as client:
            return await read_streams(config, configured(names, sync_mode), state or {}, sink,
                                      client=client, clock=clock)

    return sink, asyncio.run(read())


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    messages: list[dict[str, Any]]

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == type_]

    def records(self, stream: str | None = None) -> list[dict[str, Any]]:
        return [m["record"]["data"] for m in self.of_type("RECORD")
                if stream is None or m["record"]["stream"] == stream]

    def traces(self, kind: str) -> list[dict[str, Any]]:
        return [m["trace"] for m in self.of_type("TRACE") if m["trace"]["type"] == kind]


def run_cli(*args: str, files: dict[str, Any] | None = None, tmp_path: Path | None = None,
            timeout: float = 120) -> CliRun:
    """Run `python -m source_klaviyo ARGS`; `files` are written to tmp_path and `{name}` in ARGS replaced."""
    argv = list(args)
    for name, content in (files or {}).items():
        assert tmp_path is not None
        path = tmp_path / f"{name}.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        argv = [str(path) if arg == f"{{{name}}}" else arg for arg in argv]
    done = subprocess.run([sys.executable, "-m", "source_klaviyo", *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)
    messages = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return CliRun(done.returncode, done.stdout, done.stderr, messages)
