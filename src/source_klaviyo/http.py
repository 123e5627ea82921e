"""The one HTTP session of a run: auth, revision, pacing, retries and the error policy.

    async with KlaviyoClient(config) as client:
        body = await client.get("/api/events", [("page[size]", "1000")], bucket="/api/events", tier="XL")
        ...  # `body`: the raw bytes of a complete 2xx JSON body; `parse=` parses it inside the retries

Retry policy (numbers are constructor arguments): up to `max_attempts` (8) attempts, exponential
backoff with full jitter (`uniform(0, min(backoff_cap, backoff_base * 2**n))`, 0.5 s base, 30 s cap)
and a `retry_time_budget` (10 min) of time spent failing, not counting server-ordered waits.
Retried: 429 (waiting `Retry-After` exactly, for the whole bucket, up to `max_retry_after` = 15 min),
408, 5xx (also HTML error pages), timeouts, connection errors (reset, DNS, refused, disconnect) and
incomplete bodies (Content-Length mismatch or JSON not ending in `}`). Not retried: 3xx (redirects
are never followed: the key must only reach the configured origin), 400, 401, 403, 404 and other 4xx.

Compression: gzip shrinks Klaviyo's JSON ~6-10x (a 1,000-event page is ~1 MB), so we ask for it,
from the emulator on loopback too: benchmarks and tests pay for inflating what users pay for.

Route and trust (`transport.py`): the proxy (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY) and the
extra certificate authorities (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, SSL_CERT_DIR) are read once, when
the client is made; a failure to reach or trust the proxy or the host says which variable was used.
An untrusted certificate or a proxy that refuses the credentials or the host is not retried.

Concurrency: each rate-limit bucket sizes its requests in flight from the round trips it measures
(`concurrency.py`); `num_workers`, when set, caps them, per bucket and in all.
"""

from __future__ import annotations

import asyncio
import logging
import random
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, cast, overload
from urllib.parse import quote

import aiohttp
from isal import isal_zlib
from multidict import CIMultiDict
from yarl import URL

from source_klaviyo import __version__, json_codec
from source_klaviyo.concurrency import MAX_IN_FLIGHT
from source_klaviyo.contracts import JSONObject, Params
from source_klaviyo.errors import ApiError, ConfigError, SourceError, TransientError
from source_klaviyo.ratelimit import Clock, RateLimiters, SystemClock, TierLimiter, parse_retry_after
from source_klaviyo.redaction import masked, redact
from source_klaviyo.scopes import path_scopes
from source_klaviyo.streams import API_REVISION, TIERS, Tier, TierName
from source_klaviyo.transport import Transport

__all__ = ["HttpStats", "KlaviyoClient", "encode_params"]

logger = logging.getLogger(__name__)

USER_AGENT = f"source-klaviyo/{__version__}"
JSONAPI = "application/vnd.api+json"

# Characters Klaviyo's filter grammar and parameter names use, left readable in the query: all are
# legal in a query (RFC 3986 sub-delims, ":" and "@"; "[]" accepted by every server we know).
# Encoded on purpose: "+" (a space to form decoders: "+00:00" offsets would break), "&", "=", ";",
# '"', spaces and anything non-ASCII.
_QUERY_SAFE = "[]()',:@!$*/"

class _Config(Protocol):
    # Read-only, so the frozen `Config` dataclass (and any object with these attributes) matches.
    @property
    def api_key(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def num_workers(self) -> int | None: ...
    @property
    def request_timeout_seconds(self) -> float: ...


T = TypeVar("T")


# Requests in flight in all, when the user sets no cap (each bucket has its own bound too).
MAX_IN_FLIGHT_IN_ALL = 256
# Seconds a connection may take to set up (TCP, a proxy's CONNECT, TLS), when request_timeout_seconds is more.
CONNECT_TIMEOUT = 30.0
# Answers whose body is read and parsed at once: what bounds the pages in memory (see _attempt).
BODIES_AT_ONCE = 8


@dataclass
class HttpStats:
    """Live counters the progress display reads (plain ints: one event loop, no locking)."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    rate_limit_wait_seconds: float = 0.0
    bytes_received: int = 0


class _Retry(Exception):
    """One attempt failed in a way worth retrying; `cause` is user-facing and key-free."""

    def __init__(self, cause: str, retry_after: float | None = None, throttled: bool = False) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after
        self.throttled = throttled


def encode_params(params: Sequence[tuple[str, str]]) -> str:
    """`[("filter", "greater-than(updated,2024-01-01T00:00:00+00:00)")]` ->
    `filter=greater-than(updated,2024-01-01T00:00:00%2B00:00)`."""
    return "&".join(f"{quote(str(k), safe=_QUERY_SAFE)}={quote(str(v), safe=_QUERY_SAFE)}" for k, v in params)


def _decoded(wire: bytes, encoding: str, content_length: str | None) -> bytes:
    """The body as sent by Klaviyo, inflated; `_Retry` when it was cut short or is corrupt.

    Bodies are inflated here, one at a time (see `_attempt`), not by aiohttp as they arrive: a gzip
    page of ~140 KB lands in one socket read, and aiohttp would hold each one inflated (~1 MB)
    until it is read; here an answer waiting its turn holds only its compressed bytes. Inflating a
    whole page in one call is also cheaper than chunk by chunk."""
    # Content-Length counts the bytes on the wire, encoded or not.
    if content_length is not None and content_length.isdigit() and int(content_length) != len(wire):
        raise _Retry(f"incomplete response body ({len(wire)} of {content_length} bytes)")
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return wire
    if encoding not in _WBITS:
        raise _Retry(f"response body in an encoding we did not ask for ({encoding})")
    try:
        # ISA-L's inflate, in one call with the output sized up front: a 1,000-event page (0.9 MB)
        # in ~0.5 ms of CPU, where zlib took ~1.3 and ~2.1 growing its output block by block
        # (`decompressobj`), on a read of ~6 µs a record (docs/performance.md).
        return isal_zlib.decompress(wire, _WBITS[encoding], _inflated_size_hint(wire, encoding))
    except _INFLATE_ERROR as exc:
        if "incomplete" in str(exc) or "truncated" in str(exc):  # the end of the stream is missing
            raise _Retry(f"incomplete response body ({encoding}, {len(wire)} bytes)") from None
        raise _Retry(f"corrupt {encoding} response body ({exc})") from None


def _inflated_size_hint(wire: bytes, encoding: str) -> int:
    """The inflated size to allocate at once: a gzip member ends with it (ISIZE, modulo 2**32), which
    a cut body does not, hence the bounds; deflate says nothing, and JSON shrinks ~6-10x. Only a
    hint: the output grows past it when needed."""
    guess = 10 * len(wire)
    if encoding != "deflate" and len(wire) >= 18:  # a gzip header (10) and trailer (8)
        guess = int.from_bytes(wire[-4:], "little")
    return max(1 << 14, min(guess, 64 * len(wire), _MAX_SIZE_HINT))


_MAX_SIZE_HINT = 64 << 20
# (its stub declares the class as an instance)
_INFLATE_ERROR = cast("type[Exception]", isal_zlib.error)


# zlib window bits per Content-Encoding: 32 + 15 reads gzip or zlib headers (servers send both as "deflate").
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": 32 + zlib.MAX_WBITS}


def _body_is_complete(body: bytes) -> bool:
    # Every JSON:API document is an object: a cut-short body cannot end in "}" unless the cut
    # falls exactly after a nested object, which the engine's parser then still catches.
    return body.rstrip()[-1:] == b"}"


def _first_error(body: bytes) -> JSONObject:
    try:
        errors = json_codec.loads(body).get("errors") or [{}]
        first: JSONObject = errors[0] if isinstance(errors[0], dict) else {}
        return first
    except (json_codec.DecodeError, AttributeError, TypeError):
        return {}


class KlaviyoClient:
    """All HTTP traffic of a run. Use as `async with KlaviyoClient(config) as client:`."""

    def __init__(
        self,
        config: _Config,
        *,
        transport_connector: aiohttp.BaseConnector | None = None,
        clock: Clock | None = None,
        max_attempts: int = 8,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        retry_time_budget: float = 600.0,
        max_retry_after: float = 900.0,
        rate_limit_margin: float = 0.03,
        tiers: Mapping[TierName, Tier] = TIERS,
        rng: random.Random | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._key = config.api_key
        self._secrets: tuple[str, ...] = ()
        self._base = URL(config.base_url.rstrip("/"))
        if not self._base.is_absolute() or self._base.scheme not in ("http", "https"):
            raise SourceError(
                f"base_url must be an absolute http(s) URL, got {self._mask(config.base_url)!r}"
            )
        # The proxy and CA variables of `environ` (the process's by default); ConfigError if unusable.
        self.transport = Transport.from_environment(self._base, environ)
        self._secrets = self.transport.secrets
        self._base_text = str(self._base)
        self._origin = self._base.origin()
        cap = config.num_workers
        self._in_flight = max(1, cap) if cap is not None else MAX_IN_FLIGHT_IN_ALL
        self._timeout = float(config.request_timeout_seconds)
        self._connect_timeout = min(self._timeout, CONNECT_TIMEOUT)
        self._connector = transport_connector
        self._clock: Clock = clock or SystemClock()
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.retry_time_budget = retry_time_budget
        self.max_retry_after = max_retry_after
        self._rng = rng or random.Random()  # noqa: S311 - backoff jitter, not a secret
        self.limiters = RateLimiters(clock=self._clock, margin=rate_limit_margin, tiers=tiers,
                                     cap=min(self._in_flight, MAX_IN_FLIGHT))
        self.stats = HttpStats()
        self._session: aiohttp.ClientSession | None = None
        self._semaphore = asyncio.Semaphore(self._in_flight)
        self._bodies = asyncio.Semaphore(BODIES_AT_ONCE)

    def __repr__(self) -> str:
        return f"KlaviyoClient(base_url={self._base_text!r}, api_key={masked(self._key)!r})"

    def _mask(self, text: str) -> str:
        """`text` without the API key (shortened) or the proxy's password (starred)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return redact(text, self._key)

    # -- session lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> KlaviyoClient:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._session is not None:
            return
        transport = self.transport
        connector = self._connector or aiohttp.TCPConnector(
            limit=self._in_flight,
            ttl_dns_cache=300,
            keepalive_timeout=30,
            ssl=transport.ssl if transport.ssl is not None else True,
        )
        headers = {
            "Authorization": f"Klaviyo-API-Key {self._key}",
            "revision": API_REVISION,
            "Accept": JSONAPI,
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "gzip, deflate",
        }
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            # `connect` bounds the whole connection set-up (through a proxy: its CONNECT answer too), so
            # that a hang there is told apart from a slow answer (`Transport.timeout`).
            timeout=aiohttp.ClientTimeout(
                total=self._timeout, connect=self._connect_timeout, sock_connect=self._connect_timeout,
                sock_read=self._timeout,
            ),
            auto_decompress=False,  # inflated one body at a time, see _decoded
            raise_for_status=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            # Set once for the session: requests carry no proxy argument of their own.
            proxy=transport.proxy.url if transport.proxy is not None else None,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- public requests -------------------------------------------------------------------------

    def in_flight_limit(self, bucket: str, tier: TierName) -> int:
        """How many requests of `bucket` should be in flight now (Little's law on what it measured)."""
        return self.limiters.get(bucket, tier).flight.limit_at(self._clock.monotonic())

    def queued(self, bucket: str, tier: TierName) -> int:
        """Requests of `bucket` waiting for their turn at its rate limit."""
        return self.limiters.get(bucket, tier).queued

    @overload
    async def get(self, url: str, params: Params | None = None, *, bucket: str, tier: TierName,
                  parse: None = None) -> bytes: ...
    @overload
    async def get(self, url: str, params: Params | None = None, *, bucket: str, tier: TierName,
                  parse: Callable[[bytes], T]) -> T: ...

    async def get(
        self,
        url: str,
        params: Params | None = None,
        *,
        bucket: str,
        tier: TierName,
        parse: Callable[[bytes], T] | None = None,
    ) -> bytes | T:
        """GET a path (`/api/events`, joined to base_url) or an absolute `links.next` URL, which is
        followed verbatim. Returns the raw body of a complete 2xx answer, or `parse(body)`: a body
        that `parse` rejects (`ValueError` or `SourceError`, e.g. JSON cut short right after a
        nested `}`) is retried like any incomplete body."""
        return await self._request("GET", url, params, None, bucket=bucket, tier=tier, parse=parse)

    @overload
    async def post(self, path: str, body: JSONObject, *, bucket: str, tier: TierName,
                   params: Params | None = None, parse: None = None) -> bytes: ...
    @overload
    async def post(self, path: str, body: JSONObject, *, bucket: str, tier: TierName,
                   params: Params | None = None, parse: Callable[[bytes], T]) -> T: ...

    async def post(
        self,
        path: str,
        body: JSONObject,
        *,
        bucket: str,
        tier: TierName,
        params: Params | None = None,
        parse: Callable[[bytes], T] | None = None,
    ) -> bytes | T:
        """POST a JSON:API document (the reporting endpoints); same policy as `get`, `parse` too."""
        return await self._request("POST", path, params, json_codec.dumps(body), bucket=bucket, tier=tier,
                                   parse=parse)

    # -- the policy --------------------------------------------------------------------------------

    def _target(self, url: str, params: Params | None) -> URL:
        text = self._base_text + url if url.startswith("/") else url
        if params:
            text += ("&" if "?" in text else "?") + encode_params(params)
        target = URL(text, encoded=True)  # verbatim: re-encoding a links.next breaks its cursor
        if not target.is_absolute() or target.origin() != self._origin:
            # Never show the foreign URL's query, it could carry anything; the host is enough.
            raise SourceError(
                f"refusing to send the API key to {target.scheme}://{target.host}: "
                f"only {self._origin} is allowed (a links.next pointing elsewhere?)"
            )
        return target

    async def _request(
        self,
        method: str,
        url: str,
        params: Params | None,
        data: bytes | None,
        *,
        bucket: str,
        tier: TierName,
        parse: Callable[[bytes], T] | None = None,
    ) -> bytes | T:
        if self._session is None:
            raise RuntimeError("use `async with KlaviyoClient(config) as client:` before requesting")
        target = self._target(url, params)
        path = target.path
        limiter = self.limiters.get(bucket, tier)
        started = self._clock.monotonic()
        ordered_wait = 0.0  # Retry-After waits the server asked for: not "failing time"
        attempt = 0
        while True:
            attempt += 1
            # The limiter hands over a slot of the in-flight semaphore with the rate-limit slot.
            # All the time until it does (its own sleeps, and queueing behind other requests of a
            # slowly paced bucket) is waiting the API ordered, not failing time for the budget.
            queued_at = self._clock.monotonic()
            waited = await limiter.acquire(max_wait=self.max_retry_after, gate=self._semaphore)
            self.stats.rate_limit_wait_seconds += waited
            ordered_wait += self._clock.monotonic() - queued_at
            try:
                return await self._attempt(method, target, data, path, limiter, parse)
            except _Retry as retry:
                delay = self._next_delay(retry, attempt, limiter)
                failing_time = self._clock.monotonic() - started - ordered_wait
                if attempt >= self.max_attempts or failing_time + delay > self.retry_time_budget:
                    raise TransientError(
                        f"Klaviyo kept failing for {path} after {attempt} attempts; "
                        f"last error: {retry.cause}",
                        internal_message=f"{method} {path} bucket={bucket} tier={tier}",
                    ) from None
                self.stats.retries += 1
                logger.info("retrying %s %s in %.2f s after: %s", method, path, delay, retry.cause)
                if not retry.throttled:  # a throttle blocked the bucket: the next acquire() waits it out
                    await self._clock.sleep(delay)

    @staticmethod
    def _parsed(body: bytes, parse: Callable[[bytes], T]) -> T:
        try:
            return parse(body)
        except (ValueError, SourceError):
            raise _Retry(f"response body is not valid JSON ({len(body)} bytes)") from None

    def _next_delay(self, retry: _Retry, attempt: int, limiter: TierLimiter) -> float:
        if retry.throttled:
            self.stats.throttled += 1
            if retry.retry_after is not None and retry.retry_after > self.max_retry_after:
                raise TransientError(
                    f"Klaviyo asked to wait {retry.retry_after:.0f} s before the next request "
                    f"(rate limit); that is more than the {self.max_retry_after:.0f} s we wait. "
                    "Try again later."
                )
            delay = retry.retry_after if retry.retry_after is not None else self._backoff(attempt)
            limiter.block(delay)  # the whole bucket waits, not only this request
            return delay
        delay = self._backoff(attempt)
        if retry.retry_after is not None:  # e.g. a 503 with Retry-After
            delay = max(delay, min(retry.retry_after, self.backoff_cap))
        return delay

    def _backoff(self, attempt: int) -> float:
        return self._rng.uniform(0.0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))

    async def _attempt(
        self, method: str, target: URL, data: bytes | None, path: str, limiter: TierLimiter,
        parse: Callable[[bytes], T] | None,
    ) -> bytes | T:
        assert self._session is not None
        headers = {"Content-Type": JSONAPI} if data is not None else None
        self.stats.requests += 1
        response_headers: CIMultiDict[str] | None = None
        round_trip: float | None = None
        clock = self._clock
        sent_at = clock.monotonic()
        try:
            async with self._session.request(
                method, target, data=data, headers=headers, allow_redirects=False
            ) as response:
                response_headers = response.headers  # type: ignore[assignment]
                answered_at = clock.monotonic()
                # Bodies are read and parsed a few at a time: the others wait with their bytes in the
                # socket (aiohttp stops reading a connection past its small buffer), so answers
                # landing together never pile up in memory, whatever is in flight.
                async with self._bodies:
                    reading_from = clock.monotonic()
                    wire = await response.read()
                    # The round trip the request held its slot for, without the wait for a body slot.
                    round_trip = answered_at - sent_at + clock.monotonic() - reading_from
                    self.stats.bytes_received += len(wire)
                    body = _decoded(wire, response.headers.get("Content-Encoding", ""),
                                    response.headers.get("Content-Length"))
                    checked = self._check(response, body, path)
                    return checked if parse is None else self._parsed(checked, parse)
        except TimeoutError as exc:
            cause = self.transport.timeout(exc, self._timeout, self._connect_timeout)
            raise _Retry(self._mask(cause)) from None
        except aiohttp.InvalidURL as exc:
            raise SourceError(self._mask(f"invalid URL for {path}: {exc}")) from None
        except aiohttp.ClientError as exc:
            cause, retry = self.transport.failure(exc)
            if retry:
                raise _Retry(self._mask(cause)) from None
            raise ConfigError(self._mask(cause)) from None
        finally:
            limiter.release(response_headers, round_trip)
            self._semaphore.release()

    def _check(self, response: aiohttp.ClientResponse, body: bytes, path: str) -> bytes:
        status = response.status
        if 200 <= status < 300:
            if status == 204 or _body_is_complete(body):
                return body
            raise _Retry(f"incomplete response body ({len(body)} bytes, HTTP {status})")
        if status == 407 and self.transport.proxy is not None:  # a plain-http proxy's own answer
            raise ConfigError(self._mask(self.transport.proxy_answer(status, response.reason or "")[0]))
        if status == 429:
            raise _Retry(
                "HTTP 429 throttled",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                throttled=True,
            )
        if status >= 500 or status == 408:
            kind = (
                ""
                if response.content_type in (JSONAPI, "application/json")
                else f" ({response.content_type} page)"
            )
            raise _Retry(
                f"HTTP {status}{kind}", retry_after=parse_retry_after(response.headers.get("Retry-After"))
            )
        raise self._client_error(status, body, path)

    def _client_error(self, status: int, body: bytes, path: str) -> ApiError:
        if 300 <= status < 400:
            # The target is deliberately not shown: it is not ours to follow or to reveal.
            return ApiError(
                f"Klaviyo answered {path} with a redirect (HTTP {status}); redirects are not followed", status
            )
        error = _first_error(body)
        code = error.get("code") or {
            400: "invalid",
            401: "not_authenticated",
            403: "permission_denied",
            404: "not_found",
        }.get(status, "error")
        detail = str(error.get("detail") or error.get("title") or "no detail given")
        source = error.get("source")
        parameter = source.get("parameter") if isinstance(source, dict) else None
        if status == 401:
            message = f"Klaviyo rejected the API key ({status} {code}): check api_key"
        elif status == 403:
            scopes = path_scopes(path)
            message = (
                f"the API key lacks the scope needed for {path} ({status} {code}): "
                f"add the {' and '.join(f'`{scope}`' for scope in scopes)} read scope"
                + ("s" if len(scopes) > 1 else "")
            )
        elif status == 400:
            where = f" (parameter `{parameter}`)" if parameter else ""
            message = f"Klaviyo rejected the request to {path} ({status} {code}): {detail}{where}"
        elif status == 404:
            message = f"Klaviyo found nothing at {path} ({status} {code}): {detail}"
        else:
            message = f"Klaviyo answered {path} with HTTP {status} ({code}): {detail}"
        return ApiError(
            self._mask(message), status, internal_message=self._mask(f"error id {error.get('id')}")
        )
