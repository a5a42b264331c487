"""python -m relay: settings -> Hypercorn, with a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config

from shared.envparse import SettingsError

from . import logs
from .app import create_app
from .context import RelayContext
from .settings import from_env, load_env

log = logging.getLogger("relay")


async def drain(ctx: RelayContext, seconds: float) -> None:
    """Stop taking calls, let live ones finish, then end the rest politely."""
    ctx.draining = True
    log.info("draining: %d live calls, waiting up to %.0f s", len(ctx.hub.calls), seconds)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while ctx.hub.calls and loop.time() < deadline:  # noqa: ASYNC110 -- calls end on their own schedule
        await asyncio.sleep(0.2)
    for runner in list(ctx.hub.calls.values()):
        log.info("call %s: ending for shutdown", runner.bridge.call_sid)
        await runner.shutdown()
    while ctx.hub.calls and loop.time() < deadline + 5:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


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
            for s in (settings.openai_api_key, settings.twilio_auth_token, settings.console_token)
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

    app = create_app(settings)
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.websocket_max_message_size = settings.ws_max_message_bytes
    config.graceful_timeout = 5.0
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # our handler: redacted, one format

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        async def shutdown_trigger() -> None:
            await stop.wait()
            await drain(app.state.relay, settings.drain_seconds)

        log.info("relay listening on %s:%d", settings.host, settings.port)
        await serve(app, config, shutdown_trigger=shutdown_trigger)  # type: ignore[arg-type]

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
