"""The repository stands on its own: `reference/` holds every reference file the tests and tools read,
as structure only, with its provenance, and nothing reads from beside the clone.

`tools/derive_reference.py --check` (run where the upstream files are at hand) proves `reference/`
is what the upstream files give; these tests prove, from the clone alone, that it is complete for its
readers and carries no prose.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from klaviyo_emulator.endpoints import ENDPOINTS
from source_klaviyo.streams import STREAMS
from tests.tools import load_tool

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "reference"
OPENAPI = REFERENCE / "klaviyo-openapi" / "stable.json"
AIRBYTE = REFERENCE / "airbyte-2.x-schemas"


derive = load_tool("derive_reference")


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _files() -> list[str]:
    return sorted(p.relative_to(REFERENCE).as_posix() for p in REFERENCE.rglob("*") if p.is_file())


def _operations(spec: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {
        (method.upper(), path): op["operationId"]
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    }


# not the stream table: the streams of the 2.1.0 connector, whose schemas reference/ keeps
STREAMS_OF_2_1_0 = (
    "campaigns", "email_templates", "events", "flows", "global_exclusions", "lists", "metrics", "profiles",
)
# not the stream table: the streams of the 2.13.1 connector, whose schemas reference/ keeps
STREAMS_OF_2_13_1 = (
    "campaigns", "campaigns_detailed", "email_templates", "events", "events_detailed", "flows",
    "global_exclusions", "lists", "lists_detailed", "metrics", "profiles",
)


def test_reference_holds_the_openapi_description_and_both_2x_versions() -> None:
    assert _files() == sorted(
        [
            "PROVENANCE.json",
            "klaviyo-openapi/stable.json",
            *(f"airbyte-2.x-schemas/2.1.0/{name}.json" for name in ("_spec", *STREAMS_OF_2_1_0)),
            *(f"airbyte-2.x-schemas/2.13.1/{name}.json" for name in ("_spec", *STREAMS_OF_2_13_1)),
        ]
    )  # fmt: skip


def test_every_emulator_route_is_its_operation_in_the_reduced_spec() -> None:
    operations = _operations(_load(OPENAPI))
    served = {(endpoint.method, endpoint.route): endpoint.operation for endpoint in ENDPOINTS}
    assert operations == served
    assert sorted(operations.values()) == sorted(derive.OPERATIONS)


def test_every_operation_of_the_schema_generator_is_in_the_reduced_spec() -> None:
    generator = load_tool("generate_schemas")
    spec = generator.Spec(_load(OPENAPI))
    used = {generator.shape_of(spec, stream).operation for stream in STREAMS}
    assert used <= set(_operations(_load(OPENAPI)).values())


def test_every_ref_resolves_within_the_reduced_spec() -> None:
    spec = _load(OPENAPI)
    dangling = set()
    for ref in set(derive.refs(spec)):
        kind, name = derive._component(ref)
        if name not in spec["components"].get(kind, {}):
            dangling.add(ref)
    assert not dangling
    assert spec["info"]["version"] == "2026-07-15"


@pytest.mark.parametrize("name", [n for n in _files() if n != "PROVENANCE.json"])
def test_files_are_structure_only_and_state_their_provenance(name: str) -> None:
    text = (REFERENCE / name).read_text(encoding="utf-8")
    document = json.loads(text)
    indent = 1 if name == "klaviyo-openapi/stable.json" else 2
    assert text == derive.render(document, indent=indent), "not in the tool's deterministic form"
    provenance = document.pop("x-provenance")
    assert derive.strip_prose(document) == document, "a description, title or example is left"
    assert provenance["derived_by"] == "tools/derive_reference.py"
    assert re.fullmatch(r"[0-9a-f]{64}", provenance["source_sha256"])
    listed = _load(REFERENCE / "PROVENANCE.json")["files"][name]
    assert listed["source_sha256"] == provenance["source_sha256"]
    if name.startswith("airbyte-2.x-schemas/"):
        version = name.split("/")[1]
        assert provenance["package"] == listed["package"] == f"airbyte-source-klaviyo=={version}"
        assert provenance["license"] == listed["license"] == "MIT"
        assert provenance["repository"] == "https://github.com/airbytehq/airbyte"
    else:
        assert provenance["repository"] == "https://github.com/klaviyo/openapi"
        assert provenance["path"] == "openapi/stable.json"
        assert provenance["commit"] == "f0a30ba41254904dc410d84ca497df68f8872276"
        assert provenance["license"]["info.license"] == {"name": "License", "url": "https://www.klaviyo.com/legal"}


def test_provenance_lists_exactly_the_derived_files() -> None:
    listed = set(_load(REFERENCE / "PROVENANCE.json")["files"])
    assert listed == set(_files()) - {"PROVENANCE.json"}


def test_the_prose_filter_drops_keywords_but_keeps_fields_so_named() -> None:
    schema = {
        "type": "object",
        "description": "prose",
        "example": {"title": "x"},
        "properties": {
            "description": {"type": "string", "title": "T", "enum": ["description"]},
            "title": {"type": "string", "nullable": True},
        },
        "required": ["description"],
    }
    assert derive.strip_prose(schema) == {
        "type": "object",
        "properties": {
            "description": {"type": "string", "enum": ["description"]},
            "title": {"type": "string", "nullable": True},
        },
        "required": ["description"],
    }


# A path to the shared folder beside the clone, as pathlib or as a relative string.
_OUTSIDE = re.compile(r"""(\.parent\s*/\s*["']shared["'])|(["']\.\./shared)|(/\s*["']shared["']\s*/)""")


def test_no_test_tool_or_benchmark_reads_beside_the_clone() -> None:
    readers = [
        path.relative_to(REPO).as_posix()
        for folder in ("src", "tests", "tools", "bench")
        for path in (REPO / folder).rglob("*.py")
        if _OUTSIDE.search(path.read_text(encoding="utf-8"))
    ]
    # The derivation tool is the one reader of the shared folder; nothing in the suite or CI runs it.
    assert readers == ["tools/derive_reference.py"]


# A citation of a file in the shared folder beside the clone (its relative path or its reference/ part).
_CITED_OUTSIDE = re.compile(r"\.\./shared\b|\bshared/reference/")


def test_no_code_or_test_cites_a_file_beside_the_clone() -> None:
    """A clone has no shared folder: a docstring or comment pointing there sends the reader nowhere.
    Cite what the repository holds (docs/, reference/) instead."""
    citing = [
        path.relative_to(REPO).as_posix()
        for folder in ("src", "tests", "bench")
        for path in (REPO / folder).rglob("*.py")
        if _CITED_OUTSIDE.search(path.read_text(encoding="utf-8"))
    ]
    assert citing == []
