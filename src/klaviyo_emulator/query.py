"""Validating a request's query string against its endpoint, and selecting the records of one page."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from .endpoints import BOOL, DT, NUM, STR, Endpoint
from .errors import invalid
from .filters import Condition, DateTimeLiteral, parse_filter
from .table import FieldValue, SortKey, Table

CHANNELS = ("email", "sms", "mobile_push")
RANGE_OPS = {"greater-than", "greater-or-equal", "less-than", "less-or-equal"}


@dataclass
class Query:
    params: list[tuple[str, str]]
    fields: dict[str, frozenset[str]] = field(default_factory=dict)
    additional: dict[str, frozenset[str]] = field(default_factory=dict)
    includes: frozenset[str] = frozenset()
    conditions: list[Condition] = field(default_factory=list)
    sort: str = "id"
    descending: bool = False
    page_size: int = 0
    cursor: str | None = None


def parse_query(endpoint: Endpoint, params: list[tuple[str, str]]) -> Query:
    """Every check Klaviyo makes on the query string; raises a 400 ApiError naming the parameter."""
    allowed = endpoint.params()
    query = Query(params=params, sort=endpoint.default_sort)
    seen: set[str] = set()
    for name, value in params:
        if name not in allowed:
            raise invalid(f"'{name}' is not a valid query parameter for this endpoint", parameter=name)
        if name in seen:
            raise invalid(f"'{name}' was given more than once", parameter=name)
        seen.add(name)
        if name.startswith("fields["):
            type_ = name[7:-1]
            names = _split(value, name)
            for item in names:
                if item.split(".")[0] not in endpoint.fields[type_]:
                    raise invalid(f"'{item}' is not a valid field for '{type_}'", parameter=name)
            query.fields[type_] = frozenset(names)
        elif name.startswith("additional-fields["):
            type_ = name[18:-1]
            names = _split(value, name)
            for item in names:
                if item not in endpoint.additional[type_]:
                    raise invalid(f"'{item}' is not a valid additional field for '{type_}'", parameter=name)
            query.additional[type_] = frozenset(names)
        elif name == "include":
            names = _split(value, name)
            for item in names:
                if item not in endpoint.includes:
                    raise invalid(f"'{item}' is not a valid relationship to include", parameter=name)
            query.includes = frozenset(names)
        elif name == "filter":
            query.conditions = parse_filter(value)
            _check_conditions(endpoint, query.conditions)
        elif name == "sort":
            desc = value.startswith("-")
            sort = value[1:] if desc else value
            if sort not in endpoint.sorts:
                raise invalid(f"Sort by '{value}' is not supported", parameter="sort")
            query.sort, query.descending = sort, desc
        elif name == "page[size]":
            assert endpoint.page_size is not None
            try:
                size = int(value)
            except ValueError:
                raise invalid("page[size] must be an integer", parameter=name) from None
            if not 1 <= size <= endpoint.page_size[1]:
                raise invalid(f"page[size] must be between 1 and {endpoint.page_size[1]}", parameter=name)
            query.page_size = size
        elif name == "page[cursor]":
            query.cursor = value
    if not query.page_size:
        query.page_size = endpoint.page_size[0] if endpoint.page_size else endpoint.server_page or 0
    if endpoint.required_filter and not any(c.field in endpoint.required_filter for c in query.conditions):
        raise invalid(REQUIRED_FILTER_DETAIL.get(endpoint.required_filter, "A filter on "
                      + " or ".join(endpoint.required_filter) + " is required"), parameter="filter")
    return query


REQUIRED_FILTER_DETAIL: dict[tuple[str, ...], str] = {
    ("messages.channel",):
        "A channel filter is required: equals(messages.channel,'email'), 'sms' or 'mobile_push'",
}


def _split(value: str, name: str) -> list[str]:
    items = [v.strip() for v in value.split(",")]
    if not value or any(not v for v in items):
        raise invalid(f"'{name}' must be a comma-separated list of names", parameter=name)
    return items


def _check_conditions(endpoint: Endpoint, conditions: list[Condition]) -> None:
    for c in conditions:
        spec = endpoint.filters.get(c.field)
        if spec is None:
            raise invalid(f"Invalid filter provided: cannot filter on '{c.field}'", parameter="filter")
        if c.op not in spec.ops:
            raise invalid(
                f"Invalid filter provided: operator '{c.op}' is not allowed on '{c.field}'",
                parameter="filter",
            )
        values = c.value if c.op == "any" else [c.value]
        for v in values if c.op != "has" else []:
            ok = (
                (spec.kind == DT and isinstance(v, DateTimeLiteral))
                or (spec.kind == STR and isinstance(v, str))
                or (spec.kind == BOOL and isinstance(v, bool))
                or (spec.kind == NUM and isinstance(v, int | float) and not isinstance(v, bool))
            )
            if not ok:
                hint = " (datetimes must not be quoted)" if spec.kind == DT and isinstance(v, str) else ""
                raise invalid(f"Invalid filter provided: bad value for '{c.field}'{hint}", parameter="filter")
        if c.field == "messages.channel" and c.value not in CHANNELS:
            raise invalid(
                "Invalid filter provided: messages.channel must be email, sms or mobile_push",
                parameter="filter",
            )


# selection -------------------------------------------------------------------------------------------


def _literal(value: FieldValue) -> FieldValue:
    return value.epoch if isinstance(value, DateTimeLiteral) else value


def predicate(c: Condition) -> Callable[[FieldValue], bool]:
    lit: FieldValue = [_literal(v) for v in c.value] if c.op == "any" else _literal(c.value)
    match c.op:
        case "equals":
            # a to-many field (an item's categories) equals a value when it holds it
            return lambda v: v == lit or (isinstance(v, list) and lit in v)
        case "any":
            return lambda v: v in lit
        case "contains":
            return lambda v: isinstance(v, str) and lit in v
        case "starts-with":
            return lambda v: isinstance(v, str) and v.startswith(lit)
        case "ends-with":
            return lambda v: isinstance(v, str) and v.endswith(lit)
        case "greater-than":
            return lambda v: v is not None and v > lit
        case "greater-or-equal":
            return lambda v: v is not None and v >= lit
        case "less-than":
            return lambda v: v is not None and v < lit
        case "less-or-equal":
            return lambda v: v is not None and v <= lit
    return lambda v: True  # has(...)


@dataclass
class Selection:
    indices: list[int]
    more: bool
    last_key: SortKey | None


def select(
    table: Table,
    conditions: list[Condition],
    sort: str,
    descending: bool,
    after: SortKey | None,
    limit: int,
    order: Sequence[int] | None = None,
    range_fields: frozenset[str] = frozenset(),
) -> Selection:
    """Records matching every condition, in (sort, index) order, after the keyset `after`, at most `limit`.

    Range conditions on the sort field (or an alias in `range_fields`) narrow the order by binary search;
    the other conditions are checked record by record while walking the narrowed order.
    """
    order = table.order(sort) if order is None else order
    value = table.value
    keyf: Callable[[int], SortKey] = partial(table.key_of, sort)
    lo, hi = 0, len(order)
    rest: list[Condition] = []
    ranged = range_fields | {sort}
    for c in conditions:
        if c.op in RANGE_OPS and c.field in ranged and isinstance(_literal(c.value), int | float):
            v = _literal(c.value)
            lo = max(lo, bisect_left(order, (1, float("-inf"), 0), key=keyf))  # nulls never match a range
            match c.op:
                case "greater-than":
                    lo = max(lo, bisect_right(order, (1, v, float("inf")), key=keyf))
                case "greater-or-equal":
                    lo = max(lo, bisect_left(order, (1, v, float("-inf")), key=keyf))
                case "less-than":
                    hi = min(hi, bisect_left(order, (1, v, float("-inf")), key=keyf))
                case "less-or-equal":
                    hi = min(hi, bisect_right(order, (1, v, float("inf")), key=keyf))
        else:
            rest.append(c)
    if after is not None:
        if descending:
            hi = min(hi, bisect_left(order, after, key=keyf))
        else:
            lo = max(lo, bisect_right(order, after, key=keyf))
    checks = [(c.field, predicate(c)) for c in rest]
    if not checks:  # a slice of the order (events pages: no per-record test at all)
        if descending:
            picked = [order[pos] for pos in range(hi - 1, max(lo, hi - limit - 1) - 1, -1)]
        else:
            picked = list(order[lo : min(hi, lo + limit + 1)])
        more = len(picked) > limit
        del picked[limit:]
        return Selection(picked, more, keyf(picked[-1]) if picked else None)
    picked = []
    positions = range(hi - 1, lo - 1, -1) if descending else range(lo, hi)
    more = False
    for pos in positions:
        i = order[pos]
        if all(check(value(f, i)) for f, check in checks):
            if len(picked) == limit:
                more = True
                break
            picked.append(i)
    last_key = keyf(picked[-1]) if picked else None
    return Selection(picked, more, last_key)
