"""The session configuration form: apply to the live call, save as default, or both."""

from __future__ import annotations

from typing import Any

import reflex as rx

from console.config_form import (
    ConfigForm,
    FormError,
    from_session,
    session_command,
    to_session,
)
from console.messages import applied, command_failed
from console.state.auth import AuthState

_BOOLS = ("create_response", "interrupt_response")


def _to_strings(form: ConfigForm) -> dict[str, str]:
    return {
        k: ("1" if v is True else "" if v is False else str(v)) for k, v in form.as_dict().items()
    }


def _from_strings(values: dict[str, str]) -> ConfigForm:
    data: dict[str, Any] = dict(values)
    for key in _BOOLS:
        data[key] = bool(values.get(key))
    return ConfigForm.from_dict(data)


class ConfigState(AuthState):
    form: dict[str, str] = _to_strings(ConfigForm())
    pristine: bool = True
    # One status line, replaced (never added to): what happened to the last Apply / Save.
    status: str = "Not sent yet: new calls use the relay's default, shown here."
    status_kind: str = "info"  # info | pending | ok | error
    sent_scope: str = ""  # the scope of the session.update awaiting the relay's answer
    sent_call: str = ""  # and the call it went to: the status names it, calls come and go

    def _say(self, kind: str, text: str) -> None:
        self.status_kind, self.status = kind, text

    def load_default(self, session: dict[str, Any], greeting: str, only_if_pristine: bool) -> None:
        """Show the relay's default session and greeting (unless the user is editing)."""
        if only_if_pristine and not self.pristine:
            return
        try:
            self.form = _to_strings(from_session(session, greeting=greeting))
        except ValueError:
            return  # a default we cannot show keeps the current form

    def settled(self, ok: bool, message: str) -> None:
        """The relay's answer to the session.update this panel sent."""
        if ok:
            self._say("ok", applied(self.sent_scope, self.sent_call))
        else:
            self._say("error", command_failed("session.update", message))
        self.sent_scope = ""

    @rx.event
    def set_field(self, name: str, value: str | bool) -> None:
        if name not in self.form:
            return
        self.form = {
            **self.form,
            name: ("1" if value is True else "" if value is False else str(value)),
        }
        self.pristine = False

    @rx.event
    async def apply(self, scope: str) -> None:
        if not self.authed() or scope not in ("call", "default", "both"):
            return
        from console.state.feed import FeedState, send_command
        from console.state.tools import ToolsState

        feed = await self.get_state(FeedState)
        tools = await self.get_state(ToolsState)
        call_sid = feed.selected if feed.selected_live else None
        if scope in ("call", "both") and call_sid is None:
            self._say("error", "No live call is selected: pick one, or Save as default.")
            return
        try:
            session = to_session(_from_strings(self.form), tools.session_tools())
        except FormError as exc:
            self._say("error", str(exc))
            return
        why = await send_command(
            self.router.session.client_token,
            session_command(session, call_sid, scope, self.form.get("greeting", "")),
        )
        if why:
            self._say("error", f"Not sent: {why}")
            return
        self.sent_scope, self.sent_call = scope, call_sid or ""
        where = {"call": "the live call", "default": "the relay", "both": "the call and the relay"}
        self._say("pending", f"Sent to {where[scope]}; waiting for its answer…")

    @rx.event
    async def say_greeting(self) -> None:
        if not self.authed():
            return
        from console.state.feed import FeedState, send_command

        feed = await self.get_state(FeedState)
        text = self.form.get("greeting", "").strip()
        if not feed.selected_live or not text:
            self._say("error", "Select a live call and type a greeting first.")
            return
        why = await send_command(
            self.router.session.client_token,
            {
                "type": "response.create",
                "call_sid": feed.selected,
                "response": {"instructions": f"Say exactly: {text}"},
            },
        )
        if why:
            self._say("error", f"Not sent: {why}")
        else:
            self._say("ok", "The assistant says the greeting now.")
