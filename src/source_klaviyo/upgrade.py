"""`source-klaviyo upgrade-plan`: what happens to each stream when a 1.x/2.x user moves to 3.0.0.

    source-klaviyo upgrade-plan --config config.json --state state.json --catalog catalog.json
    source-klaviyo upgrade-plan --config config.json --state state.json --json
    source-klaviyo upgrade-plan --config config.json --from-version 2.10.0

It migrates the config and the state exactly as `read` would, infers which version wrote them
(the shapes differ by version; `--from-version` overrides the guess), and decides per stream:

    continue      incremental reading resumes from the migrated cursor
    reset         the stream's schema changed in a breaking way since that version (the field-level
                  reasons come from `schema_changes.json`), or its state cannot be carried over
    new           the stream did not exist in that version
    full_refresh  the stream has no cursor, or the catalog reads it in full_refresh
    dropped       the catalog or state names a stream that 3.0.0 does not have

Streams considered: those of `--catalog` if given, else those of `--state`, else all. The API key
never appears in the output: the config is shown with it replaced by `**********`.

It also counts the report requests of the first sync after the upgrade (`report_requests`): the plan
`read` would make (`report_plan.py`) from the migrated states, against Klaviyo's reporting budget of
225 a day. Without `metric_ids` it assumes one "Placed Order" metric: it never calls Klaviyo.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Literal, TextIO

from .config import Config, parse_config, read_json_file
from .contracts import JSON, JSONObject
from .datetimes import parse_datetime, utc_now
from .errors import ConfigError
from .ranges import GAPS
from .redaction import masked, redact
from .report_plan import DAILY_BUDGET, plan_reports
from .streams import STREAMS, STREAMS_BY_NAME, Stream

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

TARGET_VERSION = "3.0.0"
# The newest 2.x wheel; assumed when neither config nor state say otherwise.
DEFAULT_FROM_VERSION = "2.13.1"
# A user before this version had schemas between the two references: compare with both.
LOW_CODE_REFERENCE = "2.13.0"

Decision = Literal["continue", "reset", "new", "full_refresh", "dropped"]
Version = tuple[int, int, int]
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


# --------------------------------------------------------------------------- data


@cache
def schema_changes() -> JSON:
    """The committed change log written by `tools/schema_changelog.py`."""
    text = resources.files("source_klaviyo").joinpath("schema_changes.json").read_text(encoding="utf-8")
    return json.loads(text)


def all_streams() -> list[str]:
    """Every 3.0.0 stream: the stream table's order, then any other stream that has a schema."""
    names = [stream.name for stream in STREAMS]
    extra = sorted(set(schema_changes()["versions"][TARGET_VERSION]["streams"]) - set(names))
    return names + extra


def parse_version(text: str) -> Version:
    match = _VERSION.match(text.strip())
    if not match:
        raise ConfigError(f"--from-version must look like 2.13.1, got {text!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def format_version(version: Version) -> str:
    return ".".join(str(part) for part in version)


# --------------------------------------------------------------------------- version inference


@dataclass
class Clue:
    text: str
    low: Version = (0, 1, 0)  # the first release
    high: Version | None = None  # exclusive


@dataclass
class FromVersion:
    """Which version the user comes from: a range, the version assumed for decisions, and why."""

    assumed: str
    low: str
    high: str | None
    source: Literal["flag", "inferred", "default"]
    clues: list[str] = field(default_factory=list)
    conflict: bool = False

    @property
    def description(self) -> str:
        if self.source == "flag":
            return f"{self.assumed} (from --from-version)"
        if self.source == "default":
            return f"{self.assumed} (assumed: nothing in config or state tells; pass --from-version)"
        if self.high is None:
            span = f"{self.low} or later"
        elif self.low == "0.1.0":
            span = f"before {self.high}"
        else:
            span = f"{self.low} up to (not including) {self.high}"
        note = "; the clues conflict, the newest lower bound wins" if self.conflict else ""
        return f"{span} (inferred{note})"


def _stream_clues(names: set[str]) -> list[Clue]:
    introduced = schema_changes()["stream_introduced"]
    clues = []
    for name in sorted(names):
        since = introduced.get(name)
        if since and parse_version(since) >= (2, 0, 0) and since != TARGET_VERSION:
            clues.append(Clue(f"stream {name} exists only since {since}", parse_version(since)))
    return clues


def _state_clues(stream: str, raw: JSON) -> list[Clue]:
    # The stream names below are facts of the 2.x releases (which streams wrote which state shape
    # then), not of the stream table: a stream declared later has no legacy state to date.
    if not isinstance(raw, dict) or not raw:
        return []
    clues = []
    if "timestamp" in raw and isinstance(raw["timestamp"], int | float | str):
        clues.append(Clue(f"{stream} state has an epoch `timestamp` cursor (v1 API)", high=(2, 0, 0)))
    if "state_type" in raw:
        clues.append(Clue(f"{stream} state is in the concurrent-CDK form", (2, 11, 0)))
    if stream in ("campaigns", "campaigns_detailed", "flows"):
        if "states" in raw:
            clues.append(Clue(f"{stream} state has per-partition `states`", (2, 13, 0)))
        elif "archived" in raw:
            clues.append(Clue(f"{stream} state has an `archived` sub-state", (2, 0, 0), (2, 13, 0)))
    if stream == "events_detailed" and "states" in raw:
        clues.append(Clue("events_detailed state is per event (`states`)", (2, 7, 0), (2, 8, 0)))
    if stream in ("flow_series_reports", "campaign_values_reports"):
        clues.append(Clue(f"{stream} has state", (2, 14, 0)))
    return clues


def _config_clues(raw: JSONObject) -> list[Clue]:
    clues = []
    for key in ("lookback_window", "metric_ids"):
        if raw.get(key) is not None:
            clues.append(Clue(f"config has `{key}`", (2, 14, 0)))
    if raw.get("num_workers") is not None:
        clues.append(Clue("config has `num_workers`", (2, 11, 0)))
    if raw.get("disable_fetching_predictive_analytics") is not None:
        clues.append(Clue("config has `disable_fetching_predictive_analytics`", (2, 8, 2)))
    if raw.get("start_date") is None:
        clues.append(Clue("config has no `start_date` (optional since 1.1.0)", (1, 1, 0)))
    return clues


def infer_from_version(raw_config: JSONObject, raw_states: JSONObject,
                       catalog_streams: list[str] | None) -> FromVersion:
    """Intersect what each clue allows; the lower bound is the version the decisions assume."""
    clues = _config_clues(raw_config)
    for stream, raw in sorted(raw_states.items()):
        clues.extend(_state_clues(stream, raw))
    clues.extend(_stream_clues(set(raw_states) | set(catalog_streams or ())))
    telling = [clue for clue in clues if clue.low > (0, 1, 0) or clue.high is not None]
    # "no start_date" alone says little; only a default guess when nothing else speaks.
    if not telling or all(clue.text.startswith("config has no `start_date`") for clue in telling):
        return FromVersion(DEFAULT_FROM_VERSION, DEFAULT_FROM_VERSION, None, "default",
                           [clue.text for clue in telling])
    low = max(clue.low for clue in telling)
    highs = [clue.high for clue in telling if clue.high is not None]
    high = min(highs) if highs else None
    conflict = high is not None and low >= high
    if conflict:
        high = None
    return FromVersion(format_version(low), format_version(low), high and format_version(high), "inferred",
                       [clue.text for clue in telling], conflict)


# --------------------------------------------------------------------------- decisions


@dataclass
class StreamPlan:
    stream: str
    decision: Decision
    reasons: list[str]
    sync_mode: str | None = None  # as configured in the catalog, if one was given
    cursor_field: str | None = None
    cursor: str | None = None  # where incremental reading resumes (the oldest partition)
    state: JSONObject | None = None  # the migrated 3.0.0 state


def breaking_reasons(stream: str, from_version: str) -> list[str]:
    """Field-level reasons why `stream` must be reset for a user on `from_version`, oldest first."""
    data = schema_changes()
    start = parse_version(from_version)
    reasons: list[str] = []
    for version in sorted(data["versions"], key=parse_version):
        if parse_version(version) <= start:
            continue
        entry = data["versions"][version]["streams"].get(stream)
        if not entry or not entry.get("breaking"):
            continue
        if "since" in entry:
            references = sorted(entry["since"], key=parse_version)
            if start >= parse_version(LOW_CODE_REFERENCE):
                references = references[-1:]
            reasons.extend(_field_reasons(version, entry["since"], references))
        else:
            reasons.extend(_fact_reasons(version, entry))
    return reasons


def _fact_reasons(version: str, entry: JSONObject) -> list[str]:
    reasons = []
    if entry.get("restructured"):
        reasons.append(f"{version}: {entry['restructured']}")
    for item in entry.get("retyped", []):
        retyped = f"{'|'.join(item['from'])} → {'|'.join(item['to'])}"
        reasons.append(f"{version}: `{item['path']}` retyped {retyped}")
    return reasons


def _field_reasons(version: str, since: JSONObject, references: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for reference in references:
        changes = since[reference]
        for item in changes["removed"]:
            note = f" ({item['note']})" if item.get("note") else ""
            seen.setdefault(item["path"], f"{version}: `{item['path']}` removed{note}")
        for item in changes["renamed"]:
            seen.setdefault(item["from"], f"{version}: `{item['from']}` renamed to `{item['to']}`")
        for item in changes["retyped"]:
            seen.setdefault(
                item["path"],
                f"{version}: `{item['path']}` retyped {'|'.join(item['from'])} → {'|'.join(item['to'])}",
            )
    return [seen[path] for path in sorted(seen)]


def _existed(stream: str, from_version: FromVersion, mentioned: bool) -> bool:
    since = schema_changes()["stream_introduced"].get(stream, TARGET_VERSION)
    return mentioned or parse_version(since) <= parse_version(from_version.assumed)


def _cursor_values(state: JSON, cursor: str) -> list[str]:
    found: list[str] = []
    if isinstance(state, dict):
        for key, value in state.items():
            if key == cursor and isinstance(value, str | int | float) and not isinstance(value, bool):
                found.append(str(value))
            elif key != "partition":
                found.extend(_cursor_values(value, cursor))
    elif isinstance(state, list):
        for item in state:
            found.extend(_cursor_values(item, cursor))
    return found


def _oldest_cursor(state: JSONObject, cursor: str) -> str | None:
    values = []
    for text in _cursor_values(state, cursor):
        try:
            values.append((parse_datetime(text), text))
        except ValueError:
            continue
    return min(values)[1] if values else None


def _gaps_of(state: JSONObject) -> list[str]:
    """The gaps of a migrated state (ranges below its cursor never read), as `start … end` texts."""
    entries = state.get("states", [state])
    return [f"{gap['start']} … {gap['end']}" for entry in entries for gap in entry.get(GAPS) or ()]


def decide(stream_name: str, *, from_version: FromVersion, raw_state: JSON, sync_mode: str | None,
           mentioned: bool, start_date: datetime | None) -> StreamPlan:
    """The plan for one stream; ConfigError when its saved state cannot be understood."""
    from .state_migrations import is_known_stream, migrate_stream_state, state_target

    if not is_known_stream(stream_name):
        return StreamPlan(stream_name, "dropped", ["3.0.0 has no stream of this name; it is not read"],
                          sync_mode)
    target = state_target(stream_name)
    has_state = bool(raw_state)
    plan = StreamPlan(stream_name, "continue", [], sync_mode, target.cursor if target else None)
    migrated = migrate_stream_state(stream_name, raw_state, start_date) if target and has_state else None

    if not _existed(stream_name, from_version, mentioned):
        plan.decision = "new"
        introduced = schema_changes()["stream_introduced"].get(stream_name, TARGET_VERSION)
        plan.reasons.append(f"not in {from_version.assumed}; new in {introduced}")
        return plan

    reasons = breaking_reasons(stream_name, from_version.assumed)
    changes = schema_changes()["versions"][TARGET_VERSION]["streams"].get(stream_name, {})
    if changes.get("status") == "unverified":
        reasons.append(f"3.0.0: cannot verify the record shape ({changes['note']}); reset to be safe")
    if reasons:
        plan.decision = "reset"
        plan.reasons = reasons
        if has_state:
            plan.reasons.append("the saved state is discarded by the reset")
        return plan

    if target is None or sync_mode == "full_refresh":
        plan.decision = "full_refresh"
        plan.reasons.append("no cursor: every sync reads the whole stream" if target is None
                            else "configured as full_refresh in the catalog")
        return plan

    plan.state = migrated
    if migrated:
        plan.cursor = _oldest_cursor(migrated, target.cursor)
        plan.reasons.append("schema compatible; resumes from the migrated state")
        gaps = _gaps_of(migrated)
        if gaps:
            plan.reasons.append("first reads what the saved state never read: " + ", ".join(gaps))
        if target.partitioned:
            total = 1
            for _key, values in target.axes:
                total *= len(values)
            saved = len(migrated.get("states", []))
            if saved < total:
                plan.reasons.append(f"{saved} of {total} partitions saved (the oldest is shown); "
                                    "the others start at start_date")
    elif has_state:
        plan.reasons.append("schema compatible; the saved state holds no cursor, so it starts at start_date")
    else:
        plan.reasons.append("schema compatible; no saved state, so it starts at start_date")
    return plan


# --------------------------------------------------------------------------- the command


@dataclass
class ReportRequests:
    """The report requests of the first sync after the upgrade, per stream (see the module docstring)."""

    total: int
    budget: int
    conversion_metrics: int
    conversion_metrics_assumed: bool
    streams: dict[str, int]

    def describe(self) -> str:
        parts = ", ".join(f"{name} {count}" for name, count in self.streams.items())
        metrics = (f"{self.conversion_metrics} conversion metric (assumed: the account's \"Placed Order\"; "
                   "set metric_ids to count yours)" if self.conversion_metrics_assumed
                   else f"{self.conversion_metrics} conversion metric(s) from metric_ids")
        return (f"Report requests of the first sync: {self.total} of Klaviyo's {self.budget} a day "
                f"({parts or 'no report stream'}; {metrics})")


def report_requests(plans: list[StreamPlan], config: Config, now: datetime) -> ReportRequests:
    """What the first sync after the upgrade asks of the reporting endpoints: every report stream
    planned, a stream that continues from its migrated cursor, the others from the start."""
    positions: dict[Stream, datetime | None] = {}
    for plan in plans:
        stream = STREAMS_BY_NAME.get(plan.stream)
        if stream is None or stream.report is None or plan.decision == "dropped":
            continue
        positions[stream] = (parse_datetime(plan.cursor) if plan.decision == "continue" and plan.cursor
                             else None)
    metrics = len(config.metric_ids) or 1
    planned = plan_reports(positions, config.start_date, now, conversion_metrics=metrics,
                           lookback=timedelta(days=config.campaign_lookback_days))
    return ReportRequests(planned.total, DAILY_BUDGET, metrics, not config.metric_ids,
                          {name: part.requests for name, part in planned.streams.items()})


@dataclass
class UpgradePlan:
    from_version: FromVersion
    config: JSONObject
    config_rewritten: bool
    streams: list[StreamPlan]
    report_requests: ReportRequests

    def to_json(self) -> JSONObject:
        summary: dict[str, list[str]] = {}
        for plan in self.streams:
            summary.setdefault(plan.decision, []).append(plan.stream)
        return {
            "to_version": TARGET_VERSION,
            "from_version": {**asdict(self.from_version), "description": self.from_version.description},
            "config": self.config,
            "config_rewritten": self.config_rewritten,
            "streams": [asdict(plan) for plan in self.streams],
            "summary": summary,
            "local_sync": LOCAL_SYNC,
            "report_requests": asdict(self.report_requests),
        }


def _catalog_streams(raw: JSON) -> dict[str, str | None]:
    """Stream name -> configured sync mode, from a configured (or a plain discovered) catalog."""
    if not isinstance(raw, dict) or not isinstance(raw.get("streams"), list):
        raise ConfigError('the catalog must be a JSON object with a "streams" list')
    selected: dict[str, str | None] = {}
    for position, entry in enumerate(raw["streams"]):
        if not isinstance(entry, dict):
            raise ConfigError(f"catalog streams[{position}] must be an object")
        inner: JSON = entry.get("stream") if isinstance(entry.get("stream"), dict) else entry
        name = inner.get("name")
        if not isinstance(name, str):
            raise ConfigError(f'catalog streams[{position}]: "name" is missing or not a string')
        selected[name] = entry.get("sync_mode") if "stream" in entry else None
    return selected


def build_plan(raw_config: JSON, raw_state: JSON = None, raw_catalog: JSON = None,
               from_version: str | None = None, now: datetime | None = None) -> UpgradePlan:
    """The whole plan from the parsed JSON inputs; ConfigError on bad config, state or catalog. `now`
    (for tests) is when the first sync after the upgrade runs."""
    from .state_migrations import split_state_input

    config, rewritten = parse_config(raw_config)
    shown = dict(rewritten if rewritten is not None else raw_config)
    shown["api_key"] = masked(config.api_key)

    states = split_state_input(raw_state) if raw_state is not None else {}
    catalog = _catalog_streams(raw_catalog) if raw_catalog is not None else None

    if from_version is not None:
        text = format_version(parse_version(from_version))
        version = FromVersion(text, text, text, "flag")
    else:
        version = infer_from_version(raw_config, states, list(catalog) if catalog else None)

    if catalog is not None:
        names = list(catalog)
    elif states:
        names = sorted(states)
    else:
        names = all_streams()
    mentioned = set(states) | set(catalog or ())
    plans = [
        decide(name, from_version=version, raw_state=states.get(name), sync_mode=(catalog or {}).get(name),
               mentioned=name in mentioned, start_date=config.start_date)
        for name in names
    ]
    requests = report_requests(plans, config, now or utc_now())
    return UpgradePlan(version, shown, rewritten is not None, plans, requests)


def add_upgrade_plan_command(subparsers: Subparsers) -> argparse.ArgumentParser:
    """Register `upgrade-plan` on the CLI's subparsers; the handler is `run_upgrade_plan(args)`."""
    parser = subparsers.add_parser(
        "upgrade-plan", help="what happens to each stream when moving from 1.x/2.x to 3.0.0",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--config", required=True, help="the connector config (JSON)")
    parser.add_argument("--state", help="the state the earlier version saved (JSON)")
    parser.add_argument("--catalog", help="the configured catalog of the connection (JSON)")
    parser.add_argument("--from-version", help="the version the config and state come from, e.g. 2.10.0")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    parser.set_defaults(handler=run_upgrade_plan)
    return parser


def run_upgrade_plan(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point for `source-klaviyo upgrade-plan`; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    api_key = ""
    try:
        raw_config = read_json_file(args.config, "config")
        if isinstance(raw_config, dict) and isinstance(raw_config.get("api_key"), str):
            api_key = raw_config["api_key"]
        raw_state = read_json_file(args.state, "state") if getattr(args, "state", None) else None
        raw_catalog = read_json_file(args.catalog, "catalog") if getattr(args, "catalog", None) else None
        plan = build_plan(raw_config, raw_state, raw_catalog, getattr(args, "from_version", None))
    except ConfigError as exc:
        print(redact(f"upgrade-plan: {exc.message}", api_key), file=err)
        return 1
    if getattr(args, "json", False):
        text = json.dumps(plan.to_json(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    else:
        text = render_table(plan)
    out.write(redact(text, api_key))  # belt and braces: a key pasted into another field
    return 0


# What the same decisions mean for a local DuckDB file (`source-klaviyo sync`, docs/local-sync.md).
LOCAL_SYNC = (
    "A DuckDB file of `source-klaviyo sync` follows the same rule at its next sync: a stream to reset is "
    "rebuilt from a full read (its old table stays queryable until then); the others continue, an attribute "
    "new to the schema adding its typed column and a retyped one resetting the stream. A file written before "
    "typed columns (layout 1) is first converted in place."
)

_STYLES = {"continue": "green", "reset": "bold red", "new": "cyan", "full_refresh": "yellow",
           "dropped": "dim"}


def render_table(plan: UpgradePlan) -> str:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=io.StringIO(), record=True, width=140, force_terminal=False, color_system=None)
    console.print(f"Upgrade plan to source-klaviyo {TARGET_VERSION}")
    console.print(f"From version: {plan.from_version.description}")
    for clue in plan.from_version.clues:
        console.print(f"  - {clue}")
    note = " (rewritten to the 3.0.0 shape)" if plan.config_rewritten else ""
    console.print(f"Config{note}: {json.dumps(plan.config, sort_keys=True, ensure_ascii=False)}")

    table = Table(show_lines=True)
    table.add_column("stream", no_wrap=True)
    table.add_column("decision", no_wrap=True)
    table.add_column("resumes from", no_wrap=True)
    table.add_column("why")
    for item in plan.streams:
        resume = item.cursor or ("start_date" if item.decision == "continue" else "")
        table.add_row(item.stream, f"[{_STYLES[item.decision]}]{item.decision}[/]", resume,
                      "\n".join(item.reasons))
    console.print(table)
    console.print(plan.report_requests.describe())
    resets = [item.stream for item in plan.streams if item.decision == "reset"]
    if resets:
        console.print(f"After upgrading, refresh the source schema and reset: {', '.join(resets)}")
    console.print(LOCAL_SYNC)
    return console.export_text()
