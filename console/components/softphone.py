# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
"""The softphone panel: talk to the agent from this page (assets/softphone.js does the audio).

What changes during a call (connecting, live, muted, the level meter, the status line) is
set by softphone.js on the DOM, not through Reflex state: it changes 50 times a second and
must not wait for a round trip to the backend. CSS keyed on `#softphone[data-state]` shows
the controls that fit the moment.
"""

from __future__ import annotations

import reflex as rx
from reflex_base.event import EventSpec

from console.components.common import panel
from console.components.media import backend_url
from console.state.softphone import DEFAULT, SoftphoneState

KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#")
PHONE_JS = "window.phoneRelaySoftphone"
IN_CALL = "&[data-state='connecting'] .sp-live, &[data-state='live'] .sp-live"
STYLE = {
    "& .sp-live": {"display": "none"},
    IN_CALL: {"display": "block"},
    "&[data-state='connecting'] .sp-idle, &[data-state='live'] .sp-idle": {"display": "none"},
    "&[data-muted='true'] #softphone-mute": {"background": "var(--red-9)", "color": "white"},
}


def _js(call: str) -> EventSpec:
    return rx.call_script(f"{PHONE_JS} && {PHONE_JS}.{call}")


def _key(digit: str) -> rx.Component:
    return rx.button(
        digit,
        size="2",
        variant="surface",
        on_click=_js(f"dtmf('{digit}')"),
        class_name="dtmf-key",
        custom_attrs={"data-digit": digit},
    )


def softphone_panel() -> rx.Component:
    return panel(
        "Talk to the agent",
        rx.box(
            rx.box(
                rx.hstack(
                    rx.select.root(
                        rx.select.trigger(id="softphone-audio"),
                        rx.select.content(
                            rx.select.item("Phone sound (8 kHz mu-law)", value="pcmu"),
                            rx.select.item("Wideband (24 kHz PCM)", value="pcm24"),
                        ),
                        value=SoftphoneState.audio,
                        on_change=SoftphoneState.set_audio,
                        size="1",
                    ),
                    rx.cond(
                        SoftphoneState.numbers.length() > 0,
                        rx.select.root(
                            rx.select.trigger(id="softphone-call-as", placeholder="Call as"),
                            rx.select.content(
                                rx.select.item("Default profile", value=DEFAULT),
                                rx.foreach(
                                    SoftphoneState.numbers,
                                    lambda n: rx.select.item(n["label"], value=n["number"]),
                                ),
                            ),
                            value=SoftphoneState.call_as,
                            on_change=SoftphoneState.set_call_as,
                            size="1",
                        ),
                    ),
                    rx.button(
                        "Talk",
                        size="1",
                        on_click=[_js("prime()"), SoftphoneState.talk],
                        id="talk",
                    ),
                    spacing="2",
                    align="center",
                    wrap="wrap",
                ),
                rx.text(
                    "Your microphone, through the relay, with this console's settings and tools "
                    "(or, called as a number, with that number's profile).",
                    size="1",
                    color_scheme="gray",
                ),
                class_name="sp-idle",
            ),
            rx.box(
                rx.hstack(
                    rx.button(
                        "Hang up",
                        size="1",
                        color_scheme="red",
                        on_click=_js("hangUp()"),
                        id="softphone-hangup",
                    ),
                    rx.button(
                        "Mute",
                        size="1",
                        variant="soft",
                        on_click=_js("toggleMute()"),
                        id="softphone-mute",
                    ),
                    rx.box(
                        rx.box(
                            id="softphone-level-bar",
                            height="100%",
                            width="0%",
                            background="var(--green-9)",
                            transition="width 80ms linear",
                        ),
                        id="softphone-level",
                        flex="1",
                        min_width="60px",
                        height="8px",
                        background="var(--gray-4)",
                        border_radius="4px",
                        overflow="hidden",
                    ),
                    spacing="2",
                    align="center",
                    width="100%",
                ),
                rx.grid(
                    *(_key(d) for d in KEYS),
                    columns="3",
                    spacing="1",
                    max_width="200px",
                    padding_top="8px",
                    id="keypad",
                ),
                class_name="sp-live",
            ),
            rx.text("", size="1", color_scheme="gray", id="softphone-status"),
            id="softphone",
            width="100%",
            custom_attrs={"data-backend": backend_url("")},
            style=STYLE,
        ),
    )
