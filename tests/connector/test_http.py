"""KlaviyoClient: the request contract, the security rules, the retry policy and the error messages.

Exotic server behaviour comes from small `aiohttp.web` servers inside the tests; the fault kinds and
rate limits from the emulator. Backoff and Retry-After waits run on a virtual clock (`FastClock`),
so nothing here sleeps for the policy's real durations and nothing asserts on wall-clock time.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiohttp import web

from klaviyo_emulator.runner import EmulatorOptions, run_emulator_in_thread
from source_klaviyo.errors import ApiError, SourceError, TransientError
from source_klaviyo.http import KlaviyoClient, _decoded, _Retry, encode_params
from source_klaviyo.ratelimit import Clock, SystemClock

KEY = "pk_test_5ecret_key_0123456789abcdef"
ANCHOR = datetime(2026, 9, 1, 12, tzinfo=UTC)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Config:
    base_url: str
    api_key: str = KEY
    num_workers: int = 4
    request_timeout_seconds: float = 5.0


@dataclass
class FastClock:
    """Virtual time for the client's waits: `sleep` returns at once and moves the clock on."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def client(
    base_url: str, *, api_key: str = KEY, clock: Clock | None = None, **kwargs: Any
) -> KlaviyoClient:
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("rng", random.Random(0))
    config = Config(base_url, api_key, kwargs.pop("num_workers", 4), kwargs.pop("timeout", 5.0))
    return KlaviyoClient(config, clock=clock or FastClock(), **kwargs)


@asynccontextmanager
async def serve(routes: dict[str, Handler], *, method: str = "GET") -> AsyncIterator[str]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def jsonapi(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(doc), content_type="application/vnd.api+json", headers=headers
    )


def klaviyo_error(status: int, code: str, detail: str, parameter: str | None = None) -> web.Response:
    error: dict[str, Any] = {"id": "e1", "status": status, "code": code, "title": "t", "detail": detail}
    if parameter:
        error["source"] = {"parameter": parameter}
    return jsonapi({"errors": [error]}, status)


def sequence(*responses: Callable[[], web.StreamResponse]) -> tuple[Handler, list[web.Request]]:
    """A handler answering with `responses` in turn (the last one repeats); records the requests."""
    seen: list[web.Request] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        return responses[min(len(seen), len(responses)) - 1]()

    return handler, seen


OK = lambda: jsonapi({"data": [], "links": {"self": "x", "next": None}})  # noqa: E731


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


# -- the request contract ----------------------------------------------------------------------


def test_every_request_carries_key_revision_accept_and_user_agent() -> None:
    async def scenario() -> list[web.Request]:
        handler, seen = sequence(OK)
        async with serve({"/api/events": handler}) as url, client(url) as c:
            assert await c.get("/api/events", bucket="/api/events", tier="XL") == OK().body
        return seen

    (request,) = run(scenario())
    assert request.headers["Authorization"] == f"Klaviyo-API-Key {KEY}"
    assert request.headers["revision"] == "2026-07-15"
    assert request.headers["Accept"] == "application/vnd.api+json"
    assert request.headers["User-Agent"] == "source-klaviyo/3.0.0"
    assert request.headers["Accept-Encoding"] == "gzip, deflate"  # loopback too: see the module docstring


def test_post_sends_a_jsonapi_body() -> None:
    received: list[tuple[str, bytes, str]] = []

    async def report(request: web.Request) -> web.Response:
        received.append((request.headers["Content-Type"], await request.read(), request.raw_path))
        return jsonapi({"data": {"type": "flow-series-report", "attributes": {"results": []}}})

    async def scenario() -> None:
        async with serve({"/api/flow-series-reports": report}, method="POST") as url, client(url) as c:
            body = {"data": {"type": "flow-series-report", "attributes": {"interval": "daily"}}}
            await c.post(
                "/api/flow-series-reports",
                body,
                bucket="reports",
                tier="REPORTING",
                params=[("page_cursor", "c1")],
            )

    run(scenario())
    assert received == [
        (
            "application/vnd.api+json",
            b'{"data":{"type":"flow-series-report","attributes":{"interval":"daily"}}}',
            "/api/flow-series-reports?page_cursor=c1",
        )
    ]


def test_filter_syntax_stays_readable_and_only_unsafe_characters_are_encoded() -> None:
    params = [
        (
            "filter",
            "and(equals(messages.channel,'email'),greater-than(updated_at,2024-01-01T00:00:00+00:00))",
        ),
        ("fields[event]", "datetime,uuid"),
        ("filter", 'equals(email,"a&b=c@x.com")'),
    ]
    assert encode_params(params) == (
        "filter=and(equals(messages.channel,'email'),greater-than(updated_at,2024-01-01T00:00:00%2B00:00))"
        "&fields[event]=datetime,uuid"
        "&filter=equals(email,%22a%26b%3Dc@x.com%22)"
    )


def test_links_next_is_followed_verbatim() -> None:
    async def scenario() -> list[str]:
        handler, seen = sequence(OK)
        async with serve({"/api/events": handler}) as url, client(url) as c:
            await c.get(
                f"{url}/api/events?page%5Bsize%5D=1000&page%5Bcursor%5D=ab%2Bc%3D%3D", bucket="e", tier="XL"
            )
            await c.get(
                f"{url}/api/events?filter=greater-than(datetime,2024-01-01T00:00:00%2B00:00)",
                bucket="e",
                tier="XL",
            )
        return [r.raw_path for r in seen]

    assert run(scenario()) == [
        "/api/events?page%5Bsize%5D=1000&page%5Bcursor%5D=ab%2Bc%3D%3D",
        "/api/events?filter=greater-than(datetime,2024-01-01T00:00:00%2B00:00)",
    ]


# -- security ----------------------------------------------------------------------------------


def test_a_url_on_another_origin_is_refused_and_never_receives_the_key() -> None:
    async def scenario() -> tuple[list[str], list[web.Request]]:
        home, _ = sequence(OK)
        elsewhere, stolen = sequence(OK)
        messages = []
        async with (
            serve({"/api/events": home}) as url,
            serve({"/api/events": elsewhere}) as other,
            client(url) as c,
        ):
            for target in (
                f"{other}/api/events?page%5Bcursor%5D=x",  # another port
                url.replace("http://", "https://") + "/api/events",  # another scheme
                "http://localhost:" + url.rsplit(":", 1)[1] + "/api/events",  # another host name
                "ftp://evil.example/api/events",
            ):
                with pytest.raises(SourceError) as info:
                    await c.get(target, bucket="e", tier="XL")
                messages.append(str(info.value))
        return messages, stolen

    messages, stolen = run(scenario())
    assert stolen == []
    assert all("refusing to send the API key" in m and KEY not in m for m in messages)


def test_a_redirect_is_an_error_naming_the_status_not_the_target() -> None:
    async def scenario() -> tuple[ApiError, list[web.Request]]:
        elsewhere, followed = sequence(OK)
        async with serve({"/api/events": elsewhere}) as other:
            redirect, _ = sequence(
                lambda: web.Response(status=302, headers={"Location": f"{other}/api/events"})
            )
            async with serve({"/api/events": redirect}) as url, client(url) as c:
                with pytest.raises(ApiError) as info:
                    await c.get("/api/events", bucket="e", tier="XL")
        return info.value, followed

    error, followed = run(scenario())
    assert followed == []
    assert error.status == 302
    assert "302" in str(error)
    assert "127.0.0.1" not in str(error)


def test_the_key_never_appears_in_an_exception_or_a_repr() -> None:
    # A server that echoes the key back in its error detail, the worst case for our messages.
    echo = lambda status: lambda: klaviyo_error(status, "x", f"bad key {KEY}", parameter=KEY)  # noqa: E731
    routes = {f"/api/s{status}": sequence(echo(status))[0] for status in (400, 401, 403, 404, 409, 503)}

    async def scenario() -> tuple[list[BaseException], str]:
        errors: list[BaseException] = []
        async with serve(routes) as url, client(url, max_attempts=2) as c:
            for status in (400, 401, 403, 404, 409, 503):
                with pytest.raises(SourceError) as info:
                    await c.get(f"/api/s{status}", [("filter", KEY)], bucket="b", tier="XL")
                errors.append(info.value)
            with pytest.raises(SourceError) as info:
                await c.get(f"https://elsewhere.example/api/x?k={KEY}", bucket="b", tier="XL")
            errors.append(info.value)
            text = repr(c) + repr(c.limiters.get("b", "XL")) + repr(c.stats)
        async with client("http://127.0.0.1:9", max_attempts=2) as c:  # nothing listens on port 9
            with pytest.raises(TransientError) as info:
                await c.get("/api/events", [("q", KEY)], bucket="b", tier="XL")
            errors.append(info.value)
        return errors, text

    errors, text = run(scenario())
    assert len(errors) == 8
    for error in errors:
        for rendered in (str(error), repr(error), str(getattr(error, "internal_message", ""))):
            assert KEY not in rendered
    assert KEY not in text
    assert "pk_…ef" in text


# -- non-retryable answers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "response", "status", "failure_type", "message"),
    [
        (
            "/api/events",
            lambda: klaviyo_error(400, "invalid", "Invalid filter provided", "filter"),
            400,
            "system_error",
            "Klaviyo rejected the request to /api/events (400 invalid): "
            "Invalid filter provided (parameter `filter`)",
        ),
        (
            "/api/events",
            lambda: klaviyo_error(401, "not_authenticated", "Incorrect authentication credentials."),
            401,
            "config_error",
            "Klaviyo rejected the API key (401 not_authenticated): check api_key",
        ),
        (
            "/api/profiles",
            lambda: klaviyo_error(403, "permission_denied", "You do not have permission."),
            403,
            "config_error",
            "the API key lacks the scope needed for /api/profiles (403 permission_denied): "
            "add the `profiles:read` read scope",
        ),
        (
            "/api/flows/F1/flow-actions",
            lambda: klaviyo_error(403, "permission_denied", "no"),
            403,
            "config_error",
            "add the `flows:read` read scope",
        ),
        (
            "/api/campaign-values-reports",
            lambda: klaviyo_error(403, "permission_denied", "no"),
            403,
            "config_error",
            "add the `campaigns:read` read scope",
        ),
        (
            "/api/campaigns/C1",
            lambda: klaviyo_error(404, "not_found", "A campaign with id C1 does not exist."),
            404,
            "system_error",
            "(404 not_found): A campaign with id C1 does not exist.",
        ),
        ("/api/events", lambda: web.Response(status=410, text="gone"), 410, "system_error", "HTTP 410"),
    ],
)
def test_client_errors_fail_at_once_with_a_clear_message(
    path: str, response: Callable[[], web.Response], status: int, failure_type: str, message: str
) -> None:
    async def scenario() -> tuple[ApiError, int]:
        handler, seen = sequence(response)
        async with serve({path: handler}) as url, client(url) as c:
            with pytest.raises(ApiError) as info:
                await c.get(path, [("filter", "equals(x,1)")], bucket="b", tier="M")
        return info.value, len(seen)

    error, attempts = run(scenario())
    assert attempts == 1
    assert (error.status, error.failure_type) == (status, failure_type)
    assert message in str(error)
    assert "equals(x,1)" not in str(error)  # the query is not part of a user-facing message


# -- retries -----------------------------------------------------------------------------------


def _cut_with_content_length(body: bytes) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        stream = web.StreamResponse(headers={"Content-Type": "application/vnd.api+json"})
        stream.content_length = len(body)
        await stream.prepare(request)
        await stream.write(body[: len(body) // 2])
        assert request.transport is not None
        request.transport.close()  # the connection ends before Content-Length bytes arrived
        return stream

    return handler


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(
            lambda: web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html"),
            id="html-502",
        ),
        pytest.param(lambda: klaviyo_error(503, "error", "Service unavailable."), id="503"),
        pytest.param(lambda: klaviyo_error(500, "error", "boom"), id="500"),
        pytest.param(lambda: web.Response(status=408), id="408"),
        pytest.param(
            lambda: web.Response(
                body=b'{"data": [{"id": "1"}, {"id"', content_type="application/vnd.api+json"
            ),
            id="json-cut-short-with-matching-content-length",
        ),
        pytest.param(lambda: web.Response(status=200, text="<html>maintenance</html>"), id="html-200"),
    ],
)
def test_transient_answers_are_retried_until_a_good_one(failure: Callable[[], web.StreamResponse]) -> None:
    async def scenario() -> tuple[bytes, int, Any]:
        handler, seen = sequence(failure, failure, OK)
        async with serve({"/api/events": handler}) as url, client(url) as c:
            body = await c.get("/api/events", bucket="e", tier="XL")
        return body, len(seen), c.stats

    body, attempts, stats = run(scenario())
    assert body == OK().body
    assert attempts == 3
    assert (stats.requests, stats.retries, stats.throttled) == (3, 2, 0)


def test_a_body_shorter_than_its_content_length_is_retried() -> None:
    good = OK().body
    assert isinstance(good, bytes)
    calls: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        calls.append(1)
        if len(calls) == 1:
            return await _cut_with_content_length(good)(request)
        return OK()

    async def scenario() -> bytes:
        async with serve({"/api/events": handler}) as url, client(url) as c:
            return await c.get("/api/events", bucket="e", tier="XL")

    assert run(scenario()) == good
    assert len(calls) == 2


def test_a_request_that_times_out_is_retried() -> None:
    calls: list[int] = []

    async def slow_once(request: web.Request) -> web.StreamResponse:
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(2)
        return OK()

    async def scenario() -> bytes:
        async with serve({"/api/events": slow_once}) as url, client(url, timeout=0.2) as c:
            return await c.get("/api/events", bucket="e", tier="XL")

    assert run(scenario()) == OK().body
    assert len(calls) == 2


def test_429_waits_exactly_retry_after_for_the_whole_bucket_then_succeeds() -> None:
    def throttle() -> web.Response:
        return jsonapi(
            {"errors": [{"code": "throttled", "detail": "Request was throttled."}]}, 429, {"Retry-After": "7"}
        )

    clock = FastClock()

    async def scenario() -> Any:
        handler, _ = sequence(throttle, throttle, OK)
        async with serve({"/api/events": handler}) as url, client(url, clock=clock) as c:
            await c.get("/api/events", bucket="e", tier="XL")
        return c.stats

    stats = run(scenario())
    assert (stats.throttled, stats.retries, stats.requests) == (2, 2, 3)
    assert stats.rate_limit_wait_seconds == pytest.approx(14.0)
    assert clock.now == pytest.approx(14.0)


def test_a_retry_after_longer_than_the_maximum_wait_is_not_waited_for() -> None:
    clock = FastClock()

    async def scenario() -> TransientError:
        handler, _ = sequence(lambda: web.Response(status=429, headers={"Retry-After": "3600"}))
        async with serve({"/api/events": handler}) as url, client(url, clock=clock, max_retry_after=900) as c:
            with pytest.raises(TransientError) as info:
                await c.get("/api/events", bucket="e", tier="XL")
        return info.value

    error = run(scenario())
    assert "3600 s" in str(error)
    assert clock.now == 0.0


def test_after_the_attempt_budget_a_transient_error_names_the_path_and_the_last_cause() -> None:
    clock = FastClock()

    async def scenario() -> tuple[TransientError, Any]:
        handler, _ = sequence(lambda: klaviyo_error(503, "error", "Service unavailable."))
        async with (
            serve({"/api/events": handler}) as url,
            client(url, clock=clock, max_attempts=4, backoff_base=0.5, backoff_cap=30) as c,
        ):
            with pytest.raises(TransientError) as info:
                await c.get(
                    "/api/events",
                    [("filter", "greater-than(datetime,2024-01-01T00:00:00Z)")],
                    bucket="e",
                    tier="XL",
                )
        return info.value, c.stats

    error, stats = run(scenario())
    assert str(error) == "Klaviyo kept failing for /api/events after 4 attempts; last error: HTTP 503"
    assert (stats.requests, stats.retries) == (4, 3)
    # Full jitter: each wait is uniform in [0, min(cap, base * 2**n)].
    assert len(clock.sleeps) == 3
    assert all(0 <= s <= 0.5 * 2**n for n, s in enumerate(clock.sleeps))


def test_the_time_budget_stops_retries_before_the_attempt_budget() -> None:
    clock = FastClock()

    async def scenario() -> Any:
        handler, _ = sequence(lambda: klaviyo_error(500, "error", "boom"))
        async with (
            serve({"/api/events": handler}) as url,
            client(
                url,
                clock=clock,
                max_attempts=100,
                backoff_base=10,
                backoff_cap=10,
                retry_time_budget=25,
                rng=random.Random(1),
            ) as c,
        ):
            with pytest.raises(TransientError):
                await c.get("/api/events", bucket="e", tier="XL")
        return c.stats

    stats = run(scenario())
    assert stats.requests < 100
    assert sum(clock.sleeps) <= 25


def test_queueing_behind_a_slowly_paced_bucket_is_not_failing_time() -> None:
    """Found by the soak: with many requests on a slow bucket, a retry waited minutes for its turn
    behind the others; counted as failing time, that ended the stream after 3 attempts."""
    clock = FastClock()
    answered = 0

    async def every_other_fails(request: web.Request) -> web.StreamResponse:
        nonlocal answered
        answered += 1
        return klaviyo_error(500, "error", "boom") if answered % 2 else OK()

    async def scenario() -> Any:
        async with (
            serve({"/api/lists/{id}": every_other_fails}) as url,
            client(url, clock=clock, num_workers=1, retry_time_budget=20, max_attempts=8) as c,
        ):
            # XS: 15 requests a minute, so 40 requests take ~160 s of virtual time: far past the budget.
            await asyncio.gather(*(c.get(f"/api/lists/{n}", bucket="/api/lists/{id}", tier="XS")
                                   for n in range(20)))
        return c.stats

    stats = run(scenario())
    assert stats.retries >= 10
    assert clock.now > 20  # the budget would have been exceeded had queueing counted


def test_connection_errors_are_retried_then_reported() -> None:
    async def scenario() -> TransientError:
        async with client("http://127.0.0.1:9", max_attempts=3) as c:
            with pytest.raises(TransientError) as info:
                await c.get("/api/events", bucket="e", tier="XL")
        return info.value

    error = run(scenario())
    assert "for /api/events after 3 attempts" in str(error)
    assert "ClientConnectorError" in str(error)


def test_no_more_than_num_workers_requests_are_in_flight() -> None:
    in_flight = [0, 0]  # now, max

    async def slow(request: web.Request) -> web.Response:
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        await asyncio.sleep(0.05)
        in_flight[0] -= 1
        return OK()

    async def scenario() -> None:
        # On real time, Little's law asks for ceil(56.6/s x 50 ms x 1.2) + 2 = 6 in flight: the cap wins.
        async with serve({"/api/events": slow}) as url, client(url, num_workers=3, clock=SystemClock()) as c:
            await asyncio.gather(*(c.get("/api/events", bucket="e", tier="XL") for _ in range(20)))

    run(scenario())
    assert in_flight[1] == 3


# -- against the emulator ----------------------------------------------------------------------


async def _walk_events(c: KlaviyoClient) -> list[bytes]:
    """Every event record of a full walk, serialized without the emulator's host:port."""
    records: list[bytes] = []
    url: str | None = "/api/events"
    params: list[tuple[str, str]] | None = [("page[size]", "100")]
    while url:
        body = await c.get(url, params, bucket="/api/events", tier="XL")
        doc = orjson.loads(body)
        records.extend(orjson.dumps(record).replace(c._base_text.encode(), b"BASE") for record in doc["data"])
        url, params = doc["links"].get("next"), None
    return records


def _emulator(**options: Any) -> Any:
    options.setdefault("rate_limits", False)
    return run_emulator_in_thread(EmulatorOptions(seed=5, scale="tiny", anchor=ANCHOR, **options))


@pytest.fixture(scope="module")
def fault_free_events() -> list[bytes]:
    with _emulator() as emu:

        async def walk() -> list[bytes]:
            async with client(emu.url, api_key="pk_emulator") as c:
                return await _walk_events(c)

        records = run(walk())
    assert len(records) > 500
    return records


FAULT_KINDS = ["500", "502", "503", "504", "429", "timeout", "reset", "truncate", "html"]


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_a_walk_through_faults_returns_exactly_the_fault_free_records(
    kind: str, fault_free_events: list[bytes]
) -> None:
    with _emulator(faults=f"{kind}=0.3", hang_seconds=3) as emu:

        async def walk() -> tuple[list[bytes], Any]:
            # Only the hang needs a short client timeout; elsewhere a slow page on a loaded machine
            # must not add a timeout retry that the emulator did not inject.
            timeout = 0.3 if kind == "timeout" else 30.0
            async with client(emu.url, api_key="pk_emulator", timeout=timeout, max_attempts=12) as c:
                return await _walk_events(c), c.stats

        records, stats = run(walk())
        injected = emu.stats()["faults"].get(kind, 0)
    assert records == fault_free_events
    assert injected > 0
    assert stats.retries == injected
    if kind == "429":
        assert stats.throttled == injected
        # Retry-After: 1 each, plus our own pacing once the opening burst is over (~18 ms a request).
        assert injected * 1.0 <= stats.rate_limit_wait_seconds < injected * 1.0 + 0.5


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_a_fault_on_every_request_ends_in_a_transient_error_naming_the_path(kind: str) -> None:
    with _emulator(faults=f"{kind}=1.0", hang_seconds=3) as emu:

        async def walk() -> Any:
            async with client(emu.url, api_key="pk_emulator", timeout=0.3, max_attempts=3) as c:
                with pytest.raises(TransientError) as info:
                    await _walk_events(c)
            return info.value, c.stats

        error, stats = run(walk())
    assert str(error).startswith("Klaviyo kept failing for /api/events after 3 attempts; last error: ")
    assert "page[size]" not in str(error)
    assert stats.requests == 3


def test_a_key_without_a_scope_gets_403_only_where_the_scope_is_needed() -> None:
    with _emulator(key_scopes={"pk_noprofiles": frozenset({"events:read"})}) as emu:

        async def scenario() -> ApiError:
            async with client(emu.url, api_key="pk_emulator") as full:
                await full.get("/api/profiles", bucket="/api/profiles", tier="L")
            async with client(emu.url, api_key="pk_noprofiles") as scoped:
                await scoped.get("/api/events", bucket="/api/events", tier="XL")
                with pytest.raises(ApiError) as info:
                    await scoped.get("/api/profiles", bucket="/api/profiles", tier="L")
            return info.value

        error = run(scenario())
    assert error.status == 403
    assert error.failure_type == "config_error"
    assert "add the `profiles:read` read scope" in str(error)


def test_a_wrong_key_is_a_config_error() -> None:
    with _emulator() as emu:

        async def scenario() -> ApiError:
            async with client(emu.url, api_key="pk_wrong_key_000000") as c:
                with pytest.raises(ApiError) as info:
                    await c.get("/api/events", bucket="/api/events", tier="XL")
            return info.value

        error = run(scenario())
    assert (error.status, error.failure_type) == (401, "config_error")
    assert "pk_wrong_key_000000" not in str(error)


@pytest.mark.parametrize("workers", [10, 25])
def test_concurrent_requests_on_one_bucket_with_tiny_limits_meet_no_429(workers: int) -> None:
    # rate_limit_scale 0.05 turns XL into 18/s and 175/min: the client learns the 175 from the
    # RateLimit-Limit of its first answer and scales its burst to match (17).
    requests = 30
    with _emulator(rate_limits=True, rate_limit_scale=0.05) as emu:

        async def scenario() -> Any:
            async with KlaviyoClient(
                Config(emu.url, "pk_emulator", workers, 10.0), backoff_base=0.01
            ) as c:  # the real clock: the emulator's windows are real time
                bodies = await asyncio.gather(
                    *(
                        c.get("/api/events", [("page[size]", "5")], bucket="/api/events", tier="XL")
                        for _ in range(requests)
                    )
                )
            assert all(b.rstrip().endswith(b"}") for b in bodies)
            return c.stats

        stats = run(scenario())
        served = emu.stats()["requests"]["/api/events"]
    assert served.get("200") == requests
    # The bucket's first request goes alone and calibrates the limiter, so not even the opening
    # burst is throttled.
    assert served.get("429", 0) == stats.throttled == 0


# -- bodies as Klaviyo sends them: gzip (asked for), inflated one at a time -------------------------


PAGE = b'{"data": [], "links": {"self": "x", "next": null}}' * 40


def _gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(("encoding", "wire"), [
    ("gzip", _gzip(PAGE)),
    ("x-gzip", _gzip(PAGE)),
    ("deflate", zlib.compress(PAGE)),
    ("", PAGE),
    ("identity", PAGE),
])
def test_a_body_is_inflated_as_its_content_encoding_says(encoding: str, wire: bytes) -> None:
    assert _decoded(wire, encoding, str(len(wire))) == PAGE
    assert _decoded(wire, encoding, None) == PAGE


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_body_inflating_past_any_size_guess_is_whole(encoding: str) -> None:
    # ~1,000:1, past the bound on the size allocated up front: the output grows as needed.
    body = b'{"data": [' + b'{"id": "0"},' * 100_000 + b'{"id": "1"}]}'
    wire = _gzip(body) if encoding == "gzip" else zlib.compress(body)
    assert len(body) > 64 * len(wire)
    assert _decoded(wire, encoding, None) == body


@pytest.mark.parametrize(("wire", "encoding", "length", "message"), [
    (_gzip(PAGE)[:-20], "gzip", None, "incomplete response body (gzip"),
    (_gzip(PAGE)[:-20], "gzip", str(len(_gzip(PAGE))), "incomplete response body ("),
    (PAGE[:-5], "", str(len(PAGE)), "incomplete response body ("),
    (b"\x1f\x8b\x08\x00not gzip at all", "gzip", None, "corrupt gzip response body"),
    (PAGE, "br", None, "response body in an encoding we did not ask for (br)"),
])
def test_a_cut_corrupt_or_unasked_body_is_retried(wire: bytes, encoding: str, length: str | None,
                                                  message: str) -> None:
    with pytest.raises(_Retry) as caught:
        _decoded(wire, encoding, length)
    assert caught.value.cause.startswith(message)


def test_gzip_pages_cut_short_are_fetched_again_and_equal_the_whole_page() -> None:
    whole = _gzip(PAGE)
    answers = iter([whole[: len(whole) // 2], whole])

    async def handler(request: web.Request) -> web.Response:
        assert "gzip" in request.headers["Accept-Encoding"]
        body = next(answers)
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/vnd.api+json"}
        return web.Response(body=body, headers=headers)

    async def scenario() -> bytes:
        async with serve({"/api/events": handler}) as url, client(url) as c:
            return await c.get("/api/events", bucket="e", tier="XL")

    assert run(scenario()) == PAGE
