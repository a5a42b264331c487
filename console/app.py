# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
"""The console's Reflex app: a login page, the live page, History (and one call's
detail) and Profiles."""

from __future__ import annotations

import reflex as rx
from starlette.applications import Starlette

from console import export, media, softphone
from console.components.banners import (
    console_offline_overlay,
    new_call_banner,
    relay_offline_banner,
)
from console.components.call_detail import call_detail_body
from console.components.calls import calls_panel, outbound_panel
from console.components.checklist import checklist_panel
from console.components.config import config_panel
from console.components.functions import functions_panel
from console.components.history import history_body
from console.components.login import login_page
from console.components.profiles import profiles_body
from console.components.softphone import softphone_panel
from console.components.tools import tools_panel
from console.components.topbar import topbar
from console.components.transcript import latency_panel, transcript_panel
from console.state.auth import AuthState
from console.state.feed import FeedState
from console.state.history import CallDetailState, HistoryState
from console.state.profiles import ProfilesState
from console.state.softphone import SoftphoneState
from console.state.twilio import ChecklistState, PhoneState

# One column on a phone (someone on call duty checks it there), three from 62em up.
COLUMNS = rx.breakpoints(
    initial="minmax(0, 1fr)",
    lg="minmax(260px, 1fr) minmax(360px, 1.6fr) minmax(320px, 1.2fr)",
)


def _column(*children: rx.Component) -> rx.Component:
    # min_width 0: a grid item may shrink below its content (long JSON, SIDs) and wrap it.
    return rx.vstack(*children, spacing="3", min_width="0", width="100%")


def index() -> rx.Component:
    return rx.box(
        topbar(),
        relay_offline_banner(),
        new_call_banner(),
        rx.grid(
            _column(checklist_panel(), softphone_panel(), calls_panel(), outbound_panel()),
            _column(transcript_panel(), latency_panel()),
            _column(config_panel(), tools_panel(), functions_panel()),
            spacing="3",
            padding=rx.breakpoints(initial="8px", sm="12px"),
            width="100%",
            style={"grid_template_columns": COLUMNS},
        ),
    )


def history() -> rx.Component:
    return rx.box(topbar("history"), relay_offline_banner(), history_body())


def call_detail() -> rx.Component:
    return rx.box(topbar("history"), relay_offline_banner(), call_detail_body())


def profiles() -> rx.Component:
    return rx.box(topbar("profiles"), relay_offline_banner(), profiles_body())


app = rx.App(
    api_transformer=Starlette(routes=[*media.routes, *export.routes, *softphone.routes]),
    # The softphone's page half (its AudioWorklet module is assets/softphone-worklet.js).
    head_components=[rx.script(src="/softphone.js")],
)
# The app's own banner instead of Reflex's connection toast and pulser.
app.app_wraps[(5, "Overlay")] = lambda stateful: console_offline_overlay() if stateful else None
app.add_page(login_page, route="/login", title="Console login")
app.add_page(
    index,
    route="/",
    title="Phone relay console",
    on_load=[
        AuthState.require_login,
        FeedState.start_feed,
        PhoneState.init,
        ChecklistState.check,
        SoftphoneState.load_numbers,
    ],
)
# Every page keeps this browser's relay feed going (the top bar says if the relay is up).
# The detail route comes first: a dynamic route must be added before its parent's.
app.add_page(
    call_detail,
    route="/history/[call_sid]",
    title="Call · Phone relay console",
    on_load=[AuthState.require_login, FeedState.start_feed, CallDetailState.load],
)
app.add_page(
    history,
    route="/history",
    title="History · Phone relay console",
    on_load=[AuthState.require_login, FeedState.start_feed, HistoryState.load],
)
app.add_page(
    profiles,
    route="/profiles",
    title="Profiles · Phone relay console",
    on_load=[AuthState.require_login, FeedState.start_feed, ProfilesState.load],
)
