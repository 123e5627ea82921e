"""Klaviyo's observed misbehaviours, reproduced on purpose so a connector is tested against them.

Archived campaigns come back slightly unsorted (../shared/reference/klaviyo-quirks.md): asked for
`equals(archived,true)` sorted by `updated_at`, the API serves a few records one place early or late.
Here the order is the true order with some adjacent pairs swapped, a pure function of the seed and
the records' ids, so every page size and every walk sees the same sequence, and a swapped pair falls
across a page boundary as often as the page size allows.

Paging stays exact (every record exactly once, whatever mutations happen between pages) by a cursor
that carries, besides the furthest key served in the true order, the keys of the records it holds
back: those sorting before that furthest key but not served yet (the early half of a pair split by
the page boundary).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from .data.rng import mix, salt
from .filters import Condition
from .query import Selection, select
from .table import SortKey, Table

_SALT = salt("unsorted-archived-campaigns")
SWAP_ONE_IN = 4  # a record is picked with this odds; a pick swaps it with its successor (~19 % of records)


def serves_unsorted(route: str, conditions: list[Condition], sort: str) -> bool:
    """The one query Klaviyo is seen to misorder: archived campaigns by `updated_at` (either way)."""
    archived = any(c.op == "equals" and c.field == "archived" and c.value is True for c in conditions)
    return route == "/api/campaigns" and sort == "updated_at" and archived


def slightly_unsorted(table: Table, indices: list[int], seed: int) -> list[int]:
    """`indices` (in true order) with some adjacent pairs swapped.

    A record starts a swap when it is picked and its predecessor is not: pairs never overlap, and
    whether a record moves depends only on itself and its neighbour, not on where a walk started."""
    picked = [mix(seed, _SALT, salt(table.id(i))) % SWAP_ONE_IN == 0 for i in indices]
    served = list(indices)
    for pos in range(len(served) - 1):
        if picked[pos] and not (pos and picked[pos - 1]):
            served[pos], served[pos + 1] = served[pos + 1], served[pos]
    return served


@dataclass
class UnsortedPage:
    selection: Selection  # `last_key`: the furthest key served so far in the true order
    held: list[SortKey]  # keys sorting before `last_key` that are still to come


def unsorted_page(
    table: Table,
    conditions: list[Condition],
    sort: str,
    descending: bool,
    after: SortKey | None,
    held: list[SortKey],
    limit: int,
    seed: int,
) -> UnsortedPage:
    """The page after the cursor (`after`, `held`) of the slightly unsorted sequence."""
    everything = select(table, conditions, sort, descending, None, len(table) + 1).indices
    key_of = partial(table.key_of, sort)

    def beyond(key: SortKey, edge: SortKey | None) -> bool:
        return edge is None or (key < edge if descending else key > edge)

    waiting = set(held)
    remaining = [
        i
        for i in slightly_unsorted(table, everything, seed)
        if beyond(key_of(i), after) or key_of(i) in waiting
    ]
    page, rest = remaining[:limit], remaining[limit:]
    furthest = after
    for i in page:
        if beyond(key_of(i), furthest):
            furthest = key_of(i)
    still_held = [key_of(i) for i in rest if not beyond(key_of(i), furthest)]
    return UnsortedPage(Selection(page, bool(rest), furthest), still_held)
