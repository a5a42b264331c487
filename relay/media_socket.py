"""WS /call: Twilio's Media Stream, as a raw ASGI handler.

This is the hot path (50 frames a second per call), so it talks ASGI directly instead
of through Starlette's WebSocket wrapper, and decodes each frame once with msgspec.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from shared import twilio as tw

from . import logs, metrics
from .actions import EndReason
from .call import CallBridge, CallConfig
from .runner import CallRunner
from .security import public_ws_url

if TYPE_CHECKING:
    from .context import RelayContext

log = logging.getLogger("relay.call")

Scope = dict[str, Any]
Receive = Any
Send = Any


HOP_SAMPLE = 16  # observe the inbound hop histogram on 1 media frame in 16


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


class MediaStreamEndpoint:
    """ASGI app for one Twilio Media Stream connection."""

    def __init__(self, get_ctx: Any) -> None:
        self.get_ctx = get_ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: RelayContext = self.get_ctx(scope)
        settings = ctx.settings
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        if ctx.signatures.enabled:
            url = public_ws_url(settings.public_url, "/call") if settings.public_url else ""
            if not url or not ctx.signatures.valid(url, {}, _header(scope, b"x-twilio-signature")):
                log.warning("refused /call: missing or invalid X-Twilio-Signature")
                metrics.call_rejected("forged")
                await send({"type": "websocket.close", "code": 1008})  # 403 at the handshake
                return
        await send({"type": "websocket.accept"})

        async def send_text(data: str) -> None:
            await send({"type": "websocket.send", "text": data})

        async def close(code: int, reason: str) -> None:
            try:
                await send({"type": "websocket.close", "code": code, "reason": reason[:120]})
            except Exception:
                pass

        runner: CallRunner | None = None
        ignored: set[str] = set()  # kinds of bad frame already logged on this stream

        def ignore(kind: str, detail: str) -> None:
            """Log each kind of bad frame once per stream: garbage must not flood the log."""
            if kind not in ignored:
                ignored.add(kind)
                sid = runner.bridge.call_sid if runner is not None else "-"
                log.warning("/call (call %s): %s ignored (logged once per stream)", sid, detail)

        reason, detail = EndReason.ERROR, "the Twilio stream closed without a stop"
        decode = tw.decode_inbound
        media_payload = tw.media_payload
        monotonic = time.monotonic
        perf_counter = time.perf_counter
        hop = metrics.HOP_INBOUND
        media_frames = 0
        max_frame = settings.max_frame_bytes
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.disconnect":
                    break
                if kind != "websocket.receive":
                    continue
                text = message.get("text")
                if text is None:
                    ignore("binary", "binary frame (Twilio sends JSON text)")
                    continue
                if len(text) > max_frame:
                    ignore("huge", f"{len(text)}-byte frame (limit {max_frame})")
                    continue
                if runner is not None:
                    # Fast path, ~98% of frames: a media frame, decoded to its payload only
                    # (and safe to splice into JSON); anything else takes the full decode.
                    payload = media_payload(text)
                    if payload is not None:
                        media_frames += 1
                        timed = media_frames % HOP_SAMPLE == 0
                        t0 = perf_counter() if timed else 0.0
                        data = runner.bridge.on_media(payload, monotonic())
                        if data is not None:
                            await runner.send_model(data)
                            if timed:
                                hop.observe(perf_counter() - t0)
                        continue
                try:
                    msg = decode(text)
                except msgspec.DecodeError as exc:
                    ignore("malformed", f"malformed frame: {exc}")
                    continue
                if runner is None:
                    if isinstance(msg, tw.Start):
                        runner = await self._start(ctx, msg, send_text, close)
                        if runner is None:
                            return
                    elif isinstance(msg, tw.Connected):
                        continue
                    else:
                        ignore("before-start", f"{type(msg).__name__} before start")
                    continue
                bridge = runner.bridge
                if type(msg) is tw.Media:  # a valid media frame with JSON escapes in it
                    data = bridge.on_media(msg.media.payload, monotonic())
                    if data is not None:
                        await runner.send_model(data)
                    continue
                if isinstance(msg, tw.Start):
                    ignore("second-start", "second start")
                    continue
                if isinstance(msg, tw.Connected):
                    ignore("connected", "repeated connected")
                    continue
                if msg.streamSid != bridge.stream_sid:
                    ignore("other-stream", "frame for another stream")
                    continue
                actions = bridge.on_twilio(msg, time.monotonic())
                if actions:
                    await runner.execute(actions)
                if isinstance(msg, tw.Stop):
                    reason, detail = EndReason.CALLER_HUNG_UP, "the caller hung up"
                    break
        finally:
            if runner is not None:
                await runner.finish(reason, detail)
        await close(1000, "call ended")  # otherwise Hypercorn closes with 1011

    async def _start(
        self, ctx: RelayContext, msg: tw.Start, send_text: Any, close: Any
    ) -> CallRunner | None:
        settings = ctx.settings
        info = msg.start
        params = info.customParameters
        if not ctx.tokens.redeem(params.get("stream_token", ""), info.callSid):
            log.warning("call %s: refused stream without a valid stream token", info.callSid)
            metrics.call_rejected("bad_token")
            await close(1008, "invalid stream token")
            return None
        if ctx.draining or len(ctx.hub.calls) >= settings.max_calls:
            metrics.call_rejected("busy")
            await close(1013, "relay is busy")
            return None
        if info.callSid in ctx.hub.calls:
            await close(1008, "call already streaming")
            return None
        session = ctx.call_session()
        bridge = CallBridge(
            call_sid=info.callSid,
            stream_sid=info.streamSid or msg.streamSid,
            config=CallConfig(
                session=session,
                backend_tools=ctx.tools.names(),
                greeting=ctx.greeting,
                dtmf_format=settings.dtmf_format,
                early_audio_ms=settings.early_audio_ms,
                console_tool_timeout_s=settings.console_tool_timeout_s,
                reconnect_give_up_s=settings.reconnect_give_up_s,
                rollover_margin_s=settings.rollover_margin_s,
            ),
            started_at=time.time(),
            clock_offset=time.time() - time.monotonic(),
            from_=params.get("from", ""),
            to=params.get("to", ""),
        )
        # Every log line from this task and the call's tasks (created below) names the call.
        logs.current_call_sid.set(bridge.call_sid)
        runner = CallRunner(ctx, bridge, send_text, close)
        ctx.hub.add_call(runner)
        metrics.call_started()
        ctx.hub.publish(
            {"type": "call.started", "call_sid": bridge.call_sid, "call": bridge.info()}
        )
        log.info("call %s started (from %s)", bridge.call_sid, bridge.from_ or "unknown")
        await runner.start(info.callSid if settings.prewarm else None)
        return runner
