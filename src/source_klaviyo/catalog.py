"""The discovered catalog, and parsing of the configured catalog the platform sends to `read`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .contracts import JSON, JSONObject
from .errors import ConfigError
from .schemas import load_schema
from .streams import STREAMS, STREAMS_BY_NAME, Stream

SyncMode = Literal["full_refresh", "incremental"]
SYNC_MODES: tuple[str, ...] = ("full_refresh", "incremental")


@dataclass(frozen=True)
class ConfiguredStream:
    stream: Stream
    sync_mode: SyncMode = "full_refresh"

    @property
    def name(self) -> str:
        return self.stream.name

    @property
    def incremental(self) -> bool:
        return self.sync_mode == "incremental"


def stream_entry(stream: Stream) -> JSONObject:
    """One AirbyteStream of the discovered catalog."""
    entry: JSONObject = {
        "name": stream.name,
        "json_schema": load_schema(stream.schema_name),
        "supported_sync_modes": ["full_refresh", "incremental"] if stream.incremental else ["full_refresh"],
        "source_defined_primary_key": [[key] for key in stream.primary_key],
        "is_resumable": stream.incremental is not None,
    }
    if stream.incremental:
        entry["source_defined_cursor"] = True
        entry["default_cursor_field"] = list(stream.default_cursor_field)
    return entry


def discover() -> JSONObject:
    return {"streams": [stream_entry(stream) for stream in STREAMS]}


def parse_configured_catalog(raw: JSON) -> list[ConfiguredStream]:
    """Validate the configured catalog; every problem is one `ConfigError` naming it."""
    if not isinstance(raw, dict) or not isinstance(raw.get("streams"), list):
        raise ConfigError('the catalog must be a JSON object with a "streams" list')
    configured: list[ConfiguredStream] = []
    seen: set[str] = set()
    for position, entry in enumerate(raw["streams"]):
        where = f"catalog streams[{position}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("stream"), dict):
            raise ConfigError(f'{where} must be an object with a "stream" object')
        name = entry["stream"].get("name")
        if not isinstance(name, str):
            raise ConfigError(f'{where}: "stream.name" is missing or not a string')
        stream = STREAMS_BY_NAME.get(name)
        if stream is None:
            known = ", ".join(sorted(STREAMS_BY_NAME))
            raise ConfigError(f"{where}: unknown stream {name!r}; the streams are: {known}")
        if name in seen:
            raise ConfigError(f"{where}: stream {name!r} is configured twice")
        seen.add(name)
        sync_mode = entry.get("sync_mode", "full_refresh")
        if sync_mode not in SYNC_MODES:
            raise ConfigError(f"{where}: stream {name!r} has an unknown sync_mode {sync_mode!r}")
        if sync_mode == "incremental" and stream.incremental is None:
            raise ConfigError(f"{where}: stream {name!r} supports only full_refresh, not incremental")
        configured.append(ConfiguredStream(stream, sync_mode))
    if not configured:
        raise ConfigError("the catalog selects no streams")
    return configured


def configured_catalog(names: list[str] | None = None, sync_mode: SyncMode = "incremental") -> JSONObject:
    """A configured catalog for `names` (default: all), incremental where the stream supports it."""
    selected = [STREAMS_BY_NAME[name] for name in names] if names else list(STREAMS)
    return {
        "streams": [
            {
                "stream": stream_entry(stream),
                "sync_mode": sync_mode if stream.incremental else "full_refresh",
                "destination_sync_mode": "append_dedup" if stream.incremental else "overwrite",
                **({"cursor_field": list(stream.default_cursor_field)} if stream.incremental else {}),
                "primary_key": [[key] for key in stream.primary_key],
            }
            for stream in selected
        ]
    }
