"""Config form <-> GA session, and tool validation."""

from __future__ import annotations

import json

import pytest

from console.config_form import (
    ConfigForm,
    FormError,
    from_session,
    plain_session_error,
    to_session,
)
from console.tools import ToolError, entry, parse_tool, session_tools, templates
from shared.session import DEFAULT_SESSION


def test_default_session_round_trips() -> None:
    form = from_session(DEFAULT_SESSION)
    assert (form.voice, form.turn_detection, form.eagerness) == ("marin", "semantic_vad", "auto")
    session = to_session(form)
    assert session["type"] == "realtime"
    assert session["audio"]["output"]["voice"] == "marin"
    assert from_session(session) == form


def test_every_field_reaches_the_ga_session() -> None:
    form = ConfigForm(
        model="gpt-realtime",
        instructions="Be brief.",
        voice="cedar",
        speed="1.2",
        output_modality="audio",
        turn_detection="server_vad",
        threshold="0.6",
        prefix_padding_ms="200",
        silence_duration_ms="700",
        idle_timeout_ms="6000",
        create_response=False,
        interrupt_response=False,
        noise_reduction="near_field",
        transcription_model="gpt-4o-mini-transcribe",
        transcription_language="fr",
        tool_choice="required",
        max_output_tokens="512",
    )
    s = to_session(form, tools=[])
    assert s["audio"]["input"]["turn_detection"] == {
        "type": "server_vad",
        "threshold": 0.6,
        "prefix_padding_ms": 200,
        "silence_duration_ms": 700,
        "idle_timeout_ms": 6000,
        "create_response": False,
        "interrupt_response": False,
    }
    assert s["audio"]["input"]["noise_reduction"] == {"type": "near_field"}
    assert s["audio"]["input"]["transcription"] == {
        "model": "gpt-4o-mini-transcribe",
        "language": "fr",
    }
    assert s["audio"]["output"] == {"voice": "cedar", "speed": 1.2}
    assert (s["tool_choice"], s["max_output_tokens"], s["tools"]) == ("required", 512, [])
    assert from_session(s) == form


def test_no_turn_detection_is_null() -> None:
    s = to_session(ConfigForm(turn_detection="none"))
    assert s["audio"]["input"]["turn_detection"] is None
    assert from_session(s).turn_detection == "none"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"speed": "fast"}, "Speed must be a number (not 'fast')."),
        ({"speed": "3"}, "Speed must be between 0.25 and 1.5."),
        ({"voice": "robot"}, "Voice: unknown voice 'robot'; allowed: alloy"),
        ({"turn_detection": "server_vad", "threshold": "2"}, "Threshold must be between 0 and 1."),
        ({"turn_detection": "server_vad", "silence_duration_ms": "-1"}, "Silence must be 0 ms"),
        ({"max_output_tokens": "lots"}, "Max output tokens must be a whole number"),
        ({"max_output_tokens": "9000"}, "from 1 to 4096, or inf."),
    ],
)
def test_bad_form_values_say_what_is_wrong_in_plain_words(
    change: dict[str, str], message: str
) -> None:
    form = ConfigForm(**change)  # type: ignore[arg-type]
    with pytest.raises(FormError) as err:
        to_session(form)
    assert message in str(err.value)
    assert "`" not in str(err.value) and "audio." not in str(err.value)


def test_the_relays_refusal_in_plain_words() -> None:
    assert (
        plain_session_error("audio.output.speed: Expected `float` <= 1.5")
        == "Speed must be between 0.25 and 1.5."
    )
    assert plain_session_error("instructions: Expected `str`, got `int`") == (
        "Instructions: expected text, got int."
    )
    assert plain_session_error("no live call") == "no live call"


def test_beta_session_fills_the_form() -> None:
    form = from_session(
        {"voice": "ash", "turn_detection": {"type": "server_vad", "threshold": 0.4}}
    )
    assert (form.voice, form.turn_detection, form.threshold) == ("ash", "server_vad", "0.4")


FUNCTION = {
    "type": "function",
    "name": "lookup_order",
    "description": "d",
    "parameters": {"type": "object", "properties": {"n": {"type": "string"}}},
}


def test_function_tool_accepted_and_chat_shape_unwrapped() -> None:
    assert parse_tool(json.dumps(FUNCTION)) == FUNCTION
    chat = {"type": "function", "function": {k: v for k, v in FUNCTION.items() if k != "type"}}
    assert parse_tool(json.dumps(chat)) == FUNCTION


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"type": "function", "name": "has space"}', "name"),
        (
            '{"type": "function", "name": "f", "parameters": {"type": "objekt"}}',
            "not a valid JSON schema",
        ),
        (
            '{"type": "function", "name": "f", "parameters": {"type": "object", '
            '"properties": {"a": {"type": 5}}}}',
            "properties/a/type",
        ),
        ('{"type": "function", "name": "f", "parameters": {"type": "string"}}', "top level"),
        ('{"type": "mcp", "server_label": "crm"}', "exactly one of server_url"),
        (
            '{"type": "mcp", "server_label": "crm", "server_url": "https://m", '
            '"require_approval": "sometimes"}',
            "require_approval",
        ),
        ('{"type": "code"}', '"function" or "mcp"'),
    ],
)
def test_bad_tools_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        parse_tool(text)


def test_mcp_in_ga_shape() -> None:
    mcp = {
        "type": "mcp",
        "server_label": "crm",
        "server_url": "https://mcp.example.com/mcp",
        "allowed_tools": ["lookup_customer"],
        "require_approval": "never",
        "headers": {"X-Api-Key": "k"},
    }
    assert parse_tool(json.dumps(mcp)) == mcp


def test_templates_mark_backend_tools_and_disabled_tools_are_left_out() -> None:
    backend = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    tpl = templates(backend)
    assert tpl["get_weather (backend)"][1] is True
    for text, _ in tpl.values():
        parse_tool(text)  # every template is valid
    entries = [entry(FUNCTION), entry(backend[0], backend=True, enabled=False)]
    assert session_tools(entries) == [FUNCTION]


@pytest.mark.parametrize(
    ("scope", "call_sid", "greeting"),
    [("call", "CA1", None), ("default", None, "Hello, thanks for calling!"), ("both", "CA1", "")],
)
def test_greeting_is_saved_for_new_calls_only(
    scope: str, call_sid: str | None, greeting: str | None
) -> None:
    from console.config_form import session_command
    from shared.console_protocol import SessionUpdateCommand, decode_command

    session = to_session(ConfigForm())
    cmd = session_command(
        session, call_sid, scope, "  Hello, thanks for calling!  " if greeting else ""
    )
    assert cmd.get("greeting") == greeting
    assert "greeting" in cmd or scope == "call"
    typed = decode_command(json.dumps(cmd))  # the relay's own validation accepts it
    assert isinstance(typed, SessionUpdateCommand) and typed.scope == scope


def test_the_relays_greeting_fills_the_form() -> None:
    assert from_session(DEFAULT_SESSION, greeting="Hi there").greeting == "Hi there"


def test_add_tool_starts_from_an_unused_name_and_saving_never_overwrites() -> None:
    from console.tools import blank_tool, name_clash

    first = json.loads(blank_tool(set()))
    assert first["name"] == "my_tool" and parse_tool(blank_tool(set()))
    assert json.loads(blank_tool({"my_tool", "my_tool_2"}))["name"] == "my_tool_3"
    keys = ["get_weather_from_coords", "lookup_order"]
    assert "already exists" in name_clash("lookup_order", keys, editing=-1)  # a new tool
    assert name_clash("lookup_order", keys, editing=1) == ""  # saving itself
    assert "already exists" in name_clash("lookup_order", keys, editing=0)  # a rename onto it
    assert name_clash("new_one", keys, editing=-1) == ""
