"""The aiohttp application: Klaviyo's API under /api, the emulator's own endpoints under /_emulator.

Per API request, in order (middleware `wire`): the first half of the fixed latency, the fault draw, then
auth, revision, scope, rate limit, query validation, the body from the page cache or the builders; then
(`wire` again) its Content-Encoding, the rest of the latency, and a fault that breaks the body.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict
from datetime import date
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from .api import Api, Request
from .encoding import GZIP_MIN_BYTES, accepts_gzip, gzip_body
from .endpoints import ENDPOINTS, REDUCED_TIER, TIERS, Endpoint
from .errors import JSONAPI, ApiError
from .faults import FaultPlan
from .jsontext import JSONObject
from .latency import LatencyModel, LatencyPlan, resolve
from .ratelimit import RateLimiter
from .render import PageCache
from .store import World

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

    from .runner import EmulatorOptions

log = logging.getLogger("klaviyo_emulator")

SERVED_REVISION = "2026-07-15"
OLDEST_REVISION = "2025-01-15"
_REVISION = re.compile(r"^(\d{4}-\d{2}-\d{2})(\.[a-z]+)?$")
WORLD = web.AppKey("world", World)
STATS: web.AppKey[Stats] = web.AppKey("stats", "Stats")  # type: ignore[arg-type]  # Stats is below
CACHE = web.AppKey("cache", PageCache)
# set by a GET handler: the page-cache key of the body it answered (its gzip body is cached with it)
PAGE_KEY: web.RequestKey[tuple[object, ...]] = web.RequestKey("page_key")
# set by `wire`: (bytes sent, bytes of the uncompressed body) of an API response
BODY_BYTES: web.RequestKey[tuple[int, int]] = web.RequestKey("body_bytes")
# What `POST /_emulator/reset` puts back as at start-up (the data stays as it is).
RESET = ("rate_limit_windows", "latency_and_fault_draws", "page_cache", "stats")
DEFAULT_GZIP_LEVEL = 1  # docs/emulator.md, "Compression": level 6 costs ~3x the CPU for ~20 % fewer bytes


class Settings:
    def __init__(self, options: EmulatorOptions) -> None:
        self.api_key: str = options.api_key
        self.key_scopes: dict[str, frozenset[str] | None] = {options.api_key: None, **options.key_scopes}
        self.rate_limits: bool = options.rate_limits
        self.latency: LatencyModel = latency_model(options)
        self.gzip_level: int = getattr(options, "gzip_level", DEFAULT_GZIP_LEVEL)
        if not 0 <= self.gzip_level <= 9:
            raise ValueError(f"gzip_level is a zlib level from 0 (no gzip) to 9, not {self.gzip_level!r}")
        self.hang_seconds: float = options.hang_seconds
        self.seed: int = options.seed
        self.quirks: bool = world_quirks(options)


def world_quirks(options: EmulatorOptions) -> bool:
    """Klaviyo's observed shapes (quirks.py), unless the options ask for the spec's (`--spec-strict`)."""
    return not getattr(options, "spec_strict", False)


def latency_model(options: EmulatorOptions) -> LatencyModel:
    """The options' latency: their profile, if any, with each latency value they set replacing its own."""
    return resolve(
        getattr(options, "latency_profile", None),
        options.latency_ms,
        getattr(options, "latency_per_kb", None),
        getattr(options, "latency_per_raw_kb", None),
        getattr(options, "latency_tail", None),
    )


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.by_status: dict[str, int] = defaultdict(int)
        self.total = 0
        self.bytes_sent = 0
        self.bytes_uncompressed = 0
        self.gzip_responses = 0
        self.latency_seconds = 0.0
        self.throttled = 0
        self.faults: dict[str, int] = defaultdict(int)

    def record(self, route: str, status: int, size: int, uncompressed: int | None = None) -> None:
        self.requests[route][str(status)] += 1
        self.by_status[str(status)] += 1
        self.total += 1
        self.bytes_sent += size
        self.bytes_uncompressed += size if uncompressed is None else uncompressed
        if status == 429:
            self.throttled += 1

    def snapshot(self, cache: PageCache) -> JSONObject:
        return {
            "requests_total": self.total,
            "requests": {route: dict(statuses) for route, statuses in self.requests.items()},
            "throttled": self.throttled,
            "faults": dict(self.faults),
            "bytes_sent": self.bytes_sent,
            "bytes_uncompressed": self.bytes_uncompressed,
            "gzip_responses": self.gzip_responses,
            "latency_seconds": round(self.latency_seconds, 6),
            "page_cache": {
                "entries": len(cache.entries),
                "bytes": cache.size,
                "hits": cache.hits,
                "misses": cache.misses,
                "gzip_entries": len(cache.gzipped),
                "gzip_hits": cache.gzip_hits,
                "gzip_misses": cache.gzip_misses,
            },
        }


def error_response(error: ApiError, quirks: bool = False) -> web.Response:
    body = error.body(quirks)
    return web.Response(status=error.status, body=body, content_type=JSONAPI, headers=error.headers)


def _body_size(response: web.StreamResponse) -> int:
    if response.content_length:
        return response.content_length
    body = response.body if isinstance(response, web.Response) else None
    return len(body) if isinstance(body, bytes | bytearray) else 0


async def answer(request: web.Request, handler: Handler, quirks: bool = False) -> web.StreamResponse:
    """The handler's response, or the error response its exception stands for."""
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error, quirks)
    except web.HTTPException as exc:
        status = exc.status
        detail = "Not found." if status == 404 else exc.reason
        return error_response(ApiError(status, detail), quirks)
    except asyncio.CancelledError:
        raise
    except ConnectionResetError:  # the client went away mid-response: nothing to answer, not an error
        log.debug("client disconnected during %s", request.path_qs)
        return web.Response(status=499)
    except Exception:  # never leak a stack trace to a client
        log.exception("emulator error on %s", request.path_qs)
        return error_response(ApiError(500, "An internal error occurred in the emulator."))


def _route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else "unmatched"
    return canonical.rstrip("/") if canonical != "/" else canonical


def build_app(world: World, options: EmulatorOptions) -> web.Application:
    settings = Settings(options)
    faults = FaultPlan.parse(options.faults, options.seed)
    clock = getattr(options, "rate_limit_clock", None)
    limiter = RateLimiter(options.rate_limit_scale, clock) if clock else RateLimiter(options.rate_limit_scale)
    cache = PageCache(int(getattr(options, "page_cache_mb", 96.0) * 1024 * 1024))
    api = Api(world, getattr(options, "unsorted_archived_campaigns", True) and settings.quirks)
    stats = Stats()
    latency = settings.latency
    latency_plan = LatencyPlan(latency, options.seed)

    @web.middleware
    async def count_and_catch(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = _route_of(request)
        response = await answer(request, handler, settings.quirks)
        sent, uncompressed = request.get(BODY_BYTES) or (_body_size(response), None)
        stats.record(route, response.status, sent, uncompressed)
        return response

    def gzipped(request: web.Request, body: bytes) -> bytes:
        """`body` gzipped; a cached page is compressed once and its gzip body cached with it."""
        key = request.get(PAGE_KEY)
        if key is not None:
            cached = cache.get_gzip(key, body)
            if cached is not None:
                return cached
        compressed = gzip_body(body, settings.gzip_level)
        if key is not None:
            cache.put_gzip(key, body, compressed)
        return compressed

    @web.middleware
    async def wire(request: web.Request, handler: Handler) -> web.StreamResponse:
        """An API request as a client across a network sees it: latency, faults, Content-Encoding."""
        if not request.path.startswith("/api/"):
            return await handler(request)
        draw = latency_plan.draw(request.method, request.path_qs) if latency.enabled else 0.0
        if latency.enabled:
            wait = latency.before_s(draw)  # the request on its way in
            stats.latency_seconds += wait
            await asyncio.sleep(wait)
        kind = faults.draw(request.method, request.path_qs)
        if kind is not None:
            stats.faults[kind] += 1
        if kind == "timeout":
            await asyncio.sleep(settings.hang_seconds)
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=504)

        async def faulted(request: web.Request) -> web.StreamResponse:
            if kind in ("500", "502", "503", "504"):
                raise ApiError(int(kind), "The emulator injected this failure.")
            if kind in ("429", "429storm"):
                wait = faults.retry_after_for(kind)
                raise ApiError(
                    429,
                    f"Request was throttled. Expected available in {wait} seconds.",
                    headers={"Retry-After": str(wait)},
                )
            if kind == "html":
                html = (
                    "<html><head><title>502 Bad Gateway</title></head>"
                    "<body><center><h1>502 Bad Gateway</h1></center></body></html>"
                )
                return web.Response(status=502, text=html, content_type="text/html")
            return await handler(request)

        response = await answer(request, faulted, settings.quirks)
        if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
            return response  # nothing to send (a client that went away)
        raw = body = response.body
        if settings.gzip_level > 0 and response.content_type.endswith("json"):
            response.headers["Vary"] = "Accept-Encoding"
            if len(raw) >= GZIP_MIN_BYTES and accepts_gzip(request.headers.get("Accept-Encoding")):
                body = gzipped(request, raw)
                response.body = body
                response.headers["Content-Encoding"] = "gzip"
                stats.gzip_responses += 1
        if latency.enabled:
            wait = latency.after_s(draw, len(raw), len(body))  # the server's work, the answer's way back
            stats.latency_seconds += wait
            await asyncio.sleep(wait)
        if kind not in ("truncate", "reset") or response.status >= 400 or len(body) < 2:
            request[BODY_BYTES] = (len(body), len(raw))
            return response
        # Both cut the body as sent: under gzip the client gets half a gzip stream.
        cut = body[: max(1, len(body) // 2)]
        request[BODY_BYTES] = (len(cut), len(raw))
        if kind == "truncate":
            # well framed (Content-Length matches what is sent) but the body stops halfway
            response.body = cut
            return response
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        stream = web.StreamResponse(status=response.status, headers=headers)
        stream.content_length = len(body)
        try:
            await stream.prepare(request)
            await stream.write(cut)
        except ConnectionResetError:
            pass  # the client hung up first (or the transport is closing): the reset happened anyway
        transport = request.transport
        if transport is not None:
            transport.abort()  # connection reset mid-body
        return stream

    def check_auth(request: web.Request, endpoint: Endpoint) -> None:
        header = request.headers.get("Authorization")
        if not header:
            raise ApiError(401, "Authentication credentials were not provided.")
        scheme, _, key = header.partition(" ")
        if scheme != "Klaviyo-API-Key" or key.strip() not in settings.key_scopes:
            raise ApiError(
                401, "Incorrect authentication credentials.", title="Incorrect authentication credentials."
            )
        scopes = settings.key_scopes[key.strip()]
        if scopes is not None:
            missing = [s for s in endpoint.scopes if s not in scopes]
            if missing:
                raise ApiError(403, f"This API key is missing required scopes: {', '.join(missing)}.")

    def check_revision(request: web.Request) -> None:
        revision = request.headers.get("revision")
        if not revision:
            raise ApiError(400, "The 'revision' header is required.", title="Missing revision header.")
        match = _REVISION.match(revision)
        try:
            day = date.fromisoformat(match.group(1)) if match else None
        except ValueError:
            day = None
        if day is None:
            raise ApiError(
                400,
                f"Invalid revision '{revision}': expected YYYY-MM-DD, optionally with a suffix like .pre.",
            )
        if day.isoformat() < OLDEST_REVISION:
            raise ApiError(
                400,
                f"Revision {revision} is retired; "
                f"use a revision from {OLDEST_REVISION} to {SERVED_REVISION}.",
            )
        if day.isoformat() > SERVED_REVISION:
            raise ApiError(
                400, f"Revision {revision} is not available; the newest revision is {SERVED_REVISION}."
            )

    def tier_of(endpoint: Endpoint, request: web.Request) -> tuple[str, str]:
        for (route, param, value), tier in REDUCED_TIER.items():
            if route == endpoint.route and value in request.query.get(param, "").split(","):
                return f"{route}#{value}", tier
        return endpoint.route, endpoint.tier

    def make_handler(endpoint: Endpoint) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            check_auth(request, endpoint)
            check_revision(request)
            headers: dict[str, str] = {}
            if settings.rate_limits:
                bucket, tier = tier_of(endpoint, request)
                headers = limiter.hit(bucket, TIERS[tier], settings.quirks)
            base = f"{request.scheme}://{request.host}"
            params = list(request.query.items())
            raw_query = request.raw_path.partition("?")[2]  # verbatim, as `links` must repeat it
            req = Request(base, request.path, raw_query, params, dict(request.match_info))
            if endpoint.method == "POST":
                body = api.post(endpoint, req, await request.read())
            else:
                key = (request.path.rstrip("/"), raw_query, base, world.generation)
                cached = cache.get(key)
                if cached is None:
                    with world.lock:
                        cached = api.get(endpoint, req)
                    cache.put(key, cached)
                body = cached
                request[PAGE_KEY] = key
            return web.Response(body=body, content_type=JSONAPI, headers=headers)

        return handler

    async def truth(request: web.Request) -> web.Response:
        try:
            with world.lock:
                rows = world.truth(request.match_info["resource"])
        except KeyError:
            raise ApiError(404, f"No ground truth for '{request.match_info['resource']}'.") from None
        return web.Response(body=orjson.dumps({"data": rows}), content_type="application/json")

    async def get_stats(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(stats.snapshot(cache)), content_type="application/json")

    async def reset_stats(request: web.Request) -> web.Response:
        stats.reset()
        return web.Response(body=b'{"reset":true}', content_type="application/json")

    async def reset(request: web.Request) -> web.Response:
        """The emulator as just started, with its data as it is now: a benchmark runs many times on one
        emulator (a large one takes ~30 s to start) and each run meets what a fresh one would meet."""
        limiter.reset()
        latency_plan.forget()
        faults.forget()
        cache.reset()
        stats.reset()
        return web.Response(body=orjson.dumps({"reset": list(RESET)}), content_type="application/json")

    async def mutate(request: web.Request) -> web.Response:
        try:
            payload = orjson.loads(await request.read())
            result = world.mutate(
                payload["resource"],
                int(payload.get("add", 0)),
                int(payload.get("update", 0)),
                int(payload.get("archive", 0)),
                int(payload.get("delete", 0)),
            )
        except KeyError as exc:
            raise ApiError(400, f"Unknown or missing resource: {exc}") from None
        except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
            raise ApiError(400, str(exc)) from None
        cache.clear()
        return web.Response(body=orjson.dumps(result), content_type="application/json")

    app = web.Application(middlewares=[count_and_catch, wire], client_max_size=1024**2)
    for endpoint in ENDPOINTS:
        handler = make_handler(endpoint)
        app.router.add_route(endpoint.method, endpoint.route, handler)
        app.router.add_route(endpoint.method, endpoint.route + "/", handler)
    app.router.add_get("/_emulator/truth/{resource}", truth)
    app.router.add_get("/_emulator/stats", get_stats)
    app.router.add_post("/_emulator/stats/reset", reset_stats)
    app.router.add_post("/_emulator/reset", reset)
    app.router.add_post("/_emulator/mutate", mutate)
    app[WORLD] = world
    app[STATS] = stats
    app[CACHE] = cache
    return app
