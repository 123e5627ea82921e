"""`klaviyo-emulator serve …`: the emulator as a standalone server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from .app import DEFAULT_GZIP_LEVEL
from .faults import FaultPlan
from .latency import PROFILES, resolve
from .runner import EmulatorOptions, start_emulator
from .scale import SCALES


def _key_scopes(values: list[str]) -> dict[str, frozenset[str] | None]:
    out: dict[str, frozenset[str] | None] = {}
    for value in values:
        key, sep, scopes = value.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(
                f"--key-scopes {value!r}: expected KEY=scope1+scope2 (or KEY=all)"
            )
        out[key] = None if scopes == "all" else frozenset(s for s in scopes.split("+") if s)
    return out


def _anchor(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="klaviyo-emulator", description="A Klaviyo API (revision 2026-07-15) emulator."
    )
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the emulated API")
    serve.add_argument("--port", type=int, required=True, help="TCP port (0 = any free port)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--seed", type=int, default=1)
    serve.add_argument("--scale", choices=list(SCALES), default="tiny")
    latency = serve.add_argument_group(
        "latency",
        "per API request: J x (MS + PER_RAW_KB x raw KiB + PER_KB x sent KiB), J of mean 1"
        " (docs/emulator.md)",
    )
    latency.add_argument("--latency-profile", choices=list(PROFILES), default=None,
                         help="preset values of the four below"
                              " (each one given replaces the preset's)")  # fmt: skip
    latency.add_argument("--latency-ms", type=float, default=None, metavar="MS",
                         help="mean of the fixed part (default 0)")  # fmt: skip
    latency.add_argument("--latency-per-kb", type=float, default=None, metavar="MS",
                         help="ms per KiB of the body as sent, gzip or identity: the transfer"
                              " (default 0)")  # fmt: skip
    latency.add_argument("--latency-per-raw-kb", type=float, default=None, metavar="MS",
                         help="ms per KiB of the uncompressed body: the server's work"
                              " (default 0)")  # fmt: skip
    latency.add_argument("--latency-tail", type=float, default=None, metavar="P99_FACTOR",
                         help="lognormal J with p99 = P99_FACTOR x median (> 1);"
                              " 0: J uniform 0.5-1.5 (default)")  # fmt: skip
    serve.add_argument("--gzip-level", type=int, choices=range(10), default=DEFAULT_GZIP_LEVEL, metavar="0-9",
                       help="zlib level of gzip bodies for clients that accept gzip;"
                            " 0 = identity only (default 1)")  # fmt: skip
    serve.add_argument("--faults", default="", help="e.g. 503=0.05,reset=0.02,429storm=0.01,retry_after=90")
    serve.add_argument("--no-rate-limits", action="store_true")
    serve.add_argument("--rate-limit-scale", type=float, default=1.0)
    serve.add_argument("--api-key", default="pk_emulator")
    serve.add_argument("--key-scopes", action="append", default=[], metavar="KEY=SCOPE+SCOPE",
                       help="an extra key and its scopes, e.g. pk_noevents=profiles:read+metrics:read;"
                            " repeatable")  # fmt: skip
    serve.add_argument(
        "--anchor",
        type=_anchor,
        default=None,
        help="ISO instant the data is generated around (default: this hour)",
    )
    serve.add_argument("--hang-seconds", type=float, default=600.0, help="how long a `timeout` fault hangs")
    serve.add_argument("--sorted-archived-campaigns", action="store_true",
                       help="serve archived campaigns perfectly sorted (Klaviyo's are slightly unsorted)")
    serve.add_argument("--spec-strict", action="store_true",
                       help="serve the OpenAPI spec's clean shapes, without Klaviyo's observed quirks"
                            " (trailing slashes, re-encoded next links, microseconds, ...)")  # fmt: skip
    serve.add_argument("--prerender-events", action="store_true",
                       help="render every event once at start-up, for the URL printed: trades"
                            " start-up time and memory (~1 GB at large) for cheap events pages;"
                            " for benchmarks")  # fmt: skip
    return p


async def _serve(options: EmulatorOptions) -> None:
    handle, url = await start_emulator(options)
    print(url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows has no loop signal handlers
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await handle.close()


def command() -> list[str]:
    """The argv that runs this emulator as a process: the `klaviyo-emulator` console script of this
    environment, else the one on PATH, else this module through the interpreter."""
    script = Path(sys.executable).with_name("klaviyo-emulator")
    if script.exists():
        return [str(script)]
    found = shutil.which("klaviyo-emulator")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from klaviyo_emulator.cli import main; sys.exit(main())"]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        FaultPlan.parse(args.faults, args.seed)
        key_scopes = _key_scopes(args.key_scopes)
        resolve(args.latency_profile, args.latency_ms, args.latency_per_kb, args.latency_per_raw_kb,
                args.latency_tail)  # fmt: skip
    except (ValueError, argparse.ArgumentTypeError) as exc:
        print(f"klaviyo-emulator: {exc}", file=sys.stderr)
        return 2
    options = EmulatorOptions(
        seed=args.seed,
        scale=args.scale,
        latency_profile=args.latency_profile,
        latency_ms=args.latency_ms,
        latency_per_kb=args.latency_per_kb,
        latency_per_raw_kb=args.latency_per_raw_kb,
        latency_tail=args.latency_tail,
        gzip_level=args.gzip_level,
        faults=args.faults,
        rate_limits=not args.no_rate_limits,
        rate_limit_scale=args.rate_limit_scale,
        api_key=args.api_key,
        key_scopes=key_scopes,
        anchor=args.anchor,
        hang_seconds=args.hang_seconds,
        unsorted_archived_campaigns=not args.sorted_archived_campaigns,
        spec_strict=args.spec_strict,
        prerender_events=args.prerender_events,
        host=args.host,
        port=args.port,
    )
    asyncio.run(_serve(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
