"""Console login: constant-time password check, signed session tokens, failed-attempt delay.

The session token lives in a cookie. It holds only an expiry and an HMAC over it, keyed by
a key derived from CONSOLE_PASSWORD: every backend worker agrees on it without sharing
state, and changing the password logs every session out.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from dataclasses import dataclass, field

from shared.secret import Secret

SESSION_SECONDS = 12 * 3600
MAX_DELAY_S = 5.0


def _key(password: Secret) -> bytes:
    return hmac.new(password.get().encode(), b"phone-relay console session v1", "sha256").digest()


def check_password(password: Secret, candidate: str) -> bool:
    """Constant-time; an unset password never matches (the console stays locked)."""
    return password.matches(candidate)


def issue_token(password: Secret, now: float | None = None, ttl: int = SESSION_SECONDS) -> str:
    expires = int((time.time() if now is None else now) + ttl)
    sig = hmac.new(_key(password), str(expires).encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{sig}"


def verify_token(password: Secret, token: str, now: float | None = None) -> bool:
    if not password or "." not in token:
        return False
    expires_text, _, sig = token.partition(".")
    if not expires_text.isdigit():
        return False
    expected = hmac.new(_key(password), expires_text.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, sig):
        return False
    return int(expires_text) > (time.time() if now is None else now)


@dataclass
class LoginThrottle:
    """A growing delay after failed attempts (0.5 s, 1 s, 2 s ... up to 5 s), reset on success.

    Process-wide on purpose: an attacker opening many tabs shares the same delay.
    """

    window_s: float = 300.0
    failures: list[float] = field(default_factory=list)

    def delay(self, now: float) -> float:
        self.failures = [t for t in self.failures if now - t < self.window_s]
        if not self.failures:
            return 0.0
        return min(0.25 * 2.0 ** len(self.failures), MAX_DELAY_S)

    def failed(self, now: float) -> None:
        self.failures.append(now)

    def succeeded(self) -> None:
        self.failures.clear()


throttle = LoginThrottle()


def wait_message(delay: float) -> str:
    """What the login page says while a throttled attempt waits (seconds, rounded up)."""
    seconds = max(1, math.ceil(delay))
    return (
        f"Too many failed attempts: checking the password in {seconds} s "
        "(each wrong password adds to the wait, up to 5 s)."
    )
