"""The GA Realtime session configuration: typed, normalised, merged.

Users type config in three places (env, console, defaults) and often in the beta
shape they learnt first. Everything goes one way only: beta -> GA. The result
validates against strict Structs so what we send is a session the real API accepts
(no beta fields, `type: "realtime"`, no `rate` on G.711 formats).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

import msgspec
from msgspec import UNSET, Meta, UnsetType

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
FORMAT_TYPES = ("audio/pcm", "audio/pcmu", "audio/pcma")
EAGERNESS = ("low", "medium", "high", "auto")
NOISE_REDUCTION = ("near_field", "far_field")
TOOL_CHOICES = ("none", "auto", "required")
MODALITIES = ("audio", "text")
PCM_RATE = 24000

FORMAT_ALIASES: dict[str, str] = {
    "g711_ulaw": "audio/pcmu",
    "pcmu": "audio/pcmu",
    "mulaw": "audio/pcmu",
    "ulaw": "audio/pcmu",
    "audio/pcmu": "audio/pcmu",
    "audio/x-mulaw": "audio/pcmu",
    "g711_alaw": "audio/pcma",
    "pcma": "audio/pcma",
    "alaw": "audio/pcma",
    "audio/pcma": "audio/pcma",
    "pcm16": "audio/pcm",
    "linear16": "audio/pcm",
    "pcm": "audio/pcm",
    "audio/pcm": "audio/pcm",
}


class SessionConfigError(ValueError):
    """A config value the API would refuse; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


# --- the strict GA shape -------------------------------------------------------------

_strict: dict[str, Any] = {"forbid_unknown_fields": True, "omit_defaults": True}


class AudioFormat(msgspec.Struct, **_strict):
    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
    rate: Literal[24000] | UnsetType = UNSET


class ServerVad(msgspec.Struct, tag_field="type", tag="server_vad", **_strict):
    threshold: Annotated[float, Meta(ge=0.0, le=1.0)] | UnsetType = UNSET
    prefix_padding_ms: Annotated[int, Meta(ge=0)] | UnsetType = UNSET
    silence_duration_ms: Annotated[int, Meta(ge=0)] | UnsetType = UNSET
    idle_timeout_ms: Annotated[int, Meta(ge=0)] | UnsetType | None = UNSET
    create_response: bool | UnsetType = UNSET
    interrupt_response: bool | UnsetType = UNSET


class SemanticVad(msgspec.Struct, tag_field="type", tag="semantic_vad", **_strict):
    eagerness: Literal["low", "medium", "high", "auto"] | UnsetType = UNSET
    create_response: bool | UnsetType = UNSET
    interrupt_response: bool | UnsetType = UNSET


TurnDetection = Union[ServerVad, SemanticVad]


class Transcription(msgspec.Struct, **_strict):
    model: str
    language: str | UnsetType = UNSET
    prompt: str | UnsetType = UNSET


class NoiseReduction(msgspec.Struct, **_strict):
    type: Literal["near_field", "far_field"]


class AudioInput(msgspec.Struct, **_strict):
    format: AudioFormat | UnsetType = UNSET
    transcription: Transcription | UnsetType | None = UNSET
    noise_reduction: NoiseReduction | UnsetType | None = UNSET
    turn_detection: TurnDetection | UnsetType | None = UNSET


class AudioOutput(msgspec.Struct, **_strict):
    format: AudioFormat | UnsetType = UNSET
    voice: str | dict[str, str] | UnsetType = UNSET
    speed: Annotated[float, Meta(ge=0.25, le=1.5)] | UnsetType = UNSET


class Audio(msgspec.Struct, **_strict):
    input: AudioInput | UnsetType = UNSET
    output: AudioOutput | UnsetType = UNSET


class Session(msgspec.Struct, **_strict):
    type: Literal["realtime"]  # required on every update; no default so it is always sent
    model: str | UnsetType = UNSET
    instructions: str | UnsetType = UNSET
    output_modalities: list[Literal["audio", "text"]] | UnsetType = UNSET
    audio: Audio | UnsetType = UNSET
    tools: list[dict[str, Any]] | UnsetType = UNSET
    tool_choice: str | dict[str, Any] | UnsetType = UNSET
    max_output_tokens: Annotated[int, Meta(ge=1, le=4096)] | Literal["inf"] | UnsetType = UNSET
    tracing: str | dict[str, Any] | UnsetType | None = UNSET
    truncation: str | dict[str, Any] | UnsetType = UNSET
    prompt: dict[str, Any] | UnsetType | None = UNSET
    include: list[str] | UnsetType | None = UNSET


# Allowed values per path, to turn msgspec's "Invalid enum value" into a useful message.
_ALLOWED: dict[str, tuple[str, ...]] = {
    "type": ("realtime",),
    "output_modalities": MODALITIES,
    "audio.input.format.type": FORMAT_TYPES,
    "audio.output.format.type": FORMAT_TYPES,
    "audio.input.turn_detection.type": ("server_vad", "semantic_vad"),
    "audio.input.turn_detection.eagerness": EAGERNESS,
    "audio.input.noise_reduction.type": NOISE_REDUCTION,
    "audio.output.voice": VOICES,
    "tool_choice": TOOL_CHOICES,
}

_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")

DEFAULT_SESSION: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-realtime",
    "instructions": (
        "You are a helpful, friendly voice assistant on a phone call. "
        "Keep answers short and conversational."
    ),
    "output_modalities": ["audio"],
    "audio": {
        "input": {
            "format": {"type": "audio/pcmu"},
            # Transcripts feed the console and re-seed a session after a reconnect.
            "transcription": {"model": "whisper-1"},
            "turn_detection": {
                "type": "semantic_vad",
                "eagerness": "auto",
                "create_response": True,
                "interrupt_response": True,
            },
        },
        "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
    },
    "tool_choice": "auto",
}


# --- normalisation (beta -> GA, aliases) ---------------------------------------------


def normalize_format(value: Any, field: str) -> dict[str, Any]:
    """`g711_ulaw`, `{type: "pcmu"}`, `{type: "audio/pcm", sample_rate: 24000}` -> GA format."""
    rate: Any = None
    if isinstance(value, Mapping):
        raw_type = value.get("type")
        rate = value.get("rate", value.get("sample_rate"))
        extra = set(value) - {"type", "rate", "sample_rate"}
        if extra:
            raise SessionConfigError(f"{field}.{sorted(extra)[0]}", "unknown field")
    else:
        raw_type = value
    if not isinstance(raw_type, str) or raw_type.lower() not in FORMAT_ALIASES:
        allowed = ", ".join(sorted(FORMAT_ALIASES))
        raise SessionConfigError(field, f"unknown audio format {raw_type!r}; allowed: {allowed}")
    ga = FORMAT_ALIASES[raw_type.lower()]
    if ga == "audio/pcm":
        if rate not in (None, PCM_RATE, str(PCM_RATE)):
            raise SessionConfigError(
                field, f"audio/pcm supports only rate {PCM_RATE}, not {rate!r}"
            )
        return {"type": ga, "rate": PCM_RATE}
    if rate not in (None, 8000, "8000"):
        raise SessionConfigError(field, f"{ga} is 8000 Hz only, not {rate!r}")
    return {"type": ga}


def _normalize_turn_detection(value: Any) -> Any:
    if value is None or value == "none" or value == {"type": "none"}:
        return None
    if isinstance(value, Mapping):
        td = dict(value)
        if td.get("type") == "none":
            return None
        return td
    return value  # let validation report the wrong type


def _set(d: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        nxt = d.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            d[key] = nxt
        d = nxt
    d[path[-1]] = value


_BETA_MOVES: dict[str, tuple[str, ...]] = {
    "voice": ("audio", "output", "voice"),
    "speed": ("audio", "output", "speed"),
    "turn_detection": ("audio", "input", "turn_detection"),
    "input_audio_transcription": ("audio", "input", "transcription"),
    "input_audio_noise_reduction": ("audio", "input", "noise_reduction"),
    "input_audio_format": ("audio", "input", "format"),
    "output_audio_format": ("audio", "output", "format"),
    "max_response_output_tokens": ("max_output_tokens",),
}

# Beta-only fields that GA removed; dropping them is the only way to a valid session.
_DROPPED = ("temperature", "client_secret")


def normalize(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Turn what a user typed (beta, GA or a mix) into a GA-shaped session dict.

    Only fields present in `raw` appear in the result, so layers can be merged.
    """
    if not isinstance(raw, Mapping):
        raise SessionConfigError("session", f"expected an object, got {type(raw).__name__}")
    src = copy.deepcopy(dict(raw))
    out: dict[str, Any] = {}
    for key in _DROPPED:
        src.pop(key, None)
    if "modalities" in src:
        mods = src.pop("modalities")
        if "output_modalities" not in src:
            if not isinstance(mods, list):
                raise SessionConfigError("modalities", "expected a list such as ['audio']")
            unknown = [m for m in mods if m not in MODALITIES]
            if unknown or not mods:
                raise SessionConfigError(
                    "modalities",
                    f"unknown modality {unknown[0] if unknown else None!r}; "
                    f"allowed: {', '.join(MODALITIES)}",
                )
            src["output_modalities"] = ["audio"] if "audio" in mods else ["text"]
    if "mcp_server_connections" in src:
        raise SessionConfigError(
            "mcp_server_connections",
            "not a Realtime field; add MCP servers to `tools` as "
            "{type: 'mcp', server_label, server_url}",
        )
    audio = src.pop("audio", None)
    if audio is not None:
        if not isinstance(audio, Mapping):
            raise SessionConfigError("audio", "expected an object")
        out["audio"] = copy.deepcopy(dict(audio))
    for beta, path in _BETA_MOVES.items():
        if beta in src:
            _set(out, path, src.pop(beta))
    out.update(src)
    out["type"] = out.get("type", "realtime")
    for side in ("input", "output"):
        part = out.get("audio", {}).get(side)
        if part is None:
            continue
        if not isinstance(part, dict):
            raise SessionConfigError(f"audio.{side}", "expected an object")
        if "format" in part:
            part["format"] = normalize_format(part["format"], f"audio.{side}.format")
        if "sample_rate" in part:  # the TypeScript fork's invented field
            rate = part.pop("sample_rate")
            fmt = part.get("format", {"type": "audio/pcmu"})
            part["format"] = normalize_format({**fmt, "rate": rate}, f"audio.{side}.format")
    inp = out.get("audio", {}).get("input")
    if isinstance(inp, dict):
        if "turn_detection" in inp:
            inp["turn_detection"] = _normalize_turn_detection(inp["turn_detection"])
        nr = inp.get("noise_reduction")
        if isinstance(nr, str):
            inp["noise_reduction"] = None if nr in ("", "none") else {"type": nr}
        tr = inp.get("transcription")
        if isinstance(tr, str):
            inp["transcription"] = {"model": tr} if tr else None
    if "max_output_tokens" in out and out["max_output_tokens"] in ("inf", "infinite", None):
        out["max_output_tokens"] = "inf"
    return out


def validate(session: Mapping[str, Any]) -> Session:
    """Check a GA dict against the strict shape; the error names field and allowed values."""
    try:
        typed = msgspec.convert(dict(session), Session)
    except msgspec.ValidationError as exc:
        raise _friendly(exc) from None
    _check_voice(typed)
    _check_tools(typed)
    _check_modalities_and_tool_choice(typed)
    return typed


def to_wire(session: Session) -> dict[str, Any]:
    result: dict[str, Any] = msgspec.to_builtins(session)
    return result


def _friendly(exc: msgspec.ValidationError) -> SessionConfigError:
    msg = str(exc)
    m = _PATH.search(msg)
    path = m.group("path") if m else ""
    bare = re.sub(r"\[\d+\]", "", path)
    reason = _PATH.sub("", msg)
    if reason.startswith("Object contains unknown field"):
        name = reason.split("`")[1]
        field = f"{bare}.{name}" if bare else name
        return SessionConfigError(field, "unknown field (not part of the GA session)")
    if bare in _ALLOWED and ("enum" in reason or "Invalid" in reason or "Expected" in reason):
        return SessionConfigError(
            bare or "session", f"{reason}; allowed: {', '.join(_ALLOWED[bare])}"
        )
    return SessionConfigError(bare or "session", reason)


def _check_voice(s: Session) -> None:
    if isinstance(s.audio, UnsetType) or isinstance(s.audio.output, UnsetType):
        return
    voice = s.audio.output.voice
    if isinstance(voice, str) and voice not in VOICES:
        raise SessionConfigError(
            "audio.output.voice", f"unknown voice {voice!r}; allowed: {', '.join(VOICES)}"
        )
    if isinstance(voice, dict) and set(voice) != {"id"}:
        raise SessionConfigError("audio.output.voice", "a custom voice is {id: 'voice_...'}")


def _check_modalities_and_tool_choice(s: Session) -> None:
    mods = s.output_modalities
    if not isinstance(mods, UnsetType) and len(mods) != 1:
        raise SessionConfigError(
            "output_modalities", f"give exactly one of {', '.join(MODALITIES)}, not {mods!r}"
        )
    tc = s.tool_choice
    if isinstance(tc, str) and tc not in TOOL_CHOICES:
        raise SessionConfigError(
            "tool_choice",
            f"unknown tool_choice {tc!r}; allowed: {', '.join(TOOL_CHOICES)}, "
            "{type: 'function', name} or {type: 'mcp', server_label}",
        )
    if isinstance(tc, dict) and tc.get("type") not in ("function", "mcp"):
        raise SessionConfigError("tool_choice.type", f"{tc.get('type')!r}; allowed: function, mcp")


def _check_tools(s: Session) -> None:
    if isinstance(s.tools, UnsetType):
        return
    for i, tool in enumerate(s.tools):
        kind = tool.get("type")
        if kind == "function":
            if not isinstance(tool.get("name"), str) or not tool["name"]:
                raise SessionConfigError(f"tools[{i}].name", "a function tool needs a name")
            params = tool.get("parameters", {"type": "object"})
            if not isinstance(params, dict):
                raise SessionConfigError(f"tools[{i}].parameters", "expected a JSON schema object")
            extra = set(tool) - {"type", "name", "description", "parameters"}
            if extra:
                raise SessionConfigError(f"tools[{i}].{sorted(extra)[0]}", "unknown field")
        elif kind == "mcp":
            if not isinstance(tool.get("server_label"), str) or not tool["server_label"]:
                raise SessionConfigError(f"tools[{i}].server_label", "an MCP tool needs a label")
            sources = [k for k in ("server_url", "connector_id", "tunnel_id") if tool.get(k)]
            if len(sources) != 1:
                raise SessionConfigError(
                    f"tools[{i}]", "give exactly one of server_url, connector_id, tunnel_id"
                )
        else:
            raise SessionConfigError(f"tools[{i}].type", f"{kind!r}; allowed: function, mcp")


def merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge GA dicts, later layers win; lists and explicit None replace."""
    out: dict[str, Any] = {}
    for layer in layers:
        _merge_into(out, layer)
    return out


def _merge_into(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            # A different turn-detection type or audio format replaces rather than mixes
            # fields (else audio/pcm's `rate` would stick to a later audio/pcmu).
            if key in ("turn_detection", "format") and value.get("type") != dst[key].get("type"):
                dst[key] = copy.deepcopy(dict(value))
            else:
                _merge_into(dst[key], value)
        else:
            dst[key] = copy.deepcopy(value) if isinstance(value, (dict, list)) else value


def build_session(
    env: Mapping[str, Any] | None = None,
    override: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] = DEFAULT_SESSION,
) -> dict[str, Any]:
    """Defaults <- env <- console override, each normalised to GA, then validated."""
    merged = merge(normalize(defaults), normalize(env or {}), normalize(override or {}))
    return to_wire(validate(merged))


def check_update(update: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise and validate a partial `session.update` (console edits a live call)."""
    return to_wire(validate(normalize(update)))


def turn_detection_of(session: Mapping[str, Any]) -> dict[str, Any] | None:
    td = session.get("audio", {}).get("input", {}).get("turn_detection")
    return td if isinstance(td, dict) else None
