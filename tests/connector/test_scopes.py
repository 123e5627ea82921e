"""The scopes derived from the stream table are the ones Klaviyo's OpenAPI description states for each
operation a stream sends, and the spec asks the user for exactly those."""

from __future__ import annotations

import json
from functools import cache

import pytest

from source_klaviyo.scopes import path_scopes, read_scopes, stream_scopes
from source_klaviyo.spec import READ_SCOPES
from source_klaviyo.streams import STREAMS, Stream
from tests.conftest import OPENAPI_SPEC


@cache
def operation_scopes() -> dict[tuple[str, str], set[str]]:
    paths = json.loads(OPENAPI_SPEC.read_text(encoding="utf-8"))["paths"]
    return {(method, path): set(operation["x-klaviyo-scopes"])
            for path, item in paths.items() for method, operation in item.items()
            if isinstance(operation, dict) and "x-klaviyo-scopes" in operation}


def requests_of(stream: Stream) -> list[tuple[str, str]]:
    """(method, path) of every operation reading `stream` sends."""
    requests = [("post" if stream.report else "get", stream.path)]
    if stream.detail is not None:
        requests.append(("get", stream.detail.path))
    return requests


@pytest.mark.parametrize("stream", STREAMS, ids=lambda stream: stream.name)
def test_a_stream_needs_every_scope_the_spec_states_for_its_requests(stream):
    for request in requests_of(stream):
        stated = operation_scopes()[request]
        assert set(path_scopes(request[1])) == stated, request
        assert stated <= set(stream_scopes(stream))


def test_the_spec_asks_for_exactly_the_scopes_the_streams_need():
    assert read_scopes() == READ_SCOPES
