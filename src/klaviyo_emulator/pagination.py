"""Opaque keyset cursors and the `links` of a page.

A cursor carries the sort key of the last record served plus a digest of the query it belongs to, so a
cursor replayed with another filter or sort is refused (Klaviyo: "only valid with the same query").
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import unquote_plus

import orjson

from .errors import invalid
from .jsontext import JSONObject
from .table import SortKey

CURSOR_PARAM = "page[cursor]"
_ENCODED_CURSOR = "page%5Bcursor%5D"


def query_digest(params: list[tuple[str, str]]) -> str:
    canonical = sorted((k, v) for k, v in params if k != CURSOR_PARAM)
    return hashlib.blake2b(orjson.dumps(canonical), digest_size=6).hexdigest()


def encode_cursor(key: SortKey, digest: str, held: list[SortKey] | None = None) -> str:
    """`held`: keys of records sorting before `key` still to be served (quirks.py, unsorted pages)."""
    payload: JSONObject = {"k": list(key), "q": digest}
    if held:
        payload["h"] = [list(k) for k in held]
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def decode_cursor_and_held(token: str, digest: str) -> tuple[SortKey, list[SortKey]]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload: JSONObject = orjson.loads(raw)
        key = payload["k"]
        if payload["q"] != digest:
            raise invalid("Invalid page cursor: it belongs to a different query", parameter=CURSOR_PARAM)
        held = payload.get("h", [])
        if not (_is_key(key) and isinstance(held, list) and all(_is_key(k) for k in held)):
            raise ValueError
        return tuple(key), [tuple(k) for k in held]
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise invalid("Invalid page cursor", parameter=CURSOR_PARAM) from None


def _is_key(key: object) -> bool:
    return isinstance(key, list) and len(key) == 3 and isinstance(key[2], int)


def next_link(base: str, path: str, raw_query: str, token: str) -> str:
    """The original query verbatim, minus any old cursor, plus the new one."""
    parts = [p for p in raw_query.split("&") if p and unquote_plus(p.split("=", 1)[0]) != CURSOR_PARAM]
    parts.append(f"{_ENCODED_CURSOR}={token}")
    return f"{base}{path}?{'&'.join(parts)}"


def self_link(base: str, path: str, raw_query: str) -> str:
    return f"{base}{path}?{raw_query}" if raw_query else f"{base}{path}"
