"""Field-level comparison of two JSON schemas: what `upgrade-plan`, the change log and the sync share.

A schema is flattened to JSON paths (`a.b`, `a.list[]`, `a.list[].c`), each with the destination
column types it allows, without "null". Breaking = a field removed, renamed or retyped (type = the
destination column type); a new field or a nullability change is not. `tools/schema_changelog.py`
builds `schema_changes.json` with these functions; the DuckDB sync uses them to decide whether a
stream whose stored schema differs from ours must be rebuilt or can continue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from source_klaviyo.contracts import JSON, JSONObject

Schema = JSONObject
Flat = dict[str, tuple[str, ...]]


def column_types(schema: Schema) -> tuple[str, ...]:
    """The destination column types a schema allows, without "null": e.g. ("timestamp_with_timezone",)."""
    if "anyOf" in schema or "oneOf" in schema:
        found: set[str] = set()
        options: list[Schema] = schema["anyOf"] if "anyOf" in schema else schema["oneOf"]
        for option in options:
            found.update(column_types(option))
        return tuple(sorted(found))
    declared = schema.get("type")
    if declared is None:
        return ("any",)
    names = [declared] if isinstance(declared, str) else list(declared)
    result = set()
    for name in names:
        if name == "null":
            continue
        if name == "string":
            name = _string_column(schema)
        result.add(name)
    return tuple(sorted(result))


def _string_column(schema: Schema) -> str:
    fmt = schema.get("format")
    if fmt == "date-time":
        if schema.get("airbyte_type") == "timestamp_without_timezone":
            return "timestamp_without_timezone"
        return "timestamp_with_timezone"
    if fmt == "date":
        return "date"
    if fmt == "time":
        return (
            "time_with_timezone"
            if schema.get("airbyte_type") != "time_without_timezone"
            else "time_without_timezone"
        )
    return "string"


def flatten(schema: Schema, prefix: str = "", out: Flat | None = None) -> Flat:
    """Every path of a schema with its column types: `a.b`, `a.list[]`, `a.list[].c`."""
    out = {} if out is None else out
    if prefix:
        out[prefix] = column_types(schema)
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        _flatten_children(option, prefix, out)
    _flatten_children(schema, prefix, out)
    return out


def _flatten_children(schema: Schema, prefix: str, out: Flat) -> None:
    for key, child in (schema.get("properties") or {}).items():
        flatten(child, f"{prefix}.{key}" if prefix else key, out)
    items = schema.get("items")
    if isinstance(items, dict):
        flatten(items, f"{prefix}[]", out)


def is_under(path: str, ancestor: str) -> bool:
    return path.startswith(ancestor + ".") or path.startswith(ancestor + "[]")


def topmost(paths: Iterable[str]) -> list[str]:
    """The paths not inside another of them, sorted: each subtree once, at its top."""
    kept: list[str] = []
    for path in sorted(paths):
        if not any(is_under(path, top) for top in kept):
            kept.append(path)
    return kept


def diff(
    old: Flat,
    new: Flat,
    *,
    renames: Iterable[tuple[str, str, str]] = (),
    never_emitted: Callable[[str], str | None] = lambda path: None,
    removal_notes: Mapping[str, str] | None = None,
) -> JSONObject:
    """The field changes from `old` to `new`; each subtree is reported once, at its top.

    `renames` are (before, after, note) pairs recorded only when both halves are in the diff;
    `never_emitted(path)` gives a reason for a removal or retype that leaves nothing wrong (listed
    under `not_breaking`); `removal_notes` explain removed paths.
    """
    removal_notes = removal_notes or {}
    removed = set(old) - set(new)
    added = set(new) - set(old)
    retyped = sorted(
        path for path in set(old) & set(new)
        if old[path] != new[path] and "any" not in old[path] and "any" not in new[path]
    )
    # A container that changed kind (object -> array) carries its children with it.
    removed = {p for p in removed if not any(is_under(p, r) for r in retyped)}
    added = {p for p in added if not any(is_under(p, r) for r in retyped)}

    renamed = []
    for before, after, note in renames:
        if before in removed and after in added:
            renamed.append({"from": before, "to": after, "note": note})
            removed = {p for p in removed if p != before and not is_under(p, before)}
            added = {p for p in added if p != after and not is_under(p, after)}

    removed_entries = []
    not_breaking = []
    for path in topmost(removed):
        entry: JSONObject = {"path": path, "types": list(old[path])}
        if reason := never_emitted(path):
            not_breaking.append({**entry, "change": "removed", "note": reason})
            continue
        if path in removal_notes:
            entry["note"] = removal_notes[path]
        removed_entries.append(entry)
    retyped_entries = []
    for path in topmost(retyped):
        change = {"path": path, "from": list(old[path]), "to": list(new[path])}
        if reason := never_emitted(path):
            not_breaking.append({**change, "change": "retyped", "note": reason})
        else:
            retyped_entries.append(change)
    result: JSONObject = {
        "added": topmost(added),
        "removed": removed_entries,
        "renamed": renamed,
        "retyped": retyped_entries,
    }
    if not_breaking:
        result["not_breaking"] = not_breaking
    return result


def is_breaking(changes: Mapping[str, JSON]) -> bool:
    return bool(changes.get("removed") or changes.get("renamed") or changes.get("retyped")
                or changes.get("restructured"))


def describe_breaking(changes: Mapping[str, JSON]) -> str:
    """A one-line account of the breaking part of `changes`, e.g.
    `removed: a.b; retyped: c (integer -> number)`."""
    parts = []
    if changes.get("removed"):
        parts.append("removed: " + ", ".join(e["path"] for e in changes["removed"]))
    if changes.get("renamed"):
        parts.append("renamed: " + ", ".join(f"{e['from']} -> {e['to']}" for e in changes["renamed"]))
    if changes.get("retyped"):
        parts.append("retyped: " + ", ".join(
            f"{e['path']} ({'|'.join(e['from']) or 'null'} -> {'|'.join(e['to']) or 'null'})"
            for e in changes["retyped"]))
    return "; ".join(parts)
