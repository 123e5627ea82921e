"""The CLI as the platform runs it: bad inputs give one config_error, the key never shows."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from klaviyo_emulator.runner import EmulatorOptions, run_emulator_in_thread
from source_klaviyo.catalog import configured_catalog
from source_klaviyo.scopes import read_scopes, stream_scopes
from source_klaviyo.streams import STREAMS_BY_NAME
from tests.connector.helpers import API_KEY, config_for, read_in_process, run_cli
from tests.truth import TRUTHS

SECRET = "pk_secret_never_printed_0123456789"


def assert_one_config_error(run, *, secret: str = SECRET, mentions: str = ""):
    assert run.returncode != 0
    errors = run.traces("ERROR")
    assert len(errors) == 1, run.stdout
    assert errors[0]["error"]["failure_type"] == "config_error"
    assert mentions in errors[0]["error"]["message"]
    assert not run.of_type("RECORD")
    assert secret not in run.stdout + run.stderr


@pytest.mark.parametrize(
    ("config", "mentions"),
    [
        ('{"api_key": "' + SECRET + '", "start_date": "yesterday"}', "start_date"),
        ('{"api_key": "' + SECRET + '", "num_workers": "many"}', "num_workers"),
        ('{"api_key": "' + SECRET + '", ', "config"),
        ('{"start_date": "2024-01-01T00:00:00Z"}', "api_key"),
    ],
)
def test_bad_config_gives_one_config_error(tmp_path, config, mentions):
    run = run_cli("read", "--config", "{config}", "--catalog", "{catalog}", tmp_path=tmp_path,
                  files={"config": config, "catalog": configured_catalog(["metrics"])})
    assert_one_config_error(run, mentions=mentions)


@pytest.mark.parametrize(
    ("catalog", "mentions"),
    [
        ({"streams": [{"stream": {"name": "nope"}, "sync_mode": "full_refresh"}]}, "nope"),
        ({"streams": [{"stream": {"name": "tags"}, "sync_mode": "incremental"}]}, "tags"),
        ({"streams": [{"stream": {"name": "tags"}, "sync_mode": "sideways"}]}, "sideways"),
        ({"stream": []}, "streams"),
    ],
)
def test_bad_catalog_gives_one_config_error(tmp_path, catalog, mentions):
    run = run_cli("read", "--config", "{config}", "--catalog", "{catalog}", tmp_path=tmp_path,
                  files={"config": config_for("http://127.0.0.1:9", api_key=SECRET), "catalog": catalog})
    assert_one_config_error(run, mentions=mentions)


def test_bad_state_gives_one_config_error(tmp_path):
    run = run_cli("read", "--config", "{config}", "--catalog", "{catalog}", "--state", "{state}",
                  tmp_path=tmp_path,
                  files={"config": config_for("http://127.0.0.1:9", api_key=SECRET),
                         "catalog": configured_catalog(["events"]),
                         "state": [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "events"},
                                                                  "stream_state": {"datetime": "soon"}}}]})
    assert_one_config_error(run)


def test_spec_starts_fast_and_imports_no_duckdb():
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "source_klaviyo", "spec"],
                          capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    assert elapsed < 3.0  # generous for a loaded CI box; ≈0.15 s on an idle dev machine
    assert "duckdb" not in done.stderr
    assert "rich" not in done.stderr.split()
    assert '"type":"SPEC"' in done.stdout


def test_check_succeeds_and_fails_clearly(emulator, tmp_path):
    ok = run_cli(
        "check", "--config", "{config}", tmp_path=tmp_path, files={"config": config_for(emulator.url)}
    )
    assert ok.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"
    bad = run_cli("check", "--config", "{config}", tmp_path=tmp_path,
                  files={"config": config_for(emulator.url, api_key=SECRET)})
    status = bad.of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED"
    assert "401" in status["message"]
    assert SECRET not in bad.stdout + bad.stderr


def test_a_migrated_config_is_announced_once(emulator, tmp_path):
    run = run_cli("discover", "--config", "{config}", tmp_path=tmp_path,
                  files={"config": config_for(emulator.url, start_date="2024-01-01")})
    controls = run.of_type("CONTROL")
    assert len(controls) == 1
    assert controls[0]["control"]["connectorConfig"]["config"]["start_date"] == "2024-01-01T00:00:00Z"
    assert run.of_type("CATALOG")


# Scopes of nested paths (memberships need both), of a family (a key without `catalogs:read`: the
# catalog streams end with the error naming it, the rest COMPLETE); the emulator does not check the
# scopes of includes.
@pytest.mark.parametrize("missing", ["profiles:read", "lists:read", "catalogs:read"])
def test_a_key_without_one_scope_fails_only_the_streams_that_need_it(missing):
    names = list(TRUTHS)
    needing = sorted(name for name in names if missing in stream_scopes(STREAMS_BY_NAME[name]))
    scopes = frozenset(read_scopes()) - {missing}
    options = EmulatorOptions(seed=3, scale="tiny", rate_limits=False, key_scopes={"pk_lacking": scopes})
    with run_emulator_in_thread(options) as emu:
        sink, result = read_in_process(emu.url, names, api_key="pk_lacking")
    assert needing
    assert result.statuses == {name: "INCOMPLETE" if name in needing else "COMPLETE" for name in names}
    assert sorted(stream for stream, _ in sink.errors) == needing
    assert {error.failure_type for _, error in sink.errors} == {"config_error"}
    assert all(missing in error.message for _, error in sink.errors)
    assert not result.ok


def test_a_scope_less_read_exits_non_zero_via_the_cli(tmp_path):
    scopes = frozenset({"metrics:read"})
    options = EmulatorOptions(seed=3, scale="tiny", rate_limits=False, key_scopes={"pk_metricsonly": scopes})
    with run_emulator_in_thread(options) as emu:
        run = run_cli("read", "--config", "{config}", "--catalog", "{catalog}", tmp_path=tmp_path,
                      files={"config": config_for(emu.url, api_key="pk_metricsonly"),
                             "catalog": configured_catalog(["metrics", "profiles"])})
    assert run.returncode != 0
    statuses = {(t["stream_status"]["stream_descriptor"]["name"], t["stream_status"]["status"])
                for t in run.traces("STREAM_STATUS")}
    assert ("metrics", "COMPLETE") in statuses
    assert ("profiles", "INCOMPLETE") in statuses
    assert "pk_metricsonly" not in run.stdout + run.stderr


def test_an_unknown_key_fails_the_whole_read_once(emulator, tmp_path):
    run = run_cli("read", "--config", "{config}", "--catalog", "{catalog}", tmp_path=tmp_path,
                  files={"config": config_for(emulator.url, api_key=SECRET),
                         "catalog": configured_catalog(["metrics", "lists"])})
    assert_one_config_error(run)
    assert API_KEY not in run.stdout
