"""The client goes through the proxy the environment names (HTTPS_PROXY, HTTP_PROXY, any case), except
for hosts NO_PROXY lists; a proxy's password never shows; `check` says what went wrong with the proxy,
naming the variable. Every proxy here is a real one on loopback (`forward_proxy.py`)."""

from __future__ import annotations

import json
import logging
import traceback
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from klaviyo_emulator.runner import EmulatorOptions, run_emulator_in_thread
from source_klaviyo.protocol import trace_error_message
from tests.connector.helpers import API_KEY, run_cli
from tests.network.forward_proxy import ForwardProxy
from tests.network.helpers import (
    PROXY_PASSWORD,
    PROXY_USER,
    SLOW_ENOUGH,
    assert_mentions,
    assert_no_password,
    assert_reads_the_truth,
    check,
    dead_port,
    full_refresh_catalog,
)
from tests.reliability.helpers import expected_keys, fast_read, fixed
from tests.truth import PLAIN_INCREMENTAL

FAULTS = "503=0.1,reset=0.1,truncate=0.05"  # failures the client retries, logging each
# A fault is drawn per request (method, path and query), and an incremental read's query carries the
# clock: with the emulator's anchor and the read's clock pinned, the same requests meet the same faults
# on every run. On the wall clock, a read of three streams met none about one run in four.
ANCHOR = datetime(2026, 6, 1, 12, tzinfo=UTC)
NOW = ANCHOR + timedelta(hours=1)


# -- the route ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "Http_Proxy"])
def test_a_read_through_an_http_proxy_equals_the_truth(emulator, proxy, monkeypatch, variable):
    monkeypatch.setenv(variable, proxy.url)
    _sink, result = assert_reads_the_truth(emulator)
    assert proxy.seen, "the read did not go through the proxy"
    assert len(proxy.seen) == result.client_stats.requests
    assert {method for method, _ in proxy.seen} == {"GET"}
    assert all(target.startswith(emulator.url + "/api/") for _, target in proxy.seen), proxy.seen[:3]


def test_an_https_read_through_a_connect_tunnel_equals_the_truth(https_emulator, throwaway_ca, proxy,
                                                                 monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(throwaway_ca.pem))
    _sink, result = assert_reads_the_truth(https_emulator)
    # The proxy saw tunnels only (the requests inside are encrypted), one per connection the client opened.
    authority = https_emulator.url.removeprefix("https://")
    assert proxy.seen
    assert set(proxy.seen) == {("CONNECT", authority)}
    assert len(proxy.seen) <= result.client_stats.requests


def test_http_proxy_is_not_used_for_https(https_emulator, throwaway_ca, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(throwaway_ca.pem))
    assert_reads_the_truth(https_emulator, ["metrics"])
    assert proxy.seen == []


@pytest.mark.parametrize(("no_proxy", "direct"), [
    ("127.0.0.1", True),
    ("localhost, 127.0.0.1", True),
    ("127.0.0.0/8", True),
    ("*", True),
    ("example.com,127.0.0.1:{port}", True),
    ("127.0.0.1:1", False),  # another port
    ("localhost", False),  # names are not resolved: 127.0.0.1 is not "localhost"
    ("127.0.0.2,10.0.0.0/8", False),
])
@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
def test_no_proxy_sends_the_hosts_it_lists_directly(emulator, proxy, monkeypatch, variable, no_proxy, direct):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv(variable, no_proxy.format(port=emulator.url.rsplit(":", 1)[1]))
    assert_reads_the_truth(emulator, ["metrics"])
    assert (proxy.seen == []) is direct, proxy.seen


# -- credentials -------------------------------------------------------------------------------------
def test_a_proxy_with_basic_auth_works_and_its_password_is_in_no_output(https_emulator, throwaway_ca,
                                                                       auth_proxy, monkeypatch, tmp_path):
    monkeypatch.setenv("HTTPS_PROXY", auth_proxy.url_with_credentials())
    monkeypatch.setenv("SSL_CERT_FILE", str(throwaway_ca.pem))
    # not the stream table: one stream per page shape and tier is enough to prove the route
    streams = ["metrics", "lists", "profiles", "events"]
    run = run_cli("read", "--config", "{config}", "--catalog", "{catalog}", tmp_path=tmp_path,
                  files={"config": {"api_key": API_KEY, "base_url": https_emulator.url, **SLOW_ENOUGH},
                         "catalog": full_refresh_catalog(streams)})
    assert run.returncode == 0, run.stderr[-2000:]
    for stream in streams:
        assert {record["id"] for record in run.records(stream)} == {
            key[0] for key in expected_keys(https_emulator, stream)}
    assert auth_proxy.seen
    assert auth_proxy.rejected == 0
    # The operator is told the route, without the password.
    [route] = [m["log"]["message"] for m in run.of_type("LOG") if "HTTPS_PROXY" in m["log"]["message"]]
    assert_mentions(route, auth_proxy.url.removeprefix("http://"), "SSL_CERT_FILE")
    assert_no_password(run.stdout, run.stderr)


def test_a_wrong_proxy_password_fails_check_naming_the_variable_and_showing_neither_password(
        https_emulator, throwaway_ca, auth_proxy, monkeypatch, tmp_path):
    wrong = "Wr0ng-" + PROXY_PASSWORD[::-1]
    monkeypatch.setenv("HTTPS_PROXY", auth_proxy.url_with_credentials(wrong))
    monkeypatch.setenv("SSL_CERT_FILE", str(throwaway_ca.pem))
    run = run_cli("check", "--config", "{config}", tmp_path=tmp_path,
                  files={"config": {"api_key": API_KEY, "base_url": https_emulator.url}})
    assert run.returncode == 0, run.stderr  # a FAILED check is an answer
    [status] = [m["connectionStatus"] for m in run.of_type("CONNECTION_STATUS")]
    assert status["status"] == "FAILED"
    assert_mentions(status["message"], "HTTPS_PROXY", "407")
    assert auth_proxy.rejected == 1  # refused credentials are not retried
    assert_no_password(run.stdout, run.stderr)
    for form in (wrong, quote(wrong, safe="")):
        assert form not in run.stdout + run.stderr


def test_the_proxy_password_is_in_no_log_or_error_when_reads_fail_and_retry(auth_proxy, monkeypatch,
                                                                            caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HTTP_PROXY", auth_proxy.url_with_credentials())
    options = EmulatorOptions(seed=19, scale="tiny", rate_limits=False, faults=FAULTS, anchor=ANCHOR)
    with run_emulator_in_thread(options) as emu:
        sink, _ = fast_read(emu.url, list(PLAIN_INCREMENTAL), max_attempts=2, clock=fixed(NOW))
    assert auth_proxy.seen, "the read did not go through the proxy"
    assert auth_proxy.rejected == 0
    assert emu.stats()["faults"], "no fault was injected"
    assert any("retrying" in record.getMessage() for record in caplog.records), "nothing was retried"
    texts = [caplog.text, *(record.getMessage() for record in caplog.records)]
    for _stream, error in sink.errors:
        texts += [error.message, error.internal_message or "", repr(error),
                  "".join(traceback.format_exception(error)), json.dumps(trace_error_message(error))]
    assert_no_password(*texts)


# -- what check says ---------------------------------------------------------------------------------
def test_check_names_the_variable_when_the_proxy_is_dead(https_emulator, monkeypatch, tmp_path):
    port = dead_port()
    credentials = f"{PROXY_USER}:{quote(PROXY_PASSWORD, safe='')}"
    monkeypatch.setenv("HTTPS_PROXY", f"http://{credentials}@127.0.0.1:{port}")
    run = run_cli("check", "--config", "{config}", tmp_path=tmp_path,
                  files={"config": {"api_key": API_KEY, "base_url": https_emulator.url}})
    assert run.returncode == 0, run.stderr  # a FAILED check is an answer, as for an unreachable host
    [status] = [m["connectionStatus"] for m in run.of_type("CONNECTION_STATUS")]
    assert status["status"] == "FAILED"
    assert_mentions(status["message"], "HTTPS_PROXY", f"127.0.0.1:{port}", "connection refused")
    assert_no_password(run.stdout, run.stderr)
    assert API_KEY not in run.stdout + run.stderr


def test_a_read_through_a_dead_proxy_fails_each_stream_naming_the_variable(emulator, monkeypatch):
    monkeypatch.setenv("http_proxy", f"127.0.0.1:{dead_port()}")  # no scheme: http, as curl reads it
    sink, result = fast_read(emulator.url, ["metrics", "lists"], max_attempts=2)
    assert result.statuses == {"metrics": "INCOMPLETE", "lists": "INCOMPLETE"}
    for _stream, error in sink.errors:
        assert error.failure_type == "transient_error"
        assert_mentions(error.message, "could not connect to the proxy", "http_proxy")


def test_check_says_when_the_proxy_does_not_answer(https_emulator, monkeypatch):
    with ForwardProxy(silent=True) as silent:
        monkeypatch.setenv("HTTPS_PROXY", silent.url)
        succeeded, message = check(https_emulator.url, request_timeout_seconds=0.3)
    assert not succeeded
    assert_mentions(message, "timeout", f"the proxy {silent.url} set in HTTPS_PROXY")


def test_check_says_when_the_tls_handshake_with_the_proxy_fails(https_emulator, proxy, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("http://", "https://"))  # it speaks plain http
    succeeded, message = check(https_emulator.url)
    assert not succeeded
    assert_mentions(message, "TLS handshake with the proxy", "HTTPS_PROXY", "write http://")


def test_a_proxy_the_connector_cannot_use_is_a_config_error_naming_the_variable(https_emulator,
                                                                               monkeypatch, tmp_path):
    credentials = f"{PROXY_USER}:{quote(PROXY_PASSWORD, safe='')}"
    monkeypatch.setenv("HTTPS_PROXY", f"socks5://{credentials}@127.0.0.1:1080")
    run = run_cli("read", "--config", "{config}", "--catalog", "{catalog}", tmp_path=tmp_path,
                  files={"config": {"api_key": API_KEY, "base_url": https_emulator.url},
                         "catalog": full_refresh_catalog(["metrics"])})
    assert run.returncode == 1
    [error] = [trace["error"] for trace in run.traces("ERROR")]
    assert error["failure_type"] == "config_error"
    assert_mentions(error["message"], "HTTPS_PROXY", "socks5")
    assert not run.of_type("RECORD")
    assert_no_password(run.stdout, run.stderr)
    succeeded, message = check(https_emulator.url)
    assert not succeeded
    assert_mentions(message, "HTTPS_PROXY", "socks5")

