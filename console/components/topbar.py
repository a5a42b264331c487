# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
from __future__ import annotations

import reflex as rx

from console.state.auth import AuthState
from console.state.feed import FeedState

PAGES = (
    ("live", "Live", "/"),
    ("history", "History", "/history"),
    ("profiles", "Profiles", "/profiles"),
)


def nav(current: str) -> rx.Component:
    """Links between the console's pages (client-side: the feed and the login stay)."""
    return rx.hstack(
        *(
            rx.link(
                label,
                href=href,
                size="2",
                weight="bold" if key == current else "regular",
                underline="always" if key == current else "hover",
                id=f"nav-{key}",
            )
            for key, label, href in PAGES
        ),
        spacing="3",
        align="center",
        id="nav",
    )


def topbar(current: str = "live") -> rx.Component:
    return rx.hstack(
        rx.heading("Phone relay console", size=rx.breakpoints(initial="4", sm="5")),
        nav(current),
        rx.cond(
            FeedState.online,
            rx.badge("relay online", color_scheme="green", id="relay-status"),
            rx.tooltip(
                rx.badge("relay offline", color_scheme="red", id="relay-status"),
                content=FeedState.offline_reason,
            ),
        ),
        rx.cond(FeedState.simulator, rx.badge("simulator mode", color_scheme="violet")),
        rx.text(FeedState.relay_version, size="1", color_scheme="gray"),
        rx.spacer(),
        rx.cond(
            FeedState.notice != "",
            rx.text(
                FeedState.notice,
                size="2",
                color_scheme=rx.cond(FeedState.notice_error, "red", "gray"),
                id="notice",
                overflow_wrap="anywhere",
            ),
        ),
        # Every 5 s: restart this session's relay feed if the backend lost it (e.g. a restart).
        rx.moment(interval=5000, on_change=FeedState.ensure_feed, display="none"),
        rx.button("Log out", variant="soft", on_click=AuthState.logout, size="1"),
        align="center",
        spacing="3",
        wrap="wrap",
        width="100%",
        padding=rx.breakpoints(initial="8px 10px", sm="12px 16px"),
        border_bottom="1px solid var(--gray-5)",
    )
