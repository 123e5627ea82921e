"""Shared fixtures: the Klaviyo API emulator, started in-process on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread

REPO_ROOT = Path(__file__).resolve().parents[1]
# CI clones the repo with shared/ beside it; the OpenAPI spec is read from there, never copied in.
OPENAPI_SPEC = REPO_ROOT.parent / "shared" / "reference" / "klaviyo-openapi" / "stable.json"


@pytest.fixture(scope="session")
def emulator() -> Iterator[RunningEmulator]:
    """A tiny-scale emulator without rate limits, shared by read-only tests of a session."""
    with run_emulator_in_thread(EmulatorOptions(seed=7, scale="tiny", rate_limits=False)) as emu:
        yield emu


@pytest.fixture
def fresh_emulator() -> Iterator[RunningEmulator]:
    """An emulator of its own for a test that mutates data or counts requests."""
    with run_emulator_in_thread(EmulatorOptions(seed=11, scale="tiny", rate_limits=False)) as emu:
        yield emu
