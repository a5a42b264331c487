"""Services shared by every call in one relay process."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from shared import session as sess

from .actions import EndReason
from .call import CallConfig
from .cluster import Node, Shared, TokenStore, default_instance, local_state, worker_index
from .hub import Hub
from .model_link import ModelConnectError, ModelConnector, PrewarmPool
from .openai_calls import RealtimeCalls
from .security import SignatureChecker
from .settings import Settings
from .store import CallRecord, Profile, SavedDefaults, Store
from .tools.registry import ToolRegistry
from .twilio_rest import TwilioRest

if TYPE_CHECKING:
    from .sip import SipState

log = logging.getLogger("relay")

_RINGING_KEPT = 1000  # calls between /twiml and their stream, at most


def _phone_audio(session: dict[str, Any]) -> None:
    """New calls' defaults stay in the phone's format (a browser call sets its own)."""
    for side in ("input", "output"):
        fmt = session.get("audio", {}).get(side, {}).get("format", {}).get("type")
        if fmt not in (None, "audio/pcmu"):
            raise sess.SessionConfigError(
                f"audio.{side}.format",
                f"the default must stay audio/pcmu (Twilio streams mu-law), not {fmt}",
            )


def _sip_state() -> SipState:
    from .sip import SipState

    return SipState.new()


@dataclass
class RelayContext:
    settings: Settings
    http: aiohttp.ClientSession
    connector: ModelConnector
    prewarm: PrewarmPool
    tools: ToolRegistry
    twilio: TwilioRest | None
    realtime_calls: RealtimeCalls  # SIP calls' REST: accept, reject, hang up, refer
    hub: Hub = field(default_factory=Hub)
    # Tokens, live calls, the feed and defaults: in memory, or shared (relay/cluster).
    shared: Shared = field(init=False)
    signatures: SignatureChecker = field(init=False)
    default_session: dict[str, Any] = field(default_factory=dict)
    greeting: str = ""  # RELAY_GREETING, changeable from the console for new calls
    draining: bool = False
    sim_tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    public_base: str = ""  # where simulated calls reach this relay
    # What the last model connection said: "unknown" | "ok" | "refused" (+ what to fix).
    # Shown on /health and the console checklist, so a refused key is seen before a call.
    model_status: dict[str, str] = field(
        default_factory=lambda: {"status": "unknown", "detail": ""}
    )
    store: Store | None = None
    webhook_secret: str = ""  # OPENAI_WEBHOOK_SECRET (or the simulator's): SIP mode is on
    sip: SipState = field(default_factory=lambda: _sip_state())
    sim_model: Any = None  # the built-in SimModel in simulator mode (SIP calls need it)
    # What /twiml decided for a call, for its stream: the profile and when it rang.
    _ringing: OrderedDict[str, tuple[Profile | None, float]] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        settings = self.settings
        node = Node(settings.instance_id or default_instance(settings.port), worker_index())
        self.shared = local_state(self.hub, node)
        self.signatures = SignatureChecker(self.settings.twilio_auth_token)
        self.greeting = self.greeting or self.settings.greeting
        if not self.default_session:
            # Env tools plus the relay's own; a console default later replaces the list.
            session = dict(self.settings.session)
            tools = list(session.get("tools", []))
            names = {t.get("name") for t in tools}
            tools += [t for t in self.tools.schemas() if t["name"] not in names]
            session["tools"] = tools
            self.default_session = session

    @property
    def tokens(self) -> TokenStore:
        return self.shared.tokens

    @property
    def node(self) -> Node:
        return self.shared.node

    def use_redis(self, url: str) -> None:
        """Share state through Redis (before start-up); the feed goes through it too."""
        from .cluster.redis_state import redis_state

        self.shared = redis_state(
            url, self.shared.node, self.hub, self.apply_shared_defaults, self.calls_lost
        )
        self.hub.forward = self.shared.feed.publish
        self.hub.on_consoles = self.shared.feed.consoles_changed

    def apply_shared_defaults(self, session: dict[str, Any], greeting: str, tell: bool) -> None:
        """Defaults another process saved: new calls here use them too (`tell`: and this
        process's consoles hear of it)."""
        self.default_session = session
        self.greeting = greeting
        if tell:
            log.info("applied the defaults another relay process saved")
            self.hub.publish_local(
                {"type": "session.default", "session": session, "greeting": greeting}
            )

    def calls_lost(self, entries: list[dict[str, Any]], detail: str) -> None:
        """Calls of a process that died, ended here: counted and kept in the history."""
        from . import metrics

        now = time.time()
        for entry in entries:
            metrics.calls_ended.labels(EndReason.ERROR.value).inc()
            if self.store is None:
                continue
            started = float(entry.get("started_at") or now)
            direction = entry.get("direction")
            self.store.submit(
                CallRecord(
                    call_sid=entry["call_sid"],
                    started_at=started,
                    stream_sid=str(entry.get("stream_sid") or ""),
                    direction="outbound" if direction == "outbound" else "inbound",
                    from_=str(entry.get("from") or ""),
                    to=str(entry.get("to") or ""),
                    answered_at=started,
                    ended_at=now,
                    end_reason=EndReason.ERROR,
                    end_reason_text=detail,
                    model=str(entry.get("model") or ""),
                    profile=entry.get("profile"),
                )
            )

    def model_ok(self) -> None:
        self._set_model_status("ok", "")

    def model_refused(self, exc: ModelConnectError) -> None:
        if exc.final:
            self._set_model_status("refused", str(exc))

    def _set_model_status(self, status: str, detail: str) -> None:
        if self.model_status["status"] == status and self.model_status["detail"] == detail:
            return
        self.model_status = {"status": status, "detail": detail}
        self.hub.publish({"type": "model.status", **self.model_status})

    def call_session(self, profile: Profile | None = None) -> dict[str, Any]:
        """The session for a new call: defaults <- env <- console default <- its profile."""
        if profile is None:
            return dict(self.default_session)
        layer = profile.session_layer()
        if "tools" in layer:  # the profile's tools, and the relay's own beside them
            names = {t.get("name") for t in layer["tools"]}
            layer["tools"] = layer["tools"] + [
                t for t in self.tools.schemas() if t["name"] not in names
            ]
        try:
            return sess.to_wire(sess.validate(sess.merge(self.default_session, layer)))
        except sess.SessionConfigError as exc:
            log.error("profile %s does not fit the defaults (%s); using them", profile.name, exc)
            return dict(self.default_session)

    def call_config(
        self, session: dict[str, Any], profile: Profile | None, **knobs: Any
    ) -> CallConfig:
        """A new call's CallConfig: its session, its profile's greeting, the settings' knobs
        (`knobs` override them: a SIP call has no media, a browser call its own format)."""
        settings = self.settings
        return CallConfig(
            session=session,
            backend_tools=self.tools.names(),
            greeting=self.call_greeting(profile),
            dtmf_format=settings.dtmf_format,
            early_audio_ms=settings.early_audio_ms,
            console_tool_timeout_s=settings.console_tool_timeout_s,
            reconnect_give_up_s=settings.reconnect_give_up_s,
            rollover_margin_s=settings.rollover_margin_s,
            **knobs,
        )

    def call_greeting(self, profile: Profile | None) -> str:
        if profile is not None and profile.greeting is not None:
            return profile.greeting
        return self.greeting

    async def profile_for(self, to: str) -> Profile | None:
        """The agent profile for a call to `to` (None: the defaults). Never raises."""
        if self.store is None:
            return None
        return await self.store.profiles.resolve(to)

    def ringing(self, call_sid: str, profile: Profile | None, at: float) -> None:
        """/twiml answered for this call: remember its profile for the stream."""
        self._ringing[call_sid] = (profile, at)
        while len(self._ringing) > _RINGING_KEPT:
            self._ringing.popitem(last=False)

    def answered(self, call_sid: str) -> tuple[Profile | None, float] | None:
        """What /twiml decided for this call, if this process served it."""
        return self._ringing.pop(call_sid, None)

    def load_defaults(self, saved: SavedDefaults) -> None:
        """The console's saved defaults, from the store at start-up."""
        try:
            session = sess.to_wire(sess.validate(sess.merge(self.default_session, saved.session)))
            _phone_audio(session)
        except sess.SessionConfigError as exc:
            log.error("the saved defaults no longer validate (%s); not applied", exc)
            return
        self.default_session = session
        self.greeting = saved.greeting
        log.info("applied the defaults saved from the console (version %d)", saved.version)

    async def save_defaults(self) -> str:
        """Store the current defaults; returns a warning ("" when stored)."""
        if self.store is None:
            return ""
        saved = SavedDefaults(session=self.default_session, greeting=self.greeting, tools=[])
        try:
            await self.store.saved.save(saved)
        except Exception as exc:
            log.warning("defaults not stored: %s: %s", type(exc).__name__, exc)
            return (
                "applied to new calls, but not stored: the database is unavailable "
                "(they will be lost if the relay restarts)"
            )
        return ""

    def set_default_session(self, update: dict[str, Any]) -> dict[str, Any]:
        merged = sess.merge(self.default_session, sess.check_update(update))
        session = sess.to_wire(sess.validate(merged))
        _phone_audio(session)
        self.default_session = session
        return self.default_session
