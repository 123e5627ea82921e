"""The emulator's world: every table, the ground truth, and "time moves" (mutations)."""

from __future__ import annotations

import random
import threading
import time
from array import array
from datetime import UTC, datetime

from .data.account import AccountSetup
from .data.catalog import Catalog
from .data.commerce import Commerce
from .data.content import Content
from .data.events import Events
from .data.profiles import Profiles
from .data.rng import iso, mix, salt
from .data.rows import RowBuilder, delete_rows, id_named
from .jsontext import JSONObject
from .scale import SCALES
from .table import RowTable, Table

MUTABLE_CURSOR = {"updated", "updated_at"}
# What Klaviyo lets an account delete (profiles by a data-privacy deletion request); children go with
# their parent: a campaign's messages, a flow's actions and their messages, a profile's events.
DELETABLE = ("profiles", "lists", "segments", "tags", "campaigns", "flows", "templates", "coupons")
# What the API can only read here: a record of these comes with the world (a variant with its item, a
# code with its coupon), never alone.
GENERATED_ONLY = ("catalog-variants", "coupon-codes", "accounts", "mapped-metrics")


def default_anchor() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


class World:
    def __init__(
        self, seed: int = 1, scale: str = "tiny", anchor: datetime | None = None, quirks: bool = True
    ) -> None:
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
        self.seed = seed
        self.quirks = quirks  # Klaviyo's observed shapes (quirks.py); False: the spec's (`--spec-strict`)
        self.scale = SCALES[scale]
        anchor_dt = anchor or default_anchor()
        if anchor_dt.tzinfo is None:
            anchor_dt = anchor_dt.replace(tzinfo=UTC)
        self.anchor = int(anchor_dt.timestamp())
        self.lock = threading.Lock()  # mutations may come from the test thread
        self.profiles = Profiles(seed, self.scale.profiles, self.anchor, quirks)
        self.catalog = Catalog(seed, self.anchor, self.scale, quirks)
        metrics = self.catalog.tables["metrics"]
        self.events = Events(
            seed,
            self.scale.events,
            self.anchor,
            self.scale.event_days,
            [metrics.id(i) for i in range(len(metrics))],
            [metrics.rows[i]["attributes"]["name"] for i in range(len(metrics))],
            self.profiles,
            quirks,
            self.catalog.senders(),
        )
        self.commerce = Commerce(seed, self.anchor, self.scale, self.catalog.tables["coupons"], self.profiles,
                                 self.events, id_named(metrics, "Ordered Product"), quirks)
        self.content = Content(seed, self.anchor, self.scale, quirks)
        self.setup = AccountSetup(seed, self.anchor, self.scale, metrics, self.profiles, quirks)
        # Who builds the rows of each small resource (adds them, stamps their times).
        self.builders: dict[str, RowBuilder] = {
            name: builder for builder in (self.catalog, self.commerce, self.content, self.setup)
            for name in builder.tables
        }
        self.rows: dict[str, RowTable] = {name: self.builders[name].tables[name] for name in self.builders}
        self.tables: dict[str, Table] = {"profiles": self.profiles, "events": self.events, **self.rows}
        # The groups profiles join by the generation rule; added groups start empty.
        self._group_slots = {
            kind: [self.tables[kind].id(i) for i in range(len(self.tables[kind]))]
            for kind in ("lists", "segments")
        }
        self._mutations = 0
        self.generation = 0  # bumped by every mutation; the page cache keys on it

    def table(self, resource: str) -> Table:
        return self.tables[resource]

    # memberships ---------------------------------------------------------------------------------

    def members(self, kind: str, group_id: str) -> array[int] | None:
        """The group's member profile indices; None when no such group exists (any more)."""
        if self.tables[kind].index_of(group_id) is None:
            return None
        return self.profiles.members(kind, self._group_slots[kind]).get(group_id, array("l"))

    def profile_count(self, kind: str, group_id: str) -> int:
        members = self.members(kind, group_id)
        return 0 if members is None else len(members)

    # truth ---------------------------------------------------------------------------------------

    def truth(self, resource: str) -> list[JSONObject]:
        if resource in ("list-memberships", "segment-memberships"):
            kind = resource.split("-")[0] + "s"
            key = kind[:-1] + "_id"
            groups = self.tables[kind]
            ids = [groups.id(i) for i in range(len(groups))]
            members = self.profiles.members(kind, self._group_slots[kind])
            return [{key: g, "profile_id": self.profiles.id(i),
                     "joined_group_at": iso(self.profiles.joined_at(kind, g, i))}
                    for g in ids for i in members.get(g, ())]
        table = self.tables.get(resource)
        if table is None:
            raise KeyError(resource)
        return [table.truth_row(i) for i in table.live()]

    # time moves ----------------------------------------------------------------------------------

    def mutate(
        self, resource: str, add: int = 0, update: int = 0, archive: int = 0, delete: int = 0
    ) -> dict[str, list[str]]:
        """Add, update (bump `updated`/`updated_at` to now), archive or delete records, in that order,
        stamped with the real now; a record is touched by at most one of them per call."""
        if resource not in self.tables:
            raise KeyError(resource)
        if min(add, update, archive, delete) < 0:
            raise ValueError("counts must be >= 0")
        if archive and resource not in ("campaigns", "flows"):
            raise ValueError("only campaigns and flows can be archived")
        if update and resource == "events":
            raise ValueError("events are immutable; only add")
        if add and resource in GENERATED_ONLY:
            raise ValueError(f"{resource} cannot be added alone; they come with the world")
        if delete and resource not in DELETABLE:
            raise ValueError(f"{resource} cannot be deleted; deletable: {', '.join(DELETABLE)}")
        now = int(time.time())
        result: dict[str, list[str]] = {"added": [], "updated": [], "archived": [], "deleted": []}
        with self.lock:
            self._mutations += 1
            rnd = random.Random(mix(self.seed, salt("mutate"), self._mutations))
            table = self.tables[resource]
            for _ in range(add):
                result["added"] += self._add(resource, now)
            if update:
                # records dated in the future are left alone: "now" would move them backwards
                added = set(result["added"])
                cursor = table.cursor_field
                candidates = [
                    i
                    for i in table.live()
                    if table.id(i) not in added and not (table.value(cursor, i) or 0) > now
                ]
                for i in rnd.sample(candidates, min(update, len(candidates))):
                    self._touch(resource, i, now)
                    result["updated"].append(table.id(i))
            if archive:
                candidates = [i for i in range(len(table)) if not table.value("archived", i)]
                for i in rnd.sample(candidates, min(archive, len(candidates))):
                    row = table.rows[i]  # type: ignore[attr-defined]
                    row["attributes"]["archived"] = True
                    row["truth"]["archived"] = True
                    self._touch(resource, i, now)
                    result["archived"].append(table.id(i))
            if delete:
                touched = {*result["added"], *result["updated"], *result["archived"]}
                candidates = [i for i in table.live() if table.id(i) not in touched]
                chosen = rnd.sample(candidates, min(delete, len(candidates)))
                result["deleted"] = [table.id(i) for i in chosen]
                self._delete(resource, chosen, result["deleted"])
            for t in self.tables.values():
                t.touched()  # child tables change too when parents gain children
            self.generation += 1
        return result

    def _add(self, resource: str, now: int) -> list[str]:
        if resource == "events":
            return [self.events.id(self.events.add(now))]
        if resource == "profiles":
            self.profiles.created.append(now)
            self.profiles.updated.append(now)
            self.profiles.touched()
            return [self.profiles.id(len(self.profiles) - 1)]
        return self.builders[resource].add(resource, now=now)

    def _delete(self, resource: str, indices: list[int], ids: list[str]) -> None:
        if resource == "profiles":
            self.profiles.delete(indices)  # memberships and events follow (profiles.py, events.py)
            # a data-privacy deletion takes the profile's devices too
            tokens, gone = self.rows["push-tokens"], set(ids)
            tokens.remove({row["id"] for row in tokens.rows if row["keys"]["profile.id"] in gone})
        else:
            delete_rows(self.rows, resource, set(ids))

    def _touch(self, resource: str, index: int, now: int) -> None:
        if resource == "profiles":
            self.profiles.updated[index] = now
            return
        table = self.tables[resource]
        field = "updated_at" if table.cursor_field == "updated_at" else "updated"
        row = table.rows[index]  # type: ignore[attr-defined]
        if field in row["attributes"]:
            self.builders[resource].stamp(resource, row, field, now)
