"""Klaviyo's observed misbehaviours, reproduced on purpose so a connector is tested against them.

Every quirk is on by default (as the live API behaves) and named in `QUIRKS`; `serve --spec-strict`
(`EmulatorOptions(spec_strict=True)`) turns them all off and serves the clean spec shape. The
unsorted archived campaigns have their own switch too (`--sorted-archived-campaigns`). The names are
what docs/emulator.md, BEHAVIOR.md and the OpenAPI validation of the tests call them.

Archived campaigns come back slightly unsorted (docs/emulator.md, "Quirks"): asked for
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

import base64
import math
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from urllib.parse import urlencode

import orjson

from .data.rng import iso, iso_us, mix, salt
from .errors import invalid
from .filters import Condition
from .pagination import CURSOR_PARAM
from .query import Selection, select
from .table import FieldValue, SortKey, Table, sort_key

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


# The catalog ------------------------------------------------------------------------------------------
# name -> what the emulator does by default (docs/emulator.md "Quirks" has the same list with tests).
QUIRKS: dict[str, str] = {
    # links
    "resource_links_trailing_slash": "resource and relationship links end in '/'; collection links do not",
    "null_next_prev": "collection links carry explicit 'next': null and 'prev': null",
    "next_link_reencoded": "links.next repeats the whole query re-encoded (%5B %28 %2C ...), cursor first",
    "cursor_per_endpoint": "page cursors are base64 of next::id::<id>, next::<sort>::<datetime>::id::<id>, "
    "[<epoch>, <id>, true] for events and a numeric id for coupons",
    "lists_prev_python_repr": "a first page of /api/lists has a prev link holding a URL-encoded Python repr",
    # datetimes
    "datetime_microseconds": "campaign and campaign-message created_at/updated_at/scheduled_at, subscription "
    "last_updated and suppression timestamps carry microseconds",
    "event_datetime_space": "some events' datetime is space-separated, some with microseconds too",
    # nulls and fields the spec lacks
    "null_relationship_data": "template/image relationships without a target: data null when included",
    "whatsapp_null": "profile subscriptions.whatsapp is null",
    "extra_fields": "profiles anonymous_id, whatsapp_bsuid, subscriptions.email.click_tracking; campaigns "
    "send_options.ignore_unsubscribes; reports data.id and links next/prev; metrics integration.object",
    # relationships
    "attributions_absent": "events carry no attributions relationship (none has any), even when included",
    "campaign_messages_linkage": "campaigns carry campaign-messages data without include",
    "profile_conversation_name": "profiles' relationship is conversations on /api/profiles, conversation "
    "elsewhere",
    "flow_message_image": "flow messages carry an image relationship",
    # values
    "channel_case": "flow-message channel is title-case (Email, SMS); campaign-message channel lower-case",
    "value_int_or_float": "$value is an integer as often as a float, with float artifacts "
    "(37.419200000000004)",
    "uuid_tag_ids": "tag ids are UUIDs (flow-action ids are numeric strings either way)",
    # ordering, names, filters
    "repeated_names": "five lists share one name, two metrics are called 'Clicked Email'",
    "is_starred_filter_ignored": "equals(is_starred,...) on /api/segments is accepted and not honoured",
    # errors and headers
    "error_shapes": "a 401 error carries source.pointer '/data/', a 429 error no source at all",
    "ratelimit_policies": "RateLimit-Limit lists every window: '350, 350;w=1, 3500;w=60'",
}
# Observed too, and within the spec: served the same in both modes (there is no "clean" shape to switch
# to), each with a probe in tests/emulator/test_live_quirks.py.
SPEC_SHAPED_OBSERVATIONS: dict[str, str] = {
    "offset_not_z": "datetimes carry a +00:00 offset, never Z",
    "error_status_integer": "an error's status is an integer",
    "throttled_retry_after_only": "a 429 carries Retry-After and no RateLimit-* header",
    "status_case": "campaign status title-case (Draft, Scheduled), flow status lower-case",
    "numeric_flow_action_ids": "flow-action ids are numeric strings",
    "metrics_sorted_by_id": "/api/metrics comes back sorted by id, not by date",
    "events_share_a_second": "several events share one second",
    "profile_count_tier": "asking for profile_count moves a call to the XS tier (1/s, 15/min)",
}


# Cursors (`cursor_per_endpoint`) -------------------------------------------------------------------
# Klaviyo-shaped: base64 (standard alphabet, unpadded) of text that names the last record served. They
# carry no digest of the query (the spec-strict cursor does: pagination.py); a cursor of another sort
# or endpoint shape is refused, one replayed with another filter continues from its record.
DATETIME_SORTS = frozenset(
    {
        "created", "updated", "created_at", "updated_at", "scheduled_at", "joined_group_at", "datetime",
        "subscriptions.email.marketing.suppression.timestamp",
        "subscriptions.email.marketing.list_suppressions.timestamp",
    }
)  # fmt: skip
COUPON_NUMBERS = 4_100_000  # coupons' "internal numeric id" is this plus the creation sequence
_HELD = "::held::"


def _value_text(sort: str, value: FieldValue) -> str:
    if value is None:
        return "None"
    if sort in DATETIME_SORTS:
        whole = math.floor(value)
        text = iso(whole)
        if whole != value:
            text = iso_us(whole, round((value - whole) * 1_000_000))
        return text.replace("T", " ")  # as Python's str(datetime) writes it
    return str(value)


def _value_of(sort: str, text: str) -> FieldValue:
    if text == "None":
        return None
    if sort in DATETIME_SORTS:
        moment = datetime.fromisoformat(text)
        whole = int(moment.replace(microsecond=0).timestamp())
        return whole + moment.microsecond / 1_000_000 if moment.microsecond else whole
    return text


def encode_klaviyo_cursor(route: str, table: Table, sort: str, key: SortKey, held: list[SortKey]) -> str:
    if route == "/api/events":
        text = orjson.dumps([key[1], table.key_id(key[2]), True]).decode()
    elif route == "/api/coupons":
        text = str(COUPON_NUMBERS + key[2])
    else:
        def named(k: SortKey) -> str:
            if sort == "id":
                return f"id::{k[1]}"
            value = None if k[0] == 0 else k[1]  # a null sorts first, as (0, 0, tie-break)
            return f"{sort}::{_value_text(sort, value)}::id::{table.key_id(k[2])}"

        text = "next::" + named(key)
        if held:
            text += _HELD + orjson.dumps([named(k) for k in held]).decode()
    return base64.b64encode(text.encode()).decode().rstrip("=")


def decode_klaviyo_cursor(route: str, table: Table, sort: str, token: str) -> tuple[SortKey, list[SortKey]]:
    try:
        text = base64.b64decode(token + "=" * (-len(token) % 4), validate=True).decode()
        if route == "/api/events":
            value, record_id, forward = orjson.loads(text)
            if not (isinstance(value, int) and forward is True):
                raise ValueError
            return _key(table, value, record_id), []
        if route == "/api/coupons":
            seq = int(text) - COUPON_NUMBERS
            if not 0 <= seq < table.appended_count():
                raise ValueError
            return (1, table.key_id(seq), seq), []
        if not text.startswith("next::"):
            raise ValueError
        text, _, held_text = text[6:].partition(_HELD)
        held = [_named_key(table, sort, k) for k in orjson.loads(held_text)] if held_text else []
        return _named_key(table, sort, text), held
    except (ValueError, TypeError, UnicodeDecodeError, orjson.JSONDecodeError):
        raise invalid("Invalid page cursor", parameter=CURSOR_PARAM) from None


def _named_key(table: Table, sort: str, text: str) -> SortKey:
    if sort == "id":
        if not text.startswith("id::"):
            raise ValueError
        return _key(table, text[4:], text[4:])
    if not text.startswith(sort + "::"):
        raise ValueError
    value_text, sep, record_id = text[len(sort) + 2 :].rpartition("::id::")
    if not sep:
        raise ValueError
    return _key(table, _value_of(sort, value_text), record_id)


def _key(table: Table, value: FieldValue, record_id: object) -> SortKey:
    tiebreak = table.key_tiebreak(record_id) if isinstance(record_id, str) else None
    if tiebreak is None:
        raise ValueError
    null_flag, comparable, _ = sort_key(value, 0)
    return null_flag, comparable, tiebreak


# Links (`next_link_reencoded`, `lists_prev_python_repr`) --------------------------------------------


def reencoded_next_link(base: str, path: str, params: list[tuple[str, str]], token: str) -> str:
    """The whole query re-encoded (`urlencode`: `[`, `(`, `,`, `'`, `:` and `+` percent-encoded, spaces
    as `+`), the new cursor first."""
    rest = [(k, v) for k, v in params if k != CURSOR_PARAM]
    return f"{base}{path}?{urlencode([(CURSOR_PARAM, token), *rest])}"


def python_repr_prev_link(base: str, path: str, params: list[tuple[str, str]]) -> str:
    """What a first page of lists was seen to carry as `prev`: a link whose cursor is a Python repr."""
    rest = [(k, v) for k, v in params if k != CURSOR_PARAM]
    return f"{base}{path}?{urlencode([(CURSOR_PARAM, repr(('prev', None))), *rest])}"
