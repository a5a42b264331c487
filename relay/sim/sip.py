"""The simulator's SIP control plane: what OpenAI does for a SIP call, in miniature.

- `place_sip_call`: a call arrives as OpenAI announces one: a signed
  `realtime.call.incoming` posted to the relay's /openai/webhook. The relay accepts (with
  the call's session) or rejects it over REST, joins the call's control socket
  (`/v1/realtime?call_id=`), and the caller's steps run: speech heard by the service's own
  turn detection, keypresses, waits for answers (played by the service in real time, with
  output_audio_buffer.* events), and a hang-up (the service closes the control socket).
- REST: `POST /v1/realtime/calls/{call_id}/accept|reject|hangup|refer`, with the bodies the
  `openai` package's types describe.

No audio moves anywhere: that is SIP mode's point.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from relay.store.webhook import signed_headers, signing_key

from .caller import (
    QUIET_S,
    Dtmf,
    Hangup,
    Silence,
    Speak,
    Step,
    WaitForAssistant,
    WaitForAssistantDone,
)

if TYPE_CHECKING:
    from .model import SimModel, SimSession

log = logging.getLogger("relay.sim.sip")

VERBS = ("accept", "reject", "hangup", "refer")


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class SimSipCall:
    """One SIP call as the simulated service sees it."""

    call_id: str
    sip_headers: list[dict[str, str]]
    state: str = "incoming"  # incoming, accepted, rejected, ended, referred
    config: dict[str, Any] = field(default_factory=dict)  # the accept's session
    requests: list[tuple[str, Any]] = field(default_factory=list)  # (verb, body) received
    sessions: list[SimSession] = field(default_factory=list)  # control sockets joined
    ended_by: str = ""  # caller | relay
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def session(self) -> SimSession | None:
        return self.sessions[-1] if self.sessions else None

    def bump(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def wait(self, predicate: Any, timeout: float) -> bool:
        async with asyncio.timeout(timeout):
            while not predicate():
                await self.changed.wait()
        return True


async def rest(model: SimModel, request: web.Request) -> web.Response:
    """POST /v1/realtime/calls/{call_id}/{verb}."""
    if not request.headers.get("Authorization", "").startswith("Bearer "):
        return web.json_response({"error": {"message": "Missing API key."}}, status=401)
    call = model.sip_calls.get(request.match_info["call_id"])
    verb = request.match_info["verb"]
    if call is None or verb not in VERBS:
        return web.json_response({"error": {"message": "Call not found."}}, status=404)
    body: Any = await request.json() if request.can_read_body else None
    call.requests.append((verb, body))
    if verb == "accept":
        if call.state != "incoming":
            return web.json_response({"error": {"message": "Call already handled."}}, status=409)
        if not isinstance(body, dict) or body.get("type") != "realtime":
            return web.json_response(
                {"error": {"message": "Missing required parameter: 'type'."}}, status=400
            )
        call.state, call.config = "accepted", body
    elif verb == "reject":
        call.state = "rejected"
    elif verb in ("hangup", "refer"):
        call.state = "ended" if verb == "hangup" else "referred"
        call.ended_by = call.ended_by or "relay"
        session = call.session
        if session is not None and not session.ws.closed:
            await session.ws.close(code=1000, message=b"call ended")
    call.bump()
    return web.Response(status=200)


@dataclass
class SipCallRecord:
    """What the simulated SIP caller experienced."""

    call_id: str
    accepted: bool = False
    rejected_with: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    heard_ms: list[float] = field(default_factory=list)  # per answer, as played
    ended_by: str = ""
    referred_to: str = ""
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.accepted and not self.failures


async def place_sip_call(
    model: SimModel,
    relay_url: str,
    *,
    steps: Sequence[Step],
    from_: str = "+15550001111",
    to: str = "+15550002222",
    call_id: str | None = None,
    secret: str | None = None,
) -> SipCallRecord:
    """Ring the relay as OpenAI's SIP endpoint would, then play the caller's steps."""
    call_id = call_id or "rtc_" + secrets.token_hex(16)
    headers = [
        {"name": "From", "value": f'"Caller" <sip:{from_}@pstn.twilio.com>'},
        {"name": "To", "value": f"<sip:{to}@sip.api.openai.com;transport=tls>"},
        {"name": "Call-ID", "value": secrets.token_hex(8)},
    ]
    call = SimSipCall(call_id, headers)
    model.sip_calls[call_id] = call
    record = SipCallRecord(call_id)
    event_id = "evt_" + secrets.token_hex(12)
    event = {
        "object": "event",
        "id": event_id,
        "type": "realtime.call.incoming",
        "created_at": int(time.time()),
        "data": {"call_id": call_id, "sip_headers": headers},
    }
    body = json.dumps(event).encode()
    signed = signed_headers(signing_key(secret or model.webhook_secret), event_id, body)
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{relay_url.rstrip('/')}/openai/webhook", data=body, headers=signed
        ) as resp:
            if resp.status >= 300:
                record.failures.append(f"webhook answered {resp.status}: {await resp.text()}")
                return record
    try:
        await call.wait(lambda: call.state != "incoming", 10)
    except TimeoutError:
        record.failures.append("the relay neither accepted nor rejected the call")
        return record
    if call.state == "rejected":
        reject = next(b for v, b in call.requests if v == "reject")
        record.rejected_with = (reject or {}).get("status_code", 603)
        return record
    record.accepted, record.config = True, call.config
    try:
        await call.wait(lambda: call.session is not None, 10)
    except TimeoutError:
        record.failures.append("the relay never joined the call's control socket")
        return record
    await _run(call, steps, record)
    record.ended_by = call.ended_by
    refer = next((b for v, b in call.requests if v == "refer"), None)
    record.referred_to = (refer or {}).get("target_uri", "")
    return record


def _answered(
    session: SimSession, step: WaitForAssistant | WaitForAssistantDone, over: Callable[[], bool]
) -> Callable[[], bool]:
    """What a wait step waits for, as a SIP caller hears it (cf. SimCaller's waits)."""
    loop = asyncio.get_running_loop()
    if isinstance(step, WaitForAssistant):
        base = session.heard_total_ms()

        def heard() -> bool:
            new = session.heard_total_ms() - base
            return over() or (new > 0 and new >= step.min_heard_ms)

        return heard
    since = loop.time()

    def done() -> bool:
        quiet = loop.time() - max(session.last_played_at, since) >= QUIET_S
        idle = not session.playing and session.active_response_id is None
        return over() or (quiet and idle)

    return done


async def _run(call: SimSipCall, steps: Sequence[Step], record: SipCallRecord) -> None:
    def over() -> bool:
        return call.state in ("ended", "referred")

    def joined() -> bool:
        session = call.session
        return over() or (session is not None and not session.closed.is_set())

    try:
        for step in steps:
            if over():
                return
            if isinstance(step, Silence):
                with contextlib.suppress(TimeoutError):  # a hang-up ends the silence early
                    await call.wait(over, step.ms / 1000)
                continue
            # The control socket dropped: the line stays up while the relay joins again.
            with contextlib.suppress(TimeoutError):
                await call.wait(joined, 10)
            session = call.session
            if over() or session is None:
                return
            if isinstance(step, Speak):
                await session.hear(step.ms)
            elif isinstance(step, Dtmf):
                await session.key(step.digit)
            elif isinstance(step, (WaitForAssistant, WaitForAssistantDone)):
                try:
                    await session.until(_answered(session, step, over), step.timeout)
                except TimeoutError:
                    record.failures.append(f"{type(step).__name__}: no answer in {step.timeout} s")
            elif isinstance(step, Hangup):
                call.state, call.ended_by = "ended", "caller"
                if not session.ws.closed:
                    await session.ws.close(code=1000, message=b"the caller hung up")
                call.bump()
                return
    finally:
        record.heard_ms = [ms for s in call.sessions for ms in s.heard_ms.values()]
