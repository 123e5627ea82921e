"""docs/local-sync.md shows the views' SQL exactly as the sync runs it."""

from __future__ import annotations

from pathlib import Path

from source_klaviyo.sync.views import views_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "local-sync.md"
START = "<!-- views: generated from src/source_klaviyo/sync/views.py"
END = "<!-- end views -->"


def test_the_documented_views_are_the_views_the_sync_makes() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = text[text.index("\n", text.index(START)) + 1 : text.index(END)]
    assert block == views_markdown(), "regenerate the block with source_klaviyo.sync.views.views_markdown()"
