"""Validate Klaviyo API bodies against Klaviyo's OpenAPI spec (``reference/klaviyo-openapi/stable.json``).

The spec is the repository's reduced copy (the operations the project uses, structure only; see
``tools/derive_reference.py``); set ``KLAVIYO_OPENAPI_SPEC`` to read another, e.g. Klaviyo's whole
``stable.json``.  Example::

    from tests.openapi_validation import spec_validator

    spec = spec_validator()
    op = spec.operation_id_for("GET", "/api/lists/Y6nRLr")        # "get_list"
    spec.validate(op, 200, body)                                     # raises SpecValidationError
    spec.validate("get_profiles", 429, error_body)                   # -> 4XX -> ClientError
    problems = spec.errors("get_events", 200, body)                  # [] when valid

OpenAPI 3.0 is not JSON Schema: ``nullable: true`` is translated to JSON Schema (``type`` gains
``"null"``, an ``enum`` gains ``None``, a ``$ref``/``oneOf``/``allOf`` is wrapped in
``anyOf: [..., {"type": "null"}]``) before anything is compiled.  ``$ref`` s resolve against the
whole (translated) spec through a ``referencing`` registry.  ``oneOf`` is read as ``anyOf``: the
spec's ``oneOf`` branches overlap (no ``additionalProperties: false``, no discriminator:
``{"use_smart_sending": true}`` is at once Email-, SMS- and PushSendOptions), so a strict "exactly
one" rejects every body, the spec's own examples included.  ``date-time`` and ``date`` formats are
checked (RFC 3339 with ``T`` / ISO dates).

Where the live API departs from its spec, the validator allows exactly the deviations it is given by
name (``deviations=``; by default all of ``LIVE_API_DEVIATIONS``, each a quirk of
``klaviyo_emulator.quirks.QUIRKS`` that breaks the spec); ``deviations=()`` holds a body to the spec to
the letter, as ``klaviyo-emulator serve --spec-strict`` serves it.  Compiled validators are cached per
(operation, status).
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DEFAULT_SPEC_PATH = Path(__file__).resolve().parents[1] / "reference" / "klaviyo-openapi" / "stable.json"
JSON_API = "application/vnd.api+json"
SPEC_URI = "urn:klaviyo:openapi:stable"
HTTP_METHODS = ("get", "post", "put", "patch", "delete")

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
)
_SPACED = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
)


@dataclass(frozen=True)
class Deviation:
    """One way the live API departs from its spec, as the validator allows it."""

    what: str
    nullable: tuple[str, ...] = ()  # JSON pointers (into the spec) of schemas null in practice
    nullable_relationship_data: tuple[str, ...] = ()  # relationship names whose `data` may be null
    spaced_datetimes: bool = False  # `date-time` strings may have a space for the `T`


# Each key is a quirk of klaviyo_emulator.quirks.QUIRKS whose bodies the spec does not allow; the
# quirks not named here (extra fields, value variants, ...) are bodies the spec already allows.
LIVE_API_DEVIATIONS: dict[str, Deviation] = {
    "null_next_prev": Deviation(
        "the last page of a collection carries next: null (and the first prev: null)",
        nullable=(
            "components/schemas/CollectionLinks/properties/next",
            "components/schemas/CollectionLinks/properties/prev",
        ),
    ),
    "null_relationship_data": Deviation(
        "a template or image relationship without a target has data: null when included",
        nullable_relationship_data=("template", "image"),
    ),
    "event_datetime_space": Deviation(
        "an event's datetime may be written with a space (2024-04-01 17:33:15+00:00)",
        spaced_datetimes=True,
    ),
}


class SpecValidationError(AssertionError):
    """A body does not match the spec; the message lists every violation with its JSON path."""


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def nullable_to_json_schema(node: Any, overlapping_one_of: bool = False) -> Any:
    """Return a copy of an OpenAPI 3.0 schema tree where ``nullable: true`` is plain JSON Schema
    (and, with ``overlapping_one_of``, every ``oneOf`` is an ``anyOf``).

    >>> nullable_to_json_schema({"type": "string", "enum": ["a"], "nullable": True})
    {'type': ['string', 'null'], 'enum': ['a', None]}
    >>> nullable_to_json_schema({"$ref": "#/x", "nullable": True})
    {'anyOf': [{'$ref': '#/x'}, {'type': 'null'}]}
    """
    if isinstance(node, list):
        return [nullable_to_json_schema(item, overlapping_one_of) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        ("anyOf" if key == "oneOf" and overlapping_one_of else key): nullable_to_json_schema(
            value, overlapping_one_of
        )
        for key, value in node.items()
        if key != "nullable"
    }
    if node.get("nullable") is not True:
        return out
    if "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"] if "null" not in types else types
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        return out
    composite = {key: out.pop(key) for key in ("$ref", "oneOf", "anyOf", "allOf") if key in out}
    if composite:
        out["anyOf"] = [composite, {"type": "null"}]
    return out


def _format_checker(spaced: bool = False) -> FormatChecker:
    checker = FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def _is_datetime(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not (_RFC3339.match(value) or (spaced and _SPACED.match(value))):
            raise ValueError(f"not an RFC 3339 date-time: {value!r}")
        datetime.fromisoformat(value.replace("z", "Z"))
        return True

    @checker.checks("date", raises=ValueError)
    def _is_date(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(f"not a date: {value!r}")
        date.fromisoformat(value)
        return True

    return checker


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str  # template, e.g. /api/campaigns/{id}
    node: Mapping[str, Any]


class OpenAPIValidator:
    """Response (and request body) validation for every operation of one OpenAPI document."""

    def __init__(
        self, spec: Mapping[str, Any], *, deviations: Iterable[str] = tuple(LIVE_API_DEVIATIONS)
    ) -> None:
        self.spec = spec
        self.deviations = tuple(deviations)
        unknown = [name for name in self.deviations if name not in LIVE_API_DEVIATIONS]
        if unknown:
            raise KeyError(f"unknown deviations {unknown}; known: {sorted(LIVE_API_DEVIATIONS)}")
        doc = copy.deepcopy(dict(spec))
        allowed = [LIVE_API_DEVIATIONS[name] for name in self.deviations]
        for deviation in allowed:
            for pointer in deviation.nullable:
                _resolve(doc, pointer)["nullable"] = True
            for name in deviation.nullable_relationship_data:
                for data in _relationship_data(doc, name):
                    data["nullable"] = True
        self._schema_doc = nullable_to_json_schema(doc, overlapping_one_of=True)
        resource = Resource.from_contents(self._schema_doc, default_specification=DRAFT202012)
        self._registry = Registry().with_resource(SPEC_URI, resource)
        self._format_checker = _format_checker(spaced=any(d.spaced_datetimes for d in allowed))
        self._validators: dict[tuple[str, str], Draft202012Validator] = {}
        self.operations: dict[str, Operation] = {}
        routes = []
        for path, item in spec["paths"].items():
            for method in HTTP_METHODS:
                node = item.get(method)
                if isinstance(node, dict) and "operationId" in node:
                    op = Operation(node["operationId"], method.upper(), path, node)
                    self.operations[op.operation_id] = op
                    routes.append((path.count("{"), _route_regex(path), op))
        # Literal segments beat parameters: /api/profiles/push-tokens before /api/profiles/{id}.
        self._routes = sorted(routes, key=lambda r: r[0])

    @classmethod
    def load(
        cls, path: Path | str | None = None, deviations: Iterable[str] = tuple(LIVE_API_DEVIATIONS)
    ) -> OpenAPIValidator:
        path = Path(path or os.environ.get("KLAVIYO_OPENAPI_SPEC") or DEFAULT_SPEC_PATH)
        with path.open("rb") as f:
            return cls(json.load(f), deviations=deviations)

    # -- lookup -----------------------------------------------------------------------------

    def operation(self, operation_id: str) -> Operation:
        try:
            return self.operations[operation_id]
        except KeyError:
            raise KeyError(f"no operation {operation_id!r} in the spec") from None

    def operation_id_for(self, method: str, path_or_url: str) -> str:
        """The operationId serving a concrete request, e.g. ``("GET", "https://h/api/lists/X?a=b")``."""
        path = urlsplit(path_or_url).path
        if len(path) > 1:
            path = path.rstrip("/")
        method = method.upper()
        for _, regex, op in self._routes:
            if op.method == method and regex.fullmatch(path):
                return op.operation_id
        raise KeyError(f"no operation for {method} {path}")

    def _response_key(self, op: Operation, status: int | str) -> str:
        responses = op.node.get("responses", {})
        status = str(status)
        for key in (status, f"{status[0]}XX", "default"):
            if key in responses:
                return key
        raise KeyError(f"{op.operation_id} declares no response for status {status}: {sorted(responses)}")

    def _response_schema_pointer(self, op: Operation, status: int | str) -> str:
        key = self._response_key(op, status)
        base = _pointer("paths", op.path, op.method.lower(), "responses", key)
        response = op.node["responses"][key]
        if "$ref" in response:  # e.g. #/components/responses/ClientError
            base = response["$ref"].lstrip("#/")
            response = self._resolve_local(response["$ref"])
        content = response.get("content", {})
        media = JSON_API if JSON_API in content else next(iter(content), None)
        if media is None or "schema" not in content[media]:
            raise KeyError(f"{op.operation_id} {status} has no body schema")
        return f"{base}/{_pointer('content', media, 'schema')}"

    def _resolve_local(self, ref: str) -> Any:
        return _resolve(self.spec, ref)

    def response_schema(self, operation_id: str, status: int | str) -> dict[str, Any]:
        """A JSON Schema (a ``$ref`` into the translated spec) for one response body."""
        op = self.operation(operation_id)
        return {"$ref": f"{SPEC_URI}#/{self._response_schema_pointer(op, status)}"}

    def request_schema(self, operation_id: str) -> dict[str, Any]:
        op = self.operation(operation_id)
        body = op.node.get("requestBody")
        if body is None:
            raise KeyError(f"{operation_id} takes no request body")
        base = _pointer("paths", op.path, op.method.lower(), "requestBody")
        if "$ref" in body:
            base = body["$ref"].lstrip("#/")
            body = self._resolve_local(body["$ref"])
        media = JSON_API if JSON_API in body["content"] else next(iter(body["content"]))
        return {"$ref": f"{SPEC_URI}#/{base}/{_pointer('content', media, 'schema')}"}

    # -- validation ---------------------------------------------------------------------------

    def _validator(self, key: tuple[str, str], schema_factory) -> Draft202012Validator:
        validator = self._validators.get(key)
        if validator is None:
            validator = Draft202012Validator(
                schema_factory(), registry=self._registry, format_checker=self._format_checker
            )
            self._validators[key] = validator
        return validator

    def response_validator(self, operation_id: str, status: int | str) -> Draft202012Validator:
        op = self.operation(operation_id)
        key = (operation_id, self._response_key(op, status))
        return self._validator(key, lambda: self.response_schema(operation_id, status))

    def errors(self, operation_id: str, status: int | str, body: Any) -> list[str]:
        """Every violation of the response schema, as ``"$.json.path: message"`` strings."""
        return _messages(self.response_validator(operation_id, status).iter_errors(body))

    def validate(self, operation_id: str, status: int | str, body: Any) -> None:
        problems = self.errors(operation_id, status, body)
        if problems:
            raise SpecValidationError(_report(f"{operation_id} {status} response", problems))

    def validate_request(self, operation_id: str, body: Any) -> None:
        validator = self._validator((operation_id, "request"), lambda: self.request_schema(operation_id))
        problems = _messages(validator.iter_errors(body))
        if problems:
            raise SpecValidationError(_report(f"{operation_id} request body", problems))


def _relationship_data(node: Any, name: str) -> Iterable[dict[str, Any]]:
    """Every `relationships.<name>.data` schema in the spec tree."""
    if isinstance(node, list):
        for item in node:
            yield from _relationship_data(item, name)
    elif isinstance(node, dict):
        props = node.get("properties")
        rels = props.get("relationships") if isinstance(props, dict) else None
        if isinstance(rels, dict):
            data = rels.get("properties", {}).get(name, {}).get("properties", {}).get("data")
            if isinstance(data, dict):
                yield data
        for value in node.values():
            yield from _relationship_data(value, name)


def _resolve(doc: Any, ref: str) -> Any:
    node = doc
    for part in ref.lstrip("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _route_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template.rstrip("/") or "/")
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


def _messages(errors: Iterable[Any]) -> list[str]:
    out = []
    for error in sorted(errors, key=lambda e: list(e.absolute_path)):
        detail = error.message
        if error.context:  # oneOf/anyOf: show why the closest branch failed
            best = min(error.context, key=lambda e: len(list(e.absolute_path)) * -1)
            detail += f" (e.g. {best.json_path}: {best.message[:200]})"
        out.append(f"{error.json_path}: {detail[:500]}")
    return out


def _report(what: str, problems: list[str], limit: int = 15) -> str:
    shown = "\n  ".join(problems[:limit])
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{what} violates the spec ({len(problems)} problems):\n  {shown}{more}"


@cache
def spec_validator(path: str | None = None, deviations: tuple[str, ...] | None = None) -> OpenAPIValidator:
    """The process-wide validator (compiling the spec takes a while; load it once per deviations):
    by default allowing every `LIVE_API_DEVIATIONS`, with `deviations=()` the spec to the letter."""
    return OpenAPIValidator.load(path, tuple(LIVE_API_DEVIATIONS) if deviations is None else deviations)
