"""Mutations (in-process and over HTTP) change the truth and the API answers exactly alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.emulator.helpers import (
    COLLECTIONS,
    assert_unique,
    fmt_dt,
    get_json,
    ids,
    parse_dt,
    records,
    request,
    walk,
)


def _ids(entries) -> list[str]:
    return [e if isinstance(e, str) else e["id"] for e in entries]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _truth_by_id(emu, resource):
    return {t["id"]: t for t in emu.truth(resource)}


@pytest.mark.parametrize("resource", ["profiles", "lists", "templates", "flows", "segments"])
def test_add_and_update_move_truth_and_api_together(fresh_emulator, resource):
    path, cursor, size = COLLECTIONS[resource]
    before = _truth_by_id(fresh_emulator, resource)
    started = _now()
    result = fresh_emulator.mutate(resource, add=2, update=3)
    added, updated = _ids(result["added"]), _ids(result["updated"])
    assert len(added) == 2
    assert len(updated) == 3
    assert not set(added) & set(before), "added ids are new"
    assert set(updated) <= set(before)
    after = _truth_by_id(fresh_emulator, resource)
    assert set(after) == set(before) | set(added)
    for rid in updated:
        assert parse_dt(after[rid][cursor]) >= started
        assert parse_dt(after[rid][cursor]) >= parse_dt(before[rid][cursor])
    for rid in added:
        assert parse_dt(after[rid][cursor]) >= started

    partitions = (
        [{"filter": f"equals(archived,{a})"} for a in ("true", "false")] if resource == "flows" else [{}]
    )
    listed = [
        r
        for extra in partitions
        for r in records(walk(fresh_emulator.url, path, {"page[size]": size} | extra))
    ]
    assert_unique(ids(listed))
    assert set(ids(listed)) == set(after)
    by_id = {r["id"]: r for r in listed}
    for rid in updated + added:
        assert by_id[rid]["attributes"][cursor] == after[rid][cursor]


def test_incremental_window_after_a_mutation_returns_what_changed(fresh_emulator):
    since = _now() - timedelta(seconds=1)  # profiles allow only greater-than: step back one second
    result = fresh_emulator.mutate("profiles", add=1, update=4)
    changed = set(_ids(result["added"])) | set(_ids(result["updated"]))
    flt = f"greater-than(updated,{fmt_dt(since)})"
    got = set(ids(records(walk(fresh_emulator.url, "/api/profiles", {"filter": flt, "page[size]": 100}))))
    assert got == {t["id"] for t in fresh_emulator.truth("profiles") if parse_dt(t["updated"]) > since}
    assert changed <= got


def test_added_events_appear_in_a_window_from_the_mutation_time(fresh_emulator):
    started = _now()
    result = fresh_emulator.mutate("events", add=5)
    added = set(_ids(result["added"]))
    assert len(added) == 5
    flt = f"greater-or-equal(datetime,{fmt_dt(started)})"
    got = set(ids(records(walk(fresh_emulator.url, "/api/events", {"filter": flt, "page[size]": 1000}))))
    expected = {t["id"] for t in fresh_emulator.truth("events") if parse_dt(t["datetime"]) >= started}
    assert added <= got
    assert got == expected


def _campaign_partition(emu, channel, archived):
    flt = f"equals(messages.channel,'{channel}'),equals(archived,{str(archived).lower()})"
    return set(ids(records(walk(emu.url, "/api/campaigns", {"filter": flt}))))


def test_archived_campaign_moves_between_partitions(fresh_emulator):
    before = _truth_by_id(fresh_emulator, "campaigns")
    result = fresh_emulator.mutate("campaigns", archive=1)
    (cid,) = _ids(result["archived"])
    assert before[cid]["archived"] is False
    after = _truth_by_id(fresh_emulator, "campaigns")
    assert after[cid]["archived"] is True
    channel = after[cid]["channel"]
    assert cid in _campaign_partition(fresh_emulator, channel, True)
    assert cid not in _campaign_partition(fresh_emulator, channel, False)
    detail = get_json(fresh_emulator.url, f"/api/campaigns/{cid}")["data"]["attributes"]
    assert detail["archived"] is True
    assert detail["updated_at"] == after[cid]["updated_at"]


def test_archived_flow_moves_between_partitions(fresh_emulator):
    result = fresh_emulator.mutate("flows", archive=1)
    (fid,) = _ids(result["archived"])
    archived = set(ids(records(walk(fresh_emulator.url, "/api/flows", {"filter": "equals(archived,true)"}))))
    live = set(ids(records(walk(fresh_emulator.url, "/api/flows", {"filter": "equals(archived,false)"}))))
    assert fid in archived
    assert fid not in live
    assert _truth_by_id(fresh_emulator, "flows")[fid]["archived"] is True


def test_mutate_over_http_matches_the_python_api(fresh_emulator):
    before = {t["id"] for t in fresh_emulator.truth("tags")}
    resp = request(
        fresh_emulator.url,
        "/_emulator/mutate",
        method="POST",
        body={"resource": "lists", "add": 2, "update": 1},
    )
    assert resp.status == 200
    body = resp.json()
    added = _ids(body["added"])
    assert len(added) == 2
    assert len(_ids(body["updated"])) == 1
    assert _ids(body["archived"]) == []
    assert set(added) <= {t["id"] for t in fresh_emulator.truth("lists")}
    assert {t["id"] for t in fresh_emulator.truth("tags")} == before, "other resources untouched"


def test_mutation_of_an_unknown_resource_is_rejected(fresh_emulator):
    resp = request(
        fresh_emulator.url, "/_emulator/mutate", method="POST", body={"resource": "nope", "add": 1}
    )
    assert 400 <= resp.status < 500
