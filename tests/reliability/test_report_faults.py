"""The report streams under every fault the emulator injects: the records are exactly the emulator's
values for each requested day or campaign, each once, and the state reaches today, as without faults.

Report requests are POSTs against a small daily budget (225): a retried one must neither lose nor
repeat a day, and a fault must not be mistaken for an empty report.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from klaviyo_emulator.faults import FaultPlan
from klaviyo_emulator.runner import EmulatorOptions, run_emulator_in_thread
from source_klaviyo.datetimes import format_datetime, utc_now
from source_klaviyo.streams import STREAMS_BY_NAME
from tests.connector.test_reports import (
    DAY,
    REPORTS,
    expected,
    first_read_start,
    keyed,
    placed_order,
    report_of,
    today,
)
from tests.reliability.helpers import HANG_SECONDS, fast_read

FAULTS = ["500=0.3", "502=0.3", "503=0.3", "504=0.3", "timeout=0.3", "reset=0.3", "truncate=0.3", "html=0.3",
          "429=0.3"]


def seed_faulting_the_first_report_request(faults: str, stream: str) -> int:
    """An emulator seed whose fault plan (drawn per request from the seed) faults the stream's first
    report request: a read meets a fault however few requests its plan has (a trailing report asks one)."""
    for seed in itertools.count(1):
        if FaultPlan.parse(faults, seed).draw("POST", STREAMS_BY_NAME[stream].path) is not None:
            return seed
    raise AssertionError("unreachable")


@pytest.mark.parametrize("faults", FAULTS)
@pytest.mark.parametrize("stream", REPORTS)
def test_report_reads_under_faults_are_the_emulators_values_each_once(faults: str, stream: str) -> None:
    now = utc_now()
    # Two windows, the first starting mid-day (a series' next whole day is its first).
    start_date = today() - (report_of(stream).days_per_request + 10) * DAY + timedelta(hours=12)
    start = first_read_start(stream, start_date, today())
    options = EmulatorOptions(
        seed=seed_faulting_the_first_report_request(faults, stream), scale="tiny", rate_limits=False,
        faults=faults, hang_seconds=HANG_SECONDS
    )
    with run_emulator_in_thread(options) as emu:
        sink, result = fast_read(emu.url, [stream], start_date=format_datetime(start_date), clock=lambda: now)
        assert result.statuses[stream] == "COMPLETE", [(s, e.message) for s, e in result.errors]
        injected = sum(emu.stats()["faults"].values())
        records = sink.by_stream.get(stream, [])
        assert keyed(records, stream) == expected(emu, stream, placed_order(emu), start, today())
        assert sink.final_state(stream) == {"date": format_datetime(today())}
    assert injected >= 1, "the read must have met at least one fault"
