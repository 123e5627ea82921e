"""The generated account has the awkward data real Klaviyo accounts have, and it is a function of
(seed, scale, anchor)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

from klaviyo_emulator.runner import EmulatorOptions, run_emulator_in_thread
from tests.emulator.helpers import CHANNELS, parse_dt, records, walk

ANCHOR = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
BIG_INT = re.compile(rb"[:\[,]\s*-?\d{20,}\s*[,\]}]")


def _strings(node) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _values_of(node, key: str) -> Iterator[object]:
    if isinstance(node, dict):
        for k, value in node.items():
            if k.lower() == key:
                yield value
            yield from _values_of(value, key)
    elif isinstance(node, list):
        for value in node:
            yield from _values_of(value, key)


def _has_null(node) -> bool:
    if node is None:
        return True
    if isinstance(node, dict):
        return any(_has_null(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_null(v) for v in node)
    return False


def test_names_include_text_outside_latin_1(emulator):
    profiles = records(walk(emulator.url, "/api/profiles", {"page[size]": 100}))
    names = [p["attributes"].get(k) or "" for p in profiles for k in ("first_name", "last_name")]
    assert any(max(map(ord, name), default=0) > 0xFF for name in names)


def test_attributes_include_nulls(emulator):
    profiles = records(walk(emulator.url, "/api/profiles", {"page[size]": 100}))
    assert any(_has_null(p["attributes"]) for p in profiles)


def test_some_event_property_is_an_integer_wider_than_64_bits(emulator):
    pages = walk(emulator.url, "/api/events", {"page[size]": 1000})
    assert any(BIG_INT.search(page.body) for page in pages), "a >64-bit integer literal in the raw body"
    props = [rec["attributes"]["event_properties"] for rec in records(pages)]
    wide = [value for p in props for value in _ints(p) if abs(value) > 2**64]
    assert wide, "and it parses as an exact integer, not a float"


def _ints(node) -> Iterator[int]:
    if isinstance(node, bool):
        return
    if isinstance(node, int):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _ints(value)
    elif isinstance(node, list):
        for value in node:
            yield from _ints(value)


def test_many_events_share_one_second(emulator):
    counts = Counter(t["datetime"] for t in emulator.truth("events"))
    assert counts.most_common(1)[0][1] >= 5


def test_quantity_is_sometimes_int_and_sometimes_float(emulator):
    events = records(walk(emulator.url, "/api/events", {"page[size]": 1000}))
    kinds = {
        type(q) for e in events for q in _values_of(e["attributes"]["event_properties"], "quantity")
    }
    assert {int, float} <= kinds


def test_campaigns_cover_every_channel_and_archived(emulator):
    truth = emulator.truth("campaigns")
    assert {t["channel"] for t in truth} == set(CHANNELS)
    assert any(t["archived"] for t in truth)
    assert not all(t["archived"] for t in truth)


def test_some_profiles_are_suppressed(emulator):
    suppressed = [t for t in emulator.truth("profiles") if t["suppressed"]]
    assert 0 < len(suppressed) < len(emulator.truth("profiles"))


def test_a_few_records_are_dated_after_the_anchor():
    with run_emulator_in_thread(EmulatorOptions(seed=7, rate_limits=False, anchor=ANCHOR)) as emu:
        events = emu.truth("events")
        future = [t for t in events if parse_dt(t["datetime"]) > ANCHOR]
        assert 0 < len(future) <= max(1, len(events) // 20), "a few, not many"
        api = records(walk(emu.url, "/api/events", {"page[size]": 1000, "sort": "-datetime"}))
        assert parse_dt(api[0]["attributes"]["datetime"]) > ANCHOR


def _bodies(options: EmulatorOptions) -> dict[str, str]:
    out = {}
    with run_emulator_in_thread(options) as emu:
        for name, path, params in (
            ("profiles", "/api/profiles", {"page[size]": 100, "additional-fields[profile]": "subscriptions"}),
            ("events", "/api/events", {"page[size]": 300, "include": "metric"}),
            ("campaigns", "/api/campaigns", {"filter": "equals(messages.channel,'sms')"}),
            ("flows", "/api/flows", {}),
        ):
            pages = walk(emu.url, path, params)
            text = "\n".join(p.body.decode() for p in pages)
            out[name] = text.replace(emu.url.rstrip("/"), "BASE")
        out["truth"] = json.dumps({r: emu.truth(r) for r in ("profiles", "events", "lists")}, sort_keys=True)
    return out


def test_same_seed_and_anchor_give_identical_bodies():
    options = EmulatorOptions(seed=99, rate_limits=False, anchor=ANCHOR)
    assert _bodies(options) == _bodies(EmulatorOptions(seed=99, rate_limits=False, anchor=ANCHOR))


def test_different_seed_gives_different_data():
    first = _bodies(EmulatorOptions(seed=99, rate_limits=False, anchor=ANCHOR))
    second = _bodies(EmulatorOptions(seed=100, rate_limits=False, anchor=ANCHOR))
    for name in first:
        assert first[name] != second[name], name
