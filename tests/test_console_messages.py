"""What the console says about commands, problems and unavailable controls."""

from __future__ import annotations

from console.messages import applied, command_done, command_failed, relay_problem
from console.outbound import twilio_unavailable


def test_commands_are_reported_in_plain_words_not_wire_names() -> None:
    assert command_done("sim.call").startswith("Simulated call started")
    assert command_done("function_call.output").startswith("Answer sent")
    assert "sim.call" not in command_done("sim.call")
    assert command_failed("sim.call", "five simulated calls are already running") == (
        "Could not start a simulated call: five simulated calls are already running"
    )


def test_a_refused_session_says_which_field_and_why() -> None:
    text = command_failed("session.update", "audio.output.speed: Expected `float` <= 1.5")
    assert text == "The settings were not applied: Speed must be between 0.25 and 1.5."
    assert applied("default", "").startswith("Saved: new calls")
    assert applied("call", "CA0123456789abcdef") == "Call …abcdef now uses these settings."


def test_relay_problem_names_who() -> None:
    assert relay_problem("model", "quota") == "The model reported a problem: quota"
    assert relay_problem("relay", "x").startswith("The relay")


def test_twilio_controls_say_what_enables_them() -> None:
    sim = twilio_unavailable(twilio_configured=True, simulator=True)
    assert sim.startswith("Simulator mode") and "OPENAI_API_KEY" in sim
    unset = twilio_unavailable(twilio_configured=False, simulator=False)
    assert "TWILIO_ACCOUNT_SID" in unset
    assert twilio_unavailable(twilio_configured=True, simulator=False) == ""
