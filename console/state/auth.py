"""Login and logout. Every other state inherits `authed()` to guard its event handlers,
since any browser can send any event: the page hiding a button is not a check."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import reflex as rx
from reflex_base.event import EventSpec

from console import auth
from console import settings as console_settings


class AuthState(rx.State):
    session_token: str = rx.Cookie(
        "", name="console_session", max_age=auth.SESSION_SECONDS, same_site="strict"
    )
    login_error: str = ""
    login_wait: str = ""  # what the page says while a throttled attempt waits
    login_busy: bool = False

    def authed(self) -> bool:
        return auth.verify_token(console_settings.get().password, self.session_token)

    @rx.var
    def password_configured(self) -> bool:
        return bool(console_settings.get().password)

    @rx.event
    async def login(self, form: dict[str, str]) -> AsyncIterator[EventSpec | None]:
        password = console_settings.get().password
        delay = auth.throttle.delay(time.monotonic())
        self.login_busy, self.login_error = True, ""
        if delay:
            # Say so while waiting: a silent delay looks like a refusal.
            self.login_wait = auth.wait_message(delay)
            yield None
            await asyncio.sleep(delay)  # slows guessing; the compare itself is constant-time
        self.login_busy, self.login_wait = False, ""
        if auth.check_password(password, form.get("password", "")):
            auth.throttle.succeeded()
            self.session_token = auth.issue_token(password)
            yield rx.redirect("/")
            return
        auth.throttle.failed(time.monotonic())
        self.login_error = (
            "Wrong password."
            if password
            else "CONSOLE_PASSWORD is not set: set it in .env and restart the console."
        )

    @rx.event
    def logout(self) -> EventSpec:
        self.session_token = ""
        return rx.redirect("/login")

    @rx.event
    def require_login(self) -> EventSpec | None:
        return None if self.authed() else rx.redirect("/login")
