"""``klaviyo-emulator serve`` as users start it: a process that prints its URL and serves."""

from __future__ import annotations

import queue
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from tests.emulator.helpers import request

URL = re.compile(r"https?://[\w.\-]+:\d+")


def _command() -> list[str]:
    script = Path(sys.executable).with_name("klaviyo-emulator")
    if script.exists():
        return [str(script)]
    found = shutil.which("klaviyo-emulator")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from klaviyo_emulator.cli import main; sys.exit(main())"]


def _first_url(proc: subprocess.Popen, wait_seconds: float = 30.0) -> str:
    lines: queue.Queue[str] = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen = []
    while True:
        try:
            line = lines.get(timeout=wait_seconds)
        except queue.Empty:
            raise AssertionError(f"no URL printed within {wait_seconds}s; got {seen}") from None
        seen.append(line)
        match = URL.search(line)
        if match:
            return match.group(0)


def test_serve_prints_a_url_and_serves_the_api():
    args = ["serve", "--port", "0", "--seed", "5", "--scale", "tiny", "--no-rate-limits", "--latency-ms", "0"]
    proc = subprocess.Popen(
        [*_command(), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    try:
        url = _first_url(proc)
        resp = request(url, "/api/metrics")
        assert resp.status == 200
        assert resp.json()["data"]
        assert request(url, "/api/metrics", api_key="pk_other").status == 401
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


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
    proc = subprocess.Popen(
        [*_command(), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    try:
        url = _first_url(proc)
        assert request(url, "/api/metrics", api_key="pk_cli").status == 503
        assert request(url, "/_emulator/stats").status == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
