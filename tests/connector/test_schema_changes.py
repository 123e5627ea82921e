"""The schema change log: committed data equals the tool's computation, and says what we claim.

The 3.0.0 breaking set is whatever the diff of the 2.x reference schemas against our generated
schemas says; the tests pin the reasons the migration guide names, and that `metadata.yaml`
declares exactly that set.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from source_klaviyo.streams import STREAMS_BY_NAME
from tests.tools import load_tool

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "src" / "source_klaviyo" / "schema_changes.json"
METADATA = REPO / "metadata.yaml"


tool = load_tool("schema_changelog")


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads(COMMITTED.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def v3(committed) -> dict:
    return committed["versions"]["3.0.0"]


def test_committed_file_is_what_the_tool_computes():
    assert COMMITTED.read_text(encoding="utf-8") == tool.render(tool.compute(tool.DEFAULT_REFERENCE))


def test_breaking_set_is_the_streams_with_removed_renamed_or_retyped_fields_or_a_new_shape(v3):
    computed = tool.compute(tool.DEFAULT_REFERENCE)["versions"]["3.0.0"]
    from_diffs = sorted(
        stream for stream, entry in computed["streams"].items()
        for changes in entry.get("since", {}).values()
        if changes["removed"] or changes["renamed"] or changes["retyped"]
    )
    assert v3["breaking_streams"] == sorted(set(from_diffs) | set(tool.RESTRUCTURED_IN_TARGET))
    assert {"campaigns", "global_exclusions", "profiles"} <= set(v3["breaking_streams"])


def test_profiles_lists_the_suppression_rename(v3):
    renamed = v3["streams"]["profiles"]["since"]["2.13.1"]["renamed"]
    assert {"from": "attributes.subscriptions.email.marketing.suppressions",
            "to": "attributes.subscriptions.email.marketing.suppression"} in [
        {"from": item["from"], "to": item["to"]} for item in renamed
    ]


def test_global_exclusions_loses_plural_suppressions_too(v3):
    renamed = [item["from"] for item in v3["streams"]["global_exclusions"]["since"]["2.13.1"]["renamed"]]
    assert "attributes.subscriptions.email.marketing.suppressions" in renamed


@pytest.mark.parametrize("reference", ["2.1.0", "2.13.1"])
def test_campaigns_lose_message_and_channel(v3, reference):
    removed = [item["path"] for item in v3["streams"]["campaigns"]["since"][reference]["removed"]]
    assert "attributes.message" in removed
    assert "attributes.channel" in removed


def test_streams_new_in_3_0_are_added_not_breaking(v3):
    new = sorted(set(STREAMS_BY_NAME) - set(tool.STREAM_INTRODUCED))  # declared, and in no 2.x release
    assert new
    for stream in new:
        assert v3["streams"][stream]["status"] == "added"
        assert v3["streams"][stream]["breaking"] is False
        assert stream in v3["added_streams"]
    assert not set(v3["added_streams"]) & set(v3["breaking_streams"])


def test_events_stays_compatible(v3):
    assert v3["streams"]["events"]["breaking"] is False


def test_historical_breaks_are_the_documented_facts(committed):
    assert committed["versions"]["1.0.0"]["breaking_streams"] == ["events"]
    # not the stream table: the streams 2.0.0 moved to the JSON:API (a fact of that release)
    assert committed["versions"]["2.0.0"]["breaking_streams"] == [
        "campaigns", "email_templates", "events", "flows", "global_exclusions", "lists", "metrics",
    ]


# ------------------------------------------------------------------ diff rules, on small schemas


def _obj(**properties):
    return {"type": ["null", "object"], "properties": properties}


def test_adding_null_is_not_breaking_but_a_new_type_is():
    old = tool.flatten(_obj(a={"type": "integer"}, b={"type": "integer"}, c={"type": "string"}))
    new = tool.flatten(_obj(a={"type": ["null", "integer"]}, b={"type": "number"},
                            c={"type": "string", "format": "date-time"}))
    changes = tool.diff("x", old, new)
    assert [item["path"] for item in changes["retyped"]] == ["b", "c"]
    assert changes["retyped"][1]["to"] == ["timestamp_with_timezone"]


def test_subtrees_are_reported_at_their_top():
    old = tool.flatten(_obj(gone=_obj(x={"type": "string"}, y={"type": "string"})))
    new = tool.flatten(_obj(fresh=_obj(z={"type": "string"})))
    changes = tool.diff("x", old, new)
    assert [item["path"] for item in changes["removed"]] == ["gone"]
    assert changes["added"] == ["fresh"]


def test_object_to_array_is_one_retype_with_its_children():
    old = tool.flatten(_obj(data=_obj(id={"type": "string"})))
    new = tool.flatten(_obj(data={"type": "array", "items": _obj(id={"type": "string"})}))
    changes = tool.diff("x", old, new)
    assert [item["path"] for item in changes["retyped"]] == ["data"]
    assert changes["removed"] == []
    assert changes["added"] == []


# ------------------------------------------------------------------ metadata.yaml agrees


def _breaking_scopes(text: str) -> dict[str, list[str]]:
    """version -> impactedScopes, from the `releases.breakingChanges` block (no YAML library needed)."""
    scopes: dict[str, list[str]] = {}
    version = None
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^\s+\"?(\d+\.\d+\.\d+)\"?:\s*$", line)
        if match:
            version = match.group(1)
        if version and line.strip().startswith("impactedScopes:"):
            inline = line.split(":", 1)[1].strip()
            if inline.startswith("["):
                scopes[version] = [
                    name.strip().strip("\"'") for name in inline.strip("[]").split(",") if name.strip()
                ]
            else:
                names = []
                for following in lines[index + 1:]:
                    item = re.match(r"^\s+-\s+\"?([a-z_]+)\"?\s*$", following)
                    if not item:
                        break
                    names.append(item.group(1))
                scopes[version] = names
    return scopes


def test_metadata_declares_exactly_the_computed_breaking_streams(committed):
    text = METADATA.read_text(encoding="utf-8")
    scopes = _breaking_scopes(text)
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        assert sorted(scopes[version]) == committed["versions"][version]["breaking_streams"], version
    assert "dockerImageTag: 3.0.0" in text
    assert "definitionId: 95e8cffd-b8c4-4039-968e-d32fb4a69bde" in text
