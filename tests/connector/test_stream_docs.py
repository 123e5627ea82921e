"""Every table of streams in the docs is exactly what tools/streams_table.py writes from the stream
table, and the tool rewrites a table without touching the prose around it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from klaviyo_emulator.endpoints import BY_ROUTE
from source_klaviyo.streams import STREAMS, Parent, Stream
from tests.tools import load_tool

REPO = Path(__file__).resolve().parents[2]


tool = load_tool("streams_table")


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


@pytest.mark.parametrize("stream", [s for s in STREAMS if s.report is None], ids=lambda s: s.name)
def test_the_page_size_of_the_requests_column_is_the_one_the_emulator_serves(stream):
    """The README's page arithmetic (from Klaviyo's OpenAPI description and `SERVER_PAGE`) and the
    emulator, two models of Klaviyo's paging, agree for every declared endpoint."""
    endpoint = BY_ROUTE[stream.path]
    served = (stream.page_size or endpoint.server_page) if endpoint.paged else None
    assert tool.records_per_page(stream) == served


@pytest.mark.parametrize("stream", [s for s in STREAMS if s.report is None], ids=lambda s: s.name)
def test_a_stream_is_incremental_where_its_endpoint_filters_or_sorts_by_its_time_of_change(stream):
    """Issue 20's rule, read from Klaviyo's OpenAPI description: a stream of an endpoint that filters
    or sorts its records by the time a change moves (`updated`, `updated_at`) is incremental; any other
    is a full refresh whose row in the docs says why."""
    reason = tool.full_refresh_reason(stream)
    if stream.incremental is None:
        assert reason, "a full refresh stream of an endpoint ordered by its time of change"
        assert tool.modes(stream) == f"full refresh ({reason})"
    else:
        assert tool.modes(stream) == "full refresh, incremental"


def test_the_reason_for_a_full_refresh_names_what_the_endpoint_lacks():
    tags = next(stream for stream in STREAMS if stream.path == "/api/tags")
    assert tool.full_refresh_reason(tags) == "its records carry no time of change"
    flows = next(stream for stream in STREAMS if stream.path == "/api/flows")
    assert tool.full_refresh_reason(flows) is None  # filters and sorts by `updated`
    assert "sorts" in tool.full_refresh_reason(dataclasses.replace(flows, path="/api/catalog-items"))
    child = next(stream for stream in STREAMS if stream.parent is not None)
    assert tool.full_refresh_reason(child).startswith(f"read per {child.parent.stream} record")


def test_an_endpoint_without_pages_costs_one_request_per_chain():
    """GET /api/campaigns/{id}/campaign-messages has no `page[cursor]`: it answers in one page."""
    child = Stream("messages", "/api/campaigns/{id}/campaign-messages", resource_type="campaign-message",
                   parent=Parent("campaigns", "campaign_id"))
    assert tool.requests_per_1000(child) == "1 per campaigns record (the endpoint answers in one page)"
    ids = "/api/campaigns/{id}/relationships/campaign-messages"
    alone = dataclasses.replace(child, path=ids, parent=None)
    assert tool.requests_per_1000(alone) == "1 (the endpoint answers in one page)"


def test_an_endpoint_that_pages_without_page_size_needs_a_declared_page():
    metrics = next(stream for stream in STREAMS if stream.path == "/api/metrics")
    assert metrics.page_size is None
    unknown = dataclasses.replace(metrics, path="/api/events")  # pages, but not by a size we know
    with pytest.raises(ValueError, match="no page_size"):
        tool.records_per_page(unknown)
