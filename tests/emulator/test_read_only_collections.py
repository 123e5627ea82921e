"""The read-only collections of issue 20 (accounts, the catalog, coupon codes, forms, images, reviews,
tag groups, universal content, push tokens, web feeds, custom and mapped metrics, data sources): each
walk is exactly the truth, the filters and sorts the spec gives act as stated, every relationship points
at a record that exists, and mutations move the truth and the API together."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.emulator.helpers import assert_unique, fmt_dt, get_json, ids, parse_dt, records, request, walk

# API path segment -> (page size to walk with, or None where the endpoint answers in one page)
COLLECTIONS = {
    "accounts": None,
    "catalog-items": 7,
    "catalog-variants": 30,
    "catalog-categories": 3,
    "forms": 4,
    "images": 9,
    "reviews": 25,
    "tag-groups": 1,
    "template-universal-content": 5,
    "push-tokens": 8,
    "web-feeds": 4,
    "custom-metrics": None,
    "mapped-metrics": None,
    "data-sources": 3,
}
# resource -> its datetime attribute that the endpoint filters and sorts by (its time of change)
CHANGE_TIMES = {"forms": "updated_at", "images": "updated_at", "template-universal-content": "updated",
                "web-feeds": "updated"}


def _walk(emu, resource: str, params=None) -> list[dict]:
    size = COLLECTIONS.get(resource)
    sized = {"page[size]": size} if size else {}
    return records(walk(emu.url, f"/api/{resource}", {**sized, **(params or {})}))


@pytest.mark.parametrize("resource", list(COLLECTIONS))
def test_a_walk_in_small_pages_is_exactly_the_truth(emulator, resource):
    got = ids(_walk(emulator, resource))
    assert_unique(got)
    assert got, f"the tiny world has {resource}"
    assert set(got) == {row["id"] for row in emulator.truth(resource)}


def test_coupon_codes_need_a_coupon_or_profile_filter_and_each_coupon_has_its_own(emulator):
    response = request(emulator.url, "/api/coupon-codes")
    assert response.status == 400
    assert response.error["source"]["parameter"] == "filter"
    truth = emulator.truth("coupon-codes")
    by_coupon = Counter(row["coupon_id"] for row in truth)
    assert max(by_coupon.values()) > 100, "a bulk upload spans several pages"
    assert set(by_coupon) <= {row["id"] for row in emulator.truth("coupons")}
    seen: list[str] = []
    for coupon in emulator.truth("coupons"):
        pages = walk(emulator.url, "/api/coupon-codes", {"filter": f"equals(coupon.id,'{coupon['id']}')"})
        codes = records(pages)
        assert all(code["relationships"]["coupon"]["data"]["id"] == coupon["id"] for code in codes)
        assert len(codes) == by_coupon[coupon["id"]]
        seen += ids(codes)
    assert_unique(seen)
    assert set(seen) == {row["id"] for row in truth}


def test_assigned_coupon_codes_name_existing_profiles(emulator):
    profiles = {row["id"] for row in emulator.truth("profiles")}
    coupon = Counter(row["coupon_id"] for row in emulator.truth("coupon-codes")).most_common(1)[0][0]
    codes = records(walk(emulator.url, "/api/coupon-codes", {"filter": f"equals(coupon.id,'{coupon}')"}))
    holders = [code["relationships"]["profile"].get("data") for code in codes]
    assigned = [holder["id"] for holder in holders if holder]
    assert assigned
    assert set(assigned) <= profiles
    for code in codes:
        unassigned = code["attributes"]["status"] == "UNASSIGNED"
        assert (code["relationships"]["profile"].get("data") is None) == unassigned


def test_variants_belong_to_their_items_and_categories_list_theirs(emulator):
    items = {item["id"]: item for item in _walk(emulator, "catalog-items", {"include": "variants"})}
    variants = _walk(emulator, "catalog-variants")
    listed = {ref["id"] for item in items.values() for ref in item["relationships"]["variants"]["data"]}
    assert listed == set(ids(variants))
    for variant in variants:
        item = items[variant["relationships"]["item"]["data"]["id"]]
        assert variant["attributes"]["title"].startswith(item["attributes"]["title"])
        assert {"type": "catalog-variant", "id": variant["id"]} in item["relationships"]["variants"]["data"]
    for category in _walk(emulator, "catalog-categories"):
        members = ids(records(walk(emulator.url, "/api/catalog-items",
                                   {"filter": f"equals(category.id,'{category['id']}')"})))
        by_item = ids(records(walk(emulator.url, "/api/catalog-categories",
                                   {"filter": f"equals(item.id,'{members[0]}')"}))) if members else []
        assert set(members) <= set(items)
        assert not members or category["id"] in by_item


def test_reviews_are_of_existing_items_and_name_the_order_of_a_verified_purchase(emulator):
    reviews = _walk(emulator, "reviews", {"include": "events"})
    items = {item["id"]: item for item in _walk(emulator, "catalog-items")}
    events = {row["id"] for row in emulator.truth("events")}
    verified = [review for review in reviews if review["attributes"]["verified"]]
    assert verified
    for review in reviews:
        item = review["relationships"]["item"].get("data")
        if item is not None:
            assert review["attributes"]["product"]["name"] == items[item["id"]]["attributes"]["title"]
        orders = review["relationships"]["events"].get("data") or []
        assert bool(orders) == review["attributes"]["verified"]
        assert {order["id"] for order in orders} <= events
        assert parse_dt(review["attributes"]["created"]) <= parse_dt(review["attributes"]["updated"])


def test_tag_groups_own_the_tags_and_mapped_metrics_point_at_existing_metrics(emulator):
    groups = {row["id"] for row in emulator.truth("tag-groups")}
    for tag in records(walk(emulator.url, "/api/tags", {"include": "tag-group"})):
        assert tag["relationships"]["tag-group"]["data"]["id"] in groups
    metrics = {row["id"] for row in emulator.truth("metrics")}
    custom = {row["id"] for row in emulator.truth("custom-metrics")}
    mapped = get_json(emulator.url, "/api/mapped-metrics", {"include": "metric,custom-metric"})
    targets = [(rel.get("data") or {}).get("id") for m in mapped["data"]
               for rel in (m["relationships"]["metric"], m["relationships"]["custom-metric"])]
    assert {target for target in targets if target} <= metrics | custom
    assert {row["type"] for row in mapped["included"]} <= {"metric", "custom-metric"}
    for row in get_json(emulator.url, "/api/custom-metrics")["data"]:
        assert {group["metric_id"] for group in row["attributes"]["definition"]["metric_groups"]} <= metrics


@pytest.mark.parametrize("resource", list(CHANGE_TIMES))
def test_the_time_of_change_filters_and_sorts(emulator, resource):
    cursor = CHANGE_TIMES[resource]
    truth = emulator.truth(resource)
    pivot = sorted(parse_dt(row[cursor]) for row in truth)[len(truth) // 2]
    got = _walk(emulator, resource, {"filter": f"greater-or-equal({cursor},{fmt_dt(pivot)})", "sort": cursor})
    assert set(ids(got)) == {row["id"] for row in truth if parse_dt(row[cursor]) >= pivot}
    stamps = [parse_dt(record["attributes"][cursor]) for record in got]
    assert stamps == sorted(stamps)


def test_reviews_filter_by_created_and_sort_by_updated(emulator):
    reviews = _walk(emulator, "reviews", {"sort": "-updated"})
    stamps = [parse_dt(review["attributes"]["updated"]) for review in reviews]
    assert stamps == sorted(stamps, reverse=True)
    pivot = sorted(parse_dt(review["attributes"]["created"]) for review in reviews)[len(reviews) // 3]
    since = _walk(emulator, "reviews", {"filter": f"greater-or-equal(created,{fmt_dt(pivot)})"})
    assert set(ids(since)) == {r["id"] for r in reviews if parse_dt(r["attributes"]["created"]) >= pivot}
    strictly_after = {"filter": f"greater-than(created,{fmt_dt(pivot)})"}  # not an operator the spec gives
    assert request(emulator.url, "/api/reviews", strictly_after).status == 400


@pytest.mark.parametrize("resource", [*CHANGE_TIMES, "reviews", "catalog-items"])
def test_add_and_update_move_truth_and_api_together(fresh_emulator, resource):
    before = {row["id"] for row in fresh_emulator.truth(resource)}
    changed = fresh_emulator.mutate(resource, add=2, update=3)
    assert len(changed["added"]) == 2
    assert len(changed["updated"]) == 3
    after = {row["id"]: row for row in fresh_emulator.truth(resource)}
    assert set(after) == before | set(changed["added"])
    listed = {record["id"]: record for record in _walk(fresh_emulator, resource)}
    assert set(listed) == set(after)
    cursor = CHANGE_TIMES.get(resource, "updated")
    touched = {*changed["added"], *changed["updated"]}
    untouched = [row for row in after.values() if row["id"] not in touched]
    newest = max(parse_dt(row[cursor]) for row in untouched)
    for record_id in changed["added"] + changed["updated"]:
        assert listed[record_id]["attributes"][cursor] == after[record_id][cursor]
        assert parse_dt(after[record_id][cursor]) >= newest


def test_a_deleted_coupon_takes_its_codes_and_a_deleted_profile_its_push_tokens(fresh_emulator):
    coupons = fresh_emulator.mutate("coupons", delete=5)["deleted"]
    assert {row["coupon_id"] for row in fresh_emulator.truth("coupon-codes")}.isdisjoint(coupons)
    tokens = _walk(fresh_emulator, "push-tokens")
    holders = {token["relationships"]["profile"]["data"]["id"] for token in tokens}
    gone = set(fresh_emulator.mutate("profiles", delete=60)["deleted"])
    assert gone & holders, "precondition: a deleted profile had a device"
    left = _walk(fresh_emulator, "push-tokens")
    assert {token["relationships"]["profile"]["data"]["id"] for token in left} == holders - gone
    assert set(ids(left)) == {row["id"] for row in fresh_emulator.truth("push-tokens")}


def test_the_account_states_its_timezone_and_currency(emulator):
    [account] = get_json(emulator.url, "/api/accounts")["data"]
    assert account["attributes"]["timezone"]
    assert account["attributes"]["preferred_currency"]
    sparse = get_json(emulator.url, "/api/accounts", {"fields[account]": "timezone"})["data"][0]
    assert sparse["attributes"] == {"timezone": account["attributes"]["timezone"]}
