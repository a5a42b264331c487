"""What the console says about commands and problems, in plain words.

The relay answers each command with `command.ok` or `command.error` naming the command
("sim.call", "session.update"); people should read what happened, not the wire name.
"""

from __future__ import annotations

from console.config_form import plain_session_error

DONE = {
    "sim.call": "Simulated call started: it shows under Calls in a moment.",
    "call.end": "Hung up from the console.",
    "function_call.output": "Answer sent: the model reads it and answers the caller.",
    "response.create": "The assistant is speaking.",
    "response.cancel": "The assistant's answer was stopped.",
    "conversation.item.create": "Added to the conversation.",
    "input_audio_buffer.commit": "The caller's audio was sent to the model.",
    "session.update": "Settings applied.",
}
FAILED = {
    "sim.call": "Could not start a simulated call",
    "call.end": "Could not hang up",
    "function_call.output": "The answer was not sent",
    "response.create": "The assistant could not speak",
    "response.cancel": "Could not stop the answer",
    "session.update": "The settings were not applied",
}
APPLIED = {
    "call": "Call {call} now uses these settings.",
    "default": "Saved: new calls start with these settings.",
    "both": "Call {call} now uses these settings, and new calls start with them.",
}


def command_done(command: str) -> str:
    return DONE.get(command, "Done.")


def command_failed(command: str, message: str) -> str:
    what = FAILED.get(command, "The relay refused the request")
    why = plain_session_error(message) if command == "session.update" else message
    return f"{what}: {why}"


def relay_problem(source: str, message: str) -> str:
    """An error event that belongs to no call."""
    who = {"model": "The model", "twilio": "Twilio", "tool": "A tool"}.get(source, "The relay")
    return f"{who} reported a problem: {message}"


def applied(scope: str, call_sid: str) -> str:
    """The relay took a session.update: say where it applies (naming the call, since the
    selected call may change while the line is on screen)."""
    call = f"…{call_sid[-6:]}" if call_sid else "the live call"
    return APPLIED.get(scope, "Settings applied.").format(call=call)
