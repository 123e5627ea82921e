"""Content-Encoding: API JSON bodies come gzipped when the request's Accept-Encoding allows it, and as
they are otherwise; a page is compressed once and cached with its rendering; faults that break a body
break the gzip stream as sent; `/_emulator/stats` counts bytes as sent and uncompressed."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from klaviyo_emulator.encoding import accepts_gzip
from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from tests.emulator.helpers import API_KEY, REVISION

ANCHOR = datetime(2026, 6, 1, 12, tzinfo=UTC)
HEADERS = {"Authorization": f"Klaviyo-API-Key {API_KEY}", "revision": REVISION}
EVENTS_PAGE = "/api/events?page%5Bsize%5D=1000"
TARGETS = [
    EVENTS_PAGE,
    "/api/profiles?page%5Bsize%5D=100&additional-fields%5Bprofile%5D=subscriptions,predictive_analytics",
    "/api/metrics",
    "/api/events?filter=nonsense(",  # a 400 error body
    "/api/nowhere",  # a 404
]
# json.loads of a body cut short: a JSONDecodeError ("...: line 1 column N (char N)") or, when the cut
# falls inside a multi-byte character, a UnicodeDecodeError ("... unexpected end of data")
TRUNCATED_JSON = r"\(char \d+\)$|unexpected end of data$"


class Answer:
    def __init__(self, status: int, headers: dict[str, str], sent: bytes) -> None:
        self.status = status
        self.headers = headers
        self.sent = sent  # the body as sent, not inflated

    @property
    def encoding(self) -> str:
        return self.headers.get("Content-Encoding", "identity")

    @property
    def body(self) -> bytes:
        return zlib.decompress(self.sent, wbits=31) if self.encoding == "gzip" else self.sent


def document(body: bytes) -> Any:
    """A body's JSON without the error ids (each error body draws a new one)."""
    doc = json.loads(body)
    for error in doc.get("errors", []):
        error.pop("id", None)
    return doc


def fetch(url: str, targets: list[str], accept_encoding: str | None, method: str = "GET") -> list[Answer]:
    """Each target in turn over one aiohttp session that never inflates; `None`: no Accept-Encoding."""

    async def run() -> list[Answer]:
        headers = (
            dict(HEADERS) if accept_encoding is None else {**HEADERS, "Accept-Encoding": accept_encoding}
        )
        skip = ["Accept-Encoding"] if accept_encoding is None else []
        async with aiohttp.ClientSession(headers=headers, auto_decompress=False, skip_auto_headers=skip) as s:
            out = []
            for target in targets:
                async with s.request(method, url + target) as resp:
                    out.append(Answer(resp.status, dict(resp.headers), await resp.read()))
            return out

    return asyncio.run(run())


@pytest.fixture(scope="module")
def emu() -> Iterator[RunningEmulator]:
    with run_emulator_in_thread(EmulatorOptions(seed=13, rate_limits=False, anchor=ANCHOR)) as running:
        yield running


# -- negotiation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "gzip",
        "GZIP",
        "gzip, deflate",
        "gzip, deflate, br",
        "deflate, gzip;q=0.5",
        "x-gzip",
        "*",
        "br;q=1, *;q=0.1",
    ],
)
def test_these_accept_encodings_allow_gzip(header: str) -> None:
    assert accepts_gzip(header)


@pytest.mark.parametrize(
    "header",
    [None, "", "identity", "deflate", "br", "gzip;q=0", "gzip; q=0.0, deflate", "*;q=0", "*, gzip;q=0"],
)
def test_these_do_not(header: str | None) -> None:
    assert not accepts_gzip(header)


def test_gzip_bodies_inflate_to_the_identity_bodies(emu: RunningEmulator) -> None:
    identity = fetch(emu.url, TARGETS, "identity")
    gzipped = fetch(emu.url, TARGETS, "gzip, deflate")
    assert [a.status for a in identity] == [200, 200, 200, 400, 404]
    for plain, packed in zip(identity, gzipped, strict=True):
        assert plain.encoding == "identity"
        assert packed.encoding == "gzip"
        assert packed.status == plain.status
        assert document(packed.body) == document(plain.body)
        assert plain.sent == plain.body
        if plain.status == 200:
            assert packed.body == plain.body
        assert len(packed.sent) < len(plain.sent)
        assert int(packed.headers["Content-Length"]) == len(packed.sent)
        assert packed.headers["Vary"] == plain.headers["Vary"] == "Accept-Encoding"
        assert packed.headers["Content-Type"] == plain.headers["Content-Type"]
    events = json.loads(gzipped[0].body)
    assert len(events["data"]) == 1000
    assert len(gzipped[0].sent) * 5 < len(identity[0].sent)  # JSON shrinks several times


@pytest.mark.parametrize("header", [None, "identity", "br", "gzip;q=0"])
def test_identity_is_served_when_gzip_is_not_asked(emu: RunningEmulator, header: str | None) -> None:
    for answer in fetch(emu.url, TARGETS[:3], header):
        assert "Content-Encoding" not in answer.headers
        assert json.loads(answer.sent)["data"]


def test_report_answers_to_a_post_are_gzipped_too(emu: RunningEmulator) -> None:
    async def post(encoding: str) -> Answer:
        body = {"data": {"type": "campaign-values-report", "attributes": {
            "statistics": ["opens"], "timeframe": {"key": "last_30_days"},
            "conversion_metric_id": "nope"}}}  # fmt: skip
        headers = {**HEADERS, "Accept-Encoding": encoding, "Content-Type": "application/vnd.api+json"}
        async with (
            aiohttp.ClientSession(headers=headers, auto_decompress=False) as session,
            session.post(emu.url + "/api/campaign-values-reports", json=body) as resp,
        ):
            return Answer(resp.status, dict(resp.headers), await resp.read())

    plain, packed = asyncio.run(post("identity")), asyncio.run(post("gzip"))
    assert packed.encoding == "gzip"
    assert plain.encoding == "identity"
    assert packed.status == plain.status
    assert document(packed.body) == document(plain.body)


def test_gzip_level_0_serves_identity_to_everyone() -> None:
    options = EmulatorOptions(seed=13, rate_limits=False, anchor=ANCHOR, gzip_level=0)
    with run_emulator_in_thread(options) as emu:
        answers = fetch(emu.url, TARGETS[:3], "gzip")
    assert all("Content-Encoding" not in a.headers and "Vary" not in a.headers for a in answers)
    assert all(json.loads(a.sent)["data"] for a in answers)


@pytest.mark.parametrize("level", [-1, 10])
def test_a_gzip_level_outside_zlibs_is_refused_at_start(level: int) -> None:
    with pytest.raises(ValueError, match="gzip_level"):
        run_emulator_in_thread(EmulatorOptions(seed=13, rate_limits=False, anchor=ANCHOR, gzip_level=level))


def test_the_emulators_own_endpoints_are_not_compressed(emu: RunningEmulator) -> None:
    for answer in fetch(emu.url, ["/_emulator/stats", "/_emulator/truth/metrics"], "gzip"):
        assert answer.status == 200
        assert "Content-Encoding" not in answer.headers


# -- the page cache and the stats ----------------------------------------------------------------------


def test_a_page_is_compressed_once_and_bytes_are_counted_as_sent_and_uncompressed() -> None:
    with run_emulator_in_thread(EmulatorOptions(seed=13, rate_limits=False, anchor=ANCHOR)) as emu:
        first, again = fetch(emu.url, [EVENTS_PAGE, EVENTS_PAGE], "gzip")
        plain = fetch(emu.url, [EVENTS_PAGE], "identity")[0]
        stats = emu.stats()
    assert first.sent == again.sent
    assert first.body == plain.body
    cache = stats["page_cache"]
    assert (cache["misses"], cache["hits"]) == (1, 2)  # rendered once
    assert (cache["gzip_misses"], cache["gzip_hits"], cache["gzip_entries"]) == (1, 1, 1)  # compressed once
    assert cache["bytes"] == len(plain.body) + len(first.sent)
    assert stats["gzip_responses"] == 2
    assert stats["bytes_sent"] == 2 * len(first.sent) + len(plain.sent)
    assert stats["bytes_uncompressed"] == 3 * len(plain.body)


def test_a_mutation_drops_the_gzip_bodies_with_the_pages() -> None:
    with run_emulator_in_thread(EmulatorOptions(seed=13, rate_limits=False, anchor=ANCHOR)) as emu:
        before = fetch(emu.url, ["/api/tags"], "gzip")[0]
        emu.mutate("tags", delete=1)
        assert emu.stats()["page_cache"]["gzip_entries"] == 0
        after = fetch(emu.url, ["/api/tags"], "gzip")[0]
        assert fetch(emu.url, ["/api/tags"], "identity")[0].body == after.body != before.body
        assert len(json.loads(after.body)["data"]) == len(json.loads(before.body)["data"]) - 1


# -- faults under gzip ---------------------------------------------------------------------------------


def faulty(kind: str) -> RunningEmulator:
    return run_emulator_in_thread(
        EmulatorOptions(seed=13, rate_limits=False, anchor=ANCHOR, faults=f"{kind}=1.0")
    )


def test_truncate_under_gzip_sends_half_a_gzip_stream_well_framed() -> None:
    with faulty("truncate") as emu:
        answer = fetch(emu.url, [EVENTS_PAGE], "gzip")[0]
        stats = emu.stats()
    assert answer.status == 200
    assert answer.encoding == "gzip"
    assert int(answer.headers["Content-Length"]) == len(answer.sent)
    inflater = zlib.decompressobj(wbits=31)
    prefix = inflater.decompress(answer.sent)
    assert not inflater.eof  # the gzip stream stops halfway
    assert prefix.startswith(b'{"data":[{"type":"event"')
    with pytest.raises(ValueError, match=TRUNCATED_JSON):
        json.loads(prefix)
    assert stats["bytes_sent"] == len(answer.sent)
    assert stats["bytes_uncompressed"] > 2 * len(prefix)


def test_truncate_under_gzip_leaves_an_inflating_client_with_a_broken_body() -> None:
    async def read(url: str) -> bytes | BaseException:
        async with aiohttp.ClientSession(headers={**HEADERS, "Accept-Encoding": "gzip"}) as session:
            try:
                async with session.get(url + EVENTS_PAGE) as resp:
                    assert resp.headers["Content-Encoding"] == "gzip"
                    return await resp.read()
            except aiohttp.ClientPayloadError as exc:
                return exc

    with faulty("truncate") as emu:
        outcome = asyncio.run(read(emu.url))
    if isinstance(outcome, bytes):  # aiohttp inflates what came and does not flag the missing end
        with pytest.raises(ValueError, match=TRUNCATED_JSON):
            json.loads(outcome)


def test_reset_under_gzip_breaks_the_connection_mid_stream() -> None:
    async def read(url: str) -> Any:
        async with (
            aiohttp.ClientSession(headers={**HEADERS, "Accept-Encoding": "gzip"}) as session,
            session.get(url + EVENTS_PAGE) as resp,
        ):
            assert resp.headers["Content-Encoding"] == "gzip"
            return await resp.read()

    with faulty("reset") as emu:
        with pytest.raises(aiohttp.ClientPayloadError):
            asyncio.run(read(emu.url))
        stats = emu.stats()
    assert stats["faults"] == {"reset": 1}
    assert 0 < stats["bytes_sent"] < stats["bytes_uncompressed"] // 5


def test_an_html_error_page_is_not_compressed() -> None:
    with faulty("html") as emu:
        answer = fetch(emu.url, [EVENTS_PAGE], "gzip")[0]
    assert answer.status == 502
    assert "Content-Encoding" not in answer.headers
    assert answer.sent.startswith(b"<html>")


@pytest.mark.parametrize("status", [503, 429])
def test_injected_error_bodies_are_gzipped_like_any_json(status: int) -> None:
    with faulty(str(status)) as emu:
        packed = fetch(emu.url, [EVENTS_PAGE], "gzip")[0]
        plain = fetch(emu.url, [EVENTS_PAGE], "identity")[0]
    assert packed.status == plain.status == status
    assert packed.encoding == "gzip"
    assert document(packed.body) == document(plain.body)
