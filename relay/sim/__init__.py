"""The simulator: a Realtime-compatible fake model and a Twilio-like caller."""

from .script import ModelScript, Pacing, Reply, ScriptItem, ToolCall

__all__ = ["ModelScript", "Pacing", "Reply", "ScriptItem", "ToolCall"]
