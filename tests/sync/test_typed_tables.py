"""One sync of every stream into typed tables, checked against what it must hold: the generated
schemas' leaves as columns, the relationship ids of the emulator's truth, and every view equal to the
same question answered from the emulator's own model."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from klaviyo_emulator import reports as emulator_reports
from klaviyo_emulator.runner import RunningEmulator
from source_klaviyo import schema_diff
from source_klaviyo.datetimes import parse_datetime, utc_now
from source_klaviyo.reports import request_body
from source_klaviyo.schemas import load_schema
from source_klaviyo.streams import STREAMS, STREAMS_BY_NAME, Stream
from source_klaviyo.sync.klaviyo_keys import KLAVIYO_KEYS
from source_klaviyo.sync.layout import METADATA_COLUMNS, table_layout
from source_klaviyo.sync.views import VIEWS, VIEWS_BY_NAME
from tests.sync.helpers import fixed, run_sync, upper_of
from tests.truth import TRUTHS

Rows = list[tuple[Any, ...]]

# The destination column types of `schema_diff` (the rule of the change log) as DuckDB names them.
DUCKDB_TYPES = {"string": "VARCHAR", "timestamp_with_timezone": "TIMESTAMP WITH TIME ZONE", "date": "DATE",
                "integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN"}


@pytest.fixture(scope="module")
def synced(emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime]:
    """(the file of one sync of every stream, the exclusive upper bound that sync read to)."""
    db = tmp_path_factory.mktemp("typed") / "klaviyo.duckdb"
    clock = fixed(utc_now())
    summary = run_sync(emulator.url, db, clock=clock)
    assert summary.status == "SUCCEEDED", summary.to_json()
    assert summary.views == [view.name for view in VIEWS]
    return db, upper_of(clock)


def query(db: Path, sql: str, params: list[Any] | None = None) -> Rows:
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute("SET TimeZone = 'America/Los_Angeles'")  # views speak UTC whatever the session's zone
        return con.execute(sql, params or []).fetchall()


def table_columns(db: Path, table: str) -> dict[str, str]:
    return dict(query(db, "SELECT column_name, data_type FROM information_schema.columns "
                          "WHERE table_name = ? ORDER BY ordinal_position", [table]))


# -- columns ------------------------------------------------------------------------------------------


def leaf_type(flat: dict[str, tuple[str, ...]], path: str) -> str:
    types = flat[path]
    if types == ("array",):
        items = flat.get(path + "[]", ("any",))
        return DUCKDB_TYPES[items[0]] + "[]" if len(items) == 1 and items[0] in DUCKDB_TYPES else "JSON"
    if len(types) == 1:
        return DUCKDB_TYPES.get(types[0], "JSON")  # an object here has no declared properties: free-form
    if set(types) <= {"integer", "number"}:
        return "DOUBLE"
    return "VARCHAR" if set(types) <= set(DUCKDB_TYPES) else "JSON"


def expected_columns(stream: Stream) -> dict[str, str]:
    """Name -> type of the column of each leaf of the stream's generated schema, by the documented rule."""
    schema = load_schema(stream.schema_name)
    flat = schema_diff.flatten(schema)
    objects = {path.rsplit(".", 1)[0] for path in flat if "." in path}  # paths that have children
    top_level = set(schema["properties"])
    expected: dict[str, str] = {}
    for path, types in flat.items():
        parts = path.split(".")
        if "[]" in path or parts[0] == "links" or (parts[0] == "relationships" and "links" in parts[2:3]):
            continue  # inside a list column, or a link: no column of its own
        if path in objects and types == ("object",):
            continue  # a declared object: its leaves are the columns
        if parts[0] == "attributes":
            if parts[1:2] == parts[1:] and flat.get(parts[1]) == types:
                continue  # copied to the top level (the cursor the engine or a hook lifts)
            name = "__".join(parts[1:])
        elif parts[0] == "relationships":
            relationship = parts[1].replace("-", "_")
            if parts[2:] == ["data"]:
                if types != ("array",):
                    continue
                expected[relationship.removesuffix("s") + "_ids"] = "VARCHAR[]"
                continue
            if parts[3:] == ["type"] or (parts[3:] == ["id"] and f"{relationship}_id" in top_level):
                continue  # the same on every row / the parent id the record carries at the top level
            name = f"{relationship}_id" if parts[3:] == ["id"] else "__".join([relationship, *parts[3:]])
        else:
            name = "__".join(parts)
        expected[name] = leaf_type(flat, path)
        for key in KLAVIYO_KEYS.get(tuple(parts), ()):
            expected[key.column] = key.sql_type
    for key in stream.primary_key:
        if not stream.incremental or key != stream.incremental.cursor:
            expected[key] = "VARCHAR"  # keys compare as text
    return expected


@pytest.mark.parametrize("stream", STREAMS, ids=lambda s: s.name)
def test_each_leaf_of_the_generated_schema_is_a_typed_column(synced: tuple[Path, datetime],
                                                              stream: Stream) -> None:
    db, _ = synced
    columns = table_columns(db, stream.name)
    metadata = {name: sql_type.replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE")
                for name, sql_type in METADATA_COLUMNS}
    assert {name: columns[name] for name in metadata} == metadata
    assert {name: t for name, t in columns.items() if name not in metadata} == expected_columns(stream)


def test_a_record_is_kept_whole_only_for_a_field_its_schema_lacks(synced: tuple[Path, datetime]) -> None:
    """Klaviyo's live shapes carry fields the spec lacks (the emulator's quirk `extra_fields`): those
    records keep `_raw`, so nothing read is lost; every one kept has such a field. (On the spec's
    shapes no record is kept: tests/connector/test_live_quirks.py.)"""
    db, _ = synced
    kept_somewhere = False
    for stream in STREAMS:
        schema = load_schema(stream.name)
        for (raw,) in query(db, f'SELECT _raw FROM "{stream.name}" WHERE _raw IS NOT NULL'):
            kept_somewhere = True
            assert list(fields_beyond(schema, orjson.loads(raw))), (stream.name, raw[:300])
    assert kept_somewhere


def fields_beyond(schema: Any, value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The paths of `value` that its JSON schema does not declare (free-form objects declare all)."""
    if isinstance(value, dict) and isinstance(schema, dict) and "properties" in schema:
        for key, child in value.items():
            if key not in schema["properties"]:
                yield (*path, key)
            else:
                yield from fields_beyond(schema["properties"][key], child, (*path, key))
    elif isinstance(value, list) and isinstance(schema, dict) and isinstance(schema.get("items"), dict):
        for item in value:
            yield from fields_beyond(schema["items"], item, path)


# -- relationships ----------------------------------------------------------------------------------


def test_relationship_id_columns_equal_the_emulators_truth(synced: tuple[Path, datetime],
                                                           emulator: RunningEmulator) -> None:
    db, read_at = synced
    checked = []
    for name, truth in TRUTHS.items():
        rows = [row for row in truth.rows(emulator) if truth._within(row, None, read_at)]
        columns = table_columns(db, name)
        for field in sorted({field for row in rows for field in row if field.endswith("_id")}):
            assert field in columns, f"{name}.{field}: the truth's related id has no column"
            landed = query(db, f'SELECT {", ".join(truth.key)}, "{field}" FROM "{name}"')
            assert {tuple(row[:-1]): row[-1] for row in landed} == {
                truth.key_of(row): row[field] for row in rows}, f"{name}.{field}"
            checked.append(f"{name}.{field}")
    assert any(check.startswith("events.") for check in checked)


def test_to_many_id_lists_equal_the_emulators_relationships(synced: tuple[Path, datetime],
                                                            emulator: RunningEmulator) -> None:
    db, _ = synced
    world = emulator.handle.world
    filled = 0
    for name, truth in TRUTHS.items():
        stream = STREAMS_BY_NAME[name]
        if truth.resource not in world.tables:
            continue  # memberships: no relationships of their own
        table = world.tables[truth.resource]
        index = {table.id(i): i for i in table.live()}
        for column in table_layout(stream, load_schema(stream.schema_name)).columns:
            if not column.many:
                continue
            relationship = column.keys[1]
            listed = f'"{column.name}"'
            filled_rows = query(db, f'SELECT id, {listed} FROM "{name}" WHERE {listed} IS NOT NULL')
            for id_, ids in filled_rows:
                related = table.relationships(index[id_]).get(relationship) or []
                assert ids == [related_id for _type, related_id in related], (name, column.name, id_)
                filled += 1
    assert filled  # some stream asks for its related resources (include=...)


# -- views --------------------------------------------------------------------------------------------


def utc_day(stamp: str | int) -> Any:
    moment = datetime.fromtimestamp(stamp, UTC) if isinstance(stamp, int) else parse_datetime(stamp)
    return moment.astimezone(UTC).date()


def names(world: Any, resource: str, field: str = "name") -> dict[str, str]:
    return {row["id"]: row["attributes"][field] for row in world.tables[resource].rows}


def events_read(world: Any, read_at: datetime) -> Iterator[tuple[str, str, str, dict[str, Any], int]]:
    """(metric id, profile id, event id, event_properties, epoch second) of each event the sync read."""
    events = world.events
    for i in events.live():
        if datetime.fromtimestamp(events.ts[i], UTC) < read_at:
            rels = events.relationships(i)
            yield rels["metric"][1], rels["profile"][1], events.id(i), events.attributes(i, frozenset())[
                "event_properties"], events.ts[i]


def value_of(properties: dict[str, Any]) -> float:
    return float(properties.get("$value") or 0)


def conversions(groups: dict[tuple[Any, ...], list[tuple[str, float]]], labels: dict[str, dict[str, str]],
                kind: str) -> Rows:
    return [(group, labels[kind].get(group), metric, labels["metrics"][metric], len(hits),
             len({profile for profile, _ in hits}), sum(value for _, value in hits))
            for (group, metric), hits in groups.items()]


def expect_daily_metrics(world: Any, read_at: datetime, db: Path) -> Rows:
    groups: dict[tuple[Any, str], list[tuple[str, float]]] = defaultdict(list)
    for metric, profile, _id, properties, ts in events_read(world, read_at):
        groups[(utc_day(ts), metric)].append((profile, value_of(properties)))
    metric_names = names(world, "metrics")
    return [(day, metric, metric_names[metric], len(hits), len({p for p, _ in hits}), sum(v for _, v in hits))
            for (day, metric), hits in groups.items()]


def expect_performance(flows: bool) -> Callable[[Any, datetime, Path], Rows]:
    def expect(world: Any, read_at: datetime, db: Path) -> Rows:
        messages = world.tables["campaign-messages"].rows
        campaign_of = {row["id"]: row["keys"]["campaign_id"] for row in messages}
        groups: dict[tuple[Any, str], list[tuple[str, float]]] = defaultdict(list)
        for metric, profile, _id, properties, _ts in events_read(world, read_at):
            attribution = properties.get("$attribution")
            if attribution is None or ("$flow" in attribution) != flows:
                continue
            group = attribution["$flow"] if flows else campaign_of.get(attribution["$message"],
                                                                       attribution["$message"])
            groups[(group, metric)].append((profile, value_of(properties)))
        labels = {"metrics": names(world, "metrics"), "flows": names(world, "flows"),
                  "campaigns": names(world, "campaigns")}
        return conversions(groups, labels, "flows" if flows else "campaigns")
    return expect


def expect_growth(kind: str) -> Callable[[Any, datetime, Path], Rows]:
    def expect(world: Any, read_at: datetime, db: Path) -> Rows:
        daily: dict[tuple[str, Any], int] = defaultdict(int)
        for row in world.truth(f"{kind}-memberships"):
            daily[(row[f"{kind}_id"], utc_day(row["joined_group_at"]))] += 1
        group_names = names(world, f"{kind}s")
        rows, running = [], dict[str, int]()
        for (group, day), joined in sorted(daily.items()):
            running[group] = running.get(group, 0) + joined
            rows.append((group, group_names[group], day, joined, running[group]))
        return rows
    return expect


def expect_suppressions(world: Any, read_at: datetime, db: Path) -> Rows:
    by_reason: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    profiles = world.profiles
    for i in profiles.live():
        row = profiles.truth_row(i)
        if row["suppressed"] and parse_datetime(row["updated"]) < read_at:
            email = profiles.attributes(i, frozenset({"subscriptions"}))["subscriptions"]["email"]
            for suppression in email["marketing"]["suppression"]:
                by_reason[suppression["reason"]].append((row["id"], parse_datetime(suppression["timestamp"])))
    return [(reason, len({p for p, _ in hits}), min(t for _, t in hits), max(t for _, t in hits))
            for reason, hits in by_reason.items()]


def summed_report(world: Any, stream: Stream, group: str, read: Rows) -> Rows:
    """The report's statistics on the (date, metric) pairs the sync read, summed as the view does,
    from the emulator's report for the requests the connector makes (`request_body`)."""
    from source_klaviyo.sync.views import RATES, SUMMED_STATISTICS

    assert stream.report is not None
    values: dict[tuple[str, str, str], list[tuple[datetime, dict[str, float]]]] = defaultdict(list)
    read = [(date.astimezone(UTC), metric) for date, metric in read]  # days are UTC days
    wanted = {(date, metric) for date, metric in read}
    for metric in sorted({metric for _date, metric in read}):
        dates = sorted(date for date, m in read if m == metric)
        low = dates[0]
        while low <= dates[-1]:
            high = low + timedelta(days=stream.report.days_per_request)
            body = orjson.dumps(request_body(stream, metric, low, high))
            if stream.report.interval:
                answer = emulator_reports.flow_series(world, body)["data"]["attributes"]
                stamps = [parse_datetime(t) for t in answer["date_times"]]
                for result in answer["results"]:
                    key = (result["groupings"][f"{group}_id"], result["groupings"]["send_channel"], metric)
                    for n, stamp in enumerate(stamps):
                        if (stamp, metric) in wanted:
                            values[key].append((stamp, {s: v[n] for s, v in result["statistics"].items()}))
            low = high
    group_names, metric_names = names(world, f"{group}s"), names(world, "metrics")
    rows = []
    for (group_id, channel, metric), days in values.items():
        sums = {s: float(sum(stats[s] for _day, stats in days)) for s in SUMMED_STATISTICS}
        rates = [sums[n] / sums[d] if sums[d] else None for _name, n, d in RATES]
        rows.append((group_id, group_names.get(group_id), channel, metric, metric_names[metric],
                     min(day for day, _ in days), max(day for day, _ in days),
                     *(sums[s] for s in SUMMED_STATISTICS), *rates))
    return rows


def lifetime_report(world: Any, stream: Stream, group: str, db: Path, read_at: datetime) -> Rows:
    """A values report of messages over their life (campaign_values_reports): each message the
    emulator reports for the year-long timeframes from the report's first day to the read, summed
    per campaign as the view does. Its dates are when the rows were read (the table's own)."""
    from source_klaviyo.sync.views import RATES, SUMMED_STATISTICS

    report = stream.report
    assert report is not None
    assert report.earliest is not None
    metrics = [metric for (metric,) in query(
        db, f'SELECT DISTINCT conversion_metric_id FROM "{stream.name}"')]
    messages: dict[tuple[str, str], tuple[str, str, dict[str, float]]] = {}
    for metric in metrics:
        low = report.earliest
        while low < read_at:
            high = min(low + timedelta(days=report.days_per_request), read_at)
            body = orjson.dumps(request_body(stream, metric, low, high))
            for result in emulator_reports.campaign_values(world, body)["data"]["attributes"]["results"]:
                groupings = result["groupings"]
                messages[(groupings["campaign_message_id"], metric)] = (
                    groupings[f"{group}_id"], groupings["send_channel"], result["statistics"])
            low = high
    dates = {(row[0], row[1], row[2]): (row[3], row[4]) for row in query(
        db, f'SELECT {group}_id, send_channel, conversion_metric_id, min(date), max(date) '
            f'FROM "{stream.name}" GROUP BY ALL')}
    summed: dict[tuple[str, str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (_message, metric), (group_id, channel, statistics) in messages.items():
        for name in SUMMED_STATISTICS:
            summed[(group_id, channel, metric)][name] += statistics[name]
    group_names, metric_names = names(world, f"{group}s"), names(world, "metrics")
    rows = []
    for (group_id, channel, metric), sums in summed.items():
        rates = [sums[n] / sums[d] if sums[d] else None for _name, n, d in RATES]
        rows.append((group_id, group_names.get(group_id), channel, metric, metric_names[metric],
                     *dates[(group_id, channel, metric)], *(sums[s] for s in SUMMED_STATISTICS), *rates))
    return rows


def expect_statistics(report_stream: Stream, group: str) -> Callable[[Any, datetime, Path], Rows]:
    def expect(world: Any, read_at: datetime, db: Path) -> Rows:
        assert report_stream.report is not None
        if report_stream.report.interval is None:
            return lifetime_report(world, report_stream, group, db, read_at)
        read = query(db, f'SELECT DISTINCT date, conversion_metric_id FROM "{report_stream.name}"')
        return summed_report(world, report_stream, group, read)
    return expect


def expect_form_performance(world: Any, _read_at: datetime, db: Path) -> Rows:
    """The emulator's form values report over the year before the day the sync read it up to."""
    stream = STREAMS_BY_NAME["form_values_reports"]
    assert stream.report is not None
    ((as_of,),) = query(db, "SELECT DISTINCT date FROM form_values_reports")
    low = as_of - timedelta(days=stream.report.days_per_request)
    answer = emulator_reports.form_values(world, orjson.dumps(request_body(stream, None, low, as_of)))
    forms = world.table("forms")
    about = {forms.id(i): (forms.value("name", i), forms.value("status", i)) for i in forms.live()}
    rows = []
    for result in answer["data"]["attributes"]["results"]:
        form_id, stats = result["groupings"]["form_id"], result["statistics"]
        numbers = (stats["viewed_form"], stats["viewed_form_uniques"], stats["submits"], stats["submit_rate"])
        rows.append((form_id, *about[form_id], as_of, *map(float, numbers)))
    return rows


EXPECTED: dict[str, Callable[[Any, datetime, Path], Rows]] = {
    "daily_metrics": expect_daily_metrics,
    "campaign_performance": expect_performance(flows=False),
    "flow_performance": expect_performance(flows=True),
    "list_growth": expect_growth("list"),
    "segment_growth": expect_growth("segment"),
    "suppressions_by_reason": expect_suppressions,
    "form_performance": expect_form_performance,
}
for _view in VIEWS:  # the report views: `<group>_statistics` over one report stream
    if _view.name.endswith("_statistics"):
        _group = _view.name.removesuffix("_statistics")
        EXPECTED[_view.name] = expect_statistics(STREAMS_BY_NAME[_view.tables[0]], _group)


def same(actual: Rows, expected: Rows) -> bool:
    if len(actual) != len(expected):
        return False
    for got, want in zip(sorted(actual, key=repr), sorted(expected, key=repr), strict=True):
        for a, b in zip(got, want, strict=True):
            if isinstance(b, float) and a != pytest.approx(b, rel=1e-9):
                return False
            if not isinstance(b, float) and a != b:
                return False
    return True


def test_every_view_has_its_expectation() -> None:
    assert set(EXPECTED) == set(VIEWS_BY_NAME)
    assert not set(VIEWS_BY_NAME) & set(STREAMS_BY_NAME)  # a view never takes a stream's name


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.name)
def test_each_view_equals_the_question_answered_from_the_emulators_model(
    synced: tuple[Path, datetime], emulator: RunningEmulator, view: Any
) -> None:
    db, read_at = synced
    actual = query(db, f'SELECT * FROM "{view.name}"')
    expected = EXPECTED[view.name](emulator.handle.world, read_at, db)
    assert expected, f"{view.name}: the emulator's data never asks this question"
    assert same(actual, expected), (view.name, sorted(actual, key=repr)[:3], sorted(expected, key=repr)[:3])


def test_views_of_streams_not_synced_are_not_made(emulator: RunningEmulator, tmp_path: Path) -> None:
    streams = [STREAMS_BY_NAME[name].name for name in VIEWS_BY_NAME["list_growth"].tables]
    summary = run_sync(emulator.url, tmp_path / "k.duckdb", streams, clock=fixed(utc_now()))
    assert summary.views == ["list_growth"]
    with duckdb.connect(str(tmp_path / "k.duckdb"), read_only=True) as con:
        views = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    made = {row[0] for row in views}
    assert made == {"list_growth"}  # the others read tables this file does not have

