"""The image's install step, without Docker: the project as a wheel plus only the locked runtime deps.

The Dockerfile runs `uv sync --frozen --no-dev --no-editable` into /airbyte/.venv. This test runs
the same command on a copy of the files the Dockerfile copies (pyproject.toml, uv.lock, README.md,
src/) into a fresh venv, then runs the console script from it. It catches a lockfile out of sync,
a package file left out of the wheel (schemas, schema_changes.json), an import of a dev-only
library at runtime, and a broken entry point. About 2 s with a warm uv cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE_FILES = ("pyproject.toml", "uv.lock", "README.md")
API_KEY = "pk_packaging_test_key_123"


def _uv() -> list[str] | None:
    if shutil.which("uv"):
        return ["uv"]
    probe = subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True)
    return [sys.executable, "-m", "uv"] if probe.returncode == 0 else None


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory, machine_network_environment) -> Path:
    uv = _uv()
    if uv is None:
        pytest.skip("uv is not installed")
    build = tmp_path_factory.mktemp("image")
    for name in IMAGE_FILES:
        shutil.copy2(REPO / name, build / name)
    shutil.copytree(REPO / "src", build / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = build / "venv"
    # uv may reach the package registry: through the machine's proxy and CAs, which the suite removed.
    env = {**os.environ, **machine_network_environment, "UV_PROJECT_ENVIRONMENT": str(venv),
           "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        [*uv, "sync", "--frozen", "--no-dev", "--no-editable", "--python", sys.executable],
        cwd=build, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return venv


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run([str(venv / "bin" / "source-klaviyo"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_spec_runs_from_the_installed_wheel(image_venv, tmp_path):
    done = _run(image_venv, "spec", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    message = json.loads(done.stdout.splitlines()[0])
    assert message["type"] == "SPEC"
    assert "api_key" in message["spec"]["connectionSpecification"]["properties"]


def test_only_runtime_dependencies_are_installed(image_venv):
    site = next((image_venv / "lib").glob("python3*/site-packages"))
    installed = {path.name.split("-")[0].lower() for path in site.glob("*.dist-info")}
    assert {"aiohttp", "orjson", "duckdb", "rich", "source_klaviyo"} <= installed
    dev_only = {"pytest", "hypothesis", "jsonschema", "ruff", "airbyte_protocol_models_pdv2", "klaviyo_api"}
    assert not installed & dev_only
    # Installed as a wheel, not as a link back to the source tree.
    assert (site / "source_klaviyo" / "schema_changes.json").is_file()
    assert any((site / "source_klaviyo" / "schemas").glob("*.json"))


def test_upgrade_plan_runs_from_the_installed_wheel(image_venv, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"api_key": API_KEY, "start_date": "2023-01-01T00:00:00Z"}))
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"events": {"datetime": "2024-05-01T10:00:00+00:00"}}))
    done = _run(image_venv, "upgrade-plan", "--config", str(config), "--state", str(state), "--json",
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert API_KEY not in done.stdout
    plan = json.loads(done.stdout)
    assert [item["decision"] for item in plan["streams"]] == ["continue"]


def test_dockerfile_installs_the_same_way():
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "uv sync --frozen --no-dev --no-editable" in dockerfile
    assert 'ENTRYPOINT ["source-klaviyo"]' in dockerfile
    assert 'AIRBYTE_ENTRYPOINT="source-klaviyo"' in dockerfile
    assert "io.airbyte.version=3.0.0" in dockerfile
    assert "io.airbyte.name=airbyte/source-klaviyo" in dockerfile
    assert "USER airbyte" in dockerfile
    for name in IMAGE_FILES:
        assert name in dockerfile
