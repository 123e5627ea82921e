"""`demo` without a terminal: plain progress, a summary, non-empty tables and the example queries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from source_klaviyo.sync.demo import QUERIES
from tests.truth import TRUTHS


@pytest.mark.slow
def test_demo_runs_without_a_tty_and_prints_the_queries(tmp_path: Path) -> None:
    db = tmp_path / "demo.duckdb"
    done = subprocess.run(
        [sys.executable, "-m", "source_klaviyo", "demo", "--db", str(db), "--scale", "tiny"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"DuckDB file: {db}" in done.stdout
    for title, _sql in QUERIES:
        assert title in done.stdout
    assert "status: SUCCEEDED" in done.stderr
    assert "\x1b[" not in done.stderr  # no live redraws off a terminal
    with duckdb.connect(str(db), read_only=True) as con:
        for table in TRUTHS:  # every stream with records in the emulator (reports: computed, maybe none)
            (count,) = con.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)
            assert count > 0, table
