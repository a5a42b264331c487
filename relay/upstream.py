"""The model connection of one call, as decisions: connect, back off, give up, hand over.

Every model socket a call opens gets a generation number. One is current; at most one
more is a spare, opened beside it for a planned hand-over (session rollover, a model
change, a session that reported a server error) and made current at a quiet moment.

Failures are classified. Transient ones (network errors, closes 1001/1006/1011/..., HTTP 5xx
or 429 on the upgrade) are retried with backoff until `give_up_s` of continuous failure.
Final ones (the key refused with 401/403, a 400/404 naming a bad model or URL, a close in
the 4000 range or 1008) end the call at once: retrying cannot help, and the caller should
hear the apology in seconds, not after the whole budget.
No I/O and no clock here: `now` comes in, `Connect(delay_s=...)` goes out.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from .actions import Connect, Handover

FINAL_HTTP = frozenset({400, 401, 403, 404})
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0


def http_is_final(status: int) -> bool:
    return status in FINAL_HTTP


def close_is_final(code: int | None) -> bool:
    """4000-4999 are the service's own refusals (e.g. 4000 beta_api_shape_disabled);
    1008 is a policy violation. Neither gets better by asking again."""
    return code is not None and (4000 <= code < 5000 or code == 1008)


def refusal_hint(status: int) -> str:
    """What to fix, for an upgrade the model refused for good."""
    if status in (401, 403):
        return "OpenAI refused the API key: check OPENAI_API_KEY (and the project's access)"
    if status == 404:
        return "OpenAI does not know this model or URL: check OPENAI_REALTIME_MODEL and URL"
    return "OpenAI refused the connection request: check OPENAI_REALTIME_URL and the model"


@dataclass
class GiveUp:
    detail: str


@dataclass
class Upstream:
    give_up_s: float = 20.0
    rand: Callable[[], float] = random.random  # tests pin the jitter
    gen: int = 0  # the current socket's generation; 0 before the first
    is_open: bool = False
    attempt: int = 0  # failed attempts in a row
    failing_since: float | None = None
    spare_gen: int = 0  # 0: no spare
    spare_ready: bool = False
    spare_model: str = ""
    spare_reason: str = ""
    reconnects: int = 0  # unplanned losses of the current socket
    _last_gen: int = field(default=0, repr=False)

    def _new_gen(self) -> int:
        self._last_gen += 1
        return self._last_gen

    def backoff(self) -> float:
        base = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**self.attempt)
        return float(base * (0.5 + 0.5 * self.rand()))

    # --- the current socket -------------------------------------------------------------

    def start(self, model: str, prewarmed: bool) -> Connect:
        self.gen = self._new_gen()
        return Connect(self.gen, model, 0.0, prewarmed=prewarmed)

    def opened(self, gen: int) -> Literal["current", "spare", "stale"]:
        if gen == self.gen:
            self.is_open, self.attempt, self.failing_since = True, 0, None
            return "current"
        if gen == self.spare_gen:
            self.spare_ready = True
            return "spare"
        return "stale"

    def connect_failed(
        self, gen: int, model: str, now: float, *, final: bool, detail: str
    ) -> Connect | GiveUp | None:
        """The current socket could not be opened: try again later, or give up."""
        if gen != self.gen:
            return None
        if final:
            return GiveUp(detail)
        return self._retry(model, now, detail)

    def closed(
        self, gen: int, model: str, code: int | None, now: float
    ) -> Connect | Handover | GiveUp | None:
        """Socket `gen` closed. None: it was not the current one (handed over, stale)."""
        if gen != self.gen:
            return None
        self.is_open = False
        self.reconnects += 1
        if close_is_final(code):
            return GiveUp(f"the model closed the session for good (code {code})")
        if self.spare_ready:
            return self.handover()  # a fresh session is already open: no backoff needed
        self.drop_spare()
        return self._retry(model, now, f"the model socket closed (code {code})")

    def _retry(self, model: str, now: float, detail: str) -> Connect | GiveUp:
        if self.failing_since is None:
            self.failing_since = now
        elif now - self.failing_since >= self.give_up_s:
            return GiveUp(f"{detail}; no model for {self.give_up_s:g} s")
        delay = self.backoff()
        if now + delay - self.failing_since > self.give_up_s:
            delay = max(0.0, self.failing_since + self.give_up_s - now)
        self.attempt += 1
        self.gen = self._new_gen()
        return Connect(self.gen, model, delay)

    # --- the spare ------------------------------------------------------------------------

    def want_spare(self, model: str, reason: str) -> Connect | None:
        if self.spare_gen or not self.is_open:
            return None
        self.spare_gen, self.spare_ready = self._new_gen(), False
        self.spare_model, self.spare_reason = model, reason
        return Connect(self.spare_gen, model, 0.0, spare=True)

    def spare_failed(self, gen: int) -> bool:
        if gen != self.spare_gen:
            return False
        self.drop_spare()
        return True

    def handover(self) -> Handover:
        gen = self.spare_gen
        self.gen, self.is_open = gen, True
        self.attempt, self.failing_since = 0, None
        self.spare_gen, self.spare_ready = 0, False
        return Handover(gen)

    def drop_spare(self) -> int:
        """Forget the spare; returns its generation (0 if none) so it can be closed."""
        gen = self.spare_gen
        self.spare_gen, self.spare_ready = 0, False
        return gen
