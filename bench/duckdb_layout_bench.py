"""The local DuckDB layout, before and after typed columns (issue 17): the sync's cost, the file, a query.

Against one `klaviyo-emulator serve` (pre-rendered events, no rate limits, no latency), `--pairs`
times, in alternating order:

- **before**: `python -m source_klaviyo.sync sync --streams events` of the connector in `--before-src`
  (a source tree of the earlier commit, e.g. `git archive <commit> src | tar -x -C DIR`), run with
  `PYTHONPATH=DIR/src`, into a fresh file;
- **after**: the same command of this tree, into another fresh file.

Each sync's user+sys CPU comes from `os.wait4` (the process, all its threads, and its DuckDB writer
process where it has one); its peak RSS is the sum of the two processes' peaks the sync recorded
(`wait4`'s where it recorded none);
records are the rows of the table after the sync. Then, on the last file of each, the analyst's
question "revenue per metric per day" is asked `--queries` times, alternating: by JSON extraction
on the old layout, on the typed columns on the new one (both in a fresh read-only connection with
DuckDB's defaults; the answers must be equal). Last, the old file is opened by the new sync (its
in-place migration to the new layout, then an incremental read that finds nothing new).

    ./dev run python bench/duckdb_layout_bench.py --before-src /tmp/before/src        # large: 1M events
    ./dev run python bench/duckdb_layout_bench.py --before-src /tmp/before/src --scale medium --pairs 1

Prints a table and writes `bench/results/duckdb_layout.json`. Linux only (wait4).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# duckdb is imported only for the queries, after every sync: a child forked from a process that
# holds it would count its RSS as its own peak (ru_maxrss); rows are counted in a child.
from _common import Emulator, machine, sync_peak_rss_mb, table_rows
from connector_bench import Inputs, Proc, run_to_devnull, sync_cmd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "duckdb_layout.json"

# The same question on both layouts, days as UTC dates the way the views compute them (views._day).
QUERY_BEFORE = """
SELECT relationships->'metric'->'data'->>'id' AS metric_id,
       CAST(make_timestamp(epoch_us(datetime)) AS DATE) AS day,
       count(*) AS events,
       sum(TRY_CAST(attributes->'event_properties'->>'$."$value"' AS DOUBLE)) AS revenue
FROM events GROUP BY ALL"""
QUERY_AFTER = """
SELECT metric_id, CAST(make_timestamp(epoch_us(datetime)) AS DATE) AS day, count(*) AS events,
       sum(value) AS revenue
FROM events GROUP BY ALL"""


@dataclass
class SyncRun:
    variant: str
    records: int
    cpu_s: float
    cpu_us_per_record: float
    wall_s: float
    peak_rss_mb: float
    file_mb: float
    exit_code: int


def run_sync(variant: str, config: str, db: Path, env_path: str | None) -> tuple[Proc, int]:
    for leftover in (db, Path(f"{db}.wal")):
        leftover.unlink(missing_ok=True)
    previous = os.environ.get("PYTHONPATH")
    if env_path is not None:
        os.environ["PYTHONPATH"] = env_path
    try:
        proc = run_to_devnull(sync_cmd(config, db, ["events"]))
        proc.maxrss_mb = sync_peak_rss_mb(db) or proc.maxrss_mb
    finally:
        if env_path is not None:
            if previous is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = previous
    return proc, table_rows(db, ["events"])


def timed_query(db: Path, sql: str) -> tuple[float, float, list[tuple]]:
    """(wall seconds, CPU seconds of this process, sorted rows) of one query in a fresh connection."""
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        cpu, wall = time.process_time(), time.perf_counter()
        rows = con.execute(sql).fetchall()
        return time.perf_counter() - wall, time.process_time() - cpu, sorted(rows, key=repr)


def same_answers(before: list[tuple], after: list[tuple]) -> bool:
    if len(before) != len(after):
        return False
    for b, a in zip(before, after, strict=True):
        if b[:3] != a[:3]:
            return False
        if (b[3] is None) != (a[3] is None):
            return False
        if b[3] is not None and abs(b[3] - a[3]) > 1e-6 * max(1, abs(b[3])):
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before-src", type=Path, required=True, help="the earlier tree's src/ directory")
    parser.add_argument("--scale", default="large", choices=["tiny", "small", "medium", "large"])
    parser.add_argument("--pairs", type=int, default=3, help="before/after sync pairs (alternating order)")
    parser.add_argument("--queries", type=int, default=7, help="runs of each query (alternating)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not (args.before_src / "source_klaviyo" / "sync").is_dir():
        parser.error(f"{args.before_src} has no source_klaviyo/sync")

    workdir = Path(tempfile.mkdtemp(prefix="duckdb-layout-bench-"))
    inputs = Inputs(workdir)
    runs: list[SyncRun] = []
    files: dict[str, Path] = {}
    try:
        with Emulator(args.scale, prerender_events=True) as emu:
            print(f"emulator ({args.scale}) up in {emu.startup_seconds:.0f} s", file=sys.stderr)
            config = inputs.config("bench", emu.url)
            for pair in range(args.pairs):
                order = ("before", "after") if pair % 2 == 0 else ("after", "before")
                for variant in order:
                    db = workdir / f"{variant}.duckdb"
                    env_path = str(args.before_src) if variant == "before" else None
                    proc, rows = run_sync(variant, config, db, env_path)
                    run = SyncRun(variant, rows, proc.cpu_s, 1e6 * proc.cpu_s / max(rows, 1), proc.wall_s,
                                  proc.maxrss_mb, db.stat().st_size / 1e6, proc.exit_code)
                    runs.append(run)
                    files[variant] = db
                    print(f"  sync {variant} (pair {pair + 1}): {rows:,} rows, "
                          f"{run.cpu_us_per_record:.1f} µs/record, {run.peak_rss_mb:.0f} MB peak RSS, "
                          f"{run.file_mb:.1f} MB file, exit {run.exit_code}", file=sys.stderr)
            # The old file opened by the new sync: migrated in place, then read incrementally.
            migrated = workdir / "migrated.duckdb"
            shutil.copyfile(files["before"], migrated)
            migration = run_to_devnull(sync_cmd(config, migrated, ["events"]))
            migrated_rows = table_rows(migrated, ["events"])
            print(f"  migration of the old file: {migration.cpu_s:.1f} s CPU, {migration.wall_s:.1f} s wall, "
                  f"{migration.maxrss_mb:.0f} MB peak RSS, exit {migration.exit_code}", file=sys.stderr)

        queries: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        answers: dict[str, list[tuple]] = {}
        for i in range(args.queries):
            for variant in (("before", "after") if i % 2 == 0 else ("after", "before")):
                sql = QUERY_BEFORE if variant == "before" else QUERY_AFTER
                wall, cpu, rows = timed_query(files[variant], sql)
                queries[variant].append((wall, cpu))
                answers[variant] = rows
        equal = same_answers(answers["before"], answers["after"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def median(variant: str, field: str) -> float:
        return statistics.median(getattr(r, field) for r in runs if r.variant == variant)

    query_wall = {v: statistics.median(w for w, _ in q) for v, q in queries.items()}
    query_cpu = {v: statistics.median(c for _, c in q) for v, q in queries.items()}
    header = ("", "records", "CPU µs/record (median; runs)", "peak RSS MB", "file MB",
              "query ms (wall / CPU)")
    rows = []
    for variant in ("before", "after"):
        per_run = ", ".join(f"{r.cpu_us_per_record:.1f}" for r in runs if r.variant == variant)
        rows.append((variant, f"{int(median(variant, 'records')):,}",
                     f"{median(variant, 'cpu_us_per_record'):.1f} ({per_run})",
                     f"{max(r.peak_rss_mb for r in runs if r.variant == variant):.0f}",
                     f"{median(variant, 'file_mb'):.1f}",
                     f"{1000 * query_wall[variant]:.0f} / {1000 * query_cpu[variant]:.0f}"))
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(row))
    speedup = query_wall["before"] / query_wall["after"]
    print(f"query: {speedup:.1f}x faster (wall), answers equal: {equal}; migration of the old file: "
          f"{migration.wall_s:.1f} s wall, {migration.cpu_s:.1f} s CPU, "
          f"{migration.maxrss_mb:.0f} MB peak RSS, {migrated_rows:,} rows")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": machine(), "scale": args.scale, "pairs": args.pairs,
        "syncs": [asdict(r) for r in runs],
        "queries": {v: [{"wall_s": w, "cpu_s": c} for w, c in q] for v, q in queries.items()},
        "query_speedup_wall": speedup, "answers_equal": equal,
        "migration": asdict(migration) | {"rows": migrated_rows},
    }, indent=2, default=str))
    return 0 if equal and all(r.exit_code == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
