"""Session config: beta -> GA normalisation, precedence and friendly validation errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import session as sc
from shared.session import SessionConfigError, build_session

BETA_KEYS = {
    "modalities",
    "input_audio_format",
    "output_audio_format",
    "voice",
    "speed",
    "turn_detection",
    "input_audio_transcription",
    "input_audio_noise_reduction",
    "max_response_output_tokens",
    "temperature",
    "client_secret",
}


def _keys(obj: Any, prefix: str = "") -> set[str]:
    """Every key path in a nested dict, e.g. {'audio.output.voice', 'voice'...}."""
    found: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            found.add(k)
            found |= _keys(v, f"{prefix}{k}.")
    elif isinstance(obj, list):
        for v in obj:
            found |= _keys(v, prefix)
    return found


def _top_level_beta(session: dict[str, Any]) -> set[str]:
    return BETA_KEYS & set(session)


def _out(session: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = session["audio"]["output"]
    return result


def _in(session: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = session["audio"]["input"]
    return result


# --- defaults and precedence -----------------------------------------------------------


def test_defaults_are_a_phone_ready_ga_session() -> None:
    s = build_session()
    assert s["type"] == "realtime"
    assert s["model"] == "gpt-realtime"
    assert s["output_modalities"] == ["audio"]
    assert _in(s)["format"] == {"type": "audio/pcmu"}
    assert _out(s)["format"] == {"type": "audio/pcmu"}
    assert _out(s)["voice"] == "marin"
    assert _in(s)["turn_detection"]["type"] == "semantic_vad"
    sc.validate(s)


def test_env_beats_defaults() -> None:
    s = build_session(env={"voice": "ash", "instructions": "Be brief."})
    assert _out(s)["voice"] == "ash"
    assert s["instructions"] == "Be brief."
    assert s["model"] == "gpt-realtime"  # untouched default survives


def test_console_override_beats_env_and_defaults() -> None:
    s = build_session(
        env={"voice": "ash", "instructions": "From env."},
        override={"audio": {"output": {"voice": "coral"}}},
    )
    assert _out(s)["voice"] == "coral"
    assert s["instructions"] == "From env."
    assert _out(s)["format"] == {"type": "audio/pcmu"}  # deep merge keeps siblings


def test_layers_may_mix_beta_and_ga_spellings() -> None:
    s = build_session(
        env={"audio": {"output": {"voice": "ash"}}},
        override={"voice": "verse"},
    )
    assert _out(s)["voice"] == "verse"


def test_override_can_switch_turn_detection_type_without_mixing_fields() -> None:
    s = build_session(override={"turn_detection": {"type": "server_vad", "threshold": 0.7}})
    assert _in(s)["turn_detection"] == {"type": "server_vad", "threshold": 0.7}


def test_override_can_turn_off_turn_detection() -> None:
    s = build_session(
        env={"turn_detection": {"type": "server_vad"}}, override={"turn_detection": None}
    )
    assert _in(s)["turn_detection"] is None


def test_same_type_turn_detection_merges_fields() -> None:
    s = build_session(override={"turn_detection": {"type": "semantic_vad", "eagerness": "low"}})
    assert _in(s)["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "low",
        "create_response": True,
        "interrupt_response": True,
    }


def test_build_session_does_not_mutate_its_inputs() -> None:
    env = {"voice": "ash", "input_audio_format": "g711_ulaw"}
    override = {"audio": {"input": {"turn_detection": "none"}}}
    before = (repr(env), repr(override), repr(sc.DEFAULT_SESSION))
    build_session(env=env, override=override)
    assert (repr(env), repr(override), repr(sc.DEFAULT_SESSION)) == before


# --- beta -> GA ---------------------------------------------------------------------


def test_full_beta_session_becomes_ga() -> None:
    beta = {
        "modalities": ["text", "audio"],
        "instructions": "Hi",
        "voice": "alloy",
        "speed": 1.2,
        "input_audio_format": "g711_ulaw",
        "output_audio_format": "g711_ulaw",
        "turn_detection": {"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 400},
        "input_audio_transcription": {"model": "whisper-1", "language": "en"},
        "input_audio_noise_reduction": {"type": "near_field"},
        "max_response_output_tokens": 1024,
        "temperature": 0.8,
        "tool_choice": "auto",
    }
    s = build_session(override=beta)
    assert not _top_level_beta(s)
    assert s["type"] == "realtime"
    assert s["output_modalities"] == ["audio"]
    assert s["max_output_tokens"] == 1024
    assert "temperature" not in _keys(s)
    assert _out(s) == {"format": {"type": "audio/pcmu"}, "voice": "alloy", "speed": 1.2}
    assert _in(s)["format"] == {"type": "audio/pcmu"}
    assert _in(s)["turn_detection"] == {
        "type": "server_vad",
        "threshold": 0.6,
        "silence_duration_ms": 400,
    }
    assert _in(s)["transcription"] == {"model": "whisper-1", "language": "en"}
    assert _in(s)["noise_reduction"] == {"type": "near_field"}


@pytest.mark.parametrize(
    ("beta", "ga_path", "value"),
    [
        ({"voice": "cedar"}, ("audio", "output", "voice"), "cedar"),
        ({"speed": 0.5}, ("audio", "output", "speed"), 0.5),
        ({"turn_detection": None}, ("audio", "input", "turn_detection"), None),
        (
            {"input_audio_transcription": {"model": "gpt-4o-mini-transcribe"}},
            ("audio", "input", "transcription"),
            {"model": "gpt-4o-mini-transcribe"},
        ),
        (
            {"input_audio_noise_reduction": {"type": "far_field"}},
            ("audio", "input", "noise_reduction"),
            {"type": "far_field"},
        ),
        ({"input_audio_noise_reduction": None}, ("audio", "input", "noise_reduction"), None),
        ({"input_audio_format": "g711_alaw"}, ("audio", "input", "format"), {"type": "audio/pcma"}),
        (
            {"output_audio_format": "pcm16"},
            ("audio", "output", "format"),
            {"type": "audio/pcm", "rate": 24000},
        ),
        ({"max_response_output_tokens": "inf"}, ("max_output_tokens",), "inf"),
        ({"max_response_output_tokens": 4096}, ("max_output_tokens",), 4096),
        ({"modalities": ["text"]}, ("output_modalities",), ["text"]),
        ({"modalities": ["audio", "text"]}, ("output_modalities",), ["audio"]),
    ],
)
def test_each_beta_field_moves_to_its_ga_place(
    beta: dict[str, Any], ga_path: tuple[str, ...], value: Any
) -> None:
    s = build_session(override=beta)
    node: Any = s
    for key in ga_path:
        node = node[key]
    assert node == value
    assert not _top_level_beta(s)


@pytest.mark.parametrize("dropped", ["temperature", "client_secret"])
def test_fields_removed_in_ga_are_dropped(dropped: str) -> None:
    s = build_session(override={dropped: 0.7 if dropped == "temperature" else {"value": "ek_1"}})
    assert dropped not in _keys(s)


@pytest.mark.parametrize("alias", ["g711_ulaw", "pcmu", "mulaw", "audio/pcmu", "G711_ULAW", "ulaw"])
def test_mulaw_aliases(alias: str) -> None:
    assert sc.normalize_format(alias, "f") == {"type": "audio/pcmu"}
    assert sc.normalize_format({"type": alias}, "f") == {"type": "audio/pcmu"}


@pytest.mark.parametrize("alias", ["g711_alaw", "pcma", "alaw", "audio/pcma"])
def test_alaw_aliases(alias: str) -> None:
    assert sc.normalize_format(alias, "f") == {"type": "audio/pcma"}


@pytest.mark.parametrize("alias", ["pcm16", "linear16", "audio/pcm", "pcm"])
def test_pcm_aliases_get_rate_24000(alias: str) -> None:
    assert sc.normalize_format(alias, "f") == {"type": "audio/pcm", "rate": 24000}
    assert sc.normalize_format({"type": alias, "rate": 24000}, "f") == {
        "type": "audio/pcm",
        "rate": 24000,
    }
    assert sc.normalize_format({"type": alias, "sample_rate": 24000}, "f") == {
        "type": "audio/pcm",
        "rate": 24000,
    }


def test_g711_never_carries_a_rate() -> None:
    assert sc.normalize_format({"type": "audio/pcmu", "rate": 8000}, "f") == {"type": "audio/pcmu"}
    s = build_session(override={"audio": {"output": {"format": {"type": "pcma", "rate": 8000}}}})
    assert _out(s)["format"] == {"type": "audio/pcma"}


def test_pcm_at_16000_is_refused() -> None:
    with pytest.raises(SessionConfigError, match="24000") as info:
        build_session(override={"input_audio_format": {"type": "pcm16", "rate": 16000}})
    assert info.value.field == "audio.input.format"


def test_g711_at_another_rate_is_refused() -> None:
    with pytest.raises(SessionConfigError, match="8000") as info:
        build_session(override={"audio": {"output": {"format": {"type": "pcmu", "rate": 16000}}}})
    assert info.value.field == "audio.output.format"


def test_typescript_sample_rate_field_is_folded_into_format() -> None:
    s = build_session(override={"audio": {"output": {"format": "pcm16", "sample_rate": 24000}}})
    assert _out(s)["format"] == {"type": "audio/pcm", "rate": 24000}
    assert "sample_rate" not in _keys(s)


@pytest.mark.parametrize("off", ["none", None, {"type": "none"}])
def test_turn_detection_none_means_null(off: Any) -> None:
    s = build_session(override={"turn_detection": off})
    assert _in(s)["turn_detection"] is None
    s = build_session(override={"audio": {"input": {"turn_detection": off}}})
    assert _in(s)["turn_detection"] is None


def test_string_shorthands_for_noise_reduction_and_transcription() -> None:
    s = build_session(
        override={
            "audio": {"input": {"noise_reduction": "far_field", "transcription": "whisper-1"}}
        }
    )
    assert _in(s)["noise_reduction"] == {"type": "far_field"}
    assert _in(s)["transcription"] == {"model": "whisper-1"}


def test_result_always_has_type_realtime_even_for_partial_updates() -> None:
    assert sc.check_update({"voice": "ash"}) == {
        "type": "realtime",
        "audio": {"output": {"voice": "ash"}},
    }


def test_partial_update_only_carries_what_changed() -> None:
    update = sc.check_update({"instructions": "", "tools": [], "turn_detection": "none"})
    assert update == {
        "type": "realtime",
        "instructions": "",
        "tools": [],
        "audio": {"input": {"turn_detection": None}},
    }


# --- refusals name the field and the allowed values ----------------------------------


def _refusal(override: dict[str, Any]) -> SessionConfigError:
    with pytest.raises(SessionConfigError) as info:
        build_session(override=override)
    assert "\n" not in str(info.value)
    return info.value


def test_bad_voice() -> None:
    err = _refusal({"voice": "bob"})
    assert err.field == "audio.output.voice"
    assert "'bob'" in str(err)
    for voice in sc.VOICES:
        assert voice in str(err)


def test_custom_voice_object_is_accepted_only_with_an_id() -> None:
    s = build_session(override={"voice": {"id": "voice_123"}})
    assert _out(s)["voice"] == {"id": "voice_123"}
    assert _refusal({"voice": {"name": "x"}}).field == "audio.output.voice"


def test_bad_eagerness() -> None:
    err = _refusal({"turn_detection": {"type": "semantic_vad", "eagerness": "fast"}})
    assert err.field == "audio.input.turn_detection.eagerness"
    assert "'fast'" in str(err)
    assert "low, medium, high, auto" in str(err)


def test_bad_turn_detection_type() -> None:
    err = _refusal({"turn_detection": {"type": "push_to_talk"}})
    assert err.field.startswith("audio.input.turn_detection")
    assert "server_vad" in str(err)
    assert "semantic_vad" in str(err)


def test_eagerness_on_server_vad_is_an_unknown_field() -> None:
    err = _refusal({"turn_detection": {"type": "server_vad", "eagerness": "low"}})
    assert err.field == "audio.input.turn_detection.eagerness"
    assert "unknown field" in str(err)


def test_bad_modality() -> None:
    err = _refusal({"output_modalities": ["video"]})
    assert err.field == "output_modalities"
    assert "'video'" in str(err)
    assert "audio, text" in str(err)


def test_bad_beta_modality_is_refused_not_guessed() -> None:
    err = _refusal({"modalities": ["video"]})
    assert err.field == "modalities"
    assert "audio, text" in str(err)


def test_both_output_modalities_are_refused() -> None:
    err = _refusal({"output_modalities": ["audio", "text"]})
    assert err.field == "output_modalities"


@pytest.mark.parametrize("fmt", ["mp3", "opus", "g722", ""])
def test_bad_format(fmt: str) -> None:
    err = _refusal({"input_audio_format": fmt})
    assert err.field == "audio.input.format"
    assert repr(fmt) in str(err)
    for alias in ("g711_ulaw", "audio/pcmu", "audio/pcma", "audio/pcm", "pcm16"):
        assert alias in str(err)


def test_bad_format_in_ga_object() -> None:
    err = _refusal({"audio": {"output": {"format": {"type": "audio/wav"}}}})
    assert err.field == "audio.output.format"


def test_unknown_field_in_a_format_object() -> None:
    err = _refusal({"audio": {"output": {"format": {"type": "pcmu", "bits": 8}}}})
    assert err.field == "audio.output.format.bits"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"foo": 1}, "foo"),
        ({"audio": {"input": {"vad": True}}}, "audio.input.vad"),
        ({"audio": {"output": {"volume": 3}}}, "audio.output.volume"),
        (
            {"turn_detection": {"type": "server_vad", "sensitivity": 2}},
            "audio.input.turn_detection.sensitivity",
        ),
    ],
)
def test_unknown_field(override: dict[str, Any], field: str) -> None:
    err = _refusal(override)
    assert err.field == field
    assert "unknown field" in str(err)


@pytest.mark.parametrize("speed", [0.1, 1.6, 3])
def test_speed_out_of_range(speed: float) -> None:
    err = _refusal({"speed": speed})
    assert err.field == "audio.output.speed"
    assert ("0.25" in str(err)) or ("1.5" in str(err))


@pytest.mark.parametrize("speed", [0.25, 1.0, 1.5])
def test_speed_limits_are_inclusive(speed: float) -> None:
    assert _out(build_session(override={"speed": speed}))["speed"] == speed


@pytest.mark.parametrize("tokens", [0, 4097, -1, "lots"])
def test_bad_max_output_tokens(tokens: Any) -> None:
    assert _refusal({"max_response_output_tokens": tokens}).field == "max_output_tokens"


def test_bad_tool_choice() -> None:
    err = _refusal({"tool_choice": "sometimes"})
    assert err.field == "tool_choice"
    assert "none, auto, required" in str(err)


@pytest.mark.parametrize(
    "choice", ["none", "auto", "required", {"type": "function", "name": "lookup"}]
)
def test_valid_tool_choices(choice: Any) -> None:
    assert build_session(override={"tool_choice": choice})["tool_choice"] == choice


def test_mcp_tool_without_server_url() -> None:
    err = _refusal({"tools": [{"type": "mcp", "server_label": "crm"}]})
    assert err.field == "tools[0]"
    assert "server_url" in str(err)


def test_mcp_tool_without_label() -> None:
    err = _refusal({"tools": [{"type": "mcp", "server_url": "https://mcp.example.com/mcp"}]})
    assert err.field == "tools[0].server_label"


def test_mcp_tool_with_server_url_is_kept() -> None:
    tool = {
        "type": "mcp",
        "server_label": "crm",
        "server_url": "https://mcp.example.com/mcp",
        "allowed_tools": ["lookup_customer"],
        "require_approval": "never",
    }
    assert build_session(override={"tools": [tool]})["tools"] == [tool]


def test_function_tool_checks() -> None:
    ok = {
        "type": "function",
        "name": "lookup",
        "description": "d",
        "parameters": {"type": "object"},
    }
    assert build_session(override={"tools": [ok]})["tools"] == [ok]
    assert _refusal({"tools": [ok, {"type": "function"}]}).field == "tools[1].name"
    assert _refusal({"tools": [{**ok, "strict": True}]}).field == "tools[0].strict"
    err = _refusal({"tools": [{"type": "web_search"}]})
    assert err.field == "tools[0].type"
    assert "function, mcp" in str(err)


def test_mcp_server_connections_is_refused_with_a_hint() -> None:
    err = _refusal({"mcp_server_connections": [{"url": "https://mcp.example.com"}]})
    assert err.field == "mcp_server_connections"
    assert "tools" in str(err)
    assert "server_url" in str(err)


def test_non_realtime_session_type_is_refused() -> None:
    err = _refusal({"type": "transcription"})
    assert err.field == "type"
    assert "realtime" in str(err)


def test_non_object_session_is_refused() -> None:
    with pytest.raises(SessionConfigError, match="session"):
        sc.normalize(["voice", "ash"])  # type: ignore[arg-type]


# --- property: any mix of beta fields builds a valid GA session -----------------------

_formats = st.sampled_from(sorted(sc.FORMAT_ALIASES))
_turn_detection = st.one_of(
    st.just("none"),
    st.none(),
    st.builds(
        lambda e, c, i: {
            "type": "semantic_vad",
            "eagerness": e,
            "create_response": c,
            "interrupt_response": i,
        },
        st.sampled_from(sc.EAGERNESS),
        st.booleans(),
        st.booleans(),
    ),
    st.builds(
        lambda t, p, s: {
            "type": "server_vad",
            "threshold": t,
            "prefix_padding_ms": p,
            "silence_duration_ms": s,
        },
        st.floats(0.0, 1.0),
        st.integers(0, 2000),
        st.integers(0, 2000),
    ),
)
_beta_fields = st.fixed_dictionaries(
    {},
    optional={
        "modalities": st.sampled_from([["audio"], ["text"], ["text", "audio"], ["audio", "text"]]),
        "voice": st.sampled_from(sc.VOICES),
        "speed": st.floats(0.25, 1.5),
        "input_audio_format": _formats,
        "output_audio_format": _formats,
        "turn_detection": _turn_detection,
        "input_audio_transcription": st.one_of(
            st.none(),
            st.builds(
                lambda m: {"model": m},
                st.sampled_from(["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"]),
            ),
        ),
        "input_audio_noise_reduction": st.one_of(
            st.none(), st.builds(lambda t: {"type": t}, st.sampled_from(sc.NOISE_REDUCTION))
        ),
        "max_response_output_tokens": st.one_of(st.just("inf"), st.integers(1, 4096)),
        "temperature": st.floats(0.6, 1.2),
        "instructions": st.text(max_size=40),
        "tool_choice": st.sampled_from(sc.TOOL_CHOICES),
    },
)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(env=_beta_fields, override=_beta_fields)
def test_any_beta_mix_builds_a_valid_ga_session(
    env: dict[str, Any], override: dict[str, Any]
) -> None:
    s = build_session(env=env, override=override)
    assert s["type"] == "realtime"
    assert not _top_level_beta(s)
    assert "temperature" not in _keys(s)
    assert "sample_rate" not in _keys(s)
    sc.validate(s)  # what we send is what the strict GA shape accepts
    for side in ("input", "output"):
        fmt = s["audio"][side]["format"]
        assert ("rate" in fmt) == (fmt["type"] == "audio/pcm")
    # The console override wins wherever it spoke.
    if "voice" in override:
        assert _out(s)["voice"] == override["voice"]
    if "max_response_output_tokens" in override:
        assert s["max_output_tokens"] == override["max_response_output_tokens"]


def test_later_g711_format_drops_the_pcm_rate_of_an_earlier_layer() -> None:
    s = build_session(env={"input_audio_format": "pcm16"}, override={"input_audio_format": "alaw"})
    assert _in(s)["format"] == {"type": "audio/pcma"}
