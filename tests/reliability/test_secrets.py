"""The API key never leaves the connector except in the Authorization header to the configured origin:
not in stdout, stderr, logs, traces, exception text, DuckDB files or the emulator's logs, whatever goes
wrong; a links.next or a redirect to another origin never receives it."""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from source_klaviyo.catalog import configured_catalog
from source_klaviyo.protocol import trace_error_message
from source_klaviyo.spec import connection_specification
from tests.reliability.helpers import ServerThread, fast_read
from tests.truth import PLAIN_INCREMENTAL

KEY = f"pk_SECRET_{secrets.token_hex(12)}"
# Forms a leak could take besides the key itself: its distinctive part, URL- or JSON-escaped, base64.
NEEDLES = [KEY, KEY[len("pk_SECRET_"):], KEY.replace("_", "%5F")]
MIXED_FAULTS = "503=0.04,500=0.03,reset=0.04,truncate=0.04,html=0.03,429=0.03,timeout=0.03"


def assert_no_key(*texts: str | bytes, where: str = "") -> None:
    for text in texts:
        data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
        for needle in NEEDLES:
            assert needle.encode() not in data, f"the API key leaked {where}"
        import base64

        assert base64.b64encode(KEY.encode())[:20] not in data, f"the API key leaked base64-encoded {where}"


@pytest.fixture
def keyed_emulator(caplog: pytest.LogCaptureFixture) -> Iterator[RunningEmulator]:
    """An emulator that accepts only KEY, with every fault kind on; its log records are captured."""
    caplog.set_level(logging.DEBUG)
    with run_emulator_in_thread(EmulatorOptions(seed=13, scale="tiny", rate_limits=False, api_key=KEY,
                                                faults=MIXED_FAULTS, hang_seconds=2.0)) as emu:
        yield emu


def every_error_text(sink: Any) -> list[str]:
    texts = []
    for _stream, error in sink.errors:
        texts += [error.message, error.internal_message or "", str(error), repr(error),
                  "".join(traceback.format_exception(error)), json.dumps(trace_error_message(error))]
    return texts


def test_spec_marks_the_key_secret() -> None:
    field = connection_specification()["connectionSpecification"]["properties"]["api_key"]
    assert field["airbyte_secret"] is True


def test_in_process_reads_under_faults_and_failures_never_show_the_key(keyed_emulator, caplog) -> None:
    sink, result = fast_read(keyed_emulator.url, PLAIN_INCREMENTAL, api_key=KEY)
    assert result.ok
    # A key without scopes, a wrong key and a fault outlasting the budget: every error path.
    wrong, _ = fast_read(keyed_emulator.url, ["events", "profiles"], api_key=KEY + "x")
    assert wrong.errors
    assert_no_key(*every_error_text(sink), *every_error_text(wrong), caplog.text,
                  json.dumps([e for e in sink.events if e[0] != "error"], default=str),
                  where="in-process (errors, logs of connector, aiohttp and emulator)")
    for record in caplog.records:
        assert_no_key(record.getMessage(), str(record.args), where=f"in log record {record.name}")
    assert keyed_emulator.stats()["faults"], "no fault was injected"


def run(argv: list[str], tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, timeout=timeout, cwd=tmp_path, check=False
    )


def test_the_cli_under_faults_never_prints_the_key(keyed_emulator, tmp_path: Path, caplog) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"api_key": KEY, "base_url": keyed_emulator.url, "request_timeout_seconds": 1})
    )
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(configured_catalog(list(PLAIN_INCREMENTAL))))
    wrong_config = tmp_path / "wrong.json"
    wrong_config.write_text(json.dumps({"api_key": KEY + "x", "base_url": keyed_emulator.url}))
    outputs = []
    for argv in (
        ["-m", "source_klaviyo", "read", "--config", str(config), "--catalog", str(catalog)],
        ["-m", "source_klaviyo", "check", "--config", str(config)],
        ["-m", "source_klaviyo", "check", "--config", str(wrong_config)],
        ["-m", "source_klaviyo", "read", "--config", str(wrong_config), "--catalog", str(catalog)],
        ["-m", "source_klaviyo", "discover", "--config", str(config)],
        ["-m", "source_klaviyo", "upgrade-plan", "--config", str(config)],
        ["-m", "source_klaviyo", "upgrade-plan", "--config", str(config), "--json"],
    ):
        done = run(argv, tmp_path)
        outputs.append(done)
        assert_no_key(done.stdout, done.stderr, where=f"in the output of {argv[2]}")
    assert b'"type":"RECORD"' in outputs[0].stdout, outputs[0].stderr[-2000:]
    assert outputs[0].returncode == 0, outputs[0].stderr[-2000:]
    assert outputs[3].returncode != 0
    assert_no_key(caplog.text, where="in the emulator's log")


def test_sync_into_duckdb_never_stores_the_key(keyed_emulator, tmp_path: Path, caplog) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"api_key": KEY, "base_url": keyed_emulator.url, "request_timeout_seconds": 1})
    )
    db = tmp_path / "out.duckdb"
    done = run(["-m", "source_klaviyo.sync", "sync", "--config", str(config), "--db", str(db), "--quiet",
                "--streams", "events,profiles,metrics,lists"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    files = [path for path in tmp_path.iterdir() if path.name.startswith("out.duckdb")]
    assert db in files
    for path in files:
        assert_no_key(path.read_bytes(), where=f"in {path.name}")
    assert_no_key(done.stdout, done.stderr, caplog.text, where="in the output of sync")


# -- the key goes only to the configured origin ---------------------------------------------------------
@pytest.fixture
def elsewhere() -> Iterator[dict[str, Any]]:
    """Another origin that records every request it gets (it must get none)."""
    seen: dict[str, Any] = {"requests": []}

    async def handle(request: web.Request) -> web.Response:
        seen["requests"].append((request.path_qs, request.headers.get("Authorization")))
        return web.json_response({"data": [], "links": {"next": None}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    with ServerThread(app) as server:
        seen["url"] = server.url
        yield seen


def _lure(elsewhere: dict[str, Any], how: str) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        assert request.headers.get("Authorization") == f"Klaviyo-API-Key {KEY}"
        if how == "next":
            body = {
                "data": [
                    {"type": "metric", "id": "m1", "attributes": {"updated": "2026-01-01T00:00:00+00:00"}}
                ],
                "links": {"next": elsewhere["url"] + "/api/metrics?page[cursor]=x"},
            }
            return web.json_response(body)
        location = (
            elsewhere["url"] + "/api/metrics" if how != "same-origin redirect" else "/api/metrics?again=1"
        )
        return web.Response(status=302 if how != "307" else 307, headers={"Location": location})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.mark.parametrize("how", ["next", "302", "307", "same-origin redirect"])
def test_a_link_or_redirect_to_another_place_is_refused_and_gets_no_key(elsewhere, how: str) -> None:
    with ServerThread(_lure(elsewhere, how)) as lure:
        sink, result = fast_read(lure.url, ["metrics"], sync_mode="full_refresh", api_key=KEY)
    assert result.statuses == {"metrics": "INCOMPLETE"}
    assert elsewhere["requests"] == []
    (_, error), = sink.errors
    assert (
        ("refusing to send the API key" in error.message) if how == "next" else ("redirect" in error.message)
    )
    assert elsewhere["url"].split("//")[1] not in error.message or how == "next"
    assert_no_key(*every_error_text(sink), where="in the refusal")
