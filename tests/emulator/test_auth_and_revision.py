"""Authentication, key scopes and the revision header, as Klaviyo answers them.

Each error is pinned to its exact status, code, title and detail: Klaviyo's texts for 401 and 403
(docs/emulator.md, "Order of checks"), the emulator's own for the revision (Klaviyo's are unknown).
"""

from __future__ import annotations

import pytest

from klaviyo_emulator.runner import EmulatorOptions, run_emulator_in_thread
from tests.emulator.helpers import request

NOT_PROVIDED = "Authentication credentials were not provided."
INCORRECT = "Incorrect authentication credentials."
NO_PERMISSION = "You do not have permission to perform this action."


def _error(resp) -> tuple[int, str, str, str]:
    return resp.status, resp.error["code"], resp.error["title"], resp.error["detail"]


def test_missing_authorization_is_401_not_authenticated(emulator):
    resp = request(emulator.url, "/api/profiles", api_key=None)
    assert _error(resp) == (401, "not_authenticated", NOT_PROVIDED, NOT_PROVIDED)
    assert resp.error["status"] == 401


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("Klaviyo-API-Key pk_wrong", INCORRECT),
        ("Bearer pk_emulator", INCORRECT),
        ("pk_emulator", INCORRECT),
        ("", NOT_PROVIDED),
    ],
)
def test_wrong_key_or_scheme_is_401(emulator, header, detail):
    resp = request(emulator.url, "/api/events", api_key=None, headers={"Authorization": header})
    assert _error(resp) == (401, "not_authenticated", detail, detail)


def test_custom_api_key_replaces_the_default():
    with run_emulator_in_thread(EmulatorOptions(seed=2, rate_limits=False, api_key="pk_custom")) as emu:
        assert request(emu.url, "/api/metrics", api_key="pk_custom").status == 200
        assert request(emu.url, "/api/metrics").status == 401


def test_key_without_a_scope_is_403_there_and_200_elsewhere():
    scopes = {"pk_events_only": frozenset({"events:read", "metrics:read"}), "pk_all": None}
    with run_emulator_in_thread(EmulatorOptions(seed=2, rate_limits=False, key_scopes=scopes)) as emu:
        denied = request(emu.url, "/api/profiles", api_key="pk_events_only")
        assert _error(denied) == (
            403, "permission_denied", NO_PERMISSION, "This API key is missing required scopes: profiles:read."
        )
        assert request(emu.url, "/api/events", api_key="pk_events_only").status == 200
        assert request(emu.url, "/api/profiles", api_key="pk_all").status == 200
        flt = {"filter": "equals(messages.channel,'email')"}
        assert _error(request(emu.url, "/api/campaigns", flt, api_key="pk_events_only")) == (
            403,
            "permission_denied",
            NO_PERMISSION,
            "This API key is missing required scopes: campaigns:read.",
        )
        assert request(emu.url, "/api/profiles").status == 200, "the main key keeps every scope"


def _malformed(revision: str) -> str:
    return f"Invalid revision '{revision}': expected YYYY-MM-DD, optionally with a suffix like .pre."


def _retired(revision: str) -> str:
    return f"Revision {revision} is retired; use a revision from 2025-01-15 to 2026-07-15."


@pytest.mark.parametrize(
    ("revision", "title", "detail"),
    [
        (None, "Missing revision header.", "The 'revision' header is required."),
        ("", "Missing revision header.", "The 'revision' header is required."),
        ("2026-13-45", "Invalid input.", _malformed("2026-13-45")),
        ("2026/07/15", "Invalid input.", _malformed("2026/07/15")),
        ("latest", "Invalid input.", _malformed("latest")),
        ("2023-02-22", "Invalid input.", _retired("2023-02-22")),
        ("2022-10-17", "Invalid input.", _retired("2022-10-17")),
        ("2024-10-15", "Invalid input.", _retired("2024-10-15")),
        ("2026-10-15", "Invalid input.",
         "Revision 2026-10-15 is not available; the newest revision is 2026-07-15."),
    ],
    ids=["missing", "empty", "impossible-date", "slashes", "word", "retired-2023-02-22", "retired-2022-10-17",
         "retired-2024-10-15", "newer-than-served"],
)
def test_missing_malformed_retired_or_newer_revision_is_400(emulator, revision, title, detail):
    resp = request(emulator.url, "/api/profiles", revision=revision)
    assert _error(resp) == (400, "invalid", title, detail), resp.body[:300]


@pytest.mark.parametrize("revision", ["2026-07-15", "2026-04-15", "2025-01-15", "2026-07-15.pre"])
def test_current_revisions_are_served(emulator, revision):
    resp = request(emulator.url, "/api/metrics", revision=revision)
    assert resp.status == 200
    served = sorted(row["id"] for row in resp.json()["data"])
    assert served == sorted(row["id"] for row in emulator.truth("metrics"))


def test_emulator_endpoints_need_no_key(emulator):
    assert request(emulator.url, "/_emulator/stats", api_key=None, revision=None).status == 200
    assert request(emulator.url, "/_emulator/truth/tags", api_key=None, revision=None).status == 200


def test_unknown_api_path_is_404(emulator):
    resp = request(emulator.url, "/api/no-such-endpoint")
    assert _error(resp) == (404, "not_found", "Not found.", "Not found.")
