"""orjson serialization that also writes integers wider than 64 bits (orjson refuses them).

Data generators wrap such numbers in `BigInt`; orjson hands the subclass to `_default`, which emits a
marked string, and the marks are stripped from the bytes afterwards so the number lands unquoted.
"""

from __future__ import annotations

from typing import Any

import orjson

# A JSON value: a generated record's attributes, a request body or a cursor decoded from the wire.
# Any: records are built field by field of many shapes and read back by key; a recursive union
# would need an isinstance() or cast() at every subscript.
JSON = Any
JSONObject = dict[str, JSON]


class BigInt(int):
    """An integer that may not fit 64 bits; serialized as a bare JSON number."""


_OPEN = b'"\\u0001'
_CLOSE = b'\\u0001"'


def _default(value: object) -> str:
    if isinstance(value, BigInt):
        return f"\x01{int(value)}\x01"
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def dumps(value: object) -> bytes:
    body = orjson.dumps(value, default=_default, option=orjson.OPT_PASSTHROUGH_SUBCLASS)
    if _OPEN in body:
        body = body.replace(_OPEN, b"").replace(_CLOSE, b"")
    return body
