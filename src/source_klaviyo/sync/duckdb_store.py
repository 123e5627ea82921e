"""The DuckDB file: stream tables, bookkeeping tables, and the one transaction per checkpoint.

Every write is `write_batch`: records bulk-loaded from newline-delimited JSON, upserted by primary key,
and the stream's state saved, all in one transaction. A crash therefore leaves each table exactly as
of its last committed state, and the next run, starting from that state, re-reads at most what came
after it; the upsert makes the re-read harmless.

A full refresh writes into a staging table (with its own state slot, so an interrupted refresh can
continue) and `publish` swaps it in, in one transaction, once the stream completed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import duckdb
import msgspec

from source_klaviyo.contracts import JSON, JSONObject
from source_klaviyo.errors import ConfigError
from source_klaviyo.json_codec import dumps, loads
from source_klaviyo.sync.layout import Column, TableLayout, quote_ident, staging_table

STATE_TABLE = "_source_klaviyo_state"
SYNCS_TABLE = "_source_klaviyo_syncs"
VERSIONS_TABLE = "_source_klaviyo_versions"

# The bookkeeping tables as SQL identifiers (see `quote_ident`).
_STATE = quote_ident(STATE_TABLE)
_SYNCS = quote_ident(SYNCS_TABLE)
_VERSIONS = quote_ident(VERSIONS_TABLE)

Slot = Literal["live", "staging"]

_BOOKKEEPING_DDL = (
    f"""CREATE TABLE IF NOT EXISTS {_STATE} (
        stream VARCHAR, slot VARCHAR, state JSON, schema_fingerprint VARCHAR, sync_id VARCHAR,
        checkpoints BIGINT, updated_at TIMESTAMPTZ, PRIMARY KEY (stream, slot))""",
    f"""CREATE TABLE IF NOT EXISTS {_SYNCS} (
        sync_id VARCHAR PRIMARY KEY, connector_version VARCHAR, command VARCHAR, started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ, status VARCHAR, summary JSON)""",
    f"""CREATE TABLE IF NOT EXISTS {_VERSIONS} (
        sync_id VARCHAR, stream VARCHAR, connector_version VARCHAR, schema_fingerprint VARCHAR,
        recorded_at TIMESTAMPTZ, schema_json JSON, PRIMARY KEY (sync_id, stream))""",
    # Files written before the schema itself was recorded: their rows have no schema (a reset).
    f"ALTER TABLE {_VERSIONS} ADD COLUMN IF NOT EXISTS schema_json JSON",
)


# The sync's CPU and memory budget (docs/performance.md, "sync"): one thread, a 32 MB buffer pool,
# and zstd for every column that supports it (half the checkpoint CPU of the default analysis, and a
# file about a third the size). The pool holds a batch being loaded and the rows appended since the
# last checkpoint; 16 MB ran out of memory loading a batch.
_SETTINGS = (
    "SET threads = 1",
    "SET preserve_insertion_order = false",
    "SET memory_limit = '32MB'",
    "SET force_compression = 'zstd'",
)
# Rows per row group of the tables we write. DuckDB's default (122,880) is ~120 MB of events: every
# checkpoint recompressed the open row group from the start, and with fewer checkpoints the appended
# rows spilled to disk and were read back. At 16,384 a batch fills whole row groups, which the
# default checkpoint (per 16 MB of WAL) writes once.
ROW_GROUP_SIZE = 16_384
_ALIAS = quote_ident("sync_file")


@dataclass
class Target:
    """Where one stream's records go during this sync: its live table, or its staging table."""

    layout: TableLayout
    slot: Slot
    extra_columns: list[str] = field(default_factory=list)  # top-level fields the schema lacks
    # Rows re-read unchanged are told apart from updates only where the table had rows to begin
    # with (an incremental run); a staging table is compared with the live one when published.
    classify_changes: bool = False
    has_rows: bool = True  # False while the table is known to be empty: nothing to replace
    # Every key this sync writes is new: the table was empty when it began and the stream is
    # append-only (one read meets each record once). Batches are then inserted, never upserted:
    # a delete by key scans the whole table, once per batch.
    keys_once: bool = False

    @property
    def stream(self) -> str:
        return self.layout.stream

    @property
    def table(self) -> str:
        return self.layout.stream if self.slot == "live" else staging_table(self.layout.stream)


@dataclass
class BatchCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0  # keys re-read with the cursor they already had (inclusive lower bounds)
    removed: int = 0  # full refresh only: keys gone since the previous table
    skipped: int = 0  # records without a primary key value

    def add(self, other: BatchCounts) -> None:
        self.new += other.new
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.removed += other.removed
        self.skipped += other.skipped


# Each batch row is the JSON text of each top-level field, in the batch's column order, separated by
# this byte: JSON never holds a raw control character (msgspec refuses or escapes them), so
# no field needs quoting and DuckDB's CSV reader splits rows without parsing the JSON inside them.
FIELD_SEPARATOR = b"\x1f"

# A row's primary key as the table compares it: the text of its one key field, or of each.
RowKey = str | tuple[str, ...]
# A record's top-level fields, each as its JSON text (bytes written by us, or msgspec's slice of the body).
FieldTexts = Mapping[str, bytes | msgspec.Raw]
T = TypeVar("T")


class Batch:
    """One stream's records waiting for their transaction, one row per key, as delimited JSON text.

    The last version of a key read wins (a record updated during the read arrives twice). A row holds
    each top-level field's JSON text exactly as read (only the top level is decoded), so a batch is
    about its JSON size and DuckDB parses nothing it does not type: see `Store._upsert`.
    """

    __slots__ = ("_initial", "_known", "bytes", "columns", "key", "longest", "padded", "rows", "skipped")

    def __init__(self, key: tuple[str, ...], columns: Iterable[str]) -> None:
        self.key = key
        self.rows: dict[RowKey, bytes] = {}
        self.bytes = 0
        self.longest = 0  # bytes of the longest row: the CSV reader's line limit is sized from it
        self.skipped = 0  # records without a primary key value
        # The table's columns, then top-level fields first seen in this batch (rows written before a
        # field appeared are shorter; the reader pads them with NULLs).
        self.columns = list(columns)
        self._initial = len(self.columns)
        self._known = set(self.columns)
        self.padded = False

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def new_columns(self) -> list[str]:
        return self.columns[self._initial :]

    def add(self, records: Iterable[JSONObject]) -> None:
        for record in records:
            key = self._key(record, _identity)
            if key is not None:
                self._put(key, {name: dumps(value) for name, value in record.items()})

    def add_raw(self, records: Iterable[bytes]) -> None:
        """Records as the JSON objects Klaviyo sent (the engine's raw path): only the top level is
        decoded, each field's text kept byte for byte."""
        for line in records:
            fields: FieldTexts = _decode_top_level(line)
            if _spans_lines(line):
                # Whitespace between tokens (a pretty-printed body) would split the row: re-encode
                # those fields.
                fields = {name: _compact(raw) for name, raw in fields.items()}
            key = self._key(fields, loads)
            if key is not None:
                self._put(key, fields)

    def _key(self, fields: Mapping[str, T], decode: Callable[[T], JSON]) -> RowKey | None:
        """The record's primary key as the table compares it (text), or None (counted as skipped)."""
        if len(self.key) == 1:
            value = fields.get(self.key[0])
            if value is not None:
                value = decode(value)
            if value is None:
                self.skipped += 1
                return None
            return value if value.__class__ is str else str(value)  # 1 and "1" are the same row
        values = [fields.get(name) for name in self.key]
        values = [None if v is None else decode(v) for v in values]
        if None in values:
            self.skipped += 1
            return None
        return tuple(v if v.__class__ is str else str(v) for v in values)

    def _put(self, key: RowKey, fields: FieldTexts) -> None:
        if not self._known.issuperset(fields):
            self._grow(fields)
        row = FIELD_SEPARATOR.join([fields.get(name, b"") for name in self.columns]) + b"\n"
        previous = self.rows.get(key)
        if previous is not None:
            self.bytes -= len(previous)
        self.rows[key] = row
        self.bytes += len(row)
        if len(row) > self.longest:
            self.longest = len(row)

    def _grow(self, fields: FieldTexts) -> None:
        # Klaviyo may add a top-level field before our schema knows it: it gets a JSON column.
        # Names starting with "_" would shadow our metadata columns and are dropped.
        for name in fields:
            if name not in self._known:
                self._known.add(name)
                if not name.startswith("_"):
                    self.columns.append(name)
                    self.padded = bool(self.rows)


def _spans_lines(text: bytes) -> bool:
    return b"\n" in text or b"\r" in text


def _compact(raw: bytes | msgspec.Raw) -> bytes | msgspec.Raw:
    text = bytes(raw)
    if not _spans_lines(text):
        return raw
    return dumps(loads(text))


def _literal(text: str) -> str:
    """A string literal, `'` doubled: for the few values written into a statement rather than passed
    as a parameter (the file paths of SET and ATTACH, the column names read_csv is given).

    >>> _literal("it's")
    "'it''s'"
    """
    return "'" + text.replace("'", "''") + "'"


def _identity(value: T) -> T:
    return value


_decode_top_level = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


class Store:
    """One open DuckDB file; single writer (DuckDB locks the file for the process holding it)."""

    def __init__(self, path: str | Path, *, sync_id: str, connector_version: str) -> None:
        self.path = Path(path)
        self.sync_id = sync_id
        self.connector_version = connector_version
        # The file is attached rather than opened, because the row group size is an ATTACH option.
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        for setting in _SETTINGS:
            self.con.execute(setting)
        # Where DuckDB spills when it opens a file itself (an in-memory database would use ./.tmp).
        self.con.execute(f"SET temp_directory = {_literal(str(self.path) + '.tmp')}")
        try:
            self.con.execute(
                f"ATTACH {_literal(str(self.path))} AS {_ALIAS} (ROW_GROUP_SIZE {ROW_GROUP_SIZE})"
            )
        except duckdb.IOException as error:
            self.con.close()
            held = "lock" in str(error).lower()
            hint = " Is another sync or a DuckDB shell using it?" if held else ""
            raise ConfigError(f"cannot open {self.path}: {error}.{hint}") from None
        self.con.execute(f"USE {_ALIAS}")
        for ddl in _BOOKKEEPING_DDL:
            self.con.execute(ddl)
        self._tmpdir = tempfile.TemporaryDirectory(prefix="source-klaviyo-sync-")
        self._batch_file = os.path.join(self._tmpdir.name, "batch.txt")
        self._versioned: set[str] = set()

    def close(self) -> None:
        self.con.close()
        self._tmpdir.cleanup()

    # -- reading bookkeeping ------------------------------------------------------------------

    def table_exists(self, table: str) -> bool:
        row = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() "
            "AND table_schema = 'main' AND table_name = ?",
            [table],
        ).fetchall()
        return bool(row[0][0])

    def saved_state(self, stream: str, slot: Slot) -> tuple[JSONObject, str | None] | None:
        """(state, schema fingerprint) of a slot, or None when that slot holds nothing."""
        rows = self.con.execute(
            f"SELECT state, schema_fingerprint FROM {_STATE} WHERE stream = ? AND slot = ?", [stream, slot]  # noqa: S608 - names via quote_ident
        ).fetchall()
        if not rows:
            return None
        row = rows[0]
        return (loads(row[0]) if row[0] is not None else {}), row[1]

    def live_fingerprint(self, stream: str) -> str | None:
        return self.live_version(stream)[1]

    def live_version(self, stream: str) -> tuple[str | None, str | None]:
        """(connector version, schema fingerprint) the stream's table was last written with."""
        row = self.con.execute(
            f"SELECT connector_version, schema_fingerprint FROM {_VERSIONS} WHERE stream = ? "  # noqa: S608 - names via quote_ident
            "ORDER BY recorded_at DESC LIMIT 1",
            [stream],
        ).fetchall()
        return (row[0][0], row[0][1]) if row else (None, None)

    def live_schema(self, stream: str) -> JSONObject | None:
        """The canonical schema JSON ({"layout", "schema"}) the stream's table was last written
        with, if recorded."""
        row = self.con.execute(
            f"SELECT schema_json FROM {_VERSIONS} WHERE stream = ? ORDER BY recorded_at DESC LIMIT 1",  # noqa: S608 - names via quote_ident
            [stream],
        ).fetchall()
        return loads(row[0][0]) if row and row[0][0] is not None else None

    def columns_of(self, table: str) -> list[str]:
        rows = self.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_catalog = current_database() "
            "AND table_schema = 'main' "
            "AND table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
        return [row[0] for row in rows]

    def count(self, table: str) -> int:
        return int(self.con.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchall()[0][0])  # noqa: S608 - names via quote_ident

    # -- preparing targets --------------------------------------------------------------------

    def open_target(self, layout: TableLayout, slot: Slot, *, fresh: bool) -> Target:
        """The table records of `layout.stream` go to; a fresh staging table starts empty."""
        target = Target(layout, slot)
        self.con.execute("BEGIN")
        try:
            if fresh and slot == "staging":
                self.con.execute(f"DROP TABLE IF EXISTS {quote_ident(target.table)}")
                self.con.execute(
                    f"DELETE FROM {_STATE} WHERE stream = ? AND slot = 'staging'", [layout.stream]  # noqa: S608 - names via quote_ident
                )
            if not self.table_exists(target.table):
                self.con.execute(layout.create_sql(target.table))
            else:
                # A live table continued after an additive schema change: the new fields' columns.
                present = set(self.columns_of(target.table))
                for column in layout.columns:
                    if column.name not in present:
                        self.con.execute(
                            f"ALTER TABLE {quote_ident(target.table)} "
                            f"ADD COLUMN {quote_ident(column.name)} {column.sql_type}"
                        )
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        target.has_rows = self.count(target.table) > 0
        target.classify_changes = slot == "live" and target.has_rows
        target.keys_once = layout.append_only and not target.has_rows
        known = set(layout.column_names)
        target.extra_columns = [
            c for c in self.columns_of(target.table) if c not in known and not c.startswith("_")
        ]
        return target

    def drop_staging(self, stream: str) -> None:
        self.con.execute("BEGIN")
        self.con.execute(f"DROP TABLE IF EXISTS {quote_ident(staging_table(stream))}")
        self.con.execute(f"DELETE FROM {_STATE} WHERE stream = ? AND slot = 'staging'", [stream])  # noqa: S608 - names via quote_ident
        self.con.execute("COMMIT")

    # -- writing ------------------------------------------------------------------------------

    def new_batch(self, target: Target) -> Batch:
        return Batch(target.layout.primary_key, [*target.layout.column_names, *target.extra_columns])

    def write_batch(self, target: Target, batch: Batch, state: JSONObject | None) -> BatchCounts:
        """Upsert the batch's records and, when given, save `state`, in one transaction."""
        counts = BatchCounts(skipped=batch.skipped)
        if batch.rows:
            with open(self._batch_file, "wb") as out:
                out.writelines(batch.rows.values())
        self.con.execute("BEGIN")
        try:
            if batch.rows:
                self._add_unknown_columns(target, batch.new_columns)
                self._upsert(target, batch, counts)
            if state is not None:
                self._save_state(target, state)
            if target.slot == "live":
                self._record_version(target.layout)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return counts

    def publish(self, target: Target, final_state: JSONObject | None) -> BatchCounts:
        """Swap a complete staging table in for the live one, with its state, in one transaction."""
        assert target.slot == "staging"
        layout, live, staging = target.layout, quote_ident(target.stream), quote_ident(target.table)
        counts = BatchCounts()
        self.con.execute("BEGIN")
        try:
            if self.table_exists(target.stream):
                joined = " AND ".join(f"s.{quote_ident(k)} = l.{quote_ident(k)}" for k in layout.primary_key)
                changed = (
                    f"s.{quote_ident(layout.cursor)} IS DISTINCT FROM l.{quote_ident(layout.cursor)}"
                    if layout.cursor
                    else "false"
                )
                key = quote_ident(layout.primary_key[0])
                (row,) = self.con.execute(
                    f"""SELECT count(*) FILTER (WHERE l.{key} IS NULL),
                               count(*) FILTER (WHERE s.{key} IS NULL),
                               count(*) FILTER (WHERE s.{key} IS NOT NULL AND l.{key} IS NOT NULL
                                                  AND {changed})
                        FROM {staging} s FULL OUTER JOIN {live} l ON {joined}"""  # noqa: S608 - names via quote_ident
                ).fetchall()
                counts.new, counts.removed, counts.updated = int(row[0]), int(row[1]), int(row[2])
                self.con.execute(f"DROP TABLE {live}")
            else:
                counts.new = self.count(target.table)
            self.con.execute(f"ALTER TABLE {staging} RENAME TO {live}")
            self.con.execute(f"DELETE FROM {_STATE} WHERE stream = ?", [target.stream])  # noqa: S608 - names via quote_ident
            if final_state is not None and layout.cursor is not None:
                target.slot = "live"
                self._save_state(target, final_state)
            target.slot = "live"
            self._record_version(layout)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            target.slot = "staging"
            raise
        return counts

    def _add_unknown_columns(self, target: Target, names: list[str]) -> None:
        # Klaviyo may add a top-level field before our schema knows it: keep it, as a JSON column.
        for name in names:
            self.con.execute(f"ALTER TABLE {quote_ident(target.table)} ADD COLUMN {quote_ident(name)} JSON")
            target.extra_columns.append(name)

    def _upsert(self, target: Target, batch: Batch, counts: BatchCounts) -> None:
        # No PRIMARY KEY constraint (its index stays in memory, ~110 MB per million keys): the rows of
        # the batch's keys are deleted, then the batch inserted; the batch holds each key once.
        layout, table = target.layout, quote_ident(target.table)
        typed = {column.name: column for column in layout.columns}
        columns = [typed.get(name) or Column(name, "JSON") for name in batch.columns]
        # Every field is read as text and typed in SQL. The line limit is sized to the longest row and
        # the reader's buffer to twice that: with DuckDB's defaults (2 MB lines, 32 MB buffer) the
        # buffer alone would take most of the sync's memory limit.
        read_columns = "{" + ", ".join(f"{_literal(c.name)}: 'VARCHAR'" for c in columns) + "}"
        path = _literal(self._batch_file)
        selects = ", ".join(c.select_expression() for c in columns)
        line_limit = max(1 << 20, 1 << (batch.longest + 1).bit_length())
        separator = FIELD_SEPARATOR.decode()
        source = (
            f"SELECT {selects} FROM read_csv({path}, "  # noqa: S608 - names via quote_ident, path via _literal
            f"delim = '{separator}', quote = '', escape = '', header = false, auto_detect = false, "
            f"new_line = '\\n', null_padding = {str(batch.padded).lower()}, columns = {read_columns}, "
            f"max_line_size = {line_limit}, buffer_size = {2 * line_limit})"
        )
        names = ", ".join(quote_ident(c.name) for c in columns)
        if target.keys_once:  # nothing to replace or compare: straight in
            self.con.execute(
                f"INSERT INTO {table} ({names}, _extracted_at, _sync_id) SELECT *, now(), ? FROM ({source})",  # noqa: S608 - names via quote_ident
                [self.sync_id],
            )
            target.has_rows = True
            counts.new = len(batch)
            return
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE _batch AS {source}")
        joined = " AND ".join(f"b.{quote_ident(k)} = t.{quote_ident(k)}" for k in layout.primary_key)
        if target.classify_changes and layout.cursor is not None:
            (row,) = self.con.execute(
                f"SELECT count(*) FROM _batch b JOIN {table} t ON {joined} "  # noqa: S608 - names via quote_ident
                f"WHERE b.{quote_ident(layout.cursor)} IS NOT DISTINCT FROM t.{quote_ident(layout.cursor)}"
            ).fetchall()
            counts.unchanged = int(row[0])
        replaced = 0
        if target.has_rows:
            (row,) = self.con.execute(f"DELETE FROM {table} t USING _batch b WHERE {joined}").fetchall()  # noqa: S608 - names via quote_ident
            replaced = int(row[0])
        self.con.execute(
            f"INSERT INTO {table} ({names}, _extracted_at, _sync_id) SELECT {names}, now(), ? FROM _batch",  # noqa: S608 - names via quote_ident
            [self.sync_id],
        )
        target.has_rows = True
        counts.new = len(batch) - replaced
        counts.updated = replaced - counts.unchanged
        self.con.execute("DROP TABLE _batch")

    def _save_state(self, target: Target, state: JSONObject) -> None:
        self.con.execute(
            f"""INSERT INTO {_STATE} VALUES (?, ?, ?, ?, ?, 1, now())
                ON CONFLICT (stream, slot) DO UPDATE SET state = excluded.state,
                    schema_fingerprint = excluded.schema_fingerprint, sync_id = excluded.sync_id,
                    checkpoints = {_STATE}.checkpoints + 1, updated_at = excluded.updated_at""",  # noqa: S608 - names via quote_ident
            [target.stream, target.slot, dumps(state).decode(), target.layout.fingerprint, self.sync_id],
        )

    def _record_version(self, layout: TableLayout) -> None:
        if layout.stream in self._versioned:
            return
        self.con.execute(
            f"INSERT OR REPLACE INTO {_VERSIONS} (sync_id, stream, connector_version, schema_fingerprint, "  # noqa: S608 - names via quote_ident
            "recorded_at, schema_json) VALUES (?, ?, ?, ?, now(), ?)",
            [
                self.sync_id,
                layout.stream,
                self.connector_version,
                layout.fingerprint,
                layout.schema_json or None,
            ],
        )
        self._versioned.add(layout.stream)

    # -- sync log -----------------------------------------------------------------------------

    def sync_started(self, command: str) -> None:
        self.con.execute(
            f"INSERT OR REPLACE INTO {_SYNCS} VALUES (?, ?, ?, now(), NULL, 'RUNNING', NULL)",  # noqa: S608 - names via quote_ident
            [self.sync_id, self.connector_version, command],
        )

    def sync_finished(self, status: str, summary: JSONObject) -> None:
        self.con.execute(
            f"UPDATE {_SYNCS} SET finished_at = now(), status = ?, summary = ? WHERE sync_id = ?",  # noqa: S608 - names via quote_ident
            [status, dumps(summary).decode(), self.sync_id],
        )
