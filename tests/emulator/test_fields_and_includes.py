"""additional-fields, include and sparse fieldsets change the body exactly as asked, no more."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.emulator.helpers import get_json, memberships, records, walk

COSTLY = {"subscriptions", "predictive_analytics"}


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (None, set()),
        ("subscriptions", {"subscriptions"}),
        ("predictive_analytics", {"predictive_analytics"}),
        ("subscriptions,predictive_analytics", COSTLY),
    ],
)
def test_profile_costly_attributes_come_only_when_requested(emulator, requested, expected):
    params = {"page[size]": 100} | ({"additional-fields[profile]": requested} if requested else {})
    profiles = records(walk(emulator.url, "/api/profiles", params))
    assert profiles
    for profile in profiles:
        assert COSTLY & set(profile["attributes"]) == expected, profile["id"]


def test_suppressed_profiles_carry_a_suppression(emulator):
    profiles = records(
        walk(
            emulator.url, "/api/profiles", {"page[size]": 100, "additional-fields[profile]": "subscriptions"}
        )
    )
    with_suppression = {
        p["id"] for p in profiles if p["attributes"]["subscriptions"]["email"]["marketing"].get("suppression")
    }
    truth = {t["id"] for t in emulator.truth("profiles") if t["suppressed"]}
    assert truth, "some profiles are suppressed"
    assert with_suppression == truth


def test_profile_count_only_on_list_detail_when_requested(emulator):
    members = memberships(emulator.truth("list-memberships"), "list")
    for lst in emulator.truth("lists")[:4]:
        plain = get_json(emulator.url, f"/api/lists/{lst['id']}")["data"]["attributes"]
        assert "profile_count" not in plain
        counted = get_json(
            emulator.url, f"/api/lists/{lst['id']}", {"additional-fields[list]": "profile_count"}
        )
        assert counted["data"]["attributes"]["profile_count"] == len(members.get(lst["id"], ()))
    for lst in records(walk(emulator.url, "/api/lists")):
        assert "profile_count" not in lst["attributes"]


def test_segment_profile_count_when_requested(emulator):
    members = memberships(emulator.truth("segment-memberships"), "segment")
    seg = emulator.truth("segments")[0]["id"]
    assert "profile_count" not in get_json(emulator.url, f"/api/segments/{seg}")["data"]["attributes"]
    body = get_json(emulator.url, f"/api/segments/{seg}", {"additional-fields[segment]": "profile_count"})
    assert body["data"]["attributes"]["profile_count"] == len(members.get(seg, ()))


def _assert_included_once_and_complete(pages, relations):
    included = [(r["type"], r["id"]) for page in pages for r in page.json().get("included", [])]
    # one page's included holds each resource once; across pages a resource may repeat
    for page in pages:
        keys = [(r["type"], r["id"]) for r in page.json().get("included", [])]
        dupes = [k for k, n in Counter(keys).items() if n > 1]
        assert not dupes, f"included repeats {dupes[:5]}"
        for rec in page.json()["data"]:
            for rel in relations:
                data = rec["relationships"][rel].get("data")
                assert data is not None, f"{rel} named in include must carry data"
                for ref in data if isinstance(data, list) else [data]:
                    assert (ref["type"], ref["id"]) in keys, f"{ref} referenced but not included"
    return included


def test_event_includes_hold_metric_and_profile_once_per_page(emulator):
    pages = walk(emulator.url, "/api/events", {"page[size]": 1000, "include": "metric,profile"})
    included = _assert_included_once_and_complete(pages, ["metric", "profile"])
    assert {t for t, _ in included} == {"metric", "profile"}
    by_id = {t["id"]: t["metric_id"] for t in emulator.truth("events")}
    for rec in records(pages):
        assert rec["relationships"]["metric"]["data"]["id"] == by_id[rec["id"]]


def test_events_without_include_have_no_included(emulator):
    body = get_json(emulator.url, "/api/events", {"page[size]": 50})
    assert not body.get("included")


def test_campaign_includes_messages_and_tags(emulator):
    by_campaign: dict[str, set[str]] = {}
    for m in emulator.truth("campaign-messages"):
        by_campaign.setdefault(m["campaign_id"], set()).add(m["id"])
    flt = "equals(messages.channel,'email'),equals(archived,false)"
    pages = walk(emulator.url, "/api/campaigns", {"filter": flt, "include": "campaign-messages,tags"})
    _assert_included_once_and_complete(pages, ["campaign-messages", "tags"])
    for rec in records(pages):
        refs = {r["id"] for r in rec["relationships"]["campaign-messages"]["data"]}
        assert refs == by_campaign.get(rec["id"], set())


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("/api/profiles", {"fields[profile]": "email,updated"}, {"email", "updated"}),
        ("/api/events", {"fields[event]": "datetime"}, {"datetime"}),
        ("/api/lists", {"fields[list]": "name"}, {"name"}),
        ("/api/flows", {"fields[flow]": "name,archived,updated"}, {"name", "archived", "updated"}),
        (
            "/api/profiles",
            {"fields[profile]": "email,subscriptions", "additional-fields[profile]": "subscriptions"},
            {"email", "subscriptions"},
        ),
    ],
)
def test_sparse_fieldsets_return_only_the_named_attributes(emulator, path, params, expected):
    recs = get_json(emulator.url, path, params | {"page[size]": 10})["data"]
    assert recs
    for rec in recs:
        assert set(rec["attributes"]) == expected
        assert rec["id"]
        assert rec["type"]
