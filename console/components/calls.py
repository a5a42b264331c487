# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
from __future__ import annotations

import reflex as rx

from console.components.common import panel, status_badge
from console.state.feed import FeedState
from console.state.twilio import PhoneState


def _call(row: rx.Var) -> rx.Component:  # type: ignore[type-arg]
    return rx.box(
        rx.hstack(
            status_badge(row["state"]),
            rx.text(row["label"], size="2", weight="medium"),
            rx.spacer(),
            rx.text(row["started"], size="1", color_scheme="gray"),
            align="center",
            width="100%",
        ),
        rx.text(row["sid"], size="1", color_scheme="gray", trim="both"),
        on_click=FeedState.select_call(row["sid"]),
        cursor="pointer",
        padding="6px 8px",
        border_radius="6px",
        width="100%",
        background=rx.cond(row["sid"] == FeedState.selected, "var(--accent-3)", "transparent"),
        class_name="call-row",
    )


def calls_panel() -> rx.Component:
    return panel(
        "Calls",
        rx.hstack(
            rx.cond(
                FeedState.simulator,
                rx.button("Simulated call", size="1", on_click=FeedState.sim_call, id="sim-call"),
            ),
            rx.cond(
                FeedState.selected_live,
                rx.button(
                    "Hang up",
                    size="1",
                    color_scheme="red",
                    variant="soft",
                    on_click=FeedState.end_call,
                ),
            ),
            spacing="2",
        ),
        rx.cond(
            FeedState.calls.length() > 0,
            rx.vstack(rx.foreach(FeedState.calls, _call), spacing="1", width="100%"),
            rx.text("No calls yet this session.", size="1", color_scheme="gray"),
        ),
    )


def outbound_panel() -> rx.Component:
    return panel(
        "Outbound call",
        rx.input(
            placeholder="To, e.g. +14155550100",
            value=PhoneState.to_number,
            on_change=PhoneState.set_to_number,
            size="1",
            width="100%",
        ),
        rx.cond(
            PhoneState.caller_ids.length() > 0,
            rx.vstack(
                rx.text("Caller ID", size="1", color_scheme="gray"),
                rx.select(
                    PhoneState.caller_ids,
                    value=PhoneState.caller_id,
                    on_change=PhoneState.set_caller_id,
                    size="1",
                    width="100%",
                    id="caller-id",
                ),
                spacing="0",
                width="100%",
            ),
            rx.text(
                "No caller ID yet: set TWILIO_OUTBOUND_NUMBER or run the checklist to list "
                "the account's numbers.",
                size="1",
                color_scheme="gray",
            ),
        ),
        rx.cond(
            PhoneState.auto_record != "",
            rx.text(PhoneState.auto_record, size="1", color_scheme="gray"),
            rx.hstack(
                rx.switch(
                    checked=PhoneState.record_call, on_change=PhoneState.set_record_call, size="1"
                ),
                rx.text("Record this call (dual channel; check consent laws)", size="1"),
                align="center",
            ),
        ),
        rx.button("Call", size="1", on_click=PhoneState.place_call),
        recording_controls(),
        rx.cond(
            PhoneState.message != "",
            rx.text(
                PhoneState.message, size="1", color_scheme=rx.cond(PhoneState.error, "red", "gray")
            ),
        ),
    )


def recording_controls() -> rx.Component:
    return rx.vstack(
        rx.text("Recording of the selected call", size="2", weight="medium"),
        rx.hstack(
            rx.button("Start", size="1", variant="soft", on_click=PhoneState.start_recording),
            rx.button(
                "Pause", size="1", variant="soft", on_click=PhoneState.set_recording("paused")
            ),
            rx.button(
                "Resume", size="1", variant="soft", on_click=PhoneState.set_recording("in-progress")
            ),
            rx.button(
                "Stop", size="1", variant="soft", on_click=PhoneState.set_recording("stopped")
            ),
            rx.button("List", size="1", variant="soft", on_click=PhoneState.list_recordings),
            spacing="1",
            wrap="wrap",
        ),
        recording_status(),
        rx.foreach(PhoneState.recordings, _recording),
        spacing="1",
        width="100%",
    )


def recording_status() -> rx.Component:
    """The selected call's recording: SID and status, or the readable Twilio error."""
    return rx.cond(
        FeedState.recording_text != "",
        rx.text(
            FeedState.recording_text,
            size="1",
            color_scheme=rx.cond(FeedState.recording_error, "red", "gray"),
            class_name="recording-status",
        ),
    )


def _recording(rec: rx.Var) -> rx.Component:  # type: ignore[type-arg]
    from console.components.media import backend_url

    return rx.vstack(
        rx.text(rec["sid"], " · ", rec["status"], " · ", rec["duration"], " s", size="1"),
        rx.el.audio(
            src=backend_url(rec["path"]), controls=True, preload="none", style={"width": "100%"}
        ),
        spacing="0",
        width="100%",
    )
