"""The relay's routes on aiohttp.web: /twiml /call /browser-call /logs /tools /health /calls
/metrics."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from shared import __version__

from . import history_api, metrics
from .cluster import SharedStateError
from .console_socket import close_consoles, console_endpoint
from .context import RelayContext
from .keys import CONSOLES, RELAY
from .media_socket import browser_endpoint, media_endpoint
from .model_link import ModelConnector, PrewarmPool
from .openai_calls import RealtimeCalls
from .runner import tick_calls
from .security import console_refusal, public_http_url, public_ws_url
from .settings import DEFAULT_REALTIME_URL, Settings
from .sip import openai_webhook
from .store import Store
from .store.db import create_engine
from .tools.builtins import default_registry
from .twilio_rest import TwilioRest, say_and_hangup_twiml

log = logging.getLogger("relay")

SERVICE = "phone-relay"
STORE_STARTUP_S = 5.0


async def twiml(request: web.Request) -> web.Response:
    ctx = request.app[RELAY]
    settings = ctx.settings
    public = settings.public_url
    if not public and settings.simulator and not ctx.signatures.enabled:
        # No real Twilio in simulator mode: stream back to whichever host was asked.
        public = f"http://{request.host}"
    if not public:
        log.error("/twiml: PUBLIC_URL is not set, so Twilio cannot be told where to stream")
        return web.Response(
            status=500,
            text="PUBLIC_URL is not set: the relay cannot tell Twilio where to connect. "
            "Set PUBLIC_URL to this relay's public https URL.",
        )
    params: dict[str, str] = dict(request.query)
    if request.method == "POST":
        try:
            form = await request.post()
        except web.HTTPException:
            raise  # e.g. 413: aiohttp's own, clear answer
        except Exception as exc:  # undecodable or malformed bodies: the sender's problem
            return web.Response(status=400, text=f"unreadable form body ({type(exc).__name__})")
        params = {k: str(v) for k, v in form.items()}
    if ctx.signatures.enabled:
        url = public_http_url(public, request.path, request.query_string)
        post_params = params if request.method == "POST" else {}
        if not ctx.signatures.valid(url, post_params, request.headers.get("X-Twilio-Signature")):
            log.warning("/twiml: refused a request without a valid X-Twilio-Signature")
            metrics.call_rejected("forged")
            return web.Response(status=403, text="invalid Twilio signature")
    call_sid = params.get("CallSid", "")
    if not call_sid:
        return web.Response(status=400, text="missing CallSid (this URL is for Twilio)")
    try:
        full = ctx.draining or not await ctx.shared.registry.has_room(settings.max_calls)
        token = "" if full else await ctx.tokens.issue(call_sid)
    except SharedStateError as exc:
        log.error("/twiml: call %s refused: the shared state is unavailable (%s)", call_sid, exc)
        metrics.call_rejected("unavailable")
        return _xml(say_and_hangup_twiml(settings.apology))
    if full:
        metrics.call_rejected("busy")
        return _xml(say_and_hangup_twiml(settings.busy_message))
    profile = await ctx.profile_for(params.get("To", ""))
    ctx.ringing(call_sid, profile, time.time())
    session = ctx.call_session(profile)
    if settings.prewarm:
        ctx.prewarm.start(call_sid, str(session.get("model", settings.model)), session)
    r = VoiceResponse()
    stream = r.connect().stream(url=public_ws_url(public, "/call"))
    stream.parameter(name="stream_token", value=token)
    stream.parameter(name="from", value=params.get("From", ""))
    stream.parameter(name="to", value=params.get("To", ""))
    stream.parameter(name="direction", value=_direction(params.get("Direction", "")))
    return _xml(str(r))


def _direction(twilio_direction: str) -> str:
    """Twilio's `inbound` / `outbound-api` / `outbound-dial` -> inbound or outbound."""
    return "outbound" if twilio_direction.startswith("outbound") else "inbound"


def _xml(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/xml")


async def health(request: web.Request) -> web.Response:
    ctx = request.app[RELAY]
    return web.json_response(
        {
            "service": SERVICE,
            "status": "draining" if ctx.draining else "ok",
            "version": __version__,
            "pid": os.getpid(),
            "worker": ctx.node.describe(),  # which process answered (several share a port)
            "shared": ctx.shared.status(),
            "calls": len(ctx.hub.calls),
            "simulator": ctx.settings.simulator,
            "draining": ctx.draining,
            "model": ctx.model_status,
            "store": ctx.store.status() if ctx.store is not None else None,
            "sip": bool(ctx.webhook_secret),
        },
        status=503 if ctx.draining else 200,
    )


async def tools(request: web.Request) -> web.Response:
    return web.json_response(request.app[RELAY].tools.schemas())


async def calls(request: web.Request) -> web.Response:
    """Live calls, with callers' numbers: for consoles (the token), not the public."""
    ctx = request.app[RELAY]
    refusal = console_refusal(request, ctx.settings.console_token, "calls")
    if refusal is not None:
        return refusal
    try:
        live = await ctx.shared.registry.live()  # every process's, with shared state
    except SharedStateError:
        live = [r.bridge.info() for r in ctx.hub.calls.values()]
    return web.json_response(live)


_RECORDING_SID = re.compile(r"^RE[0-9a-f]{32}\Z")


async def add_recording(request: web.Request) -> web.Response:
    """POST /api/calls/{call_sid}/recordings {"recording_sid": "RE..."}: the console started
    a Twilio recording of the call; the call's record keeps its SID (live or ended)."""
    ctx = request.app[RELAY]
    refusal = console_refusal(request, ctx.settings.console_token, "recordings")
    if refusal is not None:
        return refusal
    call_sid = request.match_info["call_sid"]
    try:
        body = await request.json()
    except ValueError:
        body = None
    recording_sid = body.get("recording_sid") if isinstance(body, dict) else None
    if not isinstance(recording_sid, str) or not _RECORDING_SID.match(recording_sid):
        return web.json_response(
            {"error": "recording_sid: a Twilio RecordingSid (RE...)"}, status=400
        )
    runner = ctx.hub.calls.get(call_sid)
    if runner is not None:
        if recording_sid not in runner.bridge.recording_sids:
            runner.bridge.recording_sids.append(recording_sid)
        return web.json_response({"call_sid": call_sid, "live": True})
    store = ctx.store
    record = await store.get_call(call_sid) if store is not None else None
    if store is None or record is None:
        return web.json_response({"error": f"no call {call_sid}"}, status=404)
    if recording_sid not in record.recording_sids:
        record.recording_sids.append(recording_sid)
        store.submit(record)
    return web.json_response({"call_sid": call_sid, "live": False})


async def public_url(request: web.Request) -> web.Response:
    return web.json_response({"publicUrl": request.app[RELAY].settings.public_url})


async def metrics_endpoint(request: web.Request) -> web.Response:
    refusal = console_refusal(request, request.app[RELAY].settings.console_token, "metrics")
    if refusal is not None:
        return refusal
    body, content_type = metrics.render()
    worker = str(request.app[RELAY].node.worker)
    return web.Response(body=body, headers={"Content-Type": content_type, "X-Relay-Worker": worker})


def build_context(
    settings: Settings,
    http: aiohttp.ClientSession,
    model_url: str,
    api_base: str = "",
    webhook_secret: str = "",
) -> RelayContext:
    connector = ModelConnector(http, model_url, settings.openai_api_key)
    twilio = (
        TwilioRest(
            settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_api_base
        )
        if settings.twilio_rest_enabled
        else None
    )
    registry = default_registry(
        timeout_s=settings.tool_timeout_s,
        # A transfer redirects a Media Streams call through Twilio's REST API, or refers a
        # SIP call through OpenAI's: either makes the tool usable.
        can_transfer=twilio is not None or bool(webhook_secret or settings.openai_webhook_secret),
        transfer_number=settings.transfer_number,
    )
    ctx = RelayContext(
        settings=settings,
        http=http,
        connector=connector,
        prewarm=PrewarmPool(connector, settings.prewarm_timeout_s, settings.prewarm_max),
        tools=registry,
        twilio=twilio,
        realtime_calls=RealtimeCalls(http, api_base or settings.api_base, settings.openai_api_key),
        webhook_secret=webhook_secret or settings.openai_webhook_secret.get(),
    )
    ctx.public_base = f"http://127.0.0.1:{settings.port}"
    ctx.hub.on_console_dropped = metrics.CONSOLES_DROPPED.inc
    return ctx


def create_app(settings: Settings) -> web.Application:
    # The store is made here (no I/O yet) so its API is routed; it connects at start-up.
    store = Store(settings.store, create_engine(settings.store.database_url.get()))

    async def relay_context(app: web.Application) -> AsyncIterator[None]:
        sim: Any = None
        model_url, api_base, webhook_secret = settings.realtime_url, "", ""
        if settings.simulator and settings.realtime_url == DEFAULT_REALTIME_URL:
            from .sim.model import SimModel

            sim = SimModel()
            model_url = await sim.start("127.0.0.1", 0)
            api_base = sim.api_base
            # Simulated SIP calls are signed like OpenAI's, with a secret of this run's.
            webhook_secret = settings.openai_webhook_secret.get() or sim.webhook_secret
            log.info("no OPENAI_API_KEY: using the built-in simulated model at %s", model_url)
        # No pool limit: every live call holds its model socket for its whole life, and
        # aiohttp's default of 100 connections would leave call 101 waiting forever.
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            ctx = build_context(settings, http, model_url, api_base, webhook_secret)
            ctx.store = store
            ctx.sim_model = sim
            app[RELAY] = ctx
            # A database that is away must not keep the relay from taking calls: a few
            # seconds, then calls run on the env defaults and records queue until it answers.
            await store.start(timeout=STORE_STARTUP_S)
            await _apply_saved_defaults(ctx, store)
            if settings.shared:
                ctx.use_redis(settings.redis_url.get())
            node = ctx.node
            metrics.set_worker(node.worker, node.pid, node.instance)
            # Redis away at start-up stops it (SharedStateUnavailable): a relay of several
            # processes cannot work without it. Its defaults, if any, are the newest.
            await ctx.shared.start()
            ticker = asyncio.get_running_loop().create_task(tick_calls(ctx.hub.calls))
            try:
                yield
            finally:
                ticker.cancel()
                await ctx.shared.close()  # after the drain: the calls' ends are written
                await store.close()  # after the drain: every call's record is submitted
                await ctx.prewarm.close()
                if ctx.twilio is not None:
                    await ctx.twilio.close()
                if sim is not None:
                    await sim.stop()

    # Twilio frames are small; the per-socket limit (RELAY_MAX_FRAME_BYTES) is checked with a
    # clear log line, and aiohttp's own cap only stops a peer that sends megabytes.
    app = web.Application(client_max_size=1024 * 1024)
    app[CONSOLES] = set()
    app.cleanup_ctx.append(relay_context)
    app.on_shutdown.append(close_consoles)
    app.router.add_route("GET", "/twiml", twiml)
    app.router.add_route("POST", "/twiml", twiml)
    app.router.add_get("/health", health)
    app.router.add_get("/tools", tools)
    app.router.add_get("/calls", calls)
    app.router.add_get("/public-url", public_url)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/call", media_endpoint)
    app.router.add_get("/browser-call", browser_endpoint)
    app.router.add_get("/logs", console_endpoint)
    app.router.add_post("/openai/webhook", openai_webhook)
    app.router.add_post("/api/calls/{call_sid}/recordings", add_recording)
    history_api.add_routes(app, store, settings.console_token)
    return app


async def _apply_saved_defaults(ctx: RelayContext, store: Store) -> None:
    try:
        saved = await asyncio.wait_for(store.saved.load(), STORE_STARTUP_S)
    except Exception as exc:  # the database is away: start on the env defaults, say so
        log.warning(
            "the console's saved defaults could not be read (%s); new calls use the "
            "environment's until the database answers and they are saved again",
            type(exc).__name__,
        )
        return
    if saved is not None:
        ctx.load_defaults(saved)
