"""The SQL that turns records (JSON text) into typed rows: one parse per kind of extraction, in DuckDB.

The source is a relation of `record` (one record's JSON) and `unmapped` ('1' when `Batch` found
keys or shapes the schema lacks). Every scalar column is one path of a single
`json_extract_string(record, [paths])`, every JSON or list column one of a single
`json_extract(record, [paths])`: DuckDB parses the record once per call, not once per column, and
each call holds an arena of the sync's memory pool (~2 MB, and a few times the record for a record
of megabytes), so there are two. The ids of a to-many relationship are read from its `data` array
as the second call returned it, not from the whole record again. Paths are JSON pointers
(`/attributes/location/city`), which need no quoting of odd keys.

Scalars are cast with TRY_CAST, so one odd value lands as NULL instead of failing the batch; a
JSON `null` is SQL NULL in every column. Where a value was there but its column could not hold it
(a date that is not one, text in a number, a fraction in an integer, a list that is not a list),
the record is kept whole in `_raw`, as it is when `unmapped`: nothing read is lost, and a later
layout can fill new columns from it.

    >>> from source_klaviyo.sync.layout import Column
    >>> print(typed_select([Column("id", "VARCHAR"), Column("n", "BIGINT", ("attributes", "n"))],
    ...                    "batch", keep_raw=False))  # doctest: +NORMALIZE_WHITESPACE
    SELECT _s[1] AS "id", TRY_CAST(_s[2] AS BIGINT) AS "n",
           CASE WHEN _unmapped = '1' OR (_s[2] IS NOT NULL
                AND CAST(TRY_CAST(_s[2] AS BIGINT) AS VARCHAR) IS DISTINCT FROM _s[2])
           THEN CAST(_record AS JSON) END AS "_raw"
    FROM (SELECT json_extract_string(record, ['/id', '/attributes/n']) AS _s, record AS _record,
                 unmapped AS _unmapped FROM batch)
"""

from __future__ import annotations

from collections.abc import Sequence

from source_klaviyo.sync.layout import RAW_COLUMN, Column, quote_ident, quote_literal


def json_pointer(keys: Sequence[str]) -> str:
    """`/a/b` for keys a, b (RFC 6901: `~` is `~0` and `/` is `~1` inside a key).

    >>> json_pointer(["attributes", "$value", "a/b"])
    '/attributes/$value/a~1b'
    """
    return "".join("/" + key.replace("~", "~0").replace("/", "~1") for key in keys)


def typed_select(columns: Sequence[Column], source: str, *, keep_raw: bool,
                 carry: Sequence[str] = ()) -> str:
    """SELECT of each column of `columns` (by name), then `_raw`, from `source`; the `carry`
    columns of the source are passed through after them."""
    texts = [c for c in columns if not c.from_json and not c.many]
    manys = [c for c in columns if c.many]
    # A to-many relationship's `data` is read as JSON too: its ids are NULL where it is not a list
    # (not included in the answer), [] where it is an empty one.
    jsons = [c for c in columns if c.from_json and not c.many] + manys
    inner: list[str] = []
    if texts:
        paths = ", ".join(quote_literal(json_pointer(c.keys)) for c in texts)
        inner.append(f"json_extract_string(record, [{paths}]) AS _s")
    if jsons:
        paths = ", ".join(quote_literal(json_pointer(c.keys)) for c in jsons)
        inner.append(f"json_extract(record, [{paths}]) AS _j")
    inner += ["record AS _record", "unmapped AS _unmapped", *(quote_ident(name) for name in carry)]

    selects: list[str] = []
    misfits: list[str] = []
    position = {id(c): i + 1 for i, c in enumerate(texts)} | {id(c): i + 1 for i, c in enumerate(jsons)}
    for column in columns:
        if column.many:
            data = f"_j[{position[id(column)]}]"  # the ids are read from it, not from the whole record again
            ids = f"json_extract_string({data}, '$[*].id')"
            value, misfit = f"CASE WHEN starts_with({data}, '[') THEN {ids} END", None
        elif column.from_json:
            value, misfit = _json_value(f"_j[{position[id(column)]}]", column.sql_type)
        else:
            value, misfit = _text_value(f"_s[{position[id(column)]}]", column.sql_type)
        selects.append(f"{value} AS {quote_ident(column.name)}")
        if misfit is not None and column.checked:
            misfits.append(misfit)
    raw = "CAST(_record AS JSON)"
    if not keep_raw:
        kept = " OR ".join(["_unmapped = '1'", *misfits])
        raw = f"CASE WHEN {kept} THEN {raw} END"
    selects.append(f"{raw} AS {quote_ident(RAW_COLUMN)}")
    selects += [quote_ident(name) for name in carry]
    return f"SELECT {', '.join(selects)} FROM (SELECT {', '.join(inner)} FROM {source})"  # noqa: S608 - names via quote_ident, literals via quote_literal


def _text_value(text: str, sql_type: str) -> tuple[str, str | None]:
    """(the typed value of a scalar's text, the condition under which the value did not fit)."""
    if sql_type == "VARCHAR":
        return text, None  # any JSON value has a text; objects and arrays their JSON
    value = f"TRY_CAST({text} AS {sql_type})"
    if sql_type == "BIGINT":
        # TRY_CAST rounds a fraction ('1.5' -> 2): an integer must read back as it was written.
        return value, f"({text} IS NOT NULL AND CAST({value} AS VARCHAR) IS DISTINCT FROM {text})"
    return value, f"({text} IS NOT NULL AND {value} IS NULL)"


def _json_value(item: str, sql_type: str) -> tuple[str, str | None]:
    if sql_type == "JSON":
        return f"NULLIF({item}, 'null')", None
    value = f"TRY_CAST({item} AS {sql_type})"
    return value, f"({item} IS NOT NULL AND {item} <> 'null' AND {value} IS NULL)"
