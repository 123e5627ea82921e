"""Helpers of the reliability suite: expectations from the emulator's truth, fast in-process reads.

Every expectation is derived from `emulator.truth(resource)`, never from a previous read: a test
fails when a record is lost, duplicated or read outside the bounds the engine promises.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from source_klaviyo.catalog import ConfiguredStream
from source_klaviyo.checkpoints import read_upper
from source_klaviyo.config import parse_config
from source_klaviyo.datetimes import parse_datetime, utc_now
from source_klaviyo.engine import ReadResult, read_streams
from source_klaviyo.http import KlaviyoClient
from source_klaviyo.streams import STREAMS_BY_NAME
from tests.connector.helpers import CollectingSink, InstantClock

API_KEY = "pk_emulator"
# Small enough that a `timeout` fault costs well under a second, large enough that a 1,000-event
# page served by a loaded 2-core box is not mistaken for a hang.
REQUEST_TIMEOUT = 0.6
HANG_SECONDS = 3.0


@dataclass(frozen=True)
class Truth:
    """Where a stream's ground truth lives: the emulator resource, its cursor, a filter, the key."""

    resource: str
    cursor: str | None = None
    keep: Callable[[dict[str, Any]], bool] | None = None
    key: tuple[str, ...] = ("id",)


TRUTH: dict[str, Truth] = {
    "campaigns": Truth("campaigns", "updated_at"),
    "campaigns_detailed": Truth("campaigns", "updated_at"),
    "campaign_messages": Truth("campaign-messages"),
    "email_templates": Truth("templates", "updated"),
    "events": Truth("events", "datetime"),
    "events_detailed": Truth("events", "datetime"),
    "flows": Truth("flows", "updated"),
    "flow_actions": Truth("flow-actions"),
    "flow_messages": Truth("flow-messages"),
    "global_exclusions": Truth("profiles", "updated", lambda row: bool(row.get("suppressed"))),
    "lists": Truth("lists", "updated"),
    "lists_detailed": Truth("lists", "updated"),
    "list_memberships": Truth("list-memberships", key=("list_id", "profile_id")),
    "metrics": Truth("metrics", "updated"),
    "profiles": Truth("profiles", "updated"),
    "segments": Truth("segments", "updated"),
    "segment_memberships": Truth("segment-memberships", key=("segment_id", "profile_id")),
    "tags": Truth("tags"),
    "coupons": Truth("coupons"),
}
CORE_STREAMS = ["campaigns", "email_templates", "events", "flows", "global_exclusions", "lists", "metrics",
                "profiles"]
OTHER_STREAMS = [name for name in TRUTH if name not in CORE_STREAMS]
INCREMENTAL_STREAMS = [name for name in TRUTH if STREAMS_BY_NAME[name].incremental is not None]


def key_of(stream: str, record: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(record[part] for part in TRUTH[stream].key)


def truth_rows(emulator: Any, stream: str) -> list[dict[str, Any]]:
    spec = TRUTH[stream]
    return [row for row in emulator.truth(spec.resource) if spec.keep is None or spec.keep(row)]


def expected_keys(emulator: Any, stream: str, lower: datetime | None = None,
                  upper: datetime | None = None) -> set[tuple[Any, ...]]:
    """Keys of the truth rows whose cursor is in `[lower, upper)` (bounds ignored without a cursor)."""
    spec = TRUTH[stream]
    keys = set()
    for row in truth_rows(emulator, stream):
        if spec.cursor is not None and (lower is not None or upper is not None):
            moment = parse_datetime(row[spec.cursor])
            if (lower is not None and moment < lower) or (upper is not None and moment >= upper):
                continue
        keys.add(tuple(row[part] for part in spec.key))
    return keys


def cursor_by_key(emulator: Any, stream: str) -> dict[tuple[Any, ...], datetime]:
    spec = TRUTH[stream]
    assert spec.cursor is not None
    return {
        tuple(row[p] for p in spec.key): parse_datetime(row[spec.cursor])
        for row in truth_rows(emulator, stream)
    }


def saved_floor_by_key(emulator: Any, stream: str, state: dict[str, Any]) -> dict[tuple[Any, ...], datetime]:
    """For each truth record whose partition the state has a cursor for: that cursor. A partition the
    state does not list never checkpointed, so all of it may come again."""
    spec = TRUTH[stream]
    cursor = spec.cursor
    assert cursor is not None
    if "states" not in state:
        return dict.fromkeys(cursor_by_key(emulator, stream), parse_datetime(state[cursor]))
    saved = {tuple(sorted(entry["partition"].items())): parse_datetime(entry["cursor"][cursor])
             for entry in state["states"]}
    floors = {}
    for row in truth_rows(emulator, stream):
        partition = {"archived": "true" if row.get("archived") else "false"}
        if "channel" in row:
            partition["campaign_type"] = row["channel"]
        floor = saved.get(tuple(sorted(partition.items())))
        if floor is not None:
            floors[tuple(row[p] for p in spec.key)] = floor
    return floors


def duplicates(keys: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [key for key, count in Counter(keys).items() if count > 1]


def upper_for(now: datetime) -> datetime:
    """The exclusive upper bound of an incremental read whose clock says `now`."""
    return read_upper(now)


def fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def configured(names: Iterable[str], sync_mode: str = "incremental",
               **overrides: Any) -> list[ConfiguredStream]:
    """Configured streams; `page_size=` lowers each stream's page size (never above the endpoint's
    maximum) and `split=False` reads each range as one chain, never cut: tests vary what the table fixes."""
    result = []
    for name in names:
        stream = STREAMS_BY_NAME[name]
        if overrides.get("split") is False:
            stream = dataclasses.replace(stream, split_by=None)
        if overrides.get("page_size") and stream.page_size:
            stream = dataclasses.replace(stream, page_size=min(stream.page_size, overrides["page_size"]))
        mode = sync_mode if stream.incremental is not None else "full_refresh"
        result.append(ConfiguredStream(stream, mode))  # type: ignore[arg-type]
    return result


def fast_read(url: str, streams: list[ConfiguredStream] | list[str], *, sync_mode: str = "incremental",
              state: dict[str, dict] | None = None, clock: Callable[[], datetime] = utc_now,
              api_key: str = API_KEY, max_attempts: int = 8,
              client_class: type[KlaviyoClient] = KlaviyoClient, **config_extra: Any,
              ) -> tuple[CollectingSink, ReadResult]:
    """One in-process read on simulated time: backoff and Retry-After waits cost nothing, only a
    hang costs its `request_timeout_seconds`; the retry policy is the production one otherwise.

    The time budget of retries is lifted: on one simulated clock, a concurrent request's 120 s
    Retry-After would count as failing time of every request in flight (in real time it cannot),
    so here the attempt budget bounds retries; `tests/connector/test_http.py` covers the time budget."""
    raw = {"api_key": api_key, "base_url": url, "request_timeout_seconds": REQUEST_TIMEOUT, **config_extra}
    config, _ = parse_config(raw)
    chosen = configured(streams, sync_mode) if streams and isinstance(streams[0], str) else streams
    sink = CollectingSink()

    async def read() -> ReadResult:
        async with client_class(config, clock=InstantClock(), max_attempts=max_attempts,
                                retry_time_budget=1e9) as client:
            return await read_streams(config, chosen, state or {}, sink, client=client,  # type: ignore[arg-type]
                                      clock=clock)

    return sink, asyncio.run(read())


def keys_read(sink: CollectingSink, stream: str) -> list[tuple[Any, ...]]:
    return [key_of(stream, record) for record in sink.by_stream.get(stream, [])]


def assert_exact(
    sink: CollectingSink, stream: str, expected: set[tuple[Any, ...]], context: str = ""
) -> None:
    keys = keys_read(sink, stream)
    dupes = duplicates(keys)
    assert not dupes, f"{stream}{context}: {len(dupes)} records emitted twice in one read, e.g. {dupes[:3]}"
    got = set(keys)
    lost, extra = expected - got, got - expected
    problem = (f"{stream}{context}: {len(lost)} lost (e.g. {sorted(lost)[:3]}), "
               f"{len(extra)} unexpected (e.g. {sorted(extra)[:3]})")
    assert not lost, problem
    assert not extra, problem


def states_cursor(stream: str, state: dict[str, Any]) -> list[datetime]:
    """Every cursor value of a stream state (one, or one per partition)."""
    cursor = TRUTH[stream].cursor
    assert cursor is not None
    if "states" in state:
        return [parse_datetime(entry["cursor"][cursor]) for entry in state["states"]]
    return [parse_datetime(state[cursor])]


def re_read_below_the_saved_cursor(emu: Any, stream: str, state: dict[str, Any],
                                   twice: set[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Records read again although the state vouches for them: below their partition's cursor and
    outside the state's gaps. (A gap is read again: records its chain emitted after the state may
    come twice, and so may those stamped in the second it starts, where that chain had got to.)"""
    cursors = cursor_by_key(emu, stream)
    floors = saved_floor_by_key(emu, stream, state)
    gaps = state_gaps(state)
    return sorted(key for key in twice if key in floors and cursors[key] < floors[key]
                  and not any(low <= cursors[key] < high for low, high in gaps))


def state_gaps(state: dict[str, Any]) -> list[tuple[datetime, datetime]]:
    """The gaps of a state: ranges below its cursor never read, `[start, end)`."""
    entries = state.get("states", [state])
    return [(parse_datetime(gap["start"]), parse_datetime(gap["end"]))
            for entry in entries for gap in entry.get("gaps") or ()]


def assert_duplicates_within_the_last_checkpoint_interval(emu: Any, cut: CollectingSink, stream: str,
                                                         twice: set[tuple[Any, ...]]) -> None:
    """The at-least-once bound of docs/guarantees.md: a resumed read re-emits only records whose cursor
    is >= the last state's cursor; on a sorted, unwindowed stream, only those the cut run emitted
    after its last state, plus those stamped in the state's own second."""
    state = cut.final_state(stream)
    if state is None:
        return  # no checkpoint: the whole stream is the interval
    cursors = cursor_by_key(emu, stream)
    edges = states_cursor(stream, state)
    below = re_read_below_the_saved_cursor(emu, stream, state, twice)
    assert not below, f"{stream}: records below their partition's saved cursor were read again: {below[:3]}"
    declared = STREAMS_BY_NAME[stream].incremental
    unsplit = STREAMS_BY_NAME[stream].split_by is None
    if declared is not None and declared.assume_sorted and declared.sortable and unsplit:
        early = sorted(key for key in twice & covered_by_last_state(cut, stream) if cursors[key] not in edges)
        assert not early, f"{stream}: records emitted before the last state were read again: {early[:3]}"


def covered_by_last_state(sink: CollectingSink, stream: str) -> set[tuple[Any, ...]]:
    """Keys the run emitted before its last STATE of `stream` (what that state vouches for)."""
    emitted: list[tuple[Any, ...]] = []
    covered: set[tuple[Any, ...]] = set()
    position = 0
    records = sink.by_stream.get(stream, [])
    for kind, payload in sink.events:
        if kind == "records" and payload[0] == stream:
            emitted.extend(key_of(stream, r) for r in records[position:position + payload[1]])
            position += payload[1]
        elif kind == "state" and payload[0] == stream:
            covered = set(emitted)
    return covered


ONE_DAY = timedelta(days=1)


class ServerThread:
    """An aiohttp application of a test's own on a free loopback port, served from a daemon thread.

        with ServerThread(app) as server:
            server.url  # http://127.0.0.1:PORT
    """

    def __init__(self, app: Any) -> None:
        import threading

        from aiohttp import web

        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2, handle_signals=False)
        self.url = ""
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


class OutageProxy:
    """A proxy in front of the emulator that forwards the first `healthy` API requests, then answers
    every later one with `status` (a fault outlasting any retry budget, mid-read)."""

    def __init__(self, upstream: str, healthy: int, status: int = 503) -> None:
        import aiohttp
        from aiohttp import web

        self.forwarded = 0
        self.refused = 0

        async def handle(request: web.Request) -> web.StreamResponse:
            if self.forwarded >= healthy:
                self.refused += 1
                return web.json_response({"errors": [{"status": status, "detail": "outage"}]}, status=status)
            self.forwarded += 1
            headers = {
                k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
            }
            async with aiohttp.ClientSession() as session, session.request(
                request.method, upstream + request.raw_path, headers={**headers, "Host": request.host},
                data=await request.read() or None, allow_redirects=False,
            ) as answer:
                body = await answer.read()
                keep = {k: v for k, v in answer.headers.items()
                        if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")}
                return web.Response(status=answer.status, body=body, headers=keep)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._server = ServerThread(app)
        self.url = self._server.url

    def __enter__(self) -> OutageProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__()
