"""The `source-klaviyo` command line: the Airbyte protocol commands, and a registry for the others.

    source-klaviyo spec
    source-klaviyo check    --config CONFIG.json
    source-klaviyo discover --config CONFIG.json
    source-klaviyo read     --config CONFIG.json --catalog CATALOG.json [--state STATE.json]

Protocol commands write only protocol messages to stdout. A bad config, catalog or state gives
exactly one TRACE ERROR (config_error) and exit status 1; a read with an incomplete stream exits 1.
They import neither duckdb nor rich (`spec` must start fast). Other commands (`sync`, `demo`,
`upgrade-plan`) are registered in `EXTRA_COMMANDS` as `"module:add_parser_function"`; the module is
imported only when its command runs, and its add-parser function must set `handler` (args -> exit code)
with `parser.set_defaults(handler=...)`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .errors import ConfigError, SourceError
from .protocol import MessageWriter, heartbeat_seconds_from_env, keep_alive

if TYPE_CHECKING:
    from .config import Config
    from .engine import Reader, ReadResult

# name -> "module:function(subparsers) -> parser"; imported lazily.
EXTRA_COMMANDS: dict[str, str] = {
    "sync": "source_klaviyo.sync.commands:add_sync_command",
    "demo": "source_klaviyo.sync.commands:add_demo_command",
    "upgrade-plan": "source_klaviyo.upgrade:add_upgrade_plan_command",
}


def _load_config(path: str, writer: MessageWriter) -> Config:
    from .config import parse_config, read_json_file

    config, migrated = parse_config(read_json_file(path, "config"))
    if migrated is not None:
        writer.control_config(migrated)
    return config


def cmd_spec(args: argparse.Namespace, writer: MessageWriter) -> int:
    from .spec import connection_specification

    writer.spec(connection_specification())
    return 0


CHECK_ATTEMPTS = 3


def cmd_check(args: argparse.Namespace, writer: MessageWriter) -> int:
    config = _load_config(args.config, writer)
    import asyncio  # late: importing asyncio is ~90 ms of CPU that `spec` does not need

    succeeded, message = asyncio.run(_check(config))
    writer.connection_status(succeeded, message)
    return 0


async def _check(config: Config) -> tuple[bool, str | None]:
    """One cheap call every read-capable key can make: the first page of /api/metrics.

    Metrics (`metrics:read`) are what every Klaviyo integration reads first, are tiny, and their
    endpoint has no required filter; `/api/accounts` would need `accounts:read`, a scope many
    read-only keys lack although they can read every stream.
    """
    from .chains import build_chain
    from .http import KlaviyoClient
    from .streams import STREAMS_BY_NAME

    metrics = build_chain(STREAMS_BY_NAME["metrics"], config)
    try:
        # A check is interactive: a wrong host must fail in seconds, not after a read's 8 attempts
        # (~30 s of backoff); three still ride out a blip.
        async with KlaviyoClient(config, max_attempts=CHECK_ATTEMPTS) as client:
            await client.get(metrics.path, metrics.params, bucket=metrics.bucket, tier=metrics.tier)
    except SourceError as exc:
        status = getattr(exc, "status", None)
        if status == 401:
            return False, "Klaviyo refused the API key (401): check that it is a valid private key (pk_...)."
        if status == 403:
            return False, ("The API key lacks the metrics:read scope (403): give the key read access "
                           "to the streams you want to sync.")
        return False, f"Could not reach Klaviyo at {config.base_url}: {exc.message}"
    return True, None


def cmd_discover(args: argparse.Namespace, writer: MessageWriter) -> int:
    from .catalog import discover

    _load_config(args.config, writer)
    writer.catalog(discover())
    return 0


def cmd_read(args: argparse.Namespace, writer: MessageWriter) -> int:
    import asyncio

    from .catalog import parse_configured_catalog
    from .config import read_json_file
    from .engine import Reader
    from .state_migrations import migrate_state

    config = _load_config(args.config, writer)
    configured = parse_configured_catalog(read_json_file(args.catalog, "catalog"))
    # The whole state is migrated (a state we cannot understand is a config_error, even for a stream
    # not selected now); its warnings (unknown streams, cursors in the future) go out as LOG WARN.
    migrated = migrate_state(read_json_file(args.state, "state") if args.state else None, config.start_date)
    for warning in migrated.warnings:
        writer.log("WARN", warning)
    state = {cs.name: migrated.streams[cs.name] for cs in configured
             if cs.incremental and cs.name in migrated.streams}
    _log_route(config, writer)
    result = asyncio.run(_read_with_heartbeat(Reader(config, configured, state, writer), writer))
    return 0 if result.ok else 1


def _log_route(config: Config, writer: MessageWriter) -> None:
    """A LOG line naming the proxy and the extra CAs a read uses, when the environment sets any: what an
    operator looks for first when connections fail. A proxy variable we cannot use is a ConfigError
    here; a CA bundle is read once, by the client."""
    from yarl import URL

    from .transport import Transport

    summary = Transport.from_environment(URL(config.base_url), load=False).summary()
    if summary is not None:
        writer.log("INFO", summary)


async def _read_with_heartbeat(reader: Reader, writer: MessageWriter) -> ReadResult:
    """The read, with a RUNNING status for its streams whenever stdout has been silent too long."""
    import asyncio

    beat = asyncio.create_task(keep_alive(writer, reader.in_progress, heartbeat_seconds_from_env()))
    try:
        return await reader.run()
    finally:
        beat.cancel()


PROTOCOL_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace, MessageWriter], int], Sequence[str]]] = {
    "spec": (cmd_spec, ()),
    "check": (cmd_check, ("config",)),
    "discover": (cmd_discover, ("config",)),
    "read": (cmd_read, ("config", "catalog", "state?")),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="source-klaviyo", description="Klaviyo source (Airbyte protocol)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_func, files) in PROTOCOL_COMMANDS.items():
        sub = subparsers.add_parser(name, help=f"the Airbyte `{name}` command")
        for file in files:
            optional = file.endswith("?")
            flag = file.rstrip("?")
            sub.add_argument(f"--{flag}", required=not optional, metavar=f"{flag.upper()}.json")
    for name, target in EXTRA_COMMANDS.items():
        if selected in (None, name):
            try:
                module, function = target.split(":")
                getattr(importlib.import_module(module), function)(subparsers)
            except (ImportError, AttributeError):
                if selected == name:
                    raise
        else:
            subparsers.add_parser(name, help=f"see `source-klaviyo {name} --help`")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else None
    known = command in PROTOCOL_COMMANDS or command in EXTRA_COMMANDS
    parser = build_parser(command if command in PROTOCOL_COMMANDS else command if known else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command not in PROTOCOL_COMMANDS:
        return int(args.handler(args) or 0)
    writer = MessageWriter()
    try:
        func, _files = PROTOCOL_COMMANDS[args.command]
        return func(args, writer)
    except ConfigError as exc:
        writer.error(None, exc)
        return 1
    except SourceError as exc:
        writer.error(None, exc)
        return 1
    finally:
        writer.flush()


def run() -> None:
    sys.exit(main())
