"""A tiny blocking HTTP client for the emulator tests, and the vocabulary they share.

Plain ``urllib`` on purpose: every test reads as request -> status/body, faults surface as the
exceptions a real client sees, and a burst is a thread pool away.
"""

from __future__ import annotations

import http.client
import json
import queue
import re
import subprocess
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from typing import Any
from urllib.parse import quote, urlencode

from klaviyo_emulator import cli as emulator_cli

REVISION = "2026-07-15"
API_KEY = "pk_emulator"
_NO_HEADER = object()

# API path segment -> (list path, cursor attribute by its API name, max page size or None)
COLLECTIONS: dict[str, tuple[str, str | None, int | None]] = {
    "profiles": ("/api/profiles", "updated", 100),
    "events": ("/api/events", "datetime", 1000),
    "metrics": ("/api/metrics", "updated", None),
    "templates": ("/api/templates", "updated", 10),
    "flows": ("/api/flows", "updated", 50),
    "lists": ("/api/lists", "updated", 10),
    "segments": ("/api/segments", "updated", 10),
    "tags": ("/api/tags", None, 50),
    "coupons": ("/api/coupons", None, 100),
    "campaigns": ("/api/campaigns", "updated_at", 100),
}
CHANNELS = ("email", "sms", "mobile_push")


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes
    url: str
    _json: Any = field(default=None, repr=False)

    def json(self) -> Any:
        if self._json is None:
            self._json = json.loads(self.body)
        return self._json

    @property
    def error(self) -> dict[str, Any]:
        """The first JSON:API error object (asserting there is one)."""
        errors = self.json().get("errors")
        assert errors, f"expected an error body, got {self.body[:300]!r}"
        return errors[0]

    def header_int(self, name: str) -> int:
        value = self.headers.get(name)
        assert value is not None, f"missing header {name}; headers: {dict(self.headers)}"
        match = re.match(r"\s*(\d+)", value)
        assert match, f"{name}: {value!r} is not an integer"
        return int(match.group(1))


def build_url(
    base: str, path: str, params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None
) -> str:
    url = path if path.startswith("http") else base.rstrip("/") + path
    if params:
        items = params.items() if isinstance(params, Mapping) else params
        url += "?" + urlencode([(k, str(v)) for k, v in items], quote_via=quote, safe="")
    return url


def request(
    base: str,
    path: str,
    params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
    *,
    method: str = "GET",
    body: Any = None,
    api_key: str | object | None = API_KEY,
    revision: str | object | None = REVISION,
    headers: Mapping[str, str] | None = None,
    timeout: float = 15.0,
) -> Response:
    """One request; ``api_key=None`` / ``revision=None`` leave that header out entirely.

    ``path`` may be an absolute URL (a ``links.next``), used verbatim.
    """
    url = build_url(base, path, params)
    all_headers = {"accept": "application/vnd.api+json"}
    if api_key is not None:
        all_headers["Authorization"] = f"Klaviyo-API-Key {api_key}"
    if revision is not None:
        all_headers["revision"] = str(revision)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        all_headers["content-type"] = "application/vnd.api+json"
    all_headers.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Response(resp.status, resp.headers, resp.read(), url)
    except urllib.error.HTTPError as err:
        with err:
            return Response(err.code, err.headers, err.read(), url)


def get_json(base: str, path: str, params=None, **kw) -> Any:
    resp = request(base, path, params, **kw)
    assert resp.status == 200, f"GET {resp.url} -> {resp.status}: {resp.body[:500]!r}"
    return resp.json()


def walk(base: str, path: str, params=None, *, max_pages: int = 3000, **kw) -> list[Response]:
    """Every page of a collection, following ``links.next`` verbatim; each page must be a 200."""
    pages: list[Response] = []
    seen: set[str] = set()
    url: str | None = build_url(base, path, params)
    while url:
        assert url not in seen, f"links.next repeats {url}"
        assert len(pages) < max_pages, f"more than {max_pages} pages from {path}"
        seen.add(url)
        resp = request(base, url, **kw)
        assert resp.status == 200, f"GET {url} -> {resp.status}: {resp.body[:500]!r}"
        pages.append(resp)
        url = (resp.json().get("links") or {}).get("next")
    return pages


def records(pages: Iterable[Response]) -> list[dict[str, Any]]:
    return [rec for page in pages for rec in page.json()["data"]]


def ids(recs: Iterable[Mapping[str, Any]]) -> list[str]:
    return [r["id"] for r in recs]


def assert_unique(values: Iterable[Any]) -> None:
    dupes = [v for v, n in Counter(values).items() if n > 1]
    assert not dupes, f"duplicates: {dupes[:10]}"


def fmt_dt(value: datetime) -> str:
    """The datetime literal filters take: unquoted ISO 8601 with offset (and microseconds if any)."""
    return value.astimezone(UTC).isoformat()


def parse_dt(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def cursor_of(record: Mapping[str, Any], cursor: str) -> str:
    return record["attributes"][cursor]


def burst(fn, count: int) -> list[Any]:
    """Run ``fn()`` ``count`` times at once (threads released together by the pool)."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: fn(), range(count)))


def memberships(truth: list[dict[str, Any]], group: str) -> dict[str, set[str]]:
    """group id -> profile ids, from ``truth("list-memberships")`` / ``truth("segment-memberships")``."""
    out: dict[str, set[str]] = {}
    for entry in truth:
        group_id = entry.get(f"{group}_id") or entry.get("group_id")
        profile_id = entry.get("profile_id") or entry.get("id")
        assert group_id, f"membership truth entry without {group}_id: {entry}"
        assert profile_id, f"membership truth entry without profile_id: {entry}"
        out.setdefault(group_id, set()).add(profile_id)
    return out


# Request bodies of the reports: valid, and asking for rows over the last days (campaigns: the last
# year, since the report selects campaigns by send date and a tiny account sends a few a year).
def campaign_values_body(metric_id: str) -> dict:
    return {
        "data": {
            "type": "campaign-values-report",
            "attributes": {
                "statistics": ["opens", "clicks", "recipients", "conversion_value", "open_rate"],
                "timeframe": {"key": "last_365_days"},
                "conversion_metric_id": metric_id,
                "group_by": ["campaign_id", "campaign_message_id", "send_channel"],
            },
        }
    }


def flow_series_body(metric_id: str) -> dict:
    return {
        "data": {
            "type": "flow-series-report",
            "attributes": {
                "statistics": ["opens", "clicks", "recipients"],
                "timeframe": {"key": "last_7_days"},
                "interval": "daily",
                "conversion_metric_id": metric_id,
            },
        }
    }


def flow_values_body(metric_id: str) -> dict:
    return {
        "data": {
            "type": "flow-values-report",
            "attributes": {
                "statistics": ["opens", "recipients", "conversions", "conversion_value", "open_rate"],
                "timeframe": {"key": "last_30_days"},
                "conversion_metric_id": metric_id,
                "group_by": ["flow_id", "flow_message_id", "send_channel"],
            },
        }
    }


def form_values_body(_metric_id: str = "") -> dict:
    """Form reports have no conversion metric either."""
    return {
        "data": {
            "type": "form-values-report",
            "attributes": {"statistics": ["viewed_form", "submits", "submit_rate"],
                           "timeframe": {"key": "last_365_days"}, "group_by": ["form_id"]},
        }
    }


def form_series_body(_metric_id: str = "") -> dict:
    return {
        "data": {
            "type": "form-series-report",
            "attributes": {
                "statistics": ["viewed_form_uniques", "qualified_form", "submits"],
                "timeframe": {"key": "last_7_days"},
                "interval": "daily",
                "group_by": ["form_id", "form_version_id"],
            },
        }
    }


def segment_values_body(_metric_id: str = "") -> dict:
    """Segment reports have no conversion metric: the argument is there to share the bodies' signature."""
    return {
        "data": {
            "type": "segment-values-report",
            "attributes": {"statistics": ["members_added", "total_members"],
                           "timeframe": {"key": "last_365_days"}},
        }
    }


def segment_series_body(_metric_id: str = "") -> dict:
    return {
        "data": {
            "type": "segment-series-report",
            "attributes": {
                "statistics": ["members_added", "net_members_changed", "total_members"],
                "timeframe": {"key": "last_7_days"},
                "interval": "daily",
            },
        }
    }


def is_connection_failure(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionError | http.client.HTTPException | urllib.error.URLError | OSError)


_URL = re.compile(r"https?://[\w.\-]+:\d+")


@contextmanager
def served(*args: str, wait_seconds: float = 30.0) -> Iterator[str]:
    """`klaviyo-emulator ARGS` as a process: the URL it prints, then the process stopped."""
    proc = subprocess.Popen([*emulator_cli.command(), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    try:
        yield _first_url(proc, wait_seconds)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _first_url(proc: subprocess.Popen[str], wait_seconds: float) -> str:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen = []
    while True:
        try:
            line = lines.get(timeout=wait_seconds)
        except queue.Empty:
            raise AssertionError(f"no URL printed within {wait_seconds}s; got {seen}") from None
        seen.append(line)
        match = _URL.search(line)
        if match:
            return match.group(0)

