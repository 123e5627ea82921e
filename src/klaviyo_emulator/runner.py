"""Starting the emulator: in a daemon thread (tests, benchmarks) or inside a running event loop (`demo`).

with run_emulator_in_thread(EmulatorOptions(seed=7, scale="tiny")) as emu:
    requests.get(emu.url + "/api/profiles", headers={...})
    emu.mutate("profiles", add=3, update=2)
    emu.mutate("tags", delete=1)
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web

from .app import CACHE, DEFAULT_GZIP_LEVEL, STATS, WORLD, build_app, world_quirks
from .jsontext import JSONObject, dumps
from .store import World


@dataclass
class EmulatorOptions:
    seed: int = 1
    scale: str = "tiny"  # tiny | small | medium | large
    # Added latency per API request (latency.py, docs/emulator.md "Latency"). A profile ("real") gives
    # all four values; each one set here replaces the profile's. None: the profile's, or 0.
    latency_profile: str | None = None
    latency_ms: float | None = None  # mean of the fixed part
    latency_per_kb: float | None = None  # ms per KiB of the body as sent (gzip or identity)
    latency_per_raw_kb: float | None = None  # ms per KiB of the uncompressed body
    latency_tail: float | None = None  # p99 / median of the factor (lognormal); 0: uniform 0.5-1.5x
    # gzip for clients that accept it, at this zlib level; 0: identity only
    gzip_level: int = DEFAULT_GZIP_LEVEL
    faults: str = ""  # interface.md grammar, e.g. "503=0.05,reset=0.02"
    rate_limits: bool = True
    rate_limit_scale: float = 1.0  # multiplies every tier's burst and steady limits
    # The epoch seconds the rate-limit windows are counted by: a test shares its client's virtual clock
    # here, so that a day of reporting quota passes without waiting for it. None: real time.
    rate_limit_clock: Callable[[], float] | None = None
    api_key: str = "pk_emulator"
    key_scopes: dict[str, frozenset[str] | None] = field(
        default_factory=dict
    )  # extra keys -> scopes (None = all)
    anchor: datetime | None = (
        None  # data is generated relative to this instant; default: now floored to the hour
    )
    hang_seconds: float = 600.0  # how long a `timeout` fault hangs
    page_cache_mb: float = 96.0  # bound of the rendered-page LRU (docs/emulator.md, "Serving cost")
    # Klaviyo's quirk: archived campaigns by updated_at come slightly unsorted (quirks.py); False sorts them.
    unsorted_archived_campaigns: bool = True
    # Serve the spec's clean shapes instead of Klaviyo's observed quirks (quirks.py `QUIRKS`).
    spec_strict: bool = False
    # Render every event once at start-up for the URL served (data/events.py `prerender`): events pages
    # then cost selection + join (+ gzip) instead of ~7 ms; ~1 GB and ~7 s more at large. Benchmarks.
    prerender_events: bool = False
    host: str = "127.0.0.1"
    port: int = 0
    # Serve https with this context (its certificate and key) instead of http: tests of TLS and proxies.
    ssl_context: ssl.SSLContext | None = None


@dataclass
class EmulatorHandle:
    """What `start_emulator` returns inside an event loop; `await handle.close()` stops it."""

    runner: web.AppRunner
    app: web.Application
    url: str

    @property
    def world(self) -> World:
        return self.app[WORLD]

    def mutate(
        self, resource: str, add: int = 0, update: int = 0, archive: int = 0, delete: int = 0
    ) -> dict[str, list[str]]:
        result = self.world.mutate(resource, add, update, archive, delete)
        self.app[CACHE].clear()
        return result

    def truth(self, resource: str) -> list[JSONObject]:
        with self.world.lock:
            return self.world.truth(resource)

    def stats(self) -> JSONObject:
        return self.app[STATS].snapshot(self.app[CACHE])

    def reset_stats(self) -> None:
        self.app[STATS].reset()

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_emulator(options: EmulatorOptions) -> tuple[EmulatorHandle, str]:
    """Build the world and listen; returns (handle, url). For use inside an existing event loop."""
    world = await asyncio.get_running_loop().run_in_executor(
        None, World, options.seed, options.scale, options.anchor, world_quirks(options)
    )
    app = build_app(world, options)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port, ssl_context=options.ssl_context)
    await site.start()
    server = site._server
    assert server is not None and server.sockets  # type: ignore[attr-defined]
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    url = f"{'https' if options.ssl_context is not None else 'http'}://{options.host}:{port}"
    if options.prerender_events:
        # for the base a client of `url` sends (api.py escapes the Host header the same way)
        base = dumps(url).decode()[1:-1]

        def prerender() -> None:
            with world.lock:
                world.events.prerender(base)

        try:
            await asyncio.get_running_loop().run_in_executor(None, prerender)
        except BaseException:
            await runner.cleanup()  # e.g. a MemoryError: the port is not left listening
            raise
    return EmulatorHandle(runner, app, url), url


class RunningEmulator:
    """The emulator serving from a daemon thread with its own event loop; a context manager."""

    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._handle: EmulatorHandle | None = None
        self._thread = threading.Thread(target=self._run, name="klaviyo-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self._handle is not None
        self.url: str = self._handle.url

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._handle, _ = self._loop.run_until_complete(start_emulator(self.options))
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._handle.close())
        self._loop.close()

    @property
    def handle(self) -> EmulatorHandle:
        assert self._handle is not None
        return self._handle

    def mutate(
        self, resource: str, add: int = 0, update: int = 0, archive: int = 0, delete: int = 0
    ) -> dict[str, list[str]]:
        return self.handle.mutate(resource, add, update, archive, delete)

    def truth(self, resource: str) -> list[JSONObject]:
        return self.handle.truth(resource)

    def stats(self) -> JSONObject:
        return self.handle.stats()

    def reset_stats(self) -> None:
        self.handle.reset_stats()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_emulator_in_thread(options: EmulatorOptions) -> RunningEmulator:
    """Start the emulator on a free loopback port (by default) and return once it is listening."""
    return RunningEmulator(options)
