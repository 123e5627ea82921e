"""Config and spec: every legacy config shape is accepted; errors name the field, never the key."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from airbyte_protocol.models import ConnectorSpecification
from hypothesis import given
from hypothesis import strategies as st

from source_klaviyo.config import Config, parse_config, read_json_file
from source_klaviyo.datetimes import format_datetime
from source_klaviyo.errors import ConfigError
from source_klaviyo.redaction import masked
from source_klaviyo.spec import connection_specification

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "legacy"
OLD_SPECS = REPO_ROOT / "reference" / "airbyte-2.x-schemas"
NOW = datetime(2026, 3, 1, tzinfo=UTC)
KEY = "pk_fixture_0123456789abcdef"
CONFIG_FIXTURES = sorted(p for p in FIXTURES.glob("config_*.json") if not p.name.endswith(".expected.json"))


def _expected(path: Path) -> dict[str, Any]:
    return json.loads(path.with_name(path.name.removesuffix(".json") + ".expected.json").read_text())


def _as_json(config: Config) -> dict[str, Any]:
    values = dataclasses.asdict(config)
    values["start_date"] = format_datetime(config.start_date) if config.start_date else None
    values["metric_ids"] = list(config.metric_ids)
    return values


def _spec_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(connection_specification()["connectionSpecification"])


@pytest.mark.parametrize("path", CONFIG_FIXTURES, ids=lambda p: p.name)
def test_fixture_parses_to_its_expected_config(path: Path) -> None:
    expected = _expected(path)
    if "error" in expected:
        with pytest.raises(ConfigError) as caught:
            parse_config(read_json_file(str(path), "config"), now=NOW)
        assert expected["error"] in caught.value.message
        assert KEY not in caught.value.message
        assert KEY not in (caught.value.internal_message or "")
        return
    config, migrated = parse_config(read_json_file(str(path), "config"), now=NOW)
    assert _as_json(config) == expected["config"]
    assert migrated == expected["migrated"]


@pytest.mark.parametrize(
    "path", [p for p in CONFIG_FIXTURES if "error" not in _expected(p)], ids=lambda p: p.name
)
def test_a_config_is_rewritten_exactly_when_the_spec_rejects_it(path: Path) -> None:
    """... or when it holds 2.x's default `num_workers: 10`, which is dropped (read as "no cap")."""
    raw = read_json_file(str(path), "config")
    config, migrated = parse_config(raw, now=NOW)
    legacy_default = raw.get("num_workers") == 10
    assert (migrated is None) == (_spec_validator().is_valid(raw) and not legacy_default)
    if legacy_default:
        assert migrated is not None
        assert "num_workers" not in migrated
        assert config.num_workers is None
    if migrated is not None:
        _spec_validator().validate(migrated)
        assert migrated["api_key"] == raw["api_key"]
        assert parse_config(migrated, now=NOW) == (config, None)


@pytest.mark.parametrize(
    ("start_date", "expected"),
    [
        ("2017-01-25T00:00:00Z", "2017-01-25T00:00:00+00:00"),
        ("2017-01-25", "2017-01-25T00:00:00+00:00"),
        ("2017-01-25T01:00:00+01:00", "2017-01-25T00:00:00+00:00"),
        ("2017-01-25T00:00:00.999Z", "2017-01-25T00:00:00+00:00"),
        ("2017-01-25 00:00:00", "2017-01-25T00:00:00+00:00"),
        ("2017-01-25T00:00", "2017-01-25T00:00:00+00:00"),
        ("2017-01-24T19:00:00-0500", "2017-01-25T00:00:00+00:00"),
    ],
)
def test_start_date_accepts_iso_dates_and_datetimes(start_date: str, expected: str) -> None:
    config, _ = parse_config({"api_key": KEY, "start_date": start_date}, now=NOW)
    assert config.start_date is not None
    assert format_datetime(config.start_date) == expected


@pytest.mark.parametrize("bad", ["2017-1-25", "20170125", "2017-W04", "2017-01-25T25:00:00Z", "2023-02-29",
                                 "tomorrow", "2017-01-25T00:00:00+25:00"])
def test_start_date_rejects_anything_else_naming_value_and_format(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"api_key": KEY, "start_date": bad}, now=NOW)
    assert f"start_date {bad!r}" in caught.value.message
    assert "2017-01-25T00:00:00Z" in caught.value.message


def test_start_date_up_to_a_day_ahead_is_accepted_further_is_not() -> None:
    tomorrow = (NOW + timedelta(hours=23)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert parse_config({"api_key": KEY, "start_date": tomorrow}, now=NOW)[0].start_date is not None
    later = (NOW + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(ConfigError, match=r"start_date .* is in the future"):
        parse_config({"api_key": KEY, "start_date": later}, now=NOW)


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("FALSE", False), (" True ", True), (False, False)]
)
def test_booleans_may_be_strings(raw: Any, expected: bool) -> None:
    config, _ = parse_config({"api_key": KEY, "disable_fetching_predictive_analytics": raw}, now=NOW)
    assert config.disable_fetching_predictive_analytics is expected


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://a.klaviyo.com", "https://a.klaviyo.com"),
        ("https://a.klaviyo.com/", "https://a.klaviyo.com"),
        ("https://eu.example.com:8443/", "https://eu.example.com:8443"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://127.0.0.1:1/", "http://127.0.0.1:1"),
        ("http://127.9.9.9", "http://127.9.9.9"),
        ("http://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_base_url_is_https_or_loopback_http_without_trailing_slash(base_url: str, expected: str) -> None:
    assert parse_config({"api_key": KEY, "base_url": base_url}, now=NOW)[0].base_url == expected


@pytest.mark.parametrize(
    "base_url",
    ["http://a.klaviyo.com", "http://10.0.0.1:8080", "http://localhost.evil.com", "https://a.klaviyo.com/api/",
     "https://a.klaviyo.com#x", "https://user:pw@a.klaviyo.com", "a.klaviyo.com", "https://", "https://h:99999"],
)
def test_base_url_rejects_plain_http_to_remote_hosts_paths_and_credentials(base_url: str) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        parse_config({"api_key": KEY, "base_url": base_url}, now=NOW)


@pytest.mark.parametrize(("raw", "expected"), [(1, 1), (50, 50), ("7", 7), (12.0, 12)])
def test_num_workers_is_a_whole_number_from_1_to_50(raw: Any, expected: int) -> None:
    assert parse_config({"api_key": KEY, "num_workers": raw}, now=NOW)[0].num_workers == expected


@pytest.mark.parametrize("raw", ["\u0667", "\uff11\uff12", "7.5", True, "", "seven"])
def test_num_workers_refuses_what_is_not_a_plain_whole_number(raw: Any) -> None:
    with pytest.raises(ConfigError, match="num_workers must be a whole number"):
        parse_config({"api_key": KEY, "num_workers": raw}, now=NOW)


@pytest.mark.parametrize(("raw", "expected"), [("A, B,,A", ("A", "B")), (["x", " y "], ("x", "y")), ("", ())])
def test_metric_ids_become_a_tuple_without_blanks_or_duplicates(raw: Any, expected: tuple[str, ...]) -> None:
    assert parse_config({"api_key": KEY, "metric_ids": raw}, now=NOW)[0].metric_ids == expected


@pytest.mark.parametrize(("raw", "expected"), [(0, 0), (45, 45), ("7", 7), (365, 365)])
def test_campaign_lookback_days_is_a_whole_number_of_days_up_to_a_year(raw: Any, expected: int) -> None:
    config, _ = parse_config({"api_key": KEY, "campaign_lookback_days": raw}, now=NOW)
    assert config.campaign_lookback_days == expected


@pytest.mark.parametrize("raw", [-1, 366, 1.5, "a month", True])
def test_campaign_lookback_days_out_of_range_is_a_config_error_naming_it(raw: Any) -> None:
    with pytest.raises(ConfigError, match="campaign_lookback_days"):
        parse_config({"api_key": KEY, "campaign_lookback_days": raw}, now=NOW)


def test_defaults() -> None:
    config, migrated = parse_config({"api_key": f"  {KEY}\n"}, now=NOW)
    assert config == Config(api_key=KEY)
    assert (config.start_date, config.num_workers, config.base_url) == (None, None, "https://a.klaviyo.com")
    assert config.effective_start_date == datetime(2012, 1, 1, tzinfo=UTC)
    assert migrated is None


# -- the key never leaks ------------------------------------------------------------------------

_KEYS = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=40).map(
    lambda s: "pk_" + s
)
_BAD_FIELDS = st.sampled_from(
    ["start_date", "num_workers", "base_url", "disable_fetching_predictive_analytics", "metric_ids",
     "lookback_window", "request_timeout_seconds", "campaign_lookback_days"]
)


@given(key=_KEYS, field=_BAD_FIELDS, shape=st.sampled_from(["key", "key in url", "list", "object"]))
def test_no_config_error_contains_the_api_key(key: str, field: str, shape: str) -> None:
    value: Any = {
        "key": key,
        "key in url": f"http://{key}.example.com/{key}",
        "list": [key],
        "object": {"k": key},
    }[shape]
    try:
        parse_config({"api_key": key, field: value}, now=NOW)
    except ConfigError as error:  # either outcome is valid here: only the message is checked
        assert key not in str(error)  # noqa: PT017
        assert key not in (error.internal_message or "")  # noqa: PT017
    else:  # the key's characters also make a valid metric id; every other field rejects it
        assert field == "metric_ids"


@given(key=_KEYS)
def test_repr_of_config_masks_the_api_key(key: str) -> None:
    config, _ = parse_config({"api_key": key}, now=NOW)
    assert key not in repr(config)
    assert key not in str(config)
    assert f"api_key={masked(key)!r}" in repr(config)


def test_api_key_errors_say_what_is_wrong_without_a_value() -> None:
    for raw, message in [
        ({}, "api_key is missing"),
        ({"api_key": None}, "api_key is missing"),
        ({"api_key": ""}, "api_key is empty"),
        ({"api_key": ["pk_x"]}, "api_key must be a string"),
    ]:
        with pytest.raises(ConfigError, match=message) as caught:
            parse_config(raw, now=NOW)
        assert "pk_x" not in caught.value.message


# -- reading the file ---------------------------------------------------------------------------


def test_read_json_file_reports_position_not_content(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"api_key": "pk_secret_value"\n "x": 1}')
    with pytest.raises(ConfigError) as caught:
        read_json_file(str(path), "config")
    assert caught.value.message.startswith(f"could not read the config file {path}: not valid JSON at line 2")
    assert "pk_secret_value" not in caught.value.message


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "it is a directory"),
        (lambda p: p.write_bytes(b'{"a": "\xff"}'), "not UTF-8"),
    ],
)
def test_read_json_file_names_the_file_and_the_problem(tmp_path: Path, setup: Any, message: str) -> None:
    path = tmp_path / "state.json"
    setup(path)
    with pytest.raises(ConfigError, match=f"could not read the state file .*{message}"):
        read_json_file(str(path), "state")


def test_read_json_file_returns_none_for_an_empty_file_and_skips_a_bom(tmp_path: Path) -> None:
    empty, bom = tmp_path / "empty.json", tmp_path / "bom.json"
    empty.write_text("  \n")
    bom.write_bytes(b'\xef\xbb\xbf{"api_key": "pk_x"}')
    assert read_json_file(str(empty), "state") is None
    assert read_json_file(str(bom), "config") == {"api_key": "pk_x"}


# -- the spec -----------------------------------------------------------------------------------


def test_spec_is_a_valid_airbyte_connector_specification() -> None:
    spec = connection_specification()
    model = ConnectorSpecification.model_validate(spec)
    assert str(model.documentationUrl) == "https://docs.airbyte.com/integrations/sources/klaviyo"
    jsonschema.Draft7Validator.check_schema(spec["connectionSpecification"])
    assert spec["connectionSpecification"]["required"] == ["api_key"]
    assert spec["connectionSpecification"]["additionalProperties"] is True
    assert spec["connectionSpecification"]["properties"]["api_key"]["airbyte_secret"] is True
    json.dumps(spec)  # plain JSON, printable as-is


def test_spec_defaults_are_what_parse_config_uses() -> None:
    properties = connection_specification()["connectionSpecification"]["properties"]
    defaults = Config(api_key="k")
    assert "default" not in properties["num_workers"]  # no cap: the connector sizes concurrency itself
    assert defaults.num_workers is None
    assert properties["base_url"]["default"] == defaults.base_url
    assert (
        properties["disable_fetching_predictive_analytics"]["default"]
        is defaults.disable_fetching_predictive_analytics
    )
    assert properties["lookback_window"]["default"] == defaults.lookback_window_days
    lookback = properties["campaign_lookback_days"]
    assert lookback["default"] == defaults.campaign_lookback_days
    assert (lookback["minimum"], lookback["maximum"]) == (0, 365)
    assert (properties["num_workers"]["minimum"], properties["num_workers"]["maximum"]) == (1, 50)


@pytest.mark.parametrize(
    ("version", "fields"),
    [
        ("2.1.0", {"api_key", "start_date"}),
        ("2.13.1", {"api_key", "start_date", "disable_fetching_predictive_analytics", "num_workers"}),
    ],
)
def test_every_field_of_an_old_spec_keeps_its_type(version: str, fields: set[str]) -> None:
    old = json.loads((OLD_SPECS / version / "_spec.json").read_text())
    old = old.get("connectionSpecification", old)
    assert set(old["properties"]) == fields
    new = connection_specification()["connectionSpecification"]["properties"]
    for name, field_schema in old["properties"].items():
        assert new[name]["type"] == field_schema["type"], name


@pytest.mark.parametrize(
    "path", [p for p in CONFIG_FIXTURES if "error" not in _expected(p)], ids=lambda p: p.name
)
def test_configs_accepted_by_the_spec_are_accepted_by_parse_config(path: Path) -> None:
    raw = read_json_file(str(path), "config")
    if _spec_validator().is_valid(raw):
        parse_config(raw, now=NOW)
