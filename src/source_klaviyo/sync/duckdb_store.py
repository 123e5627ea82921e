"""The DuckDB file: stream tables, bookkeeping tables, and the one transaction per checkpoint.

Every write is `write_batch`: records bulk-loaded as JSON text, typed into their columns by DuckDB
(`extract.py`), upserted by primary key, and the stream's state saved, all in one transaction. A
crash therefore leaves each table exactly as of its last committed state, and the next run, starting
from that state, re-reads at most what came after it; the upsert makes the re-read harmless.

A full refresh writes into a staging table (with its own state slot, so an interrupted refresh can
continue) and `publish` swaps it in, in one transaction, once the stream completed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import duckdb
import msgspec

from source_klaviyo.contracts import JSON, JSONObject
from source_klaviyo.errors import ConfigError
from source_klaviyo.json_codec import dumps, loads
from source_klaviyo.sync.extract import typed_select
from source_klaviyo.sync.layout import (
    METADATA_COLUMNS,
    RAW_COLUMN,
    Column,
    TableLayout,
    migrating_table,
    quote_ident,
    quote_literal,
    staging_table,
)
from source_klaviyo.sync.shape import Shape

STATE_TABLE = "_source_klaviyo_state"
SYNCS_TABLE = "_source_klaviyo_syncs"
VERSIONS_TABLE = "_source_klaviyo_versions"

# The bookkeeping tables as SQL identifiers (see `quote_ident`).
_STATE = quote_ident(STATE_TABLE)
_SYNCS = quote_ident(SYNCS_TABLE)
_VERSIONS = quote_ident(VERSIONS_TABLE)

# "migrating": a table being converted from an older layout (`migrate.py`), swapped in when all are.
Slot = Literal["live", "staging", "migrating"]

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
    # Files written before the primary key was recorded: NULL, a key that cannot be compared.
    f"ALTER TABLE {_VERSIONS} ADD COLUMN IF NOT EXISTS primary_key VARCHAR[]",
)


# The sync's CPU and memory budget (docs/performance.md, "sync"): one thread, and a buffer pool of
# 32 MB or what the widest table needs (`memory_limit_mb`). The pool holds a batch being loaded and
# the rows appended since the last checkpoint; 16 MB ran out of memory loading a batch. JSON columns
# are compressed with zstd (`layout.column_sql`): half the checkpoint CPU of DuckDB's analysis on
# them, and a third of the size.
_SETTINGS = (
    "SET threads = 1",
    "SET preserve_insertion_order = false",
)
BASE_MEMORY_MB = 32
# What the writer adds to that pool while it loads batches (`writer.StoreWrites`). At its limit the
# pool evicts for every batch, and each eviction makes DuckDB hand every freed page back to the
# system (`Allocator::FlushAll`: a jemalloc purge and `malloc_trim`), which the next batch faults in
# again: ~1 page fault per record, a quarter of the load's CPU. With this much more: 0.3 per record,
# the sync's CPU 10 % less, the writer's peak RSS +90 MB (docs/performance.md, "The DuckDB sync's
# writer process"; 32 MB more gained nothing, 64 MB 4 %).
LOAD_HEADROOM_MB = 96


def memory_limit_mb(layout: TableLayout) -> int:
    """The pool a table's writes need. A checkpoint compresses every column of a row group at once,
    about half a MB each (at 32 MB a 110-column table failed its checkpoint, which invalidates the
    database), and each JSON extraction of a batch holds an arena of ~2 MB (`extract.py`)."""
    extractions = 2 + sum(1 for column in layout.columns if column.many)
    return max(BASE_MEMORY_MB, 24 + len(layout.columns) // 2 + 2 * extractions)
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
    extra_columns: list[Column] = field(default_factory=list)  # top-level fields the schema lacks, as JSON
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
        if self.slot == "live":
            return self.layout.stream
        if self.slot == "staging":
            return staging_table(self.layout.stream)
        return migrating_table(self.layout.stream)

    @property
    def columns(self) -> list[Column]:
        return [*self.layout.columns, *self.extra_columns]


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


# Each batch row is the record's JSON, then its flag, then the `_extracted_at` and `_sync_id` a
# converted row keeps (`migrate.py`; empty for a record read now), separated by this byte. The flag:
# empty for a record its shape's decoder took (nearly all), "1" for an unmapped record (`shape.py`:
# kept whole in `_raw`), "j" for the others (a JSON string where a free-form value is, new top-level
# fields, a key of another type); DuckDB types "1" and "j" rows' JSON columns from the record again
# (`extract.py`). JSON never holds a raw control character (msgspec refuses or
# escapes them), so the record needs no quoting and DuckDB's CSV reader splits rows without parsing
# the JSON inside them.
FIELD_SEPARATOR = b"\x1f"
BATCH_COLUMNS = ("record", "unmapped", "kept_extracted_at", "kept_sync_id")
_READ_NOW = FIELD_SEPARATOR * 2 + b"\n"
UNMAPPED, RETYPED = b"1", b"j"
_MAPPED = FIELD_SEPARATOR + _READ_NOW  # after a mapped record read now: no flag, nothing kept
_MAPPED_SIZE = len(_MAPPED)


@dataclass(frozen=True)
class BatchFile:
    """A batch written out (`Batch.save`): what its load needs, small enough to hand to the writer
    process (`writer.py`)."""

    path: str
    rows: int
    longest: int  # bytes of the longest row
    new_columns: list[str]  # top-level fields the table has no column for yet
    skipped: int  # records without a primary key value, not in the file


# A row's primary key as the table compares it: the text of its one key field, or of each.
RowKey = str | tuple[str, ...]


class Batch:
    """One stream's records waiting for their transaction, one row per key, as delimited JSON text.

    The last version of a key read wins (a record updated during the read arrives twice). A row holds
    the record's JSON exactly as read: DuckDB types it (`extract.py`). Here each record is only
    decoded against its shape, in C, for its key and to tell whether its columns hold it whole.
    """

    __slots__ = ("_known", "_shape", "bytes", "key", "longest", "new_columns", "rows", "skipped")

    def __init__(self, key: tuple[str, ...], fields: Iterable[str], shape: Shape | None = None) -> None:
        self.key = key
        # key -> (the record's JSON, the rest of its row): two pieces, not one, because a copy of
        # the record into a row costs ~0.3 µs (a malloc and 1 KB copied), and the file is written
        # piece by piece anyway (`_write_rows`)
        self.rows: dict[RowKey, tuple[bytes, bytes]] = {}
        self.bytes = 0
        self.longest = 0  # bytes of the longest row: the CSV reader's line limit is sized from it
        self.skipped = 0  # records without a primary key value
        self._shape = shape
        # The top-level fields the table has columns for, then those first seen in this batch: they
        # get JSON columns (`Store.add_json_columns`).
        self._known = set(fields)
        self.new_columns: list[str] = []

    def __len__(self) -> int:
        return len(self.rows)

    def save(self, path: str) -> BatchFile:
        """Write the batch's rows to `path`, the file `Store.load_batch` reads (none when empty)."""
        if self.rows:
            _write_rows(path, self.rows.values())
        return BatchFile(path, len(self.rows), self.longest, list(self.new_columns), self.skipped)

    def take(self, count: int) -> Batch:
        """The first `count` rows (in the order their keys were first read) as a batch of their own,
        taken out of this one with the fields first seen and the records skipped so far."""
        taken = Batch(self.key, (), self._shape)
        rows = iter(self.rows.items())
        taken.rows = dict(islice(rows, count))
        self.rows = dict(rows)
        left = sum(len(record) + len(rest) for record, rest in self.rows.values())
        taken.bytes, self.bytes = self.bytes - left, left
        taken.longest = self.longest  # a bound (the CSV reader's line limit), not kept exact here
        taken.new_columns, self.new_columns = self.new_columns, []
        taken.skipped, self.skipped = self.skipped, 0
        return taken

    def add(self, records: Iterable[JSONObject]) -> None:
        for record in records:
            self._add(dumps(record))

    def add_raw(self, records: Iterable[bytes]) -> None:
        """Records as the JSON objects Klaviyo sent (the engine's raw path), kept byte for byte."""
        shape = self._shape
        if shape is None or len(shape.key_attributes) != 1:
            for line in records:
                self._add(_one_line(line))
            return
        # The common case, `_add` and `_put` inlined for a one-field key: a million events spent
        # ~2 µs each in those calls around a decode of ~1.4 µs.
        decode, key_attribute, rows = shape.decode, shape.key_attributes[0], self.rows
        for line in records:
            line = _one_line(line)
            try:
                key = getattr(decode(line), key_attribute)
            except msgspec.DecodeError:  # another shape (ValidationError), or JSON msgspec refuses
                self._add(line)
                continue
            if key.__class__ is not str:
                if key is None:
                    self.skipped += 1
                    continue
                key = str(key)  # 1 and "1" are the same row
            previous = rows.get(key)
            if previous is not None:
                self.bytes -= len(previous[0]) + len(previous[1])
            rows[key] = (line, _MAPPED)
            size = len(line) + _MAPPED_SIZE
            self.bytes += size
            if size > self.longest:
                self.longest = size

    def add_shaped(self, records: Iterable[tuple[bytes, object, str | None]]) -> None:
        """Records the page parser decoded against this batch's shape (`pages.shaped_format`): with their
        key, they are of the shape, and only need to be on one line; without, they go as `add_raw`."""
        rows = self.rows
        for line, _cursor, key in records:
            if key is None or _NEWLINE in line or _CARRIAGE_RETURN in line:
                self.add_raw((line,))
                continue
            # `_put` inlined, as in `add_raw`: calling it costs 0.08-0.15 µs of a record's ~2.5 here
            previous = rows.get(key)
            if previous is not None:
                self.bytes -= len(previous[0]) + len(previous[1])
            rows[key] = (line, _MAPPED)
            size = len(line) + _MAPPED_SIZE
            self.bytes += size
            if size > self.longest:
                self.longest = size

    def add_converted(self, rows: Iterable[tuple[str, str | None, str | None]]) -> None:
        """Records of a table in an older layout (`migrate.py`): (JSON, `_extracted_at`, `_sync_id`)."""
        for record, extracted_at, sync_id in rows:
            kept = f"{extracted_at or ''}\x1f{sync_id or ''}\n".encode()
            self._add(record.encode(), FIELD_SEPARATOR + kept)

    def _add(self, line: bytes, tail: bytes = _READ_NOW) -> None:
        shape = self._shape
        if shape is not None:
            try:
                decoded = shape.decode(line)
            except msgspec.DecodeError:  # another shape (ValidationError), or JSON msgspec refuses
                pass
            else:
                # the common case: a record of the declared shape, its key fields decoded as scalars
                key = self._key([getattr(decoded, name) for name in shape.key_attributes])
                if key is not None:
                    self._put(key, line, FIELD_SEPARATOR + tail)
                return
        fields: dict[str, msgspec.Raw] = _decode_top_level(line)
        key = self._key([None if (raw := fields.get(name)) is None else loads(raw) for name in self.key])
        if key is not None:
            flag = UNMAPPED if self._unmapped(fields) else RETYPED
            self._put(key, line, FIELD_SEPARATOR + flag + tail)

    def _unmapped(self, fields: Mapping[str, msgspec.Raw]) -> bool:
        """Whether some of the record has no column: a declared object of another shape, or a
        top-level field whose name starts with "_" (it would shadow our metadata columns). Other new
        top-level fields get a JSON column each."""
        unmapped = False
        for name, raw in fields.items():
            if name not in self._known:
                if name.startswith("_"):
                    unmapped = True
                else:
                    self._known.add(name)
                    self.new_columns.append(name)
            elif self._shape is not None and name in self._shape.objects:
                try:
                    self._shape.objects[name](raw)
                except msgspec.ValidationError:
                    unmapped = True
        return unmapped

    def _key(self, values: list[JSON]) -> RowKey | None:
        """The record's primary key as the table compares it (text), or None (counted as skipped)."""
        if None in values:
            self.skipped += 1
            return None
        texts = [v if v.__class__ is str else str(v) for v in values]  # 1 and "1" are the same row
        return texts[0] if len(texts) == 1 else tuple(texts)

    def _put(self, key: RowKey, line: bytes, rest: bytes) -> None:
        previous = self.rows.get(key)
        if previous is not None:
            self.bytes -= len(previous[0]) + len(previous[1])
        self.rows[key] = (line, rest)
        size = len(line) + len(rest)
        self.bytes += size
        if size > self.longest:
            self.longest = size


_decode_top_level = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


_NEWLINE, _CARRIAGE_RETURN = ord("\n"), ord("\r")


def _one_line(line: bytes) -> bytes:
    """The record on one line: whitespace between tokens (a pretty-printed body) would split the row,
    so such a record is re-encoded."""
    # (byte values, not b"\n": a bytes operand is first tried as an integer, an exception raised and
    # cleared per record, ~0.4 µs of a 1 KB event's time against ~0.04)
    if _NEWLINE in line or _CARRIAGE_RETURN in line:
        return dumps(loads(line))
    return line


def new_batch(target: Target) -> Batch:
    """An empty batch for the target's records, knowing the columns the target has."""
    fields = target.layout.fields | {column.name for column in target.extra_columns}
    return Batch(target.layout.primary_key, fields, target.layout.shape)


# Rows per `os.writev` call, two pieces each (Linux's IOV_MAX is 1,024).
_ROWS_PER_WRITE = 512


def _write_rows(path: str, rows: Iterable[tuple[bytes, bytes]]) -> None:
    """The batch file, in a few system calls. When the writer was a thread it wrote the file, and
    each call released the GIL, which it then had to win back from the reader (up to a switch
    interval, 5 ms): through a buffered file (a call per 8 KB, ~1,000 per batch) that was ~14 s of a
    34 s sync's writer wall time (docs/performance.md, "The DuckDB sync's CPU"). The sink now writes
    it on the reader's side (`sink.py`), where a call per 512 rows still costs the least. Joining
    the rows first would copy the batch."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chunk: list[bytes] = []
        for row in rows:
            chunk += row
            if len(chunk) == 2 * _ROWS_PER_WRITE:
                _write_all(fd, chunk)
                chunk = []
        if chunk:
            _write_all(fd, chunk)
    finally:
        os.close(fd)


def _write_all(fd: int, pieces: list[bytes]) -> None:
    written = os.writev(fd, pieces)
    total = sum(len(piece) for piece in pieces)
    if written < total:  # a short write (not seen on regular files, but allowed): the rest in one piece
        rest = b"".join(pieces)[written:]
        while rest:
            rest = rest[os.write(fd, rest):]


class Store:
    """One open DuckDB file; single writer (DuckDB locks the file for the process holding it)."""

    def __init__(self, path: str | Path, *, sync_id: str, connector_version: str,
                 keep_raw: bool = False) -> None:
        self.path = Path(path)
        self.sync_id = sync_id
        self.connector_version = connector_version
        self.keep_raw = keep_raw  # `_raw` for every record, not only where the columns miss something
        self.memory_mb = BASE_MEMORY_MB
        # The file is attached rather than opened, because the row group size is an ATTACH option.
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        for setting in _SETTINGS:
            self.con.execute(setting)
        self.con.execute(f"SET memory_limit = '{self.memory_mb}MB'")
        # Where DuckDB spills when it opens a file itself (an in-memory database would use ./.tmp).
        self.con.execute(f"SET temp_directory = {quote_literal(str(self.path) + '.tmp')}")
        try:
            self.con.execute(
                f"ATTACH {quote_literal(str(self.path))} AS {_ALIAS} (ROW_GROUP_SIZE {ROW_GROUP_SIZE})"
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

    def _latest_version(self, stream: str) -> tuple[Any, ...] | None:
        """The stream's latest `_VERSIONS` row: (connector version, fingerprint, schema JSON, key)."""
        rows = self.con.execute(
            f"SELECT connector_version, schema_fingerprint, schema_json, primary_key FROM {_VERSIONS} "  # noqa: S608 - names via quote_ident
            "WHERE stream = ? ORDER BY recorded_at DESC LIMIT 1",
            [stream],
        ).fetchall()
        return rows[0] if rows else None

    def live_version(self, stream: str) -> tuple[str | None, str | None]:
        """(connector version, schema fingerprint) the stream's table was last written with."""
        row = self._latest_version(stream)
        return (row[0], row[1]) if row else (None, None)

    def live_schema(self, stream: str) -> JSONObject | None:
        """The canonical schema JSON ({"layout", "schema"}) the stream's table was last written
        with, if recorded."""
        row = self._latest_version(stream)
        return loads(row[2]) if row and row[2] is not None else None

    def live_primary_key(self, stream: str) -> tuple[str, ...] | None:
        """The primary key the stream's table was last written with, if recorded."""
        row = self._latest_version(stream)
        return tuple(row[3]) if row and row[3] is not None else None

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

    def open_target(self, layout: TableLayout, slot: Slot, *, fresh: bool, extra_mb: int = 0) -> Target:
        """The table records of `layout.stream` go to; a fresh staging table starts empty."""
        target = Target(layout, slot)
        self.fit_memory(memory_limit_mb(layout) + extra_mb)
        self.con.execute("BEGIN")
        try:
            if fresh and slot != "live":
                self.con.execute(f"DROP TABLE IF EXISTS {quote_ident(target.table)}")
                self.con.execute(
                    f"DELETE FROM {_STATE} WHERE stream = ? AND slot = ?", [layout.stream, slot]  # noqa: S608 - names via quote_ident
                )
            if not self.table_exists(target.table):
                self.con.execute(layout.create_sql(target.table))
            else:
                # A live table continued after an additive schema change: the new fields' columns,
                # filled from the records kept whole (those are the ones that can hold new fields).
                present = set(self.columns_of(target.table))
                added = [column for column in layout.columns if column.name not in present]
                for name, sql_type in METADATA_COLUMNS:
                    if name not in present:  # a table written before the column existed
                        self._add_column(target.table, name, sql_type)
                for column in added:
                    self._add_column(target.table, column.name, column.sql_type)
                if added and RAW_COLUMN in present:
                    self._fill_from_raw(target.table, added)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        target.has_rows = self.count(target.table) > 0
        target.classify_changes = slot == "live" and target.has_rows
        target.keys_once = layout.append_only and not target.has_rows
        known = set(layout.column_names)
        target.extra_columns = [
            Column(name, "JSON") for name in self.columns_of(target.table)
            if name not in known and not name.startswith("_")
        ]
        return target

    def fit_memory(self, needed: int) -> None:
        if needed > self.memory_mb:
            self.memory_mb = needed
            self.con.execute(f"SET memory_limit = '{needed}MB'")

    def _fill_from_raw(self, table: str, columns: list[Column]) -> None:
        """New columns of the rows whose record was kept whole, read from it."""
        name = quote_ident(table)
        source = (f"(SELECT CAST({quote_ident(RAW_COLUMN)} AS VARCHAR) AS record, 'j' AS unmapped, "  # noqa: S608 - names via quote_ident
                  f"rowid AS _row FROM {name} WHERE {quote_ident(RAW_COLUMN)} IS NOT NULL)")
        typed = typed_select(columns, source, keep_raw=True, carry=["_row"])
        sets = ", ".join(f"{quote_ident(c.name)} = filled.{quote_ident(c.name)}" for c in columns)
        self.con.execute(
            f"UPDATE {name} SET {sets} FROM ({typed}) AS filled WHERE {name}.rowid = filled._row"  # noqa: S608 - names via quote_ident
        )

    def tables_starting_with(self, prefix: str) -> list[str]:
        rows = self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
            "AND table_schema = 'main' AND starts_with(table_name, ?)",
            [prefix],
        ).fetchall()
        return [row[0] for row in rows]

    def swap_in(self, targets: list[Target]) -> None:
        """Replace each target's live table by its converted one (`migrate.py`), all in one transaction."""
        self.con.execute("BEGIN")
        try:
            for target in targets:
                assert target.slot == "migrating"
                self.con.execute(f"DROP TABLE IF EXISTS {quote_ident(target.stream)}")
                converted, live = quote_ident(target.table), quote_ident(target.stream)
                self.con.execute(f"ALTER TABLE {converted} RENAME TO {live}")
                self.con.execute(
                    f"UPDATE {_STATE} SET schema_fingerprint = ? WHERE stream = ? AND slot = 'live'",  # noqa: S608 - names via quote_ident
                    [target.layout.fingerprint, target.stream],
                )
                self._versioned.discard(target.stream)
                self._record_version(target.layout)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        for target in targets:
            target.slot = "live"

    def drop_staging(self, stream: str) -> None:
        self.con.execute("BEGIN")
        self.con.execute(f"DROP TABLE IF EXISTS {quote_ident(staging_table(stream))}")
        self.con.execute(f"DELETE FROM {_STATE} WHERE stream = ? AND slot = 'staging'", [stream])  # noqa: S608 - names via quote_ident
        self.con.execute("COMMIT")

    # -- writing ------------------------------------------------------------------------------

    def write_batch(self, target: Target, batch: Batch, state: JSONObject | None) -> BatchCounts:
        """Upsert the batch's records and, when given, save `state`, in one transaction."""
        return self.load_batch(target, batch.save(self._batch_file), state)

    def load_batch(self, target: Target, batch: BatchFile, state: JSONObject | None) -> BatchCounts:
        """`write_batch` of a batch already written out."""
        counts = BatchCounts(skipped=batch.skipped)
        self.con.execute("BEGIN")
        try:
            if batch.rows:
                self.add_json_columns(target, batch.new_columns)
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

    def add_json_columns(self, target: Target, names: list[str]) -> None:
        """Klaviyo may add a top-level field before our schema knows it: it is kept, as a JSON column.
        A name the target has a column for already is passed over: batches cut before the column was
        added name it again."""
        present = {column.name for column in target.columns}
        for name in dict.fromkeys(names):
            if name in present:
                continue
            self._add_column(target.table, name, "JSON")
            target.extra_columns.append(Column(name, "JSON"))

    def _add_column(self, table: str, name: str, sql_type: str) -> None:
        self.con.execute(f"ALTER TABLE {quote_ident(table)} ADD COLUMN {quote_ident(name)} {sql_type}")

    def _upsert(self, target: Target, batch: BatchFile, counts: BatchCounts) -> None:
        # No PRIMARY KEY constraint (its index stays in memory, ~110 MB per million keys): the rows of
        # the batch's keys are deleted, then the batch inserted; the batch holds each key once.
        layout, table = target.layout, quote_ident(target.table)
        columns = [*target.columns, Column(RAW_COLUMN, "JSON")]
        # Each record is read as one text field and typed in SQL (`extract.py`). The line limit is
        # sized to the longest row and the reader's buffer to twice that: with DuckDB's defaults (2 MB
        # lines, 32 MB buffer) the buffer alone would take most of the sync's memory limit.
        read_columns = "{" + ", ".join(f"{quote_literal(name)}: 'VARCHAR'" for name in BATCH_COLUMNS) + "}"
        path = quote_literal(batch.path)
        line_limit = max(1 << 20, 1 << (batch.longest + 1).bit_length())
        separator = FIELD_SEPARATOR.decode()
        rows = (
            f"read_csv({path}, delim = '{separator}', quote = '', escape = '', header = false, "
            f"auto_detect = false, new_line = '\\n', columns = {read_columns}, "
            f"max_line_size = {line_limit}, buffer_size = {2 * line_limit})"
        )
        source = typed_select(target.columns, rows, keep_raw=self.keep_raw, carry=BATCH_COLUMNS[2:])
        names = ", ".join(quote_ident(c.name) for c in columns)
        # A record read now is stamped with now and this sync; a converted one keeps its stamps.
        stamps = "coalesce(TRY_CAST(kept_extracted_at AS TIMESTAMPTZ), now()), coalesce(kept_sync_id, ?)"
        if target.keys_once:  # nothing to replace or compare: straight in
            self.con.execute(
                f"INSERT INTO {table} ({names}, _extracted_at, _sync_id) "  # noqa: S608 - names via quote_ident
                f"SELECT {names}, {stamps} FROM ({source})",
                [self.sync_id],
            )
            target.has_rows = True
            counts.new = batch.rows
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
            f"INSERT INTO {table} ({names}, _extracted_at, _sync_id) SELECT {names}, {stamps} FROM _batch",  # noqa: S608 - names via quote_ident
            [self.sync_id],
        )
        target.has_rows = True
        counts.new = batch.rows - replaced
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
            "recorded_at, schema_json, primary_key) VALUES (?, ?, ?, ?, now(), ?, ?)",
            [
                self.sync_id,
                layout.stream,
                self.connector_version,
                layout.fingerprint,
                layout.schema_json or None,
                list(layout.primary_key),
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
