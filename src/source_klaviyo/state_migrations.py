"""From whatever a user passes with `--state` to the 3.0.0 per-stream state shapes.

Two steps, both pure:

1. `split_state_input` takes the file's JSON (a list of Airbyte state messages of any type, a
   single message, or the legacy whole-connector object) and returns `{stream name: raw state}`.
2. `migrate_stream_state` runs the stream's migrations from `MIGRATIONS` in order, then checks the
   result against the stream's 3.0.0 shape and normalises every cursor to
   `YYYY-MM-DDTHH:MM:SS+00:00`.

`migrate_state` does both and collects warnings (state for a stream we do not know, or for one
that reads in full every sync, is left out: never an error).

The 3.0.0 shapes, which the read engine writes:

    single cursor:     {"updated": "2024-01-01T00:00:00+00:00"}
    campaigns(_detailed): {"states": [{"partition": {"archived": "false", "campaign_type": "email"},
                                       "cursor": {"updated_at": "2024-01-01T00:00:00+00:00"}}, ...]}
    flows:             {"states": [{"partition": {"archived": "true"}, "cursor": {"updated": "..."}}]}

A state we cannot understand is a `ConfigError` naming the stream and the value: we never fall
back to a full refresh without being asked. Every rule that picks one cursor out of several picks
the earliest safe one, because re-reading a little is harmless (records are de-duplicated by
primary key) and skipping is data loss. docs/state-migrations.md lists every shape with its result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise, product

from source_klaviyo.config import LEGACY_DEFAULT_START
from source_klaviyo.contracts import JSON, JSONObject
from source_klaviyo.datetimes import ONE_SECOND, format_datetime, parse_datetime, utc_now
from source_klaviyo.errors import ConfigError
from source_klaviyo.ranges import GAPS, normalised
from source_klaviyo.streams import STREAMS_BY_NAME

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# The 3.0.0 shape of each stream's state
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The 3.0.0 state shape of a stream: its cursor, and its partition axes if it is partitioned."""

    cursor: str
    axes: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (partition key, allowed values)

    @property
    def partitioned(self) -> bool:
        return bool(self.axes)


def state_target(stream: str) -> Target | None:
    """The 3.0.0 state shape of `stream`; None when the stream keeps no state (full refresh)."""
    declared = STREAMS_BY_NAME.get(stream)
    if declared is None or declared.incremental is None:
        return None
    axes = tuple((axis.key, axis.values) for axis in declared.partitions)
    return Target(declared.incremental.cursor, axes)


def is_known_stream(stream: str) -> bool:
    return stream in STREAMS_BY_NAME


# --------------------------------------------------------------------------------------------
# Step 1: the --state file, split by stream
# --------------------------------------------------------------------------------------------


def split_state_input(raw: JSON) -> JSONObject:
    """`{stream name: raw stream state}` from any state input a user may bring; ConfigError otherwise.

    Accepted: nothing (None, "", [], {}); a list of Airbyte state messages of type STREAM, LEGACY
    or GLOBAL (or without `type`, recognised by their `stream` / `data` / `global` key, or wrapped
    in an Airbyte `{"type": "STATE", "state": ...}` message); one such message on its own; the
    legacy whole-connector object `{"events": {...}, "profiles": {...}}`, possibly wrapped in
    `{"data": {...}}`. A later message for a stream replaces an earlier one, as on the platform.
    """
    if raw is None or raw == "" or raw == [] or raw == {}:
        return {}
    if isinstance(raw, list):
        states: JSONObject = {}
        for index, message in enumerate(raw):
            states.update(_split_message(message, f"state message #{index + 1}"))
        return states
    if isinstance(raw, dict):
        if _looks_like_message(raw):
            return _split_message(raw, "the state message")
        if set(raw) == {"data"} and isinstance(raw["data"], dict):
            return _split_connector_object(raw["data"], "the state's 'data' object")
        return _split_connector_object(raw, "the state object")
    raise ConfigError(
        f"the state must be a JSON list of Airbyte state messages or an object keyed by stream "
        f"name, got {_describe(raw)}"
    )


def _looks_like_message(raw: JSONObject) -> bool:
    return "type" in raw or "stream" in raw or "global" in raw


def _split_message(message: JSON, where: str) -> JSONObject:
    if not isinstance(message, dict):
        raise ConfigError(f"{where} must be a JSON object, got {_describe(message)}")
    kind = message.get("type")
    if kind == "STATE" and "state" in message:  # a whole Airbyte message, as a read prints it
        return _split_message(message["state"], where)
    if kind is None:
        kind = next((k for key, k in _TYPE_BY_KEY.items() if key in message), None)
    if kind == "STREAM":
        return _split_stream_message(message.get("stream"), where)
    if kind == "LEGACY":
        data = message.get("data")
        return {} if data is None else _split_connector_object(data, f"{where} (LEGACY) 'data'")
    if kind == "GLOBAL":
        return _split_global_message(message.get("global"), where)
    if kind is None:
        raise ConfigError(f"{where} has no 'type' and none of the keys 'stream', 'data' or 'global'")
    raise ConfigError(f"{where} has type {kind!r}; expected STREAM, LEGACY or GLOBAL")


_TYPE_BY_KEY = {"stream": "STREAM", "global": "GLOBAL", "data": "LEGACY"}


def _split_stream_message(stream: JSON, where: str) -> JSONObject:
    if not isinstance(stream, dict):
        raise ConfigError(f"{where} (STREAM) must have a 'stream' object, got {_describe(stream)}")
    return {_stream_name(stream, where): stream.get("stream_state")}


def _stream_name(stream: JSONObject, where: str) -> str:
    descriptor = stream.get("stream_descriptor")
    name = descriptor.get("name") if isinstance(descriptor, dict) else None
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where} has no stream_descriptor.name")
    return name


def _split_global_message(shared: JSON, where: str) -> JSONObject:
    if not isinstance(shared, dict):
        raise ConfigError(f"{where} (GLOBAL) must have a 'global' object, got {_describe(shared)}")
    if shared.get("shared_state"):
        # No Klaviyo connector ever wrote a shared state; we cannot know what it would mean.
        raise ConfigError(f"{where} is a GLOBAL state with a shared_state, which this connector never wrote")
    stream_states = shared.get("stream_states")
    if stream_states is None:
        stream_states = []
    if not isinstance(stream_states, list):
        raise ConfigError(f"{where} (GLOBAL) 'stream_states' must be a list, got {_describe(stream_states)}")
    states: JSONObject = {}
    for index, stream in enumerate(stream_states):
        states.update(_split_stream_message(stream, f"{where}, stream_states #{index + 1}"))
    return states


def _split_connector_object(data: JSON, where: str) -> JSONObject:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be an object keyed by stream name, got {_describe(data)}")
    for name, state in data.items():
        if state is not None and not isinstance(state, dict):
            # Most likely a single stream's state given without its stream name: {"updated": "..."}.
            raise ConfigError(
                f"{where} maps {name!r} to {_describe(state)}; a whole-connector state maps each "
                "stream name to that stream's state object"
            )
    return dict(data)


# --------------------------------------------------------------------------------------------
# Step 2: one stream's state, migrated
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What a migration needs besides the state: the stream, its 3.0.0 shape and the start date."""

    stream: str
    target: Target
    start_date: datetime | None

    @property
    def cursor(self) -> str:
        return self.target.cursor

    @property
    def default_cursor(self) -> str:
        """Where a partition the old connector never read starts, as every 2.x version did."""
        return format_datetime(self.start_date or LEGACY_DEFAULT_START)

    def error(self, problem: str) -> ConfigError:
        return ConfigError(f"state for stream {self.stream!r}: {problem}")

    def instant(self, value: JSON, key: str | None = None) -> datetime:
        try:
            return parse_datetime(value)
        except (ValueError, OverflowError, OSError, TypeError):
            raise self.error(
                f"cursor {key or self.cursor!r} has value {_show(value)}, which is not a datetime"
            ) from None

    def normalised(self, value: JSON, key: str | None = None) -> str:
        return format_datetime(self.instant(value, key))


Migration = Callable[[JSONObject, Context], JSONObject]


def concurrent_slices_to_cursor(state: JSONObject, ctx: Context) -> JSONObject:
    """The concurrent CDK's date-range state (2.11+): what the CDK that wrote it would read next.

    The CDK's concurrent cursor (airbyte-cdk 6.x, `ConcurrentCursor.stream_slices`) counts every
    slice `[start, end]` as read. Its next sync reads the gaps between slices (merged where they
    touch: a next `start` at most one second, the cursor granularity, after the previous `end`),
    the range from `start_date` (else 2012-01-01, as every 2.x version) up to the first slice, and
    then from the last slice's `end`, less its lookback window, to now.

    The 3.0.0 state says exactly that: the cursor is the last slice's `end` (the engine subtracts
    the lookback, `lookback_window` for events, as the CDK did), and each range below it that was
    never read is a gap, which the next read covers first. `most_recent_cursor_value` is not used:
    the CDK never reads it back, and it only says that no record existed between it and the slice's
    end when the slice was read. Resuming there would re-read what the slice already covered.
    `legacy` is used only when there are no slices.

        before: {"state_type": "date-range", "legacy": {},
                 "slices": [{"start": "2024-01-01T00:00:00.000Z", "end": "2024-02-01T00:00:00.000Z",
                             "most_recent_cursor_value": "2024-01-31T10:00:00.000Z"},
                            {"start": "2024-03-01T00:00:00.000Z", "end": "2024-04-01T00:00:00.000Z"}]}
        after:  {"updated": "2024-04-01T00:00:00+00:00",
                 "gaps": [{"start": "2012-01-01T00:00:00+00:00", "end": "2024-01-01T00:00:00+00:00"},
                          {"start": "2024-02-01T00:00:00+00:00", "end": "2024-03-01T00:00:00+00:00"}]}
                (without start_date; with start_date 2024-01-01 only the second gap)
    """
    if state.get("state_type") != "date-range":
        return state
    slices = state.get("slices")
    if not slices:
        legacy = state.get("legacy")
        return dict(legacy) if isinstance(legacy, dict) else {}
    if not isinstance(slices, list):
        raise ctx.error(f"'slices' must be a list, got {_describe(slices)}")
    runs: list[list[datetime]] = []
    for start, end in sorted(_slice_bounds(item, ctx) for item in slices):
        if runs and start <= runs[-1][1] + ONE_SECOND:
            runs[-1][1] = max(runs[-1][1], end)
        else:
            runs.append([start, end])
    gaps = [(before[1], after[0]) for before, after in pairwise(runs)]
    start_date = ctx.start_date or LEGACY_DEFAULT_START
    if start_date < runs[0][0]:
        gaps.insert(0, (start_date, runs[0][0]))
    migrated: JSONObject = {ctx.cursor: format_datetime(runs[-1][1])}
    if gaps:
        migrated[GAPS] = [{"start": format_datetime(low), "end": format_datetime(high)} for low, high in gaps]
    return migrated


def _slice_bounds(item: JSON, ctx: Context) -> tuple[datetime, datetime]:
    if not isinstance(item, dict) or "start" not in item or "end" not in item:
        raise ctx.error(f"a concurrent slice must be an object with 'start' and 'end', got {_show(item)}")
    recent = item.get("most_recent_cursor_value")
    if recent is not None:
        ctx.instant(recent, "slices.most_recent_cursor_value")  # not used, but a bad value is a bad state
    start, end = ctx.instant(item["start"], "slices.start"), ctx.instant(item["end"], "slices.end")
    if end < start:
        raise ctx.error(f"a concurrent slice ends before it starts: {_show(item)}")
    return start, end


def epoch_timestamp_to_cursor(state: JSONObject, ctx: Context) -> JSONObject:
    """Pre-2.0 (v1 API) events and global_exclusions kept an epoch `timestamp` (seconds).

        before: {"timestamp": 1650000000}
        after:  {"datetime": "2022-04-15T05:20:00+00:00"}      (events; global_exclusions: "updated")
    """
    return _renamed_cursor(state, ctx, "timestamp")


def created_to_cursor(state: JSONObject, ctx: Context) -> JSONObject:
    """0.x (v1 API) lists, metrics, flows and campaigns kept the `created` date of the newest record.

    Every record created before it was read, and any of those changed since has `updated` after
    it, so resuming the update cursor there misses nothing. Inferred from the 0.x acceptance-test
    states; unverified against a real 0.x sync.

        before: {"created": "2021-10-10 00:00:00"}
        after:  {"updated": "2021-10-10T00:00:00+00:00"}      (campaigns: "updated_at", then partitioned)
    """
    return _renamed_cursor(state, ctx, "created")


def _renamed_cursor(state: JSONObject, ctx: Context, legacy_key: str) -> JSONObject:
    if legacy_key not in state or ctx.cursor in state:
        return state
    value = state[legacy_key]
    if value is None:
        return {}
    return {ctx.cursor: ctx.normalised(value, legacy_key)}


def per_partition_to_min_cursor(state: JSONObject, ctx: Context) -> JSONObject:
    """A per-partition state of a stream that 3.0.0 reads unpartitioned becomes its earliest cursor.

    events_detailed 2.7.x (per event), lists_detailed before 2.11.11 (per parent list) and the
    report streams (per metric_id, possibly in the CDK-6 wrapper with a global `state` and a
    `lookback_window` in seconds, which is subtracted from the global cursor as the CDK did).

        before: {"states": [{"partition": {"event_id": "13506132"},
                             "cursor": {"datetime": "2120-10-10 00:00:00+00:00"}},
                            {"partition": {"event_id": "13506133"},
                             "cursor": {"datetime": "2021-10-10T00:00:00+00:00"}}]}
        after:  {"datetime": "2021-10-10T00:00:00+00:00"}

        before: {"use_global_cursor": false, "lookback_window": 3600,
                 "state": {"date": "2024-05-02T00:00:00+00:00"},
                 "states": [{"partition": {"metric_id": "RESQ6t", "parent_slice": {}},
                             "cursor": {"date": "2024-05-01T00:00:00+00:00"}}]}
        after:  {"date": "2024-05-01T00:00:00+00:00"}
    """
    if "states" not in state and not isinstance(state.get("state"), dict):
        return state
    cursors = [instant for _, instant, _gaps in _partition_cursors(state, ctx)]
    global_cursor = _global_cursor(state, ctx)
    if global_cursor is not None:
        cursors.append(global_cursor)
    return {ctx.cursor: format_datetime(min(cursors))} if cursors else {}


def cdk6_global_cursor_to_partitions(state: JSONObject, ctx: Context) -> JSONObject:
    """The CDK-6 wrapper of a partitioned state (manifest era) becomes the plain `states` list.

    Each listed partition keeps the earlier of its own cursor and the global one (minus
    `lookback_window` seconds). With `use_global_cursor`, the CDK tracked only the global cursor,
    for every partition the old connector read (campaigns: email and sms; mobile_push is new in
    3.0.0 and starts from start_date).

        before: {"use_global_cursor": true, "lookback_window": 0,
                 "state": {"updated": "2024-05-01T00:00:00+00:00"}, "states": []}
        after:  {"states": [{"partition": {"archived": "false"},
                             "cursor": {"updated": "2024-05-01T00:00:00+00:00"}},
                            {"partition": {"archived": "true"},
                             "cursor": {"updated": "2024-05-01T00:00:00+00:00"}}]}
    """
    if not any(key in state for key in _CDK6_WRAPPER_KEYS):
        return state
    global_cursor = _global_cursor(state, ctx)
    entries = [dict(entry) for entry in _state_entries(state, ctx)]
    if global_cursor is not None:
        for entry in entries:
            own = entry.get("cursor") or {}
            if own.get(ctx.cursor) is not None:
                earliest = min(ctx.instant(own[ctx.cursor]), global_cursor)
                entry["cursor"] = {ctx.cursor: format_datetime(earliest)}
        if state.get("use_global_cursor"):
            listed = [_partition_key(entry, ctx) for entry in entries]
            entries += [
                {"partition": partition, "cursor": {ctx.cursor: format_datetime(global_cursor)}}
                for partition in _partitions_read_before_3_0(ctx)
                if tuple(sorted(partition.items())) not in listed
            ]
    return {"states": entries}


_CDK6_WRAPPER_KEYS = ("use_global_cursor", "state", "lookback_window", "parent_state")
# The partitions the manifest-era connector read; the rest are new in 3.0.0.
_PARTITIONS_BEFORE_3_0: dict[str, dict[str, tuple[str, ...]]] = {
    "campaigns": {"campaign_type": ("email", "sms")},
    "campaigns_detailed": {"campaign_type": ("email", "sms")},
}


def archived_substate_to_partitions(state: JSONObject, ctx: Context) -> JSONObject:
    """The Python-CDK campaigns/flows state with an `archived` sub-state becomes per-partition.

    As upstream `CampaignsStateMigration` / `ArchivedToPerPartitionStateMigration`: the archived
    partition takes `archived.<cursor>`, the not-archived one the top-level cursor, a missing one
    start_date (or 2012-01-01). Campaigns get email partitions only: revisions before 2.13 listed
    email campaigns only, so sms (and mobile_push) start from start_date.

        before: {"updated_at": "2020-10-10T00:00:00+00:00",
                 "archived": {"updated_at": "2021-10-10T00:00:00+00:00"}}
        after:  {"states": [
                  {"partition": {"archived": "true", "campaign_type": "email"},
                   "cursor": {"updated_at": "2021-10-10T00:00:00+00:00"}},
                  {"partition": {"archived": "false", "campaign_type": "email"},
                   "cursor": {"updated_at": "2020-10-10T00:00:00+00:00"}}]}
    """
    if not state or "states" in state:
        return state
    archived = state.get("archived")
    if archived is not None and not isinstance(archived, dict):
        raise ctx.error(f"'archived' must be an object like {{{ctx.cursor!r}: ...}}, got {_show(archived)}")
    if ctx.cursor not in state and archived is None:
        raise ctx.error(
            f"expected a {ctx.cursor!r} cursor, an 'archived' sub-state or 'states', "
            f"found keys {sorted(state)}"
        )
    archived_value = (archived or {}).get(ctx.cursor)
    channel = {"campaign_type": "email"} if "campaign_type" in dict(ctx.target.axes) else {}
    return {"states": [
        {"partition": {"archived": "true", **channel},
         "cursor": {ctx.cursor: _value_or_default(archived_value, ctx, f"archived.{ctx.cursor}")}},
        {"partition": {"archived": "false", **channel},
         "cursor": {ctx.cursor: _value_or_default(state.get(ctx.cursor), ctx)}},
    ]}


def _value_or_default(value: JSON, ctx: Context, key: str | None = None) -> str:
    return ctx.default_cursor if value is None else ctx.normalised(value, key)


# The registry: each stream's migrations, run in order on its raw state. Each one returns the state
# unchanged when it does not recognise its legacy shape; what is left must be the 3.0.0 shape.
MIGRATIONS: dict[str, tuple[Migration, ...]] = {
    "profiles": (concurrent_slices_to_cursor,),
    "global_exclusions": (concurrent_slices_to_cursor, epoch_timestamp_to_cursor),
    "email_templates": (concurrent_slices_to_cursor,),
    "metrics": (concurrent_slices_to_cursor, created_to_cursor),
    "lists": (concurrent_slices_to_cursor, created_to_cursor),
    "lists_detailed": (concurrent_slices_to_cursor, per_partition_to_min_cursor),
    "segments": (concurrent_slices_to_cursor,),
    "events": (concurrent_slices_to_cursor, epoch_timestamp_to_cursor),
    "events_detailed": (concurrent_slices_to_cursor, per_partition_to_min_cursor),
    "campaigns": (cdk6_global_cursor_to_partitions, created_to_cursor, archived_substate_to_partitions),
    "campaigns_detailed": (cdk6_global_cursor_to_partitions, archived_substate_to_partitions),
    "flows": (cdk6_global_cursor_to_partitions, created_to_cursor, archived_substate_to_partitions),
    "flow_series_reports": (per_partition_to_min_cursor,),
    "campaign_values_reports": (per_partition_to_min_cursor,),
}


def migrate_stream_state(stream: str, raw: JSON, start_date: datetime | None) -> JSONObject | None:
    """The 3.0.0 state of `stream` from its raw saved state, or None for "no state".

    `start_date` fills partitions that a legacy state did not cover. State for a stream we do not
    know, or that keeps no state, is logged and dropped (None).

    >>> migrate_stream_state("events", {"timestamp": 1650000000}, None)
    {'datetime': '2022-04-15T05:20:00+00:00'}
    """
    target = state_target(stream)
    if target is None:
        logger.warning(_ignored_stream_warning(stream))
        return None
    if raw is None:
        return None
    ctx = Context(stream, target, start_date)
    if not isinstance(raw, dict):
        raise ctx.error(f"the state must be a JSON object, got {_describe(raw)}")
    state = raw
    for migration in MIGRATIONS.get(stream, ()):
        state = migration(state, ctx)
    return _finish_partitioned(state, ctx) if target.partitioned else _finish_single(state, ctx)


def _finish_single(state: JSONObject, ctx: Context) -> JSONObject | None:
    if not state:
        return None
    if ctx.cursor not in state:
        raise ctx.error(f"expected a {ctx.cursor!r} cursor, found keys {sorted(state)}")
    value = state[ctx.cursor]
    # A null cursor is what a connector that has read nothing yet saves: no state.
    if value is None:
        return None
    return {ctx.cursor: ctx.normalised(value), **_gaps(state, ctx)}


def _gaps(entry: JSONObject, ctx: Context) -> JSONObject:
    """`{"gaps": [...]}` normalised (sorted, overlaps merged), or {} when the entry has none.

    A gap is a range below the cursor that was never read (`[start, end)`): the next read covers it
    first. The engine writes them when a read is cut short while later ranges were done, and the
    concurrent CDK's slices may leave them (`concurrent_slices_to_cursor`)."""
    raw = entry.get(GAPS)
    if raw is None or raw == []:
        return {}
    if not isinstance(raw, list):
        raise ctx.error(f"'gaps' must be a list of {{'start': ..., 'end': ...}}, got {_describe(raw)}")
    ranges = []
    for gap in raw:
        if not isinstance(gap, dict) or set(gap) != {"start", "end"}:
            raise ctx.error(f"a gap must be {{'start': ..., 'end': ...}}, got {_show(gap)}")
        low, high = ctx.instant(gap["start"], "gaps.start"), ctx.instant(gap["end"], "gaps.end")
        if high <= low:
            raise ctx.error(f"a gap must end after it starts, got {_show(gap)}")
        ranges.append((low, high))
    merged = normalised(ranges)
    return {GAPS: [{"start": format_datetime(low), "end": format_datetime(high)} for low, high in merged]}


def _finish_partitioned(state: JSONObject, ctx: Context) -> JSONObject | None:
    if not state:
        return None
    if "states" not in state:
        raise ctx.error(f"expected 'states' (a list of partitions), found keys {sorted(state)}")
    earliest: dict[tuple[tuple[str, str], ...], tuple[JSONObject, datetime, JSONObject]] = {}
    for partition, instant, gaps in _partition_cursors(state, ctx):
        key = tuple(sorted(partition.items()))
        if key not in earliest or instant < earliest[key][1]:
            earliest[key] = (partition, instant, gaps)
    if not earliest:
        return None
    return {"states": [
        {"partition": partition, "cursor": {ctx.cursor: format_datetime(instant)}, **gaps}
        for partition, instant, gaps in earliest.values()
    ]}


def _state_entries(state: JSONObject, ctx: Context) -> list[JSONObject]:
    entries = state.get("states") or []
    if not isinstance(entries, list):
        raise ctx.error(f"'states' must be a list, got {_describe(entries)}")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("cursor", {}), dict):
            raise ctx.error(
                f"each entry of 'states' must be {{'partition': ..., 'cursor': {{...}}}}, got {_show(entry)}"
            )
    return entries


def _partition_cursors(state: JSONObject, ctx: Context) -> Iterator[tuple[JSONObject, datetime, JSONObject]]:
    """(partition in 3.0.0 form, cursor, its `_gaps`) for each entry of `states` that has a cursor."""
    for entry in _state_entries(state, ctx):
        cursor = entry.get("cursor") or {}
        if not cursor:
            continue  # a partition that read nothing yet
        if ctx.cursor not in cursor:
            raise ctx.error(f"a partition's cursor has no {ctx.cursor!r}: {_show(cursor)}")
        if cursor[ctx.cursor] is None:
            continue
        partition = _partition(entry, ctx) if ctx.target.partitioned else {}
        yield partition, ctx.instant(cursor[ctx.cursor]), _gaps(entry, ctx)


def _partition(entry: JSONObject, ctx: Context) -> dict[str, str]:
    raw = entry.get("partition")
    if not isinstance(raw, dict):
        raise ctx.error(f"a partition must be an object, got {_show(raw)}")
    partition = {}
    for key, allowed in ctx.target.axes:
        value = raw.get(key)
        if isinstance(value, bool):  # the archived flag was sometimes saved as a JSON boolean
            value = "true" if value else "false"
        if value not in allowed:
            raise ctx.error(f"partition {key!r} has value {_show(value)}; expected one of {list(allowed)}")
        partition[key] = value
    # Keys we do not partition by (parent_slice, ...) are dropped; keys sorted, as 2.13 wrote them.
    return dict(sorted(partition.items()))


def _partition_key(entry: JSONObject, ctx: Context) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(_partition(entry, ctx).items()))


def _partitions_read_before_3_0(ctx: Context) -> list[dict[str, str]]:
    restricted = _PARTITIONS_BEFORE_3_0.get(ctx.stream, {})
    axes = [(key, restricted.get(key, values)) for key, values in ctx.target.axes]
    keys = [key for key, _ in axes]
    return [dict(sorted(zip(keys, combo, strict=True))) for combo in product(*(values for _, values in axes))]


def _global_cursor(state: JSONObject, ctx: Context) -> datetime | None:
    """The CDK-6 global cursor minus its lookback window, or None."""
    shared = state.get("state")
    if shared is None or shared == {}:
        return None
    if not isinstance(shared, dict) or ctx.cursor not in shared:
        raise ctx.error(f"the global 'state' must be {{{ctx.cursor!r}: ...}}, got {_show(shared)}")
    if shared[ctx.cursor] is None:
        return None
    lookback = state.get("lookback_window") or 0
    if isinstance(lookback, bool) or not isinstance(lookback, int | float) or lookback < 0:
        raise ctx.error(f"'lookback_window' must be a number of seconds, got {_show(lookback)}")
    return ctx.instant(shared[ctx.cursor], f"state.{ctx.cursor}") - timedelta(seconds=lookback)


# --------------------------------------------------------------------------------------------
# Both steps
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MigratedState:
    """The 3.0.0 state of each stream that has one, and what the user should be told."""

    streams: dict[str, JSONObject]
    warnings: tuple[str, ...] = ()
    # Streams whose saved state was not already in the exact 3.0.0 form (for `upgrade-plan`).
    rewritten: tuple[str, ...] = ()


def migrate_state(raw: JSON, start_date: datetime | None, *, now: datetime | None = None) -> MigratedState:
    """`split_state_input` then `migrate_stream_state` for each stream, with warnings collected.

    Besides ignored streams, a cursor later than `now` is worth a warning: it was saved by an old
    version that let a future-dated record move state forward, and nothing before it is read again.
    """
    now = now or utc_now()
    streams: dict[str, JSONObject] = {}
    warnings: list[str] = []
    rewritten: list[str] = []
    for stream, raw_state in split_state_input(raw).items():
        if state_target(stream) is None:
            warnings.append(_ignored_stream_warning(stream))
            continue
        migrated = migrate_stream_state(stream, raw_state, start_date)
        if migrated is not None:
            streams[stream] = migrated
            warnings += _future_cursor_warnings(stream, migrated, now)
        if migrated != (raw_state or None):
            rewritten.append(stream)
    return MigratedState(streams, tuple(warnings), tuple(rewritten))


def _future_cursor_warnings(stream: str, state: JSONObject, now: datetime) -> list[str]:
    cursors = [entry["cursor"] for entry in state["states"]] if "states" in state else [state]
    latest = max(value for cursor in cursors for key, value in cursor.items() if key != GAPS)
    if parse_datetime(latest) <= now:
        return []
    return [
        f"state for stream {stream!r} is in the future ({latest}), so nothing older is read; "
        "reset the stream if that is wrong"
    ]


def _ignored_stream_warning(stream: str) -> str:
    if is_known_stream(stream):
        return f"stream {stream!r} is read in full on every sync; its saved state is ignored"
    return f"the state has a stream {stream!r} that this connector does not know; its state is ignored"


def _describe(value: object) -> str:
    kind = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)
    return f"{kind} ({_show(value)})" if isinstance(value, bool | int | float | str) else kind


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
