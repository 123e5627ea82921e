"""JSON Schemas of the streams, generated from Klaviyo's OpenAPI spec by ``tools/generate_schemas.py``.

>>> load_schema("profiles")["properties"]["updated"]
{'format': 'date-time', 'type': ['string', 'null']}
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib.resources import files

from source_klaviyo.contracts import JSONObject

_PACKAGE = files(__name__)

STREAM_SCHEMAS: tuple[str, ...] = tuple(
    sorted(entry.name.removesuffix(".json") for entry in _PACKAGE.iterdir() if entry.name.endswith(".json"))
)


def load_schema(stream: str) -> JSONObject:
    """The JSON Schema of ``stream``'s records (a fresh copy; callers may modify it)."""
    return copy.deepcopy(_parsed(stream))


@cache
def _parsed(stream: str) -> JSONObject:
    if stream not in STREAM_SCHEMAS:
        raise KeyError(f"no schema for stream {stream!r}; known: {', '.join(STREAM_SCHEMAS)}")
    schema: JSONObject = json.loads(_PACKAGE.joinpath(f"{stream}.json").read_text(encoding="utf-8"))
    return schema
