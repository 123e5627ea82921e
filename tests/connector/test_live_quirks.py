"""The connector reads Klaviyo's live shapes (the emulator's default quirks, klaviyo_emulator/quirks.py)
exactly as it reads the spec's: the same account served both ways gives the same records, key for key
and instant for instant, whatever form the links, cursors and datetimes take on the wire."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit

import duckdb
import pytest

from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from source_klaviyo.checkpoints import read_upper
from source_klaviyo.datetimes import floor_second, parse_datetime, utc_now
from source_klaviyo.http import KlaviyoClient
from source_klaviyo.streams import STREAMS, STREAMS_BY_NAME
from tests.connector.helpers import read_in_process, record_validator
from tests.emulator.helpers import get_json, walk
from tests.reliability.helpers import fast_read
from tests.sync.helpers import fixed, run_sync
from tests.truth import INCREMENTAL_TRUTHS, TRUTHS

ANCHOR = datetime(2026, 6, 1, 12, tzinfo=UTC)
NOW = datetime(2026, 6, 2, 12, tzinfo=UTC)  # every record but the future-dated ones is in the read
COLLECTIONS = [s.name for s in STREAMS if s.report is None]
# tag ids are UUIDs with the quirks on (`uuid_tag_ids`): tags are matched by name there
KEY_BY = {"tags": lambda r: (r["attributes"]["name"],)}


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[RunningEmulator, RunningEmulator]]:
    options = {"seed": 17, "scale": "tiny", "rate_limits": False, "anchor": ANCHOR}
    with (
        run_emulator_in_thread(EmulatorOptions(**options)) as live,
        run_emulator_in_thread(EmulatorOptions(**options, spec_strict=True)) as strict,
    ):
        yield live, strict


def _read(emu: RunningEmulator) -> dict[str, list[dict]]:
    sink, result = read_in_process(emu.url, COLLECTIONS, sync_mode="incremental", clock=lambda: NOW)
    assert result.ok, sink.errors
    return sink.by_stream


def _keyed(stream: str, records: list[dict]) -> dict[tuple, datetime | None]:
    spec = STREAMS_BY_NAME[stream]
    key_of = KEY_BY.get(stream, lambda r: tuple(r[k] for k in spec.primary_key))
    out: dict[tuple, datetime | None] = {}
    for record in records:
        key = key_of(record)
        assert key not in out, f"{stream}: {key} twice"
        value = record.get(spec.lifted) if spec.lifted else None
        out[key] = floor_second(parse_datetime(value)) if value is not None else None
    return out


def test_the_same_account_reads_the_same_with_quirks_and_spec_strict(pair):
    """Every collection stream, incremental: same keys, same cursor instants (to the second: the live
    shapes add microseconds the spec's do not have), no record twice, on both."""
    live, strict = (_read(emu) for emu in pair)
    for stream in COLLECTIONS:
        assert live[stream], f"{stream}: the emulator has data for every stream"
        assert _keyed(stream, live[stream]) == _keyed(stream, strict[stream]), stream


def test_reencoded_next_links_with_klaviyo_cursors_are_followed_verbatim(pair):
    """`links.next` re-encodes the whole query (`%28`, `%2C`, `%3A`...) around a base64 cursor of
    `next::<sort>::<datetime with a space>::id::<id>`: a client that re-encoded or decoded the link
    would send another query or cursor and get a 400 (the emulator's stats count none)."""
    live, _ = pair
    tokens = []
    flt = {"filter": "greater-than(updated,2020-01-01T00:00:00+00:00)"}
    for page in walk(live.url, "/api/profiles", {"page[size]": 3, "sort": "updated"} | flt):
        nxt = page.json()["links"]["next"]
        if nxt:
            tokens.append(parse_qs(urlsplit(nxt).query)["page[cursor]"][0])
            on_the_wire = nxt.split("page%5Bcursor%5D=")[1].split("&")[0]
            assert unquote(on_the_wire) == tokens[-1]
            assert not set(on_the_wire) & {"+", "/"}
    assert len(tokens) > 10
    assert all(base64.b64decode(t + "=" * (-len(t) % 4)).startswith(b"next::updated::") for t in tokens)
    live.reset_stats()
    streams = ["profiles", "events"]
    sink, result = read_in_process(live.url, streams, sync_mode="full_refresh", clock=lambda: NOW)
    assert result.ok, sink.errors
    statuses = {status for route in live.stats()["requests"].values() for status in route}
    assert statuses == {"200"}


class IgnoringRangeFilters(KlaviyoClient):
    """A Klaviyo that accepts a filter and does not honour it, as it was seen to with
    `equals(is_starred,true)` (the emulator's quirk `is_starred_filter_ignored`): here every bound on a
    datetime (`greater-or-equal`, `greater-than`, `less-than`) of every request, next links included."""

    async def get(self, url: str, params: Any = None, **kwargs: Any) -> Any:
        if params is not None:
            params = [(k, _unbounded(v) if k == "filter" else v) for k, v in params]
            params = [(k, v) for k, v in params if v]
        else:
            parts = urlsplit(url)
            query = [(k, _unbounded(v) if k == "filter" else v) for k, v in parse_qsl(parts.query)]
            url = parts._replace(query=urlencode([(k, v) for k, v in query if v])).geturl()
        return await super().get(url, params, **kwargs)


def _unbounded(expression: str) -> str:
    kept = [c for c in re.findall(r"[\w-]+\([^()]*\)", expression) if not _BOUND.match(c)]
    return ",".join(kept)


_BOUND = re.compile(r"(greater-or-equal|greater-than|less-than)\(\w+,\d{4}-")


@pytest.mark.parametrize("stream", sorted(INCREMENTAL_TRUTHS))
def test_bounds_a_server_does_not_honour_are_checked_here(pair, stream):
    """Two incremental reads split at a day in the middle of the data, against a server that ignores
    every datetime bound: each record is read once, by the read whose range holds it (the bounds are
    checked on the records too, cheaply on sorted pages: the first and last record of a page)."""
    live, _ = pair
    truth = INCREMENTAL_TRUTHS[stream]
    middle = ANCHOR - timedelta(days=10)
    first, result = fast_read(live.url, [stream], clock=lambda: middle, client_class=IgnoringRangeFilters)
    assert result.ok, first.errors
    keys = truth.records_keys(first.by_stream.get(stream, []))
    assert sorted(keys) == sorted(truth.keys(live, upper=read_upper(middle)))
    state = {stream: first.final_state(stream)}
    second, result = fast_read(live.url, [stream], state=state, clock=lambda: NOW,
                               client_class=IgnoringRangeFilters)
    assert result.ok, second.errors
    again = truth.records_keys(second.by_stream.get(stream, []))
    assert sorted(again) == sorted(truth.keys(live, lower=read_upper(middle), upper=read_upper(NOW)))


def test_relationships_without_a_target_fit_the_schema_even_when_included(pair):
    """`"data": null` for a campaign message's `template` and `image` (`null_relationship_data`) is what
    Klaviyo sends when they are included: the generated schema takes it, although the streams do not
    ask for those includes today."""
    live, _ = pair
    sms = {c["id"] for c in live.truth("campaigns") if c["channel"] == "sms"}
    message = next(m for m in live.truth("campaign-messages") if m["campaign_id"] in sms)
    body = get_json(live.url, f"/api/campaign-messages/{message['id']}", {"include": "template,image"})
    record = {**body["data"], "campaign_id": message["campaign_id"]}
    assert record["relationships"]["template"]["data"] is None
    errors = [error.message for error in record_validator("campaign_messages").iter_errors(record)]
    assert not errors


@pytest.mark.parametrize("stream", sorted(s.name for s in STREAMS if s.split_by is not None))
def test_ranges_cut_while_they_run_stay_disjoint_when_the_server_ignores_their_bounds(pair, stream):
    """A full refresh of a stream whose ranges are cut while they run (`split_by`), against a server
    that ignores every datetime bound: each chain keeps to its own range, so no record comes twice."""
    live, _ = pair
    truth = TRUTHS[stream]
    sink, result = fast_read(live.url, [stream], sync_mode="full_refresh", clock=lambda: NOW,
                             client_class=IgnoringRangeFilters)
    assert result.ok, sink.errors
    keys = truth.records_keys(sink.by_stream[stream])
    assert sorted(keys) == sorted(truth.keys(live))


def test_synced_from_the_spec_s_shapes_every_record_is_held_whole_by_its_typed_columns(
        strict_emulator: RunningEmulator, tmp_path: Path) -> None:
    """The typed DuckDB layout keeps a record's JSON (`_raw`) only for what its columns cannot hold:
    on the spec's shapes, which the schemas declare, that is nothing."""
    db = tmp_path / "klaviyo.duckdb"
    assert run_sync(strict_emulator.url, db, clock=fixed(utc_now())).status == "SUCCEEDED"
    with duckdb.connect(str(db), read_only=True) as con:
        for stream in STREAMS:
            (kept,) = con.execute(f'SELECT count(_raw) FROM "{stream.name}"').fetchone() or (None,)
            assert kept == 0, stream.name
