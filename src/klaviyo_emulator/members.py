"""A list's or segment's profiles as a table of their own, sorted by when each profile joined."""

from __future__ import annotations

from array import array

from .data.profiles import Profiles
from .data.rng import iso
from .jsontext import JSONObject
from .table import FieldValue, Rel, Table


class MemberView(Table):
    type = "profile"
    cursor_field = "joined_group_at"

    def __init__(self, profiles: Profiles, kind: str, group_id: str, members: array[int]) -> None:
        super().__init__()
        self.profiles = profiles
        self.kind = kind
        self.group_id = group_id
        self.members = members
        self.joined = array("q", (profiles.joined_at(kind, group_id, i) for i in members))

    def __len__(self) -> int:
        return len(self.members)

    def id(self, index: int) -> str:
        return self.profiles.id(self.members[index])

    def index_of(self, record_id: str) -> int | None:
        return None

    def value(self, field: str, index: int) -> FieldValue:
        if field == "joined_group_at":
            return self.joined[index]
        if field == "push_token":
            return None
        return self.profiles.value(field, self.members[index])

    def attributes(self, index: int, additional: frozenset[str]) -> JSONObject:
        attributes = self.profiles.attributes(self.members[index], additional)
        attributes["joined_group_at"] = iso(self.joined[index])
        return attributes

    def relationships(self, index: int) -> dict[str, Rel]:
        return {"lists": None, "segments": None, "push-tokens": None}
