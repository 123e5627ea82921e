"""How a stream's records become a DuckDB table: columns, their types and the schema fingerprint.

Top-level fields become columns typed from the stream's JSON schema: strings `VARCHAR`, `date-time`
strings `TIMESTAMPTZ`, integers `BIGINT`, numbers `DOUBLE`, booleans `BOOLEAN`; everything nested
(`attributes`, `relationships`, `links`, arrays, fields of several types) is `JSON`. JSON rather than
STRUCT because Klaviyo adds attributes without notice: a STRUCT column would need an `ALTER` (or a
rebuild) for every new key and rejects a value whose shape differs, while a JSON column takes any
shape, keeps integers wider than 64 bits as written, and still queries pleasantly
(`attributes->>'email'`, `attributes->'event_properties'->>'$value'`).

    >>> layout = table_layout(STREAMS_BY_NAME["events"], {"properties": {
    ...     "id": {"type": "string"},
    ...     "datetime": {"type": ["string", "null"], "format": "date-time"},
    ...     "attributes": {"type": "object"}}})
    >>> [(c.name, c.sql_type) for c in layout.columns]
    [('id', 'VARCHAR'), ('datetime', 'TIMESTAMPTZ'), ('attributes', 'JSON')]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import msgspec

from source_klaviyo.contracts import JSONObject
from source_klaviyo.streams import STREAMS_BY_NAME, Stream  # noqa: F401  (doctest)

# Bumped whenever the mapping below changes, so that every table is rebuilt in the new layout.
LAYOUT_VERSION = 1
BOOKKEEPING_PREFIX = "_source_klaviyo_"
STAGING_PREFIX = BOOKKEEPING_PREFIX + "staging__"
METADATA_COLUMNS: tuple[tuple[str, str], ...] = (("_extracted_at", "TIMESTAMPTZ"), ("_sync_id", "VARCHAR"))

_SCALARS = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN"}


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str

    def select_expression(self) -> str:
        """This column's value from its field's JSON text, as the batch file holds it (`Store._upsert`).

        Scalars are cast with TRY_CAST, so one odd value (an empty date, an id sent as a number) lands
        as NULL or text instead of failing the whole batch; a JSON `null` is SQL NULL in every column.
        """
        name = quote_ident(self.name)
        if self.sql_type == "JSON":
            return f"CAST(NULLIF({name}, 'null') AS JSON) AS {name}"
        text = f"json_extract_string({name}, '$')"
        if self.sql_type == "VARCHAR":
            return f"{text} AS {name}"
        return f"TRY_CAST({text} AS {self.sql_type}) AS {name}"


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

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def create_sql(self, table: str) -> str:
        columns = [f"{quote_ident(c.name)} {c.sql_type}" for c in self.columns]
        columns += [f"{quote_ident(name)} {sql_type}" for name, sql_type in METADATA_COLUMNS]
        # No PRIMARY KEY: DuckDB keeps its index in memory (~110 MB per million keys) and cannot spill
        # it; the store upserts by deleting the batch's keys before inserting (duckdb_store._upsert).
        return f"CREATE TABLE {quote_ident(table)} ({', '.join(columns)})"


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


def staging_table(stream: str) -> str:
    return STAGING_PREFIX + stream


def column_type(prop: JSONObject) -> str:
    types = prop.get("type", [])
    types = [types] if isinstance(types, str) else [t for t in types if t != "null"]
    if len(types) != 1:
        return "JSON"
    if types[0] == "string" and prop.get("format") == "date-time":
        return "TIMESTAMPTZ"
    return _SCALARS.get(types[0], "JSON")


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
    # Keys, type and cursor first: what `SELECT *` should show before the wide JSON columns.
    columns = {key: Column(key, "VARCHAR") for key in stream.primary_key}  # keys compare as text
    if "type" in properties:
        columns["type"] = Column("type", column_type(properties["type"]))
    if cursor is not None:
        columns[cursor] = Column(cursor, "TIMESTAMPTZ")
    for name, prop in properties.items():
        columns.setdefault(name, Column(name, column_type(prop)))
    return TableLayout(
        stream.name,
        tuple(columns.values()),
        stream.primary_key,
        cursor,
        schema_fingerprint(schema),
        canonical_schema(schema).decode(),
        append_only=bool(stream.incremental and stream.incremental.append_only),
    )
