"""A stream's state, both ways: what a saved state leaves to read, and the state of what was read.

One rule everywhere: a saved cursor `S` means every record whose cursor is `< S` was emitted, except
in the `gaps` the state lists (ranges below `S` never read). A read covers the gaps and `[start,
upper)` where `start = max(S - lookback, start_date)` and `upper = now - UPPER_MARGIN` (never past
now: records stamped later, e.g. in the future, are left for a later sync). Its state, at any
checkpoint, is what its spans have emitted (`ranges.Spans.state`).

Shapes (3.0.0): `{"<cursor>": "…", "gaps": [{"start", "end"}]}` for a stream, and for a partitioned
one `{"states": [{"partition": {…}, "cursor": {"<cursor>": "…"}, "gaps": […]}]}`.

    >>> from source_klaviyo.streams import STREAMS_BY_NAME
    >>> flows = STREAMS_BY_NAME["flows"]
    >>> archived = {"partition": {"archived": "true"}, "cursor": {"updated": "2024-05-01T00:00:00+00:00"}}
    >>> saved = {"states": [archived]}
    >>> saved_position(flows, saved, {"archived": "true"})
    (datetime.datetime(2024, 5, 1, 0, 0, tzinfo=datetime.timezone.utc), [])
    >>> saved_position(flows, saved, {"archived": "false"})
    (None, [])
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .chains import Partition
from .contracts import JSONObject, StreamState
from .datetimes import floor_second, format_datetime, parse_datetime
from .ranges import GAPS, NO_LOWER_BOUND, Range, Spans, to_read
from .streams import Stream

if TYPE_CHECKING:
    from .config import Config

UPPER_MARGIN = timedelta(seconds=5)


def read_upper(now: datetime) -> datetime:
    """Where a read that starts `now` stops: records stamped later are left for the next one."""
    return floor_second(now) - UPPER_MARGIN


def saved_position(stream: Stream, saved: StreamState | None, partition: Partition,
                   ) -> tuple[datetime | None, list[Range]]:
    """The saved cursor of `partition` and the gaps below it that were never read."""
    inc = stream.incremental
    if inc is None or not saved:
        return None, []
    entry: JSONObject = saved
    value = saved.get(inc.cursor)
    if stream.partitions:
        entries = [s for s in saved.get("states") or () if s.get("partition") == partition]
        entry = entries[0] if entries else {}
        value = (entry.get("cursor") or {}).get(inc.cursor)
    gaps = [(parse_datetime(gap["start"]), parse_datetime(gap["end"])) for gap in entry.get(GAPS) or ()]
    try:
        return (parse_datetime(value) if value is not None else None), gaps
    except ValueError:
        return None, gaps


def ranges_to_read(stream: Stream, config: Config, saved: StreamState | None, partition: Partition,
                   upper: datetime) -> list[Range]:
    """What the read of `partition` covers: from the state (its gaps, then `[cursor - lookback,
    upper)`), else from `start_date`, else from the first record. `saved` is None for a full refresh."""
    inc = stream.incremental
    if inc is None:
        return to_read(None, [], start_date=None, lookback=timedelta(0), upper=upper)
    cursor, gaps = saved_position(stream, saved, partition)
    lookback = inc.lookback + (timedelta(days=config.lookback_window_days) if inc.config_lookback
                               else timedelta(0))
    return to_read(cursor, gaps, start_date=config.start_date, lookback=lookback, upper=upper)


def cursor_state(cursor: str, spans: Spans) -> JSONObject | None:
    """One partition's state: `{cursor: …}`, with the `gaps` below it that were never read; None
    before the read has emitted anything of a range without a lower bound."""
    position, gaps = spans.state()
    if position == NO_LOWER_BOUND and not gaps:
        return None
    state: JSONObject = {cursor: format_datetime(position)}
    if gaps:
        state[GAPS] = [{"start": format_datetime(low), "end": format_datetime(high)} for low, high in gaps]
    return state


def stream_state(stream: Stream, partitions: Iterable[tuple[Partition, Spans]]) -> StreamState | None:
    """The stream's state from each partition's spans (None when none has anything to state yet)."""
    inc = stream.incremental
    assert inc is not None, "only incremental streams keep state"
    entries = [(partition, cursor_state(inc.cursor, spans)) for partition, spans in partitions]
    if not stream.partitions:
        return entries[0][1] if entries else None
    states: list[JSONObject] = []
    for partition, entry in entries:
        if entry is not None:
            gaps = entry.pop(GAPS, None)
            states.append({"partition": partition, "cursor": entry, **({GAPS: gaps} if gaps else {})})
    return {"states": states} if states else None
