# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
from __future__ import annotations

from typing import Any

import reflex as rx

from console.components.common import panel, status_badge
from console.state.feed import FeedState
from console.state.twilio import PhoneState

# Outbound calls and recordings go through Twilio: off, with the reason, when it is absent.
TWILIO_OFF = FeedState.twilio_note != ""


def _call(row: rx.Var) -> rx.Component:  # type: ignore[type-arg]
    return rx.box(
        rx.hstack(
            status_badge(row["state"]),
            rx.text(row["label"], size="2", weight="medium"),
            rx.cond(
                row["direction"] == "browser",
                rx.icon("headphones", size=14, color="var(--gray-10)"),
            ),
            rx.cond(
                row["direction"] == "sip",
                rx.badge("SIP", size="1", variant="soft", title="OpenAI carries the audio"),
            ),
            rx.spacer(),
            rx.text(row["started"], size="1", color_scheme="gray"),
            align="center",
            width="100%",
        ),
        rx.text(row["sid"], size="1", color_scheme="gray", word_break="break-all"),
        rx.cond(row["reason"] != "", rx.text(row["reason"], size="1", color_scheme="gray")),
        on_click=FeedState.select_call(row["sid"]),
        cursor="pointer",
        padding="6px 8px",
        border_radius="6px",
        width="100%",
        background=rx.cond(row["sid"] == FeedState.selected, "var(--accent-3)", "transparent"),
        class_name="call-row",
        custom_attrs={
            "data-sid": row["sid"],
            "data-state": row["state"],
            "data-direction": row["direction"],
        },
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
                FeedState.simulator,
                rx.button(
                    "Simulated SIP call",
                    size="1",
                    variant="soft",
                    on_click=FeedState.sim_sip_call,
                    id="sim-sip-call",
                ),
            ),
            rx.cond(
                FeedState.selected_live,
                rx.button(
                    "Hang up",
                    size="1",
                    color_scheme="red",
                    variant="soft",
                    on_click=FeedState.end_call,
                    id="hang-up",
                ),
            ),
            spacing="2",
            wrap="wrap",
        ),
        rx.hstack(
            rx.switch(
                checked=FeedState.follow, on_change=FeedState.set_follow, size="1", id="follow"
            ),
            rx.text("Follow live calls (show each new call as it starts)", size="1"),
            align="center",
        ),
        rx.cond(
            FeedState.calls.length() > 0,
            rx.vstack(rx.foreach(FeedState.calls, _call), spacing="1", width="100%", id="calls"),
            rx.text("No calls yet this session.", size="1", color_scheme="gray"),
        ),
    )


def _message(text: Any, error: Any, id: str) -> rx.Component:
    return rx.cond(
        text != "",
        rx.text(
            text,
            size="1",
            color_scheme=rx.cond(error, "red", "gray"),
            id=id,
            overflow_wrap="anywhere",
        ),
    )


def outbound_panel() -> rx.Component:
    return panel(
        "Outbound call",
        rx.cond(
            TWILIO_OFF,
            rx.callout(FeedState.twilio_note, icon="info", size="1", id="twilio-note"),
        ),
        rx.input(
            placeholder="To, e.g. +14155550100",
            value=PhoneState.to_number,
            on_change=PhoneState.set_to_number,
            size="1",
            width="100%",
            disabled=TWILIO_OFF,
            id="to-number",
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
                    disabled=TWILIO_OFF,
                ),
                spacing="0",
                width="100%",
            ),
            rx.cond(
                ~TWILIO_OFF,
                rx.text(
                    "No caller ID yet: set TWILIO_OUTBOUND_NUMBER or run the checklist to list "
                    "the account's numbers.",
                    size="1",
                    color_scheme="gray",
                ),
            ),
        ),
        rx.cond(
            PhoneState.auto_record != "",
            rx.text(PhoneState.auto_record, size="1", color_scheme="gray"),
            rx.hstack(
                rx.switch(
                    checked=PhoneState.record_call,
                    on_change=PhoneState.set_record_call,
                    size="1",
                    disabled=TWILIO_OFF,
                ),
                rx.text("Record this call (dual channel; check consent laws)", size="1"),
                align="center",
            ),
        ),
        rx.button(
            "Call", size="1", on_click=PhoneState.place_call, disabled=TWILIO_OFF, id="place-call"
        ),
        _message(PhoneState.message, PhoneState.error, "call-message"),
        recording_controls(),
    )


def recording_controls() -> rx.Component:
    off = TWILIO_OFF | (FeedState.recording_note != "")

    def button(label: str, on_click: Any, id: str) -> rx.Component:
        return rx.button(label, size="1", variant="soft", on_click=on_click, disabled=off, id=id)

    return rx.vstack(
        rx.text("Recording of the selected call", size="2", weight="medium"),
        rx.hstack(
            button("Start", PhoneState.start_recording, "rec-start"),
            button("Pause", PhoneState.set_recording("paused"), "rec-pause"),
            button("Resume", PhoneState.set_recording("in-progress"), "rec-resume"),
            button("Stop", PhoneState.set_recording("stopped"), "rec-stop"),
            button("List", PhoneState.list_recordings, "rec-list"),
            spacing="1",
            wrap="wrap",
        ),
        rx.cond(
            FeedState.recording_note != "",
            rx.text(FeedState.recording_note, size="1", color_scheme="gray", id="rec-note"),
        ),
        _message(PhoneState.rec_message, PhoneState.rec_error, "rec-message"),
        recording_status(),
        rx.foreach(PhoneState.recordings, _recording),
        spacing="1",
        width="100%",
        id="recording",
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
