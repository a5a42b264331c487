"""Relay settings from the environment: defaults, OPENAI_* session variables, refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from relay import settings as rs
from relay.settings import DEFAULT_REALTIME_URL, from_env, load_env
from shared.envparse import SettingsError

API_KEY = "sk-proj-Q3k9xV2mT7pL0wR8nB4cZ1yH6fJ5sD3aG9eK2uX7vN0qW4tY8iO1pM6rE5lC3bA"
AUTH_TOKEN = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
CONSOLE_TOKEN = "rct_hV7nQ2pX9mL4kW8sT1zR6yB3cF0dJ5g"


def _in(settings: rs.Settings) -> dict[str, Any]:
    result: dict[str, Any] = settings.session["audio"]["input"]
    return result


def _out(settings: rs.Settings) -> dict[str, Any]:
    result: dict[str, Any] = settings.session["audio"]["output"]
    return result


def _refused(env: dict[str, str]) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        from_env(env)
    message = str(info.value)
    assert "\n" not in message, "a start-up error is one line"
    assert message.startswith(f"{info.value.name}: ")
    return info.value


# --- defaults ----------------------------------------------------------------------------


def test_defaults() -> None:
    s = from_env({})
    assert s.port == 8081
    assert s.host == "0.0.0.0"
    assert s.model == "gpt-realtime"
    assert s.session["model"] == "gpt-realtime"
    assert s.realtime_url == DEFAULT_REALTIME_URL == "wss://api.openai.com/v1/realtime"
    assert s.public_url == ""
    assert s.log_format == "text"
    assert s.log_level == "INFO"
    assert s.simulator, "no API key means the built-in simulated model"
    assert not s.twilio_rest_enabled
    assert _in(s)["format"] == {"type": "audio/pcmu"}
    assert _out(s)["format"] == {"type": "audio/pcmu"}
    assert s.session["type"] == "realtime"


def test_blank_values_count_as_unset() -> None:
    s = from_env({"PORT": "  ", "OPENAI_DEFAULT_VOICE": "", "LOG_FORMAT": ""})
    assert s.port == 8081
    assert _out(s)["voice"] == "marin"
    assert s.log_format == "text"


def test_plain_settings() -> None:
    s = from_env(
        {
            "OPENAI_API_KEY": API_KEY,
            "PORT": "9000",
            "RELAY_HOST": "127.0.0.1",
            "PUBLIC_URL": "https://relay.example.com/",
            "OPENAI_REALTIME_URL": "ws://127.0.0.1:9999/v1/realtime",
            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "LOG_FORMAT": "JSON",
            "LOG_LEVEL": "debug",
            "RELAY_PREWARM": "off",
            "RELAY_MAX_CALLS": "5",
        }
    )
    assert s.port == 9000
    assert s.host == "127.0.0.1"
    assert s.public_url == "https://relay.example.com"  # trailing slash trimmed
    assert s.realtime_url == "ws://127.0.0.1:9999/v1/realtime"
    assert not s.simulator
    assert s.openai_api_key.get() == API_KEY
    assert s.twilio_rest_enabled
    assert s.log_format == "json"
    assert s.log_level == "DEBUG"
    assert s.prewarm is False
    assert s.max_calls == 5


# --- each OPENAI_* variable lands in the session ----------------------------------------


def test_model_and_instructions() -> None:
    s = from_env(
        {"OPENAI_REALTIME_MODEL": "gpt-realtime-mini", "OPENAI_SESSION_INSTRUCTIONS": "Be brief."}
    )
    assert s.session["model"] == "gpt-realtime-mini"
    assert s.model == "gpt-realtime-mini"
    assert s.session["instructions"] == "Be brief."


def test_voice() -> None:
    assert _out(from_env({"OPENAI_DEFAULT_VOICE": "cedar"}))["voice"] == "cedar"


@pytest.mark.parametrize("fmt", ["audio/pcmu", "g711_ulaw", "pcmu", "mulaw"])
def test_audio_format_spellings_of_mulaw(fmt: str) -> None:
    s = from_env({"OPENAI_AUDIO_INPUT_FORMAT_TYPE": fmt, "OPENAI_AUDIO_OUTPUT_FORMAT_TYPE": fmt})
    assert _in(s)["format"] == {"type": "audio/pcmu"}
    assert _out(s)["format"] == {"type": "audio/pcmu"}


def test_sample_rate_8000_is_accepted_and_not_sent() -> None:
    s = from_env(
        {"OPENAI_AUDIO_INPUT_SAMPLE_RATE": "8000", "OPENAI_AUDIO_OUTPUT_SAMPLE_RATE": "8000"}
    )
    assert _in(s)["format"] == {"type": "audio/pcmu"}
    assert _out(s)["format"] == {"type": "audio/pcmu"}


@pytest.mark.parametrize("value", ["near_field", "far_field"])
def test_noise_reduction(value: str) -> None:
    s = from_env({"OPENAI_AUDIO_INPUT_NOISE_REDUCTION": value})
    assert _in(s)["noise_reduction"] == {"type": value}


def test_noise_reduction_none() -> None:
    assert _in(from_env({"OPENAI_AUDIO_INPUT_NOISE_REDUCTION": "none"}))["noise_reduction"] is None


def test_turn_detection_json() -> None:
    td = {"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 700}
    s = from_env({"OPENAI_TURN_DETECTION_JSON": json.dumps(td)})
    assert _in(s)["turn_detection"] == td


def test_turn_detection_json_beta_none() -> None:
    s = from_env({"OPENAI_TURN_DETECTION_JSON": '{"type":"none"}'})
    assert _in(s)["turn_detection"] is None


def test_turn_detection_eagerness() -> None:
    s = from_env({"OPENAI_TURN_DETECTION_EAGERNESS": "high"})
    assert _in(s)["turn_detection"]["type"] == "semantic_vad"
    assert _in(s)["turn_detection"]["eagerness"] == "high"


def test_eagerness_overrides_the_json() -> None:
    s = from_env(
        {
            "OPENAI_TURN_DETECTION_JSON": '{"type":"semantic_vad","eagerness":"low"}',
            "OPENAI_TURN_DETECTION_EAGERNESS": "medium",
        }
    )
    td = _in(s)["turn_detection"]
    assert (td["type"], td["eagerness"]) == ("semantic_vad", "medium")


def test_transcription() -> None:
    s = from_env(
        {
            "OPENAI_TRANSCRIPTION_MODEL": "gpt-4o-mini-transcribe",
            "OPENAI_TRANSCRIPTION_LANGUAGE": "fr",
        }
    )
    assert _in(s)["transcription"] == {"model": "gpt-4o-mini-transcribe", "language": "fr"}


def test_tool_choice() -> None:
    assert from_env({"OPENAI_TOOL_CHOICE": "required"}).session["tool_choice"] == "required"


@pytest.mark.parametrize(("raw", "value"), [("inf", "inf"), ("1024", 1024)])
def test_max_output_tokens(raw: str, value: Any) -> None:
    assert from_env({"OPENAI_MAX_OUTPUT_TOKENS": raw}).session["max_output_tokens"] == value


def test_default_tools_and_mcp() -> None:
    tools = [{"name": "lookup", "description": "Find a customer", "parameters": {"type": "object"}}]
    mcp = [{"server_label": "crm", "server_url": "https://mcp.example.com/mcp"}]
    s = from_env(
        {"OPENAI_DEFAULT_TOOLS_JSON": json.dumps(tools), "OPENAI_DEFAULT_MCP_JSON": json.dumps(mcp)}
    )
    assert s.session["tools"] == [
        {"type": "function", **tools[0]},
        {"type": "mcp", **mcp[0]},
    ]


def test_session_env_names_are_all_read() -> None:
    # Every documented session variable changes the built session.
    env = {
        "OPENAI_REALTIME_MODEL": "gpt-realtime-2025-08-28",
        "OPENAI_SESSION_INSTRUCTIONS": "x",
        "OPENAI_DEFAULT_VOICE": "ash",
        "OPENAI_AUDIO_INPUT_FORMAT_TYPE": "g711_ulaw",
        "OPENAI_AUDIO_OUTPUT_FORMAT_TYPE": "g711_ulaw",
        "OPENAI_AUDIO_INPUT_SAMPLE_RATE": "8000",
        "OPENAI_AUDIO_OUTPUT_SAMPLE_RATE": "8000",
        "OPENAI_AUDIO_INPUT_NOISE_REDUCTION": "far_field",
        "OPENAI_TURN_DETECTION_JSON": '{"type":"server_vad"}',
        "OPENAI_TURN_DETECTION_EAGERNESS": "",
        "OPENAI_TOOL_CHOICE": "none",
        "OPENAI_DEFAULT_TOOLS_JSON": '[{"name":"f"}]',
        "OPENAI_DEFAULT_MCP_JSON": '[{"server_label":"m","connector_id":"connector_gmail"}]',
        "OPENAI_TRANSCRIPTION_MODEL": "whisper-1",
        "OPENAI_TRANSCRIPTION_LANGUAGE": "de",
        "OPENAI_MAX_OUTPUT_TOKENS": "200",
    }
    assert set(env) == set(rs._SESSION_ENV)
    s = from_env(env).session
    assert s == {
        "type": "realtime",
        "model": "gpt-realtime-2025-08-28",
        "instructions": "x",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcmu"},
                "turn_detection": {"type": "server_vad"},
                "noise_reduction": {"type": "far_field"},
                "transcription": {"model": "whisper-1", "language": "de"},
            },
            "output": {"format": {"type": "audio/pcmu"}, "voice": "ash"},
        },
        "tool_choice": "none",
        "tools": [
            {"type": "function", "name": "f"},
            {"type": "mcp", "server_label": "m", "connector_id": "connector_gmail"},
        ],
        "max_output_tokens": 200,
    }


# --- refusals: one line naming the variable ------------------------------------------


@pytest.mark.parametrize("bad", ["{bad", '{"type": "server_vad",}', "server_vad"])
def test_malformed_turn_detection_json(bad: str) -> None:
    err = _refused({"OPENAI_TURN_DETECTION_JSON": bad})
    assert err.name == "OPENAI_TURN_DETECTION_JSON"
    assert "JSON" in str(err)


def test_turn_detection_json_must_be_an_object() -> None:
    assert _refused({"OPENAI_TURN_DETECTION_JSON": "[1]"}).name == "OPENAI_TURN_DETECTION_JSON"


def test_bad_turn_detection_in_json() -> None:
    err = _refused({"OPENAI_TURN_DETECTION_JSON": '{"type":"semantic_vad","eagerness":"fast"}'})
    assert err.name == "OPENAI_TURN_DETECTION_JSON"
    assert "low, medium, high, auto" in str(err)


def test_bad_eagerness_names_the_eagerness_variable() -> None:
    err = _refused({"OPENAI_TURN_DETECTION_EAGERNESS": "fast"})
    assert err.name == "OPENAI_TURN_DETECTION_EAGERNESS"
    assert "low, medium, high, auto" in str(err)


def test_unknown_voice() -> None:
    err = _refused({"OPENAI_DEFAULT_VOICE": "bob"})
    assert err.name == "OPENAI_DEFAULT_VOICE"
    assert "'bob'" in str(err)
    assert "marin" in str(err)


@pytest.mark.parametrize("url", ["relay.example.com", "ftp://relay.example.com", "https://"])
def test_non_url_public_url(url: str) -> None:
    err = _refused({"PUBLIC_URL": url})
    assert err.name == "PUBLIC_URL"
    assert "https://" in str(err)


def test_realtime_url_must_be_a_websocket_url() -> None:
    err = _refused({"OPENAI_REALTIME_URL": "https://api.openai.com/v1/realtime"})
    assert err.name == "OPENAI_REALTIME_URL"
    assert "wss://" in str(err)


@pytest.mark.parametrize("port", ["eighty", "80.5", "0x50"])
def test_non_integer_port(port: str) -> None:
    err = _refused({"PORT": port})
    assert err.name == "PORT"
    assert repr(port) in str(err)


@pytest.mark.parametrize("port", ["0", "70000"])
def test_port_out_of_range(port: str) -> None:
    assert _refused({"PORT": port}).name == "PORT"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("OPENAI_AUDIO_INPUT_FORMAT_TYPE", "pcm16"),
        ("OPENAI_AUDIO_INPUT_FORMAT_TYPE", "audio/pcm"),
        ("OPENAI_AUDIO_OUTPUT_FORMAT_TYPE", "g711_alaw"),
        ("OPENAI_AUDIO_OUTPUT_FORMAT_TYPE", "audio/pcma"),
    ],
)
def test_non_pcmu_audio_format(var: str, value: str) -> None:
    err = _refused({var: value})
    assert err.name == var
    assert "audio/pcmu" in str(err)


def test_unknown_audio_format() -> None:
    err = _refused({"OPENAI_AUDIO_OUTPUT_FORMAT_TYPE": "mp3"})
    assert err.name == "OPENAI_AUDIO_OUTPUT_FORMAT_TYPE"
    assert "g711_ulaw" in str(err)


def test_unsupported_sample_rate_names_the_rate_variable() -> None:
    err = _refused({"OPENAI_AUDIO_INPUT_SAMPLE_RATE": "16000"})
    assert err.name == "OPENAI_AUDIO_INPUT_SAMPLE_RATE"
    assert _refused({"OPENAI_AUDIO_OUTPUT_SAMPLE_RATE": "x"}).name == (
        "OPENAI_AUDIO_OUTPUT_SAMPLE_RATE"
    )


@pytest.mark.parametrize("fmt", ["xml", "yaml", "logfmt"])
def test_bad_log_format(fmt: str) -> None:
    err = _refused({"LOG_FORMAT": fmt})
    assert err.name == "LOG_FORMAT"
    assert "text or json" in str(err)


def test_bad_tool_choice() -> None:
    assert _refused({"OPENAI_TOOL_CHOICE": "sometimes"}).name == "OPENAI_TOOL_CHOICE"


@pytest.mark.parametrize("raw", ["lots", "0", "5000"])
def test_bad_max_output_tokens(raw: str) -> None:
    assert _refused({"OPENAI_MAX_OUTPUT_TOKENS": raw}).name == "OPENAI_MAX_OUTPUT_TOKENS"


def test_bad_tools_json() -> None:
    assert _refused({"OPENAI_DEFAULT_TOOLS_JSON": "[{"}).name == "OPENAI_DEFAULT_TOOLS_JSON"
    assert _refused({"OPENAI_DEFAULT_TOOLS_JSON": "{}"}).name == "OPENAI_DEFAULT_TOOLS_JSON"
    err = _refused({"OPENAI_DEFAULT_TOOLS_JSON": '[{"description":"no name"}]'})
    assert err.name == "OPENAI_DEFAULT_TOOLS_JSON"


def test_mcp_without_server_url_names_the_mcp_variable() -> None:
    err = _refused(
        {
            "OPENAI_DEFAULT_TOOLS_JSON": '[{"name":"lookup"}]',
            "OPENAI_DEFAULT_MCP_JSON": '[{"server_label":"crm"}]',
        }
    )
    assert err.name == "OPENAI_DEFAULT_MCP_JSON"
    assert "server_url" in str(err)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("RELAY_PREWARM", "maybe"),
        ("RELAY_MAX_CALLS", "0"),
        ("RELAY_TOOL_TIMEOUT_S", "soon"),
        ("CONSOLE_ORIGIN", "console.example.com"),
        ("TWILIO_API_BASE", "api.twilio.com"),
    ],
)
def test_other_bad_values_name_their_variable(var: str, value: str) -> None:
    assert _refused({var: value}).name == var


# --- secrets -------------------------------------------------------------------------


def test_secrets_never_show_in_repr_or_str() -> None:
    s = from_env(
        {
            "OPENAI_API_KEY": API_KEY,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "RELAY_CONSOLE_TOKEN": CONSOLE_TOKEN,
            "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
        }
    )
    shown = (
        repr(s) + str(s) + repr(s.openai_api_key) + str(s.console_token) + f"{s.twilio_auth_token}"
    )
    for secret in (API_KEY, AUTH_TOKEN, CONSOLE_TOKEN):
        assert secret not in shown
        assert secret[:12] not in shown  # not even a prefix
        assert secret[-8:] not in shown
    # ...yet the values are there for the code that needs them.
    assert s.openai_api_key.get() == API_KEY
    assert s.twilio_auth_token.get() == AUTH_TOKEN
    assert s.console_token.matches(CONSOLE_TOKEN)
    assert not s.console_token.matches(CONSOLE_TOKEN[:-1])


def test_secret_values_do_not_leak_through_errors() -> None:
    err = _refused({"OPENAI_API_KEY": API_KEY, "PORT": "x"})
    assert API_KEY not in str(err)


# --- .env ---------------------------------------------------------------------------


def test_load_env_reads_a_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAY_TEST_ONLY_VAR", raising=False)
    monkeypatch.delenv("OPENAI_DEFAULT_VOICE", raising=False)
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# comment\nRELAY_TEST_ONLY_VAR=from-file\nOPENAI_DEFAULT_VOICE=sage\nexport PORT_X=1\n"
    )
    env = load_env(str(dotenv))
    assert env["RELAY_TEST_ONLY_VAR"] == "from-file"
    assert _out(from_env(env))["voice"] == "sage"


def test_real_env_var_wins_over_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("OPENAI_DEFAULT_VOICE=sage\nPORT=9001\n")
    monkeypatch.setenv("OPENAI_DEFAULT_VOICE", "verse")
    monkeypatch.delenv("PORT", raising=False)
    env = load_env(str(dotenv))
    assert env["OPENAI_DEFAULT_VOICE"] == "verse"
    s = from_env(env)
    assert _out(s)["voice"] == "verse"
    assert s.port == 9001


def test_load_env_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_TEST_ONLY_VAR", "x")
    assert load_env(str(tmp_path / "missing.env"))["RELAY_TEST_ONLY_VAR"] == "x"
    assert load_env(None)["RELAY_TEST_ONLY_VAR"] == "x"


def test_one_process_with_no_redis_is_the_default() -> None:
    s = from_env({})
    assert (s.workers, s.shared, s.redis_url.get()) == (1, False, "")


def test_workers_need_redis_and_start_up_says_so() -> None:
    with pytest.raises(SettingsError) as exc:
        from_env({"RELAY_WORKERS": "2"})
    assert exc.value.name == "RELAY_WORKERS" and "REDIS_URL" in str(exc.value)
    s = from_env({"RELAY_WORKERS": "2", "REDIS_URL": "redis://:pw@cache:6379/1"})
    assert (s.workers, s.shared) == (2, True)
    with pytest.raises(SettingsError, match="REDIS_URL"):
        from_env({"REDIS_URL": "http://cache:6379"})
    with pytest.raises(SettingsError, match="RELAY_WORKERS"):
        from_env({"RELAY_WORKERS": "0"})
