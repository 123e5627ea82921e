"""Every message the CLI writes is a valid Airbyte message; records survive integers beyond 64 bits."""

from __future__ import annotations

import io
import json

import pytest
from airbyte_protocol.models import AirbyteMessage

from source_klaviyo.catalog import configured_catalog
from source_klaviyo.errors import ConfigError
from source_klaviyo.pages import parse_page
from source_klaviyo.protocol import MessageWriter
from tests.connector.helpers import config_for, run_cli
from tests.truth import PLAIN_INCREMENTAL

STREAMS = list(PLAIN_INCREMENTAL)  # every cursor and partition shape


def validate(message: dict) -> AirbyteMessage:
    return AirbyteMessage.model_validate(message)


@pytest.fixture(scope="module")
def cli_read(emulator, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("read")
    return run_cli("read", "--config", "{config}", "--catalog", "{catalog}", tmp_path=tmp,
                   files={"config": config_for(emulator.url), "catalog": configured_catalog(STREAMS)})


def test_every_message_of_a_read_validates(cli_read):
    assert cli_read.returncode == 0, cli_read.stderr
    for message in cli_read.messages:
        validate(message)
    assert {m["type"] for m in cli_read.messages} >= {"RECORD", "STATE", "TRACE"}


def test_stream_statuses_and_states_are_in_protocol_order(cli_read):
    for stream in STREAMS:
        statuses = [t["stream_status"]["status"] for t in cli_read.traces("STREAM_STATUS")
                    if t["stream_status"]["stream_descriptor"]["name"] == stream]
        assert statuses == ["STARTED", "RUNNING", "COMPLETE"]
    counted = sum(m["state"]["sourceStats"]["recordCount"] for m in cli_read.of_type("STATE"))
    assert counted == len(cli_read.records())


def test_spec_discover_and_check_validate(emulator, tmp_path):
    for args in (("spec",), ("discover", "--config", "{config}"), ("check", "--config", "{config}")):
        run = run_cli(*args, tmp_path=tmp_path, files={"config": config_for(emulator.url)})
        assert run.returncode == 0
        assert len(run.messages) == 1
        validate(run.messages[0])


def test_big_integers_pass_through_losslessly():
    body = b'{"data":[{"type":"event","id":"e1","attributes":{"datetime":"2024-01-01T00:00:00+00:00",' \
           b'"event_properties":{"big":123456789012345678901234567890,"neg":-98765432109876543210987}}}],' \
           b'"links":{"next":null}}'
    page = parse_page(body)
    out = io.BytesIO()
    MessageWriter(out).records("events", page["data"])
    line = out.getvalue().decode()
    assert "123456789012345678901234567890" in line
    assert "-98765432109876543210987" in line
    assert (
        json.loads(line)["record"]["data"]["attributes"]["event_properties"]["big"]
        == 123456789012345678901234567890
    )


def test_error_traces_validate_and_carry_no_stack_for_config_errors():
    out = io.BytesIO()
    MessageWriter(out).error("profiles", ConfigError("no scope"))
    message = json.loads(out.getvalue())
    validate(message)
    assert message["trace"]["error"]["failure_type"] == "config_error"
    assert "stack_trace" not in message["trace"]["error"]
