"""`upgrade-plan` for users arriving from 1.x, 2.0-2.12 and 2.13+: the decision for every stream.

The expected decisions are spelled out by hand; they follow from `schema_changes.json`
(3.0.0 breaking: campaigns, campaigns_detailed, email_templates, global_exclusions, lists,
lists_detailed, metrics, profiles) and from the state each version wrote.
"""

from __future__ import annotations

import argparse
import io
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from source_klaviyo import upgrade
from source_klaviyo.datetimes import parse_datetime
from source_klaviyo.redaction import masked
from source_klaviyo.streams import STREAMS, STREAMS_BY_NAME

API_KEY = "pk_do_not_print_me_0123456789"
START = "2023-01-01T00:00:00Z"
REFERENCE_2X = Path(__file__).resolve().parents[2] / "reference" / "airbyte-2.x-schemas"


def _run(tmp_path: Path, config: dict, state=None, catalog=None, *extra: str) -> tuple[int, str, str]:
    argv = ["upgrade-plan", "--config", _write(tmp_path, "config", config)]
    if state is not None:
        argv += ["--state", _write(tmp_path, "state", state)]
    if catalog is not None:
        argv += ["--catalog", _write(tmp_path, "catalog", catalog)]
    parser = argparse.ArgumentParser(prog="source-klaviyo")
    upgrade.add_upgrade_plan_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args([*argv, *extra])
    out, err = io.StringIO(), io.StringIO()
    status = args.handler(args, out, err)
    return status, out.getvalue(), err.getvalue()


def _write(tmp_path: Path, name: str, value) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(value), encoding="utf-8")
    return str(path)


def _plan(tmp_path: Path, config: dict, state=None, catalog=None, *extra: str) -> dict:
    status, out, err = _run(tmp_path, config, state, catalog, "--json", *extra)
    assert status == 0, err
    assert API_KEY not in out
    return json.loads(out)


def _decisions(plan: dict) -> dict[str, str]:
    return {item["stream"]: item["decision"] for item in plan["streams"]}


def _stream(plan: dict, name: str) -> dict:
    return next(item for item in plan["streams"] if item["stream"] == name)


def _stream_message(name: str, state: dict) -> dict:
    return {"type": "STREAM", "stream": {"stream_descriptor": {"name": name}, "stream_state": state}}


def _configured(*names_and_modes: tuple[str, str]) -> dict:
    return {"streams": [
        {"stream": {"name": name, "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]},
         "sync_mode": mode, "destination_sync_mode": "append_dedup" if mode == "incremental" else "overwrite"}
        for name, mode in names_and_modes
    ]}


# ------------------------------------------------------------------ a 1.x user


ONE_X_CONFIG = {"api_key": API_KEY, "start_date": "2017-01-25T00:00:00Z"}
# not the stream table: the state a 1.x user saved (the streams and shapes of 1.x)
ONE_X_STATE = {
    "events": {"timestamp": 1650000000},
    "global_exclusions": {"timestamp": 1650000000},
    "lists": {"created": "2021-10-10 00:00:00"},
    "profiles": {"updated": "2023-01-01T00:00:00+00:00"},
}


def test_one_x_user_resets_every_stream(tmp_path):
    plan = _plan(tmp_path, ONE_X_CONFIG, ONE_X_STATE)
    assert plan["from_version"]["source"] == "inferred"
    assert plan["from_version"]["high"] == "2.0.0"
    # not the stream table: the decision for each stream of that 1.x state
    assert _decisions(plan) == {
        "events": "reset", "global_exclusions": "reset", "lists": "reset", "profiles": "reset",
    }
    events = _stream(plan, "events")["reasons"]
    assert any(reason.startswith("1.0.0: `event_properties.items[].quantity` retyped") for reason in events)
    assert any(reason.startswith("2.0.0: Moved from Klaviyo's v1/v2 API") for reason in events)
    # profiles was already on the JSON:API in 1.x: only the 3.0.0 field changes apply.
    assert not any(r.startswith("2.0.0") for r in _stream(plan, "profiles")["reasons"])


def test_from_version_flag_overrides_the_guess(tmp_path):
    plan = _plan(tmp_path, ONE_X_CONFIG, ONE_X_STATE, None, "--from-version", "1.5.0")
    assert plan["from_version"]["source"] == "flag"
    assert plan["from_version"]["assumed"] == "1.5.0"
    events = _stream(plan, "events")["reasons"]
    assert not any(r.startswith("1.0.0") for r in events)
    assert any(r.startswith("2.0.0") for r in events)


# ------------------------------------------------------------------ a 2.0-2.12 user (Python CDK)


# not the stream table: the state a 2.0-2.12 user saved (the streams and shapes of those versions)
TWO_0_STATE = {
    "campaigns": {
        "updated_at": "2020-10-10T00:00:00+00:00",
        "archived": {"updated_at": "2021-10-10T00:00:00+00:00"},
    },
    "flows": {"updated": "2022-01-01T00:00:00+00:00", "archived": {"updated": "2021-01-01T00:00:00+00:00"}},
    "events": {"datetime": "2023-03-01T00:00:00+00:00"},
    "profiles": {"updated": "2023-03-01T00:00:00+00:00"},
    "global_exclusions": {"updated": "2023-03-01T00:00:00+00:00"},
    "metrics": {"updated": "2023-03-01T00:00:00+00:00"},
    "lists": {"updated": "2023-03-01T00:00:00+00:00"},
    "email_templates": {"updated": "2023-03-01T00:00:00+00:00"},
}


def test_two_0_user_with_archived_campaign_state(tmp_path):
    plan = _plan(tmp_path, {"api_key": API_KEY, "start_date": START}, TWO_0_STATE)
    assert (plan["from_version"]["low"], plan["from_version"]["high"]) == ("2.0.0", "2.13.0")
    assert "campaigns state has an `archived` sub-state" in plan["from_version"]["clues"]
    # not the stream table: the decision for each stream of that 2.0 state
    assert _decisions(plan) == {
        "campaigns": "reset", "email_templates": "reset", "events": "continue", "flows": "continue",
        "global_exclusions": "reset", "lists": "continue", "metrics": "continue", "profiles": "reset",
    }
    # Only declared-but-never-emitted fields changed in lists and metrics (schema_changes.json
    # `not_breaking`): nothing to reset. email_templates: 2.1.0 may still have had `company_id`.
    for stream in ("lists", "metrics"):
        assert _stream(plan, stream)["reasons"] == ["schema compatible; resumes from the migrated state"]
    assert "`attributes.company_id` removed" in " ".join(_stream(plan, "email_templates")["reasons"])
    assert _stream(plan, "events")["cursor"] == "2023-03-01T00:00:00+00:00"
    flows = _stream(plan, "flows")
    assert flows["cursor"] == "2021-01-01T00:00:00+00:00"
    assert flows["state"] == {"states": [
        {"partition": {"archived": "true"}, "cursor": {"updated": "2021-01-01T00:00:00+00:00"}},
        {"partition": {"archived": "false"}, "cursor": {"updated": "2022-01-01T00:00:00+00:00"}},
    ]}
    campaigns = " ".join(_stream(plan, "campaigns")["reasons"])
    assert "`attributes.message` removed" in campaigns
    assert "`attributes.channel` removed" in campaigns


# ------------------------------------------------------------------ a 2.13+ user (per-partition states)


TWO_13_CONFIG = {"api_key": API_KEY, "start_date": START, "num_workers": 10,
                 "disable_fetching_predictive_analytics": False}
TWO_13_STATE = [
    _stream_message("events", {"datetime": "2024-05-01T10:00:00+00:00"}),
    _stream_message("events_detailed", {"datetime": "2024-05-02T10:00:00+00:00"}),
    _stream_message("profiles", {"updated": "2024-05-01T10:00:00+00:00"}),
    _stream_message("global_exclusions", {"updated": "2024-05-01T10:00:00+00:00"}),
    _stream_message(
        "campaigns",
        {
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
        },
    ),
    _stream_message(
        "campaigns_detailed",
        {
            "states": [
                {
                    "partition": {"archived": "false", "campaign_type": "sms"},
                    "cursor": {"updated_at": "2022-10-10T00:00:00+00:00"},
                },
            ]
        },
    ),
    _stream_message(
        "flows",
        {
            "states": [
                {"partition": {"archived": "true"}, "cursor": {"updated": "2024-02-01T00:00:00+00:00"}},
                {"partition": {"archived": "false"}, "cursor": {"updated": "2024-03-01T00:00:00+00:00"}},
            ]
        },
    ),
    _stream_message("lists_detailed", {"updated": "2024-05-01T10:00:00+00:00"}),
]
TWO_13_CATALOG = _configured(
    ("events", "incremental"), ("events_detailed", "incremental"), ("profiles", "incremental"),
    ("global_exclusions", "incremental"), ("campaigns", "incremental"), ("campaigns_detailed", "incremental"),
    ("flows", "incremental"), ("lists_detailed", "incremental"), ("metrics", "full_refresh"),
    ("email_templates", "incremental"),
)


def test_two_13_user_with_partitioned_states(tmp_path):
    plan = _plan(tmp_path, TWO_13_CONFIG, TWO_13_STATE, TWO_13_CATALOG)
    assert plan["from_version"]["low"] == "2.13.0"
    # not the stream table: the decision for each stream of that 2.13 user's catalog
    assert _decisions(plan) == {
        "events": "continue",
        "events_detailed": "continue",
        "profiles": "reset",
        "global_exclusions": "reset",
        "campaigns": "reset",
        "campaigns_detailed": "reset",
        "flows": "continue",
        "lists_detailed": "continue",
        "metrics": "full_refresh",
        "email_templates": "continue",
    }
    assert _stream(plan, "events")["cursor"] == "2024-05-01T10:00:00+00:00"
    assert _stream(plan, "events")["state"] == {"datetime": "2024-05-01T10:00:00+00:00"}
    assert _stream(plan, "events")["sync_mode"] == "incremental"
    assert _stream(plan, "flows")["cursor"] == "2024-02-01T00:00:00+00:00"

    profiles = _stream(plan, "profiles")["reasons"]
    assert ("3.0.0: `attributes.subscriptions.email.marketing.suppressions` renamed to "
            "`attributes.subscriptions.email.marketing.suppression`") in profiles
    exclusions = " ".join(_stream(plan, "global_exclusions")["reasons"])
    assert "`attributes.subscriptions.email.marketing.suppressions` renamed" in exclusions
    campaigns = " ".join(_stream(plan, "campaigns")["reasons"])
    assert "`attributes.message` removed" in campaigns
    assert "`attributes.channel` removed" in campaigns
    # A 2.13 user is compared with the 2.13.1 schemas only; 2.1.0-only differences do not show.
    assert "`segments` removed" in " ".join(profiles)


# The concurrent CDK's events state of a 2.13 user (issue 14): one slice 2010 … 2026-06-01, no record cursor.
CONCURRENT_EVENTS = {"state_type": "date-range", "legacy": {}, "slices": [
    {"start": "2010-01-01T00:00:00.000000Z", "end": "2026-06-01T00:00:00.000000Z"}]}


@pytest.mark.parametrize(("start_date", "gaps"), [
    (None, []),  # 2.x's default start (2012) is inside the slice
    ("2009-03-01T00:00:00Z", ["2009-03-01T00:00:00+00:00 … 2010-01-01T00:00:00+00:00"]),
])
def test_a_concurrent_state_resumes_after_its_last_slice_and_names_the_gaps_it_reads(
    tmp_path, start_date, gaps
):
    config = {key: value for key, value in TWO_13_CONFIG.items() if key != "start_date"}
    if start_date is not None:
        config["start_date"] = start_date
    plan = _plan(tmp_path, config, [_stream_message("events", CONCURRENT_EVENTS)])
    events = _stream(plan, "events")
    assert (events["decision"], events["cursor"]) == ("continue", "2026-06-01T00:00:00+00:00")
    expected_reasons = ["schema compatible; resumes from the migrated state"]
    if gaps:
        expected_reasons.append("first reads what the saved state never read: " + ", ".join(gaps))
    assert events["reasons"] == expected_reasons
    status, table, _err = _run(tmp_path, config, [_stream_message("events", CONCURRENT_EVENTS)])
    assert status == 0
    events_row = next(line for line in table.splitlines() if line.startswith("│ events "))
    assert "2026-06-01T00:00:00+00:00" in events_row  # the "resumes from" column


def test_new_streams_are_new_and_full_refresh_streams_say_so(tmp_path):
    plan = _plan(tmp_path, TWO_13_CONFIG, None, None, "--from-version", "2.13.1")
    decisions = _decisions(plan)
    had = {path.stem for path in (REFERENCE_2X / "2.13.1").glob("*.json") if not path.stem.startswith("_")}
    assert set(decisions) == {stream.name for stream in STREAMS}
    new = {stream for stream, decision in decisions.items() if decision == "new"}
    assert new == set(decisions) - had  # every stream 2.13.1 did not have, the report streams among them
    assert decisions["events"] == "continue"
    assert decisions["flows"] == "continue"


# A 2.14+ (manifest-only) user of the two report streams 2.14 had: per-metric states, as it saved them.
_PER_METRIC = {"partition": {"metric_id": "RESQ6t"}, "cursor": {"date": "2026-05-01T00:00:00+00:00"}}
TWO_14_REPORT_STATE = {
    name: {"states": [_PER_METRIC]}
    for name in ("campaign_values_reports", "flow_series_reports")
}


def test_a_2_14_user_of_campaign_values_reports_resets_it_for_its_new_shape(tmp_path):
    plan = _plan(tmp_path, {**TWO_13_CONFIG, "metric_ids": "RESQ6t"}, TWO_14_REPORT_STATE)
    assert plan["from_version"]["low"] == "2.14.0"
    campaign = _stream(plan, "campaign_values_reports")
    assert campaign["decision"] == "reset"
    assert any(reason.startswith("3.0.0: One record per campaign message and conversion metric")
               for reason in campaign["reasons"])
    assert "the saved state is discarded by the reset" in campaign["reasons"]
    assert campaign["state"] is None  # nothing of the per-day state is carried into the new shape


def test_the_plan_counts_the_report_requests_of_the_first_sync_after_the_upgrade(tmp_path):
    """From the migrated states: a reset stream from start_date, a continuing one from its cursor; one
    request per window and conversion metric (metric_ids counted; one "Placed Order" assumed without)."""
    now = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    config = {**TWO_13_CONFIG, "metric_ids": "RESQ6t,ABC123"}
    plan = upgrade.build_plan(config, TWO_14_REPORT_STATE, now=now)
    counted = plan.to_json()["report_requests"]
    resumed, upper = datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)  # whole days
    expected = {}
    for name in TWO_14_REPORT_STATE:
        report = STREAMS_BY_NAME[name].report
        assert report is not None
        decision = _stream(plan.to_json(), name)["decision"]
        start = resumed if decision == "continue" else parse_datetime(config["start_date"])
        if report.earliest is not None:
            start = max(start, report.earliest)
        if report.history_days is not None:
            start = max(start, upper - timedelta(days=report.history_days))
        expected[name] = math.ceil((upper - start) / timedelta(days=report.days_per_request)) * 2
    assert counted["streams"] == expected
    assert counted["total"] == sum(expected.values())
    assert (counted["budget"], counted["conversion_metrics"], counted["conversion_metrics_assumed"]) == (
        225, 2, False)
    assumed = upgrade.build_plan(TWO_13_CONFIG, TWO_14_REPORT_STATE, now=now).report_requests
    assert (assumed.conversion_metrics, assumed.conversion_metrics_assumed) == (1, True)
    assert assumed.total == counted["total"] // 2
    status, table, _err = _run(tmp_path, config, TWO_14_REPORT_STATE)
    assert status == 0
    assert "Report requests of the first sync: " in table


def test_state_without_catalog_plans_only_the_streams_in_the_state(tmp_path):
    plan = _plan(tmp_path, TWO_13_CONFIG, TWO_13_STATE)
    assert sorted(_decisions(plan)) == sorted(
        message["stream"]["stream_descriptor"]["name"] for message in TWO_13_STATE
    )


def test_catalog_stream_configured_full_refresh(tmp_path):
    catalog = _configured(("events", "full_refresh"), ("flows", "incremental"))
    plan = _plan(tmp_path, TWO_13_CONFIG, TWO_13_STATE, catalog)
    assert _decisions(plan) == {"events": "full_refresh", "flows": "continue"}


# ------------------------------------------------------------------ output and errors


def test_table_output_names_decisions_and_masks_the_key(tmp_path):
    config = {**TWO_13_CONFIG, "start_date": "2023-01-01"}  # rewritten to the 3.0.0 shape
    status, out, err = _run(tmp_path, config, TWO_13_STATE, TWO_13_CATALOG)
    assert status == 0, err
    assert API_KEY not in out
    assert API_KEY not in err
    assert masked(API_KEY) in out
    assert "rewritten to the 3.0.0 shape" in out
    assert "2023-01-01T00:00:00Z" in out
    for word in ("continue", "reset", "2024-05-01T10:00:00+00:00", "suppression"):
        assert word in out


def test_json_output_is_one_document_with_masked_config(tmp_path):
    plan = _plan(tmp_path, TWO_13_CONFIG, TWO_13_STATE, TWO_13_CATALOG)
    assert plan["config"]["api_key"] == masked(API_KEY) != API_KEY
    assert plan["to_version"] == "3.0.0"
    assert set(plan["summary"]) <= {"continue", "reset", "new", "full_refresh", "dropped"}


@pytest.mark.parametrize(("state", "message"), [
    ({"events": {"datetime": "yesterday"}}, "state for stream 'events'"),
    ([{"type": "WHATEVER"}], "expected STREAM, LEGACY or GLOBAL"),
])
def test_bad_state_is_the_config_error_and_exit_1(tmp_path, state, message):
    status, out, err = _run(tmp_path, {"api_key": API_KEY}, state)
    assert status == 1
    assert out == ""
    assert message in err
    assert API_KEY not in err


def test_bad_config_is_the_config_error_and_exit_1(tmp_path):
    status, _out, err = _run(tmp_path, {"api_key": API_KEY, "num_workers": API_KEY})
    assert status == 1
    assert "num_workers" in err
    assert API_KEY not in err


def test_missing_config_file(tmp_path):
    parser = argparse.ArgumentParser()
    upgrade.add_upgrade_plan_command(parser.add_subparsers())
    args = parser.parse_args(["upgrade-plan", "--config", str(tmp_path / "absent.json")])
    err = io.StringIO()
    assert upgrade.run_upgrade_plan(args, io.StringIO(), err) == 1
    assert "no such file" in err.getvalue()


def test_bad_from_version(tmp_path):
    status, _out, err = _run(tmp_path, {"api_key": API_KEY}, None, None, "--from-version", "two")
    assert status == 1
    assert "--from-version" in err
