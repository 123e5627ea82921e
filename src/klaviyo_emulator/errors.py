"""Klaviyo's JSON:API error bodies, raised as exceptions so any layer can stop a request."""

from __future__ import annotations

import uuid

import orjson

from .jsontext import JSONObject

JSONAPI = "application/vnd.api+json"

_TITLES = {
    400: ("invalid", "Invalid input."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
    429: ("throttled", "Request was throttled."),
    500: ("error", "A server error occurred."),
    502: ("error", "Bad gateway."),
    503: ("error", "Service unavailable."),
    504: ("error", "Gateway timeout."),
}


class ApiError(Exception):
    """An HTTP error that renders as Klaviyo's `{"errors": [...]}` body."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        title: str | None = None,
        parameter: str | None = None,
        pointer: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        default_code, default_title = _TITLES.get(status, ("error", "Error."))
        self.status = status
        self.detail = detail
        self.code = code or default_code
        self.title = title or default_title
        self.parameter = parameter
        self.pointer = pointer
        self.headers = headers or {}

    def body(self, quirks: bool = False) -> bytes:
        """The JSON:API error body; with `quirks` (quirks.py `error_shapes`) a 401 names the pointer
        `/data/` and a 429 has no `source` at all, as Klaviyo's are seen to."""
        error: JSONObject = {
            "id": str(uuid.uuid4()),
            "status": self.status,
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
            "source": {},
        }
        if self.parameter is not None:
            error["source"]["parameter"] = self.parameter
        if self.pointer is not None:
            error["source"]["pointer"] = self.pointer
        if quirks and self.status == 401:
            error["source"] = {"pointer": "/data/"}
        elif quirks and self.status == 429:
            del error["source"]
        return orjson.dumps({"errors": [error]})


def invalid(detail: str, parameter: str | None = None, pointer: str | None = None) -> ApiError:
    return ApiError(400, detail, parameter=parameter, pointer=pointer)
