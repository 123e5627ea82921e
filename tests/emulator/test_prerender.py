"""`serve --prerender-events`: events pages sliced from the store rendered at start-up are byte-for-byte
the pages rendered per request, gzipped or not, for every request shape; what the store does not hold
(another base, attributions data in --spec-strict, events added later) falls back to the renderer.

Two emulators of the same world are compared: one pre-rendered, one not. The plain one is asked with the
pre-rendered one's Host header, so both build their links (and event links) on the same base.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest

from klaviyo_emulator.app import CACHE
from klaviyo_emulator.cli import parser
from klaviyo_emulator.data.events import Events
from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from tests.emulator.helpers import request, served

ANCHOR = datetime(2026, 6, 1, 12, tzinfo=UTC)
# mutations are stamped with the real now; both worlds get this one, a day after the anchor: added events
# land before the few future-dated ones, so the datetime order stops being the index order
NOW = int((ANCHOR + timedelta(days=1)).timestamp())


@contextmanager
def pair(seed: int, spec_strict: bool = False) -> Iterator[tuple[RunningEmulator, RunningEmulator]]:
    """(pre-rendered, plain) emulators of one world."""
    options = {"seed": seed, "scale": "tiny", "rate_limits": False, "anchor": ANCHOR}
    options["spec_strict"] = spec_strict
    with (
        run_emulator_in_thread(EmulatorOptions(**options, prerender_events=True)) as pre,
        run_emulator_in_thread(EmulatorOptions(**options)) as plain,
    ):
        yield pre, plain


@pytest.fixture(scope="module")
def emulators() -> Iterator[tuple[RunningEmulator, RunningEmulator]]:
    with pair(seed=7) as emus:
        yield emus


def body(url: str, path_qs: str, host: str, gzip: bool) -> bytes:
    resp = request(url, path_qs, headers={"Host": host, "Accept-Encoding": "gzip" if gzip else "identity"})
    assert resp.status == 200, f"GET {path_qs} -> {resp.status}: {resp.body[:300]!r}"
    encoding = resp.headers.get("Content-Encoding", "identity")
    assert encoding == ("gzip" if gzip else "identity")
    return zlib.decompress(resp.body, wbits=31) if gzip else resp.body


def path_qs(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def compare_walk(
    pre: RunningEmulator, plain: RunningEmulator, first: str, gzip: bool, host: str | None = None
) -> int:
    """Walks `first` on both (links.next of the pre-rendered one), asserting every page the same bytes;
    returns the events seen."""
    host = host or urlsplit(pre.url).netloc
    target: str | None = first
    seen = 0
    pages = 0
    while target:
        ours = body(pre.url, target, host, gzip)
        theirs = body(plain.url, target, host, gzip)
        assert ours == theirs, f"{target}: the pre-rendered page differs"
        doc = request(pre.url, target, headers={"Host": host}).json()
        seen += len(doc["data"])
        pages += 1
        assert pages < 100
        nxt = doc["links"].get("next")  # --spec-strict leaves it out on the last page
        target = path_qs(nxt) if nxt else None
    return seen


WALKS = [
    "/api/events?page%5Bsize%5D=1000",
    "/api/events?page%5Bsize%5D=170",  # page edges inside same-second bursts
    "/api/events?page%5Bsize%5D=170&sort=-datetime",
    "/api/events?page%5Bsize%5D=200&filter=greater-or-equal(datetime,2026-03-01T00:00:00%2B00:00)"
    ",less-than(datetime,2026-05-20T00:00:00%2B00:00)",
    "/api/events?page%5Bsize%5D=200&include=metric,attributions",
    "/api/events?page%5Bsize%5D=200&include=profile",
    "/api/events?page%5Bsize%5D=200&fields%5Bevent%5D=datetime,uuid",  # the generic renderer
]


@pytest.mark.parametrize("gzip", [False, True], ids=["identity", "gzip"])
@pytest.mark.parametrize("first", WALKS)
def test_pre_rendered_pages_are_the_rendered_pages(emulators, first, gzip):
    pre, plain = emulators
    assert pre.handle.world.events.prerendered_bytes() > 0
    assert plain.handle.world.events.prerendered_bytes() == 0
    assert compare_walk(pre, plain, first, gzip) > 0


@pytest.mark.parametrize("gzip", [False, True], ids=["identity", "gzip"])
def test_one_metric_and_its_reverse(emulators, gzip):
    pre, plain = emulators
    metric = request(pre.url, "/api/metrics").json()["data"][1]["id"]
    for sort in ("datetime", "-datetime"):
        first = f"/api/events?page%5Bsize%5D=50&sort={sort}&filter=equals(metric_id,%22{metric}%22)"
        assert compare_walk(pre, plain, first, gzip) > 0


@pytest.mark.parametrize("gzip", [False, True], ids=["identity", "gzip"])
def test_another_host_falls_back(emulators, gzip):
    pre, plain = emulators
    port = urlsplit(pre.url).port
    first = "/api/events?page%5Bsize%5D=400"
    assert compare_walk(pre, plain, first, gzip, host=f"localhost:{port}") == len(pre.handle.world.events)
    assert b'"self":"http://localhost:' in body(pre.url, first, f"localhost:{port}", gzip)


@pytest.fixture(scope="module")
def strict_emulators() -> Iterator[tuple[RunningEmulator, RunningEmulator]]:
    with pair(seed=7, spec_strict=True) as emus:
        yield emus


def _renders(monkeypatch) -> list[tuple[int, bool]]:
    rendered: list[tuple[int, bool]] = []
    original = Events.render

    def counting(self, indices, base, attributions_data):
        rendered.append((len(indices), attributions_data))
        return original(self, indices, base, attributions_data)

    monkeypatch.setattr(Events, "render", counting)
    return rendered


def test_the_store_serves_plain_pages_and_attributions_too(emulators, monkeypatch):
    """Which path served: the renderer is called only for what the store cannot answer. Klaviyo leaves
    out the attributions of an event that has none (quirks.py `attributions_absent`), so a page that
    includes them is the same page: the store serves it."""
    pre, _ = emulators
    events = pre.handle.world.events
    rendered = _renders(monkeypatch)
    pre.handle.app[CACHE].clear()
    assert len(body(pre.url, "/api/events?page%5Bsize%5D=500&sort=-datetime", urlsplit(pre.url).netloc, True))
    body(pre.url, "/api/events?page%5Bsize%5D=500&include=attributions", urlsplit(pre.url).netloc, False)
    assert rendered == []
    assert events.prerendered_bytes() > 800 * len(events)  # ~900 B an event


def test_spec_strict_attributions_fall_back_to_the_renderer(strict_emulators, monkeypatch):
    pre, plain = strict_emulators
    rendered = _renders(monkeypatch)
    pre.handle.app[CACHE].clear()
    body(pre.url, "/api/events?page%5Bsize%5D=500", urlsplit(pre.url).netloc, False)
    assert rendered == []
    body(pre.url, "/api/events?page%5Bsize%5D=500&include=attributions", urlsplit(pre.url).netloc, False)
    assert rendered == [(500, True)]
    assert compare_walk(pre, plain, "/api/events?page%5Bsize%5D=300&include=attributions", False) > 0


@pytest.mark.parametrize("gzip", [False, True], ids=["identity", "gzip"])
def test_added_events_fall_back_and_deleted_profiles_events_are_left_out(monkeypatch, gzip):
    monkeypatch.setattr("klaviyo_emulator.store.time", SimpleNamespace(time=lambda: NOW))
    with pair(seed=11) as (pre, plain):
        count = len(pre.handle.world.events)
        for emu in (pre, plain):
            emu.mutate("events", add=25)
            emu.mutate("profiles", delete=3)
        events = pre.handle.world.events
        assert len(events) == count + 25
        assert events._order is not None  # they landed before the future-dated ones
        live = len(pre.truth("events"))
        assert live < count + 25  # the deleted profiles' events went with them
        for first in (
            "/api/events?page%5Bsize%5D=300",
            "/api/events?page%5Bsize%5D=300&sort=-datetime",
            "/api/events?page%5Bsize%5D=300&include=metric",
        ):
            assert compare_walk(pre, plain, first, gzip) == live
        since = (ANCHOR + timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%S") + "%2B00:00"
        assert compare_walk(pre, plain, f"/api/events?filter=greater-than(datetime,{since})", gzip) >= 25


def test_the_flag():
    assert parser().parse_args(["serve", "--port", "0", "--prerender-events"]).prerender_events
    assert not parser().parse_args(["serve", "--port", "0"]).prerender_events
    assert not EmulatorOptions().prerender_events


def test_serve_prerender_events():
    args = ["serve", "--port", "0", "--seed", "3", "--scale", "tiny", "--no-rate-limits"]
    args.append("--prerender-events")
    with served(*args) as url:
        resp = request(url, "/api/events", {"page[size]": 1000})
        assert resp.status == 200
        assert len(resp.json()["data"]) == 1000
        assert resp.json()["data"][0]["links"]["self"].startswith(f"{url}/api/events/")
