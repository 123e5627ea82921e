"""The connector's exception tree.

    SourceError                 anything we report to the user ourselves
     ├── ConfigError            bad config, catalog or state, or credentials refused (-> config_error)
     ├── TransientError         the API kept failing past the retry budget (-> transient_error)
     └── ApiError               the API answered with an error we do not retry (-> system_error,
                                or config_error for 401/403 via `failure_type`)

Every message is user-facing and must never contain the API key; `internal_message` carries detail
for the platform's logs (also key-free).
"""

from __future__ import annotations


class SourceError(Exception):
    failure_type = "system_error"

    def __init__(self, message: str, internal_message: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.internal_message = internal_message


class ConfigError(SourceError):
    failure_type = "config_error"


class TransientError(SourceError):
    failure_type = "transient_error"


class ApiError(SourceError):
    """A non-retryable API answer; `status` is the HTTP status, `failure_type` chosen by it."""

    def __init__(self, message: str, status: int, internal_message: str | None = None) -> None:
        super().__init__(message, internal_message)
        self.status = status
        self.failure_type = "config_error" if status in (401, 403) else "system_error"
