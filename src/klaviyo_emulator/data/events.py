"""Events, indexed in datetime order: the timestamps live in one int array (so a datetime filter is a
binary search) and everything else is rebuilt from (seed, index) when a page is rendered."""

from __future__ import annotations

import random
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..jsontext import BigInt, JSONObject, dumps
from ..table import FieldValue, Rel, Table
from .rng import _B62, _B62_PAIRS, base62, id_offset, iso, mix, salt, short_id
from .words import PRODUCTS

if TYPE_CHECKING:
    from .profiles import Profiles

DAY = 86_400
BIG_INT = 18446744073709551616123  # the value that crashed a serializer upstream (Airbyte PR #51010)


class Events(Table):
    type = "event"
    cursor_field = "datetime"

    def __init__(
        self,
        seed: int,
        count: int,
        anchor: int,
        days: int,
        metric_ids: list[str],
        metric_names: list[str],
        profiles: Profiles,
        quirks: bool = True,
        senders: Sequence[tuple[str | None, str]] = (),
    ) -> None:
        super().__init__()
        self.seed = seed
        self.quirks = quirks  # Klaviyo's observed shapes (quirks.py); False: the spec's
        # What a conversion can be attributed to: (flow id, flow message id) or (None, campaign message id).
        self.senders = list(senders)
        self._salt = salt("events")
        self.metric_ids = metric_ids
        self.metric_names = metric_names
        self.profiles = profiles
        self.profile_count = len(profiles)
        # Zipf-ish metric popularity: views and opens dominate, refunds are rare.
        weights = [1.0 / (k + 1) for k in range(len(metric_ids))]
        total = sum(weights)
        self._metric_cdf = []
        acc = 0.0
        for w in weights:
            acc += w / total
            self._metric_cdf.append(int(acc * (1 << 32)))
        self.ts = _timeline(seed, count, anchor, days)
        self._order: array[int] | None = None  # identity until an added event lands before future-dated ones
        self._visible: tuple[int, array[int]] | None = None  # the order without deleted profiles' events
        self._by_metric: tuple[int, dict[str, array[int]]] | None = None
        self._base_ids = count
        self._blocks: dict[int, tuple[array[int], str]] = {}  # bounded: see _block
        self._dates: dict[int, str] = {}  # day number -> "YYYY-MM-DD", bounded in render
        self._id_offset = id_offset(seed, "events")
        self._kinds = [_kind(name) for name in metric_names]
        self._variants: list[list[tuple[JSONObject, str, float, str]]] = [[] for _ in _BUILDERS]
        # property bodies per kind: 1,024 (~1 MB) from small scale up, fewer for tiny worlds
        self._variant_bits = max(6, min(10, (count // 16).bit_length()))
        self._variant_shift = 64 - self._variant_bits
        for kind in sorted(set(self._kinds)):
            self._variant(kind, 0)  # built with the world, not on the first page that needs them
        self._prerendered: Prerendered | None = None  # see prerender()

    def __len__(self) -> int:
        return len(self.ts)

    def id(self, index: int) -> str:
        return base62(
            (index * 1_000_003 + self._id_offset) % _ID_SPACE, 11
        )  # == short_id(seed, "events", i, 11)

    def index_of(self, record_id: str) -> int | None:
        """The index of a live event (what a review's `include=events` looks up)."""
        index = self.key_tiebreak(record_id)
        if index is None or self.profile_index(index) in self.profiles.deleted:
            return None
        return index

    def key_tiebreak(self, record_id: str) -> int | None:
        """The index of the event with this id: ids are an invertible map of the index."""
        if len(record_id) != 11 or any(c not in _B62_INDEX for c in record_id):
            return None
        value = 0
        for c in record_id:
            value = value * 62 + _B62_INDEX[c]
        index = (value - self._id_offset) * _ID_INVERSE % _ID_SPACE
        return index if index < len(self) else None

    # Every per-event choice comes from 32 random bytes per event, drawn for BLOCK events at a time by
    # one Mersenne Twister seeded from (seed, block): h picks the metric (low half) and the profile (high
    # half), u the property variant and `$event_id`, and 16 bytes are the uuid. A block costs one C call,
    # so the hashing is ~0.1 µs per event instead of ~2 µs for a splitmix64 in Python.

    def _block(self, block: int) -> tuple[array[int], str]:
        made = self._blocks.get(block)
        if made is None:
            raw = random.Random(mix(self.seed, self._salt, block)).randbytes(32 * BLOCK)
            words = array("Q", raw)
            if _SWAP:
                words.byteswap()  # little-endian words on every platform, so data is the same everywhere
            if len(self._blocks) >= 64:
                self._blocks.clear()
            made = self._blocks[block] = (words, raw.hex())
        return made

    def _h(self, index: int) -> int:
        return self._block(index >> BLOCK_BITS)[0][(index & BLOCK_MASK) << 2]

    def metric_index(self, index: int) -> int:
        return bisect_right(self._metric_cdf, self._h(index) & 0xFFFFFFFF) % len(self.metric_ids)

    def profile_index(self, index: int) -> int:
        return (self._h(index) >> 32) % self.profile_count

    def value(self, field: str, index: int) -> FieldValue:
        if field in ("datetime", "timestamp"):
            return self.ts[index]
        if field == "metric_id":
            return self.metric_ids[self.metric_index(index)]
        if field == "profile_id":
            return self.profiles.id(self.profile_index(index))
        if field in ("metric", "profile"):
            return True
        if field == "id":
            return self.id(index)
        return None

    def order(self, field: str) -> Sequence[int]:
        everything = range(len(self)) if self._order is None else self._order
        gone = self.profiles.deleted
        if not gone:
            return everything
        # A deleted profile's events go with it (Klaviyo's data-privacy deletion removes all its data).
        if self._visible is None or self._visible[0] != self.version:
            profile_of = self.profile_index
            kept = array("l", (i for i in everything if profile_of(i) not in gone))
            self._visible = (self.version, kept)
        return self._visible[1]

    def live(self) -> Iterable[int]:
        return self.order("datetime") if self.profiles.deleted else range(len(self))

    def by_metric(self, metric_id: str) -> array[int]:
        """Indices of one metric's events in datetime order, built once per data version."""
        if self._by_metric is None or self._by_metric[0] != self.version:
            groups: dict[str, array[int]] = {m: array("l") for m in self.metric_ids}
            for i in self.order("datetime"):
                groups[self.metric_ids[self.metric_index(i)]].append(i)
            self._by_metric = (self.version, groups)
        return self._by_metric[1].get(metric_id, array("l"))

    def add(self, now: int) -> int:
        index = len(self.ts)
        self.ts.append(now)
        if self._order is None and index > 0 and self.ts[index - 1] > now:
            self._order = array("l", range(index))
        if self._order is not None:
            pos = bisect_right(self._order, now, key=self.ts.__getitem__)
            self._order.insert(pos, index)
        self.touched()
        return index

    def attributes(self, index: int, additional: frozenset[str]) -> JSONObject:
        ts = self.ts[index]
        at = (index & BLOCK_MASK) << 6
        return {
            "timestamp": ts,
            "event_properties": self._properties(index),
            "datetime": self.datetime_text(index),
            "uuid": _uuid(self._block(index >> BLOCK_BITS)[1], at),
        }

    def datetime_text(self, index: int) -> str:
        """The event's `datetime` as served (`render` writes the same inline)."""
        ts = self.ts[index]
        text = iso(ts)
        if not self.quirks:
            return text
        if microsecond_second(ts):
            return f"{text[:10]} {text[11:19]}.{index % 1_000_000:06d}+00:00"
        u = self._block(index >> BLOCK_BITS)[0][((index & BLOCK_MASK) << 2) + 1]
        return text.replace("T", " ") if spaced(u) else text

    # event properties ---------------------------------------------------------------------------
    # Each event's properties are a per-index head (`$event_id`, and `OrderId`, `$value`,
    # `external_order_ref` where they apply) around one of up to 1,024 pre-rendered bodies of its metric's
    # kind, picked by the event's hash. The bodies are built once (lazily) and kept as a dict and as JSON
    # bytes, so a page of events is spliced from bytes instead of rebuilt (see docs/emulator.md).

    def _properties(self, index: int) -> JSONObject:
        u = self._block(index >> BLOCK_BITS)[0][((index & BLOCK_MASK) << 2) + 1]
        kind = self._kinds[self.metric_index(index)]
        body, _, value, _ = self._variant(kind, u >> self._variant_shift)
        props: JSONObject = {"$event_id": f"{index}-{(u >> 24) % 1_000_000}"}
        props.update(body)
        if kind == ORDER:
            props["OrderId"] = str(80_000 + index)
            props["$value"] = BigInt(BIG_INT) if index % 13 == 0 and index % 2 else value
            if index % 7 == 0:
                props["external_order_ref"] = BigInt(BIG_INT + index)
            sender = self.attributed_to(index, u)
            if sender is not None:
                props["$attribution"] = _attribution(*sender)
        elif index % 13 == 0:
            props["$value"] = BigInt(BIG_INT) if index % 2 else 0
        return props

    def order_value(self, index: int) -> float:
        """What an order event is worth to a report (`conversion_value`): its items' total, as its
        `$value` has it, but never the huge `$value` an odd event carries to test serializers."""
        kind = self._kinds[self.metric_index(index)]
        if kind != ORDER:
            return 0.0
        u = self._block(index >> BLOCK_BITS)[0][((index & BLOCK_MASK) << 2) + 1]
        return float(self._variant(kind, u >> self._variant_shift)[2])

    def _properties_json(self, index: int, u: int, kind: int) -> str:
        """`_properties(index)` as JSON text, byte-for-byte what `jsontext.dumps` makes of it."""
        _, text, _, value_text = self._variant(kind, u >> self._variant_shift)
        head = f'{{"$event_id":"{index}-{(u >> 24) % 1_000_000}",{text}'
        if kind == ORDER:
            value_text = BIG_INT_TEXT if index % 13 == 0 and index % 2 else value_text
            tail = f',"OrderId":"{80_000 + index}","$value":{value_text}'
            if index % 7 == 0:
                tail += f',"external_order_ref":{BIG_INT + index}'
            sender = self.attributed_to(index, u)
            if sender is not None:
                tail += ',"$attribution":' + dumps(_attribution(*sender)).decode()
            return f"{head}{tail}}}"
        if index % 13 == 0:
            return f'{head},"$value":{BIG_INT_TEXT if index % 2 else 0}}}'
        return head + "}"

    def attributed_to(self, index: int, u: int) -> tuple[str | None, str] | None:
        """The send a third of the orders are attributed to (Klaviyo's `$attribution`), or None."""
        if not self.senders or index % 3 != 1:
            return None
        return self.senders[(u >> 8) % len(self.senders)]

    def _variant(self, kind: int, variant: int) -> tuple[JSONObject, str, float, str]:
        """(body, its JSON text without braces, the order value, its JSON text); built on first use."""
        pool = self._variants[kind]
        if not pool:  # the whole pool of a kind at once, from one generator: ~30 ms, once per world
            rnd = random.Random(mix(self.seed, salt("event-properties"), kind))
            for number in range(1 << self._variant_bits):
                body, raw = _BUILDERS[kind](rnd, self.seed)
                value: float = round(raw, 2)
                if self.quirks and number % 2 == 0:
                    value = round(raw)  # `value_int_or_float`: an integer as often as a float
                elif self.quirks and number % 4 == 1:
                    value = raw  # and float artifacts such as 37.419200000000004
                pool.append((body, dumps(body).decode()[1:-1], value, dumps(value).decode()))
        return pool[variant]

    def render(self, indices: list[int], base: str, attributions_data: bool) -> list[str]:
        """The JSON text of each event's resource object with every attribute and no sparse fieldset,
        byte-for-byte what `Renderer.resource` + `jsontext.dumps` make (a test holds them equal)."""
        own_prefix = f"{base}/api/events/"
        quirks = self.quirks
        sl = "/" if quirks else ""  # `resource_links_trailing_slash`
        attributions = '"data":[],' if attributions_data else ""
        ts_all = self.ts
        id_offset = self._id_offset
        cdf = self._metric_cdf
        n_metrics = len(self.metric_ids)
        n_profiles = self.profile_count
        kinds = self._kinds
        metric_ids = self.metric_ids
        profile_id = self.profiles.id
        props = self._properties_json
        pairs = _B62_PAIRS
        block = self._block
        dates = self._dates
        if len(dates) > 4096:
            dates.clear()
        out = []
        last_ts, last_iso, last_spaced, us_second = None, "", "", False
        last_block, words, hexes = -1, array("Q"), ""
        for i in indices:
            ts = ts_all[i]
            if ts != last_ts:
                last_ts = ts
                day, sec = divmod(ts, DAY)
                date = dates.get(day)
                if date is None:
                    date = dates[day] = iso(day * DAY)[:10]
                clock = f"{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}"
                last_iso = f"{date}T{clock}+00:00"  # == iso(ts)
                last_spaced = f"{date} {clock}"
                us_second = quirks and microsecond_second(ts)
            if i >> BLOCK_BITS != last_block:
                last_block = i >> BLOCK_BITS
                words, hexes = block(last_block)
            j = (i & BLOCK_MASK) << 2
            h = words[j]
            u = words[j + 1]
            at = j << 4
            m = bisect_right(cdf, h & 0xFFFFFFFF) % n_metrics
            stamp = last_iso  # == datetime_text(i)
            if quirks:
                if us_second:
                    stamp = f"{last_spaced}.{i % 1_000_000:06d}+00:00"
                elif spaced(u):
                    stamp = f"{last_spaced}+00:00"
            # base62 of the id (as `id()`), two digits per table lookup
            hi, lo = divmod((i * 1_000_003 + id_offset) % _ID_SPACE, 14_776_336)  # 62**4
            hi, mid = divmod(hi, 14_776_336)
            own = (
                f"{own_prefix}{_B62[hi // 3844 % 62]}{pairs[hi % 3844]}"
                f"{pairs[mid // 3844]}{pairs[mid % 3844]}"
                f"{pairs[lo // 3844]}{pairs[lo % 3844]}"
            )
            tail = (
                "}"
                if quirks  # `attributions_absent`
                else f',"attributions":{{{attributions}"links":{{"self":"{own}/relationships/attributions",'
                f'"related":"{own}/attributions"}}}}}}'
            )
            out.append(
                f'{{"type":"event","id":"{own[-11:]}","attributes":{{"timestamp":{ts},'
                f'"event_properties":{props(i, u, kinds[m])},"datetime":"{stamp}",'
                f'"uuid":"{hexes[at + 32 : at + 40]}-{hexes[at + 40 : at + 44]}-11ef-'
                f'{_VARIANT_NIBBLE[hexes[at + 48]]}{hexes[at + 49 : at + 52]}-{hexes[at + 52 : at + 64]}"}},'
                f'"relationships":{{"profile":{{"data":{{"type":"profile",'
                f'"id":"{profile_id((h >> 32) % n_profiles)}"}},'
                f'"links":{{"self":"{own}/relationships/profile{sl}","related":"{own}/profile{sl}"}}}},'
                f'"metric":{{"data":{{"type":"metric","id":"{metric_ids[m]}"}},'
                f'"links":{{"self":"{own}/relationships/metric{sl}","related":"{own}/metric{sl}"}}}}{tail},'
                f'"links":{{"self":"{own}{sl}"}}}}'
            )
        return out

    # pre-rendered events -----------------------------------------------------------------------
    # Opt-in (`serve --prerender-events`, for benchmarks): every event is rendered once for the one base
    # the server is reached at, and a page is then a selection of byte slices, not 1,000 f-strings.
    # Events never change once created, so the store never goes stale; events of deleted profiles are
    # simply never selected, and events added later render as before.

    def prerender(self, base: str, chunk: int = 4096) -> None:
        """Render every current event once, for `base` (JSON-escaped, as `render` takes it) and without
        attributions data, into one buffer: each event's UTF-8 text followed by a comma."""
        count = len(self.ts)
        buf = bytearray()  # grows by realloc (mremap for large blocks): no copy of the ~1 GB at large
        offsets = array("Q", [0])
        append = offsets.append
        for start in range(0, count, chunk):
            for text in self.render(list(range(start, min(count, start + chunk))), base, False):
                buf += text.encode()
                buf += b","
                append(len(buf))
        self._prerendered = Prerendered(base, memoryview(buf), offsets, count)  # the view pins its size

    def prerendered_bytes(self) -> int:
        """Bytes the pre-rendered store holds (0 without one)."""
        pre = self._prerendered
        return 0 if pre is None else pre.view.nbytes + pre.offsets.itemsize * len(pre.offsets)

    def render_bytes(self, indices: list[int], base: str, attributions_data: bool) -> bytes | memoryview:
        """The events' resource objects joined by commas, as UTF-8: `",".join(render(...)).encode()`,
        sliced from the pre-rendered store for the events it holds when `base` is its base and no
        attributions data is asked for (a test holds both the same)."""
        pre = self._prerendered
        if pre is None or attributions_data or base != pre.base or not indices:
            return ",".join(self.render(indices, base, attributions_data)).encode()
        view, offsets, count = pre.view, pre.offsets, pre.count
        first, last = indices[0], indices[-1]
        if last - first == len(indices) - 1 and last < count and indices == list(range(first, last + 1)):
            return view[offsets[first] : offsets[last + 1] - 1]  # ascending and contiguous: one slice
        if max(indices) < count:
            return b",".join([view[offsets[i] : offsets[i + 1] - 1] for i in indices])
        later = iter(self.render([i for i in indices if i >= count], base, False))  # added since
        return b",".join(
            [view[offsets[i] : offsets[i + 1] - 1] if i < count else next(later).encode() for i in indices]
        )

    def relationships(self, index: int) -> dict[str, Rel]:
        rels: dict[str, Rel] = {
            "profile": ("profile", self.profiles.id(self.profile_index(index))),
            "metric": ("metric", self.metric_ids[self.metric_index(index)]),
        }
        if not self.quirks:  # `attributions_absent`: no event here has any, so Klaviyo leaves it out
            rels["attributions"] = []
        return rels

    def truth_row(self, index: int) -> JSONObject:
        return {
            "id": self.id(index),
            "datetime": self.datetime_text(index),
            "metric_id": self.metric_ids[self.metric_index(index)],
            "profile_id": self.profiles.id(self.profile_index(index)),
        }


@dataclass(frozen=True)
class Prerendered:
    """Events 0..count-1 rendered for `base`: event i is view[offsets[i] : offsets[i + 1] - 1]."""

    base: str
    view: memoryview  # of one bytearray: each event's text and a comma
    offsets: array[int]  # 'Q', count + 1 entries
    count: int


ORDER, VIEW, MESSAGE = 0, 1, 2
BIG_INT_TEXT = str(BIG_INT)
_ID_SPACE = 62**11
_ID_INVERSE = pow(1_000_003, -1, _ID_SPACE)
_B62_INDEX = {c: i for i, c in enumerate(_B62)}
ORDER_METRICS = (
    "Placed Order", "Ordered Product", "Started Checkout", "Added to Cart", "Refunded Order",
    "Fulfilled Order",
)  # fmt: skip
VIEW_METRICS = ("Viewed Product", "Active on Site")


def microsecond_second(ts: int) -> bool:
    """`event_datetime_space`: the events of one second in eight carry microseconds (each event its own,
    rising with its index, so the order within the second stays the order of the fraction)."""
    return (ts * 0x9E3779B1 >> 13) & 7 == 0


def spaced(u: int) -> bool:
    """`event_datetime_space`: one event in eight (of the others) is written with a space, not `T`."""
    return u & 7 == 0


def _kind(metric_name: str) -> int:
    return ORDER if metric_name in ORDER_METRICS else VIEW if metric_name in VIEW_METRICS else MESSAGE


BLOCK_BITS = 10
BLOCK = 1 << BLOCK_BITS  # events whose random bytes are drawn together
BLOCK_MASK = BLOCK - 1
_SWAP = sys.byteorder != "little"
_VARIANT_NIBBLE = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 4122 variant bits


def _uuid(hexes: str, at: int) -> str:
    """A version-1-looking uuid (`…-11ef-…`, as Klaviyo's) from the 16 random bytes at hexes[at+32:]."""
    return (
        f"{hexes[at + 32 : at + 40]}-{hexes[at + 40 : at + 44]}-11ef-"
        f"{_VARIANT_NIBBLE[hexes[at + 48]]}{hexes[at + 49 : at + 52]}-{hexes[at + 52 : at + 64]}"
    )


def _attribution(flow: str | None, message: str) -> JSONObject:
    """Klaviyo's `$attribution` of a conversion: the flow (for a flow's message) and the message."""
    return {**({"$flow": flow} if flow else {}), "$message": message, "$attributed_channel": "email"}


def _order_body(rnd: random.Random, seed: int) -> tuple[JSONObject, float]:
    items: list[JSONObject] = []
    for _ in range(rnd.randrange(1, 4)):
        items.append(
            {
                "ProductName": PRODUCTS[rnd.randrange(len(PRODUCTS))],
                "SKU": f"SKU-{rnd.randrange(10_000)}",
                # integer and fractional quantities both occur (weights, meters)
                "quantity": rnd.randrange(1, 5) if rnd.random() < 0.7 else round(rnd.uniform(0.1, 3.0), 3),
                "ItemPrice": round(rnd.uniform(1, 200), 2),
                "Categories": rnd.sample(["Été", "Sale", "Home", "服", "🧦"], rnd.randrange(0, 3)),
            }
        )
    body = {
        "Items": items,
        "ItemNames": [i["ProductName"] for i in items],
        "Discount Codes": [] if rnd.random() < 0.7 else ["ÉTÉ20"],
        "$extra": {
            "shipping": {
                "method": rnd.choice(["standard", "express", None]),
                "cost": rnd.choice([0, 4.99, 12]),
            }
        },
    }
    return body, sum(i["ItemPrice"] * i["quantity"] for i in items)  # rounded (or not) by _variant


def _view_body(rnd: random.Random, seed: int) -> tuple[JSONObject, float]:
    return {
        "ProductName": PRODUCTS[rnd.randrange(len(PRODUCTS))],
        "URL": f"https://shop.example.com/p/{rnd.randrange(500)}?ref=✓",
        "page": {"referrer": None, "depth": rnd.randrange(1, 9)},
    }, 0.0


def _message_body(rnd: random.Random, seed: int) -> tuple[JSONObject, float]:
    return {
        "Subject": rnd.choice(["Up to 40% off ✨", "Votre panier vous attend", "ようこそ", "Last chance"]),
        "Campaign Name": f"Campaign {rnd.randrange(100)}",
        "$message": short_id(seed, "campaign-messages", rnd.randrange(100), 26),
        "machine_open": rnd.random() < 0.2,
    }, 0.0


_BUILDERS = (_order_body, _view_body, _message_body)


def _timeline(seed: int, count: int, anchor: int, days: int) -> array[int]:
    """Sorted epoch seconds for `count` events over `days` before the anchor, with same-second bursts
    (some straddling page boundaries) and a few events dated up to three days after the anchor."""
    rnd = random.Random(mix(seed, salt("timeline")))
    future = max(3, count // 400)
    past = count - future
    start = anchor - days * DAY
    span = days * DAY - 600  # the last past event lands at least 10 minutes before the anchor
    gaps = array("d")
    bursts = 0
    total = 0.0
    random_ = rnd.random
    expo = rnd.expovariate
    for i in range(past):
        if bursts:
            bursts -= 1
            gap = 0.0
        elif (i % 1000 in (950, 150) and i % 3000 < 1000) or random_() < 0.002:
            bursts = rnd.randrange(30, 300)  # a burst: many events in one second, across page edges
            gap = 0.0
        elif random_() < 0.35:
            gap = 0.0
        else:
            gap = expo(1.0)
        total += gap
        gaps.append(total)
    scale = span / total if total else 0.0
    ts = array("q", (start + int(g * scale) for g in gaps))
    # Snap a burst onto a UTC midnight, where windowed readers slice.
    if past > 50:
        midnight = (ts[past // 2] // DAY + 1) * DAY
        pos = bisect_left(ts, midnight)
        for j in range(pos, min(pos + 40, past)):
            ts[j] = midnight
    ts.extend(sorted(anchor + rnd.randrange(60, 3 * DAY) for _ in range(future)))
    return ts
