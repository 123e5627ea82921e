"""Fixtures of the proxy and TLS tests: a throwaway certificate authority, the emulator served over
https with a certificate it signed, and forward proxies on loopback (`forward_proxy.py`)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from tests.network.forward_proxy import ForwardProxy
from tests.network.helpers import PROXY_PASSWORD, PROXY_USER


@dataclass(frozen=True)
class ThrowawayCA:
    ca: trustme.CA
    pem: Path  # the CA's certificate, what an operator puts in SSL_CERT_FILE


@pytest.fixture(scope="session")
def throwaway_ca(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayCA:
    ca = trustme.CA()
    pem = tmp_path_factory.mktemp("ca") / "private-ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    return ThrowawayCA(ca, pem)


@pytest.fixture(scope="session")
def other_ca_pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of some other CA: trusted, it must not make the emulator's certificate trusted."""
    pem = tmp_path_factory.mktemp("other-ca") / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(pem))
    return pem


@pytest.fixture(scope="session")
def https_emulator(throwaway_ca: ThrowawayCA) -> Iterator[RunningEmulator]:
    """The emulator at https://127.0.0.1:PORT, its certificate signed by the throwaway CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    throwaway_ca.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    options = EmulatorOptions(seed=7, scale="tiny", rate_limits=False, ssl_context=context)
    with run_emulator_in_thread(options) as emu:
        yield emu


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as running:
        yield running


@pytest.fixture
def auth_proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy(PROXY_USER, PROXY_PASSWORD) as running:
        yield running
