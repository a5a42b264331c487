"""python -m relay: settings -> the aiohttp server on uvloop, with a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from shared.envparse import SettingsError

from . import logs, server
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
            )
            if s
        ],
    )
    if settings.simulator:
        log.warning("OPENAI_API_KEY is not set: calls go to the simulated model")
    if not settings.twilio_auth_token:
        log.warning("TWILIO_AUTH_TOKEN is not set: Twilio signatures are NOT checked")
    if not settings.console_token:
        log.warning("RELAY_CONSOLE_TOKEN is not set: /logs accepts loopback clients only")
    if not settings.public_url:
        log.warning("PUBLIC_URL is not set: /twiml will answer 500 until it is")

    async def run() -> None:
        await serve(settings)

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())
    return 0


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await server.start(settings)
    log.info("relay listening on %s:%d", settings.host, running.port)
    await stop.wait()
    await running.stop(settings.drain_seconds)
    log.info("relay stopped")


if __name__ == "__main__":
    sys.exit(main())
