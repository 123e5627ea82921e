# syntax=docker/dockerfile:1
# airbyte/source-klaviyo:3.0.0
#
#   docker build -t airbyte/source-klaviyo:3.0.0 .
#   docker run --rm airbyte/source-klaviyo:3.0.0 spec
#   docker run --rm -v "$PWD/secrets:/secrets" airbyte/source-klaviyo:3.0.0 check --config /secrets/config.json
#
# The install step is the one tests/packaging/test_wheel_install.py runs without Docker.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build: the locked venv
FROM ${PYTHON_IMAGE} AS build

RUN pip install --no-cache-dir "uv>=0.5,<1"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/airbyte/.venv

WORKDIR /airbyte/integration_code
# Dependencies first, so that a source change does not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
RUN uv sync --frozen --no-dev --no-editable

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE}

RUN groupadd --gid 1000 airbyte \
 && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/airbyte airbyte

COPY --from=build --chown=airbyte:airbyte /airbyte/.venv /airbyte/.venv

ENV PATH="/airbyte/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    AIRBYTE_ENTRYPOINT="source-klaviyo"

WORKDIR /airbyte/integration_code
USER airbyte

ENTRYPOINT ["source-klaviyo"]

LABEL io.airbyte.name=airbyte/source-klaviyo \
      io.airbyte.version=3.0.0
