"""The spec validator itself: it must accept what the spec allows and reject what it does not."""

from __future__ import annotations

import pytest

from tests.openapi_validation import SpecValidationError, nullable_to_json_schema

ERROR = {"errors": [{"id": "e1", "status": 400, "code": "invalid", "title": "Invalid input.", "detail": "x"}]}


def _profile(**attributes):
    return {
        "data": [{"type": "profile", "id": "P1", "attributes": attributes, "links": {"self": "http://h/p"}}],
        "links": {"self": "http://h/api/profiles", "next": None},
    }


def test_nullable_becomes_a_null_type_and_enum_member():
    assert nullable_to_json_schema({"type": "string", "enum": ["a"], "nullable": True}) == {
        "type": ["string", "null"],
        "enum": ["a", None],
    }


def test_nullable_ref_and_oneof_are_wrapped_in_anyof_with_null():
    assert nullable_to_json_schema({"$ref": "#/x", "nullable": True}) == {
        "anyOf": [{"$ref": "#/x"}, {"type": "null"}]
    }
    one_of = {"oneOf": [{"type": "string"}, {"type": "number"}], "nullable": True, "description": "d"}
    assert nullable_to_json_schema(one_of) == {
        "description": "d",
        "anyOf": [{"oneOf": [{"type": "string"}, {"type": "number"}]}, {"type": "null"}],
    }


def test_non_nullable_schemas_are_unchanged():
    schema = {"type": "object", "properties": {"a": {"type": "integer", "nullable": False}}}
    assert nullable_to_json_schema(schema) == {"type": "object", "properties": {"a": {"type": "integer"}}}


@pytest.mark.parametrize(
    ("method", "path", "operation_id"),
    [
        ("GET", "/api/profiles", "get_profiles"),
        ("GET", "/api/profiles/", "get_profiles"),
        (
            "GET",
            "https://a.klaviyo.com/api/lists/Y6nRLr?additional-fields%5Blist%5D=profile_count",
            "get_list",
        ),
        ("GET", "/api/lists/Y6nRLr/profiles", "get_profiles_for_list"),
        ("GET", "/api/segments/S1/profiles", "get_profiles_for_segment"),
        ("GET", "/api/campaigns/C1/relationships/campaign-messages", "get_message_ids_for_campaign"),
        ("GET", "/api/campaigns/C1/campaign-messages", "get_messages_for_campaign"),
        ("GET", "/api/campaign-messages/M1", "get_campaign_message"),
        ("GET", "/api/flows/F1/flow-actions", "get_actions_for_flow"),
        ("GET", "/api/flow-actions/A1/flow-messages", "get_flow_action_messages"),
        ("POST", "/api/campaign-values-reports", "query_campaign_values"),
        ("POST", "/api/flow-series-reports", "query_flow_series"),
        ("POST", "/api/flow-values-reports", "query_flow_values"),
        ("POST", "/api/segment-values-reports", "query_segment_values"),
        ("POST", "/api/segment-series-reports", "query_segment_series"),
        ("POST", "/api/form-values-reports", "query_form_values"),
        ("POST", "/api/form-series-reports", "query_form_series"),
    ],
)
def test_concrete_paths_map_to_their_operation(spec, method, path, operation_id):
    assert spec.operation_id_for(method, path) == operation_id


def test_unknown_path_has_no_operation(spec):
    with pytest.raises(KeyError):
        spec.operation_id_for("GET", "/api/no-such-thing/1/2/3")


def test_nullable_attribute_accepts_null_and_type_mismatch_is_reported(spec):
    spec.validate("get_profiles", 200, _profile(email=None, created="2024-01-01T00:00:00+00:00"))
    problems = spec.errors("get_profiles", 200, _profile(email=5))
    assert any("attributes.email" in p for p in problems), problems


def test_date_time_format_is_checked(spec):
    problems = spec.errors("get_profiles", 200, _profile(created="yesterday"))
    assert any("date-time" in p for p in problems), problems
    spec.validate("get_profiles", 200, _profile(created="2024-01-01T00:00:00Z"))


def test_missing_required_member_fails(spec):
    with pytest.raises(SpecValidationError, match="'data' is a required property"):
        spec.validate("get_events", 200, {"links": {"self": "x"}})


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 502, 503, 504])
def test_error_statuses_resolve_to_the_shared_error_schemas(spec, status):
    spec.validate("get_profiles", status, ERROR)
    bad = {"errors": [{"id": "e1", "code": "x"}]}
    assert spec.errors("get_profiles", status, bad)


def test_request_bodies_are_validated(spec):
    with pytest.raises(SpecValidationError):
        spec.validate_request("query_campaign_values", {"data": {"type": "campaign-values-report"}})


def test_overlapping_one_of_branches_accept_a_body_matching_several(spec):
    body = {
        "data": {
            "type": "campaign",
            "id": "C1",
            "attributes": {"send_options": {"use_smart_sending": True}},
            "links": {"self": "http://h/c"},
        }
    }
    assert not any("send_options" in p for p in spec.errors("get_campaign", 200, body))
    body["data"]["attributes"]["send_options"] = {"use_smart_sending": "yes"}
    assert any("send_options" in p for p in spec.errors("get_campaign", 200, body))
