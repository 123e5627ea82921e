"""The conformance kit: run `source-klaviyo` the way the Airbyte platform does, and the platform's
checks of what it printed, reusable for any stream.

`run_protocol` writes config, catalog and state to files, starts the command as a subprocess, reads
stdout line by line (noting when each line arrived) and validates every line as one
`airbyte_protocol.models.AirbyteMessage`. The `check_*` functions are the per-stream expectations;
each takes a finished run and a stream name and fails with a message naming what is wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from airbyte_protocol.models import AirbyteMessage

from source_klaviyo.datetimes import parse_datetime
from tests.conformance.launch import TIER_SCALE_ENV

LAUNCHER = Path(__file__).with_name("launch.py")
CONSOLE_SCRIPT = Path(sys.executable).with_name("source-klaviyo")
TERMINAL = ("COMPLETE", "INCOMPLETE")


def parse_message(line: bytes) -> dict[str, Any]:
    """One stdout line: exactly one JSON object that the Airbyte protocol models accept."""
    message = json.loads(line)
    try:
        AirbyteMessage.model_validate(message)
    except Exception as exc:  # pydantic's ValidationError; the line is the useful part
        raise AssertionError(f"not an AirbyteMessage: {exc}\n{line[:500]!r}") from None
    return message


@dataclass
class ProtocolRun:
    argv: list[str]
    returncode: int
    messages: list[dict[str, Any]]
    arrivals: list[float]  # time.monotonic() when each message's line was read
    stderr: str
    started_ms: int
    ended_ms: int
    files: dict[str, Path] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == type_]

    def traces(self, kind: str) -> list[dict[str, Any]]:
        return [m["trace"] for m in self.of_type("TRACE") if m["trace"]["type"] == kind]

    def records(self, stream: str) -> list[dict[str, Any]]:
        return [m["record"] for m in self.of_type("RECORD") if m["record"]["stream"] == stream]

    def streams_with_records(self) -> set[str]:
        return {m["record"]["stream"] for m in self.of_type("RECORD")}

    def states(self, stream: str) -> list[dict[str, Any]]:
        """The STATE messages of `stream` (per-stream states), in order."""
        return [m["state"] for m in self.of_type("STATE")
                if m["state"].get("type") == "STREAM"
                and m["state"]["stream"]["stream_descriptor"]["name"] == stream]

    def last_states(self) -> list[dict[str, Any]]:
        """What the platform saves after the run: the last STATE message of each stream."""
        last: dict[str, dict[str, Any]] = {}
        for message in self.of_type("STATE"):
            last[message["state"]["stream"]["stream_descriptor"]["name"]] = message["state"]
        return list(last.values())

    def statuses(self, stream: str) -> list[str]:
        return [t["stream_status"]["status"] for t in self.traces("STREAM_STATUS")
                if t["stream_status"]["stream_descriptor"]["name"] == stream]

    def gaps(self) -> list[float]:
        """Seconds between consecutive messages' arrival (the platform's heartbeat measure)."""
        return [later - earlier for earlier, later in zip(self.arrivals, self.arrivals[1:], strict=False)]


def run_protocol(command: str, *, config: dict[str, Any] | None = None, catalog: dict[str, Any] | None = None,
                 state: list[dict[str, Any]] | None = None, directory: Path | None = None,
                 env: dict[str, str] | None = None, tier_scale: float | None = None,
                 timeout: float = 120) -> ProtocolRun:
    """Run `source-klaviyo COMMAND --config … --catalog … --state …` like the platform.

    `tier_scale` runs the same entry point through `launch.py` with Klaviyo's tiers scaled (for reads
    of every stream against an emulator without rate limits); otherwise the console script runs."""
    directory = Path(directory or tempfile.mkdtemp(prefix="conformance-"))
    files: dict[str, Path] = {}
    argv = [str(CONSOLE_SCRIPT), command] if tier_scale is None else [sys.executable, str(LAUNCHER), command]
    for name, content in (("config", config), ("catalog", catalog), ("state", state)):
        if content is not None:
            files[name] = directory / f"{command}-{name}.json"
            files[name].write_text(json.dumps(content))
            argv += [f"--{name}", str(files[name])]
    environment = {**os.environ, **(env or {})}
    if tier_scale is not None:
        environment[TIER_SCALE_ENV] = str(tier_scale)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(LAUNCHER.parents[2]),
                                                                  environment.get("PYTHONPATH")]))
    messages: list[dict[str, Any]] = []
    arrivals: list[float] = []
    started_ms = int(time.time() * 1000)
    with tempfile.TemporaryFile() as stderr, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr,
                                                              env=environment) as process:
        deadline = time.monotonic() + timeout
        assert process.stdout is not None
        try:
            for line in process.stdout:
                arrivals.append(time.monotonic())
                if arrivals[-1] > deadline:
                    raise AssertionError(f"{command} ran longer than {timeout} s")
                if line.strip():
                    messages.append(parse_message(line))
                else:
                    arrivals.pop()
            returncode = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if process.poll() is None:
                process.kill()
        ended_ms = int(time.time() * 1000)
        stderr.seek(0)
        errors = stderr.read().decode("utf-8", "replace")
    return ProtocolRun(argv, returncode, messages, arrivals, errors, started_ms, ended_ms, files)


# -- the catalog ---------------------------------------------------------------------------------------
def configured_from(discovered: list[dict[str, Any]], names: list[str] | None = None) -> dict[str, Any]:
    """The configured catalog a platform user builds from `discover`: incremental | append_dedup with
    the source-defined cursor and key where the stream supports it, else full_refresh | overwrite."""
    streams = []
    for stream in discovered:
        if names is not None and stream["name"] not in names:
            continue
        incremental = "incremental" in stream["supported_sync_modes"]
        streams.append({
            "stream": stream,
            "sync_mode": "incremental" if incremental else "full_refresh",
            "destination_sync_mode": "append_dedup" if incremental else "overwrite",
            "cursor_field": stream.get("default_cursor_field", []) if incremental else [],
            "primary_key": stream.get("source_defined_primary_key", []),
        })
    return {"streams": streams}


def schema_at(schema: dict[str, Any], path: list[str]) -> dict[str, Any] | None:
    """The subschema of a property path (`["attributes", "updated"]`), or None when it is not declared."""
    node: dict[str, Any] | None = schema
    for part in path:
        properties = (node or {}).get("properties") or {}
        node = properties.get(part)
        if node is None:
            return None
    return node


@cache
def validator_for(schema_text: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(schema_text))


# -- per-stream checks -----------------------------------------------------------------------------
def check_catalog_entry(stream: dict[str, Any]) -> None:
    """Draft-07 schema; cursor and every primary-key path declared; sync modes agree with the cursor."""
    name, schema = stream["name"], stream["json_schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema.get("type") == "object" or "object" in (schema.get("type") or []), (
        f"{name}: not an object schema"
    )
    key = stream.get("source_defined_primary_key")
    assert key, f"{name}: no source-defined primary key"
    for path in key:
        assert schema_at(schema, path) is not None, f"{name}: primary key {path} is not in the schema"
    modes = stream["supported_sync_modes"]
    assert "full_refresh" in modes, f"{name}: {modes}"
    assert set(modes) <= {"full_refresh", "incremental"}, f"{name}: {modes}"
    if "incremental" in modes:
        assert stream.get("source_defined_cursor") is True, f"{name}: incremental without a source cursor"
        cursor = stream.get("default_cursor_field")
        assert cursor, f"{name}: incremental without a default cursor field"
        assert schema_at(schema, cursor) is not None, f"{name}: cursor {cursor} is not in the schema"
    else:
        assert not stream.get("source_defined_cursor"), f"{name}: a cursor without incremental"


def check_status_sequence(run: ProtocolRun, stream: str, final: str = "COMPLETE") -> None:
    """STARTED, then only RUNNING (the first before the first record), then one terminal status; the
    stream's records come between STARTED and the terminal status."""
    indexed = [(i, m["trace"]["stream_status"]["status"]) for i, m in enumerate(run.messages)
               if m["type"] == "TRACE" and m["trace"]["type"] == "STREAM_STATUS"
               and m["trace"]["stream_status"]["stream_descriptor"]["name"] == stream]
    statuses = [status for _, status in indexed]
    assert statuses, f"{stream}: statuses {statuses}"
    assert statuses[0] == "STARTED", f"{stream}: statuses {statuses}"
    assert statuses[-1] == final, f"{stream}: ended {statuses[-1]}, expected {final}"
    assert set(statuses[1:-1]) <= {"RUNNING"}, f"{stream}: statuses {statuses}"
    positions = [
        i for i, m in enumerate(run.messages) if m["type"] == "RECORD" and m["record"]["stream"] == stream
    ]
    if positions:
        running = [i for i, status in indexed if status == "RUNNING"]
        assert running, f"{stream}: a record before RUNNING"
        assert running[0] < positions[0], f"{stream}: a record before RUNNING"
        assert indexed[0][0] < positions[0], f"{stream}: records outside its run"
        assert positions[-1] < indexed[-1][0], f"{stream}: records outside its run"


def check_records_match_schema(run: ProtocolRun, stream: str, schema: dict[str, Any],
                               key: list[list[str]]) -> None:
    """Every record validates against its stream's schema, carries its key, and has `emitted_at` in ms
    within the run; a primary key is emitted once."""
    validator = validator_for(json.dumps(schema, sort_keys=True))
    seen: set[str] = set()
    for record in run.records(stream):
        assert isinstance(record["emitted_at"], int), f"{stream}: emitted_at {record['emitted_at']!r}"
        assert run.started_ms <= record["emitted_at"] <= run.ended_ms, (
            f"{stream}: emitted_at not in ms of the run"
        )
        data = record["data"]
        errors = list(validator.iter_errors(data))
        assert not errors, f"{stream}: {errors[0].message} at {list(errors[0].absolute_path)} in {data}"
        values = [_at(data, path) for path in key]
        assert all(value is not None for value in values), f"{stream}: record without its key {key}: {data}"
        identity = json.dumps(values)
        assert identity not in seen, f"{stream}: primary key {values} emitted twice in one read"
        seen.add(identity)


def _at(data: dict[str, Any], path: list[str]) -> Any:
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None  # type: ignore[assignment]
    return data


def state_cursors(stream_state: dict[str, Any], cursor: str) -> list[datetime]:
    """The cursor values of a 3.0.0 stream state: one, or one per partition."""
    if "states" in stream_state:
        return [parse_datetime(entry["cursor"][cursor]) for entry in stream_state["states"]]
    return [parse_datetime(stream_state[cursor])]


def check_state_round_trip(first: ProtocolRun, second: ProtocolRun, stream: str, cursor: str) -> None:
    """Fed the first run's last state, the second run emits no record older than it and ends with the
    same or a newer state (every partition's cursor)."""
    before = first.states(stream)
    assert before, f"{stream}: an incremental read emitted no STATE"
    saved = before[-1]["stream"]["stream_state"]
    floor = min(state_cursors(saved, cursor))
    older = [r["data"]["id"] if "id" in r["data"] else r["data"] for r in second.records(stream)
             if parse_datetime(r["data"][cursor]) < floor]
    assert not older, f"{stream}: {len(older)} records older than the saved state {saved}, e.g. {older[:3]}"
    after = second.states(stream)
    assert after, f"{stream}: a read from state emitted no STATE"
    final = after[-1]["stream"]["stream_state"]
    if "states" in saved:
        new = {
            json.dumps(e["partition"], sort_keys=True): parse_datetime(e["cursor"][cursor])
            for e in final["states"]
        }
        for entry in saved["states"]:
            partition = json.dumps(entry["partition"], sort_keys=True)
            assert partition in new, f"{stream}: partition {partition} lost its state"
            assert new[partition] >= parse_datetime(entry["cursor"][cursor]), f"{stream}: {saved} -> {final}"
    else:
        assert parse_datetime(final[cursor]) >= parse_datetime(saved[cursor]), f"{stream}: {saved} -> {final}"


def check_error_trace(trace: dict[str, Any]) -> None:
    """An ERROR trace the platform can show: a user-facing message, an internal one, a failure type."""
    error = trace["error"]
    assert isinstance(error.get("message"), str), trace
    assert error["message"].strip(), trace
    assert isinstance(error.get("internal_message"), str), trace
    assert error["internal_message"].strip(), trace
    assert error.get("failure_type") in ("config_error", "system_error", "transient_error"), trace
