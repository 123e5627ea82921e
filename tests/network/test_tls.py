"""A private certificate authority named in SSL_CERT_FILE (or REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) is
trusted in addition to the system store; without it an https read fails with a certificate error that
says what to do, and nothing falls back to trusting less. The emulator is served over https with a
certificate from a throwaway CA made by the test."""

from __future__ import annotations

import ssl

import pytest

from source_klaviyo.errors import ConfigError
from source_klaviyo.transport import ssl_context
from tests.connector.helpers import API_KEY, run_cli
from tests.network.helpers import assert_mentions, assert_reads_the_truth, check, full_refresh_catalog
from tests.reliability.helpers import fast_read


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_with_the_private_ca_in_a_bundle_variable_an_https_read_equals_the_truth(
        https_emulator, throwaway_ca, monkeypatch, variable):
    monkeypatch.setenv(variable, str(throwaway_ca.pem))
    assert_reads_the_truth(https_emulator)


@pytest.mark.parametrize("unrelated", [
    {},
    {"CURL_CA_BUNDLE": ""},  # what once turned verification off in requests: ignored here
    {"REQUESTS_CA_BUNDLE": ""},
    {"PYTHONHTTPSVERIFY": "0"},
    {"SSL_CERT_FILE": "{other}"},  # a bundle, of another CA
])
def test_without_the_ca_an_https_read_fails_with_a_certificate_error(https_emulator, other_ca_pem,
                                                                     monkeypatch, unrelated):
    for name, value in unrelated.items():
        monkeypatch.setenv(name, value.format(other=other_ca_pem))
    served = https_emulator.stats()["requests_total"]
    sink, result = fast_read(https_emulator.url, ["metrics", "lists"], max_attempts=3)
    assert result.statuses == {"metrics": "INCOMPLETE", "lists": "INCOMPLETE"}
    for _stream, error in sink.errors:
        assert error.failure_type == "config_error"
        assert_mentions(error.message, "TLS certificate", "not trusted", "SSL_CERT_FILE")
    assert not sink.by_stream, "records were read"
    assert result.client_stats.retries == 0, "a certificate error is not retried"
    assert https_emulator.stats()["requests_total"] == served, "a request reached the server"


def test_without_the_ca_the_cli_read_exits_non_zero_with_the_certificate_error(https_emulator, tmp_path):
    run = run_cli("read", "--config", "{config}", "--catalog", "{catalog}", tmp_path=tmp_path,
                  files={"config": {"api_key": API_KEY, "base_url": https_emulator.url},
                         "catalog": full_refresh_catalog(["metrics"])})
    assert run.returncode == 1
    assert not run.of_type("RECORD")
    [error] = [trace["error"] for trace in run.traces("ERROR")]
    assert error["failure_type"] == "config_error"
    assert_mentions(error["message"], "TLS certificate", "unable to get local issuer certificate",
                    "SSL_CERT_FILE")
    succeeded, message = check(https_emulator.url)
    assert not succeeded
    assert_mentions(message, "TLS certificate", "not trusted", "SSL_CERT_FILE")


def test_the_extra_ca_is_trusted_in_addition_to_the_system_store(throwaway_ca):
    system = ssl.create_default_context().get_ca_certs()  # the suite runs without SSL_CERT_FILE
    context, used = ssl_context({"SSL_CERT_FILE": str(throwaway_ca.pem)})
    assert context is not None
    assert used == ("SSL_CERT_FILE",)
    trusted = context.get_ca_certs()
    assert len(trusted) == len(system) + 1
    assert all(cert in trusted for cert in system)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_no_variable_means_the_default_context(monkeypatch):
    assert ssl_context({}) == (None, ())


@pytest.mark.parametrize(("variable", "content", "words"), [
    ("SSL_CERT_FILE", None, "no such file"),
    ("REQUESTS_CA_BUNDLE", "", "holds no PEM certificate"),
    ("CURL_CA_BUNDLE", "not a certificate\n", "holds no PEM certificate"),
    ("SSL_CERT_DIR", None, "is not a directory"),
])
def test_a_ca_variable_the_connector_cannot_use_is_a_clear_error(https_emulator, tmp_path, monkeypatch,
                                                                 variable, content, words):
    path = tmp_path / "bundle.pem"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as raised:
        ssl_context({variable: str(path)})
    assert_mentions(raised.value.message, f"{variable}={path}", words)
    monkeypatch.setenv(variable, str(path))
    succeeded, message = check(https_emulator.url)
    assert not succeeded
    assert_mentions(message, f"{variable}={path}", words)


def test_a_directory_in_ssl_cert_dir_is_used(tmp_path):
    context, used = ssl_context({"SSL_CERT_DIR": str(tmp_path)})
    assert context is not None
    assert used == ("SSL_CERT_DIR",)
