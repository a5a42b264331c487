"""Serve the relay's aiohttp application on a port, and drain it gracefully.

`python -m relay` and the in-process harness both start the relay this way, so the tests
exercise the server a deployment runs.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

from aiohttp import web

from .app import create_app
from .context import RelayContext
from .keys import RELAY
from .settings import Settings

log = logging.getLogger("relay")

# After the drain, what open sockets get to close. Calls are over by then and consoles
# are closed first, so this is only a bound on a peer that does not answer a close.
SHUTDOWN_TIMEOUT_S = 2.0


@dataclass
class Server:
    app: web.Application
    runner: web.AppRunner
    port: int

    @property
    def ctx(self) -> RelayContext:
        return self.app[RELAY]

    async def stop(self, drain_seconds: float = 0.0) -> None:
        """Stop taking calls, let live ones finish (up to `drain_seconds`), then exit."""
        await drain(self.ctx, drain_seconds)
        await self.runner.cleanup()


async def start(settings: Settings, sock: socket.socket | None = None) -> Server:
    """Listen on settings.host:port (or on `sock`, a socket a parent process bound)."""
    app = create_app(settings)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S
    )
    await runner.setup()
    site: web.BaseSite
    if sock is not None:
        site = web.SockSite(runner, sock)
    else:
        site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    port = sockets[0].getsockname()[1] if sockets else settings.port
    return Server(app, runner, port)


async def drain(ctx: RelayContext, seconds: float) -> None:
    """Stop taking calls, let live ones finish, then end the rest politely."""
    ctx.draining = True
    if not ctx.hub.calls:
        return
    log.info("draining: %d live calls, waiting up to %.0f s", len(ctx.hub.calls), seconds)
    if not await ctx.hub.wait_empty(seconds):
        for runner in list(ctx.hub.calls.values()):
            log.info("call %s: ending for shutdown", runner.bridge.call_sid)
            await runner.shutdown()
        await ctx.hub.wait_empty(5.0)
