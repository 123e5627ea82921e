"""What each stream does in this sync, decided from the DuckDB file before the read starts.

| situation                                             | target        | starts from          |
|-------------------------------------------------------|---------------|----------------------|
| stream without a cursor                               | fresh staging | nothing (full read)  |
| an interrupted full refresh with the current schema   | its staging   | the staging state    |
| `--full-refresh`                                      | fresh staging | nothing              |
| the stored schema fingerprint differs from ours       | fresh staging | nothing (a reset)    |
| a live table                                          | live table    | the live state       |
| nothing yet                                           | new live table| nothing              |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from source_klaviyo.schemas import load_schema
from source_klaviyo.streams import Stream
from source_klaviyo.sync.duckdb_store import Slot, Store
from source_klaviyo.sync.layout import TableLayout, staging_table, table_layout


@dataclass
class StreamPlan:
    stream: Stream
    layout: TableLayout
    slot: Slot
    fresh: bool
    state: dict[str, Any] | None
    mode: str  # shown in the summary
    reset_reason: str | None = None  # set when data already in the file is being replaced

    @property
    def name(self) -> str:
        return self.stream.name


def plan_stream(store: Store, stream: Stream, *, full_refresh: bool) -> StreamPlan:
    layout = table_layout(stream, load_schema(stream.schema_name))
    name = stream.name
    if stream.incremental is None:
        return StreamPlan(stream, layout, "staging", True, None, "full (no cursor)")
    staged = store.saved_state(name, "staging")
    if staged is not None and staged[1] == layout.fingerprint and store.table_exists(staging_table(name)):
        return StreamPlan(stream, layout, "staging", False, staged[0], "full, resumed",
                          "continuing an interrupted full refresh")
    if full_refresh:
        return StreamPlan(stream, layout, "staging", True, None, "full refresh", "--full-refresh")
    if not store.table_exists(name):
        return StreamPlan(stream, layout, "live", False, None, "initial")
    # Only the schema decides: a new connector version with the same schema continues incrementally.
    version, stored = store.live_version(name)
    if stored is not None and stored != layout.fingerprint:
        return StreamPlan(stream, layout, "staging", True, None, "full refresh",
                          f"schema changed from version {version or 'unknown'} to {store.connector_version} "
                          f"(fingerprint {stored[:8]} -> {layout.fingerprint[:8]})")
    saved = store.saved_state(name, "live")
    if saved is None:
        return StreamPlan(stream, layout, "live", False, None, "initial, resumed")
    return StreamPlan(stream, layout, "live", False, saved[0], "incremental")
