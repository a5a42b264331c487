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


def _default_replies() -> list[ScriptItem]:
    return [
        Reply("Hello! Thanks for calling. How can I help you today?"),
        Reply("Sure, I can help with that. Could you tell me a little more?"),
        Reply("Got it. Is there anything else I can do for you?"),
    ]


def _default_transcripts() -> list[str]:
    return ["Hi, can you hear me?", "I have a question about my order.", "No, that's all."]


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
