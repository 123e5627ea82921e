"""State migrations: every legacy state shape a user may bring becomes the exact 3.0.0 shape.

The fixtures in tests/fixtures/legacy/state_*.json are the specification: each has its expected
result (or error) next to it in `*.expected.json`.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from source_klaviyo import state_migrations
from source_klaviyo.config import read_json_file
from source_klaviyo.datetimes import parse_datetime
from source_klaviyo.errors import ConfigError
from source_klaviyo.state_migrations import (
    MIGRATIONS,
    migrate_state,
    migrate_stream_state,
    split_state_input,
    state_target,
)
from source_klaviyo.streams import STREAMS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
NOW = datetime(2026, 3, 1, tzinfo=UTC)
STATE_FIXTURES = sorted(p for p in FIXTURES.glob("state_*.json") if not p.name.endswith(".expected.json"))


def _expected(path: Path) -> dict[str, Any]:
    return json.loads(path.with_name(path.name.removesuffix(".json") + ".expected.json").read_text())


def test_there_is_a_fixture_for_every_documented_legacy_shape() -> None:
    names = {p.name for p in STATE_FIXTURES}
    assert len(names) >= 30
    for required in ("state_2.1.0_campaigns_archived.json", "state_2.5.0_flows_archived.json",
                     "state_2.7.0_events_detailed_per_event.json", "state_2.11_concurrent_date_range.json",
                     "state_0.x_events_epoch_timestamp.json", "state_2.14_report_streams_per_metric.json",
                     "state_2.6.0_lists_detailed_parent_partitions.json"):
        assert required in names


@pytest.mark.parametrize("path", STATE_FIXTURES, ids=lambda p: p.name)
def test_fixture_migrates_to_its_expected_result(path: Path) -> None:
    expected = _expected(path)
    start_date = parse_datetime(expected["start_date"])
    if "error" in expected:
        with pytest.raises(ConfigError) as caught:
            migrate_state(read_json_file(str(path), "state"), start_date, now=NOW)
        assert expected["error"] in caught.value.message
        return
    result = migrate_state(read_json_file(str(path), "state"), start_date, now=NOW)
    assert result.streams == expected["streams"]
    assert list(result.warnings) == expected["warnings"]


@pytest.mark.parametrize(
    "path", [p for p in STATE_FIXTURES if "error" not in _expected(p)], ids=lambda p: p.name
)
def test_a_migrated_state_migrates_to_itself(path: Path) -> None:
    """What 3.0.0 writes must read back unchanged: the migrations are idempotent."""
    start_date = parse_datetime(_expected(path)["start_date"])
    once = migrate_state(read_json_file(str(path), "state"), start_date, now=NOW).streams
    as_messages = [
        {"type": "STREAM", "stream": {"stream_descriptor": {"name": name}, "stream_state": state}}
        for name, state in once.items()
    ]
    twice = migrate_state(as_messages, start_date, now=NOW)
    assert twice.streams == once
    assert twice.rewritten == ()


def test_campaigns_of_2_1_take_archived_and_top_level_cursors_and_no_sms_partition() -> None:
    state = {
        "updated_at": "2020-10-10T00:00:00+00:00",
        "archived": {"updated_at": "2021-10-10T00:00:00+00:00"},
    }
    migrated = migrate_stream_state("campaigns", state, None)
    assert migrated == {
        "states": [
            {
                "partition": {"archived": "true", "campaign_type": "email"},
                "cursor": {"updated_at": "2021-10-10T00:00:00+00:00"},
            },
            {
                "partition": {"archived": "false", "campaign_type": "email"},
                "cursor": {"updated_at": "2020-10-10T00:00:00+00:00"},
            },
        ]
    }


def test_a_missing_legacy_campaign_cursor_starts_at_start_date_or_2012() -> None:
    without_start = migrate_stream_state("campaigns", {"updated_at": "2020-10-10T00:00:00Z"}, None)
    assert without_start["states"][0]["cursor"] == {"updated_at": "2012-01-01T00:00:00+00:00"}
    with_start = migrate_stream_state("campaigns", {"updated_at": "2020-10-10T00:00:00Z"},
                                      datetime(2019, 5, 1, tzinfo=UTC))
    assert with_start["states"][0]["cursor"] == {"updated_at": "2019-05-01T00:00:00+00:00"}


class TestConcurrentState:
    """The concurrent CDK's slices, read back as the CDK that wrote them would (airbyte-cdk 6.x,
    `ConcurrentCursor.stream_slices`): every slice is read, the gaps between them and before the first
    (from start_date) are not, and the next read goes on from the last slice's end."""

    @staticmethod
    def _migrate(*slices: tuple[str, str, str | None], start_date: datetime | None = None) -> dict | None:
        state = {"state_type": "date-range", "slices": [
            {"start": s, "end": e, **({"most_recent_cursor_value": m} if m else {})} for s, e, m in slices
        ]}
        return migrate_stream_state("profiles", state, start_date)

    JAN = datetime(2024, 1, 1, tzinfo=UTC)

    def test_one_slice_resumes_at_its_end_with_or_without_a_most_recent_cursor(self) -> None:
        expected = {"updated": "2024-06-01T00:00:00+00:00"}
        without = ("2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z", None)
        assert self._migrate(without, start_date=self.JAN) == expected
        assert self._migrate(("2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z", "2024-02-03T04:05:06Z"),
                             start_date=self.JAN) == expected

    def test_slices_that_touch_or_are_one_second_apart_are_one_run(self) -> None:
        assert self._migrate(
            ("2024-01-01T00:00:00Z", "2024-01-10T00:00:00Z", "2024-01-09T00:00:00Z"),
            ("2024-01-10T00:00:01Z", "2024-01-20T00:00:00Z", None),
            ("2024-01-20T00:00:00Z", "2024-01-30T00:00:00Z", None),
            start_date=self.JAN,
        ) == {"updated": "2024-01-30T00:00:00+00:00"}

    def test_a_gap_between_slices_is_read_and_the_read_goes_on_after_the_last(self) -> None:
        assert self._migrate(
            ("2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z", "2024-02-28T00:00:00Z"),
            ("2024-01-01T00:00:00Z", "2024-01-10T00:00:00Z", "2024-01-09T00:00:00Z"),
            start_date=self.JAN,
        ) == {"updated": "2024-03-01T00:00:00+00:00",
              "gaps": [{"start": "2024-01-10T00:00:00+00:00", "end": "2024-02-01T00:00:00+00:00"}]}

    def test_a_start_date_before_the_first_slice_is_a_gap_and_without_one_2012_is(self) -> None:
        one = ("2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z", None)
        assert self._migrate(one, start_date=datetime(2023, 7, 1, tzinfo=UTC)) == {
            "updated": "2024-06-01T00:00:00+00:00",
            "gaps": [{"start": "2023-07-01T00:00:00+00:00", "end": "2024-01-01T00:00:00+00:00"}]}
        assert self._migrate(one) == {
            "updated": "2024-06-01T00:00:00+00:00",
            "gaps": [{"start": "2012-01-01T00:00:00+00:00", "end": "2024-01-01T00:00:00+00:00"}]}

    def test_a_start_date_inside_or_after_the_first_slice_adds_nothing(self) -> None:
        one = ("2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z", None)
        inside = datetime(2024, 3, 1, tzinfo=UTC)
        assert self._migrate(one, start_date=inside) == {"updated": "2024-06-01T00:00:00+00:00"}

    def test_a_slice_that_ends_before_it_starts_is_a_bad_state(self) -> None:
        with pytest.raises(ConfigError, match="ends before it starts"):
            self._migrate(("2024-06-01T00:00:00Z", "2024-01-01T00:00:00Z", None))


class TestGaps:
    """A 3.0.0 state may name gaps below its cursor; they are validated and kept, never dropped."""

    def test_gaps_are_normalised_sorted_and_merged(self) -> None:
        state = {"datetime": "2024-06-01T00:00:00Z", "gaps": [
            {"start": "2024-03-01 00:00:00+00:00", "end": "2024-04-01T00:00:00Z"},
            {"start": "2024-01-01T00:00:00Z", "end": "2024-02-01T00:00:00Z"},
            {"start": "2024-03-15T00:00:00Z", "end": "2024-05-01T00:00:00Z"},
        ]}
        assert migrate_stream_state("events", state, None) == {
            "datetime": "2024-06-01T00:00:00+00:00",
            "gaps": [{"start": "2024-01-01T00:00:00+00:00", "end": "2024-02-01T00:00:00+00:00"},
                     {"start": "2024-03-01T00:00:00+00:00", "end": "2024-05-01T00:00:00+00:00"}],
        }

    @pytest.mark.parametrize(("gaps", "message"), [
        ("2024", "'gaps' must be a list"),
        ([{"start": "2024-01-01T00:00:00Z"}], "a gap must be"),
        ([{"start": "2024-02-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"}], "must end after it starts"),
        ([{"start": "soon", "end": "2024-01-01T00:00:00Z"}], "'gaps.start' has value 'soon'"),
    ])
    def test_a_bad_gap_is_a_config_error_naming_the_stream(self, gaps: object, message: str) -> None:
        with pytest.raises(ConfigError, match=re.escape(message)) as caught:
            migrate_stream_state("events", {"datetime": "2024-06-01T00:00:00Z", "gaps": gaps}, None)
        assert caught.value.message.startswith("state for stream 'events'")


def test_per_partition_states_take_the_earliest_cursor_not_the_earliest_string() -> None:
    # As strings, "2024-01-01 23:00:00+00:00" < "2024-01-01T10:00:00+00:00"; as instants it is later.
    state = {"states": [
        {"partition": {"event_id": "1"}, "cursor": {"datetime": "2024-01-01 23:00:00+00:00"}},
        {"partition": {"event_id": "2"}, "cursor": {"datetime": "2024-01-01T10:00:00+00:00"}},
    ]}
    assert migrate_stream_state("events_detailed", state, None) == {"datetime": "2024-01-01T10:00:00+00:00"}


def test_report_state_subtracts_the_cdk6_lookback_from_the_global_cursor() -> None:
    state = {
        "use_global_cursor": True,
        "lookback_window": 86400,
        "state": {"date": "2026-02-10T00:00:00+00:00"},
    }
    assert migrate_stream_state("flow_series_reports", state, None) == {"date": "2026-02-09T00:00:00+00:00"}


@pytest.mark.parametrize(
    ("stream", "state", "message"),
    [
        ("events", {"datetime": "yesterday"},
         "state for stream 'events': cursor 'datetime' has value 'yesterday', which is not a datetime"),
        ("profiles", {"updated": "2024-02-30T00:00:00Z"}, "'2024-02-30T00:00:00Z', which is not a datetime"),
        ("profiles", {"updated": True}, "cursor 'updated' has value True"),
        ("profiles", {"updated": 1e300}, "cursor 'updated' has value 1e+300"),
        ("flows", {"archived": "yes"}, "state for stream 'flows': 'archived' must be an object"),
        ("flows", {"states": [{"partition": {}, "cursor": {"updated": "2024-01-01"}}]},
         "partition 'archived' has value None"),
        ("campaigns", {"states": "all"}, "'states' must be a list"),
        ("events_detailed", {"states": [{"partition": {}, "cursor": {"updated": "2024-01-01"}}]},
         "a partition's cursor has no 'datetime'"),
        ("flow_series_reports", {"state": {"date": "2026-01-01"}, "lookback_window": "1h"},
         "'lookback_window' must be a number of seconds"),
        ("events", ["2024-01-01"], "the state must be a JSON object, got a list"),
    ],
)
def test_a_state_that_cannot_be_understood_is_a_config_error_naming_stream_and_value(
    stream: str, state: Any, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        migrate_stream_state(stream, state, None)
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([{"type": "TRACE"}], "state message #1 has type 'TRACE'; expected STREAM, LEGACY or GLOBAL"),
        ([{"foo": 1}], "state message #1 has no 'type'"),
        ([42], "state message #1 must be a JSON object, got a number"),
        ([{"type": "STREAM", "stream": "events"}], "must have a 'stream' object"),
        ([{"type": "GLOBAL", "global": {"stream_states": {}}}], "'stream_states' must be a list"),
        ({"type": "LEGACY", "data": []}, "must be an object keyed by stream name, got a list"),
        (3.5, "the state must be a JSON list of Airbyte state messages"),
        ({"events": "2024-01-01"}, "the state object maps 'events' to a string"),
    ],
)
def test_unreadable_state_input_is_a_config_error_saying_what_is_wrong(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        split_state_input(raw)
    assert message in caught.value.message


def test_a_later_message_for_a_stream_replaces_an_earlier_one() -> None:
    def message(value: str) -> dict:
        return {
            "type": "STREAM",
            "stream": {"stream_descriptor": {"name": "events"}, "stream_state": {"datetime": value}},
        }

    assert split_state_input([message("2024-01-01"), message("2024-02-01")]) == {
        "events": {"datetime": "2024-02-01"}
    }


def test_an_unknown_stream_is_dropped_with_a_logged_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="source_klaviyo.state_migrations"):
        assert migrate_stream_state("bad_events", {"datetime": "2024-01-01"}, None) is None
    assert "'bad_events'" in caplog.text


def test_rewritten_names_the_streams_whose_state_changed() -> None:
    raw = {
        "events": {"datetime": "2024-01-01T00:00:00+00:00"},
        "profiles": {"updated": "2024-01-01T00:00:00Z"},
    }
    assert migrate_state(raw, None, now=NOW).rewritten == ("profiles",)


# -- the registry ------------------------------------------------------------------------------


def test_every_incremental_stream_of_the_table_has_a_state_shape() -> None:
    for stream in STREAMS:
        target = state_target(stream.name)
        if stream.incremental is None:
            assert target is None
        else:
            assert target is not None
            assert target.cursor == stream.incremental.cursor
            assert [key for key, _ in target.axes] == [axis.key for axis in stream.partitions]


def test_every_registered_migration_is_for_a_known_stream() -> None:
    for stream in MIGRATIONS:
        assert state_target(stream) is not None, stream


# Which stream's shape each migration's docstring example is written for.
_DOCSTRING_STREAMS = {
    "concurrent_slices_to_cursor": "profiles",
    "epoch_timestamp_to_cursor": "events",
    "created_to_cursor": "lists",
    "per_partition_to_min_cursor": "events_detailed",
    "cdk6_global_cursor_to_partitions": "flows",
    "archived_substate_to_partitions": "campaigns",
}
_MIGRATIONS_IN_REGISTRY = sorted({m.__name__: m for ms in MIGRATIONS.values() for m in ms}.items())


def _docstring_examples(function: Any) -> list[tuple[Any, Any]]:
    """The (before, after) JSON pairs of a docstring; a trailing `(...)` note on a line is dropped."""
    text = inspect.getdoc(function) or ""
    blocks = re.findall(r"before:(.*?)after:(.*?)(?=before:|\Z)", text, flags=re.S)
    strip_note = re.compile(r"\)\s*\(.*\)\s*$|}\s*\(.*\)\s*$", flags=re.M)

    def load(block: str) -> Any:
        return json.loads(strip_note.sub(lambda m: m.group(0)[0], block.strip()))

    return [(load(before), load(after)) for before, after in blocks]


@pytest.mark.parametrize(
    ("name", "function"), _MIGRATIONS_IN_REGISTRY, ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_migration_documents_an_example_that_holds(name: str, function: Any) -> None:
    examples = _docstring_examples(function)
    assert examples, f"{name} has no before/after example in its docstring"
    stream = _DOCSTRING_STREAMS[name]
    for before, after in examples:
        if "date" in json.dumps(before) and "metric_id" in json.dumps(before):
            stream = "flow_series_reports"
        assert migrate_stream_state(stream, before, None) == after


def test_the_migrations_document_lists_every_migration() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "state-migrations.md").read_text()
    for name, _ in _MIGRATIONS_IN_REGISTRY:
        assert f"`{name}`" in doc


# -- cursor formats (property-based) -----------------------------------------------------------

_OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
_INSTANTS = st.builds(
    lambda naive, zone: naive.replace(tzinfo=UTC).astimezone(zone),
    st.datetimes(min_value=datetime(1975, 1, 1), max_value=datetime(2200, 1, 1)),
    _OFFSETS,
)
# Every way a 0.x-2.x connector (or its tests) wrote a cursor.
_LEGACY_FORMATS = {
    "isoformat (+00:00, pendulum)": lambda d: d.isoformat(),
    "%Y-%m-%dT%H:%M:%S%z": lambda d: d.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "%Y-%m-%dT%H:%M:%S.%f%z": lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%f%z"),
    "%Y-%m-%d %H:%M:%S%z": lambda d: d.strftime("%Y-%m-%d %H:%M:%S%z"),
    "Z": lambda d: d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    "no zone (UTC)": lambda d: d.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
    "epoch seconds (int)": lambda d: int(d.timestamp()),
    "epoch seconds (float)": lambda d: d.timestamp(),
    "epoch seconds (digit string)": lambda d: str(int(d.timestamp())),
}


@given(instant=_INSTANTS, form=st.sampled_from(sorted(_LEGACY_FORMATS)))
def test_any_instant_in_any_legacy_format_migrates_to_the_same_second(instant: datetime, form: str) -> None:
    written = _LEGACY_FORMATS[form](instant)
    migrated = migrate_stream_state("events", {"datetime": written}, None)
    assert migrated is not None
    expected = instant.replace(microsecond=0) if "int" in form or "digit" in form else instant
    # 3.0.0 cursors have second precision, rounded down: re-reading part of a second is harmless.
    assert parse_datetime(migrated["datetime"]) == expected.astimezone(UTC).replace(microsecond=0)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", migrated["datetime"])


@given(instants=st.lists(_INSTANTS, min_size=1, max_size=8))
def test_a_per_partition_state_never_resumes_after_any_partition(instants: list[datetime]) -> None:
    state = {
        "states": [
            {"partition": {"metric_id": f"M{i}"}, "cursor": {"date": d.isoformat()}}
            for i, d in enumerate(instants)
        ]
    }
    migrated = migrate_stream_state("campaign_values_reports", state, None)
    assert migrated is not None
    assert parse_datetime(migrated["date"]) == min(instants).replace(microsecond=0)


@given(instants=st.lists(_INSTANTS, min_size=1, max_size=6))
def test_a_legacy_campaign_partition_keeps_its_own_cursor(instants: list[datetime]) -> None:
    top, archived = instants[0], instants[-1]
    state = {"updated_at": top.isoformat(), "archived": {"updated_at": archived.isoformat()}}
    migrated = migrate_stream_state("campaigns", state, None)
    assert migrated is not None
    by_archived = {
        entry["partition"]["archived"]: entry["cursor"]["updated_at"] for entry in migrated["states"]
    }
    assert parse_datetime(by_archived["false"]) == top.replace(microsecond=0)
    assert parse_datetime(by_archived["true"]) == archived.replace(microsecond=0)


def test_module_docstring_names_the_public_functions() -> None:
    doc = state_migrations.__doc__ or ""
    for name in ("split_state_input", "migrate_stream_state", "migrate_state"):
        assert name in doc
