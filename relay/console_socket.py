"""WS /logs: the console feed (docs/console-protocol.md)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from shared import __version__
from shared.console_protocol import (
    MAX_COMMAND_BYTES,
    CommandError,
    ConsoleCommand,
    PingCommand,
    SessionUpdateCommand,
    SimCallCommand,
    decode_command,
)
from shared.session import SessionConfigError

from . import metrics
from .cluster import SharedStateError
from .keys import CONSOLES, RELAY
from .security import bearer, console_allowed

if TYPE_CHECKING:
    from .context import RelayContext

log = logging.getLogger("relay.console")


def _token_from(request: web.Request) -> str:
    return bearer(request) or request.query.get("token", "")


class RateLimiter:
    """A token bucket: `rate` commands a second, bursts of twice that."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = rate * 2
        self.tokens = self.capacity
        self.at = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


async def console_endpoint(request: web.Request) -> web.StreamResponse:
    ctx = request.app[RELAY]
    settings = ctx.settings
    client_host = request.remote
    origin = request.headers.get("Origin")
    if not console_allowed(settings.console_token, _token_from(request), client_host):
        log.warning("refused /logs from %s: missing or wrong console token", client_host)
        return web.Response(status=403, text="the console feed needs the console token")
    if origin and settings.console_origin and origin.rstrip("/") != settings.console_origin:
        log.warning("refused /logs: Origin %s is not CONSOLE_ORIGIN", origin)
        return web.Response(status=403, text="this Origin may not open the console feed")
    ws = web.WebSocketResponse(compress=False, max_msg_size=4 * MAX_COMMAND_BYTES)
    await ws.prepare(request)
    request.app[CONSOLES].add(ws)
    # Events from now on are held until the hello (which may wait for Redis) goes first.
    client = ctx.hub.add_console(f"{client_host}", hold=True)
    metrics.CONSOLE_CLIENTS.inc()
    sender: asyncio.Task[None] | None = None
    limiter = RateLimiter(settings.console_rate_per_s)
    limited = False
    try:
        ctx.hub.release(client, await _hello(ctx))
        sender = asyncio.get_running_loop().create_task(_pump_out(ws, client.queue))
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                data: str | bytes = message.data
            elif message.type is WSMsgType.BINARY:
                data = message.data
            else:
                break
            if not limiter.allow():
                if not limited:  # one line per console, not one per refused command
                    limited = True
                    log.warning(
                        "console %s: over the rate limit (%g commands/s); refusing the excess",
                        client_host,
                        settings.console_rate_per_s,
                    )
                ctx.hub.send_to(client, _refused(None, "", "rate limit: too many commands"))
                continue
            await _handle(ctx, client, data)
    finally:
        request.app[CONSOLES].discard(ws)
        if not client.dropped:  # a dropped console was removed (and counted) by the hub
            ctx.hub.remove_console(client)
        metrics.CONSOLE_CLIENTS.dec()
        if sender is not None:
            sender.cancel()
    return ws


async def _hello(ctx: RelayContext) -> dict[str, Any]:
    registry = ctx.shared.registry
    try:
        calls, ended = await registry.live(), await registry.recent(20)
    except SharedStateError as exc:  # Redis away: what this process knows
        log.warning("console hello without the other processes' calls: %s", exc)
        calls, ended = [r.bridge.info() for r in ctx.hub.calls.values()], ctx.hub.ended[-20:]
    return {
        "type": "relay.hello",
        "version": __version__,
        "simulator": ctx.settings.simulator,
        "calls": calls,
        "ended": ended,
        "default_session": ctx.default_session,
        "greeting": ctx.greeting,
        "tools": ctx.tools.schemas(),
        "model": ctx.model_status,
    }


async def close_consoles(app: web.Application) -> None:
    """On shutdown: close every console socket at once, so nothing waits on them."""
    sockets: set[web.WebSocketResponse] = app[CONSOLES]
    for ws in list(sockets):
        await ws.close(code=1001, message=b"relay shutting down")


async def _pump_out(ws: web.WebSocketResponse, queue: asyncio.Queue[bytes | None]) -> None:
    try:
        while True:
            data = await queue.get()
            if data is None:  # dropped by the hub for being too slow
                await ws.close(code=1008, message=b"too slow")
                return
            await ws.send_frame(data, WSMsgType.TEXT)
    except Exception:
        return


def _refused(cmd_id: str | None, command: str, message: str) -> dict[str, Any]:
    return {"type": "command.error", "id": cmd_id, "command": command, "message": message}


async def _handle(ctx: RelayContext, client: Any, data: str | bytes) -> None:
    hub = ctx.hub
    try:
        cmd = decode_command(data)
    except CommandError as exc:
        log.info("console command refused: %s", exc)
        hub.send_to(client, _refused(None, "", str(exc)))
        return
    kind = str(type(cmd).__struct_config__.tag or "")
    cmd_id = cmd.id if isinstance(cmd.id, str) else None
    if isinstance(cmd, PingCommand):
        hub.send_to(client, {"type": "pong", "id": cmd_id})
        return
    try:
        result = await _dispatch(ctx, cmd)
    except (ValueError, SessionConfigError) as exc:
        hub.send_to(client, _refused(cmd_id, kind, str(exc)))
        return
    hub.send_to(client, {"type": "command.ok", "id": cmd_id, "command": kind, **result})


async def _dispatch(ctx: RelayContext, cmd: ConsoleCommand) -> dict[str, Any]:
    if isinstance(cmd, PingCommand):
        return {}  # answered with `pong` by _handle
    if isinstance(cmd, SimCallCommand):
        if not ctx.settings.simulator:
            raise ValueError("sim.call works only in simulator mode (no OPENAI_API_KEY)")
        from .sim_calls import start_sim_call

        sim_sid = start_sim_call(ctx, cmd.seconds, cmd.mode)
        return {"call_sid": sim_sid}
    warning = ""
    if isinstance(cmd, SessionUpdateCommand) and cmd.scope in ("default", "both"):
        session = ctx.set_default_session(cmd.session)
        if isinstance(cmd.greeting, str):
            ctx.greeting = cmd.greeting.strip()[:2000]
        greeting = ctx.greeting  # before the awaits: another process's save may land meanwhile
        warning = await ctx.save_defaults()
        await ctx.shared.defaults.changed(session, greeting)  # the other processes too
        # Each process tells its own consoles, so what they see matches their hello (and,
        # if another process saved newer defaults meanwhile, those are what it now uses).
        ctx.hub.publish_local(
            {"type": "session.default", "session": ctx.default_session, "greeting": ctx.greeting}
        )
        if cmd.scope == "default":
            return {"warning": warning} if warning else {}
    call_sid: str | None = getattr(cmd, "call_sid", None)
    if not call_sid:
        raise ValueError("call_sid is required for this command")
    extra = {"warning": warning} if warning else {}
    runner = ctx.hub.calls.get(call_sid)
    if runner is not None:
        await runner.on_console(cmd)
        return {"call_sid": call_sid, **extra}
    try:  # a call on another process: it runs the command and answers
        result = await ctx.shared.registry.forward(call_sid, cmd)
    except SharedStateError as exc:
        raise ValueError(f"call {call_sid} is not on this relay process, and {exc}") from None
    if result is None:
        raise ValueError(f"no live call {call_sid}")
    return {**result, "call_sid": call_sid, **extra}
