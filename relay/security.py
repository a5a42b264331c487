"""Twilio signatures, one-time per-call stream tokens, and the console token."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web
from twilio.request_validator import RequestValidator

from shared.secret import Secret


def public_ws_url(public_url: str, path: str) -> str:
    """The wss:// URL Twilio connects to (and signs), from PUBLIC_URL."""
    parts = urlsplit(public_url)
    scheme = "ws" if parts.scheme == "http" and _is_loopback(parts.hostname or "") else "wss"
    return f"{scheme}://{parts.netloc}{path}"


def public_http_url(public_url: str, path: str, query: str = "") -> str:
    return f"{public_url.rstrip('/')}{path}" + (f"?{query}" if query else "")


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1")


@dataclass
class SignatureChecker:
    auth_token: Secret

    @property
    def enabled(self) -> bool:
        return bool(self.auth_token)

    def valid(self, url: str, params: Mapping[str, str], signature: str | None) -> bool:
        if not self.enabled:
            return True
        if not signature:
            return False
        validator = RequestValidator(self.auth_token.get())
        return bool(validator.validate(url, dict(params), signature))


@dataclass
class StreamTokens:
    """One-time tokens bound to a CallSid, issued by /twiml, spent by /call."""

    ttl_s: float = 300.0
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (sid, due)

    def issue(self, call_sid: str, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        self._expire(now)
        token = secrets.token_urlsafe(24)
        self._tokens[token] = (call_sid, now + self.ttl_s)
        return token

    def redeem(self, token: str, call_sid: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        entry = self._tokens.pop(token, None) if token else None
        if entry is None:
            return False
        bound_sid, due = entry
        return secrets.compare_digest(bound_sid, call_sid) and now <= due

    def _expire(self, now: float) -> None:
        if len(self._tokens) > 64:
            for tok, (_, due) in list(self._tokens.items()):
                if due < now:
                    del self._tokens[tok]


def console_allowed(token: Secret, presented: str, client_host: str | None) -> bool:
    """RELAY_CONSOLE_TOKEN in constant time; with none configured, loopback only."""
    if token:
        return token.matches(presented)
    return _is_loopback(client_host or "")


def bearer(request: web.BaseRequest) -> str:
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else ""


def console_refusal(request: web.BaseRequest, token: Secret, what: str) -> web.Response | None:
    """None if an HTTP request may see console data (`what`), else the refusal to send."""
    if token:
        if not token.matches(bearer(request)):
            return web.Response(status=401, text=f"{what} need the console token")
    elif not _is_loopback(request.remote or ""):
        return web.Response(status=403, text=f"{what} are served to loopback only")
    return None
