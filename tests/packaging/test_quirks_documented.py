"""Klaviyo's live shapes (issue 18) stay documented and tested: each quirk the emulator serves by default
(`klaviyo_emulator.quirks.QUIRKS`) has a row in docs/emulator.md "Quirks" and is named in BEHAVIOR.md,
every test those pages cite exists, and the suites that prove exactly-once delivery, resumption and
fault tolerance run on the quirky default emulator, never on `--spec-strict`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from klaviyo_emulator.quirks import QUIRKS

ROOT = Path(__file__).resolve().parents[2]
EMULATOR_DOC = ROOT / "docs" / "emulator.md"
BEHAVIOR = ROOT / "BEHAVIOR.md"
# Reads that must see Klaviyo's live shapes: exactly-once, crash/resume, faults, the DuckDB sync.
ON_THE_QUIRKY_DEFAULT = ("tests/reliability", "tests/sync", "tests/migrations")
_CITATION = re.compile(r"(tests/[\w/]+\.py)|(?<![\w/])(test_\w+)\b")


def section(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


def quirks_table() -> dict[str, str]:
    """quirk name -> its row in docs/emulator.md's "Quirks" table."""
    rows = {}
    for line in section(EMULATOR_DOC, "## Quirks").splitlines():
        found = re.match(r"\| `(\w+)` \|", line)
        if found:
            rows[found.group(1)] = line
    return rows


def cited_tests(text: str) -> list[tuple[str | None, str]]:
    """(file, test) for each test a page cites; the file is the last one named before it on its line
    (`tests/x.py::test_a`, `::test_b`), None when the line names none."""
    cited = []
    for line in text.splitlines():
        current = None
        for path, name in _CITATION.findall(line):
            if path:
                current = path
            else:
                cited.append((current, name))
    return cited


def defined(name: str, path: str | None) -> bool:
    files = [ROOT / path] if path else list((ROOT / "tests").rglob("test_*.py"))
    pattern = re.compile(rf"^def {name}\(", re.M)
    return any(f.exists() and pattern.search(f.read_text(encoding="utf-8")) for f in files)


def test_every_quirk_has_a_row_in_the_emulator_doc_and_a_place_in_behavior_md():
    rows = quirks_table()
    assert set(rows) == set(QUIRKS)
    behavior = section(BEHAVIOR, "## Real response shapes")
    assert [name for name in QUIRKS if f"`{name}`" not in behavior] == []


@pytest.mark.parametrize("name", sorted(QUIRKS))
def test_each_quirk_row_cites_a_connector_test(name):
    row = quirks_table()[name]
    connector = row.rstrip(" |").rsplit(" | ", 1)[1]
    assert "test_" in connector or connector.startswith("same"), row


PAGES = [(EMULATOR_DOC, "## Quirks"), (BEHAVIOR, "## Real response shapes")]


@pytest.mark.parametrize(("page", "heading"), PAGES)
def test_every_cited_test_exists(page, heading):
    cited = cited_tests(section(page, heading))
    assert len(cited) >= 10
    missing = [(path, name) for path, name in cited if not defined(name, path)]
    assert not missing


def test_the_reliability_sync_and_migration_suites_run_on_the_quirky_default():
    strict = [
        str(path.relative_to(ROOT))
        for folder in ON_THE_QUIRKY_DEFAULT
        for path in sorted((ROOT / folder).rglob("*.py"))
        if re.search(r"spec_strict|strict_emulator", path.read_text(encoding="utf-8"))
    ]
    assert not strict, "these suites must read Klaviyo's live shapes, not the spec's"
