"""``klaviyo-emulator serve`` as users start it: a process that prints its URL and serves."""

from __future__ import annotations

from tests.emulator.helpers import request, served


def test_serve_prints_a_url_and_serves_the_api():
    args = ["serve", "--port", "0", "--seed", "5", "--scale", "tiny", "--no-rate-limits", "--latency-ms", "0"]
    with served(*args) as url:
        resp = request(url, "/api/metrics")
        assert resp.status == 200
        assert resp.json()["data"]
        assert request(url, "/api/metrics", api_key="pk_other").status == 401


def test_serve_with_a_custom_key_and_faults():
    args = [
        "serve",
        "--port",
        "0",
        "--scale",
        "tiny",
        "--api-key",
        "pk_cli",
        "--faults",
        "503=1.0",
        "--seed",
        "1",
    ]
    with served(*args) as url:
        assert request(url, "/api/metrics", api_key="pk_cli").status == 503
        assert request(url, "/_emulator/stats").status == 200
