"""Which objects of a record the schema declares, checked by msgspec in C: how `Batch` tells a record
its typed columns hold whole from one they do not.

A record is "mapped" when every key of every declared object (`attributes`, `location`, a
relationship and its `data`, ...) is one the schema lists, and each such object is an object or
null. A key Klaviyo added before the schema knew it, or a string where an object was declared, has
no column to go to: the record is then kept whole in `_raw` (see `extract.py`, which also keeps it
when a value does not fit its column's type). Leaves and free-form objects are not looked into here
(msgspec.Raw): their types are DuckDB's to check, and free-form objects are kept whole anyway.
`links` are never checked: they get no column, so a new link is nothing lost.

The whole record is decoded once (about 1 µs for an event); only a record that fails is looked at
again, object by object, to tell new top-level fields (which get JSON columns of their own) from
the rest.

The record's decoder also refuses a JSON string where a free-form value is (a JSON or list column:
`event_properties`, a to-many relationship's `data`): DuckDB extracts every column's text in one
parse (`extract.py`), and only for a string would that text differ from the value's JSON (`"abc"`
reads `abc`). Such a record goes the slow way, object by object (where free-form values are Raw), and
is flagged to be typed from the record again. A free-form object is decoded into a struct without
fields, which skips its content as fast as msgspec.Raw would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import count
from types import UnionType
from typing import Any

import msgspec

from source_klaviyo.contracts import JSONObject

Decode = Callable[[bytes], Any]

_LINKS = "links"
_SCALARS = {"string", "integer", "number", "boolean"}


class _AnyObject(msgspec.Struct, gc=False):
    """Any JSON object, its content skipped."""


# A free-form value in the record's decoder: any JSON but a string (msgspec.Raw elsewhere).
_FREE_FORM: Any = _AnyObject | list[msgspec.Raw] | int | float | bool | None
_names = count()


@dataclass(frozen=True)
class Shape:
    """The decoders of a stream's records."""

    decode: Decode  # the whole record; raises msgspec.ValidationError unless mapped
    # each top-level declared object alone, for a record with fields the schema lacks
    objects: Mapping[str, Decode]
    fields: frozenset[str]  # the top-level fields the schema declares
    # where `decode`'s result holds the primary key's fields (str, int or float; None when absent)
    key_attributes: tuple[str, ...]
    record_type: type  # what `decode` returns

    def raw_leaf(self, *keys: str) -> tuple[str, ...] | None:
        """The attributes under which `decode`'s result holds the leaf at `keys` (JSON keys, outermost
        first) as its JSON text (msgspec.Raw); None when the schema does not declare it so."""
        names: list[str] = []
        current: Any = self.record_type
        leaf: Any = None
        for key in keys:
            if current is None:
                return None
            info = next((f for f in msgspec.structs.fields(current) if f.encode_name == key), None)
            if info is None:
                return None
            names.append(info.name)
            kind = info.type
            members = kind.__args__ if isinstance(kind, UnionType) else (kind,)
            structs = [m for m in members if isinstance(m, type) and issubclass(m, msgspec.Struct)]
            current = structs[0] if structs else None
            leaf = kind
        return tuple(names) if names and leaf is msgspec.Raw else None


def record_shape(schema: JSONObject, primary_key: tuple[str, ...]) -> Shape:
    properties: JSONObject = dict(schema.get("properties") or {})
    for key in primary_key:
        properties.setdefault(key, {})
    record, attributes = _struct(properties, keys=frozenset(primary_key), free_form=_FREE_FORM)
    objects = {
        name: msgspec.json.Decoder(_struct(prop["properties"])[0] | None).decode
        for name, prop in properties.items()
        if name != _LINKS and is_declared_object(prop)
    }
    return Shape(msgspec.json.Decoder(record).decode, objects, frozenset(properties),
                 tuple(attributes[key] for key in primary_key), record)


def is_declared_object(prop: JSONObject) -> bool:
    """An object whose properties the schema lists (flattened); one without is free-form (JSON)."""
    declared = prop.get("type", [])
    types = [declared] if isinstance(declared, str) else declared
    return "object" in types and bool(prop.get("properties"))


def _free_form(prop: JSONObject) -> bool:
    """A leaf whose column is JSON or a list (`layout.column_type`), or may be: anything but scalars."""
    declared = prop.get("type", [])
    types = {declared} if isinstance(declared, str) else set(declared)
    types.discard("null")
    return not types or not types <= _SCALARS


def _struct(properties: JSONObject, keys: frozenset[str] = frozenset(),
            free_form: Any = msgspec.Raw) -> tuple[type, dict[str, str]]:  # noqa: ANN401 - a msgspec type
    """A closed msgspec Struct of `properties` (every field optional, `keys` decoded as scalars, free-form
    leaves as `free_form`), and its attribute per key.

    Attributes are named `f0`, `f1`, ... and renamed to the JSON keys, which need not be identifiers
    (`flow-actions`, `$value`)."""
    fields: list[tuple[str, Any, Any]] = []
    attributes: dict[str, str] = {}
    for i, (key, prop) in enumerate(properties.items()):
        kind: Any = msgspec.Raw
        if key in keys:
            kind = str | int | float | None  # a key of another type is looked at again (`Batch`)
        elif key != _LINKS and is_declared_object(prop):
            kind = _struct(prop["properties"], free_form=free_form)[0] | None
        elif key != _LINKS and _free_form(prop):
            kind = free_form
        attributes[key] = f"f{i}"
        fields.append((f"f{i}", kind, msgspec.field(default=None, name=key)))
    # gc=False: a decoded record is read once and dropped, and holds nothing that could make a cycle;
    # left to the garbage collector, an event's structs cost ~0.2 µs more.
    struct = msgspec.defstruct(f"Object{next(_names)}", fields, forbid_unknown_fields=True, gc=False,
                               omit_defaults=True)
    return struct, attributes
