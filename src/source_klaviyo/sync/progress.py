"""Live progress on stderr: a rich table redrawn in place on a terminal, plain log lines elsewhere.

Both read the same snapshot: the sink's tallies (records committed, checkpoints, status) joined with
the engine's per-stream progress (pages, partitions, windows) and the HTTP client's stats (time spent
waiting on rate limits), both read off the running `Reader` (`ReadView`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Protocol

from rich.console import Console
from rich.live import Live
from rich.table import Table

from source_klaviyo.sync.sink import StreamTally

if TYPE_CHECKING:
    from source_klaviyo.engine import StreamProgress
    from source_klaviyo.http import HttpStats


class ReadView(Protocol):
    """What the display reads of a running `engine.Reader`."""

    @property
    def progress(self) -> dict[str, StreamProgress]: ...
    @property
    def stats(self) -> HttpStats | None: ...


@dataclass
class StreamLine:
    stream: str
    status: str
    records: int
    pages: int | None
    rate: float
    partitions: tuple[int, int] | None
    windows: tuple[int, int] | None


def _pair(progress: StreamProgress | None, done: str, total: str) -> tuple[int, int] | None:
    total_value = getattr(progress, total, 0) or 0
    return (int(getattr(progress, done, 0) or 0), int(total_value)) if total_value else None


def snapshot(tallies: dict[str, StreamTally], engine_progress: dict[str, StreamProgress]) -> list[StreamLine]:
    lines = []
    for stream, tally in tallies.items():
        progress = engine_progress.get(stream)
        lines.append(
            StreamLine(
                stream=stream,
                status=tally.status,
                records=tally.records,
                pages=getattr(progress, "pages", None),
                rate=tally.rate,
                partitions=_pair(progress, "partitions_done", "partitions_total"),
                windows=_pair(progress, "windows_done", "windows_total"),
            )
        )
    return lines


def _fraction(pair: tuple[int, int] | None) -> str:
    return f"{pair[0]}/{pair[1]}" if pair else ""


class Progress:
    """Start with `start()`, update by `refresh()` or let rich redraw; `stop()` when the read ends."""

    def __init__(
        self,
        tallies: dict[str, StreamTally],
        read: ReadView,
        *,
        live: bool,
        stream: IO[str] | None = None,
        plain_every_seconds: float = 5.0,
    ) -> None:
        self.tallies = tallies
        self.read = read
        self.console = Console(file=stream or sys.stderr, highlight=False)
        self.is_live = live
        self.started = time.monotonic()
        self._live: Live | None = None
        self._last_plain = 0.0
        self._statuses: dict[str, str] = {}
        self.plain_every_seconds = plain_every_seconds

    def start(self) -> None:
        if self.is_live:
            self._live = Live(self, console=self.console, refresh_per_second=4, transient=False)
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None
        else:
            self.refresh(force=True)

    def log(self, level: str, message: str) -> None:
        if level.upper() in ("WARN", "WARNING", "ERROR", "FATAL"):
            self.console.print(f"[{level.lower()}] {message}", markup=False)

    def refresh(self, *, force: bool = False) -> None:
        """Plain mode: a line per stream whose status changed, and every few seconds a line per active one."""
        if self.is_live:
            return
        lines = snapshot(self.tallies, self.read.progress)
        periodic = force or time.monotonic() - self._last_plain >= self.plain_every_seconds
        for line in lines:
            changed = self._statuses.get(line.stream) != line.status
            if changed or (periodic and line.status in ("STARTED", "RUNNING")):
                self._statuses[line.stream] = line.status
                if line.status != "PENDING":
                    self.console.print(self._plain(line), markup=False, soft_wrap=True)
        if periodic:
            self._last_plain = time.monotonic()

    def _plain(self, line: StreamLine) -> str:
        parts = [f"{line.stream}: {line.status.lower()}", f"{line.records} records"]
        if line.pages is not None:
            parts.append(f"{line.pages} pages")
        if line.rate:
            parts.append(f"{line.rate:,.0f}/s")
        if line.partitions:
            parts.append(f"partitions {_fraction(line.partitions)}")
        if line.windows:
            parts.append(f"windows {_fraction(line.windows)}")
        return ", ".join(parts)

    def __rich__(self) -> Table:
        stats = self.read.stats
        waited = getattr(stats, "rate_limit_wait_seconds", 0.0) or 0.0
        elapsed = time.monotonic() - self.started
        table = Table(
            title=f"source-klaviyo sync — {elapsed:,.0f}s, {getattr(stats, 'requests', 0)} requests, "
            f"{waited:,.1f}s waiting on rate limits",
            title_justify="left",
            expand=False,
        )
        for header, justify in (
            ("stream", "left"),
            ("status", "left"),
            ("records", "right"),
            ("pages", "right"),
            ("records/s", "right"),
            ("partitions", "right"),
            ("windows", "right"),
        ):
            table.add_column(header, justify=justify)  # type: ignore[arg-type]
        for line in snapshot(self.tallies, self.read.progress):
            style = {"COMPLETE": "green", "INCOMPLETE": "red", "PENDING": "dim"}.get(line.status, "")
            table.add_row(
                line.stream, line.status.lower(), f"{line.records:,}",
                "" if line.pages is None else f"{line.pages:,}",
                f"{line.rate:,.0f}" if line.rate else "",
                _fraction(line.partitions), _fraction(line.windows), style=style,
            )
        return table
