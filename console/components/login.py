# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
from __future__ import annotations

import reflex as rx

from console.state.auth import AuthState


def login_page() -> rx.Component:
    return rx.center(
        rx.card(
            rx.form(
                rx.vstack(
                    rx.heading("Phone relay console", size="5"),
                    rx.text(
                        "This console can place calls on your Twilio account.",
                        size="2",
                        color_scheme="gray",
                    ),
                    rx.input(
                        name="password",
                        type="password",
                        placeholder="Console password",
                        id="password",
                        width="100%",
                        auto_focus=True,
                    ),
                    rx.button(
                        "Log in",
                        type="submit",
                        width="100%",
                        loading=AuthState.login_busy,
                        disabled=AuthState.login_busy,
                        id="login",
                    ),
                    rx.cond(
                        AuthState.login_wait != "",
                        rx.callout(
                            AuthState.login_wait, color_scheme="amber", size="1", id="login-wait"
                        ),
                    ),
                    rx.cond(
                        AuthState.login_error != "",
                        rx.callout(
                            AuthState.login_error, color_scheme="red", size="1", id="login-error"
                        ),
                    ),
                    rx.cond(
                        ~AuthState.password_configured,
                        rx.text(
                            "CONSOLE_PASSWORD is not set: the console stays locked.",
                            size="1",
                            color_scheme="red",
                        ),
                    ),
                    spacing="3",
                    width="min(320px, 80vw)",
                ),
                on_submit=AuthState.login,
                reset_on_submit=True,
            ),
        ),
        height="100vh",
    )
