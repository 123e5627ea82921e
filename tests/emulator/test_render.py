"""The events fast path (text templates spliced per event) is byte-for-byte the generic renderer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from klaviyo_emulator.jsontext import dumps
from klaviyo_emulator.render import PageCache, Renderer
from klaviyo_emulator.store import World

ANCHOR = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module", params=[True, False], ids=["quirks", "spec-strict"])
def world(request) -> World:
    world = World(seed=5, scale="tiny", anchor=ANCHOR, quirks=request.param)
    world.mutate("events", add=3)  # indices past the generated ones render the same way
    return world


@pytest.mark.parametrize("includes", [frozenset(), frozenset({"attributions", "metric", "profile"})])
def test_fast_event_text_equals_the_generic_renderer(world, includes):
    events = world.events
    base = 'http://127.0.0.1:8080/"odd"'  # the Host header is the client's; the api escapes it first
    escaped = dumps(base).decode()[1:-1]
    indices = list(range(len(events)))
    generic = dumps([Renderer(base, {}, {}, world.quirks).resource(events, i, includes) for i in indices])
    fast = ("[" + ",".join(events.render(indices, escaped, "attributions" in includes)) + "]").encode()
    assert fast == generic


def test_event_properties_keep_their_awkward_values(world):
    props = [world.events.attributes(i, frozenset())["event_properties"] for i in range(len(world.events))]
    assert all(p["$event_id"].startswith(f"{i}-") for i, p in enumerate(props))
    orders = [p for p in props if "OrderId" in p]
    assert orders
    assert all(isinstance(p["$value"], int | float) for p in orders)
    assert any(p["$value"] > 2**64 for p in props if "$value" in p)


def test_page_cache_is_bounded_in_bytes():
    cache = PageCache(max_bytes=1000)
    for n in range(50):
        cache.put(("page", n), b"x" * 200)
    assert cache.size <= 1000
    assert len(cache.entries) == 5
    assert cache.get(("page", 49)) is not None
    assert cache.get(("page", 0)) is None
