"""A full walk of each collection returns exactly the records the truth endpoint says exist."""

from __future__ import annotations

import pytest

from tests.emulator.helpers import (
    CHANNELS,
    COLLECTIONS,
    assert_unique,
    get_json,
    ids,
    memberships,
    records,
    walk,
)

SIMPLE = ["profiles", "events", "metrics", "templates", "lists", "segments", "tags", "coupons"]


@pytest.mark.parametrize("resource", SIMPLE)
def test_full_walk_equals_truth(emulator, resource):
    path, cursor, max_size = COLLECTIONS[resource]
    params = {"page[size]": max_size} if max_size else {}
    got = ids(records(walk(emulator.url, path, params)))
    truth = emulator.truth(resource)
    assert truth, f"the tiny dataset has {resource}"
    assert_unique(got)
    assert set(got) == {t["id"] for t in truth}
    if cursor:
        assert all(cursor in t for t in truth), f"truth of {resource} carries {cursor}"


def test_truth_over_http_equals_truth_in_process(emulator):
    body = get_json(emulator.url, "/_emulator/truth/lists")
    assert body["data"] == emulator.truth("lists")


def test_flows_archived_partitions_together_equal_truth(emulator):
    truth = emulator.truth("flows")
    parts = {
        archived: ids(records(walk(emulator.url, "/api/flows", {"filter": f"equals(archived,{archived})"})))
        for archived in ("true", "false")
    }
    assert_unique(parts["true"] + parts["false"])
    assert set(parts["true"]) == {t["id"] for t in truth if t["archived"]}
    assert set(parts["false"]) == {t["id"] for t in truth if not t["archived"]}


def test_campaign_partitions_channel_by_archived_equal_truth(emulator):
    truth = emulator.truth("campaigns")
    seen: list[str] = []
    for channel in CHANNELS:
        for archived in (True, False):
            flt = f"equals(messages.channel,'{channel}'),equals(archived,{str(archived).lower()})"
            got = ids(records(walk(emulator.url, "/api/campaigns", {"filter": flt})))
            expected = {t["id"] for t in truth if t["channel"] == channel and t["archived"] == archived}
            assert set(got) == expected, (channel, archived)
            seen += got
    assert_unique(seen)
    assert set(seen) == {t["id"] for t in truth}


def test_campaigns_without_archived_filter_exclude_archived(emulator):
    truth = emulator.truth("campaigns")
    got = ids(records(walk(emulator.url, "/api/campaigns", {"filter": "equals(messages.channel,'email')"})))
    assert set(got) == {t["id"] for t in truth if t["channel"] == "email" and not t["archived"]}


def test_campaign_messages_by_campaign_equal_truth(emulator):
    by_campaign: dict[str, set[str]] = {}
    for message in emulator.truth("campaign-messages"):
        by_campaign.setdefault(message["campaign_id"], set()).add(message["id"])
    for campaign in emulator.truth("campaigns"):
        cid = campaign["id"]
        expected = by_campaign.get(cid, set())
        got = ids(get_json(emulator.url, f"/api/campaigns/{cid}/campaign-messages")["data"])
        assert_unique(got)
        assert set(got) == expected, cid
        rel = get_json(emulator.url, f"/api/campaigns/{cid}/relationships/campaign-messages")["data"]
        assert {(r["type"], r["id"]) for r in rel} == {("campaign-message", m) for m in expected}
    for cid, expected in list(by_campaign.items())[:3]:
        for mid in expected:
            message = get_json(emulator.url, f"/api/campaign-messages/{mid}", {"include": "campaign"})
            assert message["data"]["id"] == mid
            assert message["data"]["relationships"]["campaign"]["data"]["id"] == cid
            assert [(r["type"], r["id"]) for r in message["included"]] == [("campaign", cid)]


def test_flow_actions_and_messages_by_parent_equal_truth(emulator):
    actions_by_flow: dict[str, set[str]] = {}
    for action in emulator.truth("flow-actions"):
        actions_by_flow.setdefault(action["flow_id"], set()).add(action["id"])
    messages_by_action: dict[str, set[str]] = {}
    for message in emulator.truth("flow-messages"):
        messages_by_action.setdefault(message["flow_action_id"], set()).add(message["id"])
    assert actions_by_flow
    assert messages_by_action
    for flow in emulator.truth("flows"):
        got = ids(records(walk(emulator.url, f"/api/flows/{flow['id']}/flow-actions")))
        assert_unique(got)
        assert set(got) == actions_by_flow.get(flow["id"], set())
    for action_id, expected in messages_by_action.items():
        got = ids(records(walk(emulator.url, f"/api/flow-actions/{action_id}/flow-messages")))
        assert_unique(got)
        assert set(got) == expected


@pytest.mark.parametrize("group", ["list", "segment"])
def test_group_profiles_equal_membership_truth(emulator, group):
    members = memberships(emulator.truth(f"{group}-memberships"), group)
    groups = emulator.truth(f"{group}s")
    assert any(members.get(g["id"]) for g in groups), f"some {group} has members"
    for g in groups:
        got = ids(records(walk(emulator.url, f"/api/{group}s/{g['id']}/profiles", {"page[size]": 100})))
        assert_unique(got)
        assert set(got) == members.get(g["id"], set()), g["id"]


def test_single_list_and_segment_fetch_by_id(emulator):
    for resource in ("lists", "segments", "campaigns"):
        for entry in emulator.truth(resource)[:3]:
            body = get_json(emulator.url, f"/api/{resource}/{entry['id']}")
            assert body["data"]["id"] == entry["id"]
