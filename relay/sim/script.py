"""What the simulated model says and how it behaves: a plain, picklable script."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Pacing = Literal["burst", "realtime", "slow"]


@dataclass(frozen=True)
class Reply:
    """An assistant audio answer; `audio_ms` defaults to ~60 ms per character (min 400 ms)."""

    text: str
    audio_ms: int | None = None

    def duration_ms(self) -> int:
        if self.audio_ms is not None:
            return max(0, self.audio_ms)
        return max(400, 60 * len(self.text))


@dataclass(frozen=True)
class ToolCall:
    """A function call the model makes instead of speaking."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


ScriptItem = Reply | ToolCall


# A console-answered tool: the relay has no handler for it, so a console answers it (the
# Function calls panel). `make run` adds it to the relay's default tools in simulator mode.
LOOKUP_ORDER: dict[str, Any] = {
    "type": "function",
    "name": "lookup_order",
    "description": "Look up the status of a customer's order by its number.",
    "parameters": {
        "type": "object",
        "properties": {"order_number": {"type": "string", "description": "e.g. A1234"}},
        "required": ["order_number"],
    },
}


def _default_replies() -> list[ScriptItem]:
    # One reply per caller turn, except that a tool call is followed by the answer the model
    # gives once the tool's output is in: the relay asks for it with response.create.
    return [
        Reply("Hello! Thanks for calling. How can I help you today?"),
        # A backend tool: the relay runs it (offline it answers an error at once).
        ToolCall("get_weather_from_coords", {"latitude": 48.85, "longitude": 2.35}),
        Reply("I have checked the weather in Paris for you."),
        # A console-answered tool: it waits for an answer from the console (or times out).
        ToolCall("lookup_order", {"order_number": "A1234"}),
        Reply("Thanks for waiting. I have looked up order A1234 for you."),
        Reply("You're welcome. Is there anything else I can do for you?"),
    ]


def _default_transcripts() -> list[str]:
    return [
        "Hi, can you hear me?",
        "What's the weather like in Paris?",
        "And where is my order A1234?",
        "No, that's all. Thanks!",
    ]


@dataclass
class ModelScript:
    replies: list[ScriptItem] = field(default_factory=_default_replies)
    caller_transcripts: list[str] = field(default_factory=_default_transcripts)
    pacing: Pacing = "burst"
    delta_ms: int = 100  # audio per response.output_audio.delta
    connect_delay_s: float = 0.0  # before the WebSocket upgrade is accepted
    configure_delay_s: float = 0.0  # before session.updated
    first_audio_delay_s: float = 0.0  # between response.created and the first audio delta
    expire_after_s: float | None = None  # session_expired + close 1001 (None: 60 minutes)
    fail_response_with: str | None = None  # e.g. "insufficient_quota": every response fails
    # Faults for the no-dead-air tests (each applies across the model's sessions):
    refuse_upgrade_with: int | None = None  # HTTP status for every upgrade, e.g. 401 (bad key)
    refuse_response_create_with: str | None = None  # an `error` for client response.create
    refuse_response_create_times: int = 1  # ... for the first this many of them
    drop_after_tool_call: int | None = None  # close code right after the first call's arguments
    vad_rms_threshold: float | None = None  # None: 1000 * server_vad threshold (default 500)
    semantic_silence_ms: int = 300  # end-of-turn silence for semantic_vad
    tone_hz: float = 330.0  # the assistant's "voice"
    seed: int = 7  # for the deterministic gaps of "slow" pacing
    tone_amplitude: int = 6000

    def reply_at(self, index: int) -> ScriptItem:
        if not self.replies:
            return Reply("...")
        return self.replies[index % len(self.replies)]

    def transcript_at(self, index: int) -> str:
        if not self.caller_transcripts:
            return ""
        return self.caller_transcripts[index % len(self.caller_transcripts)]
