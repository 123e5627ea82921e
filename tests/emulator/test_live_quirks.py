"""Klaviyo's observed response shapes (quirks.py `QUIRKS`): each one is served by default and by no
`--spec-strict` emulator. One probe per quirk looks for it in real responses; a test fails if a quirk
is named without a probe, so the list, the docs and what is served cannot drift apart."""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klaviyo_emulator.cli import parser
from klaviyo_emulator.quirks import (
    QUIRKS,
    SPEC_SHAPED_OBSERVATIONS,
    _value_of,
    _value_text,
    decode_klaviyo_cursor,
    encode_klaviyo_cursor,
)
from klaviyo_emulator.runner import EmulatorOptions, RunningEmulator, run_emulator_in_thread
from klaviyo_emulator.store import World
from tests.emulator.helpers import get_json, records, request, walk

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
BY_DATE = r"next::updated::\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00::id::01\w{24}"
MICROS = re.compile(r"\.\d{6}\+00:00$")
ANCHOR = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _sibling(emu: RunningEmulator, **options) -> RunningEmulator:
    """Another emulator of the same world and mode, with other options (rate limits, faults)."""
    return run_emulator_in_thread(
        EmulatorOptions(seed=7, scale="tiny", spec_strict=emu.options.spec_strict, **options)
    )


def _cursor(link: str) -> str:
    token = parse_qs(urlsplit(link).query)["page[cursor]"][0]
    return base64.b64decode(token + "=" * (-len(token) % 4)).decode()


def _sms_message(emu: RunningEmulator) -> str:
    sms = {c["id"] for c in emu.truth("campaigns") if c["channel"] == "sms"}
    return next(m["id"] for m in emu.truth("campaign-messages") if m["campaign_id"] in sms)


def _campaigns(emu: RunningEmulator, **params) -> list[dict]:
    flt = {"filter": "equals(messages.channel,'email')"}
    return get_json(emu.url, "/api/campaigns", flt | params)["data"]


def _events(emu: RunningEmulator, **params) -> list[dict]:
    return get_json(emu.url, "/api/events", {"page[size]": 1000} | params)["data"]


# --- one probe per quirk: True when the responses show it -------------------------------------------


def trailing_slash(emu):
    tag = get_json(emu.url, "/api/tags")["data"][0]
    collection = get_json(emu.url, "/api/tags")["links"]["self"]
    rel = tag["relationships"]["tag-group"]["links"]
    return tag["links"]["self"].endswith("/") and rel["self"].endswith("/") and not collection.endswith("/")


def null_next_prev(emu):
    links = walk(emu.url, "/api/tags", {"page[size]": 50})[-1].json()["links"]
    return "next" in links and links["next"] is None and links["prev"] is None


def next_reencoded(emu):
    raw = "/api/profiles?page[size]=2&filter=greater-than(updated,2020-01-01T00:00:00%2B00:00)"
    nxt = request(emu.url, raw).json()["links"]["next"]
    return "filter=greater-than%28updated%2C2020-01-01T00%3A00%3A00%2B00%3A00%29" in nxt


def cursor_per_endpoint(emu):
    def first_next(path, **params):
        return _cursor(get_json(emu.url, path, params)["links"]["next"])

    try:
        by_id = first_next("/api/profiles", **{"page[size]": 1})
        by_date = first_next("/api/profiles", **{"page[size]": 1, "sort": "updated"})
        event = orjson.loads(first_next("/api/events", **{"page[size]": 1}))
        coupon = first_next("/api/coupons", **{"page[size]": 1})
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        return False
    return (
        by_id.startswith("next::id::01")
        and re.fullmatch(BY_DATE, by_date) is not None
        and isinstance(event, list) and isinstance(event[0], int) and event[2] is True
        and coupon.isdigit()
    )  # fmt: skip


def lists_prev_repr(emu):
    prev = get_json(emu.url, "/api/lists")["links"].get("prev")
    return prev is not None and "%28%27prev%27%2C+None%29" in prev


def microseconds(emu):
    campaign = _campaigns(emu)[0]["attributes"]
    profiles = get_json(
        emu.url, "/api/profiles", {"page[size]": 100, "additional-fields[profile]": "subscriptions"}
    )
    stamps = [
        p["attributes"]["subscriptions"]["email"]["marketing"]["last_updated"] for p in profiles["data"]
    ]
    return all(MICROS.search(campaign[f]) for f in ("created_at", "updated_at")) and any(
        s and MICROS.search(s) for s in stamps
    )


def event_datetime_space(emu):
    stamps = [e["attributes"]["datetime"] for e in _events(emu)]
    spaced = [s for s in stamps if s[10] == " "]
    return bool(spaced) and any(MICROS.search(s) for s in spaced) and any(s[10] == "T" for s in stamps)


def null_relationship_data(emu):
    path = f"/api/campaign-messages/{_sms_message(emu)}"
    included = get_json(emu.url, path, {"include": "template,image"})["data"]["relationships"]
    plain = get_json(emu.url, path)["data"]["relationships"]
    return (
        "data" in included["template"] and included["template"]["data"] is None
        and "data" in included["image"] and included["image"]["data"] is None
        and "data" not in plain["template"]
    )  # fmt: skip


def whatsapp_null(emu):
    profile = get_json(emu.url, "/api/profiles", {"additional-fields[profile]": "subscriptions"})["data"][0]
    subscriptions = profile["attributes"]["subscriptions"]
    return "whatsapp" in subscriptions and subscriptions["whatsapp"] is None


def extra_fields(emu):
    profile = get_json(emu.url, "/api/profiles", {"additional-fields[profile]": "subscriptions"})["data"][0]
    attributes = profile["attributes"]
    metric = get_json(emu.url, "/api/metrics")["data"][0]["attributes"]
    body = {
        "data": {
            "type": "flow-series-report",
            "attributes": {
                "statistics": ["opens"], "timeframe": {"key": "last_7_days"}, "interval": "daily",
                "conversion_metric_id": get_json(emu.url, "/api/metrics")["data"][0]["id"],
            },
        }
    }  # fmt: skip
    report = request(emu.url, "/api/flow-series-reports", method="POST", body=body).json()
    return (
        {"anonymous_id", "whatsapp_bsuid"} <= set(attributes)
        and "click_tracking" in attributes["subscriptions"]["email"]
        and "ignore_unsubscribes" in _campaigns(emu)[0]["attributes"]["send_options"]
        and UUID.match(report["data"].get("id", "")) is not None
        and {"next", "prev"} <= set(report["links"])
        and metric["integration"].get("object") == "integration"
    )


def attributions_absent(emu):
    return all("attributions" not in e["relationships"] for e in _events(emu, include="attributions"))


def campaign_messages_linkage(emu):
    return all(isinstance(c["relationships"]["campaign-messages"].get("data"), list) for c in _campaigns(emu))


def conversation_name(emu):
    own = get_json(emu.url, "/api/profiles")["data"][0]["relationships"]
    members = get_json(emu.url, f"/api/lists/{emu.truth('lists')[0]['id']}/profiles")["data"][0][
        "relationships"
    ]
    included = get_json(emu.url, "/api/events", {"include": "profile"})["included"]
    elsewhere = [p["relationships"] for p in included if p["type"] == "profile"] + [members]
    return "conversations" in own and all("conversation" in r and "conversations" not in r for r in elsewhere)


def _flow_messages(emu):
    actions = {m["flow_action_id"] for m in emu.truth("flow-messages")}
    return [
        m
        for a in sorted(actions)[:5]
        for m in get_json(emu.url, f"/api/flow-actions/{a}/flow-messages")["data"]
    ]


def flow_message_image(emu):
    return all("image" in m["relationships"] for m in _flow_messages(emu))


def channel_case(emu):
    channels = {m["attributes"]["channel"] for m in _flow_messages(emu)}
    campaign = get_json(emu.url, f"/api/campaign-messages/{emu.truth('campaign-messages')[0]['id']}")["data"]
    lower = campaign["attributes"]["definition"]["channel"] in ("email", "sms", "mobile_push")
    return "Email" in channels and "email" not in channels and lower


def value_int_or_float(emu):
    values = [
        e["attributes"]["event_properties"]["$value"]
        for e in records(walk(emu.url, "/api/events", {"page[size]": 1000}))
        if "OrderId" in e["attributes"]["event_properties"]
        and e["attributes"]["event_properties"]["$value"] < 2**63
    ]
    artifacts = [v for v in values if isinstance(v, float) and len(repr(v).split(".")[1]) > 6]
    return sum(isinstance(v, int) for v in values) > len(values) / 3 and bool(artifacts)


def uuid_tag_ids(emu):
    return all(UUID.match(t["id"]) for t in get_json(emu.url, "/api/tags")["data"])


def repeated_names(emu):
    lists = Counter(lst["attributes"]["name"] for lst in records(walk(emu.url, "/api/lists")))
    metrics = Counter(m["attributes"]["name"] for m in get_json(emu.url, "/api/metrics")["data"])
    return max(lists.values()) >= 5 and metrics["Clicked Email"] == 2


def is_starred_ignored(emu):
    segments = records(walk(emu.url, "/api/segments", {"filter": "equals(is_starred,true)"}))
    return any(not s["attributes"]["is_starred"] for s in segments)


def error_shapes(emu):
    unauthenticated = request(emu.url, "/api/tags", api_key="pk_nobody").error
    with _sibling(emu, rate_limits=False, faults="429=1.0") as throttling:
        throttled = request(throttling.url, "/api/tags").error
    return unauthenticated.get("source") == {"pointer": "/data/"} and "source" not in throttled


def ratelimit_policies(emu):
    with _sibling(emu, rate_limits=True) as limited:
        header = request(limited.url, "/api/events").headers["RateLimit-Limit"]
    return header == "350, 350;w=1, 3500;w=60"


PROBES: dict[str, Callable[[RunningEmulator], bool]] = {
    "resource_links_trailing_slash": trailing_slash,
    "null_next_prev": null_next_prev,
    "next_link_reencoded": next_reencoded,
    "cursor_per_endpoint": cursor_per_endpoint,
    "lists_prev_python_repr": lists_prev_repr,
    "datetime_microseconds": microseconds,
    "event_datetime_space": event_datetime_space,
    "null_relationship_data": null_relationship_data,
    "whatsapp_null": whatsapp_null,
    "extra_fields": extra_fields,
    "attributions_absent": attributions_absent,
    "campaign_messages_linkage": campaign_messages_linkage,
    "profile_conversation_name": conversation_name,
    "flow_message_image": flow_message_image,
    "channel_case": channel_case,
    "value_int_or_float": value_int_or_float,
    "uuid_tag_ids": uuid_tag_ids,
    "repeated_names": repeated_names,
    "is_starred_filter_ignored": is_starred_ignored,
    "error_shapes": error_shapes,
    "ratelimit_policies": ratelimit_policies,
}


def test_every_quirk_has_a_probe():
    assert set(PROBES) == set(QUIRKS)


# --- observations within the spec: one probe each, served in both modes ---------------------------
DATETIME_TEXT = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")


def _datetimes(node) -> list[str]:
    if isinstance(node, dict):
        return [text for value in node.values() for text in _datetimes(value)]
    if isinstance(node, list):
        return [text for value in node for text in _datetimes(value)]
    return [node] if isinstance(node, str) and DATETIME_TEXT.match(node) else []


def offset_not_z(emu):
    pages = [
        get_json(emu.url, "/api/profiles", {"additional-fields[profile]": "subscriptions"}),
        get_json(emu.url, "/api/events"), get_json(emu.url, "/api/metrics"), {"data": _campaigns(emu)},
    ]  # fmt: skip
    stamps = [text for page in pages for text in _datetimes(page["data"])]
    return len(stamps) > 100 and all(text.endswith("+00:00") for text in stamps)


def error_status_integer(emu):
    errors = [request(emu.url, "/api/lists/nope").error, request(emu.url, "/api/tags", api_key="pk_no").error]
    return all(type(error["status"]) is int for error in errors)


def _limited_profile_count(emu):
    with _sibling(emu, rate_limits=True) as limited:
        list_id = limited.truth("lists")[0]["id"]
        params = {"additional-fields[list]": "profile_count"}
        return [request(limited.url, f"/api/lists/{list_id}", params) for _ in range(3)]


def throttled_retry_after_only(emu):
    throttled = [r for r in _limited_profile_count(emu) if r.status == 429]  # 1/s: 3 calls meet one
    rate_headers = [h for r in throttled for h in r.headers if h.lower().startswith("ratelimit")]
    waits = [r.headers.get("Retry-After", "") for r in throttled]
    return bool(throttled) and all(wait.isdigit() for wait in waits) and not rate_headers


def status_case(emu):
    campaigns = {c["attributes"]["status"] for c in _campaigns(emu)}
    flows = {f["attributes"]["status"] for f in records(walk(emu.url, "/api/flows"))}
    return all(s[0].isupper() for s in campaigns) and all(s == s.lower() for s in flows)


def numeric_flow_action_ids(emu):
    flow_id = emu.truth("flow-actions")[0]["flow_id"]
    actions = get_json(emu.url, f"/api/flows/{flow_id}/flow-actions")["data"]
    return bool(actions) and all(a["id"].isdigit() for a in actions)


def metrics_sorted_by_id(emu):
    metrics = get_json(emu.url, "/api/metrics")["data"]
    ids = [m["id"] for m in metrics]
    created = [m["attributes"]["created"] for m in metrics]
    return ids == sorted(ids) and created != sorted(created)


def events_share_a_second(emu):
    seconds = Counter(e["attributes"]["datetime"][:19].replace(" ", "T") for e in _events(emu))
    return max(seconds.values()) >= 3


def profile_count_tier(emu):
    first = _limited_profile_count(emu)[0]
    limit = first.headers["RateLimit-Limit"]
    return first.status == 200 and limit in ("15", "1, 1;w=1, 15;w=60")


SPEC_SHAPED_PROBES: dict[str, Callable[[RunningEmulator], bool]] = {
    "offset_not_z": offset_not_z,
    "error_status_integer": error_status_integer,
    "throttled_retry_after_only": throttled_retry_after_only,
    "status_case": status_case,
    "numeric_flow_action_ids": numeric_flow_action_ids,
    "metrics_sorted_by_id": metrics_sorted_by_id,
    "events_share_a_second": events_share_a_second,
    "profile_count_tier": profile_count_tier,
}


def test_every_spec_shaped_observation_has_a_probe():
    assert set(SPEC_SHAPED_PROBES) == set(SPEC_SHAPED_OBSERVATIONS)


@pytest.mark.parametrize("name", sorted(SPEC_SHAPED_PROBES))
def test_observations_within_the_spec_are_served_in_both_modes(emulator, strict_emulator, name):
    assert SPEC_SHAPED_PROBES[name](emulator), f"{name}: not in the default emulator's responses"
    assert SPEC_SHAPED_PROBES[name](strict_emulator), f"{name}: not in the --spec-strict emulator's responses"


@pytest.mark.parametrize("name", sorted(PROBES))
def test_the_quirk_is_served_by_default_and_never_with_spec_strict(emulator, strict_emulator, name):
    assert PROBES[name](emulator), f"{name}: not in the default emulator's responses"
    assert not PROBES[name](strict_emulator), f"{name}: served with --spec-strict"


def test_spec_strict_is_a_flag_and_an_option():
    assert parser().parse_args(["serve", "--port", "0", "--spec-strict"]).spec_strict is True
    assert parser().parse_args(["serve", "--port", "0"]).spec_strict is False
    assert EmulatorOptions().spec_strict is False


# --- determinism and the cursor codec ---------------------------------------------------------------


def test_same_seed_same_bytes():
    urls = [
        "/api/events?page%5Bsize%5D=300&include=profile,metric,attributions",
        "/api/campaigns?filter=equals(messages.channel,'sms')&include=campaign-messages,tags",
        "/api/profiles?additional-fields%5Bprofile%5D=subscriptions&page%5Bsize%5D=50&sort=-updated",
        "/api/lists",
        "/api/tags",
    ]
    options = {"seed": 21, "scale": "tiny", "rate_limits": False, "anchor": ANCHOR}
    with (
        run_emulator_in_thread(EmulatorOptions(**options)) as a,
        run_emulator_in_thread(EmulatorOptions(**options)) as b,
    ):
        for url in urls:
            host = {"Host": "emulator.test"}
            assert request(a.url, url, headers=host).body == request(b.url, url, headers=host).body, url


@pytest.fixture(scope="module")
def world() -> World:
    world = World(seed=9, scale="tiny", anchor=ANCHOR)
    world.mutate("campaigns", add=2, update=3)  # stamped now: the same second, other microseconds
    return world


@settings(max_examples=200, deadline=None, derandomize=True)
@given(sec=st.integers(0, 4_102_444_800), us=st.sampled_from([0, 1, 2, 499_999, 500_000, 999_998, 999_999]))
def test_cursor_datetimes_round_trip_to_the_exact_key(sec, us):
    value = sec + us / 1_000_000 if us else sec
    assert _value_of("updated_at", _value_text("updated_at", value)) == value


@pytest.mark.parametrize(
    ("route", "resource", "sort"),
    [
        ("/api/events", "events", "datetime"),
        ("/api/profiles", "profiles", "id"),
        ("/api/profiles", "profiles", "updated"),
        ("/api/profiles", "profiles", "subscriptions.email.marketing.suppression.timestamp"),
        ("/api/campaigns", "campaigns", "updated_at"),
        ("/api/campaigns", "campaigns", "scheduled_at"),
        ("/api/tags", "tags", "name"),
        ("/api/coupons", "coupons", "id"),
    ],
)
def test_every_record_s_cursor_decodes_to_its_key(world, route, resource, sort):
    table = world.table(resource)
    for i in table.order(sort):
        key = table.key_of(sort, i)
        held = [table.key_of(sort, j) for j in list(table.order(sort))[:2]]
        token = encode_klaviyo_cursor(route, table, sort, key, held if route == "/api/campaigns" else [])
        assert decode_klaviyo_cursor(route, table, sort, token) == (
            key,
            held if route == "/api/campaigns" else [],
        )
