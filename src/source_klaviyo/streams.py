"""The stream table: every stream the connector reads, declared as data.

A declaration states only what differs from the defaults: the path, the cursor and how the
endpoint lets us filter and sort by it, partitions, page size, includes, the rate-limit tier and,
for the few streams that need one, a record hook (see `hooks.py`). Auth, the API revision,
retries and the error policy live once, in `http.py`; the engine (`engine.py`) interprets this table.
Everything else that lists streams (the schemas' generator, the README's table, spec and discover,
the tests) derives from `STREAMS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from .config import Config
from .hooks import EmbedIncluded, Hook, IncludedAsRecords, Membership, MergeIncluded, OnlySuppressed

API_REVISION = "2026-07-15"

TierName = Literal["XS", "S", "M", "L", "XL", "REPORTING"]


@dataclass(frozen=True)
class Tier:
    """A Klaviyo rate-limit tier: fixed windows of one second (burst) and one minute (steady)."""

    name: TierName
    burst_per_second: int
    steady_per_minute: int
    daily: int | None = None


TIERS: dict[TierName, Tier] = {
    tier.name: tier
    for tier in (
        Tier("XS", 1, 15),
        Tier("S", 3, 60),
        Tier("M", 10, 150),
        Tier("L", 75, 750),
        Tier("XL", 350, 3500),
        Tier("REPORTING", 1, 2, daily=225),
    )
}


@dataclass(frozen=True)
class Incremental:
    """How a stream reads incrementally by its cursor.

    `cursor` is the attribute Klaviyo sorts and filters by; the engine lifts it to the record's top
    level. Klaviyo stamps at second granularity and many records share a second, so the lower bound
    is always inclusive: `greater-or-equal` where the endpoint has it, else `greater-than` one second
    earlier, then records already emitted at the boundary are dropped by primary key.
    """

    cursor: str
    # The filter operators the endpoint accepts on the cursor.
    lower_operator: Literal["greater-or-equal", "greater-than"] | None = "greater-or-equal"
    supports_less_than_filter: bool = True
    # False when the endpoint cannot filter by the cursor at all: read everything, filter here.
    server_side_filter: bool = True
    # Sort by the cursor so that a checkpoint can be taken after any page.
    sortable: bool = True
    # Klaviyo's archived campaigns come back slightly unsorted: checkpoint only after a whole window.
    assume_sorted: bool = True
    # Applied to the saved cursor before reading (late-arriving records); config may add more.
    lookback: timedelta = timedelta(0)
    # Records stamped later than "now" (clock skew, scheduled objects) never move state past now.
    never_past_now: bool = True
    # The config's `lookback_window` (days) applies: events arrive late (eventually consistent API).
    config_lookback: bool = False
    # Records are only ever added, never changed (events): the cursor is when the record happened, so
    # one read meets each record once, and a table the sync started empty needs no upsert.
    append_only: bool = False


@dataclass(frozen=True)
class PartitionAxis:
    """One axis of a partitioned stream; partitions are the product of all axes."""

    key: str  # the key in the partition's state, kept as the 2.x connector named it
    values: tuple[str, ...]
    filter: str  # a filter expression with `{value}` replaced by the partition value


@dataclass(frozen=True)
class Parent:
    """A parent -> child fan-out: one request chain per record of the parent stream, at the child's
    path with `{id}` replaced by the parent record's id, or, where the child's endpoint is a collection
    of its own that must be filtered by its parent (coupon codes by coupon), with `filter` naming it."""

    stream: str
    key: str  # the child's field that carries the parent id
    filter: str | None = None  # a filter expression with `{id}` replaced by the parent record's id


@dataclass(frozen=True)
class Detail:
    """One extra request per record (only where the API has no bulk way): e.g. `profile_count`."""

    path: str  # with `{id}`
    params: tuple[tuple[str, str], ...]
    tier: TierName
    fields: tuple[str, ...]  # attributes copied from the detail answer into the record


_BOOLEAN_SETTINGS = frozenset(f.name for f in fields(Config) if f.type in ("bool", bool))


@dataclass(frozen=True)
class ReducedTier:
    """An additional field that moves the endpoint to a slower tier, and the boolean config setting
    that drops the field (and so keeps the faster tier). A setting `Config` lacks fails at import."""

    field: str
    tier: TierName
    dropped_by: str

    def __post_init__(self) -> None:
        if self.dropped_by not in _BOOLEAN_SETTINGS:
            raise ValueError(f"ReducedTier.dropped_by={self.dropped_by!r} is not a boolean Config setting "
                             f"({', '.join(sorted(_BOOLEAN_SETTINGS))})")

    def dropped(self, config: Config) -> bool:
        return bool(getattr(config, self.dropped_by))


# How a report's requests cover time (see `reports.py` and `report_plan.py`):
#   "days"      a daily series: one record per day; requests tile the days not read yet.
#   "sent"      values by send date: one record per message with its totals over its life; requests
#               tile the send dates not read yet, and refresh those within the campaign lookback.
#   "trailing"  values over the year before today: one record per grouping, read again each day.
Timeframes = Literal["days", "sent", "trailing"]


@dataclass(frozen=True)
class Report:
    """A POST reporting query (read by `reports.py`, planned by `report_plan.py`).

    Records are `{date, <groupings>, conversion_metric_id, statistics{...}}`: one per grouping and
    conversion metric (config `metric_ids`, else the account's "Placed Order" metrics), and per day
    for a series. A report without `conversion_metric` has no `conversion_metric_id`."""

    type: str  # the request document's JSON:API type
    groupings: tuple[str, ...]  # the answer's `groupings`, copied to each record
    timeframes: Timeframes
    days_per_request: int  # the longest timeframe one request asks (the API's maximum)
    interval: str | None = None  # "daily" for a series report; None: values over the timeframe
    # Whether the request names the groupings as `group_by` (segment reports group by segment unasked).
    group_by: bool = True
    conversion_metric: bool = True  # the request needs a `conversion_metric_id`
    # A series reads at most this many days back, whatever start_date says: older days would cost a
    # request per `days_per_request` days each (the values streams hold the totals of older periods).
    history_days: int | None = None
    # The API has no data before this day (a values stream without start_date starts there).
    earliest: datetime | None = None

    def __post_init__(self) -> None:
        # Where a read without state or start_date starts: never "the beginning of time", which would
        # cost a request per window back to 1970.
        if self.timeframes != "trailing" and self.earliest is None and self.history_days is None:
            raise ValueError(f"Report {self.type!r}: a {self.timeframes!r} report needs `earliest` or "
                             "`history_days`")
        if (self.timeframes == "days") != (self.interval is not None):
            raise ValueError(f"Report {self.type!r}: a series (`interval`) is read by days, and only "
                             "a series")


@dataclass(frozen=True)
class Stream:
    name: str
    path: str
    primary_key: tuple[str, ...] = ("id",)
    incremental: Incremental | None = None
    filter: str | None = None  # a fixed server-side filter, combined with cursor filters by AND
    partitions: tuple[PartitionAxis, ...] = ()
    page_size: int | None = None  # None: the endpoint has no page[size]
    include: tuple[str, ...] = ()
    additional_fields: tuple[str, ...] = ()  # additional-fields[<resource type>]
    resource_type: str = ""  # JSON:API type, for additional-fields and fields
    tier: TierName = "L"
    reduced_tier: ReducedTier | None = None
    parent: Parent | None = None
    detail: Detail | None = None
    hook: Hook | None = None  # see hooks.py
    report: Report | None = None  # a POST reporting query (reports.py) instead of a collection
    # The attribute copied to the record's top level; defaults to the incremental cursor.
    lifted: str | None = None
    # An attribute the endpoint sorts by and filters on both sides (`greater-or-equal`/`-than` and
    # `less-than`): a chain of pages over a range of it can be cut while it runs, so the read keeps
    # every request slot busy (see `ranges.py`). For an incremental stream, its cursor.
    split_by: str | None = None
    default_cursor_field: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        cursor = (self.incremental.cursor,) if self.incremental else ()
        object.__setattr__(self, "default_cursor_field", cursor)
        if self.lifted is None and self.incremental:
            object.__setattr__(self, "lifted", self.incremental.cursor)

    @property
    def schema_name(self) -> str:
        return self.name


_UPDATED = Incremental(cursor="updated")
_CAMPAIGN_PARTITIONS = (
    PartitionAxis("campaign_type", ("email", "sms", "mobile_push"), "equals(messages.channel,'{value}')"),
    PartitionAxis("archived", ("false", "true"), "equals(archived,{value})"),
)
_CAMPAIGNS_INCREMENTAL = Incremental(cursor="updated_at", assume_sorted=False)
_PROFILES_INCREMENTAL = replace(_UPDATED, lower_operator="greater-than")
# lists and segments filter `updated` with greater-than only: the upper bound is checked here.
_UPDATED_GREATER_THAN_ONLY = replace(_UPDATED, lower_operator="greater-than", supports_less_than_filter=False)
# Report records are whole days: read once the day is over (see reports.py), never filtered by the server.
_REPORTS_INCREMENTAL = Incremental(cursor="date", lower_operator=None, supports_less_than_filter=False,
                                   server_side_filter=False, sortable=False)
# A report timeframe is at most a year long (365 days: a leap year's 366 could be refused); a daily
# series at most 60 days.
_REPORT_YEAR = 365
_DAILY_SERIES_DAYS = 60
# A year of daily values: at most 7 requests of 60 days per conversion metric.
_SERIES_HISTORY_DAYS = 365
# No campaign was sent with Klaviyo before 2012, the year it opened (and the date every 2.x version
# read as the start of time): a campaign report without start_date starts there, not in 1970.
_FIRST_CAMPAIGNS = datetime(2012, 1, 1, tzinfo=UTC)
# Klaviyo has no segment reporting data before this day (the spec's description of the timeframe).
_SEGMENT_DATA_SINCE = datetime(2023, 6, 1, tzinfo=UTC)
_EVENTS_INCREMENTAL = Incremental(cursor="datetime", config_lookback=True, append_only=True)
_UPDATED_AT = Incremental(cursor="updated_at")
# reviews: sorted by `updated`, which the endpoint cannot filter (it filters `created` only): every page
# is read in order, and the records before the saved cursor are dropped here.
_SORTED_BY_UPDATED = Incremental(cursor="updated", lower_operator=None, supports_less_than_filter=False,
                                 server_side_filter=False)

STREAMS: tuple[Stream, ...] = (
    Stream(
        "campaigns",
        "/api/campaigns",
        incremental=_CAMPAIGNS_INCREMENTAL,
        partitions=_CAMPAIGN_PARTITIONS,
        page_size=100,
        resource_type="campaign",
        tier="M",
    ),
    Stream(
        "campaigns_detailed",
        "/api/campaigns",
        incremental=_CAMPAIGNS_INCREMENTAL,
        partitions=_CAMPAIGN_PARTITIONS,
        page_size=100,
        include=("campaign-messages",),
        resource_type="campaign",
        tier="M",
        hook=EmbedIncluded("campaign_messages", "campaign-message", relationship="campaign-messages"),
    ),
    Stream(
        "campaign_messages",
        "/api/campaigns",
        partitions=_CAMPAIGN_PARTITIONS,
        page_size=100,
        include=("campaign-messages",),
        resource_type="campaign",
        tier="M",
        hook=IncludedAsRecords("campaign-message", relationship="campaign-messages",
                               parent_field="campaign_id", cursor="updated_at"),
    ),
    Stream(
        "email_templates", "/api/templates", incremental=_UPDATED, page_size=10, resource_type="template"
    ),
    Stream(
        "events",
        "/api/events",
        incremental=_EVENTS_INCREMENTAL,
        page_size=1000,
        resource_type="event",
        tier="XL",
        split_by="datetime",
    ),
    Stream(
        "events_detailed",
        "/api/events",
        incremental=_EVENTS_INCREMENTAL,
        page_size=1000,
        include=("metric", "attributions"),
        resource_type="event",
        tier="XL",
        hook=MergeIncluded("metric", "metric"),
        split_by="datetime",
    ),
    Stream(
        "flows",
        "/api/flows",
        incremental=_UPDATED,
        partitions=(PartitionAxis("archived", ("false", "true"), "equals(archived,{value})"),),
        page_size=50,
        resource_type="flow",
        tier="S",
    ),
    Stream(
        "flow_actions",
        "/api/flows/{id}/flow-actions",
        page_size=50,
        resource_type="flow-action",
        tier="S",
        lifted="updated",
        parent=Parent("flows", "flow_id"),
    ),
    Stream(
        "flow_messages",
        "/api/flow-actions/{id}/flow-messages",
        page_size=50,
        resource_type="flow-message",
        tier="S",
        lifted="updated",
        parent=Parent("flow_actions", "flow_action_id"),
    ),
    Stream(
        "global_exclusions",
        "/api/profiles",
        incremental=_PROFILES_INCREMENTAL,
        filter="greater-than(subscriptions.email.marketing.suppression.timestamp,1970-01-01T00:00:00+00:00)",
        page_size=100,
        additional_fields=("subscriptions",),
        resource_type="profile",
        hook=OnlySuppressed(),
        split_by="updated",
    ),
    Stream("lists", "/api/lists", incremental=_UPDATED_GREATER_THAN_ONLY, page_size=10, resource_type="list"),
    Stream(
        "lists_detailed",
        "/api/lists",
        incremental=_UPDATED_GREATER_THAN_ONLY,
        page_size=10,
        resource_type="list",
        detail=Detail(
            "/api/lists/{id}", (("additional-fields[list]", "profile_count"),), "XS", ("profile_count",)
        ),
    ),
    Stream(
        "list_memberships",
        "/api/lists/{id}/profiles",
        primary_key=("list_id", "profile_id"),
        page_size=100,
        resource_type="profile",
        parent=Parent("lists", "list_id"),
        hook=Membership(),
        split_by="joined_group_at",
    ),
    Stream(
        "metrics",
        "/api/metrics",
        incremental=replace(
            _UPDATED, server_side_filter=False, sortable=False, lower_operator=None,
            supports_less_than_filter=False,
        ),
        resource_type="metric",
        tier="M",
    ),
    Stream(
        "profiles",
        "/api/profiles",
        incremental=_PROFILES_INCREMENTAL,
        page_size=100,
        additional_fields=("subscriptions", "predictive_analytics"),
        resource_type="profile",
        reduced_tier=ReducedTier("predictive_analytics", "M",
                                 dropped_by="disable_fetching_predictive_analytics"),
        split_by="updated",
    ),
    Stream(
        "segments",
        "/api/segments",
        incremental=_UPDATED_GREATER_THAN_ONLY,
        page_size=10,
        resource_type="segment",
    ),
    Stream(
        "segment_memberships",
        "/api/segments/{id}/profiles",
        primary_key=("segment_id", "profile_id"),
        page_size=100,
        resource_type="profile",
        parent=Parent("segments", "segment_id"),
        hook=Membership(),
        split_by="joined_group_at",
    ),
    Stream("tags", "/api/tags", page_size=50, resource_type="tag", tier="S"),
    Stream("coupons", "/api/coupons", page_size=100, resource_type="coupon"),
    Stream("accounts", "/api/accounts", resource_type="account", tier="XS"),
    Stream("catalog_items", "/api/catalog-items", page_size=100, resource_type="catalog-item", tier="XL"),
    Stream("catalog_variants", "/api/catalog-variants", page_size=100, resource_type="catalog-variant",
           tier="XL"),
    Stream("catalog_categories", "/api/catalog-categories", page_size=100, resource_type="catalog-category",
           tier="XL"),
    Stream(
        "coupon_codes",
        "/api/coupon-codes",
        page_size=100,
        resource_type="coupon-code",
        tier="XL",
        # Klaviyo requires a filter by coupon (or profile): the codes are read coupon by coupon.
        parent=Parent("coupons", "coupon_id", filter="equals(coupon.id,'{id}')"),
    ),
    Stream("forms", "/api/forms", incremental=_UPDATED_AT, page_size=100, resource_type="form", tier="S"),
    Stream("images", "/api/images", incremental=_UPDATED_AT, page_size=100, resource_type="image", tier="M"),
    Stream("reviews", "/api/reviews", incremental=_SORTED_BY_UPDATED, page_size=100, resource_type="review",
           tier="M"),
    Stream("tag_groups", "/api/tag-groups", page_size=25, resource_type="tag-group", tier="S"),
    Stream("template_universal_content", "/api/template-universal-content", incremental=_UPDATED,
           page_size=100, resource_type="template-universal-content"),
    Stream("push_tokens", "/api/push-tokens", page_size=100, resource_type="push-token", tier="M"),
    Stream("web_feeds", "/api/web-feeds", incremental=_UPDATED, page_size=20, resource_type="web-feed",
           tier="XS"),
    Stream("custom_metrics", "/api/custom-metrics", resource_type="custom-metric", tier="S"),
    Stream("mapped_metrics", "/api/mapped-metrics", resource_type="mapped-metric", tier="S"),
    Stream("data_sources", "/api/data-sources", page_size=100, resource_type="data-source", tier="S"),
    Stream(
        "campaign_values_reports",
        "/api/campaign-values-reports",
        primary_key=("campaign_message_id", "conversion_metric_id"),
        incremental=_REPORTS_INCREMENTAL,
        tier="REPORTING",
        resource_type="campaign-values-report",
        report=Report(
            "campaign-values-report",
            ("campaign_id", "campaign_message_id", "send_channel"),
            timeframes="sent",
            days_per_request=_REPORT_YEAR,
            earliest=_FIRST_CAMPAIGNS,
        ),
    ),
    Stream(
        "flow_series_reports",
        "/api/flow-series-reports",
        primary_key=("date", "conversion_metric_id", "flow_message_id"),
        incremental=_REPORTS_INCREMENTAL,
        tier="REPORTING",
        resource_type="flow-series-report",
        report=Report(
            "flow-series-report",
            ("flow_id", "flow_message_id", "send_channel"),
            timeframes="days",
            days_per_request=_DAILY_SERIES_DAYS,
            interval="daily",
            history_days=_SERIES_HISTORY_DAYS,
        ),
    ),
    Stream(
        "flow_values_reports",
        "/api/flow-values-reports",
        primary_key=("flow_message_id", "conversion_metric_id"),
        incremental=_REPORTS_INCREMENTAL,
        tier="REPORTING",
        resource_type="flow-values-report",
        report=Report(
            "flow-values-report",
            ("flow_id", "flow_message_id", "send_channel"),
            timeframes="trailing",
            days_per_request=_REPORT_YEAR,
        ),
    ),
    Stream(
        "form_values_reports",
        "/api/form-values-reports",
        primary_key=("form_id",),
        incremental=_REPORTS_INCREMENTAL,
        tier="REPORTING",
        resource_type="form-values-report",
        report=Report(
            "form-values-report",
            ("form_id",),
            timeframes="trailing",
            days_per_request=_REPORT_YEAR,
            conversion_metric=False,
        ),
    ),
    Stream(
        "form_series_reports",
        "/api/form-series-reports",
        primary_key=("date", "form_id"),
        incremental=_REPORTS_INCREMENTAL,
        tier="REPORTING",
        resource_type="form-series-report",
        report=Report(
            "form-series-report",
            ("form_id",),
            timeframes="days",
            days_per_request=_DAILY_SERIES_DAYS,
            interval="daily",
            conversion_metric=False,
            history_days=_SERIES_HISTORY_DAYS,
        ),
    ),
    Stream(
        "segment_values_reports",
        "/api/segment-values-reports",
        primary_key=("segment_id",),
        incremental=_REPORTS_INCREMENTAL,
        tier="REPORTING",
        resource_type="segment-values-report",
        report=Report(
            "segment-values-report",
            ("segment_id",),
            timeframes="trailing",
            days_per_request=_REPORT_YEAR,
            group_by=False,
            conversion_metric=False,
            earliest=_SEGMENT_DATA_SINCE,
        ),
    ),
    Stream(
        "segment_series_reports",
        "/api/segment-series-reports",
        primary_key=("date", "segment_id"),
        incremental=_REPORTS_INCREMENTAL,
        tier="REPORTING",
        resource_type="segment-series-report",
        report=Report(
            "segment-series-report",
            ("segment_id",),
            timeframes="days",
            days_per_request=_DAILY_SERIES_DAYS,
            interval="daily",
            group_by=False,
            conversion_metric=False,
            history_days=_SERIES_HISTORY_DAYS,
            earliest=_SEGMENT_DATA_SINCE,
        ),
    ),
)

STREAMS_BY_NAME: dict[str, Stream] = {stream.name: stream for stream in STREAMS}
# The stream a report stream reads its default conversion metrics from (the "Placed Order" ones).
CONVERSION_METRICS_STREAM = "metrics"
