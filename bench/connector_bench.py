"""The connector's CPU per record, its rate-limit ceiling, its memory and its start-up, measured.

Every scenario runs the connector as its own process against `klaviyo-emulator serve` (another
process, whose CPU is read from /proc and reported separately):

- **cpu**: `source-klaviyo read` of events, then of profiles, stdout to /dev/null, and
  `python -m source_klaviyo.sync sync --streams events` into a fresh DuckDB file; emulator at
  `--scale` (default large) with no rate limits and no latency. The connector's user+sys CPU comes
  from `os.wait4` (that process, all its threads, and for `sync` its DuckDB writer process); records
  from the emulator's truth (checked against a pipe count with `--verify-records`), or from the
  DuckDB table for `sync`, whose peak RSS is the sum of its two processes' peaks (it records both).
- **memory**: the cpu runs again at each of `--memory-scales` (default medium,large) not already
  run: peak RSS (`ru_maxrss`) of `read` and of `sync` must stay flat as the data grows.
- **ceiling**: `read` of one stream with rate limits on, `--latency-ms 150` (the emulator jitters
  it uniformly over 0.5x-1.5x), for `--ceiling-seconds` (default 200). Records are counted from a
  pipe every second. The steady window is `[start + 60 s, end]`, start being the connector's spawn:
  the first minute holds the opening burst and the first full 60-s window of the limiter's log. The
  ceiling is `round(tier steady/min x rate_limit_scale) / 60 x page size` records/s (the emulator
  rounds the scaled limit the same way); 429s come from the emulator's `/_emulator/stats`, and
  "late 429s" are those after the first 5 s (the first burst). The four streams run at the same time,
  each against its own emulator (they are latency-bound, not CPU-bound).
- **backfill**: a whole backfill at Klaviyo's real limits (`rate_limit_scale` 1.0), with the default
  config (no `num_workers`), once per latency model of `--latencies` (default: 150 ms, 600 ms and
  1,500 ms of fixed latency, uniform 0.5-1.5x, and the emulator's size-proportional `real` profile,
  docs/emulator.md) and per stream of `--backfill-streams`: events (large: 1M events, XL), profiles
  without predictive analytics (medium: 50,000, L) and list_memberships (medium, L, one chain per
  list). Achieved = records over the **whole wall time** of the process (spawn to exit: start-up,
  the first answers and the last pages included), against the tier's steady ceiling (steady/min /
  60 x page size). A fan-out's chains each end on a page that is seldom full, so its run is also
  put against its **page-bound** ceiling: the fewest requests its parents' pages allow, at the
  tier's steady rate. One emulator per latency serves every run, reset before each
  (`POST /_emulator/reset`: empty rate-limit windows, the first draws, cold pages). With
  `--backfill-sync`, events are also synced into DuckDB, read and sync in pairs, the order swapped
  every other pair, and the sync's wall is compared with its pair's read.
- **incremental**: `read` of events from a state `--incremental-days` back (default 1, 7 and 30
  days of the `large` emulator: ~1,000, ~9,500 and ~41,000 events), at Klaviyo's real XL limit, per
  latency model of `--latencies`, `--repeat` times each on one emulator reset before each run. Such a
  read is a few to tens of pages: the round trips, not the rate limit, bound it (a probe page, then
  the rest of the range cut into chains at once), so the figure is the wall, start-up included.

Every emulator of the cpu, memory, backfill and incremental scenarios pre-renders its events
(`--prerender-events`, docs/emulator.md): an events page then costs it ~6 ms of CPU instead of ~12,
which it would otherwise take from the connector on this 2-core machine.
- **startup**: `source-klaviyo spec`, wall time of the whole process, median of 7.

    ./dev run python bench/connector_bench.py                        # everything (~40 min)
    ./dev run python bench/connector_bench.py --scenarios backfill --backfill-sync   # issue 15's table
    ./dev run python bench/connector_bench.py --scenarios cpu --repeat 3
    ./dev run python bench/connector_bench.py --scenarios incremental --latencies 1500ms,real --repeat 7
    ./dev run python bench/connector_bench.py --quick                # harness smoke test, < 1 min

Prints a table and writes `bench/results/connector.json`. Linux only (/proc, wait4).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Emulator, emulator_requests, machine, rss_mb, sync_peak_rss_mb, table_rows

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "connector.json"
BIN = Path(sys.executable).parent
RECORD = b'"type":"RECORD"'

# stream -> (emulator route, rate_limit_scale, records to add before the run, extra config)
# Why these scale factors: see docs/performance.md ("Ceiling"). In short, each one keeps the emulator
# far from CPU-bound on this 2-core machine while leaving >= 150 requests/min per bucket, so one
# request is < 1 % of the steady window's count.
# not the stream table: the scenarios measured in docs/performance.md, each with its own scale factor
CEILING = {
    "events": ("/api/events", 0.05, None, {}),
    "profiles": ("/api/profiles", 1.0, None, {}),
    "campaigns": ("/api/campaigns", 1.0, ("campaigns", 60_000), {}),
    "lists": ("/api/lists", 0.2, ("lists", 6_000), {}),
}
TRUTH = {"events": ("events", "datetime"), "profiles": ("profiles", "updated")}  # resource, cursor


@dataclass
class Row:
    scenario: str
    scale: str
    records: int = 0
    requests: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    cpu_us_per_record: float | None = None
    achieved_per_s: float | None = None
    ceiling_per_s: float | None = None
    achieved_pct: float | None = None
    throttled: int = 0
    late_throttled: int = 0
    peak_rss_mb: float = 0.0
    emulator_cpu_s: float = 0.0
    exit_code: int = 0
    notes: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)


# -- running one connector process --------------------------------------------------------------------
@dataclass
class Proc:
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_mb: float
    exit_code: int
    records: int | None = None
    timeline: list[tuple[float, int]] = field(default_factory=list)

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def _reap(proc: subprocess.Popen, started: float) -> Proc:
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Proc(wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode)


def run_to_devnull(cmd: list[str]) -> Proc:
    started = time.perf_counter()
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen(cmd, stdout=null, stderr=subprocess.PIPE)
    err = threading.Thread(target=_drain, args=(proc.stderr, []), daemon=True)
    err.start()
    result = _reap(proc, started)
    err.join(1)
    return result


def _drain(stream: IO[bytes], sink: list[bytes]) -> None:
    for chunk in iter(lambda: stream.read(65536), b""):
        if len(sink) < 64:
            sink.append(chunk)


class RecordCounter(threading.Thread):
    """Reads a connector's stdout and counts RECORD lines (split on whole lines only)."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.records = 0

    def run(self) -> None:
        rest = b""
        fd = self.stream.fileno()
        while chunk := os.read(fd, 1 << 20):
            cut = chunk.rfind(b"\n")
            if cut < 0:
                rest += chunk
                continue
            self.records += (rest + chunk[: cut + 1]).count(RECORD)
            rest = chunk[cut + 1 :]


def run_counted(
    cmd: list[str], *, seconds: float | None = None, tick: Callable[[float], None] | None = None,
    grid: float = 1.0,
) -> Proc:
    """Run with stdout to a pipe, count records every `grid` seconds; stop it (SIGTERM) after
    `seconds`. Its exit is noticed within 10 ms, so `wall_s` is the process's own."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    counter = RecordCounter(proc.stdout)
    counter.start()
    timeline: list[tuple[float, int]] = []
    while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:  # not reaped
        now = time.perf_counter() - started
        if now >= len(timeline) * grid:
            timeline.append((now, counter.records))
            if tick is not None:
                tick(now)
        if seconds is not None and now >= seconds:
            proc.terminate()
            break
        time.sleep(0.01)
    result = _reap(proc, started)
    counter.join(5)
    result.records = counter.records
    timeline.append((result.wall_s, counter.records))
    result.timeline = timeline
    return result


# -- inputs -------------------------------------------------------------------------------------------
class Inputs:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir

    def config(self, name: str, url: str, **extra: object) -> str:
        path = self.dir / f"config-{name}.json"
        path.write_text(json.dumps({"api_key": "pk_emulator", "base_url": url, **extra}))
        return str(path)

    def state(self, stream: str, stream_state: dict[str, Any]) -> str:
        """A `--state` file holding one stream's state (the protocol's per-stream form)."""
        path = self.dir / f"state-{stream}.json"
        path.write_text(json.dumps([{"type": "STREAM", "stream": {
            "stream_descriptor": {"name": stream}, "stream_state": stream_state}}]))
        return str(path)

    def catalog(self, streams: list[str]) -> str:
        from source_klaviyo.catalog import configured_catalog

        path = self.dir / f"catalog-{'-'.join(streams)}.json"
        path.write_text(json.dumps(configured_catalog(streams)))
        return str(path)


def read_cmd(config: str, catalog: str) -> list[str]:
    return [str(BIN / "source-klaviyo"), "read", "--config", config, "--catalog", catalog]


def sync_cmd(config: str, db: Path, streams: list[str]) -> list[str]:
    return [sys.executable, "-m", "source_klaviyo.sync", "sync", "--config", config, "--db", str(db),
            "--streams", ",".join(streams), "--quiet"]


def _runs_summary(row: Row, procs: list[Proc], records: int, emulator_cpu: list[float]) -> Row:
    row.records = records
    row.runs = [asdict(p) | {"cpu_s": round(p.cpu_s, 3)} for p in procs]
    for run in row.runs:
        run.pop("timeline", None)
    row.wall_s = statistics.median(p.wall_s for p in procs)
    row.cpu_s = statistics.median(p.cpu_s for p in procs)
    row.cpu_us_per_record = 1e6 * row.cpu_s / records if records else None
    row.peak_rss_mb = max(p.maxrss_mb for p in procs)
    row.emulator_cpu_s = statistics.median(emulator_cpu)
    row.exit_code = max(p.exit_code for p in procs)
    if len(procs) > 1:
        row.notes.append(f"median of {len(procs)} runs; CPU µs/record per run: "
                         + ", ".join(f"{1e6 * p.cpu_s / records:.1f}" for p in procs if records))
    return row


# -- scenarios ---------------------------------------------------------------------------------------
def scenario_cpu(inputs: Inputs, scale: str, repeat: int, verify: bool, log: Callable[[str], None],
                 streams: tuple[str, ...] = ("events", "profiles"), sync: bool = True) -> list[Row]:
    rows: list[Row] = []
    with Emulator(scale, prerender_events=True) as emu:
        log(f"emulator {scale}: {emu.url} (started in {emu.startup_seconds:.1f}s)")
        config = inputs.config(f"cpu-{scale}", emu.url)
        for stream in streams:
            records = emu.truth_count(*TRUTH[stream], before=time.time() - 5)
            catalog = inputs.catalog([stream])
            procs, emu_cpu, requests = [], [], 0
            for i in range(repeat):
                emu.reset_stats()
                cpu0 = emu.cpu()
                procs.append(run_to_devnull(read_cmd(config, catalog)))
                emu_cpu.append(emu.cpu() - cpu0)
                requests = emulator_requests(emu.stats())[0]
                log(f"  read {stream} run {i + 1}: {procs[-1].cpu_s:.2f}s CPU, {procs[-1].wall_s:.1f}s wall, "
                    f"{1e6 * procs[-1].cpu_s / records:.1f} µs/record, exit {procs[-1].exit_code}")
            row = _runs_summary(Row(f"cpu: read {stream}", scale), procs, records, emu_cpu)
            row.requests = requests
            if verify:
                # The emulator's data runs up to now: an event may fall between the truth count above
                # and this read's own upper bound (now - 5 s), so the count must lie between the truth
                # before the read and the truth after it.
                low = emu.truth_count(*TRUTH[stream], before=time.time() - 5)
                counted = run_counted(read_cmd(config, catalog))
                high = emu.truth_count(*TRUTH[stream], before=time.time() - 5)
                row.notes.append(f"pipe count {counted.records} vs truth {low}..{high}")
                if not low <= (counted.records or 0) <= high:
                    row.notes.append("RECORD COUNT MISMATCH")
            rows.append(row)
        if sync:
            rows.append(_sync_row(inputs, emu, config, ["events"], "cpu: sync events", scale, repeat, log))
    return rows


def _sync_row(inputs: Inputs, emu: Emulator, config: str, streams: list[str], name: str, scale: str,
              repeat: int, log: Callable[[str], None]) -> Row:
    procs, emu_cpu, records, requests = [], [], 0, 0
    for i in range(repeat):
        db = inputs.dir / f"sync-{scale}-{'-'.join(streams)}-{i}.duckdb"
        db.unlink(missing_ok=True)
        emu.reset_stats()
        cpu0 = emu.cpu()
        procs.append(run_to_devnull(sync_cmd(config, db, streams)))
        emu_cpu.append(emu.cpu() - cpu0)
        requests = emulator_requests(emu.stats())[0]
        records = table_rows(db, streams)
        procs[-1].maxrss_mb = sync_peak_rss_mb(db) or procs[-1].maxrss_mb
        db.unlink(missing_ok=True)
        log(
            f"  {name} run {i + 1}: {records} rows, {procs[-1].cpu_s:.2f}s CPU, "
            f"{procs[-1].wall_s:.1f}s wall, "
            f"peak RSS {procs[-1].maxrss_mb:.0f} MB, exit {procs[-1].exit_code}"
        )
    row = _runs_summary(Row(name, scale), procs, records, emu_cpu)
    row.requests = requests
    row.notes.append("records = rows in the DuckDB tables after the sync; peak RSS = the sync's "
                     "process's peak plus its DuckDB writer process's peak")
    return row


def _take_counted(row: Row, proc: Proc) -> None:
    """A piped run's records (counted from its stdout), wall, CPU and memory into its row."""
    row.records, row.wall_s, row.cpu_s = proc.records or 0, proc.wall_s, proc.cpu_s
    row.cpu_us_per_record = 1e6 * proc.cpu_s / row.records if row.records else None
    row.peak_rss_mb, row.exit_code = proc.maxrss_mb, proc.exit_code


def ceiling_of(stream_name: str, config_extra: dict[str, Any], factor: float) -> tuple[str, int, float]:
    """(tier, page size, records/s) for a stream under the emulator's scaled limits."""
    from source_klaviyo.chains import tier_and_fields
    from source_klaviyo.config import parse_config
    from source_klaviyo.streams import STREAMS_BY_NAME, TIERS

    stream = STREAMS_BY_NAME[stream_name]
    tier = tier_and_fields(stream, parse_config({"api_key": "pk_bench", **config_extra})[0])[0]
    steady = max(1, round(TIERS[tier].steady_per_minute * factor))
    page = stream.page_size or 1
    return tier, page, steady / 60 * page


def scenario_ceiling(inputs: Inputs, stream: str, scale: str, seconds: float, warmup: float,
                     latency_ms: float, log: Callable[[str], None]) -> Row:
    route, factor, add, extra = CEILING[stream]
    tier, page, ceiling = ceiling_of(stream, extra, factor)
    row = Row(f"ceiling: read {stream}", scale)
    with Emulator(scale, rate_limits=True, rate_limit_scale=factor, latency_ms=latency_ms) as emu:
        if add:
            emu.add(*add)
            time.sleep(6)  # reads stop at now - 5 s: let the added records (stamped now) fall inside
        config = inputs.config(f"ceiling-{stream}", emu.url, **extra)
        catalog = inputs.catalog([stream])
        emu.reset_stats()
        cpu0 = emu.cpu()
        throttles: list[tuple[float, int]] = []

        def tick(now: float) -> None:
            throttles.append((now, emulator_requests(emu.stats(), route)[1]))

        proc = run_counted(read_cmd(config, catalog), seconds=seconds, tick=tick)
        row.emulator_cpu_s = emu.cpu() - cpu0
        requests, throttled = emulator_requests(emu.stats(), route)
    row.requests, row.throttled = requests, throttled
    row.late_throttled = throttled - max((n for t, n in throttles if t <= 5.0), default=0)
    _take_counted(row, proc)
    # steady window: from the first sample at or after `warmup` to the last sample
    samples = [(t, n) for t, n in proc.timeline if t >= warmup]
    if len(samples) >= 2:
        (t0, n0), (t1, n1) = samples[0], samples[-1]
        row.achieved_per_s = (n1 - n0) / (t1 - t0)
        row.notes.append(f"steady window {t0:.0f}-{t1:.0f} s ({t1 - t0:.0f} s), {n1 - n0} records")
        if t1 - t0 < 120:
            row.notes.append("steady window shorter than 120 s")
    row.ceiling_per_s = ceiling
    row.achieved_pct = 100 * row.achieved_per_s / ceiling if row.achieved_per_s else None
    row.notes.append(f"tier {tier}, page {page}, rate_limit_scale {factor}, latency {latency_ms} ms ±50 %")
    log(f"  ceiling {stream}: {row.achieved_per_s or 0:.1f}/s of {ceiling:.1f}/s, 429s {throttled} "
        f"(late {row.late_throttled})")
    return row


# latency model name -> the emulator's latency flags (bench/_common.Emulator fields)
LATENCIES: dict[str, dict[str, Any]] = {
    "150ms": {"latency_ms": 150.0},
    "600ms": {"latency_ms": 600.0},
    "1500ms": {"latency_ms": 1500.0},
    "real": {"latency_profile": "real"},
}
# stream -> (scale, extra config, the emulator routes its requests start with)
BACKFILL: dict[str, tuple[str, dict[str, Any], str]] = {
    "events": ("large", {}, "/api/events"),
    "profiles": ("medium", {"disable_fetching_predictive_analytics": True}, "/api/profiles"),
    "list_memberships": ("medium", {}, "/api/lists"),
}
# A fan-out reads each parent's children as a page chain of their own, and each chain ends on a page
# that is seldom full: the fewest requests it can make are each parent's pages. stream -> (the
# emulator's truth of the children, their parent's key, the truth of the parents, the children's route)
FAN_OUT = {"list_memberships": ("list-memberships", "list_id", "lists", "/api/lists/{id}/profiles")}


def scenario_backfill(inputs: Inputs, stream: str, latency: str, log: Callable[[str], None],
                      sync: bool, repeat: int) -> list[Row]:
    """Whole backfills of `stream` at the real limit and a latency model, `repeat` times (the read and,
    for events with `sync`, the DuckDB sync in turn, the order swapped every other pair): the median
    run, and for the sync the median of each pair's ratio; see the module docstring."""
    scale, extra, route = BACKFILL[stream]
    tier, page, ceiling = ceiling_of(stream, extra, 1.0)
    reads: list[Row] = []
    syncs: list[Row] = []
    with_sync = sync and stream == "events"
    with Emulator(scale, rate_limits=True, prerender_events=True, **LATENCIES[latency]) as emu:
        config = inputs.config(f"backfill-{stream}-{latency}", emu.url, **extra)
        fewest = fewest_requests(emu, stream, page)

        def read_once(run: int) -> Row:
            row = Row(f"backfill: read {stream} @{latency}", scale)
            emu.reset()  # as a fresh emulator: empty rate-limit windows, the first draws, cold pages
            cpu0 = emu.cpu()
            proc = run_counted(read_cmd(config, inputs.catalog([stream])), grid=0.5)
            row.emulator_cpu_s = emu.cpu() - cpu0
            row.requests, row.throttled = emulator_requests(emu.stats(), route)
            _take_counted(row, proc)
            _against_ceiling(row, ceiling)
            row.notes.append(f"tier {tier}, page {page}; ideal {row.records / ceiling:.1f} s; records by "
                             f"25/50/75/100 % of the wall: {_at_fractions(proc.timeline, row.records)}")
            if fewest is not None:
                made = emulator_requests(emu.stats(), FAN_OUT[stream][3])[0]
                row.notes.append(_page_bound(row, fewest, made, tier))
            log(f"  backfill {stream} @{latency} run {run}: {row.records} in {row.wall_s:.2f} s = "
                f"{row.achieved_per_s or 0:,.0f}/s, {row.achieved_pct or 0:.1f} % of {ceiling:,.0f}/s, "
                f"{row.requests} requests, 429s {row.throttled}, {row.cpu_us_per_record or 0:.1f} µs/record, "
                f"RSS {row.peak_rss_mb:.0f} MB")
            return row

        def sync_once(run: int) -> Row:
            emu.reset()
            name = f"backfill: sync {stream} @{latency}"
            synced = _sync_row(inputs, emu, config, [stream], f"{name}, pair {run},", scale, 1, log)
            synced.scenario = name
            synced.throttled = emulator_requests(emu.stats(), route)[1]
            _against_ceiling(synced, ceiling)
            return synced

        for run in range(1, repeat + 1):
            if with_sync and run % 2 == 0:  # every other pair syncs first: a drifting machine weighs on both
                synced, read = sync_once(run), read_once(run)
            else:
                read = read_once(run)
                synced = sync_once(run) if with_sync else None
            reads.append(read)
            if synced is not None:
                synced.notes.append(
                    f"wall {synced.wall_s:.2f} s against its paired read's {read.wall_s:.2f} s: "
                    f"{100 * (synced.wall_s / read.wall_s - 1):+.1f} %, 429s {synced.throttled}"
                )
                syncs.append(synced)
    read = _median_run(reads)
    if not syncs:
        return [read]
    synced = _median_run(syncs)
    ratios = sorted(s.wall_s / r.wall_s for s, r in zip(syncs, reads, strict=True))
    synced.notes.append(
        f"median wall {synced.wall_s:.2f} s against the reads' median {read.wall_s:.2f} s: "
        f"{100 * (synced.wall_s / read.wall_s - 1):+.1f} %; the pairs' ratios "
        f"({', '.join(f'{100 * (r - 1):+.1f} %' for r in ratios)}): median "
        f"{100 * (statistics.median(ratios) - 1):+.1f} %"
    )
    log(f"  backfill sync @{latency}: pairs' median {100 * (statistics.median(ratios) - 1):+.1f} %, "
        f"medians' ratio {100 * (synced.wall_s / read.wall_s - 1):+.1f} %")
    return [read, synced]


def _median_run(rows: list[Row]) -> Row:
    """The run of median wall time, with every run's wall and share of the ceiling in its notes."""
    ordered = sorted(rows, key=lambda row: row.wall_s)
    median = ordered[(len(ordered) - 1) // 2]
    if len(rows) > 1:
        runs = ", ".join(f"{row.wall_s:.2f} s ({row.achieved_pct or 0:.1f} %)" for row in rows)
        median.notes.append(f"median of {len(rows)} runs by wall; runs: {runs}")
    return median


def scenario_incremental(inputs: Inputs, latency: str, days: list[float], log: Callable[[str], None],
                         repeat: int) -> list[Row]:
    """Incremental reads of events from a state `days` back, at the real XL limit and a latency
    model, `repeat` times each on one emulator reset before each run: the median run per span."""
    from datetime import UTC, datetime, timedelta

    tier, page, ceiling = ceiling_of("events", {}, 1.0)
    rows: list[Row] = []
    with Emulator("large", rate_limits=True, prerender_events=True, **LATENCIES[latency]) as emu:
        config, catalog = inputs.config(f"incremental-{latency}", emu.url), inputs.catalog(["events"])
        for span in days:
            runs: list[Row] = []
            for run in range(1, repeat + 1):
                emu.reset()
                since = datetime.now(UTC) - timedelta(days=span)
                state = inputs.state("events", {"datetime": since.isoformat(timespec="seconds")})
                row = Row(f"incremental: read events, {span:g} days @{latency}", "large")
                proc = run_counted([*read_cmd(config, catalog), "--state", state], grid=0.25)
                row.requests, row.throttled = emulator_requests(emu.stats(), "/api/events")
                _take_counted(row, proc)
                _against_ceiling(row, ceiling)
                log(f"  incremental events, {span:g} days @{latency} run {run}: {row.records} in "
                    f"{row.wall_s:.2f} s, {row.requests} requests, 429s {row.throttled}")
                runs.append(row)
            median = _median_run(runs)
            median.notes.append(f"tier {tier}, page {page}; {median.records / page:.0f} pages' worth of "
                                f"records; the wall holds start-up, the probe's round trip and the rest's")
            rows.append(median)
    return rows


def fewest_requests(emu: Emulator, stream: str, page: int) -> int | None:
    """For a fan-out, the fewest requests that read it: each parent's children in full pages, and one
    (empty or partial) page per parent; None for a stream of one endpoint."""
    if stream not in FAN_OUT:
        return None
    children, key, parents, _route = FAN_OUT[stream]
    sizes = emu.group_sizes(children, key)
    return sum(max(1, -(-sizes.get(parent, 0) // page)) for parent in emu.truth_ids(parents))


def _page_bound(row: Row, fewest: int, made: int, tier: str) -> str:
    """The run against the fewest requests its pages allow at the tier's steady rate (`made`: the
    children's requests it made; the parents' pages go to a bucket of their own)."""
    from source_klaviyo.streams import TIERS

    ideal = fewest / (TIERS[tier].steady_per_minute / 60)
    return (f"page-bound: {fewest} requests at least (each parent's pages), {made} made; at the "
            f"steady {TIERS[tier].steady_per_minute}/min that is {ideal:.1f} s: "
            f"{100 * ideal / row.wall_s:.1f} % of it in {row.wall_s:.2f} s")


def _against_ceiling(row: Row, ceiling: float) -> None:
    row.ceiling_per_s = ceiling
    row.achieved_per_s = row.records / row.wall_s if row.wall_s else None
    row.achieved_pct = 100 * row.achieved_per_s / ceiling if row.achieved_per_s else None


def _at_fractions(timeline: list[tuple[float, int]], total: int) -> str:
    """Records read by 25, 50 and 75 % of the wall time, and the wall (how even the read was)."""
    end = timeline[-1][0]
    marks = []
    for fraction in (0.25, 0.5, 0.75):
        reached = max((n for t, n in timeline if t <= fraction * end), default=0)
        marks.append(f"{100 * reached / total:.0f}%" if total else "-")
    return " / ".join([*marks, "100%"])


def scenario_startup(runs: int, log: Callable[[str], None]) -> Row:
    cmd = [str(BIN / "source-klaviyo"), "spec"]
    procs = [run_to_devnull(cmd) for _ in range(runs)]
    row = Row("startup: spec", "-", wall_s=statistics.median(p.wall_s for p in procs),
              cpu_s=statistics.median(p.cpu_s for p in procs), peak_rss_mb=max(p.maxrss_mb for p in procs),
              exit_code=max(p.exit_code for p in procs))
    row.notes.append(f"median of {runs}; walls " + ", ".join(f"{p.wall_s:.3f}" for p in procs))
    log(f"  spec: {row.wall_s:.3f}s wall (median of {runs})")
    return row


# -- output -----------------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[Row]) -> str:
    head = (f"{'scenario':<31} {'scale':<6} {'records':>9} {'requests':>8} {'wall s':>7} {'CPU µs/rec':>10} "
            f"{'ach/ceil %':>10} {'429s':>9} {'RSS MB':>7} {'emu CPU s':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        ach = _fmt(r.achieved_pct, ".1f")
        lines.append(
            f"{r.scenario:<31} {r.scale:<6} {r.records:>9} {r.requests:>8} {r.wall_s:>7.2f} "
            f"{_fmt(r.cpu_us_per_record, '.1f'):>10} {ach:>10} {f'{r.throttled}/{r.late_throttled}':>9} "
            f"{r.peak_rss_mb:>7.0f} {r.emulator_cpu_s:>9.1f}"
        )
    lines.append("429s: total/after the first 5 s. CPU: user+sys of the connector process only.")
    for r in rows:
        for note in r.notes:
            lines.append(f"  {r.scenario} [{r.scale}]: {note}")
    return "\n".join(lines)


def _listed(option: str) -> list[str]:
    """The names of a comma-separated option, blanks dropped."""
    return [name.strip() for name in option.split(",") if name.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="cpu,ceiling,backfill,memory,startup")
    parser.add_argument("--scale", default="large", choices=["tiny", "small", "medium", "large"])
    parser.add_argument("--memory-scales", default="medium,large")
    parser.add_argument("--cpu-streams", default="events,profiles", help="streams read by cpu/memory")
    parser.add_argument("--no-sync", action="store_true", help="skip the DuckDB sync run of cpu/memory")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each cpu scenario (median reported)")
    parser.add_argument("--ceiling-streams", default=",".join(CEILING))
    parser.add_argument("--ceiling-seconds", type=float, default=200.0)
    parser.add_argument("--warmup-seconds", type=float, default=60.0)
    parser.add_argument("--latency-ms", type=float, default=150.0, help="latency of the ceiling scenario")
    parser.add_argument("--latencies", default=",".join(LATENCIES), help="latency models of backfill")
    parser.add_argument("--backfill-streams", default=",".join(BACKFILL))
    parser.add_argument("--backfill-sync", action="store_true", help="also sync events into DuckDB")
    parser.add_argument("--incremental-days", default="1,7,30",
                        help="how far back each incremental read's state is, in days")
    parser.add_argument(
        "--verify-records", action="store_true", help="also count RECORD lines through a pipe"
    )
    parser.add_argument("--quick", action="store_true", help="small and short: a smoke test of the harness")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.scale, args.memory_scales, args.verify_records = "tiny", "small", True
        args.ceiling_seconds, args.warmup_seconds = 20.0, 8.0
    scenarios = _listed(args.scenarios)
    started = time.time()
    conditions = machine()

    def log(message: str) -> None:
        print(f"[{time.time() - started:6.0f}s] {message}", file=sys.stderr, flush=True)

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="connector-bench-") as tmp:
        inputs = Inputs(Path(tmp))
        if "startup" in scenarios:
            rows.append(scenario_startup(7, log))
        if "backfill" in scenarios:
            for stream in _listed(args.backfill_streams):
                for latency in _listed(args.latencies):
                    rows.extend(scenario_backfill(inputs, stream, latency, log, args.backfill_sync,
                                                  args.repeat))
        if "incremental" in scenarios:
            days = [float(d) for d in _listed(args.incremental_days)]
            for latency in _listed(args.latencies):
                rows.extend(scenario_incremental(inputs, latency, days, log, args.repeat))
        if "ceiling" in scenarios:
            streams = _listed(args.ceiling_streams)
            scale = "small" if args.quick else args.scale
            results: dict[str, Row] = {}

            def one(stream: str) -> None:
                results[stream] = scenario_ceiling(inputs, stream, scale, args.ceiling_seconds,
                                                   args.warmup_seconds, args.latency_ms, log)

            threads = [threading.Thread(target=one, args=(s,)) for s in streams]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rows.extend(results[s] for s in streams if s in results)
        scales = [args.scale] if "cpu" in scenarios else []
        if "memory" in scenarios:  # the same runs at more scales: peak RSS must not grow with the data
            scales += [s.strip() for s in args.memory_scales.split(",") if s.strip() not in scales]
        for scale in scales:
            rows.extend(scenario_cpu(inputs, scale, args.repeat, args.verify_records, log,
                                     tuple(_listed(args.cpu_streams)),
                                     not args.no_sync))
    print(table(rows))
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "argv": sys.argv[1:] if argv is None else argv,
        "python": platform.python_version(),
        **conditions,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        # ru_maxrss of a child includes the image it was forked from: keep this well below the rows'
        "bench_process_rss_mb_at_end": round(rss_mb(os.getpid()), 1),
        "rows": [asdict(r) for r in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
