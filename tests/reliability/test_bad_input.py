"""Bad input of every kind gives one clear error naming the problem, of the right failure type, a non-zero
exit and nothing half-written; odd but valid API answers pass through losslessly."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from source_klaviyo.catalog import configured_catalog
from source_klaviyo.cli import main
from source_klaviyo.datetimes import utc_now
from tests.reliability.helpers import ServerThread, fast_read

KEY = "pk_SECRET_badinput_7f3a9c"
URL = "http://127.0.0.1:9"  # nothing listens: a config error must be found before any request
GOOD_CONFIG: dict[str, Any] = {"api_key": KEY, "base_url": URL}
GOOD_CATALOG = configured_catalog(["events", "metrics"])


def run_main(
    tmp_path: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
    *,
    config: Any = GOOD_CONFIG,
    catalog: Any = GOOD_CATALOG,
    state: Any = None,
    command: str = "read",
) -> tuple[int, list[dict], str]:
    """`source-klaviyo COMMAND` in-process; file contents given as str are written verbatim."""
    def write(name: str, content: Any) -> str:
        path = tmp_path / f"{name}.json"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        return str(path)

    argv = [command, "--config", write("config", config)]
    if command == "read":
        argv += ["--catalog", write("catalog", catalog)]
        if state is not None:
            argv += ["--state", write("state", state)]
    code = main(argv)
    out, err = capsysbinary.readouterr()
    text = out.decode() + err.decode()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], text


def assert_one_config_error(code: int, messages: list[dict], text: str, *mentions: str) -> None:
    assert code != 0
    errors = [m["trace"]["error"] for m in messages if m["type"] == "TRACE" and m["trace"]["type"] == "ERROR"]
    assert len(errors) == 1, messages
    assert errors[0]["failure_type"] == "config_error"
    assert "stack_trace" not in errors[0]
    for mention in mentions:
        assert mention in errors[0]["message"], errors[0]["message"]
    assert not [m for m in messages if m["type"] in ("RECORD", "STATE")], "half-written output"
    assert KEY not in text


BAD_CONFIGS: list[tuple[Any, tuple[str, ...]]] = [
    ('{"api_key": "' + KEY + '", "base_url": ', ("not valid JSON", "line 1")),
    ("[1, 2]", ("JSON object",)),
    ('"pk_just_a_string"', ("JSON object",)),
    ("", ("JSON object",)),  # an empty file
    (b"\xff\xfe{\x00}\x00", ("UTF-8",)),  # UTF-16
    ({"base_url": URL}, ("api_key", "missing")),
    ({"api_key": 12345, "base_url": URL}, ("api_key", "string")),
    ({"api_key": "   ", "base_url": URL}, ("api_key", "empty")),
    ({**GOOD_CONFIG, "start_date": "2024-02-30"}, ("start_date", "2024-02-30", "day is out of range")),
    ({**GOOD_CONFIG, "start_date": "2023-02-29T00:00:00Z"}, ("start_date",)),
    ({**GOOD_CONFIG, "start_date": "2024-13-01"}, ("start_date", "2024-13-01")),
    ({**GOOD_CONFIG, "start_date": "2024-01-01T24:30:00Z"}, ("start_date",)),
    (
        {**GOOD_CONFIG, "start_date": "\uff12\uff10\uff12\uff14-01-01"},
        ("start_date", "\uff12\uff10"),
    ),  # fullwidth
    ({**GOOD_CONFIG, "start_date": "yesterday"}, ("start_date", "yesterday")),
    ({**GOOD_CONFIG, "start_date": 20240101}, ("start_date", "20240101")),
    ({**GOOD_CONFIG, "start_date": "2999-01-01T00:00:00Z"}, ("start_date", "future")),
    ({**GOOD_CONFIG, "num_workers": 0}, ("num_workers", "between 1 and 50", "0")),
    ({**GOOD_CONFIG, "num_workers": 51}, ("num_workers", "51")),
    ({**GOOD_CONFIG, "num_workers": "ten"}, ("num_workers", "ten")),
    ({**GOOD_CONFIG, "num_workers": 2.5}, ("num_workers", "2.5")),
    ({**GOOD_CONFIG, "num_workers": True}, ("num_workers", "boolean")),
    ({**GOOD_CONFIG, "num_workers": -1}, ("num_workers",)),
    (
        {**GOOD_CONFIG, "disable_fetching_predictive_analytics": "sometimes"},
        ("disable_fetching_predictive_analytics",),
    ),
    ({**GOOD_CONFIG, "base_url": "http://a.klaviyo.com"}, ("base_url", "https")),
    ({**GOOD_CONFIG, "base_url": "ftp://127.0.0.1"}, ("base_url",)),
    ({**GOOD_CONFIG, "base_url": "https://user:pw@a.klaviyo.com"}, ("base_url", "password")),
    ({**GOOD_CONFIG, "base_url": "https://a.klaviyo.com/api?x=1"}, ("base_url", "path")),
    ({**GOOD_CONFIG, "base_url": ["https://a.klaviyo.com"]}, ("base_url",)),
    ({**GOOD_CONFIG, "request_timeout_seconds": 0}, ("request_timeout_seconds",)),
    ({**GOOD_CONFIG, "request_timeout_seconds": "fast"}, ("request_timeout_seconds",)),
    ({**GOOD_CONFIG, "start_date": KEY}, ("start_date",)),  # the key pasted in the wrong field
]


@pytest.mark.parametrize(("config", "mentions"), BAD_CONFIGS, ids=[str(i) for i in range(len(BAD_CONFIGS))])
@pytest.mark.parametrize("command", ["read", "check", "discover"])
def test_a_bad_config_is_one_config_error_naming_the_field(tmp_path, capsysbinary, command, config, mentions):
    code, messages, text = run_main(tmp_path, capsysbinary, config=config, command=command)
    assert_one_config_error(code, messages, text, *mentions)


BAD_CATALOGS: list[tuple[Any, tuple[str, ...]]] = [
    ('{"streams": [', ("catalog", "not valid JSON")),
    ({}, ("streams",)),
    ({"streams": "events"}, ("streams",)),
    ({"streams": []}, ("no streams",)),
    (
        {"streams": [{"stream": {"name": "evénts_ünknown_🙂"}, "sync_mode": "full_refresh"}]},
        ("evénts_ünknown_🙂",),
    ),
    ({"streams": [{"stream": {"name": 7}, "sync_mode": "full_refresh"}]}, ("stream.name",)),
    ({"streams": [{"stream": {"name": "events"}}, {"stream": {"name": "events"}}]}, ("twice",)),
    ({"streams": [{"stream": {"name": "tags"}, "sync_mode": "incremental"}]}, ("tags", "full_refresh")),
    ({"streams": [{"stream": {"name": "events"}, "sync_mode": "sideways"}]}, ("sideways",)),
    ({"streams": [["events"]]}, ("streams[0]",)),
]


@pytest.mark.parametrize(
    ("catalog", "mentions"), BAD_CATALOGS, ids=[str(i) for i in range(len(BAD_CATALOGS))]
)
def test_a_bad_catalog_is_one_config_error_naming_the_problem(tmp_path, capsysbinary, catalog, mentions):
    code, messages, text = run_main(tmp_path, capsysbinary, catalog=catalog)
    assert_one_config_error(code, messages, text, *mentions)


def _state(name: str, value: Any) -> list[dict]:
    return [{"type": "STREAM", "stream": {"stream_descriptor": {"name": name}, "stream_state": value}}]


BAD_STATES: list[tuple[Any, tuple[str, ...]]] = [
    ("[{", ("state", "not valid JSON")),
    ('"yesterday"', ("state",)),
    ([1, 2], ("state message #1",)),
    ({"events": 5}, ("events",)),
    ([{"type": "STREAM"}], ("stream",)),
    (_state("events", "x"), ("events",)),
    (_state("events", {"datetime": "2024-02-30T00:00:00Z"}), ("events", "2024-02-30T00:00:00Z")),
    (_state("events", {"datetime": "soon"}), ("events", "soon")),
    (_state("metrics", {"updated": "2024-01-01T99:00:00Z"}), ("metrics",)),
]


@pytest.mark.parametrize(("state", "mentions"), BAD_STATES, ids=[str(i) for i in range(len(BAD_STATES))])
def test_a_bad_state_is_one_config_error_naming_the_stream(tmp_path, capsysbinary, state, mentions):
    code, messages, text = run_main(tmp_path, capsysbinary, state=state)
    assert_one_config_error(code, messages, text, *mentions)


def test_through_the_real_process_a_bad_input_exits_1_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({**GOOD_CONFIG, "num_workers": "ten"}))
    (tmp_path / "catalog.json").write_text(json.dumps(GOOD_CATALOG))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "source_klaviyo",
            "read",
            "--config",
            str(tmp_path / "config.json"),
            "--catalog",
            str(tmp_path / "catalog.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["trace"]["error"]["failure_type"] == "config_error"
    assert "Traceback" not in done.stderr
    assert KEY not in done.stdout + done.stderr


# -- the API answers something odd -----------------------------------------------------------------------
def event(n: int, **attributes: Any) -> dict[str, Any]:
    return {"type": "event", "id": f"ev{n}",
            "attributes": {"datetime": "2026-01-01T00:00:00+00:00", "timestamp": 1767225600,
                           "event_properties": {}, **attributes},
            "relationships": {}}


def page(data: Any, next_url: Any = None) -> bytes:
    return json.dumps({"data": data, "links": {"self": "x", "next": next_url}}).encode()


@pytest.fixture
def odd_api() -> Iterator[tuple[str, dict[str, Any]]]:
    """A Klaviyo stand-in whose /api/events answer is set by the test: `answers["events"]` is a
    callable (url) -> web.Response; `answers["hits"]` counts requests."""
    answers: dict[str, Any] = {"hits": 0}

    async def handle(request: web.Request) -> web.StreamResponse:
        answers["hits"] += 1
        return answers["events"](str(request.url).split(request.host, 1)[1], request)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    with ServerThread(app) as server:
        answers["url"] = server.url
        yield server.url, answers


def jsonapi(
    body: bytes, status: int = 200, content_type: str = "application/vnd.api+json"
) -> Callable[..., web.Response]:
    return lambda path, request: web.Response(status=status, body=body, content_type=content_type)


ODD_ANSWERS: list[tuple[str, Callable[..., web.Response], str, str]] = [
    ("data is not a list", jsonapi(b'{"data": "nope"}'), "system_error", "without a data list"),
    (
        "data holds numbers",
        jsonapi(b'{"data": [1, 2, 3]}'),
        "system_error",
        "without a data list of resource",
    ),
    ("no data at all", jsonapi(b'{"meta": {}}'), "system_error", "without a data list"),
    ("next is a number", jsonapi(page([event(1)], 42)), "system_error", "links.next that is not a URL"),
    ("links is a list", jsonapi(b'{"data": [], "links": []}'), "", ""),
    ("plain text 200", jsonapi(b"hello", content_type="text/plain"), "transient_error", "incomplete"),
    (
        "HTML 200",
        jsonapi(b"<html><body>maintenance</body></html>", content_type="text/html"),
        "transient_error",
        "incomplete",
    ),
    ("a JSON array", jsonapi(b"[1, 2]"), "transient_error", "incomplete"),
    (
        "JSON nested 100,000 deep",
        jsonapi(b'{"data": [' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"]}"),
        "transient_error",
        "not valid JSON",
    ),
    (
        "a 400 with a body that is not JSON:API",
        jsonapi(b"<h1>bad</h1>", status=400, content_type="text/html"),
        "system_error",
        "400",
    ),
    ("a 404", jsonapi(b'{"errors": [{"detail": "gone"}]}', status=404), "system_error", "404"),
]


@pytest.mark.parametrize(
    ("case", "answer", "failure_type", "mentions"), ODD_ANSWERS, ids=[c[0] for c in ODD_ANSWERS]
)
def test_an_answer_that_violates_the_api_fails_the_stream_clearly(
    odd_api, case, answer, failure_type, mentions
):
    url, answers = odd_api
    answers["events"] = answer
    sink, result = fast_read(url, ["events"], sync_mode="full_refresh", api_key=KEY, max_attempts=2)
    if not failure_type:  # odd but harmless: read as an empty page
        assert result.ok
        assert not sink.errors
        return
    assert result.statuses == {"events": "INCOMPLETE"}
    assert len(sink.errors) == 1
    error = sink.errors[0][1]
    assert error.failure_type == failure_type, error.message
    assert mentions in error.message, error.message
    assert "failed unexpectedly" not in error.message
    assert not sink.states.get("events")


def test_huge_records_and_unicode_everywhere_pass_through_losslessly(odd_api) -> None:
    url, answers = odd_api
    odd = {
        "huge": "x" * 8_000_000,
        "emoji 🙂 key": "🙂👩‍👩‍👧‍👦 ﷽ עברית العربية \u200b\u202e zero-width and bidi",
        "nul": "a\u0000b",
        "lone_surrogate": "\ud800",
        "big": 123456789012345678901234567890,
        "negative_big": -98765432109876543210987654321,
        "float": 1.5e300,
        "nested": {"ключ": ["значение", None, True, {"深い": "値"}]},
    }
    records = [event(1, event_properties=odd), event(2, datetime="2026-01-01T00:00:00Z")]
    for record in records:  # /api/metrics: one request, filtered here, so the stand-in can ignore filters
        record["attributes"]["updated"] = "2026-01-01T00:00:00+00:00"
    body = json.dumps(
        {"data": records, "links": {"next": None}}
    ).encode()  # ensure_ascii: \ud800 stays escaped
    answers["events"] = jsonapi(body)
    sink, result = fast_read(url, ["metrics"], api_key=KEY)
    assert result.ok, sink.errors
    assert [r["id"] for r in sink.by_stream["metrics"]] == ["ev1", "ev2"]
    assert sink.by_stream["metrics"][0]["attributes"]["event_properties"] == odd

    from source_klaviyo.protocol import MessageWriter

    class Buffer:
        def __init__(self) -> None:
            self.data = b""

        def write(self, data: bytes) -> None:
            self.data += data

        def flush(self) -> None:
            pass

    out = Buffer()
    MessageWriter(out).records("metrics", sink.by_stream["metrics"])  # type: ignore[arg-type]
    line = out.data.splitlines()[0]
    assert json.loads(line)["record"]["data"]["attributes"]["event_properties"] == odd


def test_a_future_state_is_pulled_back_to_now_never_kept(odd_api) -> None:
    url, answers = odd_api
    answers["events"] = jsonapi(page([event(1)]))
    state = {"events": {"datetime": "9999-12-31T23:59:59+00:00"}}
    sink, result = fast_read(url, ["events"], state=state, api_key=KEY)
    assert result.ok
    saved = sink.final_state("events")["datetime"]
    assert saved < utc_now().isoformat()
