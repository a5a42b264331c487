"""The Profiles view's form <-> an agent profile (docs/history-api.md, "Agent profiles").

The form holds strings as the page edits them. A field left at "default" (or empty) is
left out of the profile, so the call inherits the relay's defaults; `to_profile` raises
FormError naming the form field when a value cannot be sent at all (e.g. tools that are
not JSON). Everything else is the relay's to check: its refusals come back per field.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from console.config_form import FormError
from shared.session import EAGERNESS, VOICES

DEFAULT = "default"  # "inherit the relay's defaults" (a select cannot hold "")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")
TURN_DETECTION = (DEFAULT, "semantic_vad", "server_vad", "none")
GREETING_MODES = (DEFAULT, "none", "say")  # relay's greeting | wait for the caller | this text
VOICE_CHOICES = (DEFAULT, *VOICES)
EAGERNESS_CHOICES = EAGERNESS


@dataclass
class ProfileForm:
    name: str = ""
    instructions: str = ""
    voice: str = DEFAULT
    model: str = ""
    tools: str = ""  # JSON list of function tools; "" = the defaults, "[]" = no tools
    greeting_mode: str = DEFAULT
    greeting: str = ""
    turn_detection: str = DEFAULT
    eagerness: str = "auto"  # semantic_vad
    threshold: str = ""  # server_vad, 0-1
    silence_ms: str = ""  # server_vad
    # The profile's turn detection as loaded: fields the form does not edit are kept.
    turn_detection_json: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProfileForm:
        names = {f.name for f in fields(cls)}
        return cls(**{k: str(v) for k, v in d.items() if k in names})


def check_name(raw: str) -> str:
    name = raw.strip()
    if not NAME.match(name):
        raise FormError(
            "name",
            "Name: 1 to 64 letters, digits, spaces, '_', '.' or '-', starting with a letter "
            "or a digit.",
        )
    return name


def _number(raw: str, field: str, label: str, lo: float, hi: float | None) -> float | None:
    if not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise FormError(field, f"{label}: expected a number, not {raw.strip()!r}.") from None
    if value < lo or (hi is not None and value > hi):
        bounds = f"between {lo:g} and {hi:g}" if hi is not None else f"{lo:g} or more"
        raise FormError(field, f"{label} must be {bounds}.")
    return value


def _turn_detection(form: ProfileForm) -> dict[str, Any] | None:
    kind = form.turn_detection
    if kind == DEFAULT:
        return None
    if kind == "none":
        return {"type": "none"}
    try:
        loaded = json.loads(form.turn_detection_json) if form.turn_detection_json else {}
    except ValueError:
        loaded = {}
    # Keep what the form does not edit only for the same kind (eagerness is semantic only).
    td: dict[str, Any] = dict(loaded) if loaded.get("type") == kind else {}
    td["type"] = kind
    if kind == "semantic_vad":
        td["eagerness"] = form.eagerness or "auto"
        for key in ("threshold", "silence_duration_ms"):
            td.pop(key, None)
    else:
        td.pop("eagerness", None)
        threshold = _number(form.threshold, "threshold", "Threshold", 0, 1)
        silence = _number(form.silence_ms, "silence_ms", "Silence", 0, None)
        if threshold is not None:
            td["threshold"] = threshold
        if silence is not None:
            td["silence_duration_ms"] = int(silence)
    return td


def to_profile(form: ProfileForm) -> dict[str, Any]:
    """The PUT /api/profiles/{name} body: only the fields this profile sets."""
    body: dict[str, Any] = {}
    if form.instructions.strip():
        body["instructions"] = form.instructions
    if form.voice and form.voice != DEFAULT:
        body["voice"] = form.voice
    if form.model.strip():
        body["model"] = form.model.strip()
    if form.tools.strip():
        try:
            tools = json.loads(form.tools)
        except json.JSONDecodeError as exc:
            raise FormError(
                "tools", f"Tools: not valid JSON ({exc.msg}, line {exc.lineno})."
            ) from None
        if isinstance(tools, dict):
            tools = [tools]  # one tool pasted on its own
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise FormError("tools", "Tools: expected a JSON list of tools, like [{...}].")
        body["tools"] = tools
    if form.greeting_mode == "none":
        body["greeting"] = ""
    elif form.greeting_mode == "say":
        if not form.greeting.strip():
            raise FormError("greeting", "Greeting: type what the agent says first.")
        body["greeting"] = form.greeting
    td = _turn_detection(form)
    if td is not None:
        body["turn_detection"] = td
    return body


def from_profile(profile: dict[str, Any]) -> ProfileForm:
    """The form for a profile as the relay returns it."""
    tools = profile.get("tools")
    greeting = profile.get("greeting")
    td = profile.get("turn_detection")
    form = ProfileForm(
        name=str(profile.get("name") or ""),
        instructions=str(profile.get("instructions") or ""),
        voice=str(profile.get("voice") or DEFAULT),
        model=str(profile.get("model") or ""),
        tools=json.dumps(tools, indent=2) if tools is not None else "",
        greeting_mode=DEFAULT if greeting is None else "say" if greeting else "none",
        greeting=str(greeting or ""),
    )
    if isinstance(td, dict):
        kind = str(td.get("type") or "none")
        form.turn_detection = kind if kind in TURN_DETECTION else DEFAULT
        form.turn_detection_json = json.dumps(td)
        form.eagerness = str(td.get("eagerness") or "auto")
        form.threshold = _text(td.get("threshold"))
        form.silence_ms = _text(td.get("silence_duration_ms"))
    return form


def _text(value: Any) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def summary(profile: dict[str, Any]) -> str:
    """One line for the profile list: what it sets, in words."""
    parts = []
    for key, label in (("model", "model"), ("voice", "voice")):
        if profile.get(key):
            parts.append(f"{label} {profile[key]}")
    if profile.get("instructions"):
        parts.append("own instructions")
    tools = profile.get("tools")
    if tools is not None:
        parts.append(f"{len(tools)} tool(s)" if tools else "no tools")
    greeting = profile.get("greeting")
    if greeting is not None:
        parts.append("own greeting" if greeting else "waits for the caller")
    td = profile.get("turn_detection")
    if isinstance(td, dict):
        parts.append(f"turn detection {td.get('type')}")
    return ", ".join(parts) or "the defaults (sets nothing of its own)"
