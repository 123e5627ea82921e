"""The SQL that turns records (JSON text) into typed rows: one parse per record, in DuckDB.

The source is a relation of `record` (one record's JSON) and `unmapped`, the flag `Batch` gives it
(`duckdb_store.FIELD_SEPARATOR`): empty for a record of its declared shape, '1' when it found keys
or shapes the schema lacks, 'j' otherwise. Every column is one path of a single
`json_extract_string(record, [paths])`: DuckDB parses the record once per call, not once per column
(each call holds an arena of the sync's memory pool, ~2 MB, and a few times the record for a
record of megabytes). Paths are JSON pointers (`/attributes/location/city`), which need no quoting
of odd keys.

A JSON or list column (free-form objects, arrays) takes that text too, cast to JSON (a parse of the
value alone): for an object, an array, a number or a boolean it is the JSON `json_extract` would
give. Not for a JSON string (`"abc"` reads `abc`), so a flagged record is typed from the record
again with `json_extract`, per column: `Batch` flags a record whose free-form leaf holds a string
('j'), and every record it could not decode against its shape. The ids of a to-many relationship are
read from its `data` array as extracted, not from the whole record again. A second
`json_extract(record, [paths])` for every record cost ~2 µs of a ~9 µs load (docs/performance.md).

Scalars are cast with TRY_CAST, so one odd value lands as NULL instead of failing the batch; a
JSON `null` is SQL NULL in every column. Where a value was there but its column could not hold it
(a date that is not one, text in a number, a fraction in an integer, a list that is not a list),
the record is kept whole in `_raw`, as it is when `unmapped` is '1': nothing read is lost, and a
later layout can fill new columns from it.

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
    jsons = [c for c in columns if c.many or c.from_json]
    inner: list[str] = []
    if columns:
        paths = ", ".join(quote_literal(json_pointer(c.keys)) for c in columns)
        inner.append(f"json_extract_string(record, [{paths}]) AS _s")
    flagged = _flagged("_unmapped")
    if jsons:
        # Only a flagged record is parsed again (CASE evaluates a branch for its rows alone), once
        # for all its JSON columns: a call per column would hold an arena each.
        paths = ", ".join(quote_literal(json_pointer(c.keys)) for c in jsons)
        inner.append(f"CASE WHEN {_flagged('unmapped')} THEN json_extract(record, [{paths}]) END AS _j")
    inner += ["record AS _record", "unmapped AS _unmapped", *(quote_ident(name) for name in carry)]

    selects: list[str] = []
    misfits: list[str] = []
    position = {id(c): i for i, c in enumerate(jsons, start=1)}
    for i, column in enumerate(columns, start=1):
        text = f"_s[{i}]"
        if column.many or column.from_json:
            # The text is the value's JSON unless the record is flagged: then it is extracted again.
            again = f"_j[{position[id(column)]}]"
            # (a to-many `data` array's ids are read from its text as it is: no cast, a parse fewer)
            item = text if column.many else f"CAST({text} AS JSON)"
            fast, fast_misfit = _json_value(item, column, null_text=False)
            slow, slow_misfit = _json_value(again, column, null_text=True)
            value = f"CASE WHEN {flagged} THEN {slow} ELSE {fast} END"
            misfit = None if fast_misfit is None or slow_misfit is None else (
                f"CASE WHEN {flagged} THEN {slow_misfit} ELSE {fast_misfit} END")
        else:
            value, misfit = _text_value(text, column.sql_type)
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


def _flagged(flag: str) -> str:
    """Whether the row's flag column says `Batch` did not take the record as of its declared shape."""
    return f"coalesce({flag}, '') <> ''"


def _text_value(text: str, sql_type: str) -> tuple[str, str | None]:
    """(the typed value of a scalar's text, the condition under which the value did not fit)."""
    if sql_type == "VARCHAR":
        return text, None  # any JSON value has a text; objects and arrays their JSON
    value = f"TRY_CAST({text} AS {sql_type})"
    if sql_type == "BIGINT":
        # TRY_CAST rounds a fraction ('1.5' -> 2): an integer must read back as it was written.
        return value, f"({text} IS NOT NULL AND CAST({value} AS VARCHAR) IS DISTINCT FROM {text})"
    return value, f"({text} IS NOT NULL AND {value} IS NULL)"


def _json_value(item: str, column: Column, *, null_text: bool) -> tuple[str, str | None]:
    """(the typed value of a JSON item, the condition under which it did not fit). A JSON null is
    the text 'null' from `json_extract` (`null_text`), SQL NULL from `json_extract_string`."""
    if column.many:  # its ids: NULL where `data` is not a list (not included), [] where it is empty
        return f"CASE WHEN starts_with({item}, '[') THEN json_extract_string({item}, '$[*].id') END", None
    if column.sql_type == "JSON":
        return (f"NULLIF({item}, 'null')" if null_text else item), None
    value = f"TRY_CAST({item} AS {column.sql_type})"
    there = f"{item} IS NOT NULL" + (f" AND {item} <> 'null'" if null_text else "")
    return value, f"({there} AND {value} IS NULL)"
