"""The stream table is consistent with the schemas, the state shapes, the hooks and the tiers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from source_klaviyo import hooks
from source_klaviyo.chains import build_chain, partitions_of
from source_klaviyo.config import Config
from source_klaviyo.schemas import STREAM_SCHEMAS
from source_klaviyo.state_migrations import state_target
from source_klaviyo.streams import STREAMS, TIERS

CORE = {
    "campaigns",
    "email_templates",
    "events",
    "flows",
    "global_exclusions",
    "lists",
    "metrics",
    "profiles",
}

# The 3.0.0 state of each stream as docs/state-migrations.md ("The 3.0.0 shapes") publishes it, written
# out by hand: (cursor, {partition key: allowed values}), or None for a stream read in full every time.
_UPDATED = ("updated", {})
_CAMPAIGN_AXES = {"campaign_type": {"email", "sms", "mobile_push"}, "archived": {"true", "false"}}
STATE_SHAPES: dict[str, tuple[str, dict[str, set[str]]] | None] = {
    "profiles": _UPDATED,
    "global_exclusions": _UPDATED,
    "email_templates": _UPDATED,
    "metrics": _UPDATED,
    "lists": _UPDATED,
    "lists_detailed": _UPDATED,
    "segments": _UPDATED,
    "events": ("datetime", {}),
    "events_detailed": ("datetime", {}),
    "flow_series_reports": ("date", {}),
    "campaign_values_reports": ("date", {}),
    "campaigns": ("updated_at", _CAMPAIGN_AXES),
    "campaigns_detailed": ("updated_at", _CAMPAIGN_AXES),
    "flows": ("updated", {"archived": {"true", "false"}}),
    "campaign_messages": None,
    "flow_actions": None,
    "flow_messages": None,
    "list_memberships": None,
    "segment_memberships": None,
    "tags": None,
    "coupons": None,
}


@pytest.mark.parametrize("stream", STREAMS, ids=lambda s: s.name)
def test_every_stream_is_well_formed(stream):
    assert stream.schema_name in STREAM_SCHEMAS
    assert stream.tier in TIERS
    assert stream.hook is None or type(stream.hook).__module__ == hooks.__name__
    assert stream.detail is None or stream.detail.tier in TIERS


def test_every_declared_stream_has_a_published_state_shape():
    assert {stream.name for stream in STREAMS} == set(STATE_SHAPES)


@pytest.mark.parametrize("stream", STREAMS, ids=lambda s: s.name)
def test_the_state_a_stream_writes_is_the_published_shape(stream):
    target = state_target(stream.name)
    if STATE_SHAPES[stream.name] is None:
        assert stream.incremental is None
        assert target is None
        return
    cursor, axes = STATE_SHAPES[stream.name]
    assert target is not None
    assert (target.cursor, {key: set(values) for key, values in target.axes}) == (cursor, axes)
    # The read writes state at the declaration's cursor and partitions: they must be the published ones.
    assert stream.incremental.cursor == cursor
    assert {axis.key: set(axis.values) for axis in stream.partitions} == axes


def test_the_core_streams_are_declared():
    assert {stream.name for stream in STREAMS} >= CORE


def test_campaign_requests_are_partitioned_by_channel_and_archived():
    campaigns = next(s for s in STREAMS if s.name == "campaigns")
    partitions = partitions_of(campaigns)
    assert len(partitions) == 6
    lower = datetime(2024, 1, 1, tzinfo=UTC)
    chain = build_chain(
        campaigns,
        Config(api_key="k"),
        partition={"campaign_type": "sms", "archived": "true"},
        lower=lower,
        upper=datetime(2024, 2, 1, tzinfo=UTC),
    )
    params = dict(chain.params)
    assert params["filter"] == ("equals(messages.channel,'sms'),equals(archived,true),"
                                "greater-or-equal(updated_at,2024-01-01T00:00:00+00:00),"
                                "less-than(updated_at,2024-02-01T00:00:00+00:00)")
    assert params["sort"] == "updated_at"
    # checked here too: Klaviyo was seen to accept a filter and not honour it (`is_starred_filter_ignored`)
    assert (chain.lower, chain.upper) == (lower, datetime(2024, 2, 1, tzinfo=UTC))


def test_profiles_tier_follows_predictive_analytics():
    profiles = next(s for s in STREAMS if s.name == "profiles")
    with_pa = build_chain(profiles, Config(api_key="k"))
    without = build_chain(profiles, Config(api_key="k", disable_fetching_predictive_analytics=True))
    assert (with_pa.tier, dict(with_pa.params)["additional-fields[profile]"]) == (
        "M",
        "subscriptions,predictive_analytics",
    )
    assert (without.tier, dict(without.params)["additional-fields[profile]"]) == ("L", "subscriptions")
    assert with_pa.bucket != without.bucket


def test_greater_than_only_endpoints_overlap_one_second_and_check_here():
    lists = next(s for s in STREAMS if s.name == "lists")
    lower = datetime(2024, 1, 1, tzinfo=UTC)
    chain = build_chain(lists, Config(api_key="k"), lower=lower, upper=datetime(2024, 2, 1, tzinfo=UTC))
    assert dict(chain.params)["filter"] == "greater-than(updated,2023-12-31T23:59:59+00:00)"
    assert chain.lower == lower
    assert chain.upper is not None
