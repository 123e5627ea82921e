"""What each declared stream must read, from the emulator's ground truth: the one place tests learn it.

Derived from the stream table (`source_klaviyo.streams.STREAMS`) by the declaration's features (its
endpoint, parent, hook, cursor), never by a stream's name, so that a new declaration is covered by
every suite that iterates `TRUTHS` without a test edit. The emulator stays an independent model of
Klaviyo: its truth is named after Klaviyo's resources (`profiles`, `flow-actions`,
`list-memberships`, `campaign-messages`, ...), and the rules below say which of them a stream reads.
The samples that costly scenarios read (`PLAIN_INCREMENTAL`, `one_per_shape`) and the changes tests
make between two reads (`changes_of`) are chosen by feature too, and so is the chain of requests that
reads each row (`chain_key`, `chain_keys`: by parent or partition).

    >>> TRUTHS["global_exclusions"].resource, TRUTHS["global_exclusions"].cursor
    ('profiles', 'updated')
    >>> TRUTHS["flow_actions"].key
    ('id', 'flow_id')
    >>> TRUTHS["list_memberships"].resource, TRUTHS["list_memberships"].key
    ('list-memberships', ('list_id', 'profile_id'))
    >>> "campaign_values_reports" in TRUTHS  # a report's records are computed, not stored
    False
    >>> "flows" in PLAIN_INCREMENTAL, "events_detailed" in PLAIN_INCREMENTAL  # the latter: an include on top
    (True, False)
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from source_klaviyo import hooks
from source_klaviyo.datetimes import parse_datetime
from source_klaviyo.streams import STREAMS, PartitionAxis, Stream

Row = dict[str, Any]


class HasTruth(Protocol):
    def truth(self, resource: str) -> list[Row]: ...


@dataclass(frozen=True)
class Truth:
    """A stream's expected records: rows of the emulator's `resource` that `keep` accepts, compared
    on `key` (fields a record and its truth row share); `cursor` is the row's field that bounds an
    incremental read (None for a stream without state). `paged` is the resource whose rows the
    endpoint's pages hold, where the records are not those rows (records taken from `included`)."""

    stream: Stream
    resource: str
    key: tuple[str, ...]
    cursor: str | None = None
    keep: Callable[[Row], bool] | None = None
    paged: str | None = None

    @property
    def name(self) -> str:
        return self.stream.name

    def rows(self, emulator: HasTruth) -> list[Row]:
        return [row for row in emulator.truth(self.resource) if self.keep is None or self.keep(row)]

    def paged_rows(self, emulator: HasTruth) -> list[Row]:
        """The rows the endpoint's pages hold: the records' own rows (those `keep` drops are the ones the
        declaration's `filter` keeps off the pages), or the endpoint's resource for included records."""
        return self.rows(emulator) if self.paged is None else emulator.truth(self.paged)

    def key_of(self, record: Row) -> tuple[Any, ...]:
        return tuple(record[field] for field in self.key)

    def keys(self, emulator: HasTruth, lower: datetime | None = None,
             upper: datetime | None = None) -> set[tuple[Any, ...]]:
        """The keys of the rows whose cursor is in `[lower, upper)` (every row without bounds)."""
        return {self.key_of(row) for row in self.rows(emulator) if self._within(row, lower, upper)}

    def records_keys(self, records: Iterable[Row]) -> list[tuple[Any, ...]]:
        return [self.key_of(record) for record in records]

    def _within(self, row: Row, lower: datetime | None, upper: datetime | None) -> bool:
        if self.cursor is None or (lower is None and upper is None):
            return True
        stamp = parse_datetime(row[self.cursor])
        return (lower is None or stamp >= lower) and (upper is None or stamp < upper)


def _suppressed(row: Row) -> bool:
    return bool(row.get("suppressed"))


def truth_of(stream: Stream) -> Truth | None:
    """The truth of a declared stream; None for a report stream (its records are computed)."""
    if stream.report is not None:
        return None
    hook = stream.hook
    cursor = stream.incremental.cursor if stream.incremental else None
    keep = _suppressed if isinstance(hook, hooks.OnlySuppressed) else None
    if isinstance(hook, hooks.Membership):
        assert stream.parent is not None
        group = stream.parent.key.removesuffix("_id")
        return Truth(stream, f"{group}-memberships", stream.primary_key, cursor, keep)
    resource = [part for part in stream.path.split("/") if part and not part.startswith("{")][-1]
    if isinstance(hook, hooks.IncludedAsRecords):
        included = f"{hook.included_type}s"
        return Truth(stream, included, ("id", hook.parent_field), cursor, keep, paged=resource)
    key = stream.primary_key + ((stream.parent.key,) if stream.parent else ())
    return Truth(stream, resource, key, cursor, keep)


TRUTHS: dict[str, Truth] = {truth.name: truth for truth in map(truth_of, STREAMS) if truth is not None}
REPORT_STREAMS: tuple[Stream, ...] = tuple(stream for stream in STREAMS if stream.report is not None)
INCREMENTAL_TRUTHS: dict[str, Truth] = {name: truth for name, truth in TRUTHS.items() if truth.cursor}


_FILTERED_FIELD = re.compile(r"^[a-z-]+\(([\w.]+),")


def axis_field(axis: PartitionAxis) -> str:
    """The truth row's field a partition axis selects by: the one its filter names, by its last part
    (a row carries the related message's `messages.channel` as `channel`).

    >>> [axis_field(axis) for axis in TRUTHS["campaigns"].stream.partitions]
    ['channel', 'archived']
    """
    found = _FILTERED_FIELD.match(axis.filter)
    assert found, f"a partition filter names its field first: {axis.filter}"
    return found.group(1).rsplit(".", 1)[-1]


def partition_of(stream: Stream, row: Row) -> dict[str, str]:
    """The partition of `stream` whose chain reads `row`, its values written as the filter writes them.

    >>> partition_of(TRUTHS["campaigns"].stream, {"id": "c1", "channel": "sms", "archived": True})
    {'campaign_type': 'sms', 'archived': 'true'}
    """
    def literal(value: object) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    return {axis.key: literal(row[axis_field(axis)]) for axis in stream.partitions}


ChainKey = tuple[str, ...]


def chain_key(stream: Stream, row: Row) -> ChainKey:
    """The chain of a read that pages through `row` (a row of `paged_rows`): its parent's, or its partition's.

    >>> chain_key(TRUTHS["flow_actions"].stream, {"id": "a1", "flow_id": "f1"})
    ('f1',)
    """
    if stream.parent is not None:
        return (row[stream.parent.key],)
    return tuple(partition_of(stream, row).values())


def chain_keys(stream: Stream, emulator: HasTruth) -> list[ChainKey]:
    """Every chain of a read of `stream` that is not cut into ranges, empty ones included: one per row
    of the parent's pages (the parent's ids), else one per partition (one for a stream without)."""
    if stream.parent is not None:
        return [(row["id"],) for row in TRUTHS[stream.parent.stream].paged_rows(emulator)]
    return list(itertools.product(*(axis.values for axis in stream.partitions)))


def reads_its_endpoint_plainly(stream: Stream) -> bool:
    """An incremental stream of its endpoint's own records: no `include`, no per-record detail, no parent."""
    return (stream.incremental is not None and not stream.include and stream.detail is None
            and stream.parent is None)


# The sample the costly scenarios (faults, kills, outages, proxies) read: every cursor, partition and
# filter shape of the table (a split range, partitions, `greater-than` only, a client-side filter,
# unsorted pages, a filtered subset of an endpoint), without the streams that repeat one of these
# endpoints with an include or a detail request on top.
PLAIN_INCREMENTAL: tuple[str, ...] = tuple(
    name for name, truth in INCREMENTAL_TRUTHS.items() if reads_its_endpoint_plainly(truth.stream)
)

# The shapes of a read that checkpointing and resuming treat differently.
READ_SHAPES: dict[str, Callable[[Stream], bool]] = {
    "a cursor per partition": lambda s: s.incremental is not None and bool(s.partitions),
    "a cursor range cut into chains": lambda s: s.incremental is not None and s.split_by is not None,
    "one cursor, one chain": lambda s: s.incremental is not None and not s.partitions and s.split_by is None,
    "a fan-out over a parent's records": lambda s: s.parent is not None,
    "a full refresh of one endpoint": lambda s: s.incremental is None and s.parent is None,
}


def one_per_shape(names: Iterable[str]) -> list[str]:
    """For each read shape, the first of `names` (a sample of every shape, each stream once).

    >>> one_per_shape(TRUTHS)[:2]  # partitions; a range cut into chains
    ['campaigns', 'events']
    """
    candidates = list(names)
    sample: list[str] = []
    for has_shape in READ_SHAPES.values():
        found = next((name for name in candidates if has_shape(TRUTHS[name].stream)), None)
        if found is not None and found not in sample:
            sample.append(found)
    return sample


# Records added in one second: more than the smallest page holds, so a page ends inside the second.
BURST = min(stream.page_size for stream in STREAMS if stream.page_size) + 2


def changes_of(*streams: Stream) -> dict[str, int]:
    """What a test changes in the emulator's resource of `streams` between two incremental reads: a
    burst of records added in one second; as many updated (never events: they are append-only); two
    archived where one of the streams is partitioned by `archived`.

    >>> changes_of(TRUTHS["campaigns"].stream), changes_of(TRUTHS["events"].stream)
    ({'add': 12, 'update': 12, 'archive': 2}, {'add': 12})
    """
    change = {"add": BURST}
    if not any(stream.incremental and stream.incremental.append_only for stream in streams):
        change["update"] = BURST
    if any(axis.key == "archived" for stream in streams for axis in stream.partitions):
        change["archive"] = 2
    return change
