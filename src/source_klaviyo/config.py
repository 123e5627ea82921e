"""The connector's config: parsing, validation and the rewrite of legacy configs.

`parse_config` accepts every config shape a 0.x, 1.x or 2.x user may bring (see
docs/migration-guide.md, "Start with `upgrade-plan`") and returns a typed `Config`. When a stored
value is one that the 3.0.0 spec would reject but we still understand (a boolean written as `"true"`, a date
without a time), it also returns the raw config rewritten to the 3.0.0 shape, so that the CLI can
hand it to the platform as a CONTROL/CONNECTOR_CONFIG message.

Every error is one `ConfigError` naming the field. The API key never appears in a message or in
`repr(Config)`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from source_klaviyo.contracts import JSON, JSONObject
from source_klaviyo.errors import ConfigError
from source_klaviyo.redaction import masked, redact

DEFAULT_BASE_URL = "https://a.klaviyo.com"
# 2.x's default `num_workers`, which its UI wrote into every config: not a choice (see _num_workers).
LEGACY_DEFAULT_NUM_WORKERS = 10
MAX_NUM_WORKERS = 50
# The fallback every 2.x version used when `start_date` was absent.
LEGACY_DEFAULT_START = datetime(2012, 1, 1, tzinfo=UTC)
# A start date typed as "today" by someone east of UTC is tomorrow in UTC; more than that is a mistake.
FUTURE_START_DATE_TOLERANCE = timedelta(days=1)
START_DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
DEFAULT_CAMPAIGN_LOOKBACK_DAYS = 30
# A year: the longest report timeframe, so that the refresh stays one request per conversion metric.
MAX_CAMPAIGN_LOOKBACK_DAYS = 365

_START_DATE_CANONICAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
# What we accept for start_date: a date, or a date and time with an optional zone (none = UTC).
_START_DATE_ACCEPTED = re.compile(
    r"^\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}:?\d{2})?)?$"
)
_BOOLEAN_STRINGS = {"true": True, "false": False}
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


@dataclass(frozen=True, repr=False)
class Config:
    api_key: str = field(repr=False)
    start_date: datetime | None = None
    disable_fetching_predictive_analytics: bool = False
    num_workers: int | None = None  # a cap on requests in flight; None: sized from measurement
    base_url: str = DEFAULT_BASE_URL
    lookback_window_days: int = 0  # legacy `lookback_window`: trailing lookback of the events streams
    metric_ids: tuple[str, ...] = ()  # narrows the conversion metrics of the report streams
    # Campaigns sent this many days before the last sync have their statistics read again: opens,
    # clicks and conversions keep arriving for days after a send.
    campaign_lookback_days: int = DEFAULT_CAMPAIGN_LOOKBACK_DAYS
    request_timeout_seconds: float = 60.0

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "api_key"
        )
        return f"Config(api_key={masked(self.api_key)!r}, {shown})"

    __str__ = __repr__

    @property
    def effective_start_date(self) -> datetime:
        """Where a stream without state starts: `start_date`, or 2012-01-01 like every 2.x version."""
        return self.start_date or LEGACY_DEFAULT_START


def read_json_file(path: str, what: str) -> JSON:
    """The parsed JSON of a file given on the command line; None for an empty file.

    `what` names the file in messages ("config", "catalog", "state"). Positions are reported, the
    content never is: a config file holds the API key.
    """
    prefix = f"could not read the {what} file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{prefix}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{prefix}: it is a directory") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{prefix}: it is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{prefix}: {exc.strerror or type(exc).__name__}") from None
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{prefix}: not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg})"
        ) from None
    except RecursionError:
        raise ConfigError(f"{prefix}: JSON nested too deeply") from None


def parse_config(raw: JSON, *, now: datetime | None = None) -> tuple[Config, JSONObject | None]:
    """Validate a raw config; return the `Config` and the rewritten raw config, or None if unchanged.

    Rewrite rule: a key is rewritten only when its stored value would fail the 3.0.0 spec
    (wrong JSON type or pattern) although we understand it; the value becomes its canonical 3.0.0
    form. Values the spec accepts stay byte-identical, unknown keys are kept, `api_key` is never
    touched. So a config saved by any 2.x UI (which validated against a spec with the same types)
    is never rewritten; hand-written configs may be:

        before: {"api_key": "pk_x", "start_date": "2024-01-01", "num_workers": "20",
                 "disable_fetching_predictive_analytics": "true", "metric_ids": ["A1", "B2"],
                 "start_of_time": 1}
        after:  {"api_key": "pk_x", "start_date": "2024-01-01T00:00:00Z", "num_workers": 20,
                 "disable_fetching_predictive_analytics": true, "metric_ids": "A1,B2",
                 "start_of_time": 1}

    A known key set to null, or `start_date` set to "", is removed. One exception to the rule:
    `num_workers: 10`, the 2.x default its UI saved into every config, is removed too (see
    `_num_workers`). `now` is for tests.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a JSON object, got {_describe(raw)}")
    api_key = _api_key(raw.get("api_key"))
    try:
        return _parse_validated(raw, api_key, now or datetime.now(UTC))
    except ConfigError as exc:
        # A key pasted into the wrong field would otherwise be echoed back.
        internal = None if exc.internal_message is None else redact(exc.internal_message, api_key)
        raise ConfigError(redact(exc.message, api_key), internal) from None


def _parse_validated(raw: JSONObject, api_key: str, now: datetime) -> tuple[Config, JSONObject | None]:
    rewritten = dict(raw)
    values: dict[str, Any] = {}  # Config's keyword arguments, each of its field's type (its parser's)
    for key, (attribute, parse) in _FIELDS.items():
        if key in raw and raw[key] is None:  # null fails the spec's type and means "not set"
            del rewritten[key]
        if raw.get(key) is None:
            continue
        value, canonical = parse(raw[key], now)
        if value is not None:
            values[attribute] = value
        if canonical is _REMOVE:
            del rewritten[key]
        elif canonical is not _KEEP:
            rewritten[key] = canonical
    config = Config(api_key=api_key, **values)
    return config, (rewritten if rewritten != raw else None)


# Each field parser returns (the Config value, the canonical raw value or _KEEP / _REMOVE).
_KEEP = object()
_REMOVE = object()
_Parsed = tuple[object, object]


def _api_key(value: object) -> str:
    if value is None:
        raise ConfigError("api_key is missing: give the Klaviyo private API key (pk_...)")
    if not isinstance(value, str):
        raise ConfigError(f"api_key must be a string, got {_describe_type(value)}")
    if not value.strip():
        raise ConfigError("api_key is empty: give the Klaviyo private API key (pk_...)")
    return value.strip()


def _start_date(value: object, now: datetime) -> _Parsed:
    if not isinstance(value, str):
        raise ConfigError(f"start_date must be a string like 2017-01-25T00:00:00Z, got {_describe(value)}")
    if not value.strip():
        return None, _REMOVE
    moment = _parse_start_date(value)
    if moment > now + FUTURE_START_DATE_TOLERANCE:
        raise ConfigError(
            f"start_date {value!r} is in the future, so nothing would be read; give a past date, "
            "or leave start_date out to read everything"
        )
    canonical = moment.strftime(START_DATE_FORMAT)
    return moment, (_KEEP if _START_DATE_CANONICAL.match(value) else canonical)


def _parse_start_date(value: str) -> datetime:
    expected = "expected an ISO 8601 date or datetime such as 2017-01-25T00:00:00Z or 2017-01-25"
    if not _START_DATE_ACCEPTED.match(value.strip()):
        raise ConfigError(f"start_date {value!r} is not a valid datetime: {expected}")
    text = value.strip()
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:  # e.g. 2024-02-30: the shape is right, the calendar is not
        raise ConfigError(f"start_date {value!r} is not a valid datetime ({exc}): {expected}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Second precision, rounded down so that nothing at the boundary is skipped.
    return moment.astimezone(UTC).replace(microsecond=0)


def _boolean(name: str) -> Callable[[object, datetime], _Parsed]:
    def parse(value: object, _now: datetime) -> _Parsed:
        if isinstance(value, bool):
            return value, _KEEP
        if isinstance(value, str) and value.strip().lower() in _BOOLEAN_STRINGS:
            parsed = _BOOLEAN_STRINGS[value.strip().lower()]
            return parsed, parsed
        raise ConfigError(f"{name} must be true or false, got {_describe(value)}")

    return parse


def _integer(name: str, low: int, high: int | None) -> Callable[[object, datetime], _Parsed]:
    bounds = f"between {low} and {high}" if high is not None else f"{low} or more"

    def parse(value: object, _now: datetime) -> _Parsed:
        number = _as_integer(value)
        if number is None:
            raise ConfigError(f"{name} must be a whole number {bounds}, got {_describe(value)}")
        if number < low or (high is not None and number > high):
            raise ConfigError(f"{name} must be {bounds}, got {number}")
        canonical = _KEEP if isinstance(value, int | float) else number
        return number, canonical

    return parse


def _as_integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    # ASCII digits only: int() also takes Arabic-Indic or fullwidth digits, which no config writer means.
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value, re.ASCII):
        return int(value)
    return None


_num_workers_value = _integer("num_workers", 1, MAX_NUM_WORKERS)


def _num_workers(value: object, now: datetime) -> _Parsed:
    """A cap on requests in flight. 2.x read it as its thread count and its UI saved the default, 10,
    into every config: kept as a cap, it would hold most upgraded users to 10 requests in flight,
    a fifth of what Klaviyo allows at a 1 s round trip. So 10 is read as "not set" (the connector
    sizes itself) and removed from the config; any other value was chosen, and caps."""
    number, canonical = _num_workers_value(value, now)
    if number == LEGACY_DEFAULT_NUM_WORKERS:
        return None, _REMOVE
    return number, canonical


def _base_url(value: object, _now: datetime) -> _Parsed:
    if not isinstance(value, str):
        raise ConfigError(f"base_url must be a string like {DEFAULT_BASE_URL}, got {_describe(value)}")
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError(f"base_url {value!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"base_url {value!r} must be an http(s) URL like {DEFAULT_BASE_URL}")
    if parts.username or parts.password:
        raise ConfigError("base_url must not contain a user name or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            f"base_url {value!r} must be the API host only (like {DEFAULT_BASE_URL}), without a path or query"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"base_url {value!r} uses http: https is required, except for a loopback host (the emulator)"
        )
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is not None:
        netloc += f":{port}"
    return f"{parts.scheme}://{netloc}", _KEEP


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _metric_ids(value: object, _now: datetime) -> _Parsed:
    if isinstance(value, str):
        items = value.split(",")
        canonical: object = _KEEP
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        items = value
        canonical = ",".join(item.strip() for item in items if item.strip())
    else:
        raise ConfigError(
            "metric_ids must be a comma-separated string of metric ids like 'RESQ6t,ABC123', "
            f"got {_describe(value)}"
        )
    ids = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    return ids, canonical


def _timeout(value: object, _now: datetime) -> _Parsed:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise ConfigError(
            f"request_timeout_seconds must be a number of seconds in (0, 3600], got {_describe(value)}"
        )
    return float(value), _KEEP


# raw key -> (Config attribute, parser). `api_key` is handled first, on its own.
_FIELDS: dict[str, tuple[str, Callable[[object, datetime], _Parsed]]] = {
    "start_date": ("start_date", _start_date),
    "disable_fetching_predictive_analytics": (
        "disable_fetching_predictive_analytics",
        _boolean("disable_fetching_predictive_analytics"),
    ),
    "num_workers": ("num_workers", _num_workers),
    "base_url": ("base_url", _base_url),
    "lookback_window": ("lookback_window_days", _integer("lookback_window", 0, None)),
    "metric_ids": ("metric_ids", _metric_ids),
    "campaign_lookback_days": (
        "campaign_lookback_days", _integer("campaign_lookback_days", 0, MAX_CAMPAIGN_LOOKBACK_DAYS)
    ),
    "request_timeout_seconds": ("request_timeout_seconds", _timeout),
}


def _describe_type(value: object) -> str:
    return {
        bool: "a boolean", int: "a number", float: "a number", str: "a string",
        list: "a list", dict: "an object", type(None): "null",
    }.get(type(value), type(value).__name__)


def _describe(value: object) -> str:
    """A short description of a bad value for a message: scalars are shown, containers only named."""
    if isinstance(value, bool | int | float):
        return f"{_describe_type(value)} ({json.dumps(value)})"
    if isinstance(value, str):
        shown = value if len(value) <= 200 else value[:197] + "..."
        return f"{_describe_type(value)} ({shown!r})"
    return _describe_type(value)
