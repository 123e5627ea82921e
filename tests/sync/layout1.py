"""A DuckDB file in layout 1 (3.0.0 before typed columns), made from a file synced with `keep_raw`.

Layout 1 had a column per top-level field of the stream's schema: the primary key `VARCHAR`, `type`,
the cursor and `date-time` strings `TIMESTAMPTZ`, other scalars `VARCHAR`/`BIGINT`/`DOUBLE`/`BOOLEAN`,
everything nested (`attributes`, `relationships`, `links`, arrays, several types) `JSON`; then
`_extracted_at` and `_sync_id`; fields the schema lacked as more `JSON` columns. Its bookkeeping
recorded `{"layout": 1, "schema": ...}` and its fingerprint. This module writes those rules down
again, independently of the connector, and applies them to the records a sync kept in `_raw`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb

from source_klaviyo.schemas import load_schema
from source_klaviyo.streams import STREAMS_BY_NAME

_SCALARS = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN"}


def old_type(prop: dict) -> str:
    declared = prop.get("type", [])
    types = [declared] if isinstance(declared, str) else [t for t in declared if t != "null"]
    if len(types) != 1:
        return "JSON"
    if types[0] == "string" and prop.get("format") == "date-time":
        return "TIMESTAMPTZ"
    return _SCALARS.get(types[0], "JSON")


def old_columns(stream_name: str, schema: dict) -> list[tuple[str, str]]:
    stream = STREAMS_BY_NAME[stream_name]
    properties = schema.get("properties") or {}
    columns = {key: "VARCHAR" for key in stream.primary_key}
    if "type" in properties:
        columns["type"] = old_type(properties["type"])
    if stream.incremental:
        columns[stream.incremental.cursor] = "TIMESTAMPTZ"
    for name, prop in properties.items():
        columns.setdefault(name, old_type(prop))
    return list(columns.items())


def layout1_schema_json(schema: dict) -> str:
    return json.dumps({"layout": 1, "schema": schema}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def to_layout_1(db: Path, streams: list[str]) -> None:
    """Rewrite `streams`' tables of `db` (synced with keep_raw) in layout 1, bookkeeping included."""
    with duckdb.connect(str(db)) as con:
        con.execute("SET TimeZone = 'UTC'")
        for name in streams:
            schema = load_schema(STREAMS_BY_NAME[name].schema_name)
            columns = old_columns(name, schema)
            (missing,) = con.execute(f'SELECT count(*) FROM "{name}" WHERE _raw IS NULL').fetchone() or (1,)
            assert missing == 0, f"{name}: sync with keep_raw first"
            keys = con.execute(f'SELECT DISTINCT unnest(json_keys(_raw)) FROM "{name}"').fetchall()
            extra = {key for (key,) in keys} - {column for column, _type in columns}
            columns += [(key, "JSON") for key in sorted(extra) if not key.startswith("_")]
            selects = []
            for column, sql_type in columns:
                path, quoted = "$." + json.dumps(column), f'"{column}"'
                if sql_type == "JSON":
                    selects.append(f"NULLIF(json_extract(_raw, '{path}'), 'null') AS {quoted}")
                else:
                    selects.append(f"TRY_CAST(json_extract_string(_raw, '{path}') AS {sql_type}) AS {quoted}")
            selected = ", ".join(selects)
            con.execute(f'CREATE TABLE "layout1_{name}" AS '
                        f'SELECT {selected}, _extracted_at, _sync_id FROM "{name}"')
            con.execute(f'DROP TABLE "{name}"')
            con.execute(f'ALTER TABLE "layout1_{name}" RENAME TO "{name}"')
            stored = layout1_schema_json(schema)
            fingerprint = hashlib.sha256(stored.encode()).hexdigest()[:16]
            con.execute("UPDATE _source_klaviyo_versions SET schema_json = ?, schema_fingerprint = ? "
                        "WHERE stream = ?", [stored, fingerprint, name])
            con.execute("UPDATE _source_klaviyo_state SET schema_fingerprint = ? WHERE stream = ?",
                        [fingerprint, name])
        for (view,) in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall():
            con.execute(f'DROP VIEW "{view}"')  # layout 1 had none
