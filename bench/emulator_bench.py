"""Throughput and CPU cost of the Klaviyo API emulator, cold and warm.

Starts ``klaviyo-emulator serve`` as a subprocess (no rate limits, no latency), walks N pages of
events (``page[size]=1000``) and of profiles (``page[size]=100`` with
``additional-fields[profile]=subscriptions,predictive_analytics``) over one keep-alive aiohttp
session, following ``links.next`` verbatim.  The *cold* pass is the first walk; the *warm* pass
fetches the very same URLs again (what a cache may serve).  The emulator's CPU per page comes from
``/proc/<pid>/stat`` (utime + stime) before and after each pass.  Requests ask ``Accept-Encoding:
identity`` unless ``--gzip``; the client inflates outside the emulator's CPU.

    ./dev run python bench/emulator_bench.py                       # medium scale, 50 pages each
    ./dev run python bench/emulator_bench.py --scale small --pages 20
    ./dev run python bench/emulator_bench.py --gzip --gzip-level 6 # pages served gzipped at level 6
    ./dev run python bench/emulator_bench.py --scale large --pages 100 --gzip --prerender-events

Prints a table (and the emulator's start-up time and RSS) and writes ``bench/results/emulator.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import aiohttp
from yarl import URL as URL_

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Emulator, cpu_seconds, rss_mb

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "emulator.json"
HEADERS = {
    "Authorization": "Klaviyo-API-Key pk_emulator",
    "revision": "2026-07-15",
    "accept": "application/vnd.api+json",
}
WALKS = {
    "events": ("/api/events", {"page[size]": "1000"}),
    "profiles": (
        "/api/profiles",
        {"page[size]": "100", "additional-fields[profile]": "subscriptions,predictive_analytics"},
    ),
}


@dataclass
class Pass:
    resource: str
    phase: str  # cold | warm
    pages: int
    records: int
    bytes: int  # uncompressed
    wire_bytes: int  # as sent (gzip or identity)
    seconds: float
    cpu_seconds: float
    cache_hits: int | None = None  # from /_emulator/stats page_cache, when the emulator reports it

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_page(self) -> float:
        return 1000 * self.cpu_seconds / self.pages if self.pages else 0.0

    def as_json(self) -> dict:
        return asdict(self) | {
            "pages_per_s": round(self.pages_per_s, 1),
            "records_per_s": round(self.records_per_s),
            "cpu_ms_per_page": round(self.cpu_ms_per_page, 2),
        }


async def get(session: aiohttp.ClientSession, url: str) -> tuple[bytes, int]:
    """The body of a 200 (inflated here, the session does not) and its size as sent."""
    async with session.get(URL_(url, encoded=True)) as resp:  # links.next verbatim
        sent = await resp.read()
        gzipped = resp.headers.get("Content-Encoding") == "gzip"
    body = zlib.decompress(sent, wbits=31) if gzipped else sent
    if resp.status != 200:
        raise SystemExit(f"GET {url} -> {resp.status}: {body[:300]!r}")
    return body, len(sent)


async def fetch_all(session: aiohttp.ClientSession, urls: list[str]) -> tuple[int, int, int]:
    records = size = wire = 0
    for url in urls:
        body, sent = await get(session, url)
        records += len(json.loads(body)["data"])
        size += len(body)
        wire += sent
    return records, size, wire


async def cold_walk(session: aiohttp.ClientSession, base: str, path: str, params: dict[str, str], pages: int,
                    ) -> tuple[list[str], int, int]:
    """Follow links.next for up to ``pages`` pages; returns the URLs visited, records and bytes."""
    url: str | None = f"{base}{path}?{urlencode(params, quote_via=quote, safe=',')}"
    urls: list[str] = []
    records = size = wire = 0
    while url and len(urls) < pages:
        urls.append(url)
        body, sent = await get(session, url)
        doc = json.loads(body)
        records += len(doc["data"])
        size += len(body)
        wire += sent
        url = (doc.get("links") or {}).get("next")
    return urls, records, size, wire


async def cache_hits(session: aiohttp.ClientSession, base: str) -> int | None:
    async with session.get(f"{base}/_emulator/stats") as resp:
        stats = await resp.json(content_type=None)
    return (stats.get("page_cache") or {}).get("hits")


def _delta(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before


async def bench(base: str, pid: int, pages: int, gzip: bool = False) -> list[Pass]:
    results: list[Pass] = []
    connector = aiohttp.TCPConnector(limit=1, force_close=False)
    headers = {**HEADERS, "Accept-Encoding": "gzip" if gzip else "identity"}
    async with aiohttp.ClientSession(headers=headers, connector=connector, auto_decompress=False) as session:
        # one request to warm up the connection and the process, outside the measurements
        async with session.get(f"{base}/api/metrics") as resp:
            await resp.read()
        for resource, (path, params) in WALKS.items():
            hits0 = await cache_hits(session, base)
            cpu0, t0 = cpu_seconds(pid), time.perf_counter()
            urls, records, size, wire = await cold_walk(session, base, path, params, pages)
            t1, cpu1 = time.perf_counter(), cpu_seconds(pid)
            hits1 = await cache_hits(session, base)
            cold = Pass(resource, "cold", len(urls), records, size, wire, t1 - t0, cpu1 - cpu0,
                        _delta(hits1, hits0))  # fmt: skip
            cpu0, t0 = cpu_seconds(pid), time.perf_counter()
            records, size, wire = await fetch_all(session, urls)
            t1, cpu1 = time.perf_counter(), cpu_seconds(pid)
            warm_hits = _delta(await cache_hits(session, base), hits1)
            warm = Pass(resource, "warm", len(urls), records, size, wire, t1 - t0, cpu1 - cpu0, warm_hits)
            results += [cold, warm]
    return results


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def table(results: list[Pass]) -> str:
    head = (
        f"{'resource':<9} {'pass':<5} {'pages':>6} {'records':>8} {'MB':>7} {'wire MB':>8} {'pages/s':>8} "
        f"{'records/s':>10} {'CPU ms/page':>12} {'cache hits':>10}"
    )
    rows = [
        f"{r.resource:<9} {r.phase:<5} {r.pages:>6} {r.records:>8} {r.bytes / 1e6:>7.1f} "
        f"{r.wire_bytes / 1e6:>8.1f} {r.pages_per_s:>8.1f} {r.records_per_s:>10.0f} "
        f"{r.cpu_ms_per_page:>12.2f} {'-' if r.cache_hits is None else r.cache_hits:>10}"
        for r in results
    ]
    return "\n".join([head, "-" * len(head), *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="medium", choices=["tiny", "small", "medium", "large"])
    parser.add_argument("--pages", type=int, default=50, help="pages walked per resource (default 50)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--startup-timeout", type=float, default=600.0)
    parser.add_argument("--gzip", action="store_true", help="ask Accept-Encoding: gzip (default identity)")
    parser.add_argument("--gzip-level", type=int, default=None, help="the emulator's --gzip-level")
    parser.add_argument("--prerender-events", action="store_true",
                        help="start the emulator with --prerender-events (every event rendered at start-up)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    with Emulator(
        args.scale,
        seed=args.seed,
        startup_timeout=args.startup_timeout,
        gzip_level=args.gzip_level,
        prerender_events=args.prerender_events,
    ) as emulator:
        base, startup = emulator.url, emulator.startup_seconds
        startup_cpu, rss_start = emulator.cpu(), rss_mb(emulator.pid)
        results = asyncio.run(bench(base, emulator.pid, args.pages, args.gzip))
        rss_end, rss_peak = rss_mb(emulator.pid), peak_rss_mb(emulator.pid)
    level = "the emulator's default" if args.gzip_level is None else args.gzip_level
    encoding = f"gzip (level {level})" if args.gzip else "identity"
    print(
        f"emulator: scale={args.scale} seed={args.seed} startup={startup:.2f}s url={base} "
        f"encoding={encoding}{' prerender-events' if args.prerender_events else ''}"
    )
    print(
        f"emulator: start-up CPU {startup_cpu:.2f}s, RSS {rss_start:.0f} MB after start-up, "
        f"{rss_end:.0f} MB at the end, peak {rss_peak:.0f} MB"
    )
    print(table(results))
    report = {
        "scale": args.scale,
        "seed": args.seed,
        "pages_requested": args.pages,
        "encoding": encoding,
        "prerender_events": args.prerender_events,
        "startup_seconds": round(startup, 3),
        "startup_cpu_seconds": round(startup_cpu, 3),
        "rss_mb": {"after_startup": round(rss_start), "end": round(rss_end), "peak": round(rss_peak)},
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "results": [r.as_json() for r in results],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
