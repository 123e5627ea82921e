"""Per-request random draws that do not depend on the order requests arrive in.

A draw is a hash of (seed, purpose, method, path and query, n), n counting how often this exact request
was seen (1 the first time, 2 on its first retry...). A shared random stream would give its n-th number to
whichever request arrives n-th, so under a concurrent client the same seed would fault or delay different
requests from run to run; hashed draws give each request the same fate at any concurrency. `purpose`
keeps the latency and fault draws of one request independent of each other.
"""

from __future__ import annotations

from hashlib import blake2b


def request_digest(seed: int, method: str, target: str, purpose: bytes) -> bytes:
    """16 bytes naming (seed, purpose, method, path and query)."""
    return blake2b(f"{seed}\n{method}\n{target}".encode(), digest_size=16, person=purpose).digest()


def unit_from(digest: bytes, occurrence: int) -> float:
    """A uniform draw in (0, 1) for the `occurrence`-th time (1, 2, ...) the request `digest` is seen."""
    x = int.from_bytes(blake2b(digest + occurrence.to_bytes(8, "big"), digest_size=8).digest(), "big")
    return ((x >> 12) + 0.5) / (1 << 52)  # 52 bits: never 0.0 nor 1.0


def unit_draw(seed: int, method: str, target: str, occurrence: int, purpose: bytes) -> float:
    """The request's draw: a pure function of the seed, the request and how often it was seen before."""
    return unit_from(request_digest(seed, method, target, purpose), occurrence)


class RequestDraws:
    """Draws per request for one purpose, counting how often each (method, path and query) was seen.
    The count is the only state: ~100 bytes per distinct request (a 1,000-page walk: ~100 KB)."""

    def __init__(self, seed: int, purpose: bytes) -> None:
        self.seed = seed
        self.purpose = purpose
        self._seen: dict[bytes, int] = {}

    def draw(self, method: str, target: str) -> float:
        digest = request_digest(self.seed, method, target, self.purpose)
        occurrence = self._seen.get(digest, 0) + 1
        self._seen[digest] = occurrence
        return unit_from(digest, occurrence)

    def forget(self) -> None:
        """Every request counts as never seen: each meets again the fates it met the first time."""
        self._seen.clear()
