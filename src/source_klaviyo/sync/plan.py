"""What each stream does in this sync, decided from the DuckDB file before the read starts.

| situation                                             | target        | starts from          |
|-------------------------------------------------------|---------------|----------------------|
| stream without a cursor                               | fresh staging | nothing (full read)  |
| an interrupted full refresh with the current schema   | its staging   | the staging state    |
| `--full-refresh`                                      | fresh staging | nothing              |
| the recorded primary key differs from ours            | fresh staging | nothing (a reset)    |
| the stored schema differs from ours: breaking change  | fresh staging | nothing (a reset)    |
|   (or the old schema was not recorded)                |               |                      |
| the stored schema differs from ours: fields added only| live table    | the live state       |
| a live table                                          | live table    | the live state       |
| nothing yet                                           | new live table| nothing              |

Breaking or not is decided by `source_klaviyo.schema_diff`, the rule `upgrade-plan` and the schema
change log use: a field removed, renamed or retyped breaks; a new field or a nullability change does not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from source_klaviyo import schema_diff
from source_klaviyo.contracts import JSONObject
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
    state: JSONObject | None
    mode: str  # shown in the summary
    reset_reason: str | None = None  # set when data already in the file is being replaced
    schema_note: str | None = None  # set when the schema changed without breaking and the stream continued

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
    # Only the schema and the key decide: a new connector version with the same continues incrementally.
    version, stored = store.live_version(name)
    key = store.live_primary_key(name)
    if key is not None and key != layout.primary_key:
        # Rows keyed another way cannot be upserted by this key (campaign_values_reports lost `date`
        # from its key in 3.0.0: per-day rows would stay beside the lifetime ones).
        return StreamPlan(stream, layout, "staging", True, None, "full refresh",
                          f"primary key changed from version {version or 'unknown'} to "
                          f"{store.connector_version} ({', '.join(key)} -> {', '.join(layout.primary_key)})")
    note = None
    if stored is not None and stored != layout.fingerprint:
        reason = (f"schema changed from version {version or 'unknown'} to {store.connector_version} "
                  f"(fingerprint {stored[:8]} -> {layout.fingerprint[:8]})")
        breaking, note = _schema_change(store.live_schema(name), layout)
        if breaking is not None:
            return StreamPlan(stream, layout, "staging", True, None, "full refresh",
                              f"{reason}: {breaking}" if breaking else reason)
    saved = store.saved_state(name, "live")
    if saved is None:
        return StreamPlan(stream, layout, "live", False, None, "initial, resumed", schema_note=note)
    return StreamPlan(stream, layout, "live", False, saved[0], "incremental", schema_note=note)


def _schema_change(old: JSONObject | None, layout: TableLayout) -> tuple[str | None, str | None]:
    """(why a reset is needed, or None; the note when the stream continues) for a changed fingerprint.

    The reason is "" when the stored schema cannot be compared (not recorded).
    """
    new = json.loads(layout.schema_json)
    if old is None:
        return "", None
    changes = schema_diff.diff(
        schema_diff.flatten(old.get("schema") or {}), schema_diff.flatten(new["schema"])
    )
    if schema_diff.is_breaking(changes):
        return schema_diff.describe_breaking(changes), None
    if old.get("layout") != new["layout"]:  # `migrate.py` converts these; it did not, and said why
        return f"the table is in layout {old.get('layout')}, not converted to typed columns in place", None
    if changes["added"]:
        return None, f"schema extended (fields added: {', '.join(changes['added'])}), continued"
    return None, "schema changed without breaking (nullability or formats only), continued"
