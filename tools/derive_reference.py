"""Derive the repository's ``reference/`` folder from the upstream reference files beside it.

    ./dev run python tools/derive_reference.py                  # rewrite reference/
    ./dev run python tools/derive_reference.py --check          # exit 1 if reference/ drifted
    ./dev run python tools/derive_reference.py --shared DIR     # upstream files elsewhere

The upstream files (``../shared/reference`` by default) are Klaviyo's OpenAPI description and the
JSON schemas of the Airbyte source-klaviyo 2.x wheels. ``reference/`` keeps their **structure
only**: every ``description``, ``summary``, ``title``, ``example``/``examples`` and documentation
link is dropped, and the OpenAPI description is cut down to the operations listed in
``OPERATIONS`` (what the emulator serves, the schema generator reads and the tests validate) and
the components they reference. Types, formats, ``nullable``, ``required``, enums, defaults, bounds,
parameters, ``$ref`` s and Klaviyo's structured extensions (filters, rate limits, scopes) are kept.

Each derived JSON file carries an ``x-provenance`` entry; ``reference/PROVENANCE.json`` lists every
file with its upstream repository, path, commit or version, license, and the SHA-256 of the
upstream file it was derived from. Output is deterministic: sorted keys, 2-space indent for the
small files, 1-space indent for the OpenAPI description, trailing newline.

Nothing in the test suite or CI reads outside the repository; this tool is the only reader of
``../shared`` and ``--check`` is how to prove ``reference/`` still matches its sources.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Any JSON value of the upstream documents: the tool walks them generically by isinstance checks.
JSON = Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO_ROOT.parent / "shared" / "reference"
DEFAULT_OUT = REPO_ROOT / "reference"

OPENAPI_IN = Path("klaviyo-openapi") / "stable.json"
OPENAPI_OUT = Path("klaviyo-openapi") / "stable.json"
AIRBYTE_DIR = Path("airbyte-2.x-schemas")
AIRBYTE_VERSIONS = ("2.1.0", "2.13.1")

# The operations kept: every route of the emulator (src/klaviyo_emulator/endpoints.py), which
# includes every operation tools/generate_schemas.py reads. tests/test_reference.py checks both.
OPERATIONS = (
    "get_accounts",
    "get_actions_for_flow",
    "get_all_universal_content",
    "get_campaign",
    "get_campaign_message",
    "get_campaigns",
    "get_catalog_categories",
    "get_catalog_items",
    "get_catalog_variants",
    "get_coupon_codes",
    "get_coupons",
    "get_custom_metrics",
    "get_data_sources",
    "get_events",
    "get_flow_action_messages",
    "get_flows",
    "get_forms",
    "get_images",
    "get_list",
    "get_lists",
    "get_mapped_metrics",
    "get_message_ids_for_campaign",
    "get_messages_for_campaign",
    "get_metrics",
    "get_profiles",
    "get_profiles_for_list",
    "get_profiles_for_segment",
    "get_push_tokens",
    "get_reviews",
    "get_segment",
    "get_segments",
    "get_tag_groups",
    "get_tags",
    "get_templates",
    "get_web_feeds",
    "query_campaign_values",
    "query_flow_series",
    "query_flow_values",
    "query_form_series",
    "query_form_values",
    "query_segment_series",
    "query_segment_values",
)
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
# Per operation, everything else (summary, description, tags, aliases, sub-tags, pre-release
# flags) is documentation and dropped.
OPERATION_KEYS = frozenset(
    {
        "operationId", "parameters", "requestBody", "responses",
        "x-klaviyo-filters", "x-klaviyo-ratelimit", "x-klaviyo-scopes",
    }
)  # fmt: skip
# Keywords that carry prose or documentation only, dropped wherever they are keywords (never
# where they are names: a property called `description` or `title` is kept).
PROSE = frozenset(
    {
        "description", "summary", "title", "example", "examples", "externalDocs",
        "documentationUrl", "changelogUrl", "x-readme", "x-default",
    }
)  # fmt: skip
# Keys whose value is a map from names (of properties, statuses, media types, filters, ...) to
# objects: its keys are kept as they are, its values are cleaned.
NAME_MAPS = frozenset(
    {
        "properties", "patternProperties", "definitions", "$defs", "responses", "content", "schemas",
        "x-klaviyo-filters", "headers", "encoding", "links",
    }
)  # fmt: skip
# Values that are data, not schema: copied unchanged.
DATA = frozenset({"enum", "default", "const", "required", "x-klaviyo-scopes", "x-klaviyo-ratelimit"})

KLAVIYO = {
    "repository": "https://github.com/klaviyo/openapi",
    "path": "openapi/stable.json",
    "commit": "f0a30ba41254904dc410d84ca497df68f8872276",
    "license_note": (
        "No LICENSE file was found in the klaviyo/openapi repository. The document's own info.license "
        "and info.termsOfService are copied here as it states them; we could not confirm an open-source "
        "license."
    ),
}
AIRBYTE = {
    "repository": "https://github.com/airbytehq/airbyte",
    "path": "airbyte-integrations/connectors/source-klaviyo",
    "package": "airbyte-source-klaviyo (PyPI)",
    "license": "MIT",
    "license_note": (
        "The 2.13.1 wheel's METADATA declares 'License: MIT'. The 2.1.0 wheel's METADATA declares no "
        "license; the connector's metadata.yaml in airbytehq/airbyte declares 'license: MIT', and the "
        "monorepo LICENSE applies a connector's metadata.yaml license to its directory. We did not see "
        "the metadata.yaml of the 2.1.0 release itself."
    ),
    "versions": {
        "2.1.0": {
            "wheel": "airbyte_source_klaviyo-2.1.0-py3-none-any.whl",
            "wheel_sha256": "b839f1c137c041c86a556aa4ea6dfd13406935e0735b8c927774fa400ce44ff7",
            "from": "source_klaviyo/schemas/<stream>.json and source_klaviyo/spec.json (as _spec.json)",
        },
        "2.13.1": {
            "wheel": "airbyte_source_klaviyo-2.13.1-py3-none-any.whl",
            "wheel_sha256": "126d59a10c37b71d21c4a70c3b94716fb2e6724d4a70d6d5644deabf2ecabb28",
            "from": (
                "source_klaviyo/manifest.yaml (each stream's inline schema, with the $refs into "
                "source_klaviyo/schemas/ resolved; spec.connection_specification as _spec.json)"
            ),
        },
    },
}
STRUCTURE_ONLY = (
    "structure only: descriptions, summaries, titles, examples and documentation links removed"
)


class ReferenceError(Exception):
    """The upstream files are missing or not shaped as this tool expects."""


# --------------------------------------------------------------------------- cleaning


def strip_prose(node: JSON, *, names: bool = False) -> JSON:
    """A copy of ``node`` without documentation keywords; ``names``: ``node`` maps names to objects."""
    if isinstance(node, list):
        return [strip_prose(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if not names and key in PROSE:
            continue
        if not names and key in DATA:
            out[key] = value
        elif not names and key in NAME_MAPS and isinstance(value, dict):
            out[key] = strip_prose(value, names=True)
        else:
            out[key] = strip_prose(value)
    return out


def refs(node: JSON) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def _component(ref: str) -> tuple[str, str]:
    parts = ref.split("/")
    if len(parts) != 4 or parts[:2] != ["#", "components"]:
        raise ReferenceError(f"unsupported $ref {ref!r} (only #/components/<kind>/<name>)")
    return parts[2], parts[3]


# --------------------------------------------------------------------------- the OpenAPI description


def reduce_openapi(spec: dict[str, Any], source_sha256: str) -> dict[str, Any]:
    """The operations in ``OPERATIONS`` and every component they reach, structure only."""
    paths: dict[str, dict[str, Any]] = {}
    found: set[str] = set()
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS:
            op = item.get(method)
            if isinstance(op, dict) and op.get("operationId") in OPERATIONS:
                kept = {key: value for key, value in op.items() if key in OPERATION_KEYS}
                paths.setdefault(path, {})[method] = strip_prose(kept)
                found.add(op["operationId"])
        if "parameters" in item and path in paths:
            paths[path]["parameters"] = strip_prose(item["parameters"])
    missing = sorted(set(OPERATIONS) - found)
    if missing:
        raise ReferenceError(f"operations not in the OpenAPI description: {missing}")

    components: dict[str, dict[str, Any]] = {}
    pending = list(refs(paths))
    while pending:
        kind, name = _component(pending.pop())
        if name in components.get(kind, {}):
            continue
        try:
            raw = spec["components"][kind][name]
        except KeyError:
            raise ReferenceError(f"dangling $ref #/components/{kind}/{name}") from None
        cleaned = strip_prose(raw)
        components.setdefault(kind, {})[name] = cleaned
        pending.extend(refs(cleaned))

    info = spec["info"]
    return {
        "openapi": spec["openapi"],
        "info": {"version": info["version"]},
        "paths": paths,
        "components": components,
        "x-provenance": {
            **{key: KLAVIYO[key] for key in ("repository", "path", "commit")},
            "revision": info["version"],
            "license": {"info.license": info.get("license"),
                        "info.termsOfService": info.get("termsOfService")},
            "source_sha256": source_sha256,
            "derived_by": "tools/derive_reference.py",
            "derivation": f"the operations {', '.join(OPERATIONS)} and the components they reference; "
            + STRUCTURE_ONLY,
        },
    }


# --------------------------------------------------------------------------- the Airbyte 2.x schemas


def reduce_airbyte(document: dict[str, Any], version: str, name: str, source_sha256: str) -> dict[str, Any]:
    cleaned = strip_prose(document)
    cleaned["x-provenance"] = {
        "repository": AIRBYTE["repository"],
        "package": f"airbyte-source-klaviyo=={version}",
        "file": name,
        "license": AIRBYTE["license"],
        "source_sha256": source_sha256,
        "derived_by": "tools/derive_reference.py",
        "derivation": STRUCTURE_ONLY,
    }
    return cleaned


# --------------------------------------------------------------------------- the whole folder


def render(document: JSON, indent: int = 2) -> str:
    return json.dumps(document, indent=indent, sort_keys=True, ensure_ascii=False) + "\n"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def derive(shared: Path) -> dict[str, str]:
    """Relative path (posix) -> file text, for every file of ``reference/``."""
    openapi_path = shared / OPENAPI_IN
    if not openapi_path.is_file():
        raise ReferenceError(f"no OpenAPI description at {openapi_path}")
    files: dict[str, str] = {}
    sources: dict[str, dict[str, Any]] = {}

    raw = openapi_path.read_bytes()
    spec = json.loads(raw)
    files[OPENAPI_OUT.as_posix()] = render(reduce_openapi(spec, _sha256(raw)), indent=1)
    sources[OPENAPI_OUT.as_posix()] = {
        **{key: KLAVIYO[key] for key in ("repository", "path", "commit")},
        "revision": spec["info"]["version"],
        "license": {
            "info.license": spec["info"].get("license"),
            "info.termsOfService": spec["info"].get("termsOfService"),
            "note": KLAVIYO["license_note"],
        },
        "source_sha256": _sha256(raw),
    }

    for version in AIRBYTE_VERSIONS:
        directory = shared / AIRBYTE_DIR / version
        names = sorted(path.name for path in directory.glob("*.json"))
        if not names or "_spec.json" not in names:
            raise ReferenceError(f"no Airbyte {version} schemas (with _spec.json) in {directory}")
        for name in names:
            raw = (directory / name).read_bytes()
            out = (AIRBYTE_DIR / version / name).as_posix()
            files[out] = render(reduce_airbyte(json.loads(raw), version, name, _sha256(raw)))
            sources[out] = {
                "repository": AIRBYTE["repository"],
                "package": f"airbyte-source-klaviyo=={version}",
                "license": AIRBYTE["license"],
                "source_sha256": _sha256(raw),
            }

    files["PROVENANCE.json"] = render(
        {
            "derived_by": "tools/derive_reference.py",
            "derivation": STRUCTURE_ONLY,
            "upstream": {
                "klaviyo-openapi": {key: value for key, value in KLAVIYO.items()},
                "airbyte-2.x-schemas": AIRBYTE,
            },
            "files": sources,
        }
    )
    return files


def drift(files: dict[str, str], out: Path) -> list[str]:
    present = out.rglob("*") if out.is_dir() else ()
    existing = {path.relative_to(out).as_posix() for path in present if path.is_file()}
    changed = [name for name, text in files.items() if _read(out / name) != text]
    return sorted(set(changed) | (existing - set(files)))


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared", type=Path, default=DEFAULT_SHARED,
        help="directory of the upstream reference files (klaviyo-openapi/, airbyte-2.x-schemas/)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="the reference/ folder to write or check"
    )
    parser.add_argument("--check", action="store_true", help="only report drift; exit 1 if any")
    args = parser.parse_args(argv)
    try:
        files = derive(args.shared)
    except (ReferenceError, OSError, json.JSONDecodeError) as error:
        print(f"derive_reference: {error}", file=sys.stderr)
        return 2
    drifted = drift(files, args.out)
    if args.check:
        for name in drifted:
            print(f"drift: {name}", file=sys.stderr)
        return 1 if drifted else 0
    for name in drifted:
        target = args.out / name
        if name in files:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(files[name], encoding="utf-8")
        else:
            target.unlink()
    print(f"{len(files)} files in {args.out}: {len(drifted)} written or removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
