"""README.md's streams table is exactly what tools/streams_table.py prints from the stream table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from source_klaviyo.streams import STREAMS

REPO = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("streams_table", REPO / "tools" / "streams_table.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_table_equals_the_tools_output():
    tool = _tool()
    table = tool.table()
    assert tool.readme_table((REPO / "README.md").read_text(encoding="utf-8")) == table, (
        "regenerate: ./dev run python tools/streams_table.py")
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| stream ")]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == [stream.name for stream in STREAMS]
