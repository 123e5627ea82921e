"""The read interface every resource offers the query engine, and the small-resource implementation.

A table is addressed by a dense record index. Filters and sorts read `value(field, i)` (datetimes as epoch
seconds), so neither needs a rendered record; `order(field)` is a cached index permutation, which makes a
range filter on the sort field a binary search and a page a slice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from .jsontext import JSONObject

Rel = tuple[str, str] | list[tuple[str, str]] | None  # to-one (type, id), to-many, or links only
# A field's value as filters and sorts read it: str, int (datetimes as epoch seconds), float, bool,
# a list of str, or None. Any: a sort compares the values of one field with each other, which a
# union of those types cannot say, and each resource computes them its own way.
FieldValue = Any
# A record's place in the order by a field: (0 for null else 1, the value, the index).
SortKey = tuple[int, FieldValue, int]


def sort_key(value: FieldValue, index: int) -> SortKey:
    """Nulls first, then by value, then by index so the order is total (keyset cursors need that)."""
    return (0, 0, index) if value is None else (1, value, index)


class Table:
    type: str = ""
    cursor_field: str = "updated"  # the attribute the truth endpoint reports

    def __init__(self) -> None:
        self.version = 0  # bumped by every mutation; keys the order and page caches
        self._orders: dict[str, tuple[int, list[int]]] = {}

    def __len__(self) -> int:
        raise NotImplementedError

    def id(self, index: int) -> str:
        raise NotImplementedError

    def index_of(self, record_id: str) -> int | None:
        raise NotImplementedError

    def live(self) -> Iterable[int]:
        """Indices of the records that exist: all of them, unless a mutation deleted some."""
        return range(len(self))

    # A sort key's last member (`SortKey`) breaks ties: the index, or a creation sequence that stays
    # put when records are deleted. Klaviyo-shaped cursors name records by id (quirks.py), so each
    # table maps between the two, deleted records included.

    def key_id(self, tiebreak: int) -> str:
        """The id of the record a sort key's tie-break names (deleted or not)."""
        return self.id(tiebreak)

    def key_tiebreak(self, record_id: str) -> int | None:
        """The tie-break of the record with this id (deleted or not); None for an id this table never
        had."""
        return self.index_of(record_id)

    def appended_count(self) -> int:
        """How many tie-breaks were ever handed out."""
        return len(self)

    def value(self, field: str, index: int) -> FieldValue:
        raise NotImplementedError

    def attributes(self, index: int, additional: frozenset[str]) -> JSONObject:
        raise NotImplementedError

    def relationships(self, index: int) -> dict[str, Rel]:
        return {}

    def truth_row(self, index: int) -> JSONObject:
        return {
            "id": self.id(index),
            self.cursor_field: self.attributes(index, frozenset())[self.cursor_field],
        }

    def key_of(self, field: str, index: int) -> SortKey:
        """The record's place in the order by `field` (what a keyset cursor carries)."""
        return sort_key(self.value(field, index), index)

    def order(self, field: str) -> Sequence[int]:
        cached = self._orders.get(field)
        if cached and cached[0] == self.version:
            return cached[1]
        order = sorted(self.live(), key=partial(self.key_of, field))
        self._orders[field] = (self.version, order)
        return order

    def touched(self) -> None:
        self.version += 1


class RowTable(Table):
    """A resource small enough to hold as dicts (everything but profiles and events)."""

    def __init__(self, type_: str, cursor_field: str, rows: list[JSONObject]) -> None:
        super().__init__()
        self.type = type_
        self.cursor_field = cursor_field
        self.rows = rows
        self._by_id = {row["id"]: i for i, row in enumerate(rows)}
        # Records ever appended: new ids derive from it, so an id freed by a deletion is never reused,
        # and each row's `seq` (its tie-break in every order) stays put when rows before it go.
        self.appended = len(rows)
        self._ids_by_seq = [row["id"] for row in rows]  # never shrinks: ids are never reused
        self._seq_by_id = {record_id: seq for seq, record_id in enumerate(self._ids_by_seq)}
        for seq, row in enumerate(rows):
            row["seq"] = seq
        self.extra_truth: Callable[[JSONObject], JSONObject] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def id(self, index: int) -> str:
        record_id: str = self.rows[index]["id"]
        return record_id

    def index_of(self, record_id: str) -> int | None:
        return self._by_id.get(record_id)

    def key_id(self, tiebreak: int) -> str:
        record_id: str = self._ids_by_seq[tiebreak]
        return record_id

    def key_tiebreak(self, record_id: str) -> int | None:
        return self._seq_by_id.get(record_id)

    def appended_count(self) -> int:
        return self.appended

    def key_of(self, field: str, index: int) -> SortKey:
        # the creation sequence, not the list position: a cursor stays valid across a deletion
        return sort_key(self.value(field, index), self.rows[index]["seq"])

    def value(self, field: str, index: int) -> FieldValue:
        row = self.rows[index]
        if field == "id":
            return row["id"]
        keys = row["keys"]
        return keys[field] if field in keys else row["attributes"].get(field)

    def attributes(self, index: int, additional: frozenset[str]) -> JSONObject:
        row = self.rows[index]
        attributes = dict(row["attributes"])
        for name, value in row.get("additional", {}).items():
            if name in additional:
                attributes[name] = value
        return attributes

    def relationships(self, index: int) -> dict[str, Rel]:
        rels: dict[str, Rel] = self.rows[index]["rels"]
        return rels

    def truth_row(self, index: int) -> JSONObject:
        row = self.rows[index]
        out = {"id": row["id"], self.cursor_field: row["attributes"][self.cursor_field]}
        out.update(row.get("truth", {}))
        return out

    def append(self, row: JSONObject) -> None:
        self._by_id[row["id"]] = len(self.rows)
        row["seq"] = self.appended
        self._seq_by_id[row["id"]] = self.appended
        self._ids_by_seq.append(row["id"])
        self.rows.append(row)
        self.appended += 1
        self.touched()

    def remove(self, ids: set[str]) -> None:
        """Delete the rows with these ids (indices of the others shift down: caches key on `version`)."""
        self.rows[:] = [row for row in self.rows if row["id"] not in ids]
        self._by_id = {row["id"]: i for i, row in enumerate(self.rows)}
        self.touched()
