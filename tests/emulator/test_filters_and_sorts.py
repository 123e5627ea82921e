"""Filters return exactly the truth subset for every operator an endpoint allows; anything else is
a 400 naming the parameter.  Sorts are honoured in both directions."""

from __future__ import annotations

import operator
from collections import Counter

import pytest

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

OPS = {
    "greater-than": operator.gt,
    "greater-or-equal": operator.ge,
    "less-than": operator.lt,
    "less-or-equal": operator.le,
    "equals": operator.eq,
}
ALL_CMP = ("greater-than", "greater-or-equal", "less-than", "less-or-equal")

# resource -> datetime operators the spec allows on its cursor field
DATETIME_FILTERS = {
    "events": ALL_CMP,
    "profiles": ("greater-than", "less-than"),
    "lists": ("greater-than",),
    "segments": ("greater-than",),
    "templates": (*ALL_CMP, "equals"),
    "flows": (*ALL_CMP, "equals"),
}
EMAIL_LIVE = "equals(messages.channel,'email'),equals(archived,false)"


def _walk_ids(emulator, path, params):
    got = ids(records(walk(emulator.url, path, {"page[size]": _max(path)} | params)))
    assert_unique(got)
    return set(got)


def _max(path):
    return next((size for p, _, size in COLLECTIONS.values() if p == path and size), 10)


def _pivot(values):
    """A cursor value shared by as many records as possible (ties are where filters go wrong)."""
    counts = Counter(values)
    return max(sorted(counts), key=lambda v: counts[v])


@pytest.mark.parametrize(
    ("resource", "op"), [(r, op) for r, ops in DATETIME_FILTERS.items() for op in ops]
)
def test_datetime_filter_returns_exactly_the_truth_subset(emulator, resource, op):
    path, cursor, _ = COLLECTIONS[resource]
    truth = emulator.truth(resource)
    scope = ""
    if resource == "flows":  # whether archived flows are listed by default is not ours to assume
        truth, scope = [t for t in truth if not t["archived"]], ",equals(archived,false)"
    pivot = parse_dt(_pivot([t[cursor] for t in truth]))
    expected = {t["id"] for t in truth if OPS[op](parse_dt(t[cursor]), pivot)}
    got = _walk_ids(emulator, path, {"filter": f"{op}({cursor},{fmt_dt(pivot)}){scope}"})
    assert got == expected


@pytest.mark.parametrize("op", ALL_CMP)
def test_campaign_updated_at_filter_within_a_partition(emulator, op):
    truth = [t for t in emulator.truth("campaigns") if t["channel"] == "email" and not t["archived"]]
    pivot = parse_dt(_pivot([t["updated_at"] for t in truth]))
    expected = {t["id"] for t in truth if OPS[op](parse_dt(t["updated_at"]), pivot)}
    flt = f"{EMAIL_LIVE},{op}(updated_at,{fmt_dt(pivot)})"
    assert _walk_ids(emulator, "/api/campaigns", {"filter": flt}) == expected


def test_events_split_at_a_busy_second_lose_and_repeat_nothing(emulator):
    truth = emulator.truth("events")
    busy, shared = Counter(t["datetime"] for t in truth).most_common(1)[0]
    assert shared >= 5, "the dataset has many events in one second"
    at = fmt_dt(parse_dt(busy))
    upper = _walk_ids(emulator, "/api/events", {"filter": f"greater-or-equal(datetime,{at})"})
    lower = _walk_ids(emulator, "/api/events", {"filter": f"less-than(datetime,{at})"})
    assert not upper & lower
    assert upper | lower == {t["id"] for t in truth}
    assert {t["id"] for t in truth if t["datetime"] == busy} <= upper


def test_and_form_equals_comma_form(emulator):
    # Event filters compare the event's whole second: a `datetime` shown with microseconds
    # (`event_datetime_space`) is matched by its second, as the emulator and Klaviyo do.
    def second(text):
        return parse_dt(text).replace(microsecond=0)

    truth = sorted(emulator.truth("events"), key=lambda t: parse_dt(t["datetime"]))
    lo, hi = truth[len(truth) // 4]["datetime"], truth[3 * len(truth) // 4]["datetime"]
    lo_s, hi_s = fmt_dt(second(lo)), fmt_dt(second(hi))
    comma = _walk_ids(
        emulator, "/api/events", {"filter": f"greater-or-equal(datetime,{lo_s}),less-than(datetime,{hi_s})"}
    )
    anded = _walk_ids(
        emulator,
        "/api/events",
        {"filter": f"and(greater-or-equal(datetime,{lo_s}),less-than(datetime,{hi_s}))"},
    )
    assert (
        comma == anded == {t["id"] for t in truth if second(lo) <= second(t["datetime"]) < second(hi)}
    )


def test_events_by_metric_id(emulator):
    truth = emulator.truth("events")
    metric_id = Counter(t["metric_id"] for t in truth).most_common(1)[0][0]
    got = _walk_ids(emulator, "/api/events", {"filter": f"equals(metric_id,'{metric_id}')"})
    assert got == {t["id"] for t in truth if t["metric_id"] == metric_id}


def test_profiles_by_id_equals_and_any(emulator):
    truth = [t["id"] for t in emulator.truth("profiles")]
    assert _walk_ids(emulator, "/api/profiles", {"filter": f'equals(id,"{truth[0]}")'}) == {truth[0]}
    chosen = truth[1:4]
    listed = ",".join(f'"{i}"' for i in chosen)
    assert _walk_ids(emulator, "/api/profiles", {"filter": f"any(id,[{listed}])"}) == set(chosen)


@pytest.mark.parametrize(("channel", "archived"), [("sms", True), ("sms", False), ("mobile_push", True)])
def test_campaign_channel_and_archived_filters(emulator, channel, archived):
    flt = f"equals(messages.channel,'{channel}'),equals(archived,{str(archived).lower()})"
    expected = {
        t["id"] for t in emulator.truth("campaigns") if t["channel"] == channel and t["archived"] is archived
    }
    assert _walk_ids(emulator, "/api/campaigns", {"filter": flt}) == expected


def test_campaign_filter_in_and_form(emulator):
    flt = "and(equals(messages.channel,'sms'),equals(archived,true))"
    expected = {t["id"] for t in emulator.truth("campaigns") if t["channel"] == "sms" and t["archived"]}
    assert _walk_ids(emulator, "/api/campaigns", {"filter": flt}) == expected


def test_filter_written_literally_in_the_url_is_accepted(emulator):
    truth = emulator.truth("lists")
    pivot = _pivot([t["updated"] for t in truth])
    literal = fmt_dt(parse_dt(pivot)).replace("+", "%2B")
    url = f"{emulator.url.rstrip('/')}/api/lists?filter=greater-than(updated,{literal})"
    expected = {t["id"] for t in truth if parse_dt(t["updated"]) > parse_dt(pivot)}
    got = set(ids(records(walk(emulator.url, url))))
    assert got == expected


@pytest.mark.parametrize(
    ("path", "flt"),
    [
        ("/api/lists", "less-than(updated,2024-01-01T00:00:00+00:00)"),
        ("/api/profiles", "greater-or-equal(updated,2024-01-01T00:00:00+00:00)"),
        ("/api/profiles", "equals(email,'a@example.com)"),
        ("/api/profiles", "equals(email,a@example.com)"),
        ("/api/profiles", "greater-than(updated,'2024-01-01T00:00:00+00:00')"),
        ("/api/events", "greater-than(datetime,\"2024-01-01T00:00:00+00:00\")"),
        ("/api/events", "greater-than(datetime,yesterday)"),
        ("/api/events", "greater-than(datetime,2024-01-01T00:00:00+00:00"),
        ("/api/events", "greater-than datetime"),
        ("/api/events", "equals(nonexistent,'x')"),
        ("/api/events", "contains(metric_id,'x')"),
        ("/api/flows", "equals(archived,maybe)"),
        ("/api/templates", "nonsense-op(updated,2024-01-01T00:00:00+00:00)"),
        ("/api/campaigns", "equals(archived,true)"),
        ("/api/campaigns", "equals(messages.channel,'fax')"),
        ("/api/campaigns", "greater-than(updated_at,2024-01-01T00:00:00+00:00)"),
    ],
)
def test_disallowed_or_malformed_filters_are_400_on_filter(emulator, path, flt):
    resp = request(emulator.url, path, {"filter": flt})
    assert resp.status == 400, resp.body[:300]
    assert resp.error["code"] == "invalid"
    assert resp.error["source"]["parameter"] == "filter"


def test_campaigns_without_any_filter_are_400_on_filter(emulator):
    resp = request(emulator.url, "/api/campaigns")
    assert resp.status == 400
    assert resp.error["source"]["parameter"] == "filter"


def test_coupons_take_no_filter(emulator):
    assert request(emulator.url, "/api/coupons", {"filter": "equals(id,'x')"}).status == 400


@pytest.mark.parametrize(
    ("resource", "sort", "extra"),
    [
        ("events", "datetime", {}),
        ("events", "-datetime", {}),
        ("profiles", "updated", {}),
        ("profiles", "-updated", {}),
        ("flows", "updated", {}),
        ("flows", "-updated", {}),
        ("lists", "-updated", {}),
        ("templates", "updated", {}),
        ("segments", "-updated", {}),
        ("campaigns", "updated_at", {"filter": EMAIL_LIVE}),
        ("campaigns", "-updated_at", {"filter": EMAIL_LIVE}),
    ],
)
def test_sort_is_honoured_across_pages(emulator, resource, sort, extra):
    path, cursor, size = COLLECTIONS[resource]
    params = {"sort": sort, "page[size]": max(1, (size or 10) // 4)} | extra
    values = [parse_dt(r["attributes"][cursor]) for r in records(walk(emulator.url, path, params))]
    assert len(values) > 1
    assert values == sorted(values, reverse=sort.startswith("-"))


def test_sort_by_name_orders_lexicographically(emulator):
    names = [r["attributes"]["name"] for r in records(walk(emulator.url, "/api/tags", {"sort": "name"}))]
    assert names == sorted(names)
    names = [r["attributes"]["name"] for r in records(walk(emulator.url, "/api/tags", {"sort": "-name"}))]
    assert names == sorted(names, reverse=True)


@pytest.mark.parametrize(
    ("path", "sort"),
    [
        ("/api/events", "id"),
        ("/api/events", "-updated"),
        ("/api/profiles", "name"),
        ("/api/lists", "--updated"),
    ],
)
def test_unsupported_sort_is_400_on_sort(emulator, path, sort):
    resp = request(emulator.url, path, {"sort": sort})
    assert resp.status == 400
    assert resp.error["source"]["parameter"] == "sort"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/profiles", {"foo": "bar"}),
        ("/api/events", {"page[number]": 2}),
        ("/api/lists", {"include": "profiles"}),
        ("/api/events", {"fields[event]": "nonexistent"}),
        ("/api/metrics", {"sort": "name"}),
        ("/api/lists", {"additional-fields[list]": "profile_count"}),
    ],
)
def test_unknown_or_unsupported_query_parameters_are_400(emulator, path, params):
    resp = request(emulator.url, path, params)
    assert resp.status == 400
    assert resp.error["code"] == "invalid"
