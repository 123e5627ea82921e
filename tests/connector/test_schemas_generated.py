"""The packaged stream schemas are exactly what tools/generate_schemas.py makes of the OpenAPI spec."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from source_klaviyo import hooks
from source_klaviyo.schemas import STREAM_SCHEMAS, load_schema
from source_klaviyo.streams import STREAMS, STREAMS_BY_NAME, Stream
from tests.tools import load_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = REPO_ROOT / "src" / "source_klaviyo" / "schemas"
# The repository's reduced OpenAPI description (tools/derive_reference.py); never read from outside.
OPENAPI_SPEC = REPO_ROOT / "reference" / "klaviyo-openapi" / "stable.json"



def top_level_cursor(stream: Stream) -> str | None:
    """The date-time a record carries at its top level: the lifted cursor (the declaration's, or its
    hook's), or the attribute a hand-shaped record is ranged by (a membership's join time)."""
    hook = stream.hook
    return stream.lifted or (hook.cursor if isinstance(hook, hooks.IncludedAsRecords) else None) \
        or stream.split_by


def is_hand_shaped(stream: Stream) -> bool:
    """The API has no resource for the record: a membership, or a report's flattened results."""
    return isinstance(stream.hook, hooks.Membership) or stream.report is not None


def parent_field(stream: Stream) -> str | None:
    """The id of the record's parent the connector adds at its top level."""
    hook = stream.hook
    return hook.parent_field if isinstance(hook, hooks.IncludedAsRecords) else \
        stream.parent.key if stream.parent else None


def names(feature) -> list[str]:
    return sorted(stream.name for stream in STREAMS if feature(stream))


JSON_API_STREAMS = names(lambda stream: not is_hand_shaped(stream))


@cache
def _spec() -> Mapping[str, Any]:
    return json.loads(OPENAPI_SPEC.read_text(encoding="utf-8"))


def at(schema: Mapping[str, Any], dotted: str) -> Mapping[str, Any]:
    for name in dotted.split("."):
        schema = schema["properties"][name]
    return schema


def types(schema: Mapping[str, Any]) -> set[str]:
    kind = schema["type"]
    return {kind} if isinstance(kind, str) else set(kind)


def keywords(schema: Mapping[str, Any]) -> Iterator[str]:
    """Every JSON Schema keyword used anywhere in ``schema`` (property names excluded)."""
    for key, value in schema.items():
        yield key
        if key == "properties":
            for prop in value.values():
                yield from keywords(prop)
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            yield from keywords(value)


# --------------------------------------------------------------------------- generation


def test_committed_schemas_are_byte_identical_to_a_fresh_generation() -> None:
    generated = load_tool("generate_schemas").render_all(OPENAPI_SPEC)
    committed = {path.name: path.read_text(encoding="utf-8") for path in SCHEMA_DIR.glob("*.json")}
    assert sorted(committed) == sorted(generated), "schema files differ from the stream table"
    drifted = [name for name in generated if committed[name] != generated[name]]
    assert not drifted, f"regenerate with ./dev run python tools/generate_schemas.py: {drifted}"


def test_every_declared_stream_has_a_generated_schema_and_nothing_else_does() -> None:
    assert set(STREAM_SCHEMAS) == {stream.name for stream in STREAMS}
    assert {path.stem for path in SCHEMA_DIR.glob("*.json")} == set(STREAM_SCHEMAS)


def test_files_are_written_deterministically() -> None:
    for stream in STREAM_SCHEMAS:
        text = (SCHEMA_DIR / f"{stream}.json").read_text(encoding="utf-8")
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- shape of every schema


@pytest.mark.parametrize("stream", names(lambda stream: True))
def test_schema_is_valid_draft7_and_tolerant_at_the_top(stream: str) -> None:
    schema = load_schema(stream)
    Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is True
    used = set(keywords(schema))
    assert "required" not in used, "no required lists: destinations dislike strict schemas"
    assert "enum" not in used, "enums are dropped so new API values never break a sync"
    assert used <= {"$schema", "x-source", "type", "format", "properties", "items", "additionalProperties"}
    assert schema["x-source"]["revision"] == "2026-07-15"


@pytest.mark.parametrize("stream", names(top_level_cursor))
def test_cursor_is_a_top_level_datetime(stream: str) -> None:
    cursor = load_schema(stream)["properties"][top_level_cursor(STREAMS_BY_NAME[stream])]
    assert cursor["format"] == "date-time"
    assert "string" in types(cursor)


@pytest.mark.parametrize("stream", JSON_API_STREAMS)
def test_json_api_record_keeps_the_resource_shape(stream: str) -> None:
    properties = load_schema(stream)["properties"]
    assert {"type", "id", "attributes", "links"} <= set(properties)
    assert "string" in types(properties["id"])
    cursor = top_level_cursor(STREAMS_BY_NAME[stream])
    if cursor:
        lifted = {key: value for key, value in properties[cursor].items() if key != "format"}
        original = {
            key: value for key, value in at(properties["attributes"], cursor).items() if key != "format"
        }
        assert lifted == original, "the top-level cursor is a copy of the attribute"


def relationships_data(schema: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(name, `data` schema) of every relationship in a schema, embedded resources included."""
    properties = schema.get("properties", {})
    for name, relationship in properties.get("relationships", {}).get("properties", {}).items():
        if "data" in relationship.get("properties", {}):
            yield name, relationship["properties"]["data"]
    for child in properties.values():
        yield from relationships_data(child)
    if isinstance(schema.get("items"), Mapping):
        yield from relationships_data(schema["items"])


@pytest.mark.parametrize("stream", JSON_API_STREAMS)
def test_a_to_one_relationship_may_be_null(stream: str) -> None:
    """Klaviyo writes `"data": null` for a relationship without a target (a campaign message's
    `template` or `image`; the emulator's quirk `null_relationship_data`) where the spec has an object."""
    to_one = [(name, data) for name, data in relationships_data(load_schema(stream))
              if "object" in types(data)]
    assert all("null" in types(data) for _, data in to_one), to_one


@pytest.mark.parametrize("stream", names(parent_field))
def test_child_streams_carry_their_parent_id(stream: str) -> None:
    assert load_schema(stream)["properties"][parent_field(STREAMS_BY_NAME[stream])] == {"type": "string"}


def test_load_schema_returns_a_private_copy_and_rejects_unknown_streams() -> None:
    first = load_schema("tags")
    first["properties"].clear()
    assert load_schema("tags")["properties"]
    with pytest.raises(KeyError, match="no schema for stream"):
        load_schema("nope")


# --------------------------------------------------------------------------- spot checks against the spec


def test_profiles_expose_the_singular_suppression_of_the_api() -> None:
    for stream in ("profiles", "global_exclusions"):
        marketing = at(load_schema(stream), "attributes.subscriptions.email.marketing")
        assert "array" in types(marketing["properties"]["suppression"])
        assert at(marketing["properties"]["suppression"]["items"], "timestamp")["format"] == "date-time"
        assert "suppressions" not in marketing["properties"]
        assert "predictive_analytics" in at(load_schema(stream), "attributes")["properties"]


def test_profile_latitude_admits_what_the_spec_admits() -> None:
    raw = _spec()["components"]["schemas"]["ProfileLocation"]["properties"]["latitude"]
    spec_types = {branch["type"] for branch in raw["oneOf"]} | ({"null"} if raw.get("nullable") else set())
    assert spec_types == {"number", "string", "null"}
    for axis in ("latitude", "longitude"):
        assert types(at(load_schema("profiles"), f"attributes.location.{axis}")) == spec_types


def test_event_timestamp_is_an_integer_and_properties_are_free_form() -> None:
    attributes = at(load_schema("events"), "attributes")
    assert types(attributes["properties"]["timestamp"]) == {"integer", "null"}
    assert attributes["properties"]["event_properties"]["additionalProperties"] is True


def test_events_detailed_merges_the_metric_into_the_relationship() -> None:
    data = at(load_schema("events_detailed"), "relationships.metric.data")
    assert {"type", "id", "name", "created", "updated", "integration"} <= set(data["properties"])
    assert data["properties"]["integration"]["additionalProperties"] is True
    assert "array" in types(at(load_schema("events_detailed"), "relationships.attributions.data"))
    assert "name" not in at(load_schema("events"), "relationships.metric.data")["properties"]


def test_campaigns_have_no_attributes_removed_by_the_api() -> None:
    attributes = at(load_schema("campaigns"), "attributes")["properties"]
    assert "message" not in attributes
    assert "channel" not in attributes
    # send_strategy is a union by method in the spec; its branches merge into one object.
    assert {"method", "datetime", "date", "throttle_percentage", "options"} <= set(
        attributes["send_strategy"]["properties"]
    )


def test_campaigns_detailed_embeds_full_campaign_messages() -> None:
    message = load_schema("campaigns_detailed")["properties"]["campaign_messages"]["items"]
    assert set(message["properties"]) == {"type", "id", "attributes", "relationships", "links"}
    assert message["properties"]["attributes"] == at(load_schema("campaign_messages"), "attributes")
    # definition is a union by channel in the spec: email and sms content fields both appear.
    assert {"subject", "body", "media_url"} <= set(at(message, "attributes.definition.content")["properties"])


def test_profile_count_only_on_lists_detailed() -> None:
    assert "profile_count" in at(load_schema("lists_detailed"), "attributes")["properties"]
    assert "profile_count" not in at(load_schema("lists"), "attributes")["properties"]


def test_templates_omit_the_definition_they_do_not_request() -> None:
    assert "definition" not in at(load_schema("email_templates"), "attributes")["properties"]


@pytest.mark.parametrize("stream", names(lambda stream: isinstance(stream.hook, hooks.Membership)))
def test_memberships_are_flat_with_the_join_time(stream: str) -> None:
    group = parent_field(STREAMS_BY_NAME[stream])
    assert load_schema(stream)["properties"] == {
        group: {"type": "string"},
        "profile_id": {"type": "string"},
        "joined_group_at": {"type": "string", "format": "date-time"},
    }


@pytest.mark.parametrize("stream", names(lambda stream: stream.report is not None))
def test_report_statistics_are_the_spec_enum(stream: str) -> None:
    declared = STREAMS_BY_NAME[stream]
    assert declared.report is not None
    report = declared.report
    groupings = set(report.groupings)
    components = _spec()["components"]["schemas"]
    body = _spec()["paths"][declared.path]["post"]["requestBody"]["content"]["application/vnd.api+json"]
    attributes = components[ref_name(body["schema"])]["properties"]["data"]
    attributes = components[ref_name(attributes)]["properties"]["attributes"]
    statistics = set(attributes["properties"]["statistics"]["items"]["enum"])
    properties = load_schema(stream)["properties"]
    assert set(properties["statistics"]["properties"]) == statistics
    assert all(
        stat == {"type": ["number", "null"]} for stat in properties["statistics"]["properties"].values()
    )
    if report.group_by:  # the groupings are the request's to name; else the API's (segment reports)
        assert groupings <= set(attributes["properties"]["group_by"]["items"]["enum"])
    assert ("conversion_metric_id" in attributes["properties"]) == report.conversion_metric
    metric = {"conversion_metric_id"} if report.conversion_metric else set()
    assert set(properties) == {"date", "statistics"} | metric | groupings
    assert properties["date"] == {"type": "string", "format": "date-time"}


# ------------------------------------------------------------------------ records built from the spec's types

def ref_name(node: Mapping[str, Any]) -> str:
    return node["$ref"].rsplit("/", 1)[-1]


def response_item(path: str) -> Mapping[str, Any]:
    """The schema of a resource in the `data` of a GET to `path`."""
    response = _spec()["paths"][path]["get"]["responses"]["200"]["content"]["application/vnd.api+json"]
    data = _spec()["components"]["schemas"][ref_name(response["schema"])]["properties"]["data"]
    return data.get("items", data)


def included_component(path: str, type_: str) -> str:
    """The component of the resources of `type_` a GET to `path` includes."""
    components = _spec()["components"]["schemas"]
    response = _spec()["paths"][path]["get"]["responses"]["200"]["content"]["application/vnd.api+json"]
    included = components[ref_name(response["schema"])]["properties"]["included"]["items"]["oneOf"]
    for branch in included:
        type_enum = components[ref_name(components[ref_name(branch)]["properties"]["type"])]["enum"]
        if type_enum == [type_]:
            return ref_name(branch)
    raise AssertionError(f"{path} includes no {type_}")


def resource_and_overlays(stream: Stream) -> tuple[str, dict[str, Any]]:
    """The component of the stream's record, and the attributes the spec keeps outside it (the
    additional-fields overlays), by name."""
    hook = stream.hook
    if isinstance(hook, hooks.IncludedAsRecords):
        return included_component(stream.path, hook.included_type), {}
    item = response_item(stream.detail.path if stream.detail else stream.path)
    if "$ref" in item:
        return ref_name(item), {}
    (resource,) = [ref_name(part) for part in item["allOf"] if "$ref" in part]
    overlays = {name: node for part in item["allOf"] if "$ref" not in part
                for name, node in part["properties"]["attributes"]["properties"].items()}
    return resource, overlays


def requested_fields(stream: Stream) -> set[str]:
    """The additional fields a record of the stream may carry: those any stream of its endpoint asks
    for (one endpoint publishes one shape) and its detail request's."""
    shared = {field for other in STREAMS if other.path == stream.path for field in other.additional_fields}
    return shared | set(stream.detail.fields if stream.detail else ())


PLACEHOLDERS = {"string": "text", "integer": 7, "number": 2.5, "boolean": True}
DATETIME = "2026-07-01T12:00:00+00:00"


def value_of(node: Mapping[str, Any], stack: tuple[str, ...] = ()) -> Any:
    """A value of the type the spec declares, with every property it declares (first branch of each
    union, first member of an enum; response-only, so ``writeOnly`` fields are left out). The
    reduced spec has no examples (structure only), so nothing here depends on Klaviyo's sample data."""
    components = _spec()["components"]["schemas"]
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return None if name in stack else value_of(components[name], (*stack, name))
    if node.get("allOf"):
        parts = [value_of(part, stack) for part in node["allOf"]]
        return {key: value for part in parts if isinstance(part, dict) for key, value in part.items()}
    for keyword in ("oneOf", "anyOf"):
        for branch in node.get(keyword, []):
            value = value_of(branch, stack)
            if value is not None:
                return value
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        values = {
            name: value_of(prop, stack)
            for name, prop in node.get("properties", {}).items()
            if not prop.get("writeOnly")
        }
        return {name: value for name, value in values.items() if value is not None}
    if kind == "array":
        item = value_of(node.get("items", {}), stack)
        return [] if item is None else [item]
    if kind == "string" and node.get("format") in ("date-time", "date"):
        return DATETIME if node["format"] == "date-time" else DATETIME[:10]
    return node["enum"][0] if "enum" in node else PLACEHOLDERS.get(kind)


def closed(schema: Any) -> Any:
    """The schema with every described object closed, so an undescribed key fails validation."""
    if isinstance(schema, dict):
        out = {key: closed(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            out["additionalProperties"] = False
        return out
    return schema


def _spec_record(name: str) -> dict[str, Any]:
    """A record of the stream as the connector emits it, every value typed as the spec declares."""
    stream = STREAMS_BY_NAME[name]
    components = _spec()["components"]["schemas"]
    resource, overlays = resource_and_overlays(stream)
    record = value_of(components[resource])
    for field in requested_fields(stream) & set(overlays):
        record["attributes"][field] = value_of(overlays[field])
    hook = stream.hook
    if isinstance(hook, hooks.MergeIncluded):
        included = value_of(components[included_component(stream.path, hook.included_type)])
        record["relationships"][hook.relationship]["data"].update(included["attributes"])
    if isinstance(hook, hooks.EmbedIncluded):
        record[hook.key] = [value_of(components[included_component(stream.path, hook.included_type)])]
    if parent_field(stream):
        record[parent_field(stream)] = "parent-1"
    cursor = top_level_cursor(stream)
    if cursor:
        record[cursor] = record["attributes"][cursor]
    return record


@pytest.mark.parametrize("stream", JSON_API_STREAMS)
def test_a_record_with_every_attribute_the_spec_declares_validates(stream: str) -> None:
    record = _spec_record(stream)
    assert record["attributes"], f"the spec declares no attributes for {stream}"
    schema = closed(load_schema(stream))
    schema["additionalProperties"] = False  # the record has only the keys we emit
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in Draft7Validator(schema).iter_errors(record)
    ]
    assert not errors, errors


def test_the_spec_record_check_catches_a_wrong_type() -> None:
    record = copy.deepcopy(_spec_record("events"))
    assert Draft7Validator(load_schema("events")).is_valid(record)
    record["attributes"]["timestamp"] = "not-an-integer"
    assert not Draft7Validator(load_schema("events")).is_valid(record)


def test_documented_live_shapes_validate() -> None:
    """Values as the live API sends them (klaviyo-api.md §11), including a string latitude."""
    profile = {
        "type": "profile",
        "id": "01HQ5Z8K3W2M6N7P8Q9R0S1T2V",
        "attributes": {
            "email": "sarah.mason@example.com",
            "image": None,
            "updated": "2026-06-30T08:15:44+00:00",
            "location": {"latitude": "40.7527", "longitude": -73.9772, "ip": "203.0.113.7"},
            "properties": {"loyalty_tier": "gold", "shoe_size": 9},
            "subscriptions": {
                "email": {
                    "marketing": {
                        "can_receive_email_marketing": True,
                        "consent": "SUBSCRIBED",
                        "consent_timestamp": None,
                        "suppression": [{"reason": "HARD_BOUNCE", "timestamp": "2024-03-02T14:21:09+00:00"}],
                        "list_suppressions": [],
                    }
                }
            },
            "predictive_analytics": {"historic_number_of_orders": 2, "ranked_channel_affinity": ["email"]},
        },
        "relationships": {"push-tokens": {"links": {"self": "https://a/x", "related": "https://a/y"}}},
        "links": {"self": "https://a.klaviyo.com/api/profiles/01HQ5Z8K3W2M6N7P8Q9R0S1T2V/"},
        "updated": "2026-06-30T08:15:44+00:00",
    }
    campaign_strategy = {"method": "smart_send_time", "date": "2026-07-01"}
    report = {
        "date": "2026-06-01T00:00:00+00:00",
        "campaign_id": "01J1ABCDXYZ0123456789ABCDE",
        "campaign_message_id": "01J1ABCE0MSG0123456789ABCD",
        "send_channel": "email",
        "conversion_metric_id": "RESQ6t",
        "statistics": {"opens": 5120, "open_rate": 0.34, "conversion_value": None},
    }
    for stream, record in (
        ("profiles", profile),
        ("global_exclusions", profile),
        ("campaign_values_reports", report),
    ):
        errors = [e.message for e in Draft7Validator(closed(load_schema(stream))).iter_errors(record)]
        assert not errors, (stream, errors)
    send_strategy = at(load_schema("campaigns"), "attributes.send_strategy")
    assert Draft7Validator(closed(send_strategy)).is_valid(campaign_strategy)
