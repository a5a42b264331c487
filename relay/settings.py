"""Relay settings from the environment and `.env`, typed and checked at start-up."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dotenv import dotenv_values

from shared import envparse as ep
from shared.envparse import SettingsError
from shared.secret import Secret
from shared.session import SessionConfigError, build_session

from .store import settings as store_settings
from .store.settings import StoreSettings

DEFAULT_REALTIME_URL = "wss://api.openai.com/v1/realtime"
DEFAULT_API_BASE = "https://api.openai.com/v1"

# Env variable -> the session field it sets (named as in the original TypeScript relay).
_SESSION_ENV = (
    "OPENAI_REALTIME_MODEL",
    "OPENAI_SESSION_INSTRUCTIONS",
    "OPENAI_DEFAULT_VOICE",
    "OPENAI_AUDIO_INPUT_FORMAT_TYPE",
    "OPENAI_AUDIO_OUTPUT_FORMAT_TYPE",
    "OPENAI_AUDIO_INPUT_SAMPLE_RATE",
    "OPENAI_AUDIO_OUTPUT_SAMPLE_RATE",
    "OPENAI_AUDIO_INPUT_NOISE_REDUCTION",
    "OPENAI_TURN_DETECTION_JSON",
    "OPENAI_TURN_DETECTION_EAGERNESS",
    "OPENAI_TOOL_CHOICE",
    "OPENAI_DEFAULT_TOOLS_JSON",
    "OPENAI_DEFAULT_MCP_JSON",
    "OPENAI_TRANSCRIPTION_MODEL",
    "OPENAI_TRANSCRIPTION_LANGUAGE",
    "OPENAI_MAX_OUTPUT_TOKENS",
)


@dataclass(frozen=True)
class Settings:
    openai_api_key: Secret = field(default_factory=lambda: Secret(""))
    realtime_url: str = DEFAULT_REALTIME_URL
    api_base: str = DEFAULT_API_BASE  # REST: SIP calls' accept, reject, hangup, refer
    openai_webhook_secret: Secret = field(default_factory=lambda: Secret(""))  # SIP mode
    public_url: str = ""
    host: str = "0.0.0.0"
    port: int = 8081
    console_token: Secret = field(default_factory=lambda: Secret(""))
    console_origin: str = ""
    twilio_account_sid: str = ""
    twilio_auth_token: Secret = field(default_factory=lambda: Secret(""))
    twilio_api_base: str = ""  # tests point the Twilio REST client elsewhere
    session: dict[str, Any] = field(default_factory=lambda: build_session())
    greeting: str = ""
    dtmf_format: str = "The caller pressed the {digit} key."
    transfer_number: str = ""
    prewarm: bool = True
    prewarm_timeout_s: float = 30.0
    prewarm_max: int = 50
    tool_timeout_s: float = 10.0
    console_tool_timeout_s: float = 30.0
    max_calls: int = 200
    max_frame_bytes: int = 64 * 1024
    drain_seconds: float = 30.0
    early_audio_ms: int = 10_000
    reconnect_give_up_s: float = 20.0
    rollover_margin_s: float = 300.0
    apology: str = "Sorry, we are having technical trouble. Please call back in a moment."
    busy_message: str = (
        "Sorry, all our lines are busy right now. Please call back in a few minutes."
    )
    console_rate_per_s: float = 20.0
    log_level: str = "INFO"
    log_format: str = "text"
    store: StoreSettings = field(default_factory=StoreSettings)
    # Shared state (relay/cluster): empty = one process keeping everything in memory.
    redis_url: Secret = field(default_factory=lambda: Secret(""))
    workers: int = 1  # RELAY_WORKERS: processes serving one port (N > 1 needs redis_url)
    instance_id: str = ""  # RELAY_INSTANCE_ID: names this instance in the shared registry

    @property
    def simulator(self) -> bool:
        """No API key: the relay talks to the built-in simulated model."""
        return not self.openai_api_key

    @property
    def ws_max_message_bytes(self) -> int:
        """The server's hard cap on a frame; RELAY_MAX_FRAME_BYTES is checked per frame."""
        return max(1024 * 1024, 2 * self.max_frame_bytes)

    @property
    def twilio_rest_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    @property
    def shared(self) -> bool:
        """State shared through Redis (several processes or instances) instead of memory."""
        return bool(self.redis_url)

    @property
    def model(self) -> str:
        return str(self.session.get("model", "gpt-realtime"))


def session_env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    """The env layer of the session config, in the GA shape (beta spellings accepted)."""
    layer: dict[str, Any] = {}
    audio_in: dict[str, Any] = {}
    audio_out: dict[str, Any] = {}
    if v := ep.text(env, "OPENAI_REALTIME_MODEL"):
        layer["model"] = v
    if v := ep.text(env, "OPENAI_SESSION_INSTRUCTIONS"):
        layer["instructions"] = v
    if v := ep.text(env, "OPENAI_DEFAULT_VOICE"):
        audio_out["voice"] = v
    for side, target in (("INPUT", audio_in), ("OUTPUT", audio_out)):
        fmt = ep.text(env, f"OPENAI_AUDIO_{side}_FORMAT_TYPE")
        rate = ep.text(env, f"OPENAI_AUDIO_{side}_SAMPLE_RATE")
        if fmt or rate:
            target["format"] = {
                "type": fmt or "audio/pcmu",
                **({"rate": _rate(env, side)} if rate else {}),
            }
    if v := ep.text(env, "OPENAI_AUDIO_INPUT_NOISE_REDUCTION"):
        audio_in["noise_reduction"] = None if v == "none" else {"type": v}
    td = ep.json_value(env, "OPENAI_TURN_DETECTION_JSON")
    if td is not None:
        if not isinstance(td, dict):
            raise SettingsError("OPENAI_TURN_DETECTION_JSON", "expected a JSON object")
        audio_in["turn_detection"] = td
    if v := ep.text(env, "OPENAI_TURN_DETECTION_EAGERNESS"):
        base = audio_in.get("turn_detection") or {"type": "semantic_vad"}
        audio_in["turn_detection"] = {**base, "eagerness": v}
    if v := ep.text(env, "OPENAI_TRANSCRIPTION_MODEL"):
        audio_in["transcription"] = {"model": v}
        if lang := ep.text(env, "OPENAI_TRANSCRIPTION_LANGUAGE"):
            audio_in["transcription"]["language"] = lang
    if v := ep.text(env, "OPENAI_TOOL_CHOICE"):
        layer["tool_choice"] = v
    if v := ep.text(env, "OPENAI_MAX_OUTPUT_TOKENS"):
        layer["max_output_tokens"] = (
            v if v == "inf" else ep.integer(env, "OPENAI_MAX_OUTPUT_TOKENS", 0)
        )
    tools: list[Any] = []
    for name in ("OPENAI_DEFAULT_TOOLS_JSON", "OPENAI_DEFAULT_MCP_JSON"):
        value = ep.json_value(env, name)
        if value is None:
            continue
        if not isinstance(value, list):
            raise SettingsError(name, "expected a JSON array")
        if name == "OPENAI_DEFAULT_MCP_JSON":
            value = [{"type": "mcp", **v} if isinstance(v, dict) else v for v in value]
        else:
            value = [{"type": "function", **v} if isinstance(v, dict) else v for v in value]
        tools.extend(value)
    if tools:
        layer["tools"] = tools
    if audio_in or audio_out:
        layer["audio"] = {k: v for k, v in (("input", audio_in), ("output", audio_out)) if v}
    return layer


def _rate(env: Mapping[str, str], side: str) -> int:
    return ep.integer(env, f"OPENAI_AUDIO_{side}_SAMPLE_RATE", 8000)


# Session field -> the env variables that set it; the error names the first one that is set.
_FIELD_TO_ENV: dict[str, tuple[str, ...]] = {
    "model": ("OPENAI_REALTIME_MODEL",),
    "instructions": ("OPENAI_SESSION_INSTRUCTIONS",),
    "audio.output.voice": ("OPENAI_DEFAULT_VOICE",),
    "audio.input.format": ("OPENAI_AUDIO_INPUT_FORMAT_TYPE", "OPENAI_AUDIO_INPUT_SAMPLE_RATE"),
    "audio.output.format": ("OPENAI_AUDIO_OUTPUT_FORMAT_TYPE", "OPENAI_AUDIO_OUTPUT_SAMPLE_RATE"),
    "audio.input.noise_reduction": ("OPENAI_AUDIO_INPUT_NOISE_REDUCTION",),
    # The EAGERNESS variable overrides the JSON's eagerness, so it is the culprit if set.
    "audio.input.turn_detection.eagerness": (
        "OPENAI_TURN_DETECTION_EAGERNESS",
        "OPENAI_TURN_DETECTION_JSON",
    ),
    "audio.input.turn_detection": ("OPENAI_TURN_DETECTION_JSON", "OPENAI_TURN_DETECTION_EAGERNESS"),
    "audio.input.transcription": ("OPENAI_TRANSCRIPTION_MODEL", "OPENAI_TRANSCRIPTION_LANGUAGE"),
    "tool_choice": ("OPENAI_TOOL_CHOICE",),
    "tools": ("OPENAI_DEFAULT_TOOLS_JSON", "OPENAI_DEFAULT_MCP_JSON"),
    "max_output_tokens": ("OPENAI_MAX_OUTPUT_TOKENS",),
}


def _env_name_for(exc: SessionConfigError, env: Mapping[str, str]) -> str:
    for prefix, names in _FIELD_TO_ENV.items():
        if not exc.field.startswith(prefix):
            continue
        if prefix.endswith(".format") and ("Hz only" in str(exc) or "only rate" in str(exc)):
            names = names[::-1]  # a rate the format does not support: the SAMPLE_RATE variable
        if prefix == "tools" and (m := re.match(r"tools\[(\d+)\]", exc.field)):
            n_functions = len(ep.json_value(env, "OPENAI_DEFAULT_TOOLS_JSON") or [])
            if int(m.group(1)) >= n_functions:  # MCP tools are appended after function tools
                names = names[::-1]
        return next((n for n in names if ep.text(env, n)), names[0])
    return "OPENAI_* session variables"


def _webhook_secret(env: Mapping[str, str]) -> Secret:
    """OPENAI_WEBHOOK_SECRET (whsec_...), checked now so a bad one fails at start-up."""
    value = ep.text(env, "OPENAI_WEBHOOK_SECRET")
    if value:
        from .store.webhook import signing_key

        try:
            signing_key(value)
        except ValueError as exc:
            raise SettingsError("OPENAI_WEBHOOK_SECRET", str(exc)) from None
    return Secret(value)


def load_env(*paths: str | None) -> dict[str, str]:
    """The process environment over the .env files, later files winning.

    Default files: `.env`, then `relay/.env`. A real environment variable always wins.
    """
    values: dict[str, str] = {}
    for path in paths or (".env", "relay/.env"):
        if path:
            values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    values.update(os.environ)
    return values


def from_env(env: Mapping[str, str]) -> Settings:
    """Build settings; a bad value raises SettingsError naming the variable."""
    try:
        session = build_session(env=session_env_layer(env))
    except SessionConfigError as exc:
        raise SettingsError(_env_name_for(exc, env), str(exc)) from None
    for side in ("input", "output"):
        fmt = session["audio"][side]["format"]["type"]
        if fmt != "audio/pcmu":
            raise SettingsError(
                f"OPENAI_AUDIO_{side.upper()}_FORMAT_TYPE",
                "Twilio streams G.711 mu-law and the relay never transcodes; "
                f"use audio/pcmu, not {fmt}",
            )
    redis_url = ep.url(env, "REDIS_URL", schemes=("redis", "rediss"))
    workers = ep.integer(env, "RELAY_WORKERS", 1, 1, 64)
    if workers > 1 and not redis_url:
        raise SettingsError(
            "RELAY_WORKERS",
            f"{workers} workers need REDIS_URL: stream tokens, the console feed and command "
            "routing are shared through Redis (set REDIS_URL, or RELAY_WORKERS=1)",
        )
    log_format = ep.text(env, "LOG_FORMAT", "text").lower()
    if log_format not in ("text", "json"):
        raise SettingsError("LOG_FORMAT", f"expected text or json, got {log_format!r}")
    return Settings(
        openai_api_key=Secret(ep.text(env, "OPENAI_API_KEY")),
        realtime_url=ep.url(env, "OPENAI_REALTIME_URL", DEFAULT_REALTIME_URL, ("ws", "wss")),
        api_base=ep.url(env, "OPENAI_API_BASE", DEFAULT_API_BASE, ("http", "https")).rstrip("/"),
        openai_webhook_secret=_webhook_secret(env),
        public_url=ep.url(env, "PUBLIC_URL"),
        host=ep.text(env, "RELAY_HOST", "0.0.0.0"),
        port=ep.integer(env, "PORT", 8081, 1, 65535),
        console_token=Secret(ep.text(env, "RELAY_CONSOLE_TOKEN")),
        console_origin=ep.url(env, "CONSOLE_ORIGIN"),
        twilio_account_sid=ep.text(env, "TWILIO_ACCOUNT_SID"),
        twilio_auth_token=Secret(ep.text(env, "TWILIO_AUTH_TOKEN")),
        twilio_api_base=ep.url(env, "TWILIO_API_BASE"),
        session=session,
        greeting=ep.text(env, "RELAY_GREETING"),
        dtmf_format=ep.text(env, "RELAY_DTMF_FORMAT", "The caller pressed the {digit} key."),
        transfer_number=ep.text(env, "RELAY_TRANSFER_NUMBER"),
        prewarm=ep.boolean(env, "RELAY_PREWARM", True),
        prewarm_timeout_s=ep.number(env, "RELAY_PREWARM_TIMEOUT_S", 30.0, 1.0),
        prewarm_max=ep.integer(env, "RELAY_PREWARM_MAX", 50, 0),
        tool_timeout_s=ep.number(env, "RELAY_TOOL_TIMEOUT_S", 10.0, 0.1),
        console_tool_timeout_s=ep.number(env, "RELAY_CONSOLE_TOOL_TIMEOUT_S", 30.0, 0.1),
        max_calls=ep.integer(env, "RELAY_MAX_CALLS", 200, 1),
        max_frame_bytes=ep.integer(env, "RELAY_MAX_FRAME_BYTES", 64 * 1024, 1024),
        drain_seconds=ep.number(env, "RELAY_DRAIN_SECONDS", 30.0),
        early_audio_ms=ep.integer(env, "RELAY_EARLY_AUDIO_MS", 10_000, 0),
        reconnect_give_up_s=ep.number(env, "RELAY_RECONNECT_GIVE_UP_S", 20.0, 1.0),
        rollover_margin_s=ep.number(env, "RELAY_ROLLOVER_MARGIN_S", 300.0),
        apology=ep.text(env, "RELAY_APOLOGY", Settings.apology),
        busy_message=ep.text(env, "RELAY_BUSY_MESSAGE", Settings.busy_message),
        console_rate_per_s=ep.number(env, "RELAY_CONSOLE_RATE_PER_S", 20.0, 0.1),
        log_level=ep.text(env, "LOG_LEVEL", "INFO").upper(),
        log_format=log_format,
        store=store_settings.from_env(env),
        redis_url=Secret(redis_url),
        workers=workers,
        instance_id=ep.text(env, "RELAY_INSTANCE_ID"),
    )
