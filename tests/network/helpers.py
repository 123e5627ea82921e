"""Helpers of the proxy and TLS tests: reads compared with the emulator's truth, `check` in-process,
and the assertions on what the connector says (and never says)."""

from __future__ import annotations

import asyncio
import base64
import socket
from urllib.parse import quote

from source_klaviyo.catalog import configured_catalog
from source_klaviyo.cli import _check
from source_klaviyo.config import parse_config
from tests.connector.helpers import API_KEY
from tests.reliability.helpers import CORE_STREAMS, assert_exact, expected_keys, fast_read

PROXY_USER = "etl-job"
# Characters that must be percent-encoded in a URL: the connector must decode them, and mask both forms.
PROXY_PASSWORD = "Pr0xy:p@ss/w0rd%-9f3c71"
SLOW_ENOUGH = {"request_timeout_seconds": 20}  # a loaded 2-core box opening TLS tunnels, not a hang
# Every form the proxy password could leak in: as given, percent-encoded, inside the basic-auth token.
PASSWORD_FORMS = [PROXY_PASSWORD, quote(PROXY_PASSWORD, safe=""),
                  base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()]


def assert_no_password(*texts: str) -> None:
    for text in texts:
        for form in PASSWORD_FORMS:
            assert form not in text, "the proxy password leaked"


def assert_mentions(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def assert_reads_the_truth(emu, streams=CORE_STREAMS):
    """A full-refresh read of `streams` in-process: every stream complete, exactly the emulator's truth."""
    sink, result = fast_read(emu.url, streams, sync_mode="full_refresh", max_attempts=3, **SLOW_ENOUGH)
    assert result.ok, sink.errors
    for stream in streams:
        assert_exact(sink, stream, expected_keys(emu, stream))
    return sink, result


def check(url: str, **config):
    """What `check` answers for a config of `url`: (succeeded, message)."""
    parsed, _ = parse_config({"api_key": API_KEY, "base_url": url, **config})
    return asyncio.run(_check(parsed))


def dead_port() -> int:
    with socket.socket() as probe:  # a loopback port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def full_refresh_catalog(streams: list[str]):
    return configured_catalog(streams, "full_refresh")
