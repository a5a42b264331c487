# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
"""The console's Reflex app: a login page and the main page."""

from __future__ import annotations

import reflex as rx
from starlette.applications import Starlette

from console import media
from console.components.calls import calls_panel, outbound_panel
from console.components.checklist import checklist_panel
from console.components.config import config_panel
from console.components.functions import functions_panel
from console.components.login import login_page
from console.components.tools import tools_panel
from console.components.topbar import topbar
from console.components.transcript import latency_panel, transcript_panel
from console.state.auth import AuthState
from console.state.feed import FeedState
from console.state.twilio import ChecklistState, PhoneState


def index() -> rx.Component:
    return rx.box(
        topbar(),
        rx.grid(
            rx.vstack(checklist_panel(), calls_panel(), outbound_panel(), spacing="3"),
            rx.vstack(transcript_panel(), latency_panel(), spacing="3"),
            rx.vstack(config_panel(), tools_panel(), functions_panel(), spacing="3"),
            columns="3",
            spacing="3",
            padding="12px",
            style={
                "grid_template_columns": "minmax(260px, 1fr) minmax(360px, 1.6fr) "
                "minmax(320px, 1.2fr)"
            },
        ),
    )


app = rx.App(
    api_transformer=Starlette(routes=media.routes),
)
app.add_page(login_page, route="/login", title="Console login")
app.add_page(
    index,
    route="/",
    title="Phone relay console",
    on_load=[AuthState.require_login, FeedState.start_feed, PhoneState.init, ChecklistState.check],
)
