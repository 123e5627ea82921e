"""Under every fault the emulator injects, reads end equal to the truth; a fault that outlasts the retry
budget ends a stream INCOMPLETE with a transient_error and a state that resumes to the truth."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from source_klaviyo.datetimes import utc_now
from source_klaviyo.streams import Stream
from tests.reliability.helpers import (
    HANG_SECONDS,
    OutageProxy,
    assert_duplicates_within_the_last_checkpoint_interval,
    assert_exact,
    configured,
    expected_keys,
    fast_read,
    fixed,
    keys_read,
    states_cursor,
    upper_for,
)
from tests.truth import INCREMENTAL_TRUTHS, PLAIN_INCREMENTAL, TRUTHS, changes_of

ANCHOR = datetime(2026, 6, 1, 12, tzinfo=UTC)
# The emulator generates its data up to its anchor, plus a few records dated after it.
NOW = ANCHOR + timedelta(hours=1)

# fault spec -> the emulator's name of the fault it injects
FAULTS = {
    "500=0.2": "500",
    "502=0.2": "502",
    "503=0.2": "503",
    "504=0.2": "504",
    "timeout=0.2": "timeout",  # hangs past request_timeout_seconds
    "reset=0.2": "reset",  # connection closed mid-body
    "truncate=0.2": "truncate",  # well-framed 200 whose JSON stops halfway
    "html=0.2": "html",  # a 502 HTML error page
    "429=0.2": "429",  # Retry-After: 1
    "429storm=0.2,retry_after=120": "429storm",  # a long Retry-After, waited for on simulated time
    "503=0.05,reset=0.05,truncate=0.05,timeout=0.05": "reset",
}
INCREMENTAL = list(INCREMENTAL_TRUTHS)
# Attempts per request in the matrix. Each attempt meets a fault with the spec's rate, independently (the
# draws are per request and attempt): at 0.2, 8 attempts (the client's default) all fail with odds
# 2.6e-6, over the matrix's ~6,000 requests (~200 a read) ~1.5 % a run: a flaky test. 16: 6.6e-12. Running out
# of attempts is specified below, on purpose, with faults at rate 1.0.
ATTEMPTS = 16


def mutations() -> dict[str, dict[str, int]]:
    """resource -> what changes in it between the reads, for every resource an incremental stream reads."""
    by_resource: dict[str, list[Stream]] = {}
    for truth in INCREMENTAL_TRUTHS.values():
        by_resource.setdefault(truth.resource, []).append(truth.stream)
    return {resource: changes_of(*streams) for resource, streams in by_resource.items()}


def emulator_with(faults: str, seed: int = 3) -> RunningEmulator:
    return run_emulator_in_thread(EmulatorOptions(seed=seed, scale="tiny", rate_limits=False, faults=faults,
                                                  hang_seconds=HANG_SECONDS, anchor=ANCHOR))


@pytest.fixture
def faulty(request: pytest.FixtureRequest) -> Iterator[RunningEmulator]:
    with emulator_with(request.param) as emu:
        yield emu


@pytest.mark.parametrize("faulty", list(FAULTS), indirect=True)
def test_full_and_incremental_reads_under_faults_equal_the_truth(faulty: RunningEmulator) -> None:
    kind = FAULTS[faulty.options.faults]
    full, result = fast_read(faulty.url, list(TRUTHS), sync_mode="full_refresh", max_attempts=ATTEMPTS)
    assert result.ok, [(s, e.message) for s, e in result.errors]
    for stream in TRUTHS:
        assert_exact(full, stream, expected_keys(faulty, stream), " (full refresh)")

    first, result = fast_read(faulty.url, INCREMENTAL, clock=fixed(NOW), max_attempts=ATTEMPTS)
    assert result.ok, [(s, e.message) for s, e in result.errors]
    upper = upper_for(NOW)
    for stream in INCREMENTAL_TRUTHS:
        assert_exact(first, stream, expected_keys(faulty, stream, upper=upper), " (first incremental)")
        assert states_cursor(stream, first.final_state(stream))
        assert all(
            cursor == upper for cursor in states_cursor(stream, first.final_state(stream)))

    for resource, change in mutations().items():
        faulty.mutate(resource, **change)
    later = utc_now() + timedelta(seconds=7)
    states = {stream: first.final_state(stream) for stream in INCREMENTAL_TRUTHS}
    second, result = fast_read(faulty.url, INCREMENTAL, state=states, clock=fixed(later),
                                   max_attempts=ATTEMPTS)
    assert result.ok, [(s, e.message) for s, e in result.errors]
    for stream in INCREMENTAL_TRUTHS:
        expected = expected_keys(faulty, stream, lower=upper, upper=upper_for(later))
        assert_exact(second, stream, expected, " (incremental after changes)")
    assert faulty.stats()["faults"].get(kind, 0) >= 5, "the fault under test was hardly injected"


@pytest.mark.parametrize(
    ("faults", "mentions"),
    [
        ("503=1.0", "HTTP 503"),
        ("html=1.0", "text/html"),
        ("truncate=1.0", "incomplete response body"),
        ("reset=1.0", "Klaviyo kept failing"),
        ("timeout=1.0", "timeout"),
        ("429storm=1.0,retry_after=3600", "3600 s"),  # longer than we ever wait: give up at once
    ],
)
def test_a_fault_outlasting_the_retry_budget_ends_every_stream_incomplete_never_complete(
        faults: str, mentions: str) -> None:
    streams = list(PLAIN_INCREMENTAL)
    with emulator_with(faults) as emu:
        sink, result = fast_read(emu.url, streams, clock=fixed(NOW), max_attempts=3)
    for stream in streams:
        assert result.statuses[stream] == "INCOMPLETE"
        assert sink.statuses[stream][-1] == "INCOMPLETE"
        assert "COMPLETE" not in sink.statuses[stream]
        errors = [error for name, error in sink.errors if name == stream]
        assert len(errors) == 1, errors
        assert errors[0].failure_type == "transient_error"
        assert mentions in errors[0].message, errors[0].message
        assert not sink.by_stream.get(stream)


@pytest.mark.parametrize("healthy", [1, 4, 9, 16, 25, 36, 48])
def test_an_outage_mid_read_leaves_states_that_resume_to_exactly_the_truth(healthy: int) -> None:
    """The proxy forwards `healthy` requests, then answers 503 forever. Streams cut short must say so
    (INCOMPLETE + transient_error) and their last state must resume, without faults, to the truth;
    a record is read twice only if the cut run emitted it after its stream's last state or at the
    state's own second."""
    streams = configured(PLAIN_INCREMENTAL, page_size=40)  # more pages: checkpoints inside windows
    upper = upper_for(NOW)
    with emulator_with("") as emu, OutageProxy(emu.url, healthy) as proxy:
        cut, result = fast_read(proxy.url, streams, clock=fixed(NOW), max_attempts=3)
        assert proxy.refused > 0
        states = {}
        for stream in PLAIN_INCREMENTAL:
            errors = [error for name, error in cut.errors if name == stream]
            if result.statuses[stream] == "COMPLETE":
                assert not errors
                assert_exact(
                    cut, stream, expected_keys(emu, stream, upper=upper), " (completed before the outage)"
                )
            else:
                assert result.statuses[stream] == "INCOMPLETE"
                assert [error.failure_type for error in errors] == ["transient_error"]
            if cut.final_state(stream) is not None:
                states[stream] = cut.final_state(stream)
        assert any(status == "INCOMPLETE" for status in result.statuses.values())

        resumed, result = fast_read(emu.url, streams, state=states, clock=fixed(NOW))
        assert result.ok
        for stream in PLAIN_INCREMENTAL:
            before, after = keys_read(cut, stream), keys_read(resumed, stream)
            assert set(before) | set(after) == expected_keys(emu, stream, upper=upper), stream
            assert_duplicates_within_the_last_checkpoint_interval(emu, cut, stream, set(before) & set(after))
