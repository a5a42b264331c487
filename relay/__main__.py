"""python -m relay: settings -> the aiohttp server on uvloop, with a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from urllib.parse import urlsplit

from shared.envparse import SettingsError
from shared.secret import Secret

from . import logs, server
from .cluster import SharedStateUnavailable
from .settings import Settings, from_env, load_env

log = logging.getLogger("relay")


def main() -> int:
    try:
        settings = from_env(load_env())
    except SettingsError as exc:
        print(f"relay: bad configuration: {exc}", file=sys.stderr)
        return 2
    logs.configure(
        settings.log_level,
        settings.log_format,
        secrets=[
            s.get()
            for s in (
                settings.openai_api_key,
                settings.twilio_auth_token,
                settings.console_token,
                settings.store.webhook_secret,
                settings.store.database_password,
                Secret(urlsplit(settings.redis_url.get()).password or ""),
            )
            if s
        ],
    )
    worker = "RELAY_WORKER_INDEX" in os.environ
    if settings.workers > 1 and not worker:
        from .workers import supervise

        _warn(settings)
        return supervise(settings)
    if not worker:  # a worker's parent said it already
        _warn(settings)

    async def run() -> int:
        return await serve(settings)

    try:
        import uvloop

        return uvloop.run(run())
    except ImportError:
        return asyncio.run(run())


def _warn(settings: Settings) -> None:
    if settings.simulator:
        log.warning("OPENAI_API_KEY is not set: calls go to the simulated model")
    if not settings.twilio_auth_token:
        log.warning("TWILIO_AUTH_TOKEN is not set: Twilio signatures are NOT checked")
    if not settings.console_token:
        log.warning("RELAY_CONSOLE_TOKEN is not set: /logs accepts loopback clients only")
    if not settings.public_url:
        log.warning("PUBLIC_URL is not set: /twiml will answer 500 until it is")


async def serve(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # A worker accepts on the socket its parent bound (relay/workers.py).
    fd = os.environ.get("RELAY_LISTEN_FD")
    sock = socket.socket(fileno=int(fd)) if fd else None
    try:
        running = await server.start(settings, sock)
    except SharedStateUnavailable as exc:
        log.error("%s: not starting (REDIS_URL is set, so this relay shares state there)", exc)
        return 1
    # What start-up loaded (the store's and Twilio's libraries, the app) lives as long as
    # the process: keep it out of the full collections, which otherwise walk all of it while
    # every call waits (gen-2 pauses of 15-110 ms measured under load; bench/README.md).
    gc.collect()
    gc.freeze()
    if sock is not None:
        from .workers import watch_parent

        watcher = loop.create_task(watch_parent(stop))
        log.info(
            "relay worker %s listening (pid %d)", os.environ.get("RELAY_WORKER_INDEX"), os.getpid()
        )
    else:
        log.info("relay listening on %s:%d", settings.host, running.port)
    await stop.wait()
    await running.stop(settings.drain_seconds)
    if sock is not None:
        watcher.cancel()
    log.info("relay stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
