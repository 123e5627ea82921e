"""What each declared stream must read, from the emulator's ground truth: the one place tests learn it.

Derived from the stream table (`source_klaviyo.streams.STREAMS`) by the declaration's features (its
endpoint, parent, hook, cursor), never by a stream's name, so that a new declaration is covered by
every suite that iterates `TRUTHS` without a test edit. The emulator stays an independent model of
Klaviyo: its truth is named after Klaviyo's resources (`profiles`, `flow-actions`,
`list-memberships`, `campaign-messages`, ...), and the rules below say which of them a stream reads.

    >>> TRUTHS["global_exclusions"].resource, TRUTHS["global_exclusions"].cursor
    ('profiles', 'updated')
    >>> TRUTHS["flow_actions"].key
    ('id', 'flow_id')
    >>> TRUTHS["list_memberships"].resource, TRUTHS["list_memberships"].key
    ('list-memberships', ('list_id', 'profile_id'))
    >>> "campaign_values_reports" in TRUTHS  # a report's records are computed, not stored
    False
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from source_klaviyo import hooks
from source_klaviyo.datetimes import parse_datetime
from source_klaviyo.streams import STREAMS, Stream

Row = dict[str, Any]


class HasTruth(Protocol):
    def truth(self, resource: str) -> list[Row]: ...


@dataclass(frozen=True)
class Truth:
    """A stream's expected records: rows of the emulator's `resource` that `keep` accepts, compared
    on `key` (fields a record and its truth row share); `cursor` is the row's field that bounds an
    incremental read (None for a stream without state)."""

    stream: Stream
    resource: str
    key: tuple[str, ...]
    cursor: str | None = None
    keep: Callable[[Row], bool] | None = None

    @property
    def name(self) -> str:
        return self.stream.name

    def rows(self, emulator: HasTruth) -> list[Row]:
        return [row for row in emulator.truth(self.resource) if self.keep is None or self.keep(row)]

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
    if isinstance(hook, hooks.IncludedAsRecords):
        return Truth(stream, f"{hook.included_type}s", ("id", hook.parent_field), cursor, keep)
    resource = [part for part in stream.path.split("/") if part and not part.startswith("{")][-1]
    key = stream.primary_key + ((stream.parent.key,) if stream.parent else ())
    return Truth(stream, resource, key, cursor, keep)


TRUTHS: dict[str, Truth] = {truth.name: truth for truth in map(truth_of, STREAMS) if truth is not None}
REPORT_STREAMS: tuple[Stream, ...] = tuple(stream for stream in STREAMS if stream.report is not None)
INCREMENTAL_TRUTHS: dict[str, Truth] = {name: truth for name, truth in TRUTHS.items() if truth.cursor}
