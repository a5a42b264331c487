"""The pumps for one call: move bytes between sockets and the CallBridge.

The Twilio socket is read by the ASGI handler in `relay/app.py`, which calls into the
runner; the runner owns the model socket (with reconnects and hand-overs), a timer,
and tool tasks. All decisions are the bridge's; this file only does I/O.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from shared.console_protocol import ConsoleCommand

from . import metrics
from .actions import Action, Hangup, RunTool, SwitchModel, ToConsole, ToModel, ToTwilio
from .call import CallBridge
from .model_link import ModelConnectError, Prewarmed
from .tools import ToolContext, run_tool
from .twilio_rest import dial_twiml, say_and_hangup_twiml

if TYPE_CHECKING:
    from .context import RelayContext

log = logging.getLogger("relay.runner")

SendText = Callable[[str], Awaitable[None]]
CloseTwilio = Callable[[int, str], Awaitable[None]]
TEXT = aiohttp.WSMsgType.TEXT


@dataclass(eq=False)
class CallRunner:
    ctx: RelayContext
    bridge: CallBridge
    send_twilio: SendText
    close_twilio: CloseTwilio
    ws: aiohttp.ClientWebSocketResponse | None = None
    reconnects: int = 0
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _next_ws: aiohttp.ClientWebSocketResponse | None = None
    _switching: bool = False
    _finished: bool = False
    _twilio_open: bool = True

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, prewarmed_sid: str | None) -> None:
        self.spawn(self._model_loop(prewarmed_sid))
        self.spawn(self._timer_loop())

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "call %s: internal task failed", self.bridge.call_sid, exc_info=task.exception()
            )

    async def finish(self, reason: str) -> None:
        """The Twilio side is gone (stop or close): tear everything down, once."""
        if self._finished:
            return
        self._finished = True
        self._twilio_open = False
        await self.execute(self.bridge.end(reason))
        me = asyncio.current_task()
        for task in list(self._tasks):
            if task is not me:
                task.cancel()
        for ws in (self.ws, self._next_ws):
            if ws is not None and not ws.closed:
                await ws.close()
        self.ws = self._next_ws = None
        summary = self.bridge.summary(time.time(), reason)
        self.ctx.hub.publish(
            {"type": "call.ended", "call_sid": self.bridge.call_sid, "summary": summary}
        )
        self.ctx.hub.remove_call(self.bridge.call_sid)
        self.ctx.hub.ended.append({**self.bridge.info(), "summary": summary})
        del self.ctx.hub.ended[:-100]
        metrics.call_ended("error" if reason.startswith("model") else "completed")
        log.info(
            "call %s ended (%s): %.1f s, %d turns",
            self.bridge.call_sid,
            reason,
            summary["duration_s"],
            summary["turns"],
        )

    # --- actions -------------------------------------------------------------------------

    async def execute(self, actions: list[Action]) -> None:
        for action in actions:
            kind = type(action)
            if kind is ToTwilio:
                await self._send_twilio(action.data)  # type: ignore[union-attr,arg-type]
            elif kind is ToModel:
                await self.send_model(action.data)  # type: ignore[union-attr,arg-type]
            elif kind is ToConsole:
                self.ctx.hub.publish(action.event)  # type: ignore[union-attr]
                self._observe(action.event)  # type: ignore[union-attr]
            elif kind is RunTool:
                self.spawn(self._run_tool(action))  # type: ignore[arg-type]
            elif kind is Hangup:
                self.spawn(self._hang_up(action))  # type: ignore[arg-type]
            elif kind is SwitchModel:
                self.spawn(self._switch(action))  # type: ignore[arg-type]

    def _observe(self, event: dict[str, Any] | bytes) -> None:
        if isinstance(event, dict):
            kind = event.get("type")
            if kind == "turn.latency":
                metrics.TURN_LATENCY.observe(event["latency_ms"] / 1000.0)
                log.info("call %s: turn latency %.0f ms", self.bridge.call_sid, event["latency_ms"])
            elif kind == "barge_in":
                metrics.BARGE_INS.inc()

    async def _send_twilio(self, data: str) -> None:
        if not self._twilio_open:
            return
        try:
            await self.send_twilio(data)
        except Exception:  # the socket closed under us; the reader will finish the call
            self._twilio_open = False

    async def send_model(self, data: bytes) -> None:
        ws = self.ws
        if ws is None or ws.closed:
            return
        try:
            await ws.send_frame(data, TEXT)
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            pass  # the reader sees the close and reconnects

    async def on_console(self, cmd: ConsoleCommand) -> None:
        """A console command for this call; raises ValueError to refuse it."""
        await self.execute(self.bridge.on_console(cmd, time.monotonic()))

    # --- the model socket ------------------------------------------------------------------

    async def _model_loop(self, prewarmed_sid: str | None) -> None:
        settings = self.ctx.settings
        warm: Prewarmed | None = None
        if prewarmed_sid is not None:
            warm = await self.ctx.prewarm.take(
                prewarmed_sid, self.bridge.model, self.bridge.config.session
            )
        attempt = 0
        failing_since: float | None = None
        reseed = False
        while not self.bridge.ended:
            configured = False
            try:
                if self._next_ws is not None:
                    ws, self._next_ws = self._next_ws, None
                elif warm is not None:
                    ws, configured, warm = warm.ws, True, None
                else:
                    ws = await self.ctx.connector.connect(self.bridge.model)
            except ModelConnectError as exc:
                now = time.monotonic()
                failing_since = failing_since or now
                self.ctx.hub.publish(
                    {
                        "type": "error",
                        "call_sid": self.bridge.call_sid,
                        "source": "model",
                        "code": "connect_failed",
                        "message": str(exc),
                    }
                )
                log.warning("call %s: %s", self.bridge.call_sid, exc)
                if now - failing_since > settings.reconnect_give_up_s:
                    await self._give_up()
                    return
                await asyncio.sleep(_backoff(attempt))
                attempt += 1
                continue
            self.ws = ws
            attempt = 0
            failing_since = None
            self._switching = False
            await self.execute(
                self.bridge.on_model_open(time.monotonic(), reseed=reseed, configured=configured)
            )
            code = await self._read_model(ws)
            if self.ws is ws:
                self.ws = None
            await self.execute(self.bridge.on_model_closed())
            if self.bridge.ended:
                return
            reseed = True
            if not self._switching:
                self.reconnects += 1
                metrics.MODEL_RECONNECTS.inc()
                log.warning(
                    "call %s: model socket closed (code %s); reconnecting",
                    self.bridge.call_sid,
                    code,
                )
                self.ctx.hub.publish(
                    {
                        "type": "model.reconnecting",
                        "call_sid": self.bridge.call_sid,
                        "code": code,
                        "attempt": self.reconnects,
                    }
                )
                await asyncio.sleep(_backoff(0))

    async def _read_model(self, ws: aiohttp.ClientWebSocketResponse) -> int | None:
        bridge = self.bridge
        execute = self.execute
        try:
            async for msg in ws:
                if msg.type is TEXT:
                    actions = bridge.on_model(msg.data, time.monotonic())
                    if actions:
                        await execute(actions)
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    break
        except (ConnectionError, aiohttp.ClientError) as exc:
            log.warning("call %s: model socket error: %s", bridge.call_sid, type(exc).__name__)
        return ws.close_code

    async def _switch(self, action: SwitchModel) -> None:
        """Open a fresh session (new model or rollover), then hand over between turns."""
        if self._switching:
            return
        self._switching = True
        try:
            new_ws = await self.ctx.connector.connect(action.model)
        except ModelConnectError as exc:
            self._switching = False
            self.ctx.hub.publish(
                {
                    "type": "error",
                    "call_sid": self.bridge.call_sid,
                    "source": "model",
                    "code": "switch_failed",
                    "message": str(exc),
                }
            )
            return
        while not self.bridge.quiet and not self.bridge.ended:  # noqa: ASYNC110 -- quiet is a state
            await asyncio.sleep(0.05)
        if self.bridge.ended:
            await new_ws.close()
            return
        log.info("call %s: switching model session (%s)", self.bridge.call_sid, action.reason)
        self.ctx.hub.publish(
            {
                "type": "model.switched",
                "call_sid": self.bridge.call_sid,
                "model": action.model,
                "reason": action.reason,
            }
        )
        self._next_ws = new_ws
        old = self.ws
        if old is not None:
            await old.close()

    async def _give_up(self) -> None:
        settings = self.ctx.settings
        log.error("call %s: model unreachable; ending the call", self.bridge.call_sid)
        if self.ctx.twilio is not None:
            await self.ctx.twilio.redirect(
                self.bridge.call_sid, say_and_hangup_twiml(settings.apology)
            )
        await self.close_twilio(1011, "model unavailable")

    # --- timers and tools ------------------------------------------------------------------

    async def _timer_loop(self) -> None:
        margin = self.ctx.settings.rollover_margin_s
        while not self.bridge.ended:
            # Deadlines (console tools, hang-up fallback, rollover) are seconds away: a
            # one-second tick is precise enough and costs one wake-up a second per call.
            await asyncio.sleep(1.0)
            now = time.monotonic()
            actions = self.bridge.on_timer(now)
            if actions:
                await self.execute(actions)
            expires = self.bridge.expires_at
            due = expires and time.time() > expires - margin
            if due and not self._switching and self.bridge.quiet:
                await self.execute([SwitchModel(self.bridge.model, "session rollover")])

    async def _run_tool(self, action: RunTool) -> None:
        bridge = self.bridge

        def hangup(transfer_to: str) -> None:
            reason = f"transferred to {transfer_to}" if transfer_to else "agent ended the call"
            bridge.request_hangup(Hangup(reason, transfer_to), time.monotonic())

        ctx = ToolContext(call_sid=bridge.call_sid, hangup=hangup, http=self.ctx.http)
        result = await run_tool(self.ctx.tools, action.name, action.arguments, ctx)
        metrics.tool_call(action.name, "ok" if result.ok else "error")
        log.info(
            "call %s: tool %s %s in %.0f ms",
            bridge.call_sid,
            action.name,
            "answered" if result.ok else "failed",
            result.duration_ms,
        )
        await self.execute(
            bridge.on_tool_result(
                action.call_id,
                result.output,
                ok=result.ok,
                source="backend",
                duration_ms=result.duration_ms,
                now=time.monotonic(),
            )
        )

    async def _hang_up(self, action: Hangup) -> None:
        log.info("call %s: hanging up (%s)", self.bridge.call_sid, action.reason)
        twilio = self.ctx.twilio
        if twilio is not None:
            if action.transfer_to:
                await twilio.redirect(self.bridge.call_sid, dial_twiml(action.transfer_to))
            else:
                await twilio.hang_up(self.bridge.call_sid)
        # Closing the stream ends <Connect>; with nothing after it Twilio hangs up.
        await self.close_twilio(1000, action.reason)


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: 0.1 s, 0.2 s, ... capped at 5 s."""
    return random.uniform(0.05, min(5.0, 0.1 * 2**attempt))
