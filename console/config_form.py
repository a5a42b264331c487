"""The session configuration form <-> a GA session (via shared.session).

The form holds strings and booleans as the page edits them; `to_session` turns it into a
validated GA `session.update` body or raises FormError naming the field in the form's words.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from shared import session as ga

TURN_DETECTION_MODES = ("semantic_vad", "server_vad", "none")
NOISE_REDUCTION_MODES = ("none", "near_field", "far_field")
TRANSCRIPTION_MODELS = ("", "gpt-4o-mini-transcribe", "gpt-4o-transcribe", "whisper-1")
MODELS = ("gpt-realtime", "gpt-realtime-mini")


class FormError(ValueError):
    """A bad form value; str() is one plain sentence naming the field as the form does."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


# GA session paths -> the form's own labels, so errors use the words on the page.
LABELS = {
    "model": "Model",
    "instructions": "Instructions",
    "output_modalities": "Output",
    "audio.output.voice": "Voice",
    "audio.output.speed": "Speed",
    "audio.input.turn_detection": "Turn detection",
    "audio.input.turn_detection.type": "Turn detection",
    "audio.input.turn_detection.threshold": "Threshold",
    "audio.input.turn_detection.prefix_padding_ms": "Prefix padding",
    "audio.input.turn_detection.silence_duration_ms": "Silence",
    "audio.input.turn_detection.idle_timeout_ms": "Idle timeout",
    "audio.input.turn_detection.eagerness": "Eagerness",
    "audio.input.noise_reduction": "Noise reduction",
    "audio.input.transcription": "Transcription",
    "audio.input.transcription.model": "Transcription",
    "audio.input.transcription.language": "Language",
    "tool_choice": "Tool choice",
    "max_output_tokens": "Max output tokens",
    "tools": "Tools",
}
# Fields with bounds: what to say when a value is outside them.
RANGES = {
    "audio.output.speed": "Speed must be between 0.25 and 1.5.",
    "audio.input.turn_detection.threshold": "Threshold must be between 0 and 1.",
    "max_output_tokens": "Max output tokens must be a whole number from 1 to 4096, or inf.",
    "audio.input.turn_detection.prefix_padding_ms": "Prefix padding must be 0 ms or more.",
    "audio.input.turn_detection.silence_duration_ms": "Silence must be 0 ms or more.",
    "audio.input.turn_detection.idle_timeout_ms": "Idle timeout must be 0 ms or more.",
}
_TYPES = {"`float`": "a number", "`int`": "a whole number", "`str`": "text", "`bool`": "on/off"}


def plain_error(field: str, message: str) -> str:
    """A session validation error (field path + msgspec's words) as one plain sentence."""
    if field in RANGES and ("<=" in message or ">=" in message or "< " in message):
        return RANGES[field]
    label = LABELS.get(field) or field.rsplit(".", 1)[-1].replace("_", " ").capitalize()
    text = message
    for code, word in _TYPES.items():
        text = text.replace(f"Expected {code}", f"expected {word}")
    text = text.replace("`", "")
    return f"{label}: {text[:1].lower()}{text[1:]}".rstrip(".") + "."


def plain_session_error(text: str) -> str:
    """The relay's refusal of a session ("audio.output.speed: Expected ...") in plain words."""
    field, sep, message = text.partition(": ")
    if sep and field and " " not in field:
        return plain_error(field, message)
    return text


@dataclass
class ConfigForm:
    model: str = "gpt-realtime"
    instructions: str = ""
    voice: str = "marin"
    speed: str = "1.0"
    output_modality: str = "audio"
    turn_detection: str = "semantic_vad"
    threshold: str = "0.5"
    prefix_padding_ms: str = "300"
    silence_duration_ms: str = "500"
    idle_timeout_ms: str = ""
    eagerness: str = "auto"
    create_response: bool = True
    interrupt_response: bool = True
    noise_reduction: str = "none"
    transcription_model: str = ""
    transcription_language: str = ""
    tool_choice: str = "auto"
    max_output_tokens: str = "inf"
    greeting: str = ""  # not a session field: the relay speaks it with response.create

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConfigForm:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _num(value: str, label: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(value.strip())
    except ValueError:
        word = "a whole number" if kind is int else "a number"
        raise FormError(label, f"{label} must be {word} (not {value.strip()!r}).") from None


def from_session(session: dict[str, Any], greeting: str = "") -> ConfigForm:
    """Fill the form from a GA session (e.g. the relay's default or `session.updated`)."""
    s = ga.normalize(session)
    audio = s.get("audio") or {}
    inp, out = audio.get("input") or {}, audio.get("output") or {}
    form = ConfigForm(greeting=greeting)
    form.model = str(s.get("model") or form.model)
    form.instructions = str(s.get("instructions") or "")
    voice = out.get("voice")
    form.voice = voice if isinstance(voice, str) else form.voice
    if out.get("speed") is not None:
        form.speed = str(out["speed"])
    mods = s.get("output_modalities") or ["audio"]
    form.output_modality = "text" if mods == ["text"] else "audio"
    td = inp.get("turn_detection", {"type": "semantic_vad"})
    if td is None:
        form.turn_detection = "none"
    elif isinstance(td, dict):
        form.turn_detection = str(td.get("type") or "semantic_vad")
        for key in ("threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms"):
            if td.get(key) is not None:
                setattr(form, key, str(td[key]))
        form.eagerness = str(td.get("eagerness") or form.eagerness)
        form.create_response = bool(td.get("create_response", True))
        form.interrupt_response = bool(td.get("interrupt_response", True))
    nr = inp.get("noise_reduction")
    form.noise_reduction = str(nr.get("type")) if isinstance(nr, dict) else "none"
    tr = inp.get("transcription")
    if isinstance(tr, dict):
        form.transcription_model = str(tr.get("model") or "")
        form.transcription_language = str(tr.get("language") or "")
    tc = s.get("tool_choice")
    form.tool_choice = tc if isinstance(tc, str) else "auto"
    mot = s.get("max_output_tokens")
    form.max_output_tokens = "inf" if mot in (None, "inf") else str(mot)
    return form


def to_session(form: ConfigForm, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A validated GA session for `session.update`; FormError names the bad field."""
    if form.turn_detection not in TURN_DETECTION_MODES:
        raise FormError(
            "Turn detection", f"Turn detection: choose {', '.join(TURN_DETECTION_MODES)}."
        )
    td: dict[str, Any] | None
    if form.turn_detection == "none":
        td = None
    else:
        td = {
            "type": form.turn_detection,
            "create_response": form.create_response,
            "interrupt_response": form.interrupt_response,
        }
        if form.turn_detection == "server_vad":
            td["threshold"] = _num(form.threshold, "Threshold", float)
            td["prefix_padding_ms"] = _num(form.prefix_padding_ms, "Prefix padding", int)
            td["silence_duration_ms"] = _num(form.silence_duration_ms, "Silence", int)
            if form.idle_timeout_ms.strip():
                td["idle_timeout_ms"] = _num(form.idle_timeout_ms, "Idle timeout", int)
        else:
            td["eagerness"] = form.eagerness
    inp: dict[str, Any] = {
        "turn_detection": td,
        "noise_reduction": None
        if form.noise_reduction in ("", "none")
        else {"type": form.noise_reduction},
        "transcription": None,
    }
    if form.transcription_model.strip() not in ("", "off"):
        tr: dict[str, Any] = {"model": form.transcription_model.strip()}
        if form.transcription_language.strip():
            tr["language"] = form.transcription_language.strip()
        inp["transcription"] = tr
    out: dict[str, Any] = {"voice": form.voice, "speed": _num(form.speed, "Speed", float)}
    raw: dict[str, Any] = {
        "type": "realtime",
        "model": form.model.strip(),
        "instructions": form.instructions,
        "output_modalities": [form.output_modality],
        "audio": {"input": inp, "output": out},
        "tool_choice": form.tool_choice,
    }
    mot = form.max_output_tokens.strip().lower()
    raw["max_output_tokens"] = "inf" if mot in ("", "inf") else _num(mot, "Max output tokens", int)
    if tools is not None:
        raw["tools"] = tools
    try:
        return ga.check_update(raw)
    except ga.SessionConfigError as exc:
        raise FormError(exc.field, plain_error(exc.field, str(exc).split(": ", 1)[-1])) from None


def session_command(
    session: dict[str, Any], call_sid: str | None, scope: str, greeting: str
) -> dict[str, Any]:
    """The `session.update` command. The greeting is what new calls open with, so it goes
    with `default`/`both` only ("" = new calls wait for the caller to speak)."""
    command: dict[str, Any] = {
        "type": "session.update",
        "session": session,
        "call_sid": call_sid,
        "scope": scope,
    }
    if scope in ("default", "both"):
        command["greeting"] = greeting.strip()
    return command
