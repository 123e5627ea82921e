"""The connector's Airbyte `ConnectorSpecification` (what `source-klaviyo spec` prints).

Every field a 2.x config may carry is declared with the same type it had, so that a config saved by
a 2.x UI validates unchanged; `config.parse_config` is the authority on what is accepted.
"""

from __future__ import annotations

from source_klaviyo.config import (
    DEFAULT_BASE_URL,
    DEFAULT_CAMPAIGN_LOOKBACK_DAYS,
    MAX_CAMPAIGN_LOOKBACK_DAYS,
    MAX_NUM_WORKERS,
)
from source_klaviyo.contracts import JSONObject

DOCUMENTATION_URL = "https://docs.airbyte.com/integrations/sources/klaviyo"
START_DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
# Every scope a stream needs: `scopes.read_scopes()`, written out so that `spec` does not import the
# stream table (start-up time); tests/connector/test_scopes.py keeps the two equal.
READ_SCOPES = (
    "accounts:read", "campaigns:read", "catalogs:read", "coupon-codes:read", "coupons:read",
    "custom-objects:read", "events:read", "flows:read", "forms:read", "images:read", "lists:read",
    "metrics:read", "profiles:read", "push-tokens:read", "reviews:read", "segments:read", "tags:read",
    "templates:read", "web-feeds:read",
)


def connection_specification() -> JSONObject:
    """The Airbyte protocol SPEC payload: `{"documentationUrl", "connectionSpecification", ...}`."""
    return {
        "documentationUrl": DOCUMENTATION_URL,
        "connectionSpecification": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "Klaviyo Spec",
            "type": "object",
            "required": ["api_key"],
            # 1.x/2.x configs carry keys we no longer use; they are kept and ignored.
            "additionalProperties": True,
            "properties": _properties(),
        },
        "supportsNormalization": False,
        "supportsDBT": False,
        # A source writes no destination; the field is part of the protocol shape only.
        "supported_destination_sync_modes": [],
    }


def _properties() -> JSONObject:
    return {
        "api_key": {
            "type": "string",
            "title": "Private API Key",
            "description": (
                "A Klaviyo private API key (starts with pk_). Create one in Klaviyo under Settings > "
                "Account > API keys > Create Private API Key "
                "(https://www.klaviyo.com/settings/account/api-keys), "
                "with Read-only access, or a custom key with these read scopes: "
                + ", ".join(READ_SCOPES)
                + ". See the <a href=\"https://docs.airbyte.com/integrations/sources/klaviyo\">docs</a>."
            ),
            "airbyte_secret": True,
            "order": 0,
        },
        "start_date": {
            "type": "string",
            "title": "Start Date",
            "description": (
                "UTC date and time in the format 2017-01-25T00:00:00Z. Records updated (events: "
                "happened) before it are not read. Optional: without it, everything is read."
            ),
            "pattern": START_DATE_PATTERN,
            "examples": ["2017-01-25T00:00:00Z"],
            "format": "date-time",
            "order": 1,
        },
        "disable_fetching_predictive_analytics": {
            "type": "boolean",
            "title": "Disable Fetching Predictive Analytics",
            "description": (
                "Do not request predictive_analytics with profiles. Fetching them moves the profiles "
                "endpoint to a lower rate-limit tier; when enabled, the predictive_analytics column "
                "stays empty."
            ),
            "default": False,
            "order": 2,
        },
        "num_workers": {
            "type": "integer",
            "title": "Cap on concurrent requests",
            "description": (
                "Leave empty: the connector keeps as many requests in flight as your account's rate "
                "limits allow at the round trip it measures. Set it only to send fewer at once (per "
                "endpoint and in all). 10, the default of 2.x, is read as empty. Rate limits: "
                "https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling"
            ),
            "minimum": 1,
            "maximum": MAX_NUM_WORKERS,
            "examples": [4, 20],
            "order": 3,
        },
        "lookback_window": {
            "type": "integer",
            "title": "Events lookback window (days)",
            "description": (
                "Each incremental events sync re-reads this many days before the saved cursor, to pick "
                "up events Klaviyo records late. Duplicates are removed by primary key downstream."
            ),
            "minimum": 0,
            "default": 0,
            "order": 4,
        },
        "metric_ids": {
            "type": "string",
            "title": "Metric IDs for reports",
            "description": (
                "Comma-separated Klaviyo metric ids (e.g. RESQ6t,ABC123) that limit the conversion "
                "metrics of the report streams. Optional: without it, the account's \"Placed Order\" "
                "metric is used (never every metric: reports are limited to 225 requests a day)."
            ),
            "examples": ["RESQ6t,ABC123"],
            "order": 5,
        },
        "campaign_lookback_days": {
            "type": "integer",
            "title": "Campaign report lookback (days)",
            "description": (
                "campaign_values_reports holds each campaign message's statistics over its life, which "
                "keep changing for days after a send (opens, clicks, conversions). Each day's first "
                "sync reads again the campaigns sent this many days before the previous sync: one "
                "report request per conversion metric."
            ),
            "minimum": 0,
            "maximum": MAX_CAMPAIGN_LOOKBACK_DAYS,
            "default": DEFAULT_CAMPAIGN_LOOKBACK_DAYS,
            "order": 6,
        },
        "base_url": {
            "type": "string",
            "title": "API base URL",
            "description": (
                "The Klaviyo API host. Change it only to point at a test server; plain http is "
                "accepted for loopback hosts only."
            ),
            "default": DEFAULT_BASE_URL,
            "pattern": "^https?://",
            "order": 7,
        },
    }
