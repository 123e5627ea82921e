"""The aiohttp application: Klaviyo's API under /api, the emulator's own endpoints under /_emulator.

Per API request, in order: fault draw and latency (middleware), auth, revision, scope, rate limit, query
validation, then the body from the page cache or the builders.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections import defaultdict
from datetime import date
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from .api import Api, Request
from .data.rng import mix, salt
from .endpoints import ENDPOINTS, REDUCED_TIER, TIERS, Endpoint
from .errors import JSONAPI, ApiError
from .faults import FaultPlan
from .jsontext import JSONObject
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


class Settings:
    def __init__(self, options: EmulatorOptions) -> None:
        self.api_key: str = options.api_key
        self.key_scopes: dict[str, frozenset[str] | None] = {options.api_key: None, **options.key_scopes}
        self.rate_limits: bool = options.rate_limits
        self.latency_ms: float = options.latency_ms
        self.hang_seconds: float = options.hang_seconds
        self.seed: int = options.seed


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.by_status: dict[str, int] = defaultdict(int)
        self.total = 0
        self.bytes_sent = 0
        self.throttled = 0
        self.faults: dict[str, int] = defaultdict(int)

    def record(self, route: str, status: int, size: int) -> None:
        self.requests[route][str(status)] += 1
        self.by_status[str(status)] += 1
        self.total += 1
        self.bytes_sent += size
        if status == 429:
            self.throttled += 1

    def snapshot(self, cache: PageCache) -> JSONObject:
        return {
            "requests_total": self.total,
            "requests": {route: dict(statuses) for route, statuses in self.requests.items()},
            "throttled": self.throttled,
            "faults": dict(self.faults),
            "bytes_sent": self.bytes_sent,
            "page_cache": {
                "entries": len(cache.entries),
                "bytes": cache.size,
                "hits": cache.hits,
                "misses": cache.misses,
            },
        }


def error_response(error: ApiError) -> web.Response:
    return web.Response(status=error.status, body=error.body(), content_type=JSONAPI, headers=error.headers)


def _route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else "unmatched"
    return canonical.rstrip("/") if canonical != "/" else canonical


def build_app(world: World, options: EmulatorOptions) -> web.Application:
    settings = Settings(options)
    faults = FaultPlan.parse(options.faults, options.seed)
    limiter = RateLimiter(options.rate_limit_scale)
    cache = PageCache(int(getattr(options, "page_cache_mb", 96.0) * 1024 * 1024))
    api = Api(world, getattr(options, "unsorted_archived_campaigns", True))
    stats = Stats()
    latency_rng = random.Random(mix(options.seed, salt("latency")))

    @web.middleware
    async def count_and_catch(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = _route_of(request)
        try:
            response = await handler(request)
        except ApiError as error:
            response = error_response(error)
        except web.HTTPException as exc:
            status = exc.status
            detail = "Not found." if status == 404 else exc.reason
            response = error_response(ApiError(status, detail))
        except asyncio.CancelledError:
            raise
        except ConnectionResetError:  # the client went away mid-response: nothing to answer, not an error
            log.debug("client disconnected during %s", request.path_qs)
            response = web.Response(status=499)
        except Exception:  # never leak a stack trace to a client
            log.exception("emulator error on %s", request.path_qs)
            response = error_response(ApiError(500, "An internal error occurred in the emulator."))
        size = response.content_length or (
            len(response.body) if isinstance(response, web.Response) and response.body else 0  # type: ignore[arg-type]
        )
        stats.record(route, response.status, size or 0)
        return response

    @web.middleware
    async def chaos(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        if settings.latency_ms > 0:
            # jitter: uniform between half and one and a half times the mean
            await asyncio.sleep(settings.latency_ms * (0.5 + latency_rng.random()) / 1000)
        kind = faults.draw()
        if kind is None:
            return await handler(request)
        stats.faults[kind] += 1
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
            html = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
            return web.Response(status=502, text=html, content_type="text/html")
        if kind == "timeout":
            await asyncio.sleep(settings.hang_seconds)
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=504)
        response = await handler(request)
        body = response.body if isinstance(response, web.Response) else None
        if not isinstance(body, bytes) or len(body) < 2:
            return response
        cut = body[: max(1, len(body) // 2)]
        headers = {
            k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")
        }
        if kind == "truncate":
            # well framed (Content-Length matches what is sent) but the JSON stops halfway
            return web.Response(status=response.status, body=cut, content_type=JSONAPI, headers=headers)
        stream = web.StreamResponse(status=response.status, headers=headers)
        stream.content_type = JSONAPI
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
                f"Revision {revision} is retired; use a revision from {OLDEST_REVISION} to {SERVED_REVISION}.",
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
                headers = limiter.hit(bucket, TIERS[tier])
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

    app = web.Application(middlewares=[count_and_catch, chaos], client_max_size=1024**2)
    for endpoint in ENDPOINTS:
        handler = make_handler(endpoint)
        app.router.add_route(endpoint.method, endpoint.route, handler)
        app.router.add_route(endpoint.method, endpoint.route + "/", handler)
    app.router.add_get("/_emulator/truth/{resource}", truth)
    app.router.add_get("/_emulator/stats", get_stats)
    app.router.add_post("/_emulator/stats/reset", reset_stats)
    app.router.add_post("/_emulator/mutate", mutate)
    app[WORLD] = world
    app[STATS] = stats
    app[CACHE] = cache
    return app
