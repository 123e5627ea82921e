"""The typed columns follow the schema: an attribute new to it becomes a column at the next sync, with
no reset, filled for the rows already there from the records kept whole; a retyped one resets the
stream, by the rule `upgrade-plan` and the change log apply (`schema_diff`), and both say so."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from klaviyo_emulator.runner import RunningEmulator
from source_klaviyo.datetimes import utc_now
from source_klaviyo.schemas import load_schema
from source_klaviyo.streams import STREAMS_BY_NAME
from source_klaviyo.upgrade import LOCAL_SYNC, build_plan, render_table
from tests.sync.helpers import ahead, fixed, run_sync

STREAM = "lists"
ATTRIBUTE = "opt_in_process"  # a string attribute of lists


def schema_where(edit: Callable[[dict[str, Any]], None]) -> Callable[[str], dict[str, Any]]:
    def load(name: str) -> dict[str, Any]:
        schema = load_schema(name)
        if name == STREAM:
            edit(schema["properties"]["attributes"]["properties"])
        return schema
    return load


def column_type(db: Path, column: str) -> str | None:
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT data_type FROM information_schema.columns WHERE table_name = ? "
                          "AND column_name = ?", [STREAM, column]).fetchone()
    return row[0] if row else None


def rows(db: Path) -> dict[str, tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        found = con.execute(f'SELECT id, "{ATTRIBUTE}", _raw IS NOT NULL FROM "{STREAM}"').fetchall()
    return {row[0]: row[1:] for row in found}


def attribute_in_emulator(emulator: RunningEmulator) -> dict[str, Any]:
    return {row["id"]: row["attributes"][ATTRIBUTE] for row in emulator.handle.world.tables[STREAM].rows}


def requests(emulator: RunningEmulator) -> int:
    return sum(emulator.stats()["requests"][STREAMS_BY_NAME[STREAM].path].values())


def test_a_new_attribute_becomes_a_column_without_a_reset_filled_for_every_row(
    fresh_emulator: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "k.duckdb"
    # The connector of the first sync did not know the attribute: every record is kept whole.
    monkeypatch.setattr("source_klaviyo.sync.plan.load_schema", schema_where(lambda a: a.pop(ATTRIBUTE)))
    first = run_sync(fresh_emulator.url, db, [STREAM], clock=fixed(utc_now()))
    assert first.status == "SUCCEEDED", first.to_json()
    assert column_type(db, ATTRIBUTE) is None
    assert all(kept for _id, kept in rows_without_column(db))

    monkeypatch.undo()  # the upgraded connector knows it
    changed = fresh_emulator.mutate(STREAM, add=1, update=1)
    fresh_emulator.reset_stats()
    printed = io.StringIO()
    second = run_sync(fresh_emulator.url, db, [STREAM], clock=ahead(), stderr=printed)
    assert second.status == "SUCCEEDED", second.to_json()
    (summary,) = second.streams
    assert (summary.mode, summary.reset_reason) == ("incremental", None)
    assert summary.schema_note == f"schema extended (fields added: attributes.{ATTRIBUTE}), continued"
    assert requests(fresh_emulator) == 1  # only the changes were read
    assert column_type(db, ATTRIBUTE) == "VARCHAR"
    landed = rows(db)
    # every row holds the attribute: those read now from their record, the others from `_raw`
    assert {id_: value for id_, (value, _kept) in landed.items()} == attribute_in_emulator(fresh_emulator)
    read_now = set(changed["added"]) | set(changed["updated"])
    assert {id_ for id_, (_value, kept) in landed.items() if not kept} == read_now


def rows_without_column(db: Path) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f'SELECT id, _raw IS NOT NULL FROM "{STREAM}"').fetchall()


def test_a_retyped_attribute_resets_the_stream_and_upgrade_plan_says_so(
    fresh_emulator: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "k.duckdb"
    retyped = schema_where(lambda a: a.__setitem__(ATTRIBUTE, {"type": ["integer", "null"]}))
    monkeypatch.setattr("source_klaviyo.sync.plan.load_schema", retyped)
    first = run_sync(fresh_emulator.url, db, [STREAM], clock=fixed(utc_now()))
    assert first.status == "SUCCEEDED", first.to_json()
    assert column_type(db, ATTRIBUTE) == "BIGINT"
    # text in an integer column: NULL there, and each record kept whole
    assert set(rows(db).values()) == {(None, True)}

    monkeypatch.undo()
    second = run_sync(fresh_emulator.url, db, [STREAM], clock=ahead())
    assert second.status == "SUCCEEDED", second.to_json()
    (summary,) = second.streams
    assert summary.mode == "full refresh"
    assert summary.reset_reason is not None
    assert summary.reset_reason.endswith(f": retyped: attributes.{ATTRIBUTE} (integer -> string)")
    assert column_type(db, ATTRIBUTE) == "VARCHAR"
    assert {id_: value for id_, (value, _kept) in rows(db).items()} == attribute_in_emulator(fresh_emulator)
    assert not any(kept for _value, kept in rows(db).values())

    plan = build_plan({"api_key": "pk_test"}, None, None, None)
    assert plan.to_json()["local_sync"] == LOCAL_SYNC
    assert "a retyped one resetting the stream" in " ".join(render_table(plan).split())
