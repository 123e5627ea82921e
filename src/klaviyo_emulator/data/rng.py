"""Cheap deterministic hashing, so a record can be rebuilt from its index without storing it."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime

MASK = (1 << 64) - 1


def mix(*parts: int) -> int:
    """splitmix64 over the parts: a well-spread 64-bit value for any tuple of ints."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = (x ^ (part & MASK)) * 0xBF58476D1CE4E5B9 & MASK
        x ^= x >> 31
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & MASK
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & MASK
    return x ^ (x >> 31)


def salt(name: str) -> int:
    """A stable int for a resource name (str hash() is randomized per process, so not that)."""
    value = 0
    for char in name.encode():
        value = (value * 131 + char) & MASK
    return value


def record_rng(seed: int, resource: str, index: int) -> random.Random:
    return random.Random(mix(seed, salt(resource), index))


def iso(epoch: int | float) -> str:
    """Klaviyo's response datetime format: second-granular ISO 8601 with +00:00."""
    return datetime.fromtimestamp(int(epoch), UTC).isoformat()


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford, as in ULIDs


def base62(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, rem = divmod(value, 62)
        out.append(_B62[rem])
    return "".join(reversed(out))


def base32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, rem = divmod(value, 32)
        out.append(_B32[rem])
    return "".join(reversed(out))


def short_id(seed: int, resource: str, index: int, width: int = 6) -> str:
    """Klaviyo-style short ids (`RESQ6t`): injective in index, because 1_000_003 is coprime to 62**width."""
    space = 62**width
    return base62((index * 1_000_003 + mix(seed, salt(resource))) % space, width)


def ulid(seed: int, resource: str, index: int) -> str:
    """26-char ULID-like ids that sort in index order (so `sort=id` is the natural order).

    base64's base32 runs in C; mapping its alphabet position-wise onto Crockford's keeps the order."""
    h = mix(seed, salt(resource), index)
    raw = index.to_bytes(5, "big") + (h << 16 | h >> 48).to_bytes(10, "big")
    return "01" + base64.b32encode(raw).decode().translate(_TO_CROCKFORD)[:24]


_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _B32)
