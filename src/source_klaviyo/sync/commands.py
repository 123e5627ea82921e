"""The `sync` and `demo` commands, for `cli.py` to route to.

    parser = argparse.ArgumentParser(prog="source-klaviyo")
    subparsers = parser.add_subparsers(dest="command")
    add_sync_command(subparsers)           # adds `sync`, with `handler` set
    add_demo_command(subparsers)           # adds `demo`, with `handler` set
    args = parser.parse_args()
    return args.handler(args)              # run_sync(args) / run_demo(args) -> exit status
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from source_klaviyo.errors import SourceError

if TYPE_CHECKING:
    from source_klaviyo.sync.run import SyncOptions

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

DEFAULT_DB = "klaviyo.duckdb"
DEFAULT_DEMO_DB = "klaviyo-demo.duckdb"


def add_sync_command(subparsers: Subparsers) -> None:
    sync = subparsers.add_parser(
        "sync", help="read Klaviyo into a local DuckDB file (incremental on the next run)"
    )
    sync.add_argument("--config", required=True, help="the connector config JSON file")
    sync.add_argument("--db", default=DEFAULT_DB, help=f"the DuckDB file (default {DEFAULT_DB})")
    sync.add_argument("--streams", help="comma-separated stream names (default: every stream)")
    sync.add_argument("--full-refresh", action="store_true", help="re-read every stream from the start")
    sync.add_argument("--keep-raw", action="store_true",
                      help="keep every record as read in its table's _raw column (default: only records "
                           "the typed columns do not hold whole)")
    _add_output_options(sync)
    sync.set_defaults(handler=run_sync)


def add_demo_command(subparsers: Subparsers) -> None:
    demo = subparsers.add_parser("demo", help="sync the bundled Klaviyo emulator into DuckDB; no key needed")
    demo.add_argument("--db", default=DEFAULT_DEMO_DB, help=f"the DuckDB file (default {DEFAULT_DEMO_DB})")
    demo.add_argument("--scale", default="small", choices=("tiny", "small", "medium", "large"))
    demo.add_argument("--seed", type=int, default=42, help=argparse.SUPPRESS)
    demo.add_argument("--streams", help="comma-separated stream names (default: every stream)")
    _add_output_options(demo)
    demo.set_defaults(handler=run_demo)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="plain log lines instead of live progress bars")
    # For tests: a line per committed checkpoint, and how often checkpoints are committed.
    parser.add_argument("--checkpoint-log", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--flush-records", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--flush-seconds", type=float, default=1.0, help=argparse.SUPPRESS)


def sync_options(args: argparse.Namespace, command: str) -> SyncOptions:
    from source_klaviyo.sync.duckdb_store import ROW_GROUP_SIZE
    from source_klaviyo.sync.run import SyncOptions

    return SyncOptions(
        db_path=Path(args.db),
        streams=[name.strip() for name in args.streams.split(",") if name.strip()] if args.streams else None,
        full_refresh=getattr(args, "full_refresh", False),
        keep_raw=getattr(args, "keep_raw", False),
        # --quiet and a non-terminal stderr both mean plain lines; the summary is printed either way.
        live_progress=sys.stderr.isatty() and not args.quiet,
        checkpoint_log=args.checkpoint_log,
        flush_records=args.flush_records or ROW_GROUP_SIZE,
        flush_seconds=args.flush_seconds,
        command=command,
    )


def run_sync(args: argparse.Namespace) -> int:
    """`source-klaviyo sync`: 0 when every stream completed, 1 otherwise (the summary says why)."""
    from source_klaviyo.config import parse_config, read_json_file
    from source_klaviyo.sync.run import sync

    try:
        config, _migrated = parse_config(read_json_file(args.config, "config"))
        summary = asyncio.run(sync(config, sync_options(args, "sync")))
    except SourceError as error:
        print(f"source-klaviyo sync: {error.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(interrupted("sync", args.db), file=sys.stderr)
        return INTERRUPTED
    return 0 if summary.status == "SUCCEEDED" else 1


INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)


def interrupted(command: str, db: str) -> str:
    # Every commit holds a stream's records with its state (sync/sink.py), so nothing is lost.
    return (f"source-klaviyo {command}: interrupted. {db} holds each stream as of its last checkpoint; "
            "the same command continues from there.")


def run_demo(args: argparse.Namespace) -> int:
    """`source-klaviyo demo`: the bundled emulator, a sync into DuckDB, and a few queries on the result."""
    from source_klaviyo.sync.demo import demo

    try:
        return demo(args, sync_options(args, "demo"))
    except SourceError as error:
        print(f"source-klaviyo demo: {error.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(interrupted("demo", args.db), file=sys.stderr)
        return INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """`python -m source_klaviyo.sync sync|demo …`: the same commands without the CLI around them."""
    parser = argparse.ArgumentParser(prog="python -m source_klaviyo.sync")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_sync_command(subparsers)
    add_demo_command(subparsers)
    args = parser.parse_args(argv)
    return int(args.handler(args))
