# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
"""Banners across the page: the console's own server gone, the relay offline, a new call."""

from __future__ import annotations

import reflex as rx
from reflex.components.core.banner import has_too_many_connection_errors

from console.state.feed import FeedState


def console_offline_overlay() -> rx.Component:
    """Replaces Reflex's "Cannot connect to server ... ws://…/_event" toast (app_wraps
    "Overlay"): say what is wrong and what to do, in the app's words."""
    return rx.cond(
        has_too_many_connection_errors,
        rx.callout(
            "Lost contact with the console's server: it may be restarting. This page "
            "reconnects by itself; if it does not within a minute, look at the terminal "
            "running `make run` (or scripts/start-console) and start it again.",
            icon="wifi_off",
            color_scheme="red",
            variant="surface",
            role="alert",
            id="console-offline",
            position="fixed",
            top="8px",
            left="50%",
            transform="translateX(-50%)",
            width="min(640px, calc(100vw - 16px))",
            z_index="1000",
            # Opaque, over the page (the callout's own tint is see-through).
            background_color="var(--red-3)",
            box_shadow="var(--shadow-4)",
        ),
    )


def relay_offline_banner() -> rx.Component:
    return rx.cond(
        FeedState.relay_down,
        rx.callout(
            rx.cond(
                FeedState.reachable,  # it answers, but will not let this console follow it
                rx.text("The console cannot follow the relay: ", FeedState.offline_reason, "."),
                rx.text(
                    "The relay is offline (",
                    FeedState.offline_reason,
                    "). Calls cannot reach the agent until it is back: start it with "
                    "`make run` (which starts it again by itself) or scripts/start-relay. "
                    "This page reconnects on its own.",
                ),
            ),
            icon="triangle_alert",
            color_scheme="red",
            id="relay-offline",
            margin="8px 12px 0",
        ),
    )


def new_call_banner() -> rx.Component:
    """A call started while the user reads another: say so, do not switch."""
    return rx.cond(
        FeedState.new_call != "",
        rx.callout(
            rx.hstack(
                rx.text("A new call started (", FeedState.new_call_label, ")."),
                rx.button("Show it", size="1", variant="soft", on_click=FeedState.show_new_call),
                align="center",
                wrap="wrap",
                spacing="2",
            ),
            icon="phone_incoming",
            color_scheme="blue",
            id="new-call",
            margin="8px 12px 0",
        ),
    )
