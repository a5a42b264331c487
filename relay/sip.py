"""SIP mode: OpenAI carries the call's audio; the relay accepts the call and steers it.

A Twilio Elastic SIP Trunk sends the call to OpenAI's SIP endpoint; OpenAI posts a signed
`realtime.call.incoming` to `POST /openai/webhook`. The relay checks the signature
(OPENAI_WEBHOOK_SECRET, Standard Webhooks), then either rejects the call with 486 (busy:
RELAY_MAX_CALLS, or draining) or accepts it with the session of the called number's
profile, and joins its control socket (`?call_id=`) with the same call core in its no-media
mode: transcripts, tools (backend and console), keypresses, console commands, hang-up and
transfer (refer), the same reconnect rules, console events, metrics, end reasons and
history. No audio passes through the relay.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
import msgspec
from aiohttp import web

from . import logs, metrics
from .actions import Connect, EndReason, Hangup
from .call import CallBridge
from .cluster import SharedStateError
from .keys import RELAY
from .openai_calls import CallApiError
from .runner import CallRunner
from .store.webhook import WebhookVerificationError, verify

if TYPE_CHECKING:
    from .context import RelayContext

log = logging.getLogger("relay.sip")

_SEEN_KEPT = 1000  # recently handled call ids: a retried delivery is answered, not re-run


class SipHeader(msgspec.Struct):
    name: str
    value: str


class IncomingCall(msgspec.Struct):
    call_id: str
    sip_headers: list[SipHeader] = []


class WebhookEvent(msgspec.Struct):
    type: str
    id: str = ""
    data: msgspec.Raw = msgspec.Raw(b"{}")


_event_decoder = msgspec.json.Decoder(WebhookEvent)
_incoming_decoder = msgspec.json.Decoder(IncomingCall)
_NUMBER = re.compile(r"(?:sip|sips|tel):\+?([0-9]+)")
_CALL_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")


def header(headers: list[SipHeader], name: str) -> str:
    wanted = name.lower()
    return next((h.value for h in headers if h.name.lower() == wanted), "")


def number_of(value: str) -> str:
    """'"Ann" <sip:+15551234567@sip.example.com>' -> '+15551234567' ("" if none)."""
    match = _NUMBER.search(value)
    return f"+{match.group(1)}" if match else ""


@dataclass
class SipState:
    """What the webhook handler remembers between deliveries."""

    seen: OrderedDict[str, None]
    refused_logged: set[str]

    @classmethod
    def new(cls) -> SipState:
        return cls(OrderedDict(), set())


async def openai_webhook(request: web.Request) -> web.Response:
    ctx = request.app[RELAY]
    secret = ctx.webhook_secret
    if not secret:
        return web.Response(status=404, text="SIP mode is off: set OPENAI_WEBHOOK_SECRET")
    body = await request.read()
    try:
        verify(secret, request.headers, body)
    except WebhookVerificationError as exc:
        stale = "too far from now" in str(exc) or "missing" in str(exc)
        kind = "stale" if stale else "forged"
        if kind not in ctx.sip.refused_logged:  # log once per kind: a flood stays one line
            ctx.sip.refused_logged.add(kind)
            log.warning("/openai/webhook: refused a %s delivery (%s); logged once", kind, exc)
        metrics.call_rejected("forged")
        return web.Response(status=400 if stale else 401, text=f"webhook refused: {exc}")
    try:
        event = _event_decoder.decode(body)
    except msgspec.DecodeError as exc:
        return web.Response(status=400, text=f"not a webhook event: {exc}")
    if event.type != "realtime.call.incoming":
        return web.Response(status=204)  # other events are not ours to act on
    try:
        incoming = _incoming_decoder.decode(event.data)
    except msgspec.DecodeError as exc:
        return web.Response(status=400, text=f"realtime.call.incoming without a call: {exc}")
    if not _CALL_ID.match(incoming.call_id):
        return web.Response(status=400, text="the call_id is not one OpenAI issues")
    await incoming_call(ctx, incoming)
    return web.Response(status=200)


async def incoming_call(ctx: RelayContext, incoming: IncomingCall) -> None:
    """Accept or reject one call, and join it if accepted. Never raises."""
    call_id = incoming.call_id
    seen = ctx.sip.seen
    if call_id in seen or call_id in ctx.hub.calls:
        return  # a retried delivery of a call already handled
    seen[call_id] = None
    while len(seen) > _SEEN_KEPT:
        seen.popitem(last=False)
    settings = ctx.settings
    calls = ctx.realtime_calls
    try:
        verdict = "draining" if ctx.draining else ""
        verdict = verdict or await ctx.shared.registry.admit(call_id, settings.max_calls)
    except SharedStateError as exc:
        verdict = f"the shared state is unavailable ({exc})"
    if verdict == "duplicate":
        return  # another process of this relay has it (a retried delivery)
    if verdict:
        metrics.call_rejected("busy" if verdict in ("busy", "draining") else "unavailable")
        log.warning("SIP call %s rejected: %s", call_id, verdict)
        try:
            await calls.reject(call_id)
        except CallApiError as exc:
            log.warning("SIP call %s: %s", call_id, exc)
        return
    to = number_of(header(incoming.sip_headers, "To"))
    caller = number_of(header(incoming.sip_headers, "From"))
    profile = await ctx.profile_for(to)
    session = ctx.call_session(profile)
    try:
        await calls.accept(call_id, session)
    except CallApiError as exc:
        log.error("SIP call %s could not be accepted: %s", call_id, exc)
        ctx.shared.registry.release(call_id)
        ctx.hub.publish(
            {
                "type": "error",
                "call_sid": call_id,
                "source": "model",
                "code": "accept_failed",
                "message": str(exc),
            }
        )
        return
    now = time.time()
    bridge = CallBridge(
        call_sid=call_id,
        stream_sid="",
        config=ctx.call_config(session, profile, media=False),
        started_at=now,
        clock_offset=now - time.monotonic(),
        from_=caller,
        to=to,
        direction="sip",
        profile=profile.name if profile is not None else None,
    )
    logs.current_call_sid.set(call_id)
    runner = SipCallRunner(ctx, bridge, _nothing_to_send, _no_stream, rang_at=now)
    runner.announce()
    await runner.start(None)


async def _nothing_to_send(data: str) -> None:
    """SIP calls have no Twilio stream: the core sends it nothing."""


async def _no_stream(code: int, reason: str) -> None:
    """Nor is there a stream to close."""


class SipCallRunner(CallRunner):
    """The pumps of a SIP call: its control socket, and the REST calls that end it."""

    async def _open(self, action: Connect) -> tuple[aiohttp.ClientWebSocketResponse, bool]:
        # The session was configured by the accept and lives with the call.
        return await self.ctx.connector.join_call(self.bridge.call_sid), True

    async def _hang_up(self, action: Hangup) -> None:
        call_id = self.bridge.call_sid
        calls = self.ctx.realtime_calls
        try:
            if action.transfer_to:
                log.info("SIP call %s: transferring to %s", call_id, action.transfer_to)
                await calls.refer(call_id, action.transfer_to)
            elif action.reason is not EndReason.CALLER_HUNG_UP:
                log.info("SIP call %s: hanging up (%s)", call_id, action.detail)
                await calls.hangup(call_id)
        except CallApiError as exc:
            log.warning("SIP call %s: %s", call_id, exc)
            self.ctx.hub.publish(
                {
                    "type": "error",
                    "call_sid": call_id,
                    "source": "model",
                    "code": "hangup_failed",
                    "message": str(exc),
                }
            )
        await self.finish(action.reason, action.detail)
