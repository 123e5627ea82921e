"""The protocol commands as the platform runs them: spec, check and discover."""

from __future__ import annotations

import socket

from airbyte_protocol.models import ConnectorSpecification

from source_klaviyo.catalog import discover
from tests.conformance.conftest import API_KEY
from tests.conformance.kit import run_protocol


def test_spec_is_a_connector_specification_with_the_key_secret_and_required(tmp_path):
    run = run_protocol("spec", directory=tmp_path)
    assert run.returncode == 0, run.stderr
    assert [m["type"] for m in run.messages] == ["SPEC"]
    spec = run.messages[0]["spec"]
    ConnectorSpecification.model_validate(spec)
    schema = spec["connectionSpecification"]
    assert schema["type"] == "object"
    assert "api_key" in schema["required"]
    assert set(schema["required"]) <= set(schema["properties"])
    assert schema["properties"]["api_key"].get("airbyte_secret") is True


def test_check_succeeds_against_the_emulator(config, tmp_path):
    run = run_protocol("check", config=config, directory=tmp_path)
    assert run.returncode == 0, run.stderr
    statuses = run.of_type("CONNECTION_STATUS")
    assert [s["connectionStatus"]["status"] for s in statuses] == ["SUCCEEDED"]


def test_check_fails_clearly_with_a_bad_key(config, tmp_path):
    run = run_protocol(
        "check", config={**config, "api_key": "pk_not_a_key_of_this_account"}, directory=tmp_path
    )
    assert run.returncode == 0, run.stderr  # a FAILED check is an answer, not a crash
    [status] = [s["connectionStatus"] for s in run.of_type("CONNECTION_STATUS")]
    assert status["status"] == "FAILED"
    assert "401" in status["message"]
    assert "key" in status["message"]
    shown = [m for m in run.messages if m["type"] != "CONTROL"]  # CONTROL hands the platform its own config
    assert "pk_not_a_key_of_this_account" not in run.stderr + str(shown)


def test_check_fails_clearly_when_the_host_is_unreachable(config, tmp_path):
    with socket.socket() as probe:  # a loopback port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    run = run_protocol("check", config={**config, "base_url": url}, directory=tmp_path, timeout=90)
    assert run.returncode == 0, run.stderr
    [status] = [s["connectionStatus"] for s in run.of_type("CONNECTION_STATUS")]
    assert status["status"] == "FAILED"
    assert url in status["message"], status
    # Interactive: a wrong host answers in seconds (a few quick retries), not after a read's backoff.
    assert run.ended_ms - run.started_ms < 20_000


def test_discover_lists_every_stream_of_the_table(discovered):
    # The per-stream suite is parametrized by the table; the command must list exactly those streams.
    assert [s["name"] for s in discovered] == [s["name"] for s in discover()["streams"]]


def test_a_config_error_is_one_error_trace_with_both_messages(tmp_path):
    run = run_protocol(
        "discover", config={"api_key": API_KEY, "start_date": "yesterday-ish"}, directory=tmp_path
    )
    assert run.returncode == 1
    [error] = run.traces("ERROR")
    assert error["error"]["failure_type"] == "config_error"
    assert error["error"]["message"]
    assert error["error"]["internal_message"]
    assert "start_date" in error["error"]["message"]
