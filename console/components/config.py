# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
from __future__ import annotations

import reflex as rx

from console.components.common import mono, panel
from console.config_form import (
    MODELS,
    NOISE_REDUCTION_MODES,
    TRANSCRIPTION_MODELS,
    TURN_DETECTION_MODES,
)
from console.state.config import ConfigState
from console.state.feed import FeedState
from shared.session import EAGERNESS, TOOL_CHOICES, VOICES

F = ConfigState.form


def _label(text: str, child: rx.Component) -> rx.Component:
    return rx.vstack(rx.text(text, size="1", color_scheme="gray"), child, spacing="0", width="100%")


def _select(name: str, options: tuple[str, ...] | list[str], label: str) -> rx.Component:
    return _label(
        label,
        rx.select(
            list(options),
            value=F[name],
            size="1",
            width="100%",
            on_change=lambda v: ConfigState.set_field(name, v),
        ),
    )


def _input(name: str, label: str, **props: object) -> rx.Component:
    props.setdefault("id", f"field-{name}")
    return _label(
        label,
        rx.input(
            value=F[name],
            size="1",
            width="100%",
            on_change=lambda v: ConfigState.set_field(name, v),
            **props,
        ),
    )


def _switch(name: str, label: str) -> rx.Component:
    return rx.hstack(
        rx.switch(
            checked=F[name] == "1", size="1", on_change=lambda v: ConfigState.set_field(name, v)
        ),
        rx.text(label, size="1"),
        align="center",
    )


def _turn_detection() -> rx.Component:
    return rx.vstack(
        _select("turn_detection", TURN_DETECTION_MODES, "Turn detection"),
        rx.cond(
            F["turn_detection"] == "server_vad",
            rx.grid(
                _input("threshold", "Threshold (0-1)"),
                _input("prefix_padding_ms", "Prefix padding ms"),
                _input("silence_duration_ms", "Silence ms"),
                _input("idle_timeout_ms", "Idle timeout ms"),
                columns="2",
                spacing="2",
                width="100%",
            ),
        ),
        rx.cond(
            F["turn_detection"] == "semantic_vad", _select("eagerness", EAGERNESS, "Eagerness")
        ),
        rx.cond(
            F["turn_detection"] != "none",
            rx.hstack(
                _switch("create_response", "create response"),
                _switch("interrupt_response", "interrupt response"),
                spacing="3",
            ),
        ),
        spacing="2",
        width="100%",
    )


def config_panel() -> rx.Component:
    return panel(
        "Session configuration",
        _select("model", MODELS, "Model"),
        _label(
            "Instructions",
            rx.text_area(
                value=F["instructions"],
                rows="5",
                width="100%",
                id="instructions",
                on_change=lambda v: ConfigState.set_field("instructions", v),
            ),
        ),
        rx.grid(
            _select("voice", VOICES, "Voice"),
            _input("speed", "Speed (0.25-1.5)"),
            _select("output_modality", ("audio", "text"), "Output"),
            _select("tool_choice", TOOL_CHOICES, "Tool choice"),
            _select("noise_reduction", NOISE_REDUCTION_MODES, "Noise reduction"),
            _input("max_output_tokens", "Max output tokens"),
            columns="2",
            spacing="2",
            width="100%",
        ),
        _turn_detection(),
        rx.grid(
            _select(
                "transcription_model", [m or "off" for m in TRANSCRIPTION_MODELS], "Transcription"
            ),
            _input("transcription_language", "Language (e.g. en)"),
            columns="2",
            spacing="2",
            width="100%",
        ),
        rx.hstack(
            rx.box(
                _input(
                    "greeting",
                    "Greeting (new calls open with it; Save as default)",
                    id="greeting",
                    placeholder="empty: new calls wait for the caller",
                ),
                flex="1",
            ),
            rx.button("Say now", size="1", variant="soft", on_click=ConfigState.say_greeting),
            align="end",
            width="100%",
        ),
        rx.text(
            rx.cond(
                FeedState.default_greeting != "",
                "Relay's greeting for new calls: " + FeedState.default_greeting,
                "Relay's greeting for new calls: none (the agent waits for the caller)",
            ),
            size="1",
            color_scheme="gray",
            id="relay-greeting",
        ),
        rx.hstack(
            rx.button(
                "Apply to call", size="1", on_click=ConfigState.apply("call"), id="apply-call"
            ),
            rx.button(
                "Save as default",
                size="1",
                variant="soft",
                on_click=ConfigState.apply("default"),
                id="save-default",
            ),
            rx.button(
                "Both",
                size="1",
                variant="soft",
                on_click=ConfigState.apply("both"),
                id="apply-both",
            ),
            spacing="2",
            wrap="wrap",
        ),
        # One line, replaced on each action: what happened to the last Apply / Save.
        rx.text(
            ConfigState.status,
            size="1",
            color_scheme=rx.match(
                ConfigState.status_kind, ("error", "red"), ("ok", "green"), "gray"
            ),
            id="config-status",
            custom_attrs={"data-kind": ConfigState.status_kind},
        ),
        rx.cond(
            FeedState.applied_session != "",
            rx.vstack(
                rx.text(
                    "The session of call ",
                    FeedState.selected,
                    rx.cond(FeedState.selected_live, "", " (ended)"),
                    " as the model applied it (session.updated)",
                    size="1",
                    weight="bold",
                    overflow_wrap="anywhere",
                ),
                mono(FeedState.applied_session, max_height="220px", overflow="auto", width="100%"),
                spacing="1",
                width="100%",
                min_width="0",
            ),
        ),
    )
