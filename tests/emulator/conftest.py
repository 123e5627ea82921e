"""Fixtures of the emulator suite (the emulators themselves come from tests/conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# --import-mode=importlib keeps the repo root off sys.path; the suite imports tests.* helpers.
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests.openapi_validation import OpenAPIValidator, spec_validator  # noqa: E402


@pytest.fixture(scope="session")
def spec() -> OpenAPIValidator:
    return spec_validator()
