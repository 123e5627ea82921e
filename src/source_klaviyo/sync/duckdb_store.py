"""The DuckDB file: stream tables, bookkeeping tables, and the one transaction per checkpoint.

Every write is `write_batch`: records bulk-loaded from newline-delimited JSON, upserted by primary key,
and the stream's state saved, all in one transaction. A crash therefore leaves each table exactly as
of its last committed state, and the next run, starting from that state, re-reads at most what came
after it; the upsert makes the re-read harmless.

A full refresh writes into a staging table (with its own state slot, so an interrupted refresh can
continue) and `publish` swaps it in, in one transaction, once the stream completed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import msgspec
import orjson

from source_klaviyo.errors import ConfigError
from source_klaviyo.sync.layout import Column, TableLayout, quote, staging_table

STATE_TABLE = "_source_klaviyo_state"
SYNCS_TABLE = "_source_klaviyo_syncs"
VERSIONS_TABLE = "_source_klaviyo_versions"

Slot = Literal["live", "staging"]

_BOOKKEEPING_DDL = (
    f"""CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
        stream VARCHAR, slot VARCHAR, state JSON, schema_fingerprint VARCHAR, sync_id VARCHAR,
        checkpoints BIGINT, updated_at TIMESTAMPTZ, PRIMARY KEY (stream, slot))""",
    f"""CREATE TABLE IF NOT EXISTS {SYNCS_TABLE} (
        sync_id VARCHAR PRIMARY KEY, connector_version VARCHAR, command VARCHAR, started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ, status VARCHAR, summary JSON)""",
    f"""CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (
        sync_id VARCHAR, stream VARCHAR, connector_version VARCHAR, schema_fingerprint VARCHAR,
        recorded_at TIMESTAMPTZ, schema_json JSON, PRIMARY KEY (sync_id, stream))""",
    # Files written before the schema itself was recorded: their rows have no schema (a reset).
    f"ALTER TABLE {VERSIONS_TABLE} ADD COLUMN IF NOT EXISTS schema_json JSON",
)


# The sync's CPU and memory budget (docs/performance.md, "sync"): one thread, a bounded buffer pool,
# a checkpoint per ~256 MB of WAL (a checkpoint per 16 MB, the default, recompressed the table's
# last row group over and over), and zstd for every column that supports it (half the checkpoint
# CPU of the default analysis, and a file about a third the size).
_SETTINGS = (
    "SET threads = 1",
    "SET preserve_insertion_order = false",
    "SET memory_limit = '128MB'",  # 64 MB ran out of memory on events_detailed batches
    "SET checkpoint_threshold = '256MB'",
    "SET force_compression = 'zstd'",
)


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


def dumps_line(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record)
    except TypeError:
        # orjson refuses integers beyond 64 bits; the stdlib writes them digit for digit.
        return json.dumps(record, separators=(",", ":"), default=str).encode()


class Batch:
    """One stream's records waiting for their transaction, serialized at once: NDJSON lines, one per key.

    The last version of a key read wins (a record updated during the read arrives twice). Holding
    bytes rather than dicts keeps a batch at about its JSON size.
    """

    __slots__ = ("bytes", "key", "known", "lines", "longest", "skipped", "unknown")

    def __init__(self, key: tuple[str, ...], known: Iterable[str]) -> None:
        self.key = key
        self.lines: dict[Any, bytes] = {}
        self.bytes = 0
        self.longest = 0  # bytes of the longest line: read_json's buffer is sized from it
        self.skipped = 0  # records without a primary key value
        self.known = frozenset(known)  # top-level fields the table has a column for
        self.unknown: set[str] = set()

    def __len__(self) -> int:
        return len(self.lines)

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            try:
                line = orjson.dumps(record)
            except TypeError:
                # orjson refuses integers beyond 64 bits; the stdlib writes them digit for digit.
                line = json.dumps(record, separators=(",", ":"), default=str).encode()
            self._put(record, line, _identity)

    def add_raw(self, records: Iterable[bytes]) -> None:
        """Records as the JSON objects Klaviyo sent (the engine's raw path): kept byte for byte; only
        the top level is decoded, its values left raw, for the key and the field names."""
        for line in records:
            self._put(_decode_top_level(line), line, _decode_json)

    def _put(self, fields: dict[str, Any], line: bytes, decode: Callable[[Any], Any]) -> None:
        if len(self.key) == 1:
            value = fields.get(self.key[0])
            if value is not None:
                value = decode(value)
            if value is None:
                self.skipped += 1
                return
            if value.__class__ is not str:
                value = str(value)  # keys are VARCHAR columns: 1 and "1" are the same row
        else:
            values = [fields.get(name) for name in self.key]
            values = [None if v is None else decode(v) for v in values]
            if None in values:
                self.skipped += 1
                return
            value = tuple(v if v.__class__ is str else str(v) for v in values)
        self.lines[value] = line
        self.bytes += len(line)
        if len(line) > self.longest:
            self.longest = len(line)
        if not self.known.issuperset(fields):
            self.unknown.update(name for name in fields if name not in self.known)


def _identity(value: Any) -> Any:
    return value


_decode_top_level = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_decode_json = msgspec.json.decode


class Store:
    """One open DuckDB file; single writer (DuckDB locks the file for the process holding it)."""

    def __init__(self, path: str | Path, *, sync_id: str, connector_version: str) -> None:
        self.path = Path(path)
        self.sync_id = sync_id
        self.connector_version = connector_version
        try:
            self.con = duckdb.connect(str(self.path))
        except duckdb.IOException as error:
            raise ConfigError(
                f"cannot open {self.path}: {error}. Is another sync or a DuckDB shell using it?"
            ) from None
        self.con.execute("SET TimeZone = 'UTC'")
        for setting in _SETTINGS:
            self.con.execute(setting)
        for ddl in _BOOKKEEPING_DDL:
            self.con.execute(ddl)
        self._tmpdir = tempfile.TemporaryDirectory(prefix="source-klaviyo-sync-")
        self._batch_file = os.path.join(self._tmpdir.name, "batch.ndjson")
        self._versioned: set[str] = set()

    def close(self) -> None:
        self.con.close()
        self._tmpdir.cleanup()

    # -- reading bookkeeping ------------------------------------------------------------------

    def table_exists(self, table: str) -> bool:
        row = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?",
            [table],
        ).fetchall()
        return bool(row[0][0])

    def saved_state(self, stream: str, slot: Slot) -> tuple[dict[str, Any], str | None] | None:
        """(state, schema fingerprint) of a slot, or None when that slot holds nothing."""
        rows = self.con.execute(
            f"SELECT state, schema_fingerprint FROM {STATE_TABLE} WHERE stream = ? AND slot = ?", [stream, slot]
        ).fetchall()
        if not rows:
            return None
        row = rows[0]
        return (json.loads(row[0]) if row[0] is not None else {}), row[1]

    def live_fingerprint(self, stream: str) -> str | None:
        return self.live_version(stream)[1]

    def live_version(self, stream: str) -> tuple[str | None, str | None]:
        """(connector version, schema fingerprint) the stream's table was last written with."""
        row = self.con.execute(
            f"SELECT connector_version, schema_fingerprint FROM {VERSIONS_TABLE} WHERE stream = ? "
            "ORDER BY recorded_at DESC LIMIT 1",
            [stream],
        ).fetchall()
        return (row[0][0], row[0][1]) if row else (None, None)

    def live_schema(self, stream: str) -> dict[str, Any] | None:
        """The canonical schema JSON ({"layout", "schema"}) the stream's table was last written with, if recorded."""
        row = self.con.execute(
            f"SELECT schema_json FROM {VERSIONS_TABLE} WHERE stream = ? ORDER BY recorded_at DESC LIMIT 1",
            [stream],
        ).fetchall()
        return json.loads(row[0][0]) if row and row[0][0] is not None else None

    def columns_of(self, table: str) -> list[str]:
        rows = self.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' "
            "AND table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
        return [row[0] for row in rows]

    def count(self, table: str) -> int:
        return int(self.con.execute(f"SELECT count(*) FROM {quote(table)}").fetchall()[0][0])

    # -- preparing targets --------------------------------------------------------------------

    def open_target(self, layout: TableLayout, slot: Slot, *, fresh: bool) -> Target:
        """The table records of `layout.stream` go to; a fresh staging table starts empty."""
        target = Target(layout, slot)
        self.con.execute("BEGIN")
        try:
            if fresh and slot == "staging":
                self.con.execute(f"DROP TABLE IF EXISTS {quote(target.table)}")
                self.con.execute(f"DELETE FROM {STATE_TABLE} WHERE stream = ? AND slot = 'staging'", [layout.stream])
            if not self.table_exists(target.table):
                self.con.execute(layout.create_sql(target.table))
            else:
                # A live table continued after an additive schema change: the new fields' columns.
                present = set(self.columns_of(target.table))
                for column in layout.columns:
                    if column.name not in present:
                        self.con.execute(
                            f"ALTER TABLE {quote(target.table)} ADD COLUMN {quote(column.name)} {column.sql_type}")
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        target.has_rows = self.count(target.table) > 0
        target.classify_changes = slot == "live" and target.has_rows
        known = set(layout.column_names)
        target.extra_columns = [c for c in self.columns_of(target.table) if c not in known and not c.startswith("_")]
        return target

    def drop_staging(self, stream: str) -> None:
        self.con.execute("BEGIN")
        self.con.execute(f"DROP TABLE IF EXISTS {quote(staging_table(stream))}")
        self.con.execute(f"DELETE FROM {STATE_TABLE} WHERE stream = ? AND slot = 'staging'", [stream])
        self.con.execute("COMMIT")

    # -- writing ------------------------------------------------------------------------------

    def new_batch(self, target: Target) -> Batch:
        return Batch(target.layout.primary_key, [*target.layout.column_names, *target.extra_columns])

    def write_batch(self, target: Target, batch: Batch, state: dict[str, Any] | None) -> BatchCounts:
        """Upsert the batch's records and, when given, save `state`, in one transaction."""
        counts = BatchCounts(skipped=batch.skipped)
        if batch.lines:
            with open(self._batch_file, "wb") as out:
                out.write(b"\n".join(batch.lines.values()))
        self.con.execute("BEGIN")
        try:
            if batch.lines:
                self._add_unknown_columns(target, batch.unknown)
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

    def publish(self, target: Target, final_state: dict[str, Any] | None) -> BatchCounts:
        """Swap a complete staging table in for the live one, with its state, in one transaction."""
        assert target.slot == "staging"
        layout, live, staging = target.layout, quote(target.stream), quote(target.table)
        counts = BatchCounts()
        self.con.execute("BEGIN")
        try:
            if self.table_exists(target.stream):
                joined = " AND ".join(f"s.{quote(k)} = l.{quote(k)}" for k in layout.primary_key)
                changed = (
                    f"s.{quote(layout.cursor)} IS DISTINCT FROM l.{quote(layout.cursor)}" if layout.cursor else "false"
                )
                (row,) = self.con.execute(
                    f"""SELECT count(*) FILTER (WHERE l.{quote(layout.primary_key[0])} IS NULL),
                               count(*) FILTER (WHERE s.{quote(layout.primary_key[0])} IS NULL),
                               count(*) FILTER (WHERE s.{quote(layout.primary_key[0])} IS NOT NULL
                                                AND l.{quote(layout.primary_key[0])} IS NOT NULL AND {changed})
                        FROM {staging} s FULL OUTER JOIN {live} l ON {joined}"""
                ).fetchall()
                counts.new, counts.removed, counts.updated = int(row[0]), int(row[1]), int(row[2])
                self.con.execute(f"DROP TABLE {live}")
            else:
                counts.new = self.count(target.table)
            self.con.execute(f"ALTER TABLE {staging} RENAME TO {live}")
            self.con.execute(f"DELETE FROM {STATE_TABLE} WHERE stream = ?", [target.stream])
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

    def _add_unknown_columns(self, target: Target, seen: set[str]) -> None:
        # Klaviyo may add a top-level field before our schema knows it: keep it, as a JSON column.
        known = set(target.layout.column_names) | set(target.extra_columns)
        for name in sorted(seen - known):
            if name.startswith("_"):
                continue  # never shadow our own metadata columns
            self.con.execute(f"ALTER TABLE {quote(target.table)} ADD COLUMN {quote(name)} JSON")
            target.extra_columns.append(name)

    def _upsert(self, target: Target, batch: Batch, counts: BatchCounts) -> None:
        # No PRIMARY KEY constraint (its index stays in memory, ~110 MB per million keys): the rows of
        # the batch's keys are deleted, then the batch inserted; the batch holds each key once.
        layout, table = target.layout, quote(target.table)
        columns = list(layout.columns) + [Column(name, "JSON") for name in target.extra_columns]
        read_columns = "{" + ", ".join(f"'{c.name.replace(chr(39), chr(39) * 2)}': '{c.read_type}'" for c in columns) + "}"
        path = self._batch_file.replace("'", "''")
        selects = ", ".join(c.select_expression() for c in columns)
        # read_json's buffer is twice its maximum object size (at least 32 MB): sized to the longest line.
        max_size = max(1 << 20, 1 << batch.longest.bit_length())
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE _batch AS SELECT {selects} FROM read_json('{path}', "
            f"format = 'newline_delimited', columns = {read_columns}, maximum_object_size = {max_size})"
        )
        joined = " AND ".join(f"b.{quote(k)} = t.{quote(k)}" for k in layout.primary_key)
        if target.classify_changes and layout.cursor is not None:
            (row,) = self.con.execute(
                f"SELECT count(*) FROM _batch b JOIN {table} t ON {joined} "
                f"WHERE b.{quote(layout.cursor)} IS NOT DISTINCT FROM t.{quote(layout.cursor)}"
            ).fetchall()
            counts.unchanged = int(row[0])
        replaced = 0
        if target.has_rows:
            (row,) = self.con.execute(f"DELETE FROM {table} t USING _batch b WHERE {joined}").fetchall()
            replaced = int(row[0])
        names = ", ".join(quote(c.name) for c in columns)
        self.con.execute(
            f"INSERT INTO {table} ({names}, _extracted_at, _sync_id) SELECT {names}, now(), ? FROM _batch",
            [self.sync_id],
        )
        target.has_rows = True
        counts.new = len(batch) - replaced
        counts.updated = replaced - counts.unchanged
        self.con.execute("DROP TABLE _batch")

    def _save_state(self, target: Target, state: dict[str, Any]) -> None:
        self.con.execute(
            f"""INSERT INTO {STATE_TABLE} VALUES (?, ?, ?, ?, ?, 1, now())
                ON CONFLICT (stream, slot) DO UPDATE SET state = excluded.state,
                    schema_fingerprint = excluded.schema_fingerprint, sync_id = excluded.sync_id,
                    checkpoints = {STATE_TABLE}.checkpoints + 1, updated_at = excluded.updated_at""",
            [target.stream, target.slot, dumps_line(state).decode(), target.layout.fingerprint, self.sync_id],
        )

    def _record_version(self, layout: TableLayout) -> None:
        if layout.stream in self._versioned:
            return
        self.con.execute(
            f"INSERT OR REPLACE INTO {VERSIONS_TABLE} (sync_id, stream, connector_version, schema_fingerprint, "
            "recorded_at, schema_json) VALUES (?, ?, ?, ?, now(), ?)",
            [self.sync_id, layout.stream, self.connector_version, layout.fingerprint, layout.schema_json or None],
        )
        self._versioned.add(layout.stream)

    # -- sync log -----------------------------------------------------------------------------

    def sync_started(self, command: str) -> None:
        self.con.execute(
            f"INSERT OR REPLACE INTO {SYNCS_TABLE} VALUES (?, ?, ?, now(), NULL, 'RUNNING', NULL)",
            [self.sync_id, self.connector_version, command],
        )

    def sync_finished(self, status: str, summary: dict[str, Any]) -> None:
        self.con.execute(
            f"UPDATE {SYNCS_TABLE} SET finished_at = now(), status = ?, summary = ? WHERE sync_id = ?",
            [status, dumps_line(summary).decode(), self.sync_id],
        )
