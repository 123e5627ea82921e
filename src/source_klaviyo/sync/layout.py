"""How a stream's records become a DuckDB table: typed columns, where each is found in a record, and
the schema fingerprint.

Every leaf of the stream's JSON schema gets a column, named after it:

- top-level fields keep their name (`id`, `updated`, `campaign_id`, `date`);
- attributes lose the `attributes` prefix; declared nested objects are flattened with `__`
  (`location__city`, `subscriptions__email__marketing__consent`), as are other top-level objects
  (`statistics__opens`);
- a to-one relationship is `<name>_id` (`metric_id`, `flow_action_id`), other fields of its `data`
  `<name>__<field>` (events_detailed's `metric__name`); a to-many one is `<name, singular>_ids`, a
  `VARCHAR[]` of the related ids (`tag_ids`, `attribution_ids`);
- free-form objects (`event_properties`, profile `properties`) and arrays of objects stay `JSON`;
  arrays of scalars are lists (`VARCHAR[]`); the keys Klaviyo defines inside a free-form object get
  columns of their own (`klaviyo_keys.py`: `value`, `event_id`, `attributed_flow_id`, ...);
- JSON:API `links` get none: URLs of the same API, made of the ids the row holds.

Types: `date-time` strings `TIMESTAMPTZ`, `date` strings `DATE`, other strings `VARCHAR`, integers
`BIGINT`, numbers `DOUBLE`, booleans `BOOLEAN`; a leaf of several scalar types is `DOUBLE` when
they are all numbers, else `VARCHAR`; anything else `JSON`.

Two leaves never share a column: an attribute with the name and type of a top-level field (the
cursor the engine or a hook lifts) and a relationship whose id the record already carries at the top
level (a child's parent id) are the same value and are skipped; any other clash is named by the
full path (`attributes__type`).
Why flattened columns and not STRUCT: docs/local-sync.md ("Flattened, not STRUCT").

    >>> layout = table_layout(STREAMS_BY_NAME["events"], {"properties": {
    ...     "id": {"type": "string"},
    ...     "datetime": {"type": ["string", "null"], "format": "date-time"},
    ...     "attributes": {"type": "object", "properties": {
    ...         "datetime": {"type": "string", "format": "date-time"},
    ...         "location": {"type": "object", "properties": {"city": {"type": "string"}}}}},
    ...     "relationships": {"type": "object", "properties": {
    ...         "metric": {"type": "object", "properties": {"data": {"type": "object", "properties": {
    ...             "id": {"type": "string"}, "type": {"type": "string"}}}}},
    ...         "tags": {"type": "object", "properties": {"data": {"type": "array"}}}}}}})
    >>> [(c.name, c.sql_type, c.keys) for c in layout.columns]  # doctest: +NORMALIZE_WHITESPACE
    [('id', 'VARCHAR', ('id',)), ('datetime', 'TIMESTAMPTZ', ('datetime',)),
     ('metric_id', 'VARCHAR', ('relationships', 'metric', 'data', 'id')),
     ('tag_ids', 'VARCHAR[]', ('relationships', 'tags', 'data')),
     ('location__city', 'VARCHAR', ('attributes', 'location', 'city'))]
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from source_klaviyo.contracts import JSONObject
from source_klaviyo.streams import STREAMS_BY_NAME, Stream  # noqa: F401  (doctest)
from source_klaviyo.sync.klaviyo_keys import KLAVIYO_KEYS
from source_klaviyo.sync.shape import Shape, is_declared_object, record_shape

# Bumped whenever the mapping below changes. A file written in an older layout is converted when a
# sync opens it (`migrate.py`); version 1 held `attributes`, `relationships` and `links` as JSON.
LAYOUT_VERSION = 2
BOOKKEEPING_PREFIX = "_source_klaviyo_"
STAGING_PREFIX = BOOKKEEPING_PREFIX + "staging__"
MIGRATING_PREFIX = BOOKKEEPING_PREFIX + "migrating__"
RAW_COLUMN = "_raw"
METADATA_COLUMNS: tuple[tuple[str, str], ...] = (
    (RAW_COLUMN, "JSON"),  # the record as read, where its typed columns do not hold all of it
    ("_extracted_at", "TIMESTAMPTZ"),
    ("_sync_id", "VARCHAR"),
)
# The top-level objects of a JSON:API resource that are not fields of their own.
_ATTRIBUTES, _RELATIONSHIPS, _LINKS = "attributes", "relationships", "links"
_SCALARS = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN"}
_STRING_FORMATS = {"date-time": "TIMESTAMPTZ", "date": "DATE"}


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    # Keys from the record's root to the value; None: the top-level field of the column's name.
    path: tuple[str, ...] | None = None
    # The ids of a to-many relationship: `path` leads to its `data` array.
    many: bool = False
    # A value the type cannot hold keeps the whole record in `_raw` (not for promoted keys: the
    # free-form object they come from is a column of its own, kept whole).
    checked: bool = True

    @property
    def keys(self) -> tuple[str, ...]:
        return self.path if self.path is not None else (self.name,)

    @property
    def from_json(self) -> bool:
        """Read as JSON (objects, arrays, lists) rather than as the text of a scalar."""
        return self.sql_type == "JSON" or self.sql_type.endswith("[]")


@dataclass(frozen=True)
class TableLayout:
    stream: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    cursor: str | None
    fingerprint: str
    # The canonical JSON the fingerprint hashes ({"layout": LAYOUT_VERSION, "schema": ...}): stored
    # with it, so that a later connector can tell an additive schema change from a breaking one.
    schema_json: str = field(default="", compare=False, repr=False)
    append_only: bool = field(default=False, compare=False)  # `Incremental.append_only`
    # Which objects of a record are declared, for `Batch` to tell records its columns hold whole
    # (None: every record is taken as mapped, for layouts built by hand).
    shape: Shape | None = field(default=None, compare=False, repr=False)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def fields(self) -> frozenset[str]:
        """The top-level fields the layout knows (a record's other fields get JSON columns)."""
        if self.shape is not None:
            return self.shape.fields
        return frozenset(column.keys[0] for column in self.columns)

    def create_sql(self, table: str) -> str:
        columns = [column_sql(c.name, c.sql_type) for c in self.columns]
        columns += [column_sql(name, sql_type) for name, sql_type in METADATA_COLUMNS]
        # No PRIMARY KEY: DuckDB keeps its index in memory (~110 MB per million keys) and cannot spill
        # it; the store upserts by deleting the batch's keys before inserting (duckdb_store._upsert).
        return f"CREATE TABLE {quote_ident(table)} ({', '.join(columns)})"


def column_sql(name: str, sql_type: str) -> str:
    """A column's definition. JSON columns (whole objects, `_raw`) are compressed with zstd, the
    others as DuckDB finds best: forcing zstd on every column (as layout 1 did, whose columns were
    mostly JSON) costs about a block per row group even for a column of NULLs, and short ids
    compress better as dictionaries and FSST; 100,000 events take 12.9 MB this way, 18.6 MB with
    zstd everywhere (the same rows copied both ways).

    >>> column_sql("event_properties", "JSON")
    '"event_properties" JSON USING COMPRESSION zstd'
    """
    compression = " USING COMPRESSION zstd" if sql_type == "JSON" else ""
    return f"{quote_ident(name)} {sql_type}{compression}"


def quote_ident(identifier: str) -> str:
    """A DuckDB identifier (table or column name) as SQL: the one way names enter a statement.

    Stream and field names come from Klaviyo's answers (a new top-level field becomes a column), so
    every name is quoted, its own `"` doubled; values never go through here, they are parameters.

    >>> quote_ident('events')
    '"events"'
    >>> quote_ident('odd "name"; DROP TABLE x')
    '"odd ""name""; DROP TABLE x"'
    """
    return '"' + identifier.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """A string literal, `'` doubled: for the few values written into a statement rather than passed
    as a parameter (file paths of SET and ATTACH, JSON paths, the column names read_csv is given).

    >>> quote_literal("it's")
    "'it''s'"
    """
    return "'" + text.replace("'", "''") + "'"


def staging_table(stream: str) -> str:
    return STAGING_PREFIX + stream


def migrating_table(stream: str) -> str:
    return MIGRATING_PREFIX + stream


def column_type(prop: JSONObject) -> str:
    """The column type of a schema leaf (an object without declared properties is free-form: JSON)."""
    declared = prop.get("type", [])
    types = [declared] if isinstance(declared, str) else [t for t in declared if t != "null"]
    if len(types) == 1:
        kind = types[0]
        if kind == "string":
            return _STRING_FORMATS.get(prop.get("format", ""), "VARCHAR")
        if kind == "array":
            items = prop.get("items")
            item_type = column_type(items) if isinstance(items, dict) else "JSON"
            return item_type + "[]" if item_type in _SCALARS.values() else "JSON"
        return _SCALARS.get(kind, "JSON")
    if types and set(types) <= {"integer", "number"}:
        return "DOUBLE"
    if types and set(types) <= set(_SCALARS):
        return "VARCHAR"
    return "JSON"


def canonical_schema(schema: JSONObject) -> bytes:
    """Compact JSON with every object's keys sorted: the bytes the fingerprint of a table's layout
    is taken over, so they must never change for the same schema (files written by earlier versions
    keep their fingerprint)."""
    return msgspec.json.encode({"layout": LAYOUT_VERSION, "schema": schema}, order="sorted")


def schema_fingerprint(schema: JSONObject) -> str:
    return hashlib.sha256(canonical_schema(schema)).hexdigest()[:16]


def table_layout(stream: Stream, schema: JSONObject) -> TableLayout:
    properties: JSONObject = schema.get("properties") or {}
    cursor = stream.incremental.cursor if stream.incremental else None
    columns: dict[str, Column] = {}

    def add(column: Column, full_name: str) -> None:
        if column.name in columns:
            column = Column(full_name, column.sql_type, column.path, column.many, column.checked)
        columns.setdefault(column.name, column)

    # Keys, type and cursor first, then the fields analysts join on, then the attributes.
    for key in stream.primary_key:
        columns[key] = Column(key, "VARCHAR")  # keys compare as text
    if "type" in properties:
        columns["type"] = Column("type", column_type(properties["type"]))
    if cursor is not None:
        columns[cursor] = Column(cursor, "TIMESTAMPTZ")
    for name, prop in properties.items():
        if name not in (_ATTRIBUTES, _RELATIONSHIPS, _LINKS):
            _leaf_columns(prop, (name,), name, add)
    relationships = properties.get(_RELATIONSHIPS) or {}
    for name, prop in (relationships.get("properties") or {}).items():
        _relationship_columns(name, prop, frozenset(properties), add)
    attributes = properties.get(_ATTRIBUTES) or {}
    for name, prop in (attributes.get("properties") or {}).items():
        lifted = name in properties and column_type(properties[name]) == column_type(prop)
        if not lifted:  # else the engine (or a hook) copied it to the top level: the cursor column
            _leaf_columns(prop, (_ATTRIBUTES, name), name, add)
    return TableLayout(
        stream.name,
        tuple(columns.values()),
        stream.primary_key,
        cursor,
        schema_fingerprint(schema),
        canonical_schema(schema).decode(),
        append_only=bool(stream.incremental and stream.incremental.append_only),
        shape=record_shape(schema, stream.primary_key),
    )


_Add = Callable[[Column, str], None]


def _leaf_columns(prop: JSONObject, path: tuple[str, ...], name: str, add: _Add) -> None:
    if is_declared_object(prop):
        for key, child in prop["properties"].items():
            _leaf_columns(child, (*path, key), f"{name}__{key}", add)
        return
    sql_type = column_type(prop)
    add(Column(name, sql_type, path), "__".join(path))
    for promoted in KLAVIYO_KEYS.get(path, ()) if sql_type == "JSON" else ():
        add(Column(promoted.column, promoted.sql_type, (*path, *promoted.keys), checked=False),
            "__".join((*path, *promoted.keys)))


def _relationship_columns(name: str, prop: JSONObject, top_level: frozenset[str], add: _Add) -> None:
    data = (prop.get("properties") or {}).get("data")
    if data is None:
        return
    base = name.replace("-", "_")
    path = (_RELATIONSHIPS, name, "data")
    declared = data.get("type", [])
    if "array" in ([declared] if isinstance(declared, str) else declared):  # to-many
        add(Column(f"{base.removesuffix('s')}_ids", "VARCHAR[]", path, many=True), "__".join(path))
        return
    if not is_declared_object(data):
        return
    for key, child in data["properties"].items():
        if key == "type":  # the relationship's resource type: the same on every row
            continue
        if key == "id":
            if f"{base}_id" not in top_level:  # a child's parent id, which the record carries already
                add(Column(f"{base}_id", "VARCHAR", (*path, key)), "__".join((*path, key)))
        else:
            _leaf_columns(child, (*path, key), f"{base}__{key}", add)
