"""One response slot per call: which response the relay asked for, and what waits for it.

The Realtime API runs one response at a time per conversation. The slot is `idle`,
`requested` (a `response.create` is in flight, known by its `event_id`) or `active` (the
model is producing response `response_id`, whoever asked for it). Requests that cannot go
out now wait in order, with their options (a console's instructions are never lost);
plain requests ("answer now") coalesce. Every request ends resolved: created, refused and
retried once if the refusal was transient, refused for good (the caller of `refused` says
so on the console), or timed out. No I/O and no clock here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

MAX_WAITING = 8  # requests queued behind a running response
REQUEST_TIMEOUT_S = 10.0  # a response.create with no response.created nor error by then

State = Literal["idle", "requested", "active"]


@dataclass(slots=True)
class Request:
    source: str  # greeting | dtmf | tool | console | reconnect
    options: dict[str, Any] | None = None
    retries: int = 0

    @property
    def plain(self) -> bool:
        return not self.options


@dataclass
class ResponseSlot:
    state: State = "idle"
    request: Request | None = None  # the request in flight or being answered
    event_id: str = ""  # of the response.create in flight
    requested_at: float = 0.0
    response_id: str | None = None
    waiting: deque[Request] = field(default_factory=deque)
    dropped: int = 0  # requests refused because too many were waiting

    @property
    def busy(self) -> bool:
        """A response is asked for, running, or waiting to be asked for."""
        return self.state != "idle" or bool(self.waiting)

    def want(self, request: Request) -> bool:
        """Queue a request; False when the queue is full (the request is refused)."""
        queue = self.waiting
        if request.plain and any(r.plain for r in queue):
            return True  # one plain "answer now" covers them all
        if len(queue) >= MAX_WAITING:
            self.dropped += 1
            return False
        queue.append(request)
        return True

    def next(self, event_id: str, now: float) -> Request | None:
        """The request to send now (marked in flight under `event_id`), if any."""
        if self.state != "idle" or not self.waiting:
            return None
        self.request = self.waiting.popleft()
        self.state, self.event_id, self.requested_at = "requested", event_id, now
        return self.request

    def created(self, response_id: str) -> None:
        """A response started: ours if we asked, or the model's own (turn detection)."""
        self.state, self.response_id, self.event_id = "active", response_id, ""

    def done(self, response_id: str) -> None:
        if self.response_id in (response_id, None):
            self.state, self.response_id, self.request, self.event_id = "idle", None, None, ""

    def refused(self, event_id: str, *, transient: bool, busy: bool) -> Request | None:
        """The model refused our response.create `event_id`.

        `busy`: it already has an active response -- ask again when that one ends.
        `transient`: retried once. Returns the request dropped for good, if any."""
        if self.event_id != event_id or self.request is None:
            return None
        request = self.request
        self.event_id = ""
        if self.state == "requested":
            self.state, self.request = "idle", None
        if busy:
            self.waiting.appendleft(request)
            return None
        if transient and request.retries < 1:
            request.retries += 1
            self.waiting.appendleft(request)
            return None
        return request

    def timed_out(self, now: float) -> Request | None:
        """A request in flight for too long: free the slot; retried once, then dropped."""
        if self.state != "requested" or now - self.requested_at < REQUEST_TIMEOUT_S:
            return None
        return self.refused(self.event_id, transient=True, busy=False)

    def deadline(self) -> float | None:
        return self.requested_at + REQUEST_TIMEOUT_S if self.state == "requested" else None

    def lost(self, *, caller_speaking: bool) -> None:
        """The model socket went away: whatever was in flight or running is gone with it.

        A request in flight, or a response the caller had not finished hearing, is asked
        again in the next session, so the caller is answered without speaking again --
        unless the caller is talking: the next session's turn detection answers them."""
        if self.state in ("requested", "active") and not caller_speaking:
            again = self.request or Request("reconnect")
            again.retries = 0
            if not any(r is again for r in self.waiting):
                self.waiting.appendleft(again)
        self.state, self.request, self.event_id, self.response_id = "idle", None, "", None

    def clear(self) -> None:
        self.waiting.clear()
        self.state, self.request, self.event_id, self.response_id = "idle", None, "", None
