"""Fixtures of the conformance suite: one emulator, and the protocol runs every per-stream test reads.

The expensive runs (discover, a read of every stream, the read that resumes from its state) happen
once per test process; the per-stream tests only inspect them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from tests.conformance.kit import ProtocolRun, configured_from, run_protocol

API_KEY = "pk_emulator"
# A key that may read everything but tags: one stream of a read fails with a 403.
KEY_WITHOUT_TAGS = "pk_conformance_no_tags"
SCOPES_WITHOUT_TAGS = frozenset({"campaigns:read", "coupons:read", "events:read", "flows:read", "lists:read",
                                 "metrics:read", "profiles:read", "segments:read", "templates:read"})
# The emulator runs without rate limits; the client's own pacing is scaled to match (see launch.py).
TIER_SCALE = 100.0


@pytest.fixture(scope="session")
def conformance_emulator() -> Iterator[RunningEmulator]:
    options = EmulatorOptions(seed=7, scale="tiny", rate_limits=False,
                              key_scopes={KEY_WITHOUT_TAGS: SCOPES_WITHOUT_TAGS})
    with run_emulator_in_thread(options) as emu:
        yield emu


@pytest.fixture(scope="session")
def config(conformance_emulator: RunningEmulator) -> dict[str, Any]:
    # No start_date: tiny data spans years; the report streams then read from where their declarations
    # start (a year of daily series, campaigns since 2012): one day's reporting budget at most.
    return {"api_key": API_KEY, "base_url": conformance_emulator.url}


@pytest.fixture(scope="session")
def discovered(config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    run = run_protocol("discover", config=config, directory=tmp_path_factory.mktemp("discover"))
    assert run.returncode == 0, run.stderr
    catalogs = run.of_type("CATALOG")
    assert len(catalogs) == 1, [m["type"] for m in run.messages]
    return catalogs[0]["catalog"]["streams"]


@pytest.fixture(scope="session")
def by_name(discovered: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {stream["name"]: stream for stream in discovered}


@pytest.fixture(scope="session")
def first_read(config: dict[str, Any], discovered: list[dict[str, Any]],
               tmp_path_factory: pytest.TempPathFactory) -> ProtocolRun:
    """Every stream in one read, incremental where the stream supports it, without state."""
    run = run_protocol("read", config=config, catalog=configured_from(discovered), tier_scale=TIER_SCALE,
                       directory=tmp_path_factory.mktemp("first-read"))
    assert run.returncode == 0, (run.stderr, run.traces("ERROR"))
    return run


@pytest.fixture(scope="session")
def incremental_names(discovered: list[dict[str, Any]]) -> list[str]:
    return [s["name"] for s in discovered if "incremental" in s["supported_sync_modes"]]


@pytest.fixture(scope="session")
def resumed_read(config: dict[str, Any], discovered: list[dict[str, Any]], first_read: ProtocolRun,
                 incremental_names: list[str], tmp_path_factory: pytest.TempPathFactory) -> ProtocolRun:
    """The incremental streams only, fed the first read's last STATE of each (as the platform saves it)."""
    run = run_protocol("read", config=config, catalog=configured_from(discovered, incremental_names),
                       state=first_read.last_states(), tier_scale=TIER_SCALE,
                       directory=tmp_path_factory.mktemp("resumed-read"))
    assert run.returncode == 0, (run.stderr, run.traces("ERROR"))
    return run
