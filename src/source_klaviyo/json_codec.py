"""JSON in and out of the connector: msgspec, with the standard library for what msgspec refuses.

msgspec decodes and encodes integers of any width exactly (event properties hold 20-digit ids) and
decodes a 1,000-event page as fast as orjson (`bench/json_cost.py`). It refuses two things Python's
`json` accepts, both seen in real event properties: a lone surrogate escape (`"\\ud800"`, an emoji
cut in half) and a number beyond the float range (`1e400`). Those rare documents go through `json`,
so they pass or fail exactly as they would have in the 2.x connector. Files a person edits (config,
state, catalog) are read by `json` too, for its line-and-column error messages (`config.py`).

>>> loads(b'{"id": 123456789012345678901234567890}')
{'id': 123456789012345678901234567890}
>>> dumps({"text": "\\ud800", "n": 1})
b'{"text":"\\\\ud800","n":1}'
"""

from __future__ import annotations

import json

import msgspec

from .contracts import JSON

__all__ = ["DecodeError", "dumps", "loads"]

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class DecodeError(ValueError):
    """The bytes are not one JSON document."""


def loads(text: bytes | str) -> JSON:
    try:
        return _decode(text)
    except (msgspec.DecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        try:
            value: JSON = json.loads(text)
        except (ValueError, RecursionError):
            raise DecodeError(str(exc)) from None
        return value


def dumps(value: object) -> bytes:
    """One compact JSON document; a string holding a lone surrogate is written as its escape."""
    try:
        return _encode(value)
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":")).encode()
