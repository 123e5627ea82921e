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

The decoded record also tells whether a free-form leaf (a JSON or list column: `event_properties`, a
to-many relationship's `data`) holds a JSON string (`quoted`). DuckDB extracts every column's text in
one parse (`extract.py`), and only for such a record would that text differ from the leaf's JSON
(`"abc"` reads `abc`): it is typed from the record again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import count
from typing import Any

import msgspec

from source_klaviyo.contracts import JSONObject

Decode = Callable[[bytes], Any]

_LINKS = "links"
_QUOTE = ord('"')
_SCALARS = {"string", "integer", "number", "boolean"}
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
    # where it holds the free-form leaves (msgspec.Raw), as attribute paths
    free_form: tuple[tuple[str, ...], ...] = ()

    def quoted(self, decoded: Any) -> bool:  # noqa: ANN401 - a struct made at run time
        """Whether a free-form leaf of a decoded record holds a JSON string."""
        for path in self.free_form:
            value = decoded
            for attribute in path:
                value = getattr(value, attribute)
                if value is None:
                    break
            else:
                if memoryview(value)[0] == _QUOTE:
                    return True
        return False


def record_shape(schema: JSONObject, primary_key: tuple[str, ...]) -> Shape:
    properties: JSONObject = dict(schema.get("properties") or {})
    for key in primary_key:
        properties.setdefault(key, {})
    free_form: list[tuple[str, ...]] = []
    record, attributes = _struct(properties, keys=frozenset(primary_key), free_form=free_form)
    objects = {
        name: msgspec.json.Decoder(_struct(prop["properties"])[0] | None).decode
        for name, prop in properties.items()
        if name != _LINKS and _declared(prop)
    }
    return Shape(msgspec.json.Decoder(record).decode, objects, frozenset(properties),
                 tuple(attributes[key] for key in primary_key), tuple(free_form))


def _declared(prop: JSONObject) -> bool:
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
            free_form: list[tuple[str, ...]] | None = None,
            at: tuple[str, ...] = ()) -> tuple[type, dict[str, str]]:
    """A closed msgspec Struct of `properties` (every field optional, `keys` decoded as scalars), and
    its attribute per key; the attribute paths of its free-form leaves are added to `free_form`.

    Attributes are named `f0`, `f1`, ... and renamed to the JSON keys, which need not be identifiers
    (`flow-actions`, `$value`)."""
    fields: list[tuple[str, Any, Any]] = []
    attributes: dict[str, str] = {}
    for i, (key, prop) in enumerate(properties.items()):
        kind: Any = msgspec.Raw
        if key in keys:
            kind = str | int | float | None  # a key of another type is looked at again (`Batch`)
        elif key != _LINKS and _declared(prop):
            kind = _struct(prop["properties"], free_form=free_form, at=(*at, f"f{i}"))[0] | None
        elif key != _LINKS and free_form is not None and _free_form(prop):
            free_form.append((*at, f"f{i}"))
        attributes[key] = f"f{i}"
        fields.append((f"f{i}", kind, msgspec.field(default=None, name=key)))
    struct = msgspec.defstruct(f"Object{next(_names)}", fields, forbid_unknown_fields=True,
                               omit_defaults=True)
    return struct, attributes
