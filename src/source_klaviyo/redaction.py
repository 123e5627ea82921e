"""Secrets out of everything we print, log or write: the one way the API key is shown.

A secret is shown as its first three and last two characters (`pk_…ef`): enough to tell two keys
apart in a support thread, never enough to use one. One of 12 characters or fewer shows nothing of
itself (`***`). A secret shorter than 4 characters is not searched for in text: replacing every
"ab" would garble messages and protect nothing.

>>> masked("pk_live_0123456789abcdef")
'pk_…ef'
>>> redact("rejected key pk_live_0123456789abcdef", "pk_live_0123456789abcdef")
'rejected key pk_…ef'
"""

from __future__ import annotations

__all__ = ["masked", "redact"]

_SHORTEST_SHOWN = 13
_SHORTEST_SEARCHED = 4


def masked(secret: str) -> str:
    return f"{secret[:3]}…{secret[-2:]}" if len(secret) >= _SHORTEST_SHOWN else "***"


def redact(text: str, *secrets: str) -> str:
    """`text` with every occurrence of each secret replaced by its masked form."""
    for secret in secrets:
        if len(secret) >= _SHORTEST_SEARCHED:
            text = text.replace(secret, masked(secret))
    return text
