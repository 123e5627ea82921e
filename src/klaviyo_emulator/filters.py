"""Parser for Klaviyo's `filter` query language.

    equals(messages.channel,'email'),greater-or-equal(updated,2024-01-01T00:00:00Z)
    and(equals(archived,true),any(id,["a","b"]))

Top-level comma-separated conditions and `and(...)` both mean AND; `or`/`not` are not supported by any
endpoint we emulate, so they are rejected like an unknown operator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError, invalid

OPERATORS = frozenset(
    {
        "equals",
        "any",
        "contains",
        "starts-with",
        "ends-with",
        "greater-than",
        "greater-or-equal",
        "less-than",
        "less-or-equal",
        "has",
    }
)


@dataclass(frozen=True)
class Condition:
    op: str
    field: str
    # A `FilterLiteral`, a list of them (`any`) or None (`has`). Any: which one is fixed by `op`, and each
    # reader of a condition checks `op` first; a union would need a cast at every use.
    value: Any


@dataclass(frozen=True)
class DateTimeLiteral:
    """An unquoted ISO 8601 datetime, kept apart from strings so a quoted datetime can be refused."""

    epoch: float
    text: str


# A literal of a filter expression as parsed.
FilterLiteral = str | bool | int | float | DateTimeLiteral | None


_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$")


def _bad(detail: str = "Invalid filter provided") -> ApiError:
    return invalid(detail, parameter="filter")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise _bad(f"Invalid filter provided: expected '{char}' at position {self.pos}")
        self.pos += 1

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] in "-_.$"):
            self.pos += 1
        if start == self.pos:
            raise _bad(f"Invalid filter provided: expected a name at position {start}")
        return self.text[start : self.pos]

    def expression_list(self) -> list[Condition]:
        conditions = self.expression()
        while self.peek() == ",":
            self.pos += 1
            conditions += self.expression()
        return conditions

    def expression(self) -> list[Condition]:
        op = self.name()
        self.expect("(")
        if op == "and":
            inner = self.expression_list()
            self.expect(")")
            return inner
        if op not in OPERATORS:
            raise _bad(f"Invalid filter provided: unsupported operator '{op}'")
        field = self.name()
        value: FilterLiteral | list[FilterLiteral] = None
        if op == "has":
            self.expect(")")
            return [Condition(op, field, None)]
        self.expect(",")
        value = self.literal_list() if op == "any" else self.literal()
        self.expect(")")
        return [Condition(op, field, value)]

    def literal_list(self) -> list[FilterLiteral]:
        self.expect("[")
        values = [self.literal()]
        while self.peek() == ",":
            self.pos += 1
            values.append(self.literal())
        self.expect("]")
        return values

    def literal(self) -> FilterLiteral:
        char = self.peek()
        if char in ("'", '"'):
            end = self.text.find(char, self.pos + 1)
            if end < 0:
                raise _bad("Invalid filter provided: unterminated string")
            value = self.text[self.pos + 1 : end]
            self.pos = end + 1
            return value
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ",)]":
            self.pos += 1
        word = self.text[start : self.pos].strip()
        if word in ("true", "false"):
            return word == "true"
        if word == "null":
            return None
        if _NUMBER.match(word):
            return float(word) if any(c in word for c in ".eE") else int(word)
        if _DATETIME.match(word):
            try:
                parsed = datetime.fromisoformat(word.replace("Z", "+00:00"))
            except ValueError:
                raise _bad(f"Invalid filter provided: bad datetime '{word}'") from None
            if parsed.tzinfo is None:
                # Klaviyo reads naive datetimes as UTC.

                parsed = parsed.replace(tzinfo=UTC)
            return DateTimeLiteral(parsed.timestamp(), word)
        raise _bad(f"Invalid filter provided: cannot read value '{word}' (strings must be quoted)")


def parse_filter(text: str) -> list[Condition]:
    """Parse a filter expression into a flat AND-list of conditions; raises a 400 ApiError."""
    parser = _Parser(text.strip())
    if not parser.text:
        raise _bad("Invalid filter provided: empty filter")
    conditions = parser.expression_list()
    if parser.pos != len(parser.text):
        raise _bad(f"Invalid filter provided: unexpected text at position {parser.pos}")
    return conditions
