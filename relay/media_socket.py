"""WS /call: Twilio's Media Stream, served by aiohttp.

This is the hot path (50 frames a second per call): aiohttp's compiled reader parses and
unmasks each frame, the payload of a media frame is decoded once into a lean msgspec
struct and spliced into the model's append event without touching the audio, and nothing
is created per frame (no task, no future). Everything else a frame means is the call
core's decision (relay/call.py).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import msgspec
from aiohttp import WSMsgType, web

from shared import twilio as tw

from . import browser_call, logs, metrics
from .actions import EndReason
from .call import CallBridge
from .cluster import SharedStateError
from .keys import RELAY
from .runner import CallRunner
from .security import console_refusal, public_ws_url

if TYPE_CHECKING:
    from .context import RelayContext

log = logging.getLogger("relay.call")

HOP_SAMPLE = 16  # observe the inbound hop histogram on 1 media frame in 16
TEXT = WSMsgType.TEXT
_CLOSED = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


async def media_endpoint(request: web.Request) -> web.StreamResponse:
    ctx = request.app[RELAY]
    settings = ctx.settings
    if ctx.signatures.enabled:
        # Twilio signs the wss:// URL it was given; rebuild it from PUBLIC_URL (a proxy in
        # front of the relay changes what the relay itself would see).
        url = public_ws_url(settings.public_url, "/call") if settings.public_url else ""
        signature = request.headers.get("X-Twilio-Signature")
        if not url or not ctx.signatures.valid(url, {}, signature):
            log.warning("refused /call: missing or invalid X-Twilio-Signature")
            metrics.call_rejected("forged")
            return web.Response(status=403, text="invalid Twilio signature")
    ws = web.WebSocketResponse(
        max_msg_size=settings.ws_max_message_bytes,
        compress=False,  # base64 audio barely compresses; deflate would cost CPU per frame
        autoping=True,
    )
    await ws.prepare(request)
    stream = MediaStream(ctx, ws)
    await stream.run()
    return ws


async def browser_endpoint(request: web.Request) -> web.StreamResponse:
    """WS /browser-call: the console's softphone, as a Twilio-like stream (browser_call.py).
    Refused before the upgrade without the console token (loopback only without one)."""
    ctx = request.app[RELAY]
    refusal = console_refusal(request, ctx.settings.console_token, "browser calls")
    if refusal is not None:
        log.warning("refused /browser-call: %s", refusal.text)
        return refusal
    ws = web.WebSocketResponse(
        max_msg_size=ctx.settings.ws_max_message_bytes, compress=False, autoping=True
    )
    await ws.prepare(request)
    await MediaStream(ctx, ws, browser=True).run()
    return ws


class MediaStream:
    """One Twilio Media Stream: read frames, feed the call core, finish the call once.
    `browser`: the console's softphone (/browser-call), started as browser_call.py says."""

    def __init__(
        self, ctx: RelayContext, ws: web.WebSocketResponse, *, browser: bool = False
    ) -> None:
        self.ctx = ctx
        self.ws = ws
        self.browser = browser
        self.runner: CallRunner | None = None
        self.ignored: set[str] = set()  # kinds of bad frame already logged on this stream

    def ignore(self, kind: str, detail: str) -> None:
        """Log each kind of bad frame once per stream: garbage must not flood the log."""
        if kind not in self.ignored:
            self.ignored.add(kind)
            sid = self.runner.bridge.call_sid if self.runner is not None else "-"
            log.warning("/call (call %s): %s ignored (logged once per stream)", sid, detail)

    async def close(self, code: int, reason: str) -> None:
        try:
            await self.ws.close(code=code, message=reason.encode()[:120])
        except Exception:
            pass

    async def run(self) -> None:
        ws = self.ws
        reason, detail = EndReason.ERROR, "the Twilio stream closed without a stop"
        decode = tw.decode_inbound
        hot_frame = tw.hot_frame
        monotonic = time.monotonic
        perf_counter = time.perf_counter
        hop = metrics.HOP_INBOUND
        media_frames = 0
        max_frame = self.ctx.settings.max_frame_bytes
        try:
            while True:
                message = await ws.receive()
                kind = message.type
                if kind is not TEXT:
                    if kind in _CLOSED:
                        break
                    if kind is WSMsgType.BINARY:
                        self.ignore("binary", "binary frame (Twilio sends JSON text)")
                    continue
                text: str = message.data
                if len(text) > max_frame:
                    self.ignore("huge", f"{len(text)}-byte frame (limit {max_frame})")
                    continue
                runner = self.runner
                hot = hot_frame(text) if runner is not None else None
                if hot is not None:
                    assert runner is not None
                    # Fast path, ~98% of frames: caller audio, straight to the model socket.
                    media = hot.media
                    if media is not None:
                        media_frames += 1
                        timed = media_frames % HOP_SAMPLE == 0
                        t0 = perf_counter() if timed else 0.0
                        data = runner.bridge.on_media(media.payload, monotonic())
                        model = runner.model_ws
                        if data is not None and model is not None:
                            try:
                                await model.send_frame(data, TEXT)
                            except (ConnectionError, RuntimeError):
                                pass  # the model reader sees the close; the core decides
                            if timed:
                                hop.observe(perf_counter() - t0)
                        continue
                    if hot.mark is not None and hot.streamSid == runner.bridge.stream_sid:
                        actions = runner.bridge.on_mark(hot.mark.name, monotonic())
                        if actions:
                            await runner.execute(actions)
                        continue
                try:
                    msg = decode(text)
                except msgspec.DecodeError as exc:
                    self.ignore("malformed", f"malformed frame: {exc}")
                    continue
                if runner is None:
                    if isinstance(msg, tw.Start):
                        self.runner = runner = await self._start(msg)
                        if runner is None:
                            return
                    elif not isinstance(msg, tw.Connected):
                        self.ignore("before-start", f"{type(msg).__name__} before start")
                    continue
                if await self._other_frame(runner, msg):
                    reason, detail = EndReason.CALLER_HUNG_UP, "the caller hung up"
                    break
        finally:
            if self.runner is not None:
                await self.runner.finish(reason, detail)
        await self.close(1000, "call ended")

    async def _other_frame(self, runner: CallRunner, msg: tw.TwilioInbound) -> bool:
        """A frame other than plain media; True when it was `stop`."""
        bridge = runner.bridge
        if type(msg) is tw.Media:  # a valid media frame with JSON escapes in it
            data = bridge.on_media(msg.media.payload, time.monotonic())
            if data is not None:
                await runner.send_model(data)
            return False
        if isinstance(msg, tw.Start):
            self.ignore("second-start", "second start")
            return False
        if isinstance(msg, tw.Connected):
            self.ignore("connected", "repeated connected")
            return False
        if msg.streamSid != bridge.stream_sid:
            self.ignore("other-stream", "frame for another stream")
            return False
        actions = bridge.on_twilio(msg, time.monotonic())
        if actions:
            await runner.execute(actions)
        return isinstance(msg, tw.Stop)

    async def _start(self, msg: tw.Start) -> CallRunner | None:
        ctx = self.ctx
        settings = ctx.settings
        info = msg.start
        params = info.customParameters
        browser = browser_call.check_start(info) if self.browser else None
        if isinstance(browser, str):
            log.warning("refused a browser call: %s", browser)
            await self.close(1008, browser)
            return None
        try:
            token = params.get("stream_token", "")
            if browser is None and not await ctx.tokens.redeem(token, info.callSid):
                log.warning("call %s: refused stream without a valid stream token", info.callSid)
                metrics.call_rejected("bad_token")
                await self.close(1008, "invalid stream token")
                return None
            verdict = "busy" if ctx.draining else ""
            verdict = verdict or await ctx.shared.registry.admit(info.callSid, settings.max_calls)
        except SharedStateError as exc:
            log.error("call %s: refused: the shared state is unavailable (%s)", info.callSid, exc)
            metrics.call_rejected("unavailable")
            await self.close(1011, "relay state unavailable")
            return None
        if verdict == "busy":
            metrics.call_rejected("busy")
            await self.close(1013, "relay is busy")
            return None
        if verdict:
            await self.close(1008, "call already streaming")
            return None
        rang = ctx.answered(info.callSid)
        if rang is not None:
            profile, rang_at = rang
        else:  # the webhook reached another process (or none): decide here
            to = browser.to if browser else params.get("to", "")
            profile, rang_at = await ctx.profile_for(to), None
        session = ctx.call_session(profile)
        if browser is not None:
            session = browser_call.session_for(session, browser.audio_format)
            direction = "browser"
        else:
            direction = params.get("direction", "inbound")
            direction = direction if direction in ("inbound", "outbound") else "inbound"
        bridge = CallBridge(
            call_sid=info.callSid,
            stream_sid=info.streamSid or msg.streamSid,
            config=ctx.call_config(
                session, profile, audio_format=browser.audio_format if browser else "audio/pcmu"
            ),
            started_at=time.time(),
            clock_offset=time.time() - time.monotonic(),
            from_=browser_call.FROM if browser else params.get("from", ""),
            to=browser.to if browser else params.get("to", ""),
            direction=direction,
            profile=profile.name if profile is not None else None,
        )
        # Every log line from this task and the call's tasks (created below) names the call.
        logs.current_call_sid.set(bridge.call_sid)
        make_runner = browser_call.BrowserCallRunner if browser else CallRunner
        runner = make_runner(ctx, bridge, self.ws.send_str, self.close, rang_at=rang_at)
        runner.announce()
        # Only /twiml pre-warms, and a browser call has none.
        await runner.start(info.callSid if settings.prewarm and not browser else None)
        return runner
