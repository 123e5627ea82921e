"""Every legacy state and config fixture, read against the emulator through the CLI's `read`.

A read with a legacy state must resume from the legacy cursor: it emits exactly the truth records
at or after the cursor (per partition; start_date and lookback applied), fetches no more than the
same read given the already-migrated 3.0.0 state (same requests, same bytes), fetches less than a
read from scratch, and writes its STATE in the 3.0.0 shape. The emulator's data is generated around
an `anchor` chosen so that the fixture's own cursor falls in the middle of it (see helpers.py), so
the fixtures keep their legacy shape and values exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from source_klaviyo.datetimes import parse_datetime, utc_now
from source_klaviyo.state_migrations import migrate_state
from source_klaviyo.streams import STREAMS_BY_NAME
from tests.migrations.helpers import (
    FIXTURE_KEY,
    TRUTH,
    anchor_for,
    emulator_at,
    expected_ids,
    expected_of,
    fixture_paths,
    run_command,
)

STATE_FIXTURES = fixture_paths("state")
CONFIG_FIXTURES = fixture_paths("config")
STATE_CONFIG = json.loads((STATE_FIXTURES[0].parent / "config_0.x_required_start_date.json").read_text())
START_DATE = parse_datetime(STATE_CONFIG["start_date"])


def _migrated(path: Path) -> dict[str, dict]:
    return migrate_state(json.loads(path.read_text() or "null"), START_DATE).streams


def _readable_cases() -> list[tuple[Path, str]]:
    cases = []
    for path in STATE_FIXTURES:
        if "error" in expected_of(path):
            continue
        cases += [(path, stream) for stream in _migrated(path) if stream in TRUTH]
    return cases


def _stream_message(stream: str, state: dict) -> dict:
    return {"type": "STREAM", "stream": {"stream_descriptor": {"name": stream}, "stream_state": state}}


def _assert_3_0_0_state(run, stream: str) -> dict:
    """The last STATE is a STREAM state that 3.0.0 reads back unchanged, never past now."""
    states = run.states(stream)
    assert states, f"no STATE for {stream}"
    assert all(state["type"] == "STREAM" for state in states)
    final = states[-1]["stream"]["stream_state"]
    again = migrate_state([_stream_message(stream, final)], START_DATE)
    assert again.streams == {stream: final}
    assert again.rewritten == ()
    assert all(parse_datetime(v) <= utc_now() for v in _cursor_values(final))
    return final


def _cursor_values(state: dict) -> list[str]:
    cursors = [entry["cursor"] for entry in state["states"]] if "states" in state else [state]
    return [value for cursor in cursors for key, value in cursor.items() if key != "gaps"]


def test_every_readable_legacy_state_fixture_is_covered() -> None:
    covered = {path.name for path, _ in _readable_cases()}
    for path in STATE_FIXTURES:
        expected = expected_of(path)
        if "error" in expected:
            continue
        in_truth = [s for s in expected["streams"] if s in TRUTH]
        assert (path.name in covered) == bool(in_truth), path.name
        # The report streams have no truth() rows to compare with (their results are derived).
        assert set(expected["streams"]) - set(TRUTH) <= {"flow_series_reports", "campaign_values_reports"}


@pytest.mark.parametrize(("path", "stream"), _readable_cases(), ids=lambda v: getattr(v, "stem", v))
def test_read_resumes_from_the_legacy_cursor(monkeypatch, tmp_path, path: Path, stream: str) -> None:
    migrated = _migrated(path)[stream]
    legacy_text = path.read_text()
    with emulator_at(anchor_for(stream, migrated)) as emu:
        config = {**STATE_CONFIG, "base_url": emu.url}
        legacy = run_command(monkeypatch, tmp_path, "read", config=config, streams=[stream],
                             state=legacy_text, emulator=emu)
        assert legacy.code == 0, legacy.errors()
        ids = legacy.ids(stream)
        assert len(ids) == len(set(ids)), "a record was emitted twice"
        want = expected_ids(emu, stream, migrated, START_DATE)
        assert set(ids) == want
        _assert_3_0_0_state(legacy, stream)

        native = run_command(monkeypatch, tmp_path, "read", config=config, streams=[stream],
                             state=[_stream_message(stream, migrated)], emulator=emu)
        assert set(native.ids(stream)) == want
        if STREAMS_BY_NAME[stream].split_by is None:  # chains cut while they run differ run to run
            assert (legacy.requests, legacy.body_bytes) == (native.requests, native.body_bytes)

        scratch = run_command(monkeypatch, tmp_path, "read", config=config, streams=[stream], emulator=emu)
        everything = expected_ids(emu, stream, None, START_DATE)
        assert set(scratch.ids(stream)) == everything
    # The cursor was inside the data: the legacy state really skipped records, and did not fetch them.
    assert want < everything
    # Each gap of a 2.x concurrent state is a chain of its own, which may end in a part-full page.
    gaps = len(migrated.get("gaps") or ())
    assert legacy.requests <= scratch.requests + gaps
    if all(cursor > utc_now() for cursor in map(parse_datetime, _cursor_values(migrated))):
        assert legacy.requests == 0  # a state in the future (warned about): nothing to fetch
    elif not STREAMS_BY_NAME[stream].incremental.server_side_filter:
        # metrics: the endpoint cannot filter by `updated`; the cursor is applied to the page
        assert legacy.body_bytes == scratch.body_bytes
    elif not gaps:
        assert legacy.body_bytes < scratch.body_bytes


@pytest.mark.parametrize(
    "path", [p for p in STATE_FIXTURES if "error" in expected_of(p)], ids=lambda p: p.stem
)
def test_a_state_that_cannot_be_understood_fails_before_any_request(
    monkeypatch, tmp_path, path: Path
) -> None:
    with emulator_at(None) as emu:
        run = run_command(monkeypatch, tmp_path, "read", config={**STATE_CONFIG, "base_url": emu.url},
                          streams=["events", "profiles"], state=path.read_text(), emulator=emu)
    assert run.code == 1
    assert [e["failure_type"] for e in run.errors()] == ["config_error"]
    assert expected_of(path)["error"] in run.errors()[0]["message"]
    assert run.requests == 0
    assert run.of_type("RECORD") == []
    assert run.of_type("STATE") == []


def test_legacy_state_warnings_reach_the_platform_as_log_warn(monkeypatch, tmp_path) -> None:
    """Unknown streams, full-refresh streams and cursors in the future are said, once each."""
    state = json.loads((STATE_FIXTURES[0].parent / "state_unknown_and_full_refresh_streams.json").read_text())
    state.append(_stream_message("profiles", {"updated": "2120-10-10 00:00:00"}))
    with emulator_at(None) as emu:
        run = run_command(monkeypatch, tmp_path, "read", config={**STATE_CONFIG, "base_url": emu.url},
                          streams=["profiles"], state=state, emulator=emu)
    assert run.code == 0
    warnings = run.warnings()
    assert warnings == [
        "the state has a stream 'bad_events' that this connector does not know; its state is ignored",
        "stream 'tags' is read in full on every sync; its saved state is ignored",
        "state for stream 'profiles' is in the future (2120-10-10T00:00:00+00:00), so nothing older is read; "
        "reset the stream if that is wrong",
    ]
    first_record = next((i for i, m in enumerate(run.messages) if m["type"] in ("RECORD", "STATE")), None)
    last_warning = max(
        i for i, m in enumerate(run.messages) if m["type"] == "LOG" and m["log"]["level"] == "WARN"
    )
    assert first_record is None or last_warning < first_record
    assert run.ids("profiles") == []
    assert run.requests == 0


# ------------------------------------------------------------------ configs


VALID_CONFIGS = [p for p in CONFIG_FIXTURES if "error" not in expected_of(p)]
LEGACY_EVENTS_STATE = STATE_FIXTURES[0].parent / "state_2.1.0_legacy_message.json"


@pytest.mark.parametrize("path", VALID_CONFIGS, ids=lambda p: p.stem)
def test_read_with_every_legacy_config_resumes_and_rewrites_only_what_it_must(monkeypatch, tmp_path,
                                                                            path: Path) -> None:
    raw = json.loads(path.read_text())
    expected = expected_of(path)
    state = migrate_state(json.loads(LEGACY_EVENTS_STATE.read_text()), None).streams["events"]
    start_date = (
        parse_datetime(expected["config"]["start_date"]) if expected["config"]["start_date"] else None
    )
    with emulator_at(anchor_for("events", state), api_key=raw["api_key"]) as emu:
        config = {**raw, "base_url": emu.url}
        run = run_command(monkeypatch, tmp_path, "read", config=config, streams=["events"],
                          state=LEGACY_EVENTS_STATE.read_text(), emulator=emu)
        assert run.code == 0, run.errors()
        want = expected_ids(emu, "events", state, start_date, expected["config"]["lookback_window_days"])
    assert set(run.ids("events")) == want
    assert run.requests > 0
    _assert_3_0_0_state(run, "events")
    controls = run.of_type("CONTROL")
    if expected["migrated"] is None:
        assert controls == []
    else:
        assert len(controls) == 1
        assert controls[0]["control"]["type"] == "CONNECTOR_CONFIG"
        assert controls[0]["control"]["connectorConfig"]["config"] == {
            **expected["migrated"],
            "base_url": emu.url,
        }
        assert run.messages[0] == controls[0], "the CONTROL message comes first"
    _assert_key_only_in_control(run.messages, raw["api_key"])


REWRITTEN_CONFIGS = [p for p in VALID_CONFIGS if expected_of(p)["migrated"] is not None]


def test_exactly_these_config_fixtures_are_rewritten() -> None:
    """2.x's default `num_workers: 10` (dropped: read as no cap), and written out by hand: numbers and
    booleans as strings with a date-only start_date, an empty or a null start_date, a start_date with
    an offset and milliseconds. The test below runs once per
    rewritten config; this list is what keeps it from running on none."""
    assert [path.stem for path in REWRITTEN_CONFIGS] == [
        "config_2.13_default_num_workers",
        "config_handwritten_string_values",
        "config_start_date_empty_string",
        "config_start_date_null",
        "config_start_date_with_offset",
    ]


@pytest.mark.parametrize("command", ["check", "discover", "read"])
@pytest.mark.parametrize("path", REWRITTEN_CONFIGS, ids=lambda p: p.stem)
def test_a_rewritten_config_is_one_control_message_on_every_command(monkeypatch, tmp_path, path: Path,
                                                                   command: str) -> None:
    """The Airbyte protocol's CONTROL/CONNECTOR_CONFIG carries "the updated config for the platform
    to store for this connector" (AirbyteControlConnectorConfigMessage), so the platform replaces the
    stored config with it: it is the whole config, key included. Nothing else may carry the key."""
    raw = json.loads(path.read_text())
    with emulator_at(None, api_key=raw["api_key"]) as emu:
        config = {**raw, "base_url": emu.url}
        run = run_command(monkeypatch, tmp_path, command, config=config,
                          streams=["metrics"] if command == "read" else None, emulator=emu)
    assert run.code == 0
    controls = run.of_type("CONTROL")
    assert len(controls) == 1
    assert controls[0]["control"]["connectorConfig"]["config"] == {
        **expected_of(path)["migrated"],
        "base_url": emu.url,
    }
    assert controls[0]["control"]["connectorConfig"]["config"]["api_key"] == raw["api_key"]
    expected_kind = {"check": "CONNECTION_STATUS", "discover": "CATALOG", "read": "STATE"}[command]
    assert run.of_type(expected_kind)
    if command == "check":
        assert run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"
    _assert_key_only_in_control(run.messages, raw["api_key"])


def _assert_key_only_in_control(messages: list[dict], api_key: str) -> None:
    assert api_key in (FIXTURE_KEY, "pk_emulator")
    for message in messages:
        if message["type"] != "CONTROL":
            assert api_key not in json.dumps(message), message["type"]
