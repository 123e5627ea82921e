"""The sync's DuckDB writes run in a process of their own: its failures reach the stream they belong to,
its death ends the sync cleanly, and the file is whole and free afterwards."""

from __future__ import annotations

import os
import signal
from functools import partial
from pathlib import Path

import pytest

from klaviyo_emulator.runner import RunningEmulator
from source_klaviyo.streams import STREAMS_BY_NAME
from source_klaviyo.sync import run as sync_run
from source_klaviyo.sync.duckdb_store import Store
from source_klaviyo.sync.plan import plan_stream
from source_klaviyo.sync.sink import DuckDBSink
from source_klaviyo.sync.writer import ProcessWriter
from tests.sync.helpers import FAIL_HOW, FAIL_STREAM, FailingStore, ahead, landed, run_sync, truth, upper_of
from tests.sync.test_sink import ids, profile, saved_state

TAG = {"type": "tag", "id": "t1", "attributes": {"name": "a"}, "links": {}}


def process_sink(db: Path, *streams: str) -> tuple[ProcessWriter, DuckDBSink]:
    """A sink writing through a writer process whose store is a `FailingStore`."""
    opener = partial(FailingStore, db, sync_id="test", connector_version="test")
    writer = ProcessWriter()
    store = opener()
    targets = {}
    for name in streams:
        plan = plan_stream(store, STREAMS_BY_NAME[name], full_refresh=False)
        targets[name] = store.open_target(plan.layout, plan.slot, fresh=plan.fresh)
    store.close()  # the writer process opens the file now
    writer.start(opener, targets, store.memory_mb)
    return writer, DuckDBSink(writer, targets, flush_records=1)


def profiles_failing_then_tags(
    db: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> tuple[ProcessWriter, DuckDBSink]:
    """Three batches of profiles, the second failing as `how` says, then the tags, complete."""
    monkeypatch.setenv(FAIL_STREAM, "profiles")
    monkeypatch.setenv(FAIL_HOW, how)
    writer, sink = process_sink(db, "profiles", "tags")
    for n, month in ((1, "01"), (2, "02"), (3, "03")):
        sink.records("profiles", [profile(n)])
        sink.state("profiles", {"updated": f"2024-{month}-01T00:00:00+00:00"}, 1)
    sink.records("tags", [TAG])
    sink.stream_status("tags", "COMPLETE")  # behind the failed profiles write
    return writer, sink


def test_a_write_failing_in_the_writer_process_ends_its_stream_and_spares_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "k.duckdb"
    writer, sink = profiles_failing_then_tags(db, monkeypatch, "raise")
    sink.stream_status("profiles", "COMPLETE")
    sink.finish()
    assert sink.tallies["profiles"].status == "INCOMPLETE"
    assert sink.tallies["profiles"].errors == ["writing to DuckDB failed: disk full"]
    assert sink.tallies["tags"].status == "COMPLETE"
    # the batch after the failed one was dropped: its state would have vouched for p2
    assert saved_state(db, "profiles") == {"updated": "2024-01-01T00:00:00+00:00"}
    assert ids(db, "profiles") == ["p1"]
    assert ids(db, "tags") == ["t1"]
    assert writer.peak_rss_mb is not None
    assert writer.peak_rss_mb > 0


def test_a_writer_process_that_dies_fails_every_write_left_and_leaves_the_file_whole_and_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "k.duckdb"
    _writer, sink = profiles_failing_then_tags(db, monkeypatch, "exit")
    sink.finish()
    message = "writing to DuckDB failed: the DuckDB writer process ended unexpectedly (exit code 3)"
    for stream in ("profiles", "tags"):
        assert sink.tallies[stream].status == "INCOMPLETE"
        assert sink.tallies[stream].errors == [message]
    store = Store(db, sync_id="after", connector_version="test")  # nobody holds the file
    assert not store.table_exists("tags")  # never published: the full refresh did not complete
    store.close()
    assert saved_state(db, "profiles") == {"updated": "2024-01-01T00:00:00+00:00"}
    assert ids(db, "profiles") == ["p1"]


def test_a_writer_process_that_cannot_open_the_file_fails_every_write_with_why_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """`start` does not wait for the child to open the file; when opening fails (here the file is
    still held by this process), each stream ends with what opening raised."""
    db = tmp_path / "k.duckdb"
    opener = partial(Store, db, sync_id="test", connector_version="test")
    store = opener()
    targets = {}
    for name in ("profiles", "tags"):
        plan = plan_stream(store, STREAMS_BY_NAME[name], full_refresh=False)
        targets[name] = store.open_target(plan.layout, plan.slot, fresh=plan.fresh)
    writer = ProcessWriter()
    writer.start(opener, targets, store.memory_mb)  # the store is not closed: the child cannot open it
    sink = DuckDBSink(writer, targets, flush_records=1)
    sink.records("profiles", [profile(1)])
    sink.state("profiles", {"updated": "2024-01-01T00:00:00+00:00"}, 1)
    sink.records("tags", [TAG])
    sink.stream_status("tags", "COMPLETE")
    sink.stream_status("profiles", "COMPLETE")
    sink.finish()
    writer.close()
    store.close()
    for stream in ("profiles", "tags"):
        assert sink.tallies[stream].status == "INCOMPLETE"
        [error] = sink.tallies[stream].errors
        assert error.startswith(f"writing to DuckDB failed: cannot open {db}"), error
    assert saved_state(db, "profiles") is None
    store = Store(db, sync_id="after", connector_version="test")
    assert not store.table_exists("tags")  # a full refresh's table is published only once written
    store.close()
    assert ids(db, "profiles") == []


def test_a_sync_whose_writer_process_is_killed_ends_incomplete_and_the_next_sync_lands_the_truth(
    emulator: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "k.duckdb"
    started: list[ProcessWriter] = []

    class KilledAfterFirstCheckpoint(ProcessWriter):
        def __init__(self) -> None:
            super().__init__()
            started.append(self)

    def kill_writer(_stream: str, _checkpoints: int) -> None:
        os.kill(started[0]._process.pid, signal.SIGKILL)

    monkeypatch.setattr(sync_run, "ProcessWriter", KilledAfterFirstCheckpoint)
    monkeypatch.setattr(sync_run, "_checkpoint_logger", lambda _path: kill_writer)
    clock = ahead()
    summary = run_sync(emulator.url, db, ["events"], flush_records=1, flush_seconds=0, clock=clock)
    assert summary.status == "INCOMPLETE"
    (events,) = summary.streams
    assert events.status == "INCOMPLETE"
    assert events.errors == [
        "writing to DuckDB failed: the DuckDB writer process ended unexpectedly (exit code -9)"
    ]
    assert 0 < events.rows < len(truth(emulator, "events", upper_of(clock)))  # the first checkpoint's

    monkeypatch.undo()
    again = run_sync(emulator.url, db, ["events"], clock=clock)
    assert again.status == "SUCCEEDED"
    assert again.peak_rss_mb is not None  # recorded for bench/, with the writer process's own
    assert again.writer_peak_rss_mb is not None
    assert again.writer_peak_rss_mb > 0
    assert landed(db, "events") == truth(emulator, "events", upper_of(clock))
