"""Opening the sync's DuckDB file: every failure is one config error naming the file and the cause."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from source_klaviyo.errors import ConfigError
from source_klaviyo.sync.duckdb_store import Store

HOLD = """
import sys
from source_klaviyo.sync.duckdb_store import Store
store = Store(sys.argv[1], sync_id="holder", connector_version="test")
print("open", flush=True)
sys.stdin.read()
"""


def open_store(path: Path) -> Store:
    return Store(path, sync_id="test", connector_version="test")


def test_a_file_that_is_not_a_duckdb_database_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "notes.duckdb"
    path.write_text("not a database\n")
    with pytest.raises(ConfigError) as error:
        open_store(path)
    assert str(path) in error.value.message
    assert "not a valid DuckDB database" in error.value.message
    assert "another sync" not in error.value.message
    assert path.read_text() == "not a database\n"  # left as it was


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "k.duckdb"
    with pytest.raises(ConfigError) as error:
        open_store(path)
    assert str(path) in error.value.message
    assert "No such file or directory" in error.value.message
    assert not path.parent.exists()


def test_a_file_held_by_another_process_asks_whether_another_sync_runs(tmp_path: Path) -> None:
    path = tmp_path / "k.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "open\n"
        with pytest.raises(ConfigError) as error:
            open_store(path)
        assert str(path) in error.value.message
        assert "Is another sync or a DuckDB shell using it?" in error.value.message
    finally:
        holder.communicate("")
    open_store(path).close()  # free again once the holder is gone
