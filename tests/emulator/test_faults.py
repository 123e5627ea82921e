"""``--faults``: each kind, at rate 1.0, does to a client what it promises; the draw is a function
of the seed and the request, not of the order requests arrive in; the emulator's own endpoints are
never faulted."""

from __future__ import annotations

import http.client
import json
import urllib.error

import pytest

from klaviyo_emulator.runner import EmulatorOptions, run_emulator_in_thread
from tests.emulator.helpers import request

TRANSPORT_ERRORS = (ConnectionError, http.client.HTTPException, urllib.error.URLError)


def faulty(faults: str, seed: int = 17, **kw):
    return run_emulator_in_thread(EmulatorOptions(seed=seed, rate_limits=False, faults=faults, **kw))


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_error_faults_answer_that_status_with_a_json_api_body(status):
    with faulty(f"{status}=1.0") as emu:
        for path in ("/api/profiles", "/api/events", "/api/lists"):
            resp = request(emu.url, path)
            assert resp.status == status
            assert resp.error["status"] == status
            assert resp.error["code"]


def test_429_fault_carries_retry_after():
    with faulty("429=1.0") as emu:
        resp = request(emu.url, "/api/profiles")
    assert resp.status == 429
    assert resp.header_int("Retry-After") >= 1
    assert resp.error["code"] == "throttled"


def test_html_fault_is_a_502_html_page():
    with faulty("html=1.0") as emu:
        resp = request(emu.url, "/api/events")
    assert resp.status == 502
    assert resp.headers.get_content_type() == "text/html"
    assert b"<html" in resp.body.lower()
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.body)


def test_truncate_fault_is_a_200_whose_body_is_not_json():
    with faulty("truncate=1.0") as emu:
        resp = request(emu.url, "/api/profiles", {"page[size]": 50})
    assert resp.status == 200
    assert resp.body, "something was sent"
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.body)


def test_reset_fault_breaks_the_connection():
    with faulty("reset=1.0") as emu, pytest.raises(TRANSPORT_ERRORS):
        request(emu.url, "/api/profiles", {"page[size]": 50})


def test_timeout_fault_hangs_past_the_client_timeout():
    with (
        faulty("timeout=1.0", hang_seconds=1.0) as emu,
        pytest.raises((TimeoutError, urllib.error.URLError)) as caught,
    ):
        request(emu.url, "/api/metrics", timeout=0.3)
    err = caught.value
    assert isinstance(err, TimeoutError) or isinstance(err.reason, TimeoutError)


def test_emulator_endpoints_are_never_faulted():
    with faulty("503=1.0") as emu:
        assert request(emu.url, "/api/profiles").status == 503
        assert request(emu.url, "/_emulator/truth/profiles").status == 200
        assert request(emu.url, "/_emulator/stats").status == 200
        mutated = request(
            emu.url, "/_emulator/mutate", method="POST", body={"resource": "profiles", "add": 1}
        )
        assert mutated.status == 200


def _sequence(seed: int, faults: str = "503=0.3,500=0.2,429=0.2", n: int = 40) -> list[int]:
    with faulty(faults, seed=seed) as emu:
        return [request(emu.url, "/api/metrics").status for _ in range(n)]


def test_same_seed_gives_the_same_fault_sequence():
    first, second = _sequence(23), _sequence(23)
    assert first == second
    assert {200, 503, 500, 429} <= set(first), "a 30/20/20 mix over 40 requests shows every kind"


def test_different_seed_gives_a_different_fault_sequence():
    assert _sequence(23) != _sequence(24)


def test_a_request_meets_the_same_faults_whatever_order_the_requests_arrive_in():
    """A concurrent client's requests arrive in a different order on every run: each request (and each
    retry of it) still meets the same fault, so a seed reproduces a run."""
    targets = [f"/api/profiles?page%5Bsize%5D={size}" for size in range(1, 31)] * 2  # each asked twice

    def statuses(order: list[str]) -> dict[tuple[str, int], int]:
        seen: dict[str, int] = {}
        out: dict[tuple[str, int], int] = {}
        with faulty("503=0.4", seed=23) as emu:
            for target in order:
                seen[target] = seen.get(target, 0) + 1
                out[(target, seen[target])] = request(emu.url, target).status
        return out

    in_order = statuses(targets)
    assert statuses(targets[::-1]) == in_order
    assert {200, 503} == set(in_order.values())


def test_fault_rate_is_roughly_the_requested_share():
    statuses = _sequence(31, faults="503=0.25", n=200)
    assert 25 <= statuses.count(503) <= 75


def test_reset_fault_to_a_client_that_already_hung_up_logs_no_error(caplog):
    """A client that sends a request and closes at once: writing the half body meets a closing
    transport, which is the reset the fault promised, not an emulator error with a traceback."""
    import socket
    from urllib.parse import urlsplit

    caplog.set_level("DEBUG", logger="klaviyo_emulator")
    with faulty("reset=1.0") as emu:
        host, port = urlsplit(emu.url).hostname, urlsplit(emu.url).port
        raw = (
            b"GET /api/events?page%5Bsize%5D=1000 HTTP/1.1\r\nHost: x\r\nrevision: 2026-07-15\r\n"
            b"Authorization: Klaviyo-API-Key pk_emulator\r\n\r\n"
        )
        for _ in range(20):
            with socket.create_connection((host, port)) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.sendall(raw)  # and close with RST (linger 0) before the answer
        assert request(emu.url, "/_emulator/stats").status == 200  # still serving
        faults = emu.stats()["faults"].get("reset", 0)
    assert faults >= 1
    errors = [r for r in caplog.records if r.name.startswith("klaviyo_emulator") and r.levelno >= 30]
    assert not errors, [r.getMessage() for r in errors]
