"""Every table of streams in the docs is exactly what tools/streams_table.py writes from the stream
table, and the tool rewrites a table without touching the prose around it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from source_klaviyo.streams import STREAMS

REPO = Path(__file__).resolve().parents[2]


def _tool():
    if "streams_table" not in sys.modules:
        spec = importlib.util.spec_from_file_location("streams_table", REPO / "tools" / "streams_table.py")
        assert spec
        assert spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["streams_table"] = module  # dataclasses resolve annotations through sys.modules
        spec.loader.exec_module(module)
    return sys.modules["streams_table"]


tool = _tool()


def cells(block) -> list[list[str]]:
    """The table's rows (its header first), each a list of cells."""
    lines = [line for line in block.text().splitlines()[1:-1] if not line.startswith("|--")]
    return [line.removeprefix("| ").removesuffix(" |").split(" | ") for line in lines]


ROW_PER_STREAM = [block for block in tool.BLOCKS if cells(block)[0][0] == "stream"]


@pytest.mark.parametrize("block", tool.BLOCKS, ids=lambda block: f"{block.document.name}: {block.name}")
def test_the_documents_table_is_the_tools_output(block):
    assert block.found_in(block.document.read_text(encoding="utf-8")) == block.text(), (
        "regenerate: ./dev run python tools/streams_table.py")


@pytest.mark.parametrize("block", ROW_PER_STREAM, ids=lambda block: f"{block.document.name}: {block.name}")
def test_a_table_of_streams_has_a_row_per_declared_stream_in_order(block):
    assert [row[0] for row in cells(block)[1:]] == [stream.name for stream in STREAMS]


def test_check_fails_on_a_stale_table_and_a_rewrite_keeps_the_prose_around_it(tmp_path, monkeypatch):
    document = tmp_path / "doc.md"
    block = tool.Block(document, "streams table", tool.readme_rows)
    document.write_text(f"before\n\n{block.begin}\n| stale |\n{block.end}\n\nafter\n", encoding="utf-8")
    monkeypatch.setattr(tool, "BLOCKS", (block,))
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    assert tool.main(["--check"]) == 1
    assert "| stale |" in document.read_text(encoding="utf-8")
    assert tool.main([]) == 0
    assert document.read_text(encoding="utf-8") == f"before\n\n{block.text()}\nafter\n"
    assert tool.main(["--check"]) == 0
