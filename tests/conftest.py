"""Shared fixtures: the Klaviyo API emulator, started in-process on a free loopback port."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from source_klaviyo.transport import is_transport_variable

REPO_ROOT = Path(__file__).resolve().parents[1]
# Reference data lives in the repository (reference/, derived by tools/derive_reference.py).
REFERENCE = REPO_ROOT / "reference"
OPENAPI_SPEC = REFERENCE / "klaviyo-openapi" / "stable.json"


# CI (.ci/run) sets this: a skipped test fails the run, so a file missing from the clone, a tool
# missing from the machine or a test skipped by mistake cannot pass unseen.
NO_SKIPS = "SOURCE_KLAVIYO_NO_SKIPS"


# Where pytest_configure keeps the variables it removes: the environment, under this prefix, so that
# xdist workers (started after the controller removed them) have them too.
MACHINE_VARIABLE = "SOURCE_KLAVIYO_TESTS_MACHINE_"


def pytest_configure(config: pytest.Config) -> None:
    """The suite talks only to servers it starts on loopback: the proxy and CA variables of the machine
    running it (HTTPS_PROXY, NO_PROXY, SSL_CERT_FILE, ... of a developer behind a proxy, or of CI) must
    not route its connections. They are removed for the whole run (xdist workers run this too); the
    tests of those variables set them with monkeypatch (tests/network/). A test whose subprocess
    reaches a package registry (uv) gets them back from `machine_network_environment`."""
    for name in [name for name in os.environ if is_transport_variable(name)]:
        os.environ[MACHINE_VARIABLE + name] = os.environ.pop(name)


@pytest.fixture(scope="session")
def machine_network_environment() -> dict[str, str]:
    """The proxy and CA variables the machine had before the suite removed them."""
    return {name.removeprefix(MACHINE_VARIABLE): value for name, value in os.environ.items()
            if name.startswith(MACHINE_VARIABLE)}


def _skipped(config: pytest.Config) -> list[Any]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return list(reporter.stats.get("skipped", [])) if reporter is not None else []


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if os.environ.get(NO_SKIPS) == "1" and _skipped(config):
        count = len(_skipped(config))
        terminalreporter.write_line(
            f"{NO_SKIPS}=1: {count} skipped test(s) fail the run (reasons in the short test summary)",
            red=True,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get(NO_SKIPS) != "1" or hasattr(session.config, "workerinput"):
        return
    if _skipped(session.config) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def emulator() -> Iterator[RunningEmulator]:
    """A tiny-scale emulator without rate limits, shared by read-only tests of a session."""
    with run_emulator_in_thread(EmulatorOptions(seed=7, scale="tiny", rate_limits=False)) as emu:
        yield emu


@pytest.fixture(scope="session")
def strict_emulator() -> Iterator[RunningEmulator]:
    """The same account as `emulator`, served with the spec's shapes (`--spec-strict`: no quirks)."""
    options = EmulatorOptions(seed=7, scale="tiny", rate_limits=False, spec_strict=True)
    with run_emulator_in_thread(options) as emu:
        yield emu


@pytest.fixture
def fresh_emulator() -> Iterator[RunningEmulator]:
    """An emulator of its own for a test that mutates data or counts requests."""
    with run_emulator_in_thread(EmulatorOptions(seed=11, scale="tiny", rate_limits=False)) as emu:
        yield emu


# Archived campaigns come back slightly unsorted (the emulator's default, as Klaviyo's): medium scale
# has 37 archived campaigns per channel, many pages at a small page size.
CAMPAIGNS_ANCHOR = datetime(2026, 6, 1, 12, tzinfo=UTC)


@contextmanager
def campaigns_emulator(**overrides: Any) -> Iterator[RunningEmulator]:
    options = EmulatorOptions(seed=5, scale="medium", rate_limits=False, anchor=CAMPAIGNS_ANCHOR, **overrides)
    with run_emulator_in_thread(options) as emu:
        yield emu


@pytest.fixture(scope="module")
def faithful() -> Iterator[RunningEmulator]:
    """Archived campaigns served slightly unsorted, as Klaviyo serves them."""
    with campaigns_emulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def perfectly_sorted() -> Iterator[RunningEmulator]:
    """The same account with the quirk switched off."""
    with campaigns_emulator(unsorted_archived_campaigns=False) as emu:
        yield emu
