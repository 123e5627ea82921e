"""`mutate(delete=N)`: deleted records leave the truth and every API answer at once, with what hangs
off them (memberships, events, messages, flow actions, tag links); the choice is seeded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from klaviyo_emulator.store import DELETABLE, World
from tests.emulator.helpers import CHANNELS, COLLECTIONS, assert_unique, get_json, ids, records, request, walk

ANCHOR = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _truth_ids(emu, resource: str) -> set[str]:
    return {row["id"] for row in emu.truth(resource)}


def _listed(emu, resource: str) -> list[str]:
    """Every id the API lists for a resource (campaigns and flows: all their partitions)."""
    path, _cursor, size = COLLECTIONS[resource]
    params = {"page[size]": size} if size else {}
    if resource == "campaigns":
        partitions = [{"filter": f"equals(messages.channel,'{c}'),equals(archived,{a})"}
                      for c in CHANNELS for a in ("true", "false")]
    elif resource == "flows":
        partitions = [{"filter": f"equals(archived,{a})"} for a in ("true", "false")]
    else:
        partitions = [{}]
    return [rid for extra in partitions for rid in ids(records(walk(emu.url, path, params | extra)))]


def _event_profiles(emu) -> dict[str, str]:
    pages = walk(emu.url, "/api/events", {"page[size]": 1000})
    return {e["id"]: e["relationships"]["profile"]["data"]["id"] for e in records(pages)}


def _members(emu, kind: str, group_id: str) -> set[str]:
    return set(ids(records(walk(emu.url, f"/api/{kind}/{group_id}/profiles", {"page[size]": 100}))))


@pytest.mark.parametrize("resource", DELETABLE)
def test_deleted_records_leave_the_truth_and_the_api_together(fresh_emulator, resource):
    before = _truth_ids(fresh_emulator, resource)
    result = fresh_emulator.mutate(resource, delete=2)
    deleted = result["deleted"]
    assert len(deleted) == len(set(deleted)) == 2
    assert set(deleted) <= before
    assert result["added"] == result["updated"] == result["archived"] == []
    after = _truth_ids(fresh_emulator, resource)
    assert after == before - set(deleted)
    listed = _listed(fresh_emulator, resource)
    assert_unique(listed)
    assert set(listed) == after


def test_the_deleted_ids_are_chosen_by_the_seed():
    def deleted(seed: int) -> list[str]:
        world = World(seed, "tiny", ANCHOR)
        world.mutate("lists", update=1)  # the choice depends on the mutations before it too
        return world.mutate("profiles", delete=5)["deleted"] + world.mutate("campaigns", delete=2)["deleted"]

    assert deleted(3) == deleted(3)
    assert deleted(3) != deleted(4)


def test_a_deleted_profile_leaves_its_lists_segments_and_events(fresh_emulator):
    lists_before = fresh_emulator.truth("list-memberships")
    segments_before = fresh_emulator.truth("segment-memberships")
    events_before = _event_profiles(fresh_emulator)
    gone = set(fresh_emulator.mutate("profiles", delete=12)["deleted"])
    assert any(m["profile_id"] in gone for m in lists_before), "precondition: a deleted profile was on a list"
    assert any(m["profile_id"] in gone for m in segments_before)
    assert any(profile in gone for profile in events_before.values())

    # Memberships: exactly the deleted profiles' go; nobody else's move.
    assert fresh_emulator.truth("list-memberships") == [
        m for m in lists_before if m["profile_id"] not in gone
    ]
    assert fresh_emulator.truth("segment-memberships") == [
        m for m in segments_before if m["profile_id"] not in gone
    ]
    touched = {m["list_id"] for m in lists_before if m["profile_id"] in gone}
    for list_id in touched:
        expected = {m["profile_id"] for m in lists_before if m["list_id"] == list_id} - gone
        assert _members(fresh_emulator, "lists", list_id) == expected
        detail = get_json(
            fresh_emulator.url, f"/api/lists/{list_id}", {"additional-fields[list]": "profile_count"}
        )
        assert detail["data"]["attributes"]["profile_count"] == len(expected)

    # Events: a data-privacy deletion takes the profile's events with it.
    events_after = _event_profiles(fresh_emulator)
    assert events_after == {e: p for e, p in events_before.items() if p not in gone}
    assert set(events_after) == _truth_ids(fresh_emulator, "events")


def test_a_deleted_campaign_takes_its_messages(fresh_emulator):
    messages_before = fresh_emulator.truth("campaign-messages")
    gone = set(fresh_emulator.mutate("campaigns", delete=3)["deleted"])
    doomed = [m["id"] for m in messages_before if m["campaign_id"] in gone]
    assert doomed
    assert fresh_emulator.truth("campaign-messages") == [m for m in messages_before if m["id"] not in doomed]
    for campaign_id in gone:
        assert request(fresh_emulator.url, f"/api/campaigns/{campaign_id}").status == 404
        assert request(fresh_emulator.url, f"/api/campaigns/{campaign_id}/campaign-messages").status == 404
    for message_id in doomed:
        assert request(fresh_emulator.url, f"/api/campaign-messages/{message_id}").status == 404


def test_a_deleted_flow_takes_its_actions_and_their_messages(fresh_emulator):
    actions_before = fresh_emulator.truth("flow-actions")
    messages_before = fresh_emulator.truth("flow-messages")
    gone = set(fresh_emulator.mutate("flows", delete=2)["deleted"])
    actions_gone = {a["id"] for a in actions_before if a["flow_id"] in gone}
    assert actions_gone
    assert fresh_emulator.truth("flow-actions") == [a for a in actions_before if a["id"] not in actions_gone]
    assert fresh_emulator.truth("flow-messages") == [
        m for m in messages_before if m["flow_action_id"] not in actions_gone
    ]
    for flow_id in gone:
        assert request(fresh_emulator.url, f"/api/flows/{flow_id}/flow-actions").status == 404


def test_a_deleted_tag_leaves_the_records_it_was_on(fresh_emulator):
    def tags_on(path: str, extra: dict[str, str]) -> dict[str, set[str]]:
        pages = walk(fresh_emulator.url, path, {"include": "tags"} | extra)
        return {r["id"]: {t["id"] for t in r["relationships"]["tags"]["data"]} for r in records(pages)}

    email = {"filter": "equals(messages.channel,'email'),equals(archived,false)"}
    lists_before, campaigns_before = tags_on("/api/lists", {}), tags_on("/api/campaigns", email)
    gone = set(fresh_emulator.mutate("tags", delete=4)["deleted"])
    assert any(tags & gone for tags in [*lists_before.values(), *campaigns_before.values()]), "precondition"
    assert tags_on("/api/lists", {}) == {rid: tags - gone for rid, tags in lists_before.items()}
    assert tags_on("/api/campaigns", email) == {rid: tags - gone for rid, tags in campaigns_before.items()}


def test_delete_over_http_returns_the_ids_and_the_next_read_sees_it(fresh_emulator):
    first = set(ids(records(walk(fresh_emulator.url, "/api/tags"))))  # now in the page cache
    resp = request(
        fresh_emulator.url, "/_emulator/mutate", method="POST", body={"resource": "tags", "delete": 3}
    )
    assert resp.status == 200
    deleted = resp.json()["deleted"]
    assert len(deleted) == 3
    assert set(deleted) <= first
    assert set(ids(records(walk(fresh_emulator.url, "/api/tags")))) == first - set(deleted)


@pytest.mark.parametrize(
    "resource", ["metrics", "events", "campaign-messages", "flow-actions", "flow-messages"]
)
def test_resources_klaviyo_does_not_let_you_delete_are_refused(fresh_emulator, resource):
    resp = request(
        fresh_emulator.url, "/_emulator/mutate", method="POST", body={"resource": resource, "delete": 1}
    )
    assert resp.status == 400
    assert "cannot be deleted" in resp.error["detail"]


@pytest.mark.parametrize("resource", ["tags", "campaigns", "lists"])
def test_ids_freed_by_a_deletion_are_never_given_to_a_new_record(fresh_emulator, resource):
    before = _truth_ids(fresh_emulator, resource)
    deleted = fresh_emulator.mutate(resource, delete=3)["deleted"]
    added = fresh_emulator.mutate(resource, add=3)["added"]
    assert not set(added) & before, "a new record took an existing or a deleted id"
    assert _truth_ids(fresh_emulator, resource) == (before - set(deleted)) | set(added)


def test_a_walk_across_a_deletion_neither_skips_nor_repeats(fresh_emulator):
    """Keyset cursors break ties by creation order, not by position: deleting records that come before
    others sharing a cursor second (an update stamps them all with the same now) moves nothing."""
    tied = set(fresh_emulator.mutate("templates", update=12)["updated"])
    params = {"sort": "-updated", "page[size]": 3}  # the tied records first, split over pages
    first = request(fresh_emulator.url, "/api/templates", params).json()
    served = ids(first["data"])
    assert set(served) <= tied
    deleted = set(fresh_emulator.mutate("templates", delete=8)["deleted"])
    rest = walk(fresh_emulator.url, first["links"]["next"])
    served += ids(records(rest))
    assert_unique(served)
    assert set(served) >= _truth_ids(fresh_emulator, "templates")
    assert tied - deleted <= set(served)


def test_a_list_added_later_starts_empty_and_moves_no_members(fresh_emulator):
    before = fresh_emulator.truth("list-memberships")
    (new_list,) = fresh_emulator.mutate("lists", add=1)["added"]
    assert fresh_emulator.truth("list-memberships") == before
    assert _members(fresh_emulator, "lists", new_list) == set()
    fresh_emulator.mutate("profiles", add=5)  # newcomers join the generated lists by the same rule
    after = fresh_emulator.truth("list-memberships")
    assert [m for m in after if m in before] == before
    assert all(m["list_id"] != new_list for m in after)
