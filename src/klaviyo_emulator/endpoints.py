"""What each emulated endpoint allows: a hand-written table derived from the 2026-07-15 OpenAPI spec.

One `Endpoint` per route; the app reads only this table to validate queries, so adding a parameter to an
endpoint is a one-line change here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DT, STR, BOOL, NUM, REL = "datetime", "string", "boolean", "number", "relationship"
CMP = frozenset({"greater-than", "greater-or-equal", "less-than", "less-or-equal"})
EQ_CMP = CMP | {"equals"}


@dataclass(frozen=True)
class Tier:
    name: str
    burst: int  # per second
    steady: int  # per minute
    daily: int | None = None


TIERS = {
    "XS": Tier("XS", 1, 15),
    "S": Tier("S", 3, 60),
    "M": Tier("M", 10, 150),
    "L": Tier("L", 75, 750),
    "XL": Tier("XL", 350, 3500),
    "REPORTING": Tier("REPORTING", 1, 2, 225),
}


@dataclass(frozen=True)
class Filterable:
    kind: str
    ops: frozenset[str]


@dataclass(frozen=True)
class Endpoint:
    route: str  # aiohttp route template, also the key in stats and rate limits
    operation: str  # OpenAPI operationId
    resource: str | None  # the table it reads
    scopes: tuple[str, ...]
    tier: str
    method: str = "GET"
    page_size: tuple[int, int] | None = None  # (default, max) when `page[size]` is accepted
    server_page: int | None = None  # fixed page size when paged without `page[size]`
    filters: dict[str, Filterable] = field(default_factory=dict)
    required_filter: tuple[str, ...] = ()  # the filter must name one of these fields
    sorts: frozenset[str] = frozenset()
    default_sort: str = "id"
    includes: frozenset[str] = frozenset()
    fields: dict[str, frozenset[str]] = field(default_factory=dict)  # sparse fieldsets by type
    additional: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def filter_required(self) -> bool:
        return bool(self.required_filter)

    @property
    def paged(self) -> bool:
        return self.page_size is not None or self.server_page is not None

    def params(self) -> frozenset[str]:
        names = {f"fields[{t}]" for t in self.fields} | {f"additional-fields[{t}]" for t in self.additional}
        if self.filters:
            names.add("filter")
        if self.sorts:
            names.add("sort")
        if self.includes:
            names.add("include")
        if self.paged:
            names.add("page[cursor]")
        if self.page_size:
            names.add("page[size]")
        return frozenset(names)


def _f(kind: str, *ops: str | frozenset[str]) -> Filterable:
    flat: set[str] = set()
    for op in ops:
        flat |= {op} if isinstance(op, str) else set(op)
    return Filterable(kind, frozenset(flat))


def _set(*names: str) -> frozenset[str]:
    return frozenset(names)


PROFILE_FIELDS = _set(
    "created", "email", "external_id", "first_name", "id", "image", "last_event_date", "last_name", "locale",
    "location", "organization", "phone_number", "predictive_analytics", "properties", "subscriptions",
    "title", "updated",
)  # fmt: skip
PROFILE_FIELDS_BASIC = PROFILE_FIELDS - {"predictive_analytics", "subscriptions"}
PUSH_TOKEN_FIELDS = _set(
    "background",
    "created",
    "enablement_status",
    "id",
    "metadata",
    "platform",
    "recorded_date",
    "token",
    "vendor",
)
CAMPAIGN_FIELDS = _set(
    "archived", "audiences", "created_at", "id", "name", "scheduled_at", "send_options", "send_strategy",
    "send_time", "status", "tracking_options", "updated_at",
)  # fmt: skip
CAMPAIGN_MESSAGE_FIELDS = _set("created_at", "definition", "id", "send_times", "updated_at")
TEMPLATE_FIELDS = _set("amp", "created", "editor_type", "html", "id", "name", "text", "updated")
FLOW_FIELDS = _set("archived", "created", "id", "name", "status", "trigger_type", "updated")
TAG_FIELDS = _set("id", "name")
IMAGE_FIELDS = _set("format", "hidden", "id", "image_url", "name", "size", "updated_at")
LIST_FIELDS = _set("created", "id", "name", "opt_in_process", "updated")
SEGMENT_FIELDS = _set(
    "created", "definition", "id", "is_active", "is_processing", "is_starred", "name", "updated"
)
METRIC_FIELDS = _set("created", "id", "integration", "name", "updated")
TAG_GROUP_FIELDS = _set("default", "exclusive", "id", "name")
COUPON_FIELDS = _set("description", "external_id", "id", "monitor_configuration")
CATALOG_ITEM_FIELDS = _set(
    "created", "custom_metadata", "description", "external_id", "id", "image_full_url", "image_thumbnail_url",
    "images", "price", "published", "title", "updated", "url",
)  # fmt: skip
CATALOG_VARIANT_FIELDS = CATALOG_ITEM_FIELDS | {"inventory_policy", "inventory_quantity", "sku"}
CUSTOM_METRIC_FIELDS = _set("created", "definition", "id", "name", "updated")
EVENT_FIELDS = _set("datetime", "event_properties", "id", "timestamp", "uuid")

PROFILE_FILTERS = {
    "id": _f(STR, "any", "equals"),
    "email": _f(STR, "any", "equals"),
    "phone_number": _f(STR, "any", "equals"),
    "external_id": _f(STR, "any", "equals"),
    "_kx": _f(STR, "equals"),
    "created": _f(DT, "greater-than", "less-than"),
    "updated": _f(DT, "greater-than", "less-than"),
    "subscriptions.email.marketing.list_suppressions.reason": _f(STR, "equals"),
    "subscriptions.email.marketing.list_suppressions.timestamp": _f(DT, CMP),
    "subscriptions.email.marketing.list_suppressions.list_id": _f(STR, "equals"),
    "subscriptions.email.marketing.suppression.reason": _f(STR, "equals"),
    "subscriptions.email.marketing.suppression.timestamp": _f(DT, CMP),
}
PROFILE_SORTS = _set(
    "created", "email", "id", "updated",
    "subscriptions.email.marketing.list_suppressions.timestamp",
    "subscriptions.email.marketing.suppression.timestamp",
)  # fmt: skip
MEMBER_FILTERS = {  # /lists/{id}/profiles and /segments/{id}/profiles
    "email": _f(STR, "any", "equals"),
    "phone_number": _f(STR, "any", "equals"),
    "push_token": _f(STR, "any", "equals"),
    "_kx": _f(STR, "equals"),
    "joined_group_at": _f(DT, CMP),
}

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "/api/profiles",
        "get_profiles",
        "profiles",
        ("profiles:read",),
        "L",
        page_size=(20, 100),
        filters=PROFILE_FILTERS,
        sorts=PROFILE_SORTS,
        default_sort="id",
        includes=_set("conversations", "push-tokens"),
        fields={
            "profile": PROFILE_FIELDS,
            "push-token": PUSH_TOKEN_FIELDS,
            "conversation": _set("channel", "id"),
        },
        additional={"profile": _set("subscriptions", "predictive_analytics")},
    ),
    Endpoint(
        "/api/events",
        "get_events",
        "events",
        ("events:read",),
        "XL",
        page_size=(200, 1000),
        filters={
            "metric_id": _f(STR, "equals"),
            "profile_id": _f(STR, "equals"),
            "profile": _f(REL, "has"),
            "metric": _f(REL, "has"),
            "datetime": _f(DT, CMP),
            "timestamp": _f(NUM, CMP),
        },
        sorts=_set("datetime", "timestamp"),
        default_sort="datetime",
        includes=_set("attributions", "metric", "profile"),
        fields={
            "attribution": _set("id"),
            "event": EVENT_FIELDS,
            "metric": METRIC_FIELDS,
            "profile": PROFILE_FIELDS_BASIC,
        },
    ),
    Endpoint(
        "/api/metrics",
        "get_metrics",
        "metrics",
        ("metrics:read",),
        "M",
        server_page=200,
        filters={"integration.name": _f(STR, "equals"), "integration.category": _f(STR, "equals")},
        includes=_set("flow-triggers"),
        fields={"flow": FLOW_FIELDS, "metric": METRIC_FIELDS},
    ),
    Endpoint(
        "/api/campaigns",
        "get_campaigns",
        "campaigns",
        ("campaigns:read",),
        "M",
        page_size=(100, 100),
        filters={
            "id": _f(STR, "any"),
            "messages.channel": _f(STR, "equals"),
            "name": _f(STR, "contains"),
            "status": _f(STR, "any", "equals"),
            "archived": _f(BOOL, "equals"),
            "created_at": _f(DT, CMP),
            "scheduled_at": _f(DT, CMP),
            "updated_at": _f(DT, CMP),
        },
        required_filter=("messages.channel",),
        sorts=_set("created_at", "id", "name", "scheduled_at", "updated_at"),
        includes=_set("campaign-messages", "tags"),
        fields={"campaign": CAMPAIGN_FIELDS, "campaign-message": CAMPAIGN_MESSAGE_FIELDS, "tag": TAG_FIELDS},
    ),
    Endpoint(
        "/api/campaigns/{id}",
        "get_campaign",
        "campaigns",
        ("campaigns:read",),
        "M",
        includes=_set("campaign-messages", "tags"),
        fields={"campaign": CAMPAIGN_FIELDS, "campaign-message": CAMPAIGN_MESSAGE_FIELDS, "tag": TAG_FIELDS},
    ),
    Endpoint(
        "/api/campaigns/{id}/campaign-messages",
        "get_messages_for_campaign",
        "campaign-messages",
        ("campaigns:read",),
        "M",
        includes=_set("campaign", "image", "template"),
        fields={
            "campaign-message": CAMPAIGN_MESSAGE_FIELDS,
            "campaign": CAMPAIGN_FIELDS,
            "image": IMAGE_FIELDS,
            "template": TEMPLATE_FIELDS,
        },
    ),
    Endpoint(
        "/api/campaigns/{id}/relationships/campaign-messages",
        "get_message_ids_for_campaign",
        "campaign-messages",
        ("campaigns:read",),
        "M",
    ),
    Endpoint(
        "/api/campaign-messages/{id}",
        "get_campaign_message",
        "campaign-messages",
        ("campaigns:read",),
        "M",
        includes=_set("campaign", "image", "template"),
        fields={
            "campaign-message": CAMPAIGN_MESSAGE_FIELDS,
            "campaign": CAMPAIGN_FIELDS,
            "image": IMAGE_FIELDS,
            "template": TEMPLATE_FIELDS,
        },
    ),
    Endpoint(
        "/api/templates",
        "get_templates",
        "templates",
        ("templates:read",),
        "L",
        page_size=(10, 10),
        filters={
            "id": _f(STR, "any", "equals"),
            "name": _f(STR, "any", "contains", "equals"),
            "created": _f(DT, EQ_CMP),
            "updated": _f(DT, EQ_CMP),
        },
        sorts=_set("created", "id", "name", "updated"),
        fields={"template": TEMPLATE_FIELDS | {"definition"}},
        additional={"template": _set("definition")},
    ),
    Endpoint(
        "/api/flows",
        "get_flows",
        "flows",
        ("flows:read",),
        "S",
        page_size=(50, 50),
        filters={
            "id": _f(STR, "any"),
            "name": _f(STR, "contains", "ends-with", "equals", "starts-with"),
            "status": _f(STR, "equals"),
            "archived": _f(BOOL, "equals"),
            "created": _f(DT, EQ_CMP),
            "updated": _f(DT, EQ_CMP),
            "trigger_type": _f(STR, "equals"),
        },
        sorts=_set("created", "id", "name", "status", "trigger_type", "updated"),
        includes=_set("flow-actions", "tags"),
        fields={
            "flow": FLOW_FIELDS,
            "flow-action": _set("created", "definition", "id", "updated"),
            "tag": TAG_FIELDS,
        },
    ),
    Endpoint(
        "/api/flows/{id}/flow-actions",
        "get_actions_for_flow",
        "flow-actions",
        ("flows:read",),
        "S",
        page_size=(50, 50),
        filters={
            "id": _f(STR, "any"),
            "action_type": _f(STR, "any", "equals"),
            "status": _f(STR, "equals"),
            "created": _f(DT, EQ_CMP),
            "updated": _f(DT, EQ_CMP),
        },
        sorts=_set("action_type", "created", "id", "status", "updated"),
        fields={"flow-action": _set("created", "definition", "id", "updated")},
    ),
    Endpoint(
        "/api/flow-actions/{id}/flow-messages",
        "get_flow_action_messages",
        "flow-messages",
        ("flows:read",),
        "S",
        page_size=(50, 50),
        filters={
            "id": _f(STR, "any"),
            "name": _f(STR, "contains", "ends-with", "equals", "starts-with"),
            "created": _f(DT, EQ_CMP),
            "updated": _f(DT, EQ_CMP),
        },
        sorts=_set("created", "id", "name", "updated"),
        fields={"flow-message": _set("channel", "created", "definition", "id", "updated")},
    ),
    Endpoint(
        "/api/lists",
        "get_lists",
        "lists",
        ("lists:read",),
        "L",
        page_size=(10, 10),
        filters={
            "name": _f(STR, "any", "equals"),
            "id": _f(STR, "any", "equals"),
            "created": _f(DT, "greater-than"),
            "updated": _f(DT, "greater-than"),
        },
        sorts=_set("created", "id", "name", "updated"),
        includes=_set("flow-triggers", "tags"),
        fields={"flow": FLOW_FIELDS, "list": LIST_FIELDS, "tag": TAG_FIELDS},
    ),
    Endpoint(
        "/api/lists/{id}",
        "get_list",
        "lists",
        ("lists:read",),
        "L",
        includes=_set("flow-triggers", "tags"),
        fields={"flow": FLOW_FIELDS, "list": LIST_FIELDS | {"profile_count"}, "tag": TAG_FIELDS},
        additional={"list": _set("profile_count")},
    ),
    Endpoint(
        "/api/lists/{id}/profiles",
        "get_profiles_for_list",
        "profiles",
        ("lists:read", "profiles:read"),
        "L",
        page_size=(20, 100),
        filters=MEMBER_FILTERS,
        sorts=_set("joined_group_at"),
        default_sort="joined_group_at",
        fields={"profile": PROFILE_FIELDS | {"joined_group_at"}},
        additional={"profile": _set("subscriptions", "predictive_analytics")},
    ),
    Endpoint(
        "/api/segments",
        "get_segments",
        "segments",
        ("segments:read",),
        "L",
        page_size=(10, 10),
        filters={
            "name": _f(STR, "any", "equals"),
            "id": _f(STR, "any", "equals"),
            "created": _f(DT, "greater-than"),
            "updated": _f(DT, "greater-than"),
            "is_active": _f(BOOL, "any", "equals"),
            "is_starred": _f(BOOL, "equals"),
        },
        sorts=_set("created", "id", "name", "updated"),
        includes=_set("flow-triggers", "tags"),
        fields={"flow": FLOW_FIELDS, "segment": SEGMENT_FIELDS, "tag": TAG_FIELDS},
    ),
    Endpoint(
        "/api/segments/{id}",
        "get_segment",
        "segments",
        ("segments:read",),
        "L",
        includes=_set("flow-triggers", "tags"),
        fields={"flow": FLOW_FIELDS, "segment": SEGMENT_FIELDS | {"profile_count"}, "tag": TAG_FIELDS},
        additional={"segment": _set("profile_count")},
    ),
    Endpoint(
        "/api/segments/{id}/profiles",
        "get_profiles_for_segment",
        "profiles",
        ("profiles:read", "segments:read"),
        "L",
        page_size=(20, 100),
        filters=MEMBER_FILTERS,
        sorts=_set("joined_group_at"),
        default_sort="joined_group_at",
        fields={"profile": PROFILE_FIELDS | {"joined_group_at"}},
        additional={"profile": _set("subscriptions", "predictive_analytics")},
    ),
    Endpoint(
        "/api/tags",
        "get_tags",
        "tags",
        ("tags:read",),
        "S",
        page_size=(50, 50),
        filters={"name": _f(STR, "contains", "ends-with", "equals", "starts-with")},
        sorts=_set("id", "name"),
        includes=_set("tag-group"),
        fields={"tag": TAG_FIELDS, "tag-group": TAG_GROUP_FIELDS},
    ),
    Endpoint(
        "/api/coupons",
        "get_coupons",
        "coupons",
        ("coupons:read",),
        "L",
        page_size=(100, 100),
        fields={"coupon": COUPON_FIELDS},
    ),
    # The read-only collections of issue 20, each with its tier, pages, filters, sorts and includes
    # as the spec states them.
    Endpoint(
        "/api/accounts",
        "get_accounts",
        "accounts",
        ("accounts:read",),
        "XS",
        fields={"account": _set(
            "contact_information", "id", "industry", "locale", "preferred_currency", "public_api_key",
            "test_account", "timezone",
        )},
    ),
    Endpoint(
        "/api/catalog-items",
        "get_catalog_items",
        "catalog-items",
        ("catalogs:read",),
        "XL",
        page_size=(100, 100),
        filters={
            "ids": _f(STR, "any"),
            "category.id": _f(STR, "equals"),
            "title": _f(STR, "contains"),
            "published": _f(BOOL, "equals"),
        },
        sorts=_set("created"),
        includes=_set("variants"),
        fields={"catalog-item": CATALOG_ITEM_FIELDS, "catalog-variant": CATALOG_VARIANT_FIELDS},
    ),
    Endpoint(
        "/api/catalog-variants",
        "get_catalog_variants",
        "catalog-variants",
        ("catalogs:read",),
        "XL",
        page_size=(100, 100),
        filters={
            "ids": _f(STR, "any"),
            "item.id": _f(STR, "equals"),
            "sku": _f(STR, "equals"),
            "title": _f(STR, "contains"),
            "published": _f(BOOL, "equals"),
        },
        sorts=_set("created"),
        fields={"catalog-variant": CATALOG_VARIANT_FIELDS},
    ),
    Endpoint(
        "/api/catalog-categories",
        "get_catalog_categories",
        "catalog-categories",
        ("catalogs:read",),
        "XL",
        page_size=(100, 100),
        filters={"ids": _f(STR, "any"), "item.id": _f(STR, "equals"), "name": _f(STR, "contains")},
        sorts=_set("created"),
        fields={"catalog-category": _set("external_id", "id", "name", "updated")},
    ),
    Endpoint(
        "/api/coupon-codes",
        "get_coupon_codes",
        "coupon-codes",
        ("coupon-codes:read",),
        "XL",
        page_size=(100, 100),
        filters={
            "expires_at": _f(DT, CMP),
            "status": _f(STR, "equals"),
            "coupon.id": _f(STR, "any", "equals"),
            "profile.id": _f(STR, "any", "equals"),
        },
        required_filter=("coupon.id", "profile.id"),
        includes=_set("coupon"),
        fields={"coupon-code": _set("expires_at", "id", "status", "unique_code"), "coupon": COUPON_FIELDS},
    ),
    Endpoint(
        "/api/forms",
        "get_forms",
        "forms",
        ("forms:read",),
        "S",
        page_size=(20, 100),
        filters={
            "id": _f(STR, "any", "equals"),
            "name": _f(STR, "any", "contains", "equals"),
            "ab_test": _f(BOOL, "equals"),
            "updated_at": _f(DT, CMP),
            "created_at": _f(DT, CMP),
            "status": _f(STR, "equals"),
        },
        sorts=_set("created_at", "updated_at"),
        fields={"form": _set("ab_test", "created_at", "id", "name", "status", "updated_at")},
    ),
    Endpoint(
        "/api/images",
        "get_images",
        "images",
        ("images:read",),
        "M",
        page_size=(20, 100),
        filters={
            "id": _f(STR, "any", "equals"),
            "updated_at": _f(DT, CMP),
            "format": _f(STR, "any", "equals"),
            "name": _f(STR, "any", "contains", "ends-with", "equals", "starts-with"),
            "size": _f(NUM, CMP),
            "hidden": _f(BOOL, "any", "equals"),
        },
        sorts=_set("format", "id", "name", "size", "updated_at"),
        fields={"image": IMAGE_FIELDS},
    ),
    Endpoint(
        "/api/reviews",
        "get_reviews",
        "reviews",
        ("reviews:read",),
        "M",
        page_size=(20, 100),
        filters={
            "created": _f(DT, "greater-or-equal", "less-or-equal"),
            "rating": _f(NUM, "any", "equals", "greater-or-equal", "less-or-equal"),
            "id": _f(STR, "any", "equals"),
            "item.id": _f(STR, "any", "equals"),
            "content": _f(STR, "contains"),
            "status": _f(STR, "equals"),
            "review_type": _f(STR, "equals"),
            "verified": _f(BOOL, "equals"),
        },
        sorts=_set("created", "rating", "updated"),
        includes=_set("events"),
        fields={
            "event": EVENT_FIELDS,
            "review": _set(
                "author", "content", "created", "email", "id", "images", "product", "public_reply", "rating",
                "review_type", "smart_quote", "status", "title", "updated", "verified",
            ),
        },
    ),
    Endpoint(
        "/api/tag-groups",
        "get_tag_groups",
        "tag-groups",
        ("tags:read",),
        "S",
        page_size=(25, 25),
        filters={
            "name": _f(STR, "contains", "ends-with", "equals", "starts-with"),
            "exclusive": _f(BOOL, "equals"),
            "default": _f(BOOL, "equals"),
        },
        sorts=_set("id", "name"),
        fields={"tag-group": TAG_GROUP_FIELDS},
    ),
    Endpoint(
        "/api/template-universal-content",
        "get_all_universal_content",
        "template-universal-content",
        ("templates:read",),
        "L",
        page_size=(20, 100),
        filters={
            "id": _f(STR, "any", "equals"),
            "name": _f(STR, "any", "equals"),
            "created": _f(DT, CMP),
            "updated": _f(DT, CMP),
            "definition.content_type": _f(STR, "equals"),
            "definition.type": _f(STR, "equals"),
        },
        sorts=_set("created", "id", "name", "updated"),
        fields={"template-universal-content": _set(
            "created", "definition", "id", "name", "screenshot_status", "screenshot_url", "updated",
        )},
    ),
    Endpoint(
        "/api/push-tokens",
        "get_push_tokens",
        "push-tokens",
        ("profiles:read", "push-tokens:read"),
        "M",
        page_size=(20, 100),
        filters={
            "id": _f(STR, "equals"),
            "profile.id": _f(STR, "equals"),
            "enablement_status": _f(STR, "equals"),
            "platform": _f(STR, "equals"),
        },
        includes=_set("profile"),
        fields={"profile": PROFILE_FIELDS_BASIC, "push-token": PUSH_TOKEN_FIELDS},
    ),
    Endpoint(
        "/api/web-feeds",
        "get_web_feeds",
        "web-feeds",
        ("web-feeds:read",),
        "XS",
        page_size=(5, 20),
        filters={
            "name": _f(STR, "any", "contains", "equals"),
            "created": _f(DT, CMP),
            "updated": _f(DT, CMP),
        },
        sorts=_set("created", "name", "updated"),
        fields={"web-feed": _set(
            "content_type", "created", "id", "name", "request_method", "status", "updated", "url",
        )},
    ),
    Endpoint(
        "/api/custom-metrics",
        "get_custom_metrics",
        "custom-metrics",
        ("metrics:read",),
        "S",
        includes=_set("metrics"),
        fields={"custom-metric": CUSTOM_METRIC_FIELDS, "metric": METRIC_FIELDS},
    ),
    Endpoint(
        "/api/mapped-metrics",
        "get_mapped_metrics",
        "mapped-metrics",
        ("metrics:read",),
        "S",
        includes=_set("custom-metric", "metric"),
        fields={
            "custom-metric": CUSTOM_METRIC_FIELDS,
            "mapped-metric": _set("id", "updated"),
            "metric": METRIC_FIELDS,
        },
    ),
    Endpoint(
        "/api/data-sources",
        "get_data_sources",
        "data-sources",
        ("custom-objects:read",),
        "S",
        page_size=(20, 100),
        fields={"data-source": _set("description", "id", "namespace", "title", "visibility")},
    ),
    Endpoint(
        "/api/campaign-values-reports",
        "query_campaign_values",
        None,
        ("campaigns:read",),
        "REPORTING",
        method="POST",
        fields={"campaign-values-report": _set("id", "results")},
    ),
    Endpoint(
        "/api/flow-series-reports",
        "query_flow_series",
        None,
        ("flows:read",),
        "REPORTING",
        method="POST",
        fields={"flow-series-report": _set("date_times", "id", "results")},
    ),
    Endpoint(
        "/api/flow-values-reports",
        "query_flow_values",
        None,
        ("flows:read",),
        "REPORTING",
        method="POST",
        fields={"flow-values-report": _set("id", "results")},
    ),
    Endpoint(
        "/api/form-values-reports",
        "query_form_values",
        None,
        ("forms:read",),
        "REPORTING",
        method="POST",
        fields={"form-values-report": _set("id", "results")},
    ),
    Endpoint(
        "/api/form-series-reports",
        "query_form_series",
        None,
        ("forms:read",),
        "REPORTING",
        method="POST",
        fields={"form-series-report": _set("date_times", "id", "results")},
    ),
    Endpoint(
        "/api/segment-values-reports",
        "query_segment_values",
        None,
        ("segments:read",),
        "REPORTING",
        method="POST",
        fields={"segment-values-report": _set("id", "results")},
    ),
    Endpoint(
        "/api/segment-series-reports",
        "query_segment_series",
        None,
        ("segments:read",),
        "REPORTING",
        method="POST",
        fields={"segment-series-report": _set("date_times", "id", "results")},
    ),
]

BY_ROUTE = {e.route: e for e in ENDPOINTS}

# Cheaper variants the API rate-limits on their own, tighter budget (see klaviyo-api.md §2).
REDUCED_TIER = {
    ("/api/lists/{id}", "additional-fields[list]", "profile_count"): "XS",
    ("/api/segments/{id}", "additional-fields[segment]", "profile_count"): "XS",
    ("/api/profiles", "additional-fields[profile]", "predictive_analytics"): "M",
}
