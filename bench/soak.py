"""Soak: one long `source-klaviyo read` of events at the rate ceiling with faults on.

    ./dev run python bench/soak.py                    # 30 minutes, medium scale (300,000 events)
    ./dev run python bench/soak.py --minutes 4 --scale small

The emulator (in this process) serves events with every fault kind switched on and its rate limits
scaled down so that reading all its events at the ceiling takes about `--minutes`: the connector
spends the whole run paced by `RateLimit-*` headers, retrying faults and honouring 429s. The
connector runs as a subprocess; its RSS is sampled every `--sample-seconds`. At the end every record
it emitted is compared with the emulator's truth below the final state (records lost, duplicated,
unexpected — all must be 0). Prints a table and writes `bench/results/soak.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import rss_mb

from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from source_klaviyo.catalog import configured_catalog
from source_klaviyo.streams import TIERS

DEFAULT_FAULTS = (
    "503=0.02,500=0.01,502=0.01,504=0.01,reset=0.01,truncate=0.01,html=0.01,429=0.01,timeout=0.005"
)
EVENTS_PER_PAGE = 1000
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="how long the read should last (default 30)"
    )
    parser.add_argument("--scale", default="medium", choices=("tiny", "small", "medium", "large"))
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument(
        "--faults", default=DEFAULT_FAULTS, help=f"emulator fault spec (default {DEFAULT_FAULTS})"
    )
    parser.add_argument("--hang-seconds", type=float, default=5.0, help="how long a `timeout` fault hangs")
    parser.add_argument(
        "--request-timeout", type=float, default=3.0, help="the connector's request_timeout_seconds"
    )
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="RSS sampling period")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    return parser.parse_args(argv)


def ceiling_scale(events: int, minutes: float) -> float:
    """The emulator's rate-limit scale at which the XL steady window lets all pages through in `minutes`."""
    pages = math.ceil(events / EVENTS_PER_PAGE) + 4  # + the first-cursor probe and window edges
    per_minute = max(1, math.ceil(pages / max(minutes, 0.1)))
    return per_minute / TIERS["XL"].steady_per_minute


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_setup = time.monotonic()
    options = EmulatorOptions(
        seed=args.seed,
        scale=args.scale,
        faults=args.faults,
        hang_seconds=args.hang_seconds,
        rate_limits=True,
        rate_limit_scale=1.0,
    )
    with run_emulator_in_thread(options) as probe:
        events = len(probe.truth("events"))
    options.rate_limit_scale = ceiling_scale(events, args.minutes)
    with run_emulator_in_thread(options) as emu, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps({"api_key": options.api_key, "base_url": emu.url,
                                      "request_timeout_seconds": args.request_timeout}))
        catalog = Path(tmp) / "catalog.json"
        catalog.write_text(json.dumps(configured_catalog(["events"])))
        setup_seconds = time.monotonic() - started_setup
        result = soak(args, emu, config, catalog)
        result.update(scale=args.scale, events_in_account=events, faults=args.faults,
                      rate_limit_scale=options.rate_limit_scale, setup_seconds=round(setup_seconds, 1),
                      emulator=_emulator_figures(emu.stats()))
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {args.out}")
    return 0 if result["lost"] == result["duplicated"] == result["unexpected"] == 0 else 1


def soak(args: argparse.Namespace, emu: RunningEmulator, config: Path, catalog: Path) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "source_klaviyo",
        "read",
        "--config",
        str(config),
        "--catalog",
        str(catalog),
    ]
    started = time.monotonic()
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stderr is not None
    counts: Counter[str] = Counter()
    samples: list[dict[str, float]] = []
    progress = {"records": 0, "states": 0}
    errors: list[str] = []
    final_state: dict[str, Any] | None = None
    done = threading.Event()

    def sample() -> None:
        while not done.wait(args.sample_seconds if samples else 1.0):
            try:
                samples.append(
                    {
                        "seconds": round(time.monotonic() - started, 1),
                        "rss_mb": round(rss_mb(process.pid), 1),
                        "records": progress["records"],
                    }
                )
            except (FileNotFoundError, ProcessLookupError):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr = bytearray()
    drain = threading.Thread(target=lambda: stderr.extend(process.stderr.read()), daemon=True)  # type: ignore[union-attr]
    drain.start()
    for line in process.stdout:
        message = json.loads(line)
        kind = message["type"]
        if kind == "RECORD":
            counts[message["record"]["data"]["id"]] += 1
            progress["records"] += 1
        elif kind == "STATE":
            progress["states"] += 1
            final_state = message["state"]["stream"]["stream_state"]
        elif kind == "TRACE" and message["trace"]["type"] == "ERROR":
            errors.append(message["trace"]["error"]["message"])
    process.wait()
    done.set()
    sampler.join()
    drain.join(timeout=5)
    elapsed = time.monotonic() - started

    upper = (final_state or {}).get("datetime")
    expected = {row["id"] for row in emu.truth("events") if upper is not None and row["datetime"] < upper}
    got = set(counts)
    rss = [s["rss_mb"] for s in samples] or [0.0]
    return {
        "minutes": round(elapsed / 60, 2),
        "exit_code": process.returncode,
        "records": progress["records"],
        "states": progress["states"],
        "final_state": final_state,
        "lost": len(expected - got),
        "duplicated": sum(count - 1 for count in counts.values()),
        "unexpected": len(got - expected),
        "errors": errors,
        "records_per_second": round(progress["records"] / elapsed, 1) if elapsed else 0,
        "rss_mb": {"first": rss[0], "max": max(rss), "last": rss[-1],
                   "max_in_second_half": max(rss[len(rss) // 2:])},
        "samples": samples,
        "stderr_tail": stderr.decode(errors="replace")[-1500:],
    }


def _emulator_figures(stats: dict[str, Any]) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    for route_statuses in stats.get("requests", {}).values():
        statuses.update({status: count for status, count in route_statuses.items()})
    return {"requests": stats.get("requests_total"), "throttled_429": stats.get("throttled"),
            "faults": stats.get("faults"), "by_status": dict(statuses)}


def print_table(result: dict[str, Any]) -> None:
    print(f"soak: {result['minutes']} min, {result['records']:,} records ({result['records_per_second']}/s), "
          f"{result['states']} states, exit {result['exit_code']}")
    print(f"emulator: {result['emulator']['requests']} requests, faults {result['emulator']['faults']}, "
          f"429s {result['emulator']['throttled_429']}")
    print(f"\n{'t (s)':>8} {'RSS MB':>8} {'records':>10}")
    step = max(1, len(result["samples"]) // 20)
    for sample in result["samples"][::step]:
        print(f"{sample['seconds']:>8} {sample['rss_mb']:>8} {sample['records']:>10,}")
    rss = result["rss_mb"]
    print(f"\nRSS MB first/max/last: {rss['first']}/{rss['max']}/{rss['last']} "
          f"(max in second half {rss['max_in_second_half']})")
    print(f"lost {result['lost']}, duplicated {result['duplicated']}, unexpected {result['unexpected']}"
          + (f", errors: {result['errors']}" if result["errors"] else ""))


if __name__ == "__main__":
    sys.exit(main())
