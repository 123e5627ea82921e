"""Authentication, key scopes and the revision header, as Klaviyo answers them."""

from __future__ import annotations

import pytest

from klaviyo_emulator.runner import EmulatorOptions, run_emulator_in_thread
from tests.emulator.helpers import request


def test_missing_authorization_is_401_not_authenticated(emulator):
    resp = request(emulator.url, "/api/profiles", api_key=None)
    assert resp.status == 401
    assert resp.error["code"] == "not_authenticated"


@pytest.mark.parametrize("header", ["Klaviyo-API-Key pk_wrong", "Bearer pk_emulator", "pk_emulator", ""])
def test_wrong_key_or_scheme_is_401(emulator, header):
    resp = request(emulator.url, "/api/events", api_key=None, headers={"Authorization": header})
    assert resp.status == 401
    assert resp.error["code"] in ("not_authenticated", "authentication_failed")


def test_custom_api_key_replaces_the_default():
    with run_emulator_in_thread(EmulatorOptions(seed=2, rate_limits=False, api_key="pk_custom")) as emu:
        assert request(emu.url, "/api/metrics", api_key="pk_custom").status == 200
        assert request(emu.url, "/api/metrics").status == 401


def test_key_without_a_scope_is_403_there_and_200_elsewhere():
    scopes = {"pk_events_only": frozenset({"events:read", "metrics:read"}), "pk_all": None}
    with run_emulator_in_thread(EmulatorOptions(seed=2, rate_limits=False, key_scopes=scopes)) as emu:
        denied = request(emu.url, "/api/profiles", api_key="pk_events_only")
        assert denied.status == 403
        assert denied.error["code"] == "permission_denied"
        assert request(emu.url, "/api/events", api_key="pk_events_only").status == 200
        assert request(emu.url, "/api/profiles", api_key="pk_all").status == 200
        flt = {"filter": "equals(messages.channel,'email')"}
        assert request(emu.url, "/api/campaigns", flt, api_key="pk_events_only").status == 403
        assert request(emu.url, "/api/profiles").status == 200, "the main key keeps every scope"


@pytest.mark.parametrize(
    "revision",
    [None, "", "2026-13-45", "2026/07/15", "latest", "2023-02-22", "2022-10-17"],
    ids=[
        "missing",
        "empty",
        "impossible-date",
        "slashes",
        "word",
        "retired-2023-02-22",
        "retired-2022-10-17",
    ],
)
def test_missing_malformed_or_retired_revision_is_400(emulator, revision):
    resp = request(emulator.url, "/api/profiles", revision=revision)
    assert resp.status == 400, resp.body[:300]
    assert resp.error["detail"]
    assert resp.error["code"]


@pytest.mark.parametrize("revision", ["2026-07-15", "2026-04-15", "2026-07-15.pre"])
def test_current_revisions_are_served(emulator, revision):
    assert request(emulator.url, "/api/metrics", revision=revision).status == 200


def test_emulator_endpoints_need_no_key(emulator):
    assert request(emulator.url, "/_emulator/stats", api_key=None, revision=None).status == 200
    assert request(emulator.url, "/_emulator/truth/tags", api_key=None, revision=None).status == 200


def test_unknown_api_path_is_404(emulator):
    resp = request(emulator.url, "/api/no-such-endpoint")
    assert resp.status == 404
    assert resp.error["code"] == "not_found"
