# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
"""The Profiles view: agent profiles, the number each uses, and the default profile."""

from __future__ import annotations

from typing import Any

import reflex as rx

from console.components.common import panel
from console.profiles_form import (
    EAGERNESS_CHOICES,
    GREETING_MODES,
    TURN_DETECTION,
    VOICE_CHOICES,
)
from console.state.profiles import ProfilesState as P

F = P.form
GREETING_LABELS = {
    "default": "the relay's greeting",
    "none": "none: wait for the caller",
    "say": "say this:",
}
TD_LABELS = {
    "default": "the relay's default",
    "semantic_vad": "semantic VAD",
    "server_vad": "server VAD",
    "none": "off (push to talk)",
}


def _error(key: str, errors: Any = P.errors) -> rx.Component:
    return rx.cond(
        errors.contains(key),
        rx.text(
            errors[key],
            size="1",
            color_scheme="red",
            class_name="field-error",
            custom_attrs={"data-field": key},
        ),
    )


def _label(text: str, key: str, child: rx.Component) -> rx.Component:
    return rx.vstack(
        rx.text(text, size="1", color_scheme="gray"),
        child,
        _error(key),
        spacing="0",
        width="100%",
        min_width="0",
    )


def _select(
    key: str, text: str, choices: tuple[str, ...], labels: dict[str, str] | None = None
) -> rx.Component:
    return _label(
        text,
        key,
        rx.select.root(
            rx.select.trigger(width="100%", id=f"profile-{key}"),
            rx.select.content(
                *(rx.select.item((labels or {}).get(c, c), value=c) for c in choices)
            ),
            value=F[key],
            on_change=lambda v: P.set_field(key, v),
            size="1",
        ),
    )


def _input(key: str, text: str, **props: Any) -> rx.Component:
    return _label(
        text,
        key,
        rx.input(
            value=F[key],
            on_change=lambda v: P.set_field(key, v),
            size="1",
            width="100%",
            id=f"profile-{key}",
            **props,
        ),
    )


def _text_area(key: str, text: str, **props: Any) -> rx.Component:
    return _label(
        text,
        key,
        rx.text_area(
            value=F[key],
            on_change=lambda v: P.set_field(key, v),
            width="100%",
            id=f"profile-{key}",
            **props,
        ),
    )


def editor() -> rx.Component:
    return rx.cond(
        P.editing != "",
        panel(
            "Profile",
            rx.cond(
                P.editing == "new",
                _input("name", "Name of the new profile", placeholder="e.g. sales"),
                rx.text("Editing ", P.editing, weight="bold", size="2", id="profile-editing"),
            ),
            rx.text(
                "Leave a field at the default and calls get the relay's own setting.",
                size="1",
                color_scheme="gray",
            ),
            _text_area("instructions", "Instructions", rows="5", placeholder="default"),
            rx.grid(
                _select("voice", "Voice", VOICE_CHOICES),
                _input("model", "Model", placeholder="default, e.g. gpt-realtime"),
                columns=rx.breakpoints(initial="1", sm="2"),
                spacing="2",
                width="100%",
            ),
            _select(
                "greeting_mode",
                "Greeting (what the agent says first)",
                GREETING_MODES,
                GREETING_LABELS,
            ),
            rx.cond(
                F["greeting_mode"] == "say",
                _input("greeting", "Greeting", placeholder="Greet the caller and offer help."),
            ),
            _select("turn_detection", "Turn detection", TURN_DETECTION, TD_LABELS),
            rx.cond(
                F["turn_detection"] == "semantic_vad",
                _select("eagerness", "Eagerness", EAGERNESS_CHOICES),
            ),
            rx.cond(
                F["turn_detection"] == "server_vad",
                rx.grid(
                    _input("threshold", "Threshold (0-1)", placeholder="0.5"),
                    _input("silence_ms", "Silence ms", placeholder="500"),
                    columns="2",
                    spacing="2",
                    width="100%",
                ),
            ),
            _text_area(
                "tools",
                "Tools (a JSON list of function tools; empty = the defaults, [] = none)",
                rows="6",
                font_family="monospace",
                placeholder='[{"name": "lookup_order", "description": "...", "parameters": '
                '{"type": "object", "properties": {}}}]',
            ),
            _error("form"),
            rx.hstack(
                rx.button("Cancel", size="1", variant="soft", on_click=P.close_editor),
                rx.button("Save", size="1", on_click=P.save, loading=P.saving, id="profile-save"),
                spacing="2",
                justify="end",
                width="100%",
            ),
            id="profile-editor",
        ),
    )


def _actions(row: Any) -> rx.Component:
    name = row["name"]
    return rx.cond(
        P.confirm_delete == name,
        rx.hstack(
            rx.text("Delete it (and its numbers)?", size="1"),
            rx.button(
                "Delete",
                size="1",
                color_scheme="red",
                on_click=P.delete(name),
                class_name="profile-delete-confirm",
            ),
            rx.button("Keep", size="1", variant="soft", on_click=P.keep),
            spacing="1",
            align="center",
            wrap="wrap",
        ),
        rx.hstack(
            rx.button(
                "Edit", size="1", variant="ghost", on_click=P.edit(name), class_name="profile-edit"
            ),
            rx.button(
                "Delete",
                size="1",
                variant="ghost",
                color_scheme="red",
                on_click=P.ask_delete(name),
                class_name="profile-delete",
            ),
            spacing="1",
        ),
    )


def _profile(row: Any) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.text(row["name"], weight="bold", size="2", overflow_wrap="anywhere", min_width="0"),
            rx.cond(row["default"] == "1", rx.badge("default", color_scheme="green", size="1")),
            rx.spacer(),
            _actions(row),
            align="center",
            width="100%",
            wrap="wrap",
        ),
        rx.text(row["summary"], size="1", color_scheme="gray"),
        rx.cond(
            row["numbers"] != "",
            rx.text("Numbers: ", row["numbers"], size="1", overflow_wrap="anywhere"),
        ),
        spacing="1",
        width="100%",
        padding="8px 0",
        border_top="1px solid var(--gray-4)",
        class_name="profile-row",
        custom_attrs={"data-name": row["name"]},
    )


def profiles_panel() -> rx.Component:
    return panel(
        "Agent profiles",
        rx.text(
            "A profile is a named set of instructions, voice, model, tools, greeting and turn "
            "detection. A call uses the profile of the number it called, else the default one.",
            size="1",
            color_scheme="gray",
        ),
        rx.cond(
            P.error != "", rx.callout(P.error, color_scheme="red", size="1", id="profiles-error")
        ),
        rx.cond(
            P.message != "",
            rx.text(P.message, size="1", color_scheme="green", id="profiles-message"),
        ),
        rx.button("New profile", size="1", on_click=P.new_profile, id="new-profile"),
        rx.cond(
            P.profiles.length() > 0,
            rx.vstack(rx.foreach(P.profiles, _profile), spacing="0", width="100%", id="profiles"),
            rx.cond(
                ~P.loading,
                rx.text("No profiles yet: every call uses the relay's defaults.", size="1"),
            ),
        ),
    )


def _number(row: Any) -> rx.Component:
    return rx.hstack(
        rx.text(row["number"], size="2", font_family="monospace"),
        rx.text("→ ", row["profile"], size="2", overflow_wrap="anywhere", min_width="0"),
        rx.spacer(),
        rx.button(
            "Remove",
            size="1",
            variant="ghost",
            color_scheme="red",
            on_click=P.unmap_number(row["number"]),
            class_name="number-remove",
        ),
        align="center",
        width="100%",
        wrap="wrap",
        class_name="number-row",
        custom_attrs={"data-number": row["number"]},
    )


def numbers_panel() -> rx.Component:
    return panel(
        "Numbers",
        rx.text(
            "Which profile each Twilio number (the number called) uses.",
            size="1",
            color_scheme="gray",
        ),
        rx.vstack(rx.foreach(P.numbers, _number), spacing="1", width="100%", id="numbers"),
        rx.form(
            rx.grid(
                rx.vstack(
                    rx.input(
                        name="number",
                        placeholder="+14155550100",
                        size="1",
                        width="100%",
                        id="map-number",
                    ),
                    _error("number", P.number_errors),
                    spacing="0",
                    min_width="0",
                ),
                rx.vstack(
                    rx.select.root(
                        rx.select.trigger(placeholder="profile", width="100%", id="map-profile"),
                        rx.select.content(
                            rx.foreach(P.names, lambda n: rx.select.item(n, value=n))
                        ),
                        name="profile",
                        size="1",
                    ),
                    _error("profile", P.number_errors),
                    spacing="0",
                    min_width="0",
                ),
                rx.button("Map", type="submit", size="1", id="map-submit"),
                columns=rx.breakpoints(initial="1", sm="minmax(0, 1fr) minmax(0, 1fr) auto"),
                spacing="2",
                width="100%",
                align="start",
            ),
            on_submit=P.map_number,
            reset_on_submit=False,
            width="100%",
        ),
        rx.vstack(
            rx.text("Default profile (every other number)", size="1", color_scheme="gray"),
            rx.select(
                P.default_choices,
                value=P.default,
                on_change=P.set_default,
                size="1",
                width="100%",
                id="default-profile",
            ),
            _error("default", P.number_errors),
            spacing="0",
            width="100%",
        ),
    )


COLUMNS = rx.breakpoints(initial="minmax(0, 1fr)", lg="minmax(0, 1.4fr) minmax(0, 1fr)")


def profiles_body() -> rx.Component:
    return rx.grid(
        rx.vstack(profiles_panel(), editor(), spacing="3", min_width="0", width="100%"),
        rx.vstack(numbers_panel(), spacing="3", min_width="0", width="100%"),
        spacing="3",
        padding=rx.breakpoints(initial="8px", sm="12px"),
        width="100%",
        style={"grid_template_columns": COLUMNS},
    )
