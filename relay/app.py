"""The relay's routes: /twiml /call /logs /tools /health /calls /public-url /metrics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from twilio.twiml.voice_response import VoiceResponse

from shared import __version__

from . import metrics
from .console_socket import console_endpoint
from .context import RelayContext
from .media_socket import MediaStreamEndpoint
from .model_link import ModelConnector, PrewarmPool
from .security import public_http_url, public_ws_url
from .settings import DEFAULT_REALTIME_URL, Settings
from .tools.builtins import default_registry
from .twilio_rest import TwilioRest, say_and_hangup_twiml

log = logging.getLogger("relay")

SERVICE = "phone-relay"


def _ctx(request: Request) -> RelayContext:
    ctx: RelayContext = request.app.state.relay
    return ctx


async def twiml(request: Request) -> Response:
    ctx = _ctx(request)
    settings = ctx.settings
    public = settings.public_url
    if not public and settings.simulator and not ctx.signatures.enabled:
        # No real Twilio in simulator mode: stream back to whichever host was asked.
        public = f"http://{request.url.netloc}"
    if not public:
        log.error("/twiml: PUBLIC_URL is not set, so Twilio cannot be told where to stream")
        return PlainTextResponse(
            "PUBLIC_URL is not set: the relay cannot tell Twilio where to connect. "
            "Set PUBLIC_URL to this relay's public https URL.",
            status_code=500,
        )
    params: dict[str, str] = dict(request.query_params)
    if request.method == "POST":
        form = await request.form()
        params = {k: str(v) for k, v in form.items()}
    if ctx.signatures.enabled:
        url = public_http_url(public, request.url.path, request.url.query)
        post_params = params if request.method == "POST" else {}
        if not ctx.signatures.valid(url, post_params, request.headers.get("x-twilio-signature")):
            log.warning("/twiml: refused a request without a valid X-Twilio-Signature")
            metrics.call_rejected("forged")
            return PlainTextResponse("invalid Twilio signature", status_code=403)
    call_sid = params.get("CallSid", "")
    if not call_sid:
        return PlainTextResponse("missing CallSid (this URL is for Twilio)", status_code=400)
    if ctx.draining or len(ctx.hub.calls) >= settings.max_calls:
        metrics.call_rejected("busy")
        return Response(say_and_hangup_twiml(settings.busy_message), media_type="text/xml")
    session = ctx.call_session()
    if settings.prewarm:
        ctx.prewarm.start(call_sid, str(session.get("model", settings.model)), session)
    r = VoiceResponse()
    stream = r.connect().stream(url=public_ws_url(public, "/call"))
    stream.parameter(name="stream_token", value=ctx.tokens.issue(call_sid))
    stream.parameter(name="from", value=params.get("From", ""))
    stream.parameter(name="to", value=params.get("To", ""))
    return Response(str(r), media_type="text/xml")


async def health(request: Request) -> Response:
    ctx = _ctx(request)
    return JSONResponse(
        {
            "service": SERVICE,
            "status": "draining" if ctx.draining else "ok",
            "version": __version__,
            "calls": len(ctx.hub.calls),
            "simulator": ctx.settings.simulator,
            "draining": ctx.draining,
            "model": ctx.model_status,
        },
        status_code=503 if ctx.draining else 200,
    )


async def tools(request: Request) -> Response:
    return JSONResponse(_ctx(request).tools.schemas())


async def calls(request: Request) -> Response:
    """Live calls, with callers' numbers: for consoles (the token), not the public."""
    ctx = _ctx(request)
    refusal = _console_refusal(ctx, request, "calls")
    if refusal is not None:
        return refusal
    return JSONResponse([r.bridge.info() for r in ctx.hub.calls.values()])


async def public_url(request: Request) -> Response:
    return JSONResponse({"publicUrl": _ctx(request).settings.public_url})


def _console_refusal(ctx: RelayContext, request: Request, what: str) -> Response | None:
    """None if the request carries the console token (or, with none set, is loopback)."""
    token = ctx.settings.console_token
    if token:
        auth = request.headers.get("authorization", "")
        presented = auth[7:] if auth.lower().startswith("bearer ") else ""
        if not token.matches(presented):
            return PlainTextResponse(f"{what} need the console token", status_code=401)
    elif request.client is None or request.client.host not in ("127.0.0.1", "::1", "localhost"):
        return PlainTextResponse(f"{what} are served to loopback only", status_code=403)
    return None


async def metrics_endpoint(request: Request) -> Response:
    refusal = _console_refusal(_ctx(request), request, "metrics")
    if refusal is not None:
        return refusal
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


def build_context(settings: Settings, http: aiohttp.ClientSession, model_url: str) -> RelayContext:
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
        twilio_rest=twilio is not None,
        transfer_number=settings.transfer_number,
    )
    ctx = RelayContext(
        settings=settings,
        http=http,
        connector=connector,
        prewarm=PrewarmPool(connector, settings.prewarm_timeout_s, settings.prewarm_max),
        tools=registry,
        twilio=twilio,
    )
    ctx.public_base = f"http://127.0.0.1:{settings.port}"
    ctx.hub.on_console_dropped = metrics.CONSOLES_DROPPED.inc
    return ctx


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sim: Any = None
        model_url = settings.realtime_url
        if settings.simulator and settings.realtime_url == DEFAULT_REALTIME_URL:
            from .sim.model import SimModel

            sim = SimModel()
            model_url = await sim.start("127.0.0.1", 0)
            log.info("no OPENAI_API_KEY: using the built-in simulated model at %s", model_url)
        # No pool limit: every live call holds its model socket for its whole life, and
        # aiohttp's default of 100 connections would leave call 101 waiting forever.
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            ctx = build_context(settings, http, model_url)
            app.state.relay = ctx
            try:
                yield
            finally:
                await ctx.prewarm.close()
                if ctx.twilio is not None:
                    await ctx.twilio.close()
                if sim is not None:
                    await sim.stop()

    def get_ctx(scope: dict[str, Any]) -> RelayContext:
        ctx: RelayContext = scope["app"].state.relay
        return ctx

    routes = [
        Route("/twiml", twiml, methods=["GET", "POST"]),
        Route("/health", health),
        Route("/tools", tools),
        Route("/calls", calls),
        Route("/public-url", public_url),
        Route("/metrics", metrics_endpoint),
        WebSocketRoute("/call", MediaStreamEndpoint(get_ctx)),
        WebSocketRoute("/logs", console_endpoint),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
