"""Klaviyo's official Python SDK parses every resource the emulator serves (issue 18: with `--spec-strict`,
"Klaviyo's official SDK models must keep parsing every resource").

The SDK is `klaviyo-api` 24.0.0 (a dev dependency), the release generated from revision 2026-07-15, the
one the emulator serves. (The newer 25.0.0 is for 2026-10-15, which the emulator refuses. Its campaign
models require a `definition` attribute and its campaign-message models require `created`/`updated`,
so 2026-07-15's campaigns and campaign messages do not parse with them.) The SDK's own client, pointed at
the emulator, calls every endpoint in the emulator's table (`klaviyo_emulator.endpoints.ENDPOINTS`) by
its operationId. It calls each nested endpoint for every parent, makes each call bare and again with
every `include` and `additional-fields` the endpoint allows, and follows every page. The SDK turns each
document into its typed (pydantic) response model. The test checks that the ids in the model are the
document's. Where the SDK keeps `included` as plain dicts (the spec's `oneOf` over several types), each
included resource is parsed with the SDK's model for the schema the spec names for its type.

The SDK's models parse the default emulator's documents too. They accept space-separated and microsecond
datetimes and `null` where the spec says object. They drop what the spec lacks (extra fields, a flow
message's `image` relationship, a report's `data.id`) without complaint. This SDK rejects none of the
quirks. `--spec-strict` is for clients that hold bodies to the spec itself, as the OpenAPI validation in
`test_spec_conformance.py` does. Of the error bodies, the 401 (`error_shapes`: `source.pointer` "/data/"
by default) parses with the SDK's error model in both modes. A 429 never reaches that model: the SDK's
transport (urllib3) waits out its `Retry-After` and asks again.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import ApiException
from pydantic import BaseModel

from klaviyo_emulator.app import SERVED_REVISION
from klaviyo_emulator.endpoints import ENDPOINTS, Endpoint
from klaviyo_emulator.pagination import CURSOR_PARAM
from klaviyo_emulator.runner import RunningEmulator
from tests.emulator.helpers import (
    API_KEY,
    CHANNELS,
    campaign_values_body,
    flow_series_body,
    flow_values_body,
    form_series_body,
    form_values_body,
    segment_series_body,
    segment_values_body,
)
from tests.openapi_validation import JSON_API, OpenAPIValidator

# What a request needs that the endpoint table does not say: a value for each required filter (one
# request per value), and a body for each report (by the report's type).
REQUIRED_FILTERS: dict[str, Callable[[RunningEmulator], list[str]]] = {
    "/api/campaigns": lambda emu: [f"equals(messages.channel,'{channel}')" for channel in CHANNELS],
    "/api/coupon-codes": lambda emu: [f"equals(coupon.id,'{row['id']}')" for row in emu.truth("coupons")],
}
REPORT_BODIES = {"campaign-values-report": campaign_values_body, "flow-series-report": flow_series_body,
                 "flow-values-report": flow_values_body, "segment-values-report": segment_values_body,
                 "segment-series-report": segment_series_body, "form-values-report": form_values_body,
                 "form-series-report": form_series_body}

Document = dict[str, Any]
Arguments = tuple[tuple[Any, ...], dict[str, Any]]  # positional and keyword arguments of one SDK call


@pytest.fixture(params=["spec-strict", "quirks"])
def served(request, strict_emulator, emulator) -> RunningEmulator:
    """The `--spec-strict` emulator (issue 18's requirement), and the default one (a finding: see above)."""
    return strict_emulator if request.param == "spec-strict" else emulator


def sdk_operations(sdk: KlaviyoAPI) -> dict[str, Callable[..., Any]]:
    """operationId -> the SDK's `<operationId>_with_http_info` (the body as served and the parsed model),
    over every API group of the client."""
    operations = {}
    for group_name, attribute in vars(KlaviyoAPI).items():
        if isinstance(attribute, property):
            group = getattr(sdk, group_name)
            for name in dir(group):
                if name.endswith("_with_http_info"):
                    operations.setdefault(name.removesuffix("_with_http_info"), getattr(group, name))
    return operations


def sdk_argument(param: str) -> str:
    """The SDK's keyword for a query parameter (`additional-fields[profile]`: `additional_fields_profile`)."""
    return re.sub(r"\W+", "_", param).strip("_")


def requests_for(emu: RunningEmulator, endpoint: Endpoint) -> Iterator[Arguments]:
    """The SDK arguments of every request made of `endpoint`."""
    if endpoint.method == "POST":
        report = REPORT_BODIES[next(iter(endpoint.fields))]
        yield (report(emu.truth("metrics")[0]["id"]),), {}
        return
    parents = [None]
    if "{id}" in endpoint.route:  # /api/<parent>/{id}/...: every parent of the account
        parents = [record["id"] for record in emu.truth(endpoint.route.split("/")[2])]
    filters = REQUIRED_FILTERS[endpoint.route](emu) if endpoint.filter_required else [None]
    everything: dict[str, Any] = {}
    if endpoint.includes:
        everything["include"] = sorted(endpoint.includes)
    for type_, names in endpoint.additional.items():
        everything[sdk_argument(f"additional-fields[{type_}]")] = sorted(names)
    for parent in parents:
        for filter_ in filters:
            bare = {"id": parent} if parent else {}
            if filter_:
                bare["filter"] = filter_
            yield (), bare
            if everything:
                yield (), {**bare, **everything}


def pages(call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Any]:
    """The SDK's answer for every page, following `links.next` by its cursor."""
    cursor = None
    while True:
        answer = call(*args, **kwargs, **({"page_cursor": cursor} if cursor else {}))
        yield answer
        next_link = (json.loads(answer.raw_data).get("links") or {}).get("next")
        if not next_link:
            return
        cursor = parse_qs(urlsplit(next_link).query)[CURSOR_PARAM][0]


def identities(document: Document, primary_ids: bool) -> dict[str, list[Any]]:
    """What identifies the resources of a document: primary (type, id) where the spec gives the primary
    resource an id (a report's has none), included (type, id), the linkage of each primary resource's
    relationships that have one, and a report's rows (their groupings)."""
    data = document["data"]
    primary = data if isinstance(data, list) else [data]

    def linkage(resource: Document) -> list[Any]:  # the relationships that point somewhere
        relationships = resource.get("relationships") or {}
        return [(name, rel["data"]) for name, rel in sorted(relationships.items())
                if (rel or {}).get("data") is not None]

    return {
        "data": [(r["type"], r["id"] if primary_ids else None) for r in primary],
        "included": [(r["type"], r["id"]) for r in document.get("included") or []],
        "relationships": [linkage(r) for r in primary],
        "rows": [row["groupings"] for r in primary for row in (r.get("attributes") or {}).get("results", [])],
    }


def _resolve(spec: OpenAPIValidator, node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = spec.spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _properties(spec: OpenAPIValidator, node: dict[str, Any]) -> dict[str, Any]:
    """A schema's properties, its `allOf` parts' included."""
    node = _resolve(spec, node)
    found = dict(node.get("properties", {}))
    for part in node.get("allOf", []):
        found |= _properties(spec, part)
    return found


def response_schema(spec: OpenAPIValidator, operation: str) -> dict[str, Any]:
    """The `$ref` of the operation's 200 body (the SDK's models are named after the spec's schemas)."""
    return spec.operation(operation).node["responses"]["200"]["content"][JSON_API]["schema"]


def primary_ids(spec: OpenAPIValidator, operation: str) -> bool:
    """Whether the spec gives the operation's primary resources an `id`."""
    data = _resolve(spec, _properties(spec, response_schema(spec, operation))["data"])
    return "id" in _properties(spec, data.get("items", data))


def included_models(spec: OpenAPIValidator, operation: str) -> dict[str, str]:
    """resource type -> the schema the spec names for it in the operation's `included`."""
    items = _properties(spec, response_schema(spec, operation)).get("included", {}).get("items")
    found = {}
    for ref in (items or {}).get("oneOf", [items] if items else []):
        (type_,) = _resolve(spec, _properties(spec, ref)["type"])["enum"]
        found[type_] = ref["$ref"].rsplit("/", 1)[1]
    return found


def sdk_model(name: str) -> type[BaseModel]:
    # Looked up when needed: the SDK's models module imports on attribute access, and raises
    # ModuleNotFoundError for any other name (doctest collection asks a test module's globals for some).
    try:
        return getattr(importlib.import_module("openapi_client.models"), name)
    except (AttributeError, ImportError):
        raise AssertionError(f"the SDK has no model for the spec's {name}") from None


def test_the_sdk_is_the_release_of_the_revision_the_emulator_serves():
    assert KlaviyoAPI._REVISION == SERVED_REVISION  # the `revision` header its client sends


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda endpoint: endpoint.operation)
def test_the_sdk_models_parse_every_document_the_emulator_serves(served, spec, endpoint):
    sdk = KlaviyoAPI(API_KEY, test_host=served.url)
    call = sdk_operations(sdk)[endpoint.operation]
    accepted = inspect.signature(call).parameters
    model_name = response_schema(spec, endpoint.operation)["$ref"].rsplit("/", 1)[1]
    with_ids = primary_ids(spec, endpoint.operation)
    included_schemas = included_models(spec, endpoint.operation)
    resources = 0
    for args, kwargs in requests_for(served, endpoint):
        assert set(kwargs) <= set(accepted), f"{endpoint.operation} takes no {set(kwargs) - set(accepted)}"
        for answer in pages(call, args, kwargs):
            document = json.loads(answer.raw_data)
            parsed = answer.data
            assert type(parsed).__name__ == model_name
            as_parsed = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
            expected = identities(document, with_ids)
            assert identities(as_parsed, with_ids) == expected, f"{endpoint.operation} {kwargs}"
            kept = getattr(parsed, "included", None) or []
            for included, as_kept in zip(document.get("included") or [], kept, strict=True):
                if isinstance(as_kept, dict):  # the SDK leaves it untyped: its model for the spec's schema
                    model = sdk_model(included_schemas[included["type"]])
                    assert model.from_dict(included).id == included["id"]
            resources += len(expected["data"])
    assert resources, f"{endpoint.operation}: no resource served to parse"


def test_the_sdk_error_model_parses_a_401(served):
    """The SDK parses an error body into its 4XX model (`ApiException.data`, None where it did not parse)."""
    sdk = KlaviyoAPI("pk_wrong", test_host=served.url)
    with pytest.raises(ApiException) as raised:
        sdk.Profiles.get_profiles_with_http_info()
    assert raised.value.status == 401
    served_ids = [error["id"] for error in json.loads(raised.value.body)["errors"]]
    assert raised.value.data is not None, raised.value.body
    assert [error.id for error in raised.value.data.errors] == served_ids
