"""What the platform sees when something goes wrong, and while the connector waits.

- a stream that fails ends INCOMPLETE with an ERROR trace (user-facing `message`, `internal_message`)
  and the other streams complete;
- a key Klaviyo refuses stops the read with one config_error;
- a read that waits (here: Klaviyo's Retry-After) still prints a message at least every heartbeat
  interval (`SOURCE_KLAVIYO_HEARTBEAT_SECONDS`; 30 s by default, well under the platform's
  `maxSecondsBetweenMessages`), measured as gaps between the arrival of stdout lines.
"""

from __future__ import annotations

from klaviyo_emulator.runner import EmulatorOptions, run_emulator_in_thread
from source_klaviyo.protocol import HEARTBEAT_ENV
from tests.conformance.conftest import API_KEY, KEY_WITHOUT_TAGS
from tests.conformance.kit import check_error_trace, check_status_sequence, configured_from, run_protocol

HEARTBEAT = 0.3
RETRY_AFTER = 3  # seconds of silence a 429 imposes; the heartbeat must fill it
# Scheduling of two processes on a loaded 2-core machine; still well below RETRY_AFTER.
SLACK = 1.5


def test_a_failing_stream_is_incomplete_with_an_error_trace_while_the_others_complete(config, discovered,
                                                                                        conformance_emulator,
                                                                                        tmp_path):
    catalog = configured_from(discovered, ["tags", "coupons"])
    run = run_protocol(
        "read", config={**config, "api_key": KEY_WITHOUT_TAGS}, catalog=catalog, directory=tmp_path
    )
    assert run.returncode == 1  # the platform marks the attempt failed, keeping what was read
    check_status_sequence(run, "tags", final="INCOMPLETE")
    check_status_sequence(run, "coupons", final="COMPLETE")
    [error] = run.traces("ERROR")
    check_error_trace(error)
    assert error["error"]["stream_descriptor"] == {"name": "tags"}
    assert "403" in error["error"]["message"] or "scope" in error["error"]["message"].lower(), error
    assert len(run.records("coupons")) == len(conformance_emulator.truth("coupons"))
    assert run.records("tags") == []


def test_a_refused_key_stops_the_read_with_one_config_error(config, discovered, tmp_path):
    catalog = configured_from(discovered, ["tags", "lists"])
    run = run_protocol("read", config={**config, "api_key": "pk_refused_by_klaviyo"}, catalog=catalog,
                       directory=tmp_path)
    assert run.returncode == 1
    [error] = run.traces("ERROR")
    check_error_trace(error)
    assert error["error"]["failure_type"] == "config_error"
    for stream in ("tags", "lists"):
        check_status_sequence(run, stream, final="INCOMPLETE")
    assert not run.of_type("RECORD")
    assert not run.of_type("STATE")
    assert API_KEY not in str(run.messages)


def test_a_read_waiting_on_retry_after_sends_a_message_every_heartbeat(tmp_path):
    # Real pacing (console script, the emulator's rate limits on); the emulator answers some requests
    # with 429 and Retry-After: RETRY_AFTER s, during which the engine has nothing to emit.
    options = EmulatorOptions(seed=7, scale="tiny", faults=f"429=0.6,retry_after={RETRY_AFTER}")
    with run_emulator_in_thread(options) as emu:
        from source_klaviyo.catalog import configured_catalog

        run = run_protocol("read", config={"api_key": API_KEY, "base_url": emu.url},
                           catalog=configured_catalog(["tags"]), env={HEARTBEAT_ENV: str(HEARTBEAT)},
                           directory=tmp_path)
        waits = emu.stats()["faults"].get("429", 0)
        truth = emu.truth("tags")
    assert run.returncode == 0, (run.stderr, run.traces("ERROR"))
    assert waits >= 1, "premise: the read waited out at least one Retry-After"
    assert len(run.records("tags")) == len(truth)
    check_status_sequence(run, "tags")
    heartbeats = run.statuses("tags").count("RUNNING")
    assert heartbeats >= waits * RETRY_AFTER / HEARTBEAT / 2, (
        f"{heartbeats} RUNNING statuses in {waits} waits"
    )
    longest = max(run.gaps())
    assert longest <= HEARTBEAT + SLACK, f"{longest:.2f} s without a message (heartbeat {HEARTBEAT} s)"
