"""SIGKILL a sync at seeded points (counted in committed checkpoints), restart it: the file ends exact."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from source_klaviyo.datetimes import utc_now
from source_klaviyo.streams import TIERS, Stream
from tests.sync.helpers import landed, table_rows, truth
from tests.truth import TRUTHS, one_per_shape


def slowly_paced(stream: Stream) -> bool:
    """Bound by a tier under M's 150 requests a minute (S, XS), which the subprocess paces at Klaviyo's
    real speed: at tiny scale, minutes of waiting."""
    tiers = [stream.tier, *([stream.detail.tier] if stream.detail else [])]
    return any(TIERS[tier].steady_per_minute < TIERS["M"].steady_per_minute for tier in tiers)


# A stream of each read shape (partitioned, split into chains and plain cursors, a parent fan-out, a
# full refresh), none that a slow tier holds back.
STREAMS = one_per_shape(name for name, expected in TRUTHS.items() if not slowly_paced(expected.stream))


@pytest.fixture
def slow_emulator() -> Iterator[RunningEmulator]:
    # Latency spreads the read over many checkpoints so that kills land mid-stream.
    with run_emulator_in_thread(
        EmulatorOptions(seed=23, scale="tiny", rate_limits=False, latency_ms=15)
    ) as emu:
        yield emu


def start_sync(config: Path, db: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "source_klaviyo.sync", "sync", "--config", str(config), "--db", str(db),
         "--streams", ",".join(STREAMS), "--quiet", "--checkpoint-log", str(log), "--flush-records", "1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def kill_after(process: subprocess.Popen[bytes], log: Path, checkpoints: int) -> bool:
    """SIGKILL once `checkpoints` more commits are logged; False if the sync finished first."""
    target = lines(log) + checkpoints
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if lines(log) >= target:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.005)
    process.kill()
    raise AssertionError("the sync made no progress")


def snapshot(db: Path) -> dict[str, list[tuple]]:
    return {
        stream: table_rows(db, stream, ", ".join([*TRUTHS[stream].key, "_sync_id IS NOT NULL"]))
        for stream in STREAMS
    }


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_killed_syncs_resume_to_exactly_the_ground_truth(slow_emulator: RunningEmulator, tmp_path: Path,
                                                         seed: int) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"api_key": "pk_emulator", "base_url": slow_emulator.url}))
    read_at = utc_now()

    baseline_db, baseline_log = tmp_path / "baseline.duckdb", tmp_path / "baseline.log"
    baseline = start_sync(config, baseline_db, baseline_log)
    assert baseline.wait(timeout=300) == 0, baseline.stderr.read() if baseline.stderr else ""
    total = lines(baseline_log)
    assert total >= 10, "too few checkpoints to kill in between"

    db, log = tmp_path / "crashed.duckdb", tmp_path / "crashed.log"
    rng = random.Random(seed)
    kills = 0
    for _ in range(3):
        if kill_after(start_sync(config, db, log), log, rng.randrange(1, max(2, total // 3))):
            kills += 1
    assert kills >= 2, "the sync finished before it could be killed"
    final = start_sync(config, db, log)
    assert final.wait(timeout=300) == 0, final.stderr.read() if final.stderr else ""

    assert snapshot(db) == snapshot(baseline_db)
    for stream in STREAMS:
        assert landed(db, stream) == truth(slow_emulator, stream, read_at), stream


def test_an_interrupted_sync_says_so_without_a_traceback_and_the_next_one_lands_the_truth(
    slow_emulator: RunningEmulator, tmp_path: Path
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"api_key": "pk_emulator", "base_url": slow_emulator.url}))
    read_at = utc_now()
    db, log = tmp_path / "k.duckdb", tmp_path / "k.log"
    sync = start_sync(config, db, log)
    deadline = time.monotonic() + 120
    while lines(log) < 2 and sync.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    sync.send_signal(signal.SIGINT)  # Ctrl-C
    _, stderr = sync.communicate(timeout=60)
    assert sync.returncode == 130, stderr.decode()
    said = stderr.decode()
    assert "Traceback" not in said
    assert said.strip().splitlines()[-1] == (  # after the progress lines
        f"source-klaviyo sync: interrupted. {db} holds each stream as of its last checkpoint; "
        "the same command continues from there."
    )
    again = start_sync(config, db, log)
    assert again.wait(timeout=300) == 0, again.stderr.read() if again.stderr else ""
    for stream in STREAMS:
        assert landed(db, stream) == truth(slow_emulator, stream, read_at), stream
