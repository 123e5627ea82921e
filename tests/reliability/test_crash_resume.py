"""SIGKILL `source-klaviyo read` at seeded points of its output, restart from the last STATE each stream
emitted: the union of records is the truth, and records come twice only within the last checkpoint
interval. (`sync` into DuckDB, which must end exact, is killed the same way in
tests/sync/test_crash_resume.py.)"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from source_klaviyo.catalog import configured_catalog
from source_klaviyo.errors import SourceError
from tests.connector.helpers import CollectingSink
from tests.reliability.helpers import (
    assert_duplicates_within_the_last_checkpoint_interval,
    duplicates,
    expected_keys,
    keys_read,
    re_read_below_the_saved_cursor,
)
from tests.truth import PLAIN_INCREMENTAL

ANCHOR = datetime(2026, 6, 1, 12, tzinfo=UTC)  # every record, even the "future" ones, is in our past
KILLS = 22


@pytest.fixture(scope="module")
def slow_emulator() -> Iterator[RunningEmulator]:
    # Latency spreads a read over time so that output arrives page by page and kills land mid-stream.
    with run_emulator_in_thread(EmulatorOptions(seed=29, scale="tiny", rate_limits=False, latency_ms=4,
                                                anchor=ANCHOR)) as emu:
        yield emu


def parse_run(lines: list[bytes]) -> CollectingSink:
    """The protocol lines a run got out before it died, replayed into a CollectingSink."""
    sink = CollectingSink()
    for line in lines:
        message = json.loads(line)
        if message["type"] == "RECORD":
            sink.records(message["record"]["stream"], [message["record"]["data"]])
        elif message["type"] == "STATE":
            stream = message["state"]["stream"]
            sink.state(stream["stream_descriptor"]["name"], stream["stream_state"], 0)
        elif message["type"] == "TRACE" and message["trace"]["type"] == "STREAM_STATUS":
            status = message["trace"]["stream_status"]
            sink.stream_status(status["stream_descriptor"]["name"], status["status"])
        elif message["type"] == "TRACE" and message["trace"]["type"] == "ERROR":
            sink.error(None, SourceError(message["trace"]["error"]["message"]))
    return sink


def run_read(
    tmp: Path, url: str, state: dict[str, dict], kill_after: int | None
) -> tuple[CollectingSink, bool]:
    """One `read`; SIGKILLed once `kill_after` protocol lines were received. Returns what it wrote and
    whether it was killed (False: it finished first)."""
    (tmp / "config.json").write_text(json.dumps({"api_key": "pk_emulator", "base_url": url}))
    (tmp / "catalog.json").write_text(json.dumps(configured_catalog(list(PLAIN_INCREMENTAL))))
    argv = [sys.executable, "-m", "source_klaviyo", "read", "--config", str(tmp / "config.json"),
            "--catalog", str(tmp / "catalog.json")]
    if state:
        messages = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": name}, "stream_state": value}}
                    for name, value in state.items()]
        (tmp / "state.json").write_text(json.dumps(messages))
        argv += ["--state", str(tmp / "state.json")]
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    lines: list[bytes] = []
    killed = False
    for line in process.stdout:
        lines.append(line)
        if kill_after is not None and len(lines) >= kill_after and not killed:
            os.kill(process.pid, signal.SIGKILL)
            killed = True  # keep reading: what it wrote before dying is in the pipe
    process.wait(timeout=60)
    if not killed:
        assert process.returncode == 0
    complete = [line for line in lines if line.endswith(b"\n")]  # a line cut by the kill is lost
    return parse_run(complete), killed


def test_reads_killed_at_random_points_resume_to_exactly_the_truth(slow_emulator: RunningEmulator,
                                                                   tmp_path: Path) -> None:
    baseline, _ = run_read(tmp_path, slow_emulator.url, {}, None)
    for stream in PLAIN_INCREMENTAL:
        assert set(keys_read(baseline, stream)) == expected_keys(slow_emulator, stream), stream
    total = sum(len(baseline.by_stream.get(stream, [])) for stream in PLAIN_INCREMENTAL)

    rng = random.Random(8)
    kills = chains = resumed_from_state = 0
    while kills < KILLS:
        chains += 1
        state: dict[str, dict] = {}
        runs: list[CollectingSink] = []
        while True:
            # Kill points are counted in output lines: early, late, and in between.
            point = rng.choice([rng.randrange(1, 40), rng.randrange(1, max(2, total // 3)),
                                rng.randrange(1, total)])
            sink, killed = run_read(tmp_path, slow_emulator.url, state, point)
            if runs:
                check_resumed_run(slow_emulator, runs, state, sink)
            runs.append(sink)
            for stream in PLAIN_INCREMENTAL:
                if sink.final_state(stream) is not None:
                    state[stream] = sink.final_state(stream)
            if not killed:
                break
            kills += 1
            resumed_from_state += bool(sink.states)
            assert len(runs) < 40, "resumed reads make no progress"
        for stream in PLAIN_INCREMENTAL:
            union = {key for run in runs for key in keys_read(run, stream)}
            assert union == expected_keys(slow_emulator, stream), f"chain {chains}: {stream}"
    assert chains >= 2
    assert resumed_from_state >= KILLS // 3, "too few kills landed after a checkpoint"


def check_resumed_run(
    emu: Any, runs: list[CollectingSink], state: dict[str, dict], resumed: CollectingSink
) -> None:
    """What `resumed` (started from `state`) emitted again: never below the saved cursor, and within the
    bound of the killed run before it; no duplicate inside the run itself."""
    for stream in PLAIN_INCREMENTAL:
        again = keys_read(resumed, stream)
        assert not duplicates(again), f"{stream}: a record twice within one read"
        earlier = {key for run in runs for key in keys_read(run, stream)}
        twice = set(again) & earlier
        if stream in state:
            below = re_read_below_the_saved_cursor(emu, stream, state[stream], twice)
            assert not below, f"{stream}: re-read below the saved cursor: {below[:3]}"
        last = runs[-1]
        assert_duplicates_within_the_last_checkpoint_interval(
            emu, last, stream, twice & set(keys_read(last, stream))
        )
