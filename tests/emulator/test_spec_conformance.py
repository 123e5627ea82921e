"""Every response the emulator serves — each page of each resource, each report, each error — is a
body the OpenAPI spec (revision 2026-07-15) allows for that operation and status: by default allowing
exactly the named deviations of Klaviyo's live API (`LIVE_API_DEVIATIONS`, quirks the emulator
reproduces), and with `--spec-strict` none at all."""

from __future__ import annotations

import pytest

from klaviyo_emulator.quirks import QUIRKS
from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from tests.emulator.helpers import (
    CHANNELS,
    REVISION,
    campaign_values_body,
    flow_series_body,
    flow_values_body,
    form_series_body,
    form_values_body,
    request,
    segment_series_body,
    segment_values_body,
    walk,
)
from tests.openapi_validation import LIVE_API_DEVIATIONS, OpenAPIValidator, spec_validator


@pytest.fixture(params=["quirks", "spec-strict"])
def served(request, emulator, strict_emulator) -> tuple[OpenAPIValidator, RunningEmulator]:
    """(validator, emulator): the default emulator against the spec with its named deviations, the
    --spec-strict one against the spec to the letter."""
    if request.param == "quirks":
        return spec_validator(), emulator
    return spec_validator(deviations=()), strict_emulator

PROFILE_EXTRAS = {"additional-fields[profile]": "subscriptions,predictive_analytics"}

# (case id, path, params) — every page is fetched and validated against the path's operation.
COLLECTION_CASES = [
    ("profiles", "/api/profiles", {"page[size]": 100}),
    ("profiles+additional-fields", "/api/profiles", {"page[size]": 100, **PROFILE_EXTRAS}),
    ("events+include", "/api/events", {"page[size]": 1000, "include": "metric,profile,attributions"}),
    ("metrics", "/api/metrics", {}),
    ("templates", "/api/templates", {}),
    ("flows", "/api/flows", {}),
    ("lists", "/api/lists", {}),
    ("segments", "/api/segments", {}),
    ("tags", "/api/tags", {}),
    ("coupons", "/api/coupons", {}),
    ("accounts", "/api/accounts", {}),
    ("catalog-items+include", "/api/catalog-items", {"include": "variants"}),
    ("catalog-variants", "/api/catalog-variants", {}),
    ("catalog-categories", "/api/catalog-categories", {}),
    ("forms", "/api/forms", {"page[size]": 5}),
    ("images", "/api/images", {}),
    ("reviews+include", "/api/reviews", {"include": "events"}),
    ("tag-groups", "/api/tag-groups", {"page[size]": 2}),
    ("template-universal-content", "/api/template-universal-content", {}),
    ("push-tokens+include", "/api/push-tokens", {"include": "profile"}),
    ("web-feeds", "/api/web-feeds", {}),
    ("custom-metrics+include", "/api/custom-metrics", {"include": "metrics"}),
    ("mapped-metrics+include", "/api/mapped-metrics", {"include": "custom-metric,metric"}),
    ("data-sources", "/api/data-sources", {"page[size]": 3}),
] + [
    (
        f"campaigns-{channel}-archived={archived}",
        "/api/campaigns",
        {
            "filter": f"equals(messages.channel,'{channel}'),equals(archived,{archived})",
            "include": "campaign-messages,tags",
        },
    )
    for channel in CHANNELS
    for archived in ("true", "false")
]


def _validate_pages(spec, emulator, path, params):
    pages = walk(emulator.url, path, params)
    for page in pages:
        spec.validate(spec.operation_id_for("GET", page.url), 200, page.json())
    return pages


@pytest.mark.parametrize(("case", "path", "params"), COLLECTION_CASES, ids=[c[0] for c in COLLECTION_CASES])
def test_every_page_of_every_collection_matches_the_spec(served, case, path, params):
    spec, emulator = served
    pages = _validate_pages(spec, emulator, path, params)
    assert pages[0].headers.get_content_type() in ("application/vnd.api+json", "application/json")


def test_campaign_detail_messages_and_relationship_ids_match_the_spec(served):
    spec, emulator = served
    campaigns = emulator.truth("campaigns")
    messages = emulator.truth("campaign-messages")
    assert campaigns
    assert messages
    for campaign in campaigns[:6]:
        cid = campaign["id"]
        _validate_pages(spec, emulator, f"/api/campaigns/{cid}", {"include": "campaign-messages,tags"})
        _validate_pages(spec, emulator, f"/api/campaigns/{cid}/campaign-messages", {})
        _validate_pages(
            spec, emulator, f"/api/campaigns/{cid}/campaign-messages", {"include": "template,image,campaign"}
        )
        _validate_pages(spec, emulator, f"/api/campaigns/{cid}/relationships/campaign-messages", {})
    for message in messages[:6]:
        _validate_pages(spec, emulator, f"/api/campaign-messages/{message['id']}", {})
        included = {"include": "template,image"}
        _validate_pages(spec, emulator, f"/api/campaign-messages/{message['id']}", included)


def test_coupon_codes_match_the_spec(served):
    spec, emulator = served
    coupons = [row["id"] for row in emulator.truth("coupons")]
    some = ",".join(f"'{coupon}'" for coupon in coupons[:4])
    pages = _validate_pages(spec, emulator, "/api/coupon-codes", {"filter": f"any(coupon.id,[{some}])",
                                                                  "include": "coupon"})
    assert any(page.json()["data"] for page in pages)


def test_flow_actions_and_flow_messages_match_the_spec(served):
    spec, emulator = served
    actions = emulator.truth("flow-actions")
    assert actions
    for flow_id in sorted({a["flow_id"] for a in actions})[:5]:
        _validate_pages(spec, emulator, f"/api/flows/{flow_id}/flow-actions", {})
    for action_id in sorted({m["flow_action_id"] for m in emulator.truth("flow-messages")})[:5]:
        _validate_pages(spec, emulator, f"/api/flow-actions/{action_id}/flow-messages", {})


def test_list_and_segment_details_and_their_profiles_match_the_spec(served):
    spec, emulator = served
    for lst in emulator.truth("lists")[:3]:
        _validate_pages(
            spec, emulator, f"/api/lists/{lst['id']}", {"additional-fields[list]": "profile_count"}
        )
        _validate_pages(spec, emulator, f"/api/lists/{lst['id']}", {})
        _validate_pages(spec, emulator, f"/api/lists/{lst['id']}/profiles", {"page[size]": 100})
    for seg in emulator.truth("segments")[:3]:
        _validate_pages(spec, emulator, f"/api/segments/{seg['id']}", {})
        _validate_pages(spec, emulator, f"/api/segments/{seg['id']}/profiles", {"page[size]": 100})


@pytest.mark.parametrize(
    ("path", "make_body"),
    [("/api/campaign-values-reports", campaign_values_body), ("/api/flow-series-reports", flow_series_body),
     ("/api/flow-values-reports", flow_values_body), ("/api/segment-values-reports", segment_values_body),
     ("/api/segment-series-reports", segment_series_body), ("/api/form-values-reports", form_values_body),
     ("/api/form-series-reports", form_series_body)],
)
def test_reports_answer_valid_requests_with_spec_bodies(served, path, make_body):
    spec, emulator = served
    body = make_body(emulator.truth("metrics")[0]["id"])
    operation = spec.operation_id_for("POST", path)
    spec.validate_request(operation, body)
    resp = request(emulator.url, path, method="POST", body=body)
    assert resp.status == 200, resp.body[:500]
    spec.validate(operation, 200, resp.json())
    assert resp.json()["data"]["attributes"]["results"], "a report over the last days has rows"


def test_segment_reports_before_klaviyo_keeps_their_data_are_a_spec_400(spec, emulator):
    body = segment_values_body()
    body["data"]["attributes"]["timeframe"] = {"start": "2023-05-01T00:00:00+00:00",
                                               "end": "2023-07-01T00:00:00+00:00"}
    resp = request(emulator.url, "/api/segment-values-reports", method="POST", body=body)
    assert resp.status == 400
    spec.validate("query_segment_values", 400, resp.json())


def test_report_without_required_attributes_is_a_spec_400(spec, emulator):
    body = {"data": {"type": "campaign-values-report", "attributes": {"statistics": ["opens"]}}}
    resp = request(emulator.url, "/api/campaign-values-reports", method="POST", body=body)
    assert resp.status == 400
    spec.validate("query_campaign_values", 400, resp.json())


ERROR_CASES = [
    (400, "/api/profiles", {"page[size]": 101}, {}),
    (400, "/api/campaigns", {}, {}),
    (400, "/api/events", {"filter": "nonsense("}, {}),
    (400, "/api/profiles", {}, {"revision": None}),
    (401, "/api/profiles", {}, {"api_key": None}),
    (401, "/api/events", {}, {"api_key": "pk_wrong"}),
    (404, "/api/campaigns/NO_SUCH_CAMPAIGN", {}, {}),
    (404, "/api/lists/NO_SUCH_LIST", {}, {}),
    (404, "/api/flows/NO_SUCH_FLOW/flow-actions", {}, {}),
]


@pytest.mark.parametrize(("status", "path", "params", "kw"), ERROR_CASES)
def test_client_errors_are_spec_error_bodies(served, status, path, params, kw):
    spec, emulator = served
    resp = request(emulator.url, path, params, **kw)
    assert resp.status == status, resp.body[:300]
    spec.validate(spec.operation_id_for("GET", path), status, resp.json())
    assert resp.error.get("status") == status


def test_forbidden_and_throttled_are_spec_error_bodies(spec):
    options = EmulatorOptions(
        seed=3, rate_limits=True, key_scopes={"pk_events_only": frozenset({"events:read"})}
    )
    with run_emulator_in_thread(options) as emu:
        forbidden = request(emu.url, "/api/profiles", api_key="pk_events_only")
        assert forbidden.status == 403
        spec.validate("get_profiles", 403, forbidden.json())
        statuses = []
        lst = emu.truth("lists")[0]["id"]
        for _ in range(6):  # XS tier: 1/s burst, so 6 back-to-back calls cannot all pass
            resp = request(emu.url, f"/api/lists/{lst}", {"additional-fields[list]": "profile_count"})
            statuses.append(resp.status)
            if resp.status == 429:
                spec.validate("get_list", 429, resp.json())
        assert 429 in statuses


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_faults_are_spec_error_bodies(spec, status):
    with run_emulator_in_thread(EmulatorOptions(seed=5, rate_limits=False, faults=f"{status}=1.0")) as emu:
        resp = request(emu.url, "/api/profiles")
        assert resp.status == status
        spec.validate("get_profiles", status, resp.json())


def test_revision_header_value_is_the_spec_revision(spec):
    assert spec.spec["info"]["version"] == REVISION


# Each deviation, allowed by name, and only where the default emulator needs it: the bodies that show it.
DEVIATION_CASES = {
    "null_next_prev": [("/api/tags", {})],
    "null_relationship_data": [("/api/campaign-messages/{sms_message}", {"include": "template,image"})],
    "event_datetime_space": [("/api/events", {"page[size]": 1000})],
}


def test_the_deviations_are_quirks_by_name_and_each_has_a_case():
    assert set(LIVE_API_DEVIATIONS) <= set(QUIRKS)
    assert set(DEVIATION_CASES) == set(LIVE_API_DEVIATIONS)


@pytest.mark.parametrize("name", sorted(LIVE_API_DEVIATIONS))
def test_each_deviation_is_needed_by_the_default_and_allowed_only_by_name(emulator, name):
    """Validated with every deviation but this one, its bodies fail, and only where the deviation is."""
    without = spec_validator(deviations=tuple(d for d in LIVE_API_DEVIATIONS if d != name))
    with_all = spec_validator()
    sms_message = next(
        m["id"] for m in emulator.truth("campaign-messages")
        if any(c["id"] == m["campaign_id"] and c["channel"] == "sms" for c in emulator.truth("campaigns"))
    )
    problems = []
    for path, params in DEVIATION_CASES[name]:
        for page in walk(emulator.url, path.format(sms_message=sms_message), params):
            operation = with_all.operation_id_for("GET", page.url)
            with_all.validate(operation, 200, page.json())
            problems += without.errors(operation, 200, page.json())
    assert problems, f"{name}: nothing in the default emulator's bodies needs it"
