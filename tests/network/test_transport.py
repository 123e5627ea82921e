"""The rules of `transport.py`, one by one: which variable names the proxy, what NO_PROXY matches, how a
proxy URL is read, and that its password shows nowhere (the end-to-end tests are test_proxy.py)."""

from __future__ import annotations

import os

import aiohttp
import pytest
from yarl import URL

from source_klaviyo.errors import ConfigError
from source_klaviyo.transport import (
    Transport,
    choose_proxy,
    is_transport_variable,
    no_proxy_matches,
    parse_proxy,
)

KLAVIYO = URL("https://a.klaviyo.com")
EMULATOR = URL("http://127.0.0.1:8080")


@pytest.mark.parametrize(("host", "port", "no_proxy", "matches"), [
    ("a.klaviyo.com", 443, "klaviyo.com", True),
    ("a.klaviyo.com", 443, ".klaviyo.com", True),
    ("a.klaviyo.com", 443, "*.klaviyo.com", True),
    ("klaviyo.com", 443, ".klaviyo.com", True),
    ("a.klaviyo.com", 443, "A.Klaviyo.COM.", True),  # case and a trailing dot do not matter
    ("a.klaviyo.com", 443, "notklaviyo.com", False),
    ("a.klaviyo.com", 443, "klaviyo.co", False),
    ("a.klaviyo.com", 443, "klaviyo.com.evil.example", False),
    ("a.klaviyo.com", 443, "a.klaviyo.com:443", True),
    ("a.klaviyo.com", 443, "a.klaviyo.com:8443", False),
    ("a.klaviyo.com", 443, "*", True),
    ("a.klaviyo.com", 443, "", False),
    ("a.klaviyo.com", 443, " localhost ,, internal.corp  a.klaviyo.com ", True),  # commas and spaces
    ("127.0.0.1", 8080, "127.0.0.1", True),
    ("127.0.0.1", 8080, "127.0.0.0/8", True),
    ("127.0.0.1", 8080, "10.0.0.0/8,192.168.0.0/16", False),
    ("127.0.0.1", 8080, "127.0.0.1:8080", True),
    ("127.0.0.1", 8080, "127.0.0.1:9090", False),
    ("127.0.0.1", 8080, "localhost", False),  # names are not resolved
    ("localhost", 8080, "127.0.0.1", False),
    ("::1", 8080, "::1", True),
    ("[::1]", 8080, "[::1]:8080", True),
    ("::1", 8080, "::/0", True),
    ("::1", 8080, "127.0.0.0/8", False),
])
def test_no_proxy_rules(host, port, no_proxy, matches):
    assert no_proxy_matches(host, port, no_proxy) is matches


@pytest.mark.parametrize(("base", "environ", "variable"), [
    (KLAVIYO, {"HTTPS_PROXY": "http://upper:1"}, "HTTPS_PROXY"),
    (KLAVIYO, {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:1"}, "https_proxy"),
    (KLAVIYO, {"https_proxy": " ", "HTTPS_PROXY": "http://upper:1"}, "HTTPS_PROXY"),  # empty is unset
    (KLAVIYO, {"Https_Proxy": "http://mixed:1", "HTTPS_PROXY": "http://upper:1"}, "HTTPS_PROXY"),
    (KLAVIYO, {"Https_Proxy": "http://mixed:1"}, "Https_Proxy"),
    (KLAVIYO, {"HTTP_PROXY": "http://plain:1"}, None),  # HTTP_PROXY is for http:// URLs only
    (KLAVIYO, {"ALL_PROXY": "http://all:1"}, "ALL_PROXY"),
    (KLAVIYO, {"all_proxy": "http://all:1", "HTTPS_PROXY": "http://upper:1"}, "HTTPS_PROXY"),
    (EMULATOR, {"HTTPS_PROXY": "http://tls:1"}, None),
    (EMULATOR, {"http_proxy": "http://plain:1"}, "http_proxy"),
    (EMULATOR, {"HTTP_PROXY": "http://plain:1"}, "HTTP_PROXY"),
    (KLAVIYO, {}, None),
])
def test_the_proxy_variable_for_a_scheme(base, environ, variable):
    proxy, bypassed_by = choose_proxy(base, environ)
    assert (proxy.variable if proxy else None) == variable
    assert bypassed_by is None


def test_no_proxy_in_any_case_sends_the_host_directly_and_says_which_variable_did():
    environ = {"HTTPS_PROXY": "http://p:3128", "no_proxy": ".klaviyo.com"}
    transport = Transport.from_environment(KLAVIYO, environ)
    assert transport.proxy is None
    assert transport.describe() == "directly (a.klaviyo.com matches no_proxy)"


def test_a_proxy_url_is_read_like_curl_reads_it():
    proxy = parse_proxy("HTTPS_PROXY", "ops%40corp:p%40ss%3Aw0rd@proxy.corp:3128")
    assert proxy.url.scheme == "http"  # a bare host:port is an http proxy
    assert (proxy.url.user, proxy.url.password) == ("ops@corp", "p@ss:w0rd")  # percent-decoded
    assert proxy.shown == "http://proxy.corp:3128"
    assert str(proxy) == "the proxy http://proxy.corp:3128 set in HTTPS_PROXY"
    assert parse_proxy("HTTP_PROXY", "http://proxy.corp").url.port == 80
    assert parse_proxy("HTTP_PROXY", "[::1]:3128").shown == "http://[::1]:3128"
    assert parse_proxy("HTTPS_PROXY", "HTTPS://proxy.corp:8443/").url.scheme == "https"


def test_the_proxy_password_is_in_no_description_or_repr():
    environ = {"HTTPS_PROXY": "http://ops:s3cr%2Ft-pw@proxy.corp:3128", "SSL_CERT_DIR": "/"}
    transport = Transport.from_environment(KLAVIYO, environ)
    texts = [repr(transport), str(transport), repr(transport.proxy), transport.describe(),
             str(transport.summary())]
    for text in texts:
        assert "s3cr" not in text, text
    assert "s3cr/t-pw" in transport.secrets
    assert "s3cr%2Ft-pw" in transport.secrets


@pytest.mark.parametrize(("value", "words"), [
    ("socks5://ops:s3cret-pw@proxy.corp:1080", "socks5:// proxy, which the connector does not support"),
    ("socks5h://proxy.corp:1080", "socks5h:// proxy"),
    ("http://ops:s3cret-pw@proxy.corp:99999", "not a valid proxy URL"),
    ("http://ops:s3cret-pw@:3128", "not a valid proxy URL"),
    ("http:///3128", "names no proxy host"),
])
def test_a_proxy_variable_that_cannot_be_used_is_a_config_error_that_never_echoes_the_value(value, words):
    with pytest.raises(ConfigError) as raised:
        Transport.from_environment(KLAVIYO, {"HTTPS_PROXY": value})
    assert raised.value.message.startswith("HTTPS_PROXY ")
    assert words in raised.value.message
    assert "s3cret-pw" not in raised.value.message


def test_a_timeout_connecting_through_the_proxy_is_told_apart_from_a_slow_answer():
    transport = Transport.from_environment(KLAVIYO, {"HTTPS_PROXY": "http://proxy.corp:3128"})
    connecting = transport.timeout(aiohttp.ConnectionTimeoutError(), 60, 30)
    assert connecting.startswith(
        "connecting through the proxy http://proxy.corp:3128 set in HTTPS_PROXY timed out after 30 s")
    answering = transport.timeout(TimeoutError(), 60, 30)
    assert answering.startswith("no answer within 60 s through the proxy http://proxy.corp:3128")
    direct = Transport.from_environment(KLAVIYO, {})
    assert direct.timeout(TimeoutError(), 60, 30) == "no answer within 60 s (timeout)"


@pytest.mark.parametrize(("status", "retried", "words"), [
    (407, False, "requires credentials"),
    (403, False, "refused to open a tunnel to a.klaviyo.com"),
    (502, True, "could not open a tunnel to a.klaviyo.com"),
])
def test_what_a_proxy_answers_to_connect_in_words(status, retried, words):
    transport = Transport.from_environment(KLAVIYO, {"HTTPS_PROXY": "http://proxy.corp:3128"})
    message, retry = transport.proxy_answer(status, "Reason")
    assert retry is retried
    assert words in message
    assert "HTTPS_PROXY" in message


def test_the_suite_runs_without_the_machines_proxy_and_ca_variables():
    # tests/conftest.py removes them: a developer's HTTPS_PROXY must not route the suite's loopback traffic.
    assert [name for name in os.environ if is_transport_variable(name)] == []
