"""Compute the schema change log: per stream and per breaking version, what a user's records lose.

    ./dev run python tools/schema_changelog.py                  # rewrite the committed change log
    ./dev run python tools/schema_changelog.py --check          # exit 1 if the committed file drifted
    ./dev run python tools/schema_changelog.py --reference DIR  # another copy of airbyte-2.x-schemas/

(the change log is src/source_klaviyo/schema_changes.json)

Two kinds of entries, kept apart:

* **1.0.0 and 2.0.0 are hand-written facts** (`HISTORICAL_BREAKS`, from the team's notes
  `legacy-shapes.md` §2 and §4, kept outside the repository; the `source` strings below name them
  as they were written): no schema of those releases is at hand to diff.
* **3.0.0 is computed**: every 2.x reference schema (2.1.0, 2.13.1; read from `--reference`, by
  default `reference/airbyte-2.x-schemas/` in this repository, the structure that
  `tools/derive_reference.py` keeps of the 2.x wheels' schemas) is flattened to JSON paths such as
  `attributes.subscriptions.email.marketing.suppression[]` and compared with our generated schema in
  `src/source_klaviyo/schemas/`. A stream whose records changed meaning with the same fields (a new
  primary key) is a hand-written 3.0.0 fact (`RESTRUCTURED_IN_TARGET`): no diff can see it.

What counts as breaking — a change that leaves existing destination data or columns wrong:
removed fields, renamed fields (a removal plus an addition recorded in `KNOWN_RENAMES`) and retyped
fields, where "type" is the column type a destination would create (`integer` -> `number` is a
change; `string` -> `timestamp_with_timezone` is a change). Adding or dropping `"null"` is not a
change (destination columns are nullable anyway), nor is a new field, nor a format such as `uri`
that no destination types by. Only the topmost path of a removed, added or renamed subtree is listed.
A removal or retype of a field that no 2.x record ever carried (`NEVER_EMITTED`, each with its
reason) is listed under `not_breaking` instead: it leaves nothing to reset.

Output is deterministic: sorted keys, sorted lists, 2-space indent, trailing newline.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from source_klaviyo import schema_diff
from source_klaviyo.schema_diff import Flat, Schema, column_types, flatten, is_breaking  # noqa: F401  (re-exported for tests)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE = REPO_ROOT / "reference" / "airbyte-2.x-schemas"
SCHEMAS_DIR = REPO_ROOT / "src" / "source_klaviyo" / "schemas"
DEFAULT_OUT = REPO_ROOT / "src" / "source_klaviyo" / "schema_changes.json"
REFERENCE_VERSIONS = ("2.1.0", "2.13.1")
TARGET_VERSION = "3.0.0"

# --------------------------------------------------------------------------- hand-written facts

# Which streams each release line had (legacy-shapes.md §2); "first" is the first version with it.
# not the stream table: the streams of the releases before 3.0.0
STREAM_INTRODUCED: dict[str, str] = {
    "campaigns": "0.1.0",
    "events": "0.1.0",
    "global_exclusions": "0.1.0",
    "lists": "0.1.0",
    "metrics": "0.1.0",
    "flows": "0.1.4",
    "profiles": "0.2.0",
    "email_templates": "0.3.0",
    "campaigns_detailed": "2.6.0",
    "lists_detailed": "2.6.0",
    "events_detailed": "2.7.0",
    "flow_series_reports": "2.14.0",
    "campaign_values_reports": "2.14.0",
}

# Streams that existed in 2.14+ (manifest-only releases) but for which no 2.x schema is at hand.
UNVERIFIED_STREAMS: dict[str, str] = {
    "flow_series_reports": "existed in the manifest-only 2.14+ releases; no 2.x schema to compare with",
}

# Streams whose records mean something else in 3.0.0 with the same fields: no schema diff can see it,
# so the fact is written here (and the stream is breaking: its stored rows cannot be kept).
RESTRUCTURED_IN_TARGET: dict[str, str] = {
    "campaign_values_reports": (
        "One record per campaign message and conversion metric with the campaign's statistics over its "
        "life (Klaviyo's campaign view), instead of one record per day: the primary key is "
        "(campaign_message_id, conversion_metric_id), without `date`, and `date` is the day the "
        "statistics were read up to. Rows of the per-day shape cannot be merged with these."
    ),
}

_V2_MOVE = (
    "Moved from Klaviyo's v1/v2 API to the JSON:API revisions: every record became "
    "{type, id, attributes{...}, links{self}, relationships{...}} with a top-level copy of the cursor; "
    "the primary key is the string `id`."
)

HISTORICAL_BREAKS: dict[str, dict[str, Any]] = {
    "1.0.0": {
        "source": "hand-written (reference/legacy-shapes.md §4, events 1.0.0)",
        "summary": "events: `event_properties.items[].quantity` changed from integer to number.",
        "streams": {
            "events": {
                "retyped": [
                    {"path": "event_properties.items[].quantity", "from": ["integer"], "to": ["number"]}
                ],
            },
        },
    },
    "2.0.0": {
        "source": "hand-written (reference/legacy-shapes.md §2 and §4, 2.0.0)",
        "summary": "Seven v1-API streams moved to the JSON:API revisions; their record shape changed "
        "entirely.",
        "streams": {
            name: {"restructured": _V2_MOVE}
            # not the stream table: the seven v1-API streams 2.0.0 moved
            for name in (
                "campaigns",
                "email_templates",
                "events",
                "flows",
                "global_exclusions",
                "lists",
                "metrics",
            )
        },
    },
}

# A removal + an addition that are one field under a new name. Checked against the computed diff:
# a pair is recorded only when both halves are really there.
KNOWN_RENAMES: dict[str, tuple[tuple[str, str, str], ...]] = {
    stream: (
        (
            "attributes.subscriptions.email.marketing.suppressions",
            "attributes.subscriptions.email.marketing.suppression",
            "Klaviyo's revisions since 2024 return the singular `suppression`; 3.0.0 exposes it as the API "
            "names it.",
        ),
        (
            "attributes.subscriptions.sms.transactional.can_receive_sms_marketing",
            "attributes.subscriptions.sms.transactional.can_receive_sms_transactional",
            "2.x declared the marketing flag's name on the transactional object; the API names it "
            "`can_receive_sms_transactional`.",
        ),
        (
            "attributes.subscriptions.mobile_push.marketing.can_receive_sms_marketing",
            "attributes.subscriptions.mobile_push.marketing.can_receive_push_marketing",
            "2.x declared the SMS flag's name on mobile push; the API names it `can_receive_push_marketing`.",
        ),
    )
    for stream in ("profiles", "global_exclusions")
}

# Why a removed field is gone, where the reason is known (legacy-shapes.md §4).
REMOVAL_NOTES: dict[tuple[str, str], str] = {
    **{
        (stream, "attributes.message"): (
            "no longer returned by the API; the campaign-message id is in "
            "`relationships.campaign-messages.data[].id`"
        )
        for stream in ("campaigns", "campaigns_detailed")
    },
    **{
        (stream, "attributes.channel"): (
            "no longer returned by the API; the channel is in `attributes.definition` of each "
            "campaign message (`campaign_messages` stream)"
        )
        for stream in ("campaigns", "campaigns_detailed")
    },
    **{
        ("campaigns_detailed", f"campaign_messages[].attributes.{name}"): (
            f"moved to `campaign_messages[].attributes.definition.{name}` at revision 2026-07-15"
        )
        for name in ("channel", "content", "label", "render_options")
    },
}

# Fields a 2.x schema declared that no 2.x record ever carried a value in, so that their removal or
# retype leaves no destination data or column wrong and needs no reset. Each is listed in the change
# log under `not_breaking`, with the reason. Keyed by (stream, path as the diff reports it).
_FLOW_TRIGGERS_NOTE = (
    "2.x declared an object, but no 2.x record carried it: a to-many relationship has `data` only "
    "when `include=flow-triggers` is asked, which neither 2.x nor 3.0.0 does (the spec types it as "
    "an array of {id, type})"
)
# Keyed by (stream, path, reference version or "*" for every version).
NEVER_EMITTED: dict[tuple[str, str, str], str] = {
    **{
        (stream, "relationships.flow-triggers.data", "*"): _FLOW_TRIGGERS_NOTE
        for stream in ("lists", "lists_detailed", "metrics")
    },
    # Only against 2.13.1: whether 2.1.0's template revision still returned it is not known.
    ("email_templates", "attributes.company_id", "2.13.1"): (
        "the API dropped it from templates between revisions 2023-02-22 and 2023-10-15 "
        "(reference/klaviyo-api.md), so 2.13.x, on revision 2024-10-15, always wrote null there"
    ),
}


def _never_emitted(stream: str, path: str, version: str | None) -> str | None:
    return NEVER_EMITTED.get((stream, path, "*")) or NEVER_EMITTED.get((stream, path, version or ""))

# --------------------------------------------------------------------------- diffing
# Flattening and the breaking rule live in `source_klaviyo.schema_diff`, shared with the DuckDB sync.


def diff(stream: str, old: Flat, new: Flat, version: str | None = None) -> dict[str, list]:
    """The field changes from `old` to `new`, with this stream's renames and notes."""
    return schema_diff.diff(
        old, new,
        renames=KNOWN_RENAMES.get(stream, ()),
        never_emitted=lambda path: _never_emitted(stream, path, version),
        removal_notes={path: note for (name, path), note in REMOVAL_NOTES.items() if name == stream},
    )


def load_json(path: Path) -> Schema:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def current_streams() -> list[str]:
    return sorted(p.stem for p in SCHEMAS_DIR.glob("*.json") if not p.stem.startswith("_"))


def compute(reference: Path) -> dict[str, Any]:
    streams = current_streams()
    target: dict[str, Any] = {}
    for stream in streams:
        new = flatten(load_json(SCHEMAS_DIR / f"{stream}.json"))
        since: dict[str, Any] = {}
        for version in REFERENCE_VERSIONS:
            old_file = reference / version / f"{stream}.json"
            if old_file.exists():
                since[version] = diff(stream, flatten(load_json(old_file)), new, version)
        if stream in RESTRUCTURED_IN_TARGET:
            entry = {"status": "restructured", "breaking": True,
                     "restructured": RESTRUCTURED_IN_TARGET[stream]}
        elif since:
            breaking = any(is_breaking(changes) for changes in since.values())
            entry = {"status": "changed" if breaking else "compatible", "breaking": breaking, "since": since}
        elif stream in UNVERIFIED_STREAMS:
            entry = {"status": "unverified", "breaking": False, "note": UNVERIFIED_STREAMS[stream]}
        else:
            entry = {"status": "added", "breaking": False}
        entry["introduced"] = STREAM_INTRODUCED.get(stream, TARGET_VERSION)
        target[stream] = entry

    versions: dict[str, Any] = {}
    for version, fact in HISTORICAL_BREAKS.items():
        streams_changed = {name: {**changes, "breaking": True} for name, changes in fact["streams"].items()}
        versions[version] = {
            "source": fact["source"],
            "summary": fact["summary"],
            "breaking_streams": sorted(streams_changed),
            "streams": streams_changed,
        }
    versions[TARGET_VERSION] = {
        "source": f"computed: diff of airbyte-2.x-schemas/{{{','.join(REFERENCE_VERSIONS)}}} "
        "against src/source_klaviyo/schemas/",
        "summary": "Every stream on Klaviyo API revision 2026-07-15; schemas generated from Klaviyo's "
        "OpenAPI spec.",
        "compared_with": list(REFERENCE_VERSIONS),
        "breaking_streams": sorted(s for s, e in target.items() if e["breaking"]),
        "added_streams": sorted(s for s, e in target.items() if e["status"] == "added"),
        "unverified_streams": sorted(s for s, e in target.items() if e["status"] == "unverified"),
        "restructured_streams": sorted(s for s, e in target.items() if e["status"] == "restructured"),
        "streams": target,
    }
    return {
        "generated_by": "tools/schema_changelog.py",
        "breaking_rule": (
            "removed, renamed or retyped fields (type = the destination column type, ignoring null); "
            "new fields and nullability changes are not breaking"
        ),
        "stream_introduced": dict(sorted(STREAM_INTRODUCED.items())),
        "versions": versions,
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                        help="directory holding the 2.x reference schemas (2.1.0/, 2.13.1/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if --out differs from a fresh computation"
    )
    args = parser.parse_args(argv)
    if not all((args.reference / v).is_dir() for v in REFERENCE_VERSIONS):
        print(f"schema_changelog: no reference schemas under {args.reference}", file=sys.stderr)
        return 2
    text = render(compute(args.reference))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(
                f"schema_changelog: {args.out} is out of date; rerun tools/schema_changelog.py",
                file=sys.stderr,
            )
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
