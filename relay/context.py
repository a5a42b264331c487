"""Services shared by every call in one relay process."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from shared import session as sess

from .hub import Hub
from .model_link import ModelConnectError, ModelConnector, PrewarmPool
from .security import SignatureChecker, StreamTokens
from .settings import Settings
from .tools.registry import ToolRegistry
from .twilio_rest import TwilioRest

log = logging.getLogger("relay")


@dataclass
class RelayContext:
    settings: Settings
    http: aiohttp.ClientSession
    connector: ModelConnector
    prewarm: PrewarmPool
    tools: ToolRegistry
    twilio: TwilioRest | None
    hub: Hub = field(default_factory=Hub)
    tokens: StreamTokens = field(default_factory=StreamTokens)
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

    def __post_init__(self) -> None:
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

    def call_session(self) -> dict[str, Any]:
        """The session for a new call: defaults <- env <- console default."""
        return dict(self.default_session)

    def set_default_session(self, update: dict[str, Any]) -> dict[str, Any]:
        merged = sess.merge(self.default_session, sess.check_update(update))
        self.default_session = sess.to_wire(sess.validate(merged))
        return self.default_session
