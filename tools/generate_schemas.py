"""Generate the stream JSON Schemas in ``src/source_klaviyo/schemas/`` from Klaviyo's OpenAPI spec.

    ./dev run python tools/generate_schemas.py                 # rewrite the committed schemas
    ./dev run python tools/generate_schemas.py --check         # exit 1 if they drifted from the spec
    ./dev run python tools/generate_schemas.py --spec PATH     # another copy of stable.json

The schema change log (``src/source_klaviyo/schema_changes.json``, ``tools/schema_changelog.py``) is
computed from these schemas, so writing (or checking) the committed schemas rewrites (or checks) it too.
The spec is read from ``reference/klaviyo-openapi/stable.json`` in this repository: the operations
the project uses, structure only, derived from Klaviyo's description by ``tools/derive_reference.py``.
Output is deterministic: sorted keys, 2-space indent, trailing newline.
Policy (see docs/schemas.md): OpenAPI ``nullable`` becomes a ``"null"`` type, unions are merged
into one schema, ``enum``/``required``/bounds are dropped so new API values never break a
destination, ``format`` is kept, and only free-form objects get ``additionalProperties: true``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

from source_klaviyo import hooks
from source_klaviyo.streams import STREAMS, STREAMS_BY_NAME, Stream

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = REPO_ROOT / "reference" / "klaviyo-openapi" / "stable.json"
DEFAULT_OUT = REPO_ROOT / "src" / "source_klaviyo" / "schemas"
MEDIA_TYPE = "application/vnd.api+json"
JSON_SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"
RESOURCE_KEYS = ("type", "id", "attributes", "relationships", "links")

Schema = dict[str, Any]


# --------------------------------------------------------------------------- record shapes
# What each stream's record is, derived from its declaration in `source_klaviyo.streams` (`shape_of`):
# the stream table is the only list of streams.


@dataclass(frozen=True)
class Resource:
    """A stream whose record is one JSON:API resource object of ``operation``'s response (its
    ``data`` items, or with ``included_records`` its included resources of that type)."""

    operation: str
    cursor: str | None = None
    included_records: str | None = None
    additional_fields: tuple[str, ...] = ()
    # Top-level id of the parent the connector adds to each record (e.g. ``flow_id``).
    parent_field: str | None = None
    # (relationship, included type): the included resource's attributes are merged into
    # ``relationships.<relationship>.data`` (events_detailed).
    merge_included: tuple[str, str] | None = None
    # (record key, included type): full included resources of that type as a top-level array.
    embed_included: tuple[str, str] | None = None
    # The JSON:API type of the record, where `FORMAT_OVERRIDES` has an entry for it.
    resource_type: str | None = None


# Hand overrides of the spec, kept minimal and listed in docs/schemas.md: resource type ->
# attribute -> the `format` the API's values really have. The spec types metric `created` and
# `updated` as bare strings, but the API returns ISO 8601 date-times there (as every other
# resource's created/updated), and 2.x declared them `date-time`; without this, metrics would be a
# breaking column retype string <- timestamp in 3.0.0 for no change in the data.
FORMAT_OVERRIDES: dict[str, dict[str, str]] = {
    "metric": {"created": "date-time", "updated": "date-time"},
}


@dataclass(frozen=True)
class Membership:
    """A flat ``{<group>_id, profile_id, joined_group_at}`` record per profile of a list/segment."""

    operation: str
    group_field: str


@dataclass(frozen=True)
class Report:
    """A flat record per (date, grouping values) of a reporting query, statistics as numbers."""

    operation: str
    groupings: tuple[str, ...]
    # Where the record's ``date`` is typed from: the series' date_times, or the request timeframe.
    date_source: str
    # Whether the request asks ``group_by`` (its enum then bounds the groupings) and has a conversion metric.
    group_by: bool = True
    conversion_metric: bool = True


def shape_of(spec: Spec, stream: Stream) -> Resource | Membership | Report:
    """The record shape of a declared stream: the operation its endpoint is in the spec, and what its
    declaration (additional fields, parent, detail, hook, report) adds to that operation's resource."""
    if stream.report is not None:
        report = stream.report
        return Report(spec.operation_at("post", stream.path), report.groupings,
                      date_source="date_times" if report.interval else "timeframe",
                      group_by=report.group_by, conversion_metric=report.conversion_metric)
    hook = stream.hook
    if isinstance(hook, hooks.Membership):
        if stream.parent is None:
            raise SpecError(f"{stream.name}: a membership stream must be a child of its group")
        return Membership(spec.operation_at("get", stream.path), group_field=stream.parent.key)
    if isinstance(hook, hooks.IncludedAsRecords):
        return Resource(spec.operation_at("get", stream.path), cursor=hook.cursor,
                        included_records=hook.included_type, parent_field=hook.parent_field,
                        resource_type=hook.included_type)
    detail = stream.detail
    # Streams of one endpoint publish one resource shape: a field one of them asks for is declared
    # (nullable) on all, so profiles and global_exclusions have the same profile schema.
    shared = dict.fromkeys(field for other in STREAMS if other.path == stream.path
                           for field in other.additional_fields)
    merged = (hook.relationship, hook.included_type) if isinstance(hook, hooks.MergeIncluded) else None
    embedded = (hook.key, hook.included_type) if isinstance(hook, hooks.EmbedIncluded) else None
    return Resource(
        spec.operation_at("get", detail.path if detail else stream.path),
        cursor=stream.lifted,
        additional_fields=tuple(shared) + (detail.fields if detail else ()),
        parent_field=stream.parent.key if stream.parent else None,
        merge_included=merged,
        embed_included=embedded,
        resource_type=stream.resource_type or None,
    )


class SpecError(Exception):
    """The spec does not have the shape this generator relies on."""


# --------------------------------------------------------------------------- OpenAPI -> JSON Schema

# Keywords that only describe or constrain values; dropping them keeps schemas tolerant.
_DROPPED = frozenset(
    {
        "description", "example", "examples", "enum", "default", "required", "readOnly", "title",
        "deprecated", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
        "maxLength", "pattern", "minItems", "maxItems", "uniqueItems", "multipleOf", "xml",
        "externalDocs", "minProperties", "maxProperties",
    }
)  # fmt: skip
_HANDLED = frozenset(
    {"$ref", "type", "format", "nullable", "properties", "items", "allOf", "oneOf", "anyOf", "writeOnly"}
)
_ANY: Schema = {}


class Translator:
    """Turns OpenAPI 3.0 schema objects into draft-7 JSON Schema, resolving ``$ref``s.

    Intermediate schemas keep ``type`` as a list; :func:`finalize` gives the published form.
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self._components = spec["components"]["schemas"]

    def translate(self, node: Mapping[str, Any], stack: tuple[str, ...] = ()) -> Schema:
        unknown = set(node) - _HANDLED - _DROPPED
        if unknown:
            raise SpecError(f"unsupported OpenAPI keywords {sorted(unknown)} in {stack[-1:] or 'inline'}")
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            # A recursive reference is left untyped: the value is still accepted, just not described.
            out = _ANY if name in stack else self.translate(self._components[name], (*stack, name))
        else:
            out = self._own(node, stack)
            if node.get("allOf"):
                out = reduce(intersect, [self.translate(part, stack) for part in node["allOf"]], out)
            for keyword in ("oneOf", "anyOf"):
                if node.get(keyword):
                    out = intersect(out, union(self.translate(part, stack) for part in node[keyword]))
        return with_null(out) if node.get("nullable") else out

    def _own(self, node: Mapping[str, Any], stack: tuple[str, ...]) -> Schema:
        kind = node.get("type")
        if kind == "object" or "properties" in node:
            properties = {
                name: self.translate(prop, stack)
                for name, prop in node.get("properties", {}).items()
                if not prop.get("writeOnly")  # request-only fields never come back in a response
            }
            if properties:
                return {"type": ["object"], "properties": properties}
            return {"type": ["object"], "additionalProperties": True}
        if kind == "array" or "items" in node:
            items = node.get("items")
            return {"type": ["array"], **({"items": self.translate(items, stack)} if items else {})}
        if kind is None:
            return _ANY
        out: Schema = {"type": [kind]}
        if "format" in node:
            out["format"] = node["format"]
        return out


def with_null(schema: Schema) -> Schema:
    if schema == _ANY or "null" in schema["type"]:
        return schema
    return {**schema, "type": [*schema["type"], "null"]}


def intersect(a: Schema, b: Schema) -> Schema:
    """Both must hold (``allOf``): used for the spec's additional-fields overlays."""
    if a == _ANY:
        return b
    if b == _ANY:
        return a
    kinds = (
        [t for t in a["type"] if t in b["type"]]
        if "type" in a and "type" in b
        else a.get("type", b.get("type"))
    )
    if not kinds:
        raise SpecError(f"allOf of disjoint types {a.get('type')} and {b.get('type')}")
    out: Schema = {"type": kinds}
    if a.get("format") or b.get("format"):
        out["format"] = a.get("format") or b.get("format")
    props_a, props_b = a.get("properties", {}), b.get("properties", {})
    if props_a or props_b:
        out["properties"] = {
            name: intersect(props_a[name], props_b[name])
            if name in props_a and name in props_b
            else props_a.get(name) or props_b[name]
            for name in {**props_a, **props_b}
        }
    elif a.get("additionalProperties") and b.get("additionalProperties"):
        out["additionalProperties"] = True
    if "items" in a or "items" in b:
        out["items"] = intersect(a.get("items", _ANY), b.get("items", _ANY))
    return out


def union(schemas: Iterable[Schema]) -> Schema:
    """One of them holds (``oneOf``/``anyOf``), merged into a single schema.

    Object branches merge their properties (a discriminated union becomes one object with every
    branch's fields), because destinations cannot type a column from a union of shapes.
    """
    branches = list(schemas)
    if any(branch == _ANY for branch in branches):
        return _ANY
    kinds = [t for t in dict.fromkeys(t for branch in branches for t in branch["type"])]
    out: Schema = {"type": kinds}
    string_formats = {branch.get("format") for branch in branches if "string" in branch["type"]}
    if len(string_formats) == 1 and None not in string_formats:
        out["format"] = string_formats.pop()
    objects = [branch for branch in branches if "object" in branch["type"]]
    merged_props: dict[str, list[Schema]] = {}
    for branch in objects:
        for name, prop in branch.get("properties", {}).items():
            merged_props.setdefault(name, []).append(prop)
    if merged_props:
        out["properties"] = {name: union(props) for name, props in merged_props.items()}
    if any(branch.get("additionalProperties") for branch in objects):
        out["additionalProperties"] = True
    arrays = [branch for branch in branches if "array" in branch["type"]]
    if arrays and all("items" in branch for branch in arrays):
        out["items"] = union(branch["items"] for branch in arrays)
    return out


_TYPE_ORDER = ("object", "array", "string", "number", "integer", "boolean")


def finalize(schema: Schema) -> Schema:
    """Publishable form: ``type`` a string or ``[..., "null"]``; integer folded into number."""
    if schema == _ANY:
        return {}
    kinds = set(schema["type"])
    if {"integer", "number"} <= kinds:
        kinds.discard("integer")
    ordered = [t for t in _TYPE_ORDER if t in kinds] + (["null"] if "null" in kinds else [])
    out: Schema = {"type": ordered[0] if len(ordered) == 1 else ordered}
    if "format" in schema and "string" in kinds:
        out["format"] = schema["format"]
    if "properties" in schema:
        out["properties"] = {name: finalize(prop) for name, prop in schema["properties"].items()}
    if schema.get("additionalProperties"):
        out["additionalProperties"] = True
    if "items" in schema:
        out["items"] = finalize(schema["items"])
    return out


# --------------------------------------------------------------------------- reading the spec


class Spec:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.revision: str = document["info"]["version"]
        self.translator = Translator(document)
        self._components = document["components"]["schemas"]
        self._operations = {
            op["operationId"]: op
            for item in document["paths"].values()
            for method, op in item.items()
            if isinstance(op, dict) and "operationId" in op and method != "parameters"
        }

    def operation_at(self, method: str, path: str) -> str:
        """The operationId of `method path` (a path template, ids as `{id}`)."""
        operation = self.document["paths"].get(path, {}).get(method)
        if not isinstance(operation, dict) or "operationId" not in operation:
            raise SpecError(f"{method.upper()} {path} is not in the spec")
        return str(operation["operationId"])

    def operation(self, operation_id: str) -> Mapping[str, Any]:
        try:
            return self._operations[operation_id]
        except KeyError:
            raise SpecError(f"operationId {operation_id!r} is not in the spec") from None

    def response(self, operation_id: str) -> Schema:
        """The 200 response body, translated."""
        body = self.operation(operation_id)["responses"]["200"]["content"][MEDIA_TYPE]["schema"]
        return self.translator.translate(body)

    def request(self, operation_id: str) -> Schema:
        body = self.operation(operation_id)["requestBody"]["content"][MEDIA_TYPE]["schema"]
        return self.translator.translate(body)

    def parameter(self, operation_id: str, name: str) -> Mapping[str, Any] | None:
        for param in self.operation(operation_id).get("parameters", []):
            if param.get("name") == name:
                return param
        return None

    def data_item(self, operation_id: str) -> Schema:
        data = prop(self.response(operation_id), "data")
        return data["items"] if "array" in data["type"] else data

    def included(self, operation_id: str, resource_type: str) -> Schema:
        """The included resource of ``resource_type``, found by its ``type`` enum in the spec."""
        body = self.operation(operation_id)["responses"]["200"]["content"][MEDIA_TYPE]["schema"]
        raw = self.deref(self.deref(body)["properties"]["included"]["items"])
        for option in raw.get("oneOf", [raw]):
            type_enum = self.deref(self.deref(option)["properties"]["type"]).get("enum")
            if type_enum == [resource_type]:
                return self.translator.translate(option)
        raise SpecError(f"{operation_id} has no included resource of type {resource_type!r}")

    def enum(self, node: Mapping[str, Any]) -> list[str]:
        node = self.deref(node)
        return list(self.deref(node.get("items", node))["enum"])

    def request_attributes(self, operation_id: str) -> Mapping[str, Any]:
        """The raw (untranslated) ``data.attributes`` schema of the request body, enums intact."""
        body = self.deref(self.operation(operation_id)["requestBody"]["content"][MEDIA_TYPE]["schema"])
        return self.deref(self.deref(body["properties"]["data"])["properties"]["attributes"])

    def deref(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in node:
            node = self._components[node["$ref"].rsplit("/", 1)[-1]]
        return node


def prop(schema: Schema, *path: str) -> Schema:
    for name in path:
        try:
            schema = schema["properties"][name]
        except KeyError:
            raise SpecError(f"no property {name!r} on the path {'.'.join(path)}") from None
    return schema


def _string(*, format: str | None = None) -> Schema:
    return {"type": ["string"], **({"format": format} if format else {})}


# --------------------------------------------------------------------------- building records


def build_resource(spec: Spec, stream: Resource) -> Schema:
    if stream.included_records:
        item = spec.included(stream.operation, stream.included_records)
    else:
        item = spec.data_item(stream.operation)
    attributes = prop(item, "attributes")
    gated = _additional_fields(spec, stream.operation, item)
    unknown = set(stream.additional_fields) - gated
    if unknown:
        raise SpecError(f"{stream.operation} offers no additional-fields {sorted(unknown)}")
    attributes["properties"] = {
        name: schema
        for name, schema in attributes["properties"].items()
        if name not in gated or name in stream.additional_fields
    }
    if stream.resource_type:
        _override_formats(stream.resource_type, attributes)
    properties = {key: item["properties"][key] for key in RESOURCE_KEYS if key in item["properties"]}
    if stream.merge_included:
        relationship, included_type = stream.merge_included
        data = prop(properties["relationships"], relationship, "data")
        included = prop(spec.included(stream.operation, included_type), "attributes")
        _override_formats(included_type, included)
        data["properties"].update(included["properties"])
    if stream.embed_included:
        key, included_type = stream.embed_included
        properties[key] = {"type": ["array"], "items": spec.included(stream.operation, included_type)}
    if stream.parent_field:
        properties[stream.parent_field] = _string()
    if stream.cursor:
        properties[stream.cursor] = _lifted_cursor(prop(attributes, stream.cursor), stream.cursor)
    _null_relationship_data({"properties": properties})
    return properties


def _null_relationship_data(node: Schema) -> None:
    """Every to-one relationship's `data` may be null, in the record and in the resources it embeds:
    the live API writes `"data": null` for a relationship without a target (a campaign message's
    `template` and `image`) where the spec has an object (docs/schemas.md, "Live shapes")."""
    properties = node.get("properties", {})
    for relationship in properties.get("relationships", {}).get("properties", {}).values():
        data = relationship.get("properties", {}).get("data")
        if data is not None and "object" in data.get("type", ()):
            relationship["properties"]["data"] = with_null(data)
    for child in properties.values():
        _null_relationship_data(child)
    if isinstance(node.get("items"), dict):
        _null_relationship_data(node["items"])


def _override_formats(resource_type: str, attributes: Schema) -> None:
    """Apply `FORMAT_OVERRIDES`; an override of an attribute the spec lacks is an error."""
    for name, fmt in FORMAT_OVERRIDES.get(resource_type, {}).items():
        attribute = prop(attributes, name)
        if "string" not in attribute.get("type", ()):
            raise SpecError(f"format override {resource_type}.{name}: not a string in the spec")
        attribute["format"] = fmt


def _additional_fields(spec: Spec, operation_id: str, item: Schema) -> set[str]:
    """Attributes the API sends only when named in ``additional-fields[<type>]``."""
    names = set()
    for param in spec.operation(operation_id).get("parameters", []):
        if param.get("name", "").startswith("additional-fields["):
            names.update(spec.enum(param["schema"]))
    missing = names - set(prop(item, "attributes")["properties"])
    if missing:
        raise SpecError(f"{operation_id}: additional-fields {sorted(missing)} are not in the response schema")
    return names


def _lifted_cursor(attribute: Schema, name: str) -> Schema:
    # The connector's cursor is always a datetime, even where the spec types it as a bare
    # string (metrics' ``updated``); the attribute itself keeps the spec's typing.
    if "string" not in attribute["type"]:
        raise SpecError(f"cursor {name!r} is not a string in the spec: {attribute}")
    return {**attribute, "format": "date-time"}


def build_membership(spec: Spec, stream: Membership) -> Schema:
    item = spec.data_item(stream.operation)
    group_param = spec.parameter(stream.operation, "id")
    if group_param is None or group_param["schema"].get("type") != "string":
        raise SpecError(f"{stream.operation} has no string path parameter 'id'")
    properties: Schema = {
        # Both ids make the primary key, so they are never null (the spec marks profile ids nullable).
        stream.group_field: _string(),
        "profile_id": {**prop(item, "id"), "type": ["string"]},
    }
    joined = prop(item, "attributes")["properties"].get("joined_group_at")
    if joined is not None:
        properties["joined_group_at"] = joined
    return properties


def build_report(spec: Spec, stream: Report) -> Schema:
    attributes = prop(spec.request(stream.operation), "data", "attributes")
    raw_attributes = spec.request_attributes(stream.operation)
    if stream.group_by:
        allowed_groupings = set(spec.enum(raw_attributes["properties"]["group_by"]))
        unknown = set(stream.groupings) - allowed_groupings
        if unknown:
            raise SpecError(f"{stream.operation} cannot group by {sorted(unknown)}")
    elif "group_by" in raw_attributes["properties"]:
        raise SpecError(f"{stream.operation} takes group_by: declare the groupings it asks")
    if stream.conversion_metric != ("conversion_metric_id" in raw_attributes["properties"]):
        raise SpecError(f"{stream.operation}: the declaration and the spec disagree on a conversion metric")
    statistics = spec.enum(raw_attributes["properties"]["statistics"])
    if stream.date_source == "date_times":
        date = prop(spec.response(stream.operation), "data", "attributes", "date_times")["items"]
    else:
        date = prop(attributes, "timeframe", "start")
    properties: Schema = {"date": {**date, "type": ["string"]}}
    properties.update({name: _string() for name in stream.groupings})
    if stream.conversion_metric:
        properties["conversion_metric_id"] = prop(attributes, "conversion_metric_id")
    properties["statistics"] = {
        "type": ["object"],
        "properties": {name: {"type": ["number", "null"]} for name in sorted(statistics)},
    }
    return properties


def build_schema(spec: Spec, name: str) -> Schema:
    stream = shape_of(spec, STREAMS_BY_NAME[name])
    source: dict[str, Any]
    if isinstance(stream, Resource):
        properties, source = build_resource(spec, stream), {"shape": "resource"}
        if stream.additional_fields:
            source["additional-fields"] = list(stream.additional_fields)
        if stream.included_records:
            source["included"] = stream.included_records
    elif isinstance(stream, Membership):
        properties, source = build_membership(spec, stream), {"shape": "hand-shaped"}
    else:
        properties, source = build_report(spec, stream), {"shape": "hand-shaped"}
    body = finalize({"type": ["object"], "properties": properties})
    return {
        "$schema": JSON_SCHEMA_DRAFT,
        "type": "object",
        "additionalProperties": True,
        "properties": body["properties"],
        "x-source": {"operationId": stream.operation, "revision": spec.revision, **source},
    }


def render(schema: Schema) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all(spec_path: Path = DEFAULT_SPEC) -> dict[str, str]:
    """File name -> file text for every stream."""
    spec = Spec(json.loads(spec_path.read_text(encoding="utf-8")))
    return {f"{name}.json": render(build_schema(spec, name)) for name in sorted(s.name for s in STREAMS)}


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _schema_changelog_main(argv: list[str]) -> int:
    """`tools/schema_changelog.py`'s main (tools/ is not a package: loaded by path)."""
    path = Path(__file__).with_name("schema_changelog.py")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(argv))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--spec", type=Path, default=DEFAULT_SPEC,
        help="path to an OpenAPI description (the reduced one or Klaviyo's stable.json)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory of the schema files")
    parser.add_argument("--check", action="store_true", help="only report drift; exit 1 if any")
    args = parser.parse_args(argv)

    files = render_all(args.spec)
    existing = {path.name for path in args.out.glob("*.json")}
    stale = sorted(existing - set(files))
    changed = sorted(name for name, text in files.items() if _read(args.out / name) != text)
    # The change log reads the committed schemas: it follows them, not a copy written elsewhere.
    committed = args.out.resolve() == DEFAULT_OUT.resolve()
    if args.check:
        for name in changed + stale:
            print(f"drift: {name}", file=sys.stderr)
        changelog = _schema_changelog_main(["--check"]) if committed and not changed and not stale else 0
        return 1 if changed or stale or changelog else 0
    for name in changed:
        (args.out / name).write_text(files[name], encoding="utf-8")
    for name in stale:
        (args.out / name).unlink()
    print(f"{len(files)} schemas in {args.out}: {len(changed)} written, {len(stale)} removed")
    return _schema_changelog_main([]) if committed else 0


if __name__ == "__main__":
    sys.exit(main())
