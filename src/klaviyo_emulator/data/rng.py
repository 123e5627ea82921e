"""Cheap deterministic hashing, so a record can be rebuilt from its index without storing it."""

from __future__ import annotations

import random
from datetime import UTC, datetime

MASK = (1 << 64) - 1


def mix(*parts: int) -> int:
    """splitmix64 over the parts: a well-spread 64-bit value for any tuple of ints."""
    return mix_from(absorb(*parts))


def absorb(*parts: int) -> int:
    """The state of `mix` after the given parts; `mix_from(absorb(a, b), c) == mix(a, b, c)`, so hot
    paths hash a fixed (seed, salt) prefix once and only absorb the varying parts per record."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = (x ^ (part & MASK)) * 0xBF58476D1CE4E5B9 & MASK
        x ^= x >> 31
    return x


def mix_from(x: int, *parts: int) -> int:
    for part in parts:
        x = (x ^ (part & MASK)) * 0xBF58476D1CE4E5B9 & MASK
        x ^= x >> 31
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & MASK
    return x ^ (x >> 31)


def salt(name: str) -> int:
    """A stable int for a resource name (str hash() is randomized per process, so not that)."""
    value = _SALTS.get(name)
    if value is None:
        value = 0
        for char in name.encode():
            value = (value * 131 + char) & MASK
        _SALTS[name] = value
    return value


_SALTS: dict[str, int] = {}


def record_rng(seed: int, resource: str, index: int) -> random.Random:
    return random.Random(mix(seed, salt(resource), index))


def iso(epoch: int | float) -> str:
    """Klaviyo's response datetime format: second-granular ISO 8601 with +00:00."""
    return datetime.fromtimestamp(int(epoch), UTC).isoformat()


def iso_us(epoch: int, micros: int) -> str:
    """The microsecond form some fields take (quirks.py `datetime_microseconds`), always six digits.

    >>> iso_us(0, 5)
    '1970-01-01T00:00:00.000005+00:00'
    """
    return f"{iso(epoch)[:19]}.{micros:06d}+00:00"


def micros(seed: int, *parts: int) -> int:
    """A microsecond part (1..999,999: never a whole second) that is a pure function of its inputs."""
    return 1 + mix(seed, *parts) % 999_999


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford, as in ULIDs


_B62_PAIRS = [a + b for a in _B62 for b in _B62]  # two digits per divmod


def base62(value: int, width: int) -> str:
    out = []
    pairs = _B62_PAIRS
    for _ in range(width >> 1):
        value, rem = divmod(value, 3844)
        out.append(pairs[rem])
    if width & 1:
        out.append(_B62[value % 62])
    return "".join(reversed(out))


def base32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, rem = divmod(value, 32)
        out.append(_B32[rem])
    return "".join(reversed(out))


def short_id(seed: int, resource: str, index: int, width: int = 6) -> str:
    """Klaviyo-style short ids (`RESQ6t`): injective in index, because 1_000_003 is coprime to 62**width."""
    return base62((index * 1_000_003 + id_offset(seed, resource)) % 62**width, width)


def id_offset(seed: int, resource: str) -> int:
    key = (seed, resource)
    offset = _OFFSETS.get(key)
    if offset is None:
        if len(_OFFSETS) > 4096:
            _OFFSETS.clear()
        offset = _OFFSETS[key] = mix(seed, salt(resource))
    return offset


_OFFSETS: dict[tuple[int, str], int] = {}


def ulid(seed: int, resource: str, index: int) -> str:
    """26-char ULID-like ids that sort in index order (so `sort=id` is the natural order).

    Crockford base32 of (index: 40 bits, hash: 80 bits), most significant first, so ids keep the order."""
    return ulid_from(absorb(seed, salt(resource)), index)


def ulid_from(prefix: int, index: int) -> str:
    """`ulid(seed, resource, index)` given `prefix = absorb(seed, salt(resource))` (hot paths keep it)."""
    x = (prefix ^ index) * 0xBF58476D1CE4E5B9 & MASK  # mix_from(prefix, index), inlined
    x ^= x >> 31
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & MASK
    h = x ^ (x >> 31)
    if index >> 40:
        raise OverflowError("ulid index must fit 40 bits")
    n = index << 80 | (h << 16 | h >> 48) & _MASK80  # 120 bits: 24 Crockford digits, two per lookup
    p = _B32_PAIRS
    return (
        f"01{p[n >> 110]}{p[n >> 100 & 1023]}{p[n >> 90 & 1023]}{p[n >> 80 & 1023]}{p[n >> 70 & 1023]}"
        f"{p[n >> 60 & 1023]}{p[n >> 50 & 1023]}{p[n >> 40 & 1023]}{p[n >> 30 & 1023]}{p[n >> 20 & 1023]}"
        f"{p[n >> 10 & 1023]}{p[n & 1023]}"
    )


_MASK80 = (1 << 80) - 1


_B32_PAIRS = [a + b for a in _B32 for b in _B32]
