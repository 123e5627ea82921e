"""How the sink cuts batches: a table's row group of rows as one batch, with the latest state it covers.

DuckDB writes a full row group of a transaction straight to the file, so the sink hands the writer
exactly `row_group` rows as soon as it holds them. A state goes with the first batch that holds every
record read before it, and never with an earlier one.
"""

from __future__ import annotations

import functools
import json
import tempfile
from concurrent.futures import Future
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from source_klaviyo.contracts import JSONObject
from source_klaviyo.streams import STREAMS_BY_NAME
from source_klaviyo.sync.duckdb_store import BatchCounts, BatchFile, Store, Target
from source_klaviyo.sync.plan import plan_stream
from source_klaviyo.sync.sink import DuckDBSink

Row = tuple[str, int]  # (id, version)


class RecordingWriter:
    """A writer that only notes what it was handed: each batch's rows and its state."""

    def __init__(self) -> None:
        self.loads: list[tuple[list[Row], JSONObject | None]] = []

    def load(self, stream: str, batch: BatchFile, state: JSONObject | None) -> Future[BatchCounts]:
        lines = Path(batch.path).read_bytes().splitlines() if batch.rows else []
        records = [json.loads(line.split(b"\x1f")[0]) for line in lines]
        self.loads.append(([(r["id"], r["attributes"]["version"]) for r in records], state))
        done: Future[BatchCounts] = Future()
        done.set_result(BatchCounts(new=len(records)))
        return done

    def publish(self, stream: str, state: JSONObject | None) -> Future[BatchCounts]:
        raise AssertionError("events are written to the live table here")

    def close(self) -> None:
        pass


@functools.cache
def events_target() -> Target:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "t.duckdb", sync_id="test", connector_version="test")
        plan = plan_stream(store, STREAMS_BY_NAME["events"], full_refresh=False)
        target = store.open_target(plan.layout, plan.slot, fresh=plan.fresh)
        store.close()
    return target


def event(key: str, version: int) -> bytes:
    return json.dumps({"type": "event", "id": key, "datetime": "2024-01-01T00:00:00+00:00",
                       "attributes": {"version": version}}).encode()


def sink_with(writer: RecordingWriter, row_group: int) -> DuckDBSink:
    # Neither a record count nor a clock ends a batch here: only the row group and the stream's end.
    return DuckDBSink(writer, {"events": events_target()}, flush_records=10**9, flush_seconds=10**9,
                      row_group=row_group)


@settings(max_examples=150, deadline=None)
@given(row_group=st.integers(1, 6), pages=st.lists(st.integers(0, 9), max_size=12))
def test_each_row_group_is_a_batch_with_the_latest_state_its_rows_cover(
    row_group: int, pages: list[int]
) -> None:
    writer = RecordingWriter()
    sink = sink_with(writer, row_group)
    read_by_page: list[int] = []  # records read up to the end of each page
    n = 0
    for page, size in enumerate(pages):
        sink.raw_records("events", [event(f"e{n + i}", 0) for i in range(size)])
        n += size
        read_by_page.append(n)
        sink.state("events", {"page": page}, size)
    sink.stream_status("events", "COMPLETE")  # waits for every batch handed over

    written = [row for rows, _ in writer.loads for row in rows]
    assert written == [(f"e{i}", 0) for i in range(n)]  # each record once, in the order read
    cut_loads = n // row_group  # a batch per row group, then one at the end for the rest and the state
    assert len(writer.loads) == cut_loads + (1 if pages else 0)
    assert all(len(rows) == row_group for rows, _ in writer.loads[:cut_loads])
    committed = -1
    for k, (_, state) in enumerate(writer.loads[:cut_loads], start=1):
        # The k-th batch is cut while the page that reaches its last row is taken in, before that
        # page's state comes: the states it can carry are those of the pages before.
        filling = next(page for page, read in enumerate(read_by_page) if read >= k * row_group)
        covered = filling - 1
        assert state == ({"page": covered} if covered > committed else None)
        committed = max(committed, covered)
    if pages:  # the stream's end commits the rest with its last state
        assert writer.loads[-1][1] == {"page": len(pages) - 1}


@settings(max_examples=150, deadline=None)
@given(row_group=st.integers(1, 5), data=st.data())
def test_records_read_again_land_as_their_last_version_and_no_state_runs_ahead(
    row_group: int, data: st.DataObject
) -> None:
    writer = RecordingWriter()
    sink = sink_with(writer, row_group)
    sent: list[list[Row]] = []  # per page
    latest: dict[str, int] = {}
    for page in range(data.draw(st.integers(0, 10), label="pages")):
        rows: list[Row] = []
        for _ in range(data.draw(st.integers(0, 6), label="records")):
            again = latest and data.draw(st.booleans(), label="read again")
            key = data.draw(st.sampled_from(sorted(latest)), label="key") if again else f"e{len(latest)}"
            latest[key] = latest.get(key, -1) + 1
            rows.append((key, latest[key]))
        sink.raw_records("events", [event(key, version) for key, version in rows])
        sent.append(rows)
        sink.state("events", {"page": page}, len(rows))
    sink.stream_status("events", "COMPLETE")

    landed: dict[str, int] = {}
    for i, (rows, state) in enumerate(writer.loads):
        landed.update(rows)
        if state is not None:  # every record read before the state is in this batch or an earlier one
            written = {row for batch, _ in writer.loads[: i + 1] for row in batch}
            for page_rows in sent[: state["page"] + 1]:
                for key, version in page_rows:
                    assert any(k == key and v >= version for k, v in written)
    assert landed == latest  # the last version read of each record is the one that stays
