"""The console's settings, from the environment (and `.env` files), typed.

Env names follow the original webapp where users know them; secrets are `Secret`s so they
never show up in a repr, a log line or (through Reflex state) the browser.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from console.phone import E164
from shared import envparse as ep
from shared.secret import Secret

DEFAULT_RELAY_URL = "http://localhost:8081"
ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")


@dataclass(frozen=True)
class ConsoleSettings:
    relay_url: str = DEFAULT_RELAY_URL
    console_token: Secret = field(default_factory=lambda: Secret(""))
    password: Secret = field(default_factory=lambda: Secret(""))
    twilio_account_sid: str = ""
    twilio_auth_token: Secret = field(default_factory=lambda: Secret(""))
    twilio_outbound_number: str = ""
    twilio_twiml_url: str = ""
    public_url: str = ""
    record_calls: bool = False
    port: int = 3000

    @property
    def twilio_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    @property
    def twiml_url(self) -> str:
        """Where Twilio fetches TwiML for calls we place: explicit, else PUBLIC_URL/twiml."""
        if self.twilio_twiml_url:
            return self.twilio_twiml_url
        return f"{self.public_url}/twiml" if self.public_url else ""

    @property
    def webhook_url(self) -> str:
        """What a number's voice webhook must be for inbound calls to reach this relay."""
        return f"{self.public_url}/twiml" if self.public_url else ""

    @property
    def logs_url(self) -> str:
        return self._ws_url("/logs")

    @property
    def browser_call_url(self) -> str:
        """Where the console backend streams the softphone's calls."""
        return self._ws_url("/browser-call")

    def _ws_url(self, path: str) -> str:
        scheme, _, rest = self.relay_url.partition("://")
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest.rstrip('/')}{path}"


def load(env: Mapping[str, str]) -> ConsoleSettings:
    """Read settings from `env`; a bad value raises SettingsError naming the variable."""
    # RELAY_URL is ours; NEXT_PUBLIC_REALTIME_SERVER_URL is what users of the original set.
    relay_var = (
        "RELAY_URL" if env.get("RELAY_URL", "").strip() else "NEXT_PUBLIC_REALTIME_SERVER_URL"
    )
    sid = ep.text(env, "TWILIO_ACCOUNT_SID")
    if sid and not ACCOUNT_SID.match(sid):
        raise ep.SettingsError("TWILIO_ACCOUNT_SID", "expected AC followed by 32 hex digits")
    outbound = ep.text(env, "TWILIO_OUTBOUND_NUMBER")
    if outbound and not E164.match(outbound):
        raise ep.SettingsError(
            "TWILIO_OUTBOUND_NUMBER",
            f"expected an E.164 number like +14155550100, got {outbound!r}",
        )
    return ConsoleSettings(
        relay_url=ep.url(env, relay_var, DEFAULT_RELAY_URL),
        console_token=Secret(ep.text(env, "RELAY_CONSOLE_TOKEN")),
        password=Secret(ep.text(env, "CONSOLE_PASSWORD")),
        twilio_account_sid=sid,
        twilio_auth_token=Secret(ep.text(env, "TWILIO_AUTH_TOKEN")),
        twilio_outbound_number=outbound,
        twilio_twiml_url=ep.url(env, "TWILIO_TWIML_URL"),
        public_url=ep.url(env, "PUBLIC_URL"),
        record_calls=ep.boolean(env, "CONSOLE_RECORD_CALLS", False),
        port=ep.integer(env, "CONSOLE_PORT", 3000, 1, 65535),
    )


def environment(root: Path | None = None) -> dict[str, str]:
    """The process environment over `.env` files (repo root, then console/); env wins."""
    from dotenv import dotenv_values

    base = root or Path(__file__).resolve().parent.parent
    merged: dict[str, str] = {}
    for path in (base / ".env", base / "console" / ".env"):
        if path.is_file():
            merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ)
    return merged


_cached: ConsoleSettings | None = None


def get() -> ConsoleSettings:
    """Settings for this process, read once."""
    global _cached
    if _cached is None:
        _cached = load(environment())
    return _cached
