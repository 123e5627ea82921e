"""A file written in an older layout is converted in place when a sync opens it, never half-converted.

Layout 1 (3.0.0 before typed columns) kept each record's top-level fields as columns, `attributes`,
`relationships`, `links`, arrays and fields the schema lacked as JSON: the whole record. So a table
can be typed again without reading Klaviyo: each row's record is rebuilt from its columns
(`json_object`) and goes the way of a record read now (`Batch`, `extract.py`) into a new table, in
batches; `_extracted_at` and `_sync_id` are kept. Every convertible table of the file is
built first, then all are swapped in, with their bookkeeping, in one transaction: until then the
file is exactly as it was, and an interrupted conversion starts over at the next sync (its
half-built tables are dropped). States are kept, so each stream continues incrementally.

Not converted, and rebuilt from a full read by the plan instead (with the reason printed): a
stream whose recorded schema is missing or breaks with ours (`plan.py`), and every stream when the
conversion fails (the failure is printed too).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb

from source_klaviyo import schema_diff
from source_klaviyo.schemas import load_schema
from source_klaviyo.streams import STREAMS, Stream
from source_klaviyo.sync.duckdb_store import Store, Target, new_batch
from source_klaviyo.sync.layout import (
    LAYOUT_VERSION,
    MIGRATING_PREFIX,
    quote_ident,
    quote_literal,
    table_layout,
)

# Rows converted per batch: each its own transaction on the new table, invisible until the swap.
CHUNK_ROWS = 5_000
_KEPT = ("_extracted_at", "_sync_id")


@dataclass
class Migration:
    converted: list[str] = field(default_factory=list)
    seconds: float = 0.0
    failure: str | None = None  # why nothing was converted (the streams are rebuilt instead)


def migrate(store: Store, log: Callable[[str], None]) -> Migration:
    """Convert every stream table of `store` in an older layout whose schema allows it."""
    started = time.monotonic()
    _drop_leftovers(store)
    tables = set(store.tables_starting_with(""))  # one query, not one per stream (~1 ms each)
    candidates = [stream for stream in STREAMS if stream.name in tables and _convertible(store, stream)]
    result = Migration()
    if not candidates:
        return result
    log(f"converting {len(candidates)} table(s) of {store.path.name} to typed columns (layout "
        f"{LAYOUT_VERSION}) in place; the file stays as it is until all are done")
    targets: list[Target] = []
    try:
        for stream in candidates:
            targets.append(_convert(store, stream))
        store.swap_in(targets)
    except duckdb.Error as error:
        _drop_leftovers(store)
        result.failure = (f"converting to typed columns failed ({error}); "
                          "the tables are rebuilt from a full read instead")
        log(result.failure)
        return result
    result.converted = [stream.name for stream in candidates]
    result.seconds = time.monotonic() - started
    log(f"converted in place in {result.seconds:.1f} s: {', '.join(result.converted)}")
    return result


def _convertible(store: Store, stream: Stream) -> bool:
    stored = store.live_schema(stream.name)
    if stored is None or stored.get("layout") == LAYOUT_VERSION:
        return False
    changes = schema_diff.diff(schema_diff.flatten(stored.get("schema") or {}),
                               schema_diff.flatten(load_schema(stream.schema_name)))
    return not schema_diff.is_breaking(changes)


def _convert(store: Store, stream: Stream) -> Target:
    layout = table_layout(stream, load_schema(stream.schema_name))
    old = [name for name in store.columns_of(stream.name) if name not in _KEPT]
    target = store.open_target(layout, "migrating", fresh=True)
    store.add_json_columns(target, [name for name in old if name not in layout.fields])
    pairs = ", ".join(f"{quote_literal(c)}, {quote_ident(c)}" for c in old)
    table = quote_ident(stream.name)
    stamp = "strftime(_extracted_at, '%Y-%m-%d %H:%M:%S.%f+00')"
    rows = (f"SELECT CAST(json_object({pairs}) AS VARCHAR), {stamp}, _sync_id FROM {table} "  # noqa: S608 - names via quote_ident
            "WHERE rowid >= ? AND rowid < ?")
    (last,) = store.con.execute(f"SELECT max(rowid) FROM {table}").fetchone() or (None,)  # noqa: S608 - names via quote_ident
    for lower in range(0, (last if last is not None else -1) + 1, CHUNK_ROWS):
        batch = new_batch(target)
        batch.add_converted(store.con.execute(rows, [lower, lower + CHUNK_ROWS]).fetchall())
        store.write_batch(target, batch, None)
    return target


def _drop_leftovers(store: Store) -> None:
    for table in store.tables_starting_with(MIGRATING_PREFIX):
        store.con.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")
