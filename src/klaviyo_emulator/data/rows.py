"""What every builder of small resources shares: its RowTables, adding a row, stamping a datetime, and
deleting rows with what hangs on them.

A builder owns some tables and has one `_make_<resource>(index, rnd, now)` per table (`-` written `_`):
the same builder serves the initial generation (`now` None: times spread before the anchor) and
`mutate(add=…)` (`now`: stamped then), so added records look like generated ones.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from ..jsontext import JSONObject
from ..table import RowTable
from .rng import iso, iso_us, micros, record_rng, salt

if TYPE_CHECKING:
    from ..scale import Scale

DAY = 86_400


class RowBuilder:
    # resource -> the datetime attributes Klaviyo writes with microseconds (quirks.py `datetime_microseconds`)
    microsecond_fields: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def __init__(self, seed: int, anchor: int, scale: Scale, quirks: bool = True) -> None:
        self.seed = seed
        self.anchor = anchor
        self.scale = scale
        self.quirks = quirks  # Klaviyo's observed shapes (quirks.py); False: the spec's
        self.tables: dict[str, RowTable] = {}

    def own(self, resource: str, type_: str, cursor: str) -> RowTable:
        """A new empty table of this builder; `cursor` is the attribute its truth rows report."""
        table = self.tables[resource] = RowTable(type_, cursor, [])
        return table

    def fill(self, resource: str, count: int) -> None:
        for i in range(count):
            self.add(resource, i)

    def add(self, resource: str, index: int | None = None, now: int | None = None) -> list[str]:
        """Add one record (and its children); returns the new ids of `resource`."""
        table = self.tables[resource]
        index = table.appended if index is None else index
        rnd = record_rng(self.seed, resource, index)
        builder = getattr(self, "_make_" + resource.replace("-", "_"))
        row = builder(index, rnd, now)
        table.append(row)
        return [row["id"]]

    def stamp(self, resource: str, row: JSONObject, field: str, epoch: int | None) -> None:
        """Set a datetime attribute and its key: with microseconds where Klaviyo writes them
        (`datetime_microseconds`), the key then an exact float, so filters and sorts see the fraction."""
        if epoch is None:
            row["attributes"][field] = None
            row["keys"][field] = None
            return
        if self.quirks and field in self.microsecond_fields.get(resource, ()):
            us = micros(self.seed, salt(resource), salt(row["id"]), salt(field), epoch)
            row["attributes"][field] = iso_us(epoch, us)
            row["keys"][field] = epoch + us / 1_000_000
        else:
            row["attributes"][field] = iso(epoch)
            row["keys"][field] = epoch


def spread_times(rnd: random.Random, anchor: int, now: int | None,
                 max_age_days: int = 3 * 365) -> tuple[int, int]:
    """(created, updated): updated anywhere from created to the anchor, often years later; both `now`
    for a record a mutation adds."""
    if now is not None:
        return now, now
    created = anchor - rnd.randrange(DAY, max_age_days * DAY)
    updated = created if rnd.random() < 0.15 else created + rnd.randrange(0, anchor - created)
    return created, updated


def id_named(table: RowTable, name: str | None) -> str | None:
    """The id of the first row whose `name` attribute is `name` (a metric by its name), if any."""
    for row in table.rows:
        if name is not None and row["attributes"].get("name") == name:
            found: str = row["id"]
            return found
    return None


# (child resource, its key naming the parent, parent resource), parents before their children: a
# deleted parent takes its children (a campaign its messages, a coupon its codes).
CHILDREN = (
    ("campaign-messages", "campaign_id", "campaigns"),
    ("flow-actions", "flow_id", "flows"),
    ("flow-messages", "flow_action_id", "flow-actions"),
    ("catalog-variants", "item.id", "catalog-items"),
    ("coupon-codes", "coupon.id", "coupons"),
)


def delete_rows(tables: Mapping[str, RowTable], resource: str, ids: set[str]) -> None:
    """Delete records with their children; every to-many relationship naming one forgets it (a deleted
    tag leaves its lists and campaigns, a deleted campaign its tags)."""
    gone: dict[str, set[str]] = {tables[resource].type: ids}
    for child, key, parent in CHILDREN:
        parents = gone.get(tables[parent].type) if parent in tables and child in tables else None
        if parents:
            rows = tables[child].rows
            gone[tables[child].type] = {row["id"] for row in rows if row["keys"][key] in parents}
    for table in tables.values():
        if table.type in gone:
            table.remove(gone[table.type])
    for table in tables.values():
        for row in table.rows:
            for name, rel in row["rels"].items():
                if isinstance(rel, list) and any(rid in gone.get(type_, ()) for type_, rid in rel):
                    row["rels"][name] = [(t, rid) for t, rid in rel if rid not in gone.get(t, ())]
