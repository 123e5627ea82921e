"""Helpers shared by the benchmarks: the emulator as a subprocess, /proc CPU and RSS, its stats."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from klaviyo_emulator import cli as emulator_cli

__all__ = ["Emulator", "best_ms_per_call", "cpu_seconds", "identity_pages", "rss_mb",
           "sync_peak_rss_mb"]

URL = re.compile(r"https?://[\w.\-]+:\d+")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat (fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


_IDENTITY_HEADERS = {
    "Authorization": "Klaviyo-API-Key pk_emulator",
    "revision": "2026-07-15",
    "Accept-Encoding": "identity",
}


def identity_pages(url: str, first: str, count: int) -> list[bytes]:
    """Up to `count` uncompressed bodies of the chain of pages that starts at `url + first`."""
    out: list[bytes] = []
    next_url: str | None = url + first
    while next_url and len(out) < count:
        request = urllib.request.Request(next_url, headers=_IDENTITY_HEADERS)
        with urllib.request.urlopen(request) as resp:
            body: bytes = resp.read()
        out.append(body)
        next_url = json.loads(body)["links"]["next"]
    return out


def best_ms_per_call(work: Sequence[Any], fn: Callable[[Any], object], repeat: int) -> float:
    """CPU milliseconds per item of `fn` over `work`: the best of `repeat` rounds (a busy machine
    inflates a round; it cannot make one faster)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for item in work:
            fn(item)
        best = min(best, time.process_time() - start)
    return 1000 * best / len(work)


def rss_mb(pid: int) -> float:
    """Current resident set size of a process (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Emulator:
    """`klaviyo-emulator serve` in a subprocess; use as a context manager."""

    scale: str
    seed: int = 1
    rate_limits: bool = False
    rate_limit_scale: float = 1.0
    # latency and compression flags of `klaviyo-emulator serve` (docs/emulator.md); None: not passed
    latency_ms: float | None = None
    latency_profile: str | None = None
    latency_per_kb: float | None = None
    latency_per_raw_kb: float | None = None
    latency_tail: float | None = None
    gzip_level: int | None = None
    prerender_events: bool = False  # `--prerender-events`: every event rendered once at start-up
    startup_timeout: float = 600.0
    url: str = ""
    startup_seconds: float = 0.0
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def args(self) -> list[str]:
        args = ["serve", "--port", "0", "--scale", self.scale, "--seed", str(self.seed),
                "--rate-limit-scale", str(self.rate_limit_scale)]
        if not self.rate_limits:
            args.append("--no-rate-limits")
        if self.prerender_events:
            args.append("--prerender-events")
        optional: list[tuple[str, object]] = [
            ("--latency-profile", self.latency_profile),
            ("--latency-ms", self.latency_ms),
            ("--latency-per-kb", self.latency_per_kb),
            ("--latency-per-raw-kb", self.latency_per_raw_kb),
            ("--latency-tail", self.latency_tail),
            ("--gzip-level", self.gzip_level),
        ]
        for flag, value in optional:
            if value is not None:
                args += [flag, str(value)]
        return args

    def __enter__(self) -> Emulator:
        started = time.perf_counter()
        self.proc = subprocess.Popen([*emulator_cli.command(), *self.args()], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert self.proc is not None
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        deadline = started + self.startup_timeout
        while True:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.perf_counter()))
            except queue.Empty:
                self.__exit__()
                raise SystemExit(f"emulator printed no URL within {self.startup_timeout}s") from None
            match = URL.search(line)
            if match:
                self.url = match.group(0)
                self.startup_seconds = time.perf_counter() - started
                return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def _call(self, path: str, payload: dict | None = None, timeout: float = 600.0) -> Any:  # noqa: ANN401 - JSON
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.url + path, data=data, method="GET" if data is None else "POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")

    def stats(self) -> dict[str, Any]:
        return self._call("/_emulator/stats")

    def reset_stats(self) -> None:
        self._call("/_emulator/stats/reset", {})

    def reset(self) -> None:
        """As just started, its data as it is (`POST /_emulator/reset`): limits, draws, pages, stats."""
        self._call("/_emulator/reset", {})

    def truth_count(self, resource: str, cursor: str, before: float) -> int:
        """Records of `resource` whose cursor is before the epoch second `before` (what a read
        started at `before + 5 s` emits: the engine never reads past now - 5 s). Counted in a child
        process: a million truth rows would leave this process at ~500 MB, and a child forked from it
        would inherit that as its `ru_maxrss`."""
        code = (
            "import json, sys, urllib.request\n"
            "from datetime import UTC, datetime\n"
            "url, cursor, before = sys.argv[1], sys.argv[2], int(float(sys.argv[3]))\n"
            "limit = datetime.fromtimestamp(before, UTC)\n"
            "rows = json.loads(urllib.request.urlopen(url, timeout=600).read())['data']\n"
            "print(sum(1 for r in rows\n"
            "          if datetime.fromisoformat(r[cursor].replace('Z', '+00:00')) < limit))\n"
        )
        return int(self._truth_in_child(resource, code, cursor, str(before)))

    def group_sizes(self, resource: str, key: str) -> dict[str, int]:
        """Rows of the ground truth `resource` per value of `key` (a fan-out's children per parent),
        counted in a child process, as `truth_count` is and for the same reason."""
        code = (
            "import collections, json, sys, urllib.request\n"
            "rows = json.loads(urllib.request.urlopen(sys.argv[1], timeout=600).read())['data']\n"
            "print(json.dumps(collections.Counter(r[sys.argv[2]] for r in rows)))\n"
        )
        sizes: dict[str, int] = json.loads(self._truth_in_child(resource, code, key))
        return sizes

    def _truth_in_child(self, resource: str, code: str, *args: str) -> str:
        """What `code` prints, run in a child process with the URL of `resource`'s ground truth as
        its first argument and `args` after it."""
        out = subprocess.run([sys.executable, "-c", code, f"{self.url}/_emulator/truth/{resource}", *args],
                             capture_output=True, text=True, check=True)
        return out.stdout

    def truth_ids(self, resource: str) -> list[str]:
        """The ids of a small ground-truth table (a fan-out's parents)."""
        return [row["id"] for row in self._call(f"/_emulator/truth/{resource}")["data"]]

    def add(self, resource: str, count: int) -> None:
        self._call("/_emulator/mutate", {"resource": resource, "add": count})


def emulator_requests(stats: dict[str, Any], route_prefix: str | None = None) -> tuple[int, int]:
    """(requests, 429s) in a `/_emulator/stats` snapshot, for API routes starting with `route_prefix`."""
    requests = throttled = 0
    for route, statuses in stats.get("requests", {}).items():
        if not route.startswith("/api/") or (route_prefix and not route.startswith(route_prefix)):
            continue
        for status, count in statuses.items():
            requests += count
            if status == "429":
                throttled += count
    return requests, throttled


def table_rows(db: Path, tables: list[str]) -> int:
    """Rows in DuckDB tables, counted in a child process (keeps duckdb out of this one's RSS)."""
    code = (
        "import sys, duckdb\n"
        "con = duckdb.connect(sys.argv[1], read_only=True)\n"
        "print(sum(con.execute(f'SELECT count(*) FROM \"{t}\"').fetchone()[0] for t in sys.argv[2:]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(db), *tables], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def sync_peak_rss_mb(db: Path) -> float | None:
    """The sync's peak RSS as the sum of its process's and its DuckDB writer process's peaks, from the
    summary it recorded (`ru_maxrss` of the sync is the larger of the two, not their sum); None for a
    sync without a writer process."""
    code = (
        "import sys, json, duckdb\n"
        "con = duckdb.connect(sys.argv[1], read_only=True)\n"
        "sql = 'SELECT summary FROM _source_klaviyo_syncs ORDER BY started_at DESC LIMIT 1'\n"
        "summary = json.loads(con.execute(sql).fetchone()[0])\n"
        "own, writer = summary.get('peak_rss_mb'), summary.get('writer_peak_rss_mb')\n"
        "print(own + writer if own and writer else '')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, check=True)
    return float(out.stdout) if out.stdout.strip() else None


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in load]}
