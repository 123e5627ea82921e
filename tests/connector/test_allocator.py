"""The read keeps large buffers in the heap (glibc `mallopt`): on Linux it applies, once."""

from __future__ import annotations

import sys

import pytest

from source_klaviyo import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_glibc_keeps_large_buffers_and_applies_it_once() -> None:
    assert allocator.keep_large_buffers() is True
    assert allocator.keep_large_buffers() is True  # idempotent: the second call changes nothing
    assert allocator._applied


def test_elsewhere_it_says_it_did_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.keep_large_buffers() is False
