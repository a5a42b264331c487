"""The pumps for one call: move bytes between sockets and the CallBridge, and sleep.

The Twilio socket is read by `relay/media_socket.py`, which calls into the runner; the
runner owns the model sockets, a timer and the tool tasks. Every decision -- when to
reconnect, give up, hand over, answer or hang up -- is the bridge's; this file only does
what the actions say. Every task is supervised: if one fails, the caller hears the
apology and the call ends cleanly, never in silence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from shared.console_protocol import ConsoleCommand

from . import metrics
from .actions import (
    Action,
    CloseModel,
    Connect,
    EndReason,
    Handover,
    Hangup,
    RunTool,
    ToConsole,
    ToModel,
    ToTwilio,
)
from .call import CallBridge
from .call_record import call_record
from .model_link import ModelConnectError
from .tools import ToolContext, run_tool
from .twilio_rest import dial_twiml, say_and_hangup_twiml

if TYPE_CHECKING:
    from .context import RelayContext

log = logging.getLogger("relay.runner")

SendText = Callable[[str], Awaitable[None]]
CloseTwilio = Callable[[int, str], Awaitable[None]]
TEXT = aiohttp.WSMsgType.TEXT
# Deadlines (tool timeouts, the hang-up fallback, rollover) are seconds away: one tick a
# second for all calls. One timer per call cost about a tenth of the relay's CPU at 200
# calls (a loop wake-up each, in the gaps between frames); see bench/README.md.
TIMER_TICK_S = 1.0

# Close codes for the Twilio stream, by why the relay ends it.
_CLOSE_CODE = {
    EndReason.MODEL_UNAVAILABLE: 1011,
    EndReason.ERROR: 1011,
    EndReason.RELAY_SHUTDOWN: 1001,
}


@dataclass(eq=False)
class CallRunner:
    ctx: RelayContext
    bridge: CallBridge
    send_twilio: SendText
    close_twilio: CloseTwilio
    sockets: dict[int, aiohttp.ClientWebSocketResponse] = field(default_factory=dict)
    current: int = 0  # generation of the socket model events are read from and sent to
    model_ws: aiohttp.ClientWebSocketResponse | None = None  # that socket, for the hot path
    rang_at: float | None = None  # when /twiml answered for this call, if this process did
    _prewarm_sid: str | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _finished: bool = False
    _failing: bool = False
    _twilio_open: bool = True

    # --- lifecycle -----------------------------------------------------------------------

    def announce(self) -> None:
        """The call is live: the hub, the metrics, the consoles and the log know of it."""
        bridge = self.bridge
        info = bridge.info()
        self.ctx.hub.add_call(self)
        self.ctx.shared.registry.started(info)
        metrics.call_started()
        self.ctx.hub.publish({"type": "call.started", "call_sid": bridge.call_sid, "call": info})
        log.info(
            "call %s started (%s, from %s)",
            bridge.call_sid,
            bridge.direction,
            bridge.from_ or "unknown",
        )

    async def start(self, prewarmed_sid: str | None) -> None:
        self._prewarm_sid = prewarmed_sid
        await self.execute(self.bridge.start(prewarmed=prewarmed_sid is not None))

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run a task of this call, kept and supervised."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("call %s: task %s failed", self.bridge.call_sid, task.get_name(), exc_info=exc)
        if self._finished:
            return
        detail = f"internal error in the call's {task.get_name()} task ({type(exc).__name__})"
        if self._failing:  # failing while ending: close the stream, the last resort
            self.spawn(self._close_twilio(1011, "internal error"), "close")
            return
        self._failing = True
        self.spawn(self._fail(detail), "fail")

    async def _fail(self, detail: str) -> None:
        actions = self.bridge.on_task_failed(detail)
        await self.execute(actions)
        if not any(isinstance(a, Hangup) for a in actions):
            await self.close_twilio(1011, "internal error")

    async def _close_twilio(self, code: int, reason: str) -> None:
        await self.close_twilio(code, reason)

    async def finish(self, reason: EndReason, detail: str) -> None:
        """The Twilio side is gone (stop or close): tear everything down, once."""
        if self._finished:
            return
        self._finished = True
        self._twilio_open = False
        await self.execute(self.bridge.end(reason, detail))
        me = asyncio.current_task()
        for task in list(self._tasks):
            if task is not me:
                task.cancel()
        for ws in list(self.sockets.values()):
            if not ws.closed:
                await ws.close()
        self.sockets.clear()
        self.model_ws = None
        bridge = self.bridge
        summary = bridge.summary(time.time())
        hub = self.ctx.hub
        hub.publish({"type": "call.ended", "call_sid": bridge.call_sid, "summary": summary})
        hub.remove_call(bridge.call_sid)
        self.ctx.shared.registry.ended(bridge.call_sid, {**bridge.info(), "summary": summary})
        metrics.call_ended(bridge.end_reason.value)
        if self.ctx.store is not None:
            try:
                record = call_record(bridge, ended_at=time.time(), webhook_at=self.rang_at)
            except Exception:  # a bug here must not stop the call's clean-up
                log.exception("call %s: its record could not be built", bridge.call_sid)
            else:
                self.ctx.store.submit(record)
        log.info(
            "call %s ended (%s: %s): %.1f s, %d turns",
            bridge.call_sid,
            bridge.end_reason.value,
            summary["reason"],
            summary["duration_s"],
            summary["turns"],
        )

    # --- actions -------------------------------------------------------------------------

    async def execute(self, actions: list[Action]) -> None:
        for action in actions:
            kind = type(action)
            if kind is ToTwilio:
                if self._twilio_open:
                    try:
                        await self.send_twilio(action.data)  # type: ignore[union-attr,arg-type]
                    except Exception:  # closed under us; the reader will finish the call
                        self._twilio_open = False
            elif kind is ToModel:
                await self.send_model(action.data)  # type: ignore[union-attr,arg-type]
            elif kind is ToConsole:
                self.ctx.hub.publish(action.event)  # type: ignore[union-attr]
                self._observe(action.event)  # type: ignore[union-attr]
            elif kind is RunTool:
                self.spawn(self._run_tool(action), "tool")  # type: ignore[arg-type]
            elif kind is Hangup:
                self.spawn(self._hang_up(action), "hangup")  # type: ignore[arg-type]
            elif kind is Connect:
                self.spawn(self._connect(action), "connect")  # type: ignore[arg-type]
            elif kind is Handover:
                self._handover(action.gen)  # type: ignore[union-attr]
            elif kind is CloseModel:
                ws = self.sockets.pop(action.gen, None)  # type: ignore[union-attr]
                if ws is not None:
                    self.spawn(ws.close(), "close")

    def _observe(self, event: dict[str, Any] | bytes) -> None:
        if isinstance(event, dict):
            kind = event.get("type")
            if kind == "turn.latency":
                metrics.TURN_LATENCY.observe(event["latency_ms"] / 1000.0)
                log.info("call %s: turn latency %.0f ms", self.bridge.call_sid, event["latency_ms"])
            elif kind == "barge_in":
                metrics.BARGE_INS.inc()
            elif kind == "model.reconnecting":
                metrics.MODEL_RECONNECTS.inc()

    async def send_model(self, data: bytes) -> None:
        ws = self.model_ws
        if ws is None or ws.closed:
            return
        try:
            await ws.send_frame(data, TEXT)
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            pass  # the reader sees the close and the bridge decides what next

    async def on_console(self, cmd: ConsoleCommand) -> None:
        """A console command for this call; raises ValueError to refuse it."""
        await self.execute(self.bridge.on_console(cmd, time.monotonic()))

    async def shutdown(self) -> None:
        """The drain time is over: the caller hears the apology and the call ends."""
        actions = self.bridge.shutdown()
        await self.execute(actions)
        if not actions:
            await self.close_twilio(1001, "relay restarting")

    # --- the model sockets -----------------------------------------------------------------

    async def _connect(self, action: Connect) -> None:
        if action.delay_s > 0:
            await asyncio.sleep(action.delay_s)
        try:
            ws, configured = await self._open(action)
        except ModelConnectError as exc:
            log.warning("call %s: %s", self.bridge.call_sid, exc)
            self.ctx.model_refused(exc)
            await self.execute(
                self.bridge.on_connect_failed(
                    action.gen, time.monotonic(), final=exc.final, detail=str(exc)
                )
            )
            return
        self.ctx.model_ok()
        if self._finished:
            await ws.close()
            return
        self.sockets[action.gen] = ws
        actions = self.bridge.on_model_open(action.gen, time.monotonic(), configured=configured)
        if not action.spare and self.bridge.upstream.gen == action.gen:
            self._make_current(action.gen)
        await self.execute(actions)

    async def _open(self, action: Connect) -> tuple[aiohttp.ClientWebSocketResponse, bool]:
        """A model socket for `action`: the pre-warmed one if it fits, else a new one.
        The bool says whether it is already configured. Raises ModelConnectError."""
        if action.prewarmed and self._prewarm_sid is not None:
            warm = await self.ctx.prewarm.take(
                self._prewarm_sid, action.model, self.bridge.config.session
            )
            self._prewarm_sid = None
            if warm is not None:
                return warm.ws, True
        return await self.ctx.connector.connect(action.model), False

    def _make_current(self, gen: int) -> None:
        self.current = gen
        self.model_ws = ws = self.sockets[gen]
        self.spawn(self._read_model(gen, ws), "model")

    def _handover(self, gen: int) -> None:
        old = self.sockets.pop(self.current, None)
        self.model_ws = None
        if gen in self.sockets:
            self._make_current(gen)
        if old is not None:
            self.spawn(old.close(), "close")

    async def _read_model(self, gen: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        bridge = self.bridge
        execute = self.execute
        try:
            async for msg in ws:
                if msg.type is TEXT:
                    actions = bridge.on_model(msg.data, time.monotonic())
                    if actions:
                        await execute(actions)
                    if self.current != gen:
                        break  # handed over: the rest of this socket is not the call's
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    break
        except (ConnectionError, aiohttp.ClientError) as exc:
            log.warning("call %s: model socket error: %s", bridge.call_sid, type(exc).__name__)
        if self.sockets.get(gen) is ws:
            del self.sockets[gen]
        if self.model_ws is ws:
            self.model_ws = None
        if not self._finished:
            await execute(bridge.on_model_closed(gen, ws.close_code, time.monotonic()))

    # --- timers, tools and hanging up ------------------------------------------------------

    def tick(self, now: float) -> None:
        """The shared timer's tick: the core's deadlines; their actions run as a task."""
        if self._finished:
            return
        try:
            actions = self.bridge.on_timer(now)
        except Exception as exc:
            log.error("call %s: timer failed", self.bridge.call_sid, exc_info=exc)
            if not self._failing:
                self._failing = True
                detail = f"internal error in the call's timer ({type(exc).__name__})"
                self.spawn(self._fail(detail), "fail")
            return
        if actions:
            self.spawn(self.execute(actions), "timer")

    async def _run_tool(self, action: RunTool) -> None:
        bridge = self.bridge

        def hangup(transfer_to: str) -> None:
            if transfer_to:
                request = Hangup(
                    EndReason.TRANSFERRED, f"transferred to {transfer_to}", transfer_to
                )
            else:
                request = Hangup(EndReason.AGENT_ENDED, "the agent ended the call")
            bridge.request_hangup(request, time.monotonic())

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
        call_sid = self.bridge.call_sid
        log.info("call %s: hanging up (%s)", call_sid, action.detail)
        twilio = self.ctx.twilio
        if twilio is not None:
            if action.transfer_to:
                await twilio.redirect(call_sid, dial_twiml(action.transfer_to))
            elif action.apology:
                await twilio.redirect(call_sid, say_and_hangup_twiml(self.ctx.settings.apology))
            else:
                await twilio.hang_up(call_sid)
        # Closing the stream ends <Connect>; with nothing after it Twilio hangs up.
        await self.close_twilio(_CLOSE_CODE.get(action.reason, 1000), action.detail)


async def tick_calls(calls: Mapping[str, CallRunner]) -> None:
    """One timer for every call of this process (cancelled at shutdown)."""
    while True:
        await asyncio.sleep(TIMER_TICK_S)
        now = time.monotonic()
        for runner in list(calls.values()):
            runner.tick(now)
