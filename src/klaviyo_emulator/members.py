"""A list's or segment's profiles as a table of their own, sorted by when each profile joined."""

from __future__ import annotations

from array import array
from bisect import bisect_left

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

    def key_tiebreak(self, record_id: str) -> int | None:
        """The member's position; for a profile no longer a member, the position before where it was
        (a key there sorts after every member served before it and before every later one)."""
        index = self.profiles.key_tiebreak(record_id)
        if index is None:
            return None
        pos = bisect_left(self.members, index)  # members are in profile index order
        return pos if pos < len(self.members) and self.members[pos] == index else pos - 1

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
        rels: dict[str, Rel] = {"lists": None, "segments": None, "push-tokens": None}
        if self.profiles.quirks:
            rels["conversation"] = None  # `profile_conversation_name`: singular off /api/profiles
        return rels
