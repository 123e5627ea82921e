"""Cursor pagination: walking ``links.next`` verbatim yields every matching record exactly once, in
the requested order, with full pages until the last; bad page parameters are 400s."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.emulator.helpers import (
    COLLECTIONS,
    assert_unique,
    fmt_dt,
    ids,
    parse_dt,
    records,
    request,
    walk,
)

FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_walk(pages, expected_ids, size, *, cursor=None, descending=False):
    got = records(pages)
    assert_unique(ids(got))
    assert sorted(ids(got)) == sorted(expected_ids)
    for page in pages[:-1]:
        assert len(page.json()["data"]) == size, "every page but the last is full"
    assert len(pages[-1].json()["data"]) <= size
    assert pages[-1].json()["links"].get("next") is None
    if cursor:
        values = [parse_dt(r["attributes"][cursor]) for r in got]
        assert values == sorted(values, reverse=descending), "records come in the requested order"


@FEW
@given(data=st.data())
def test_profiles_walk_any_page_size_returns_each_profile_once(emulator, data):
    truth = emulator.truth("profiles")
    size = data.draw(st.integers(min_value=max(1, len(truth) // 40), max_value=100), label="page[size]")
    sort = data.draw(st.sampled_from([None, "updated", "-updated"]), label="sort")
    params = {"page[size]": size} | ({"sort": sort} if sort else {})
    pages = walk(emulator.url, "/api/profiles", params)
    assert_walk(
        pages,
        [t["id"] for t in truth],
        size,
        cursor="updated" if sort else None,
        descending=sort == "-updated",
    )


@FEW
@given(data=st.data())
def test_events_walk_within_datetime_bounds_returns_each_matching_event_once(emulator, data):
    truth = sorted(emulator.truth("events"), key=lambda t: parse_dt(t["datetime"]))
    # Event filters compare the event's whole second (`timestamp`): a `datetime` shown with microseconds
    # (`event_datetime_space`) is matched by its second, as the emulator and Klaviyo do.
    stamps = [parse_dt(t["datetime"]).replace(microsecond=0) for t in truth]
    lo_i = data.draw(st.integers(0, len(stamps) - 1), label="lower index")
    hi_i = data.draw(st.integers(lo_i, len(stamps) - 1), label="upper index")
    lo = stamps[lo_i] + timedelta(seconds=data.draw(st.integers(-3, 3)))
    hi = stamps[hi_i] + timedelta(seconds=data.draw(st.integers(0, 5)))
    lower_op = data.draw(st.sampled_from(["greater-or-equal", "greater-than"]))
    upper_op = data.draw(st.sampled_from(["less-than", "less-or-equal"]))
    match = [
        t["id"]
        for t, s in zip(truth, stamps, strict=True)
        if (s >= lo if lower_op == "greater-or-equal" else s > lo)
        and (s < hi if upper_op == "less-than" else s <= hi)
    ]
    size = data.draw(st.integers(min_value=max(1, len(match) // 30), max_value=1000), label="page[size]")
    sort = data.draw(st.sampled_from(["datetime", "-datetime"]))
    flt = f"{lower_op}(datetime,{fmt_dt(lo)}),{upper_op}(datetime,{fmt_dt(hi)})"
    pages = walk(emulator.url, "/api/events", {"filter": flt, "sort": sort, "page[size]": size})
    assert_walk(pages, match, size, cursor="datetime", descending=sort == "-datetime")


@pytest.mark.parametrize("resource", ["templates", "lists", "segments", "tags", "coupons"])
def test_small_page_walks_cover_each_collection(emulator, resource):
    path, _, _ = COLLECTIONS[resource]
    pages = walk(emulator.url, path, {"page[size]": 1})
    assert_walk(pages, [t["id"] for t in emulator.truth(resource)], 1)


def test_default_page_sizes_follow_the_spec(emulator):
    for resource, default in (("profiles", 20), ("events", 200), ("lists", 10), ("templates", 10)):
        path, _, _ = COLLECTIONS[resource]
        page = request(emulator.url, path).json()
        assert len(page["data"]) == min(default, len(emulator.truth(resource))), resource


def test_next_link_is_absolute_and_repeats_the_query(emulator):
    params = {"page[size]": 2, "sort": "-updated", "fields[profile]": "email,updated"}
    first = request(emulator.url, "/api/profiles", params).json()
    nxt = first["links"]["next"]
    assert nxt.startswith(emulator.url.rstrip("/") + "/api/profiles?")
    for fragment in ("page%5Bcursor%5D=", "sort=", "fields%5Bprofile%5D="):
        assert fragment in nxt or fragment.replace("%5B", "[").replace("%5D", "]") in nxt
    second = request(emulator.url, nxt).json()
    assert set(second["data"][0]["attributes"]) == {"email", "updated"}
    assert first["links"]["self"].startswith(emulator.url.rstrip("/") + "/api/profiles")


@pytest.mark.parametrize(
    ("path", "size"),
    [
        ("/api/profiles", 101),
        ("/api/profiles", 0),
        ("/api/profiles", -1),
        ("/api/profiles", "ten"),
        ("/api/events", 1001),
        ("/api/lists", 11),
        ("/api/flows", 51),
        ("/api/templates", 11),
        ("/api/coupons", 101),
        ("/api/tags", 51),
        ("/api/segments", 1.5),
    ],
)
def test_bad_page_size_is_400_naming_the_parameter(emulator, path, size):
    resp = request(emulator.url, path, {"page[size]": size})
    assert resp.status == 400
    assert resp.error["code"] == "invalid"
    assert resp.error["source"]["parameter"] == "page[size]"


def test_metrics_take_no_page_size(emulator):
    resp = request(emulator.url, "/api/metrics", {"page[size]": 5})
    assert resp.status == 400


@pytest.mark.parametrize("cursor", ["garbage", "bmV4dDo6aWQ6OjE4MjA0", "%%%", "eyJ4IjoxfQ=="])
def test_garbage_cursor_is_400(emulator, cursor):
    resp = request(emulator.url, "/api/profiles", {"page[cursor]": cursor})
    assert resp.status == 400
    assert resp.error["source"]["parameter"] == "page[cursor]"


def test_cursor_from_another_query_is_400(emulator):
    nxt = request(emulator.url, "/api/profiles", {"page[size]": 1, "sort": "updated"}).json()["links"]["next"]
    cursor = parse_qs(urlsplit(nxt).query)["page[cursor]"][0]
    resp = request(emulator.url, "/api/events", {"page[cursor]": cursor})
    assert resp.status == 400
