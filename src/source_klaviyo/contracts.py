"""Types shared by the engine, the report streams and the sync: JSON values and the HTTP client.

Nothing here runs: the module holds aliases and a `Protocol`, so importing it costs nothing and pulls
in neither aiohttp nor duckdb (`spec` must start fast).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

if TYPE_CHECKING:
    from .http import HttpStats
    from .streams import TierName

# A JSON value decoded from the wire (a Klaviyo page) or from a user's file (config, catalog, state).
# Its shape is only known after the checks that read it; a precise recursive union would force an
# isinstance() or cast() at every subscript of the hot path (page parsing, hooks, record batching).
JSON = Any
# A JSON object: a record, a page, a stream state, a message, a schema.
JSONObject = dict[str, JSON]
# A JSON:API resource as the engine emits it (a dict record; the raw path has `RawRecord`s instead).
Record = JSONObject
# A stream's 3.0.0 state (`{"<cursor>": "..."}`, `{"states": [...]}`, `{"date": "..."}`).
StreamState = JSONObject
# A query string as (name, value) pairs, in order.
Params = Sequence[tuple[str, str]]

T = TypeVar("T")


class Client(Protocol):
    """What the engine, the report streams and the sync need of an HTTP client (`KlaviyoClient`).

    `parse` runs on the body of a complete 2xx answer inside the client's retries; without it the
    raw body is returned.
    """

    stats: HttpStats

    def in_flight_limit(self, bucket: str, tier: TierName) -> int:
        """How many requests of `bucket` should be in flight now."""
        ...

    def queued(self, bucket: str, tier: TierName) -> int:
        """Requests of `bucket` waiting for their turn at its rate limit."""
        ...

    @overload
    async def get(self, url: str, params: Params | None = None, *, bucket: str, tier: TierName,
                  parse: None = None) -> bytes: ...
    @overload
    async def get(self, url: str, params: Params | None = None, *, bucket: str, tier: TierName,
                  parse: Callable[[bytes], T]) -> T: ...

    @overload
    async def post(self, path: str, body: JSONObject, *, bucket: str, tier: TierName,
                   params: Params | None = None, parse: None = None) -> bytes: ...
    @overload
    async def post(self, path: str, body: JSONObject, *, bucket: str, tier: TierName,
                   params: Params | None = None, parse: Callable[[bytes], T]) -> T: ...
