"""Helpers of the migration suite: run `read` through the CLI's own code path against an emulator
whose data is generated around a legacy cursor, and compute what it must return from `truth()`."""

from __future__ import annotations

import io
import json
import statistics
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import source_klaviyo.http
from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from source_klaviyo.catalog import configured_catalog
from source_klaviyo.cli import main
from source_klaviyo.datetimes import floor_second, parse_datetime, utc_now
from source_klaviyo.streams import TIERS
from tests.truth import INCREMENTAL_TRUTHS, partition_of

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
FIXTURE_KEY = "pk_fixture_0123456789abcdef"  # the key every legacy config fixture holds
SEED = 5
PROBE_ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)

# The streams a legacy state can resume, and the truth each must read: every incremental stream with
# rows in the emulator (tests/truth.py).
TRUTH = INCREMENTAL_TRUTHS


def fixture_paths(prefix: str) -> list[Path]:
    return sorted(p for p in FIXTURES.glob(f"{prefix}_*.json") if not p.name.endswith(".expected.json"))


def expected_of(path: Path) -> dict[str, Any]:
    return json.loads(path.with_name(path.name.removesuffix(".json") + ".expected.json").read_text())


def emulator_at(anchor: datetime | None, api_key: str = FIXTURE_KEY):
    return run_emulator_in_thread(EmulatorOptions(seed=SEED, scale="tiny", rate_limits=False, api_key=api_key,
                                                  anchor=anchor))


_MEDIAN_AGE: dict[str, timedelta] = {}


def median_age(stream: str) -> timedelta:
    """How long before the anchor the median record of `stream` is stamped (data shifts with the anchor)."""
    if stream not in _MEDIAN_AGE:
        truth = TRUTH[stream]
        assert truth.cursor is not None
        with emulator_at(PROBE_ANCHOR) as probe:
            stamps = sorted(parse_datetime(row[truth.cursor]).timestamp() for row in truth.rows(probe))
        _MEDIAN_AGE[stream] = PROBE_ANCHOR - datetime.fromtimestamp(statistics.median(stamps), UTC)
    return _MEDIAN_AGE[stream]


def cursors_of(state: dict[str, Any]) -> list[datetime]:
    cursors = [entry["cursor"] for entry in state["states"]] if "states" in state else [state]
    return [parse_datetime(value) for cursor in cursors for key, value in cursor.items() if key != "gaps"]


def anchor_for(stream: str, migrated_state: dict[str, Any]) -> datetime:
    """An anchor that puts the middle of the legacy cursors at the median of the stream's data; a
    state in the future keeps today's data (all of it in the past, so nothing is read)."""
    cursors = cursors_of(migrated_state)
    now = utc_now()
    past = [c for c in cursors if c < now]
    if not past:
        return now - timedelta(days=4)
    middle = datetime.fromtimestamp(statistics.median(c.timestamp() for c in past), UTC)
    return min(middle + median_age(stream), now - timedelta(days=4))


def saved_cursor(state: dict[str, Any] | None, partition: dict[str, str],
                 ) -> tuple[datetime | None, list[tuple[datetime, datetime]]]:
    """The partition's saved cursor and the gaps below it (ranges never read)."""
    if not state:
        return None, []
    entry: dict[str, Any] | None = state
    cursor = state
    if "states" in state:
        entry = next((e for e in state["states"] if e["partition"] == partition), None)
        if entry is None:
            return None, []
        cursor = entry["cursor"]
    value = next(value for key, value in cursor.items() if key != "gaps")
    gaps = [(parse_datetime(gap["start"]), parse_datetime(gap["end"])) for gap in entry.get("gaps") or ()]
    return parse_datetime(value), gaps


def expected_ids(emulator: RunningEmulator, stream: str, state: dict[str, Any] | None,
                 start_date: datetime | None, lookback_days: int = 0) -> set[str]:
    """The truth rows a read from `state` must emit: cursor >= max(saved - lookback, start_date), or
    inside a gap of the state (and not before start_date)."""
    truth = TRUTH[stream]
    inc = truth.stream.incremental
    assert inc is not None
    assert truth.cursor is not None
    lookback = inc.lookback + (timedelta(days=lookback_days) if inc.config_lookback else timedelta(0))
    ids = set()
    for row in truth.rows(emulator):
        saved, gaps = saved_cursor(state, partition_of(truth.stream, row))
        stamp = parse_datetime(row[truth.cursor])
        bounds = [b for b in (saved - lookback if saved else None, start_date) if b is not None]
        in_gap = any(low <= stamp < high for low, high in gaps)
        if start_date is not None and stamp < floor_second(start_date):
            continue
        if not bounds or stamp >= floor_second(max(bounds)) or in_gap:
            ids.add(row["id"])
    return ids


@dataclass
class Run:
    code: int
    messages: list[dict[str, Any]]
    requests: int
    # Body bytes the emulator sent, before gzip: compressed sizes vary by a byte or two with the time
    # bounds echoed in links.next, so two reads of the same records a second apart compare equal only so.
    body_bytes: int

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    def ids(self, stream: str) -> list[str]:
        return [m["record"]["data"]["id"] for m in self.of_type("RECORD") if m["record"]["stream"] == stream]

    def states(self, stream: str) -> list[dict[str, Any]]:
        return [m["state"] for m in self.of_type("STATE")
                if m["state"]["stream"]["stream_descriptor"]["name"] == stream]

    def warnings(self) -> list[str]:
        return [m["log"]["message"] for m in self.of_type("LOG") if m["log"]["level"] == "WARN"]

    def errors(self) -> list[dict[str, Any]]:
        return [m["trace"]["error"] for m in self.of_type("TRACE") if m["trace"]["type"] == "ERROR"]


# The emulators of this suite have no rate limits: the client's own pacing (lists_detailed's detail
# calls are tier XS, 15 a minute) would only make the tests slow. Pacing is tested in test_ratelimit.py.
_FAST_TIERS = {name: replace(tier, burst_per_second=tier.burst_per_second * 1000,
                             steady_per_minute=tier.steady_per_minute * 1000, daily=None)
               for name, tier in TIERS.items()}


class _UnpacedClient(source_klaviyo.http.KlaviyoClient):
    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(config, **{"tiers": _FAST_TIERS, **kwargs})


def run_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str, *,
                config: dict[str, Any] | str, streams: list[str] | None = None, state: Any = None,
                emulator: RunningEmulator | None = None) -> Run:
    """`source-klaviyo COMMAND` in-process through `cli.main`, exactly as the console script runs it."""
    files = {"config": config}
    argv = [command, "--config", str(tmp_path / "config.json")]
    if streams is not None:
        files["catalog"] = configured_catalog(streams, "incremental")
        argv += ["--catalog", str(tmp_path / "catalog.json")]
    if state is not None:
        files["state"] = state
        argv += ["--state", str(tmp_path / "state.json")]
    for name, content in files.items():
        (tmp_path / f"{name}.json").write_text(content if isinstance(content, str) else json.dumps(content))
    if emulator is not None:
        emulator.reset_stats()
    monkeypatch.setattr(source_klaviyo.http, "KlaviyoClient", _UnpacedClient)
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, encoding="utf-8"))
    code = main(argv)
    stats = emulator.stats() if emulator is not None else {"requests_total": 0, "bytes_uncompressed": 0}
    messages = [json.loads(line) for line in out.getvalue().decode().splitlines() if line.strip()]
    return Run(code, messages, stats["requests_total"], stats["bytes_uncompressed"])
