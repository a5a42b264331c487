# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
from __future__ import annotations

import reflex as rx

from console.components.common import panel, status_badge
from console.state.feed import FeedState


def _call(fc: rx.Var) -> rx.Component:  # type: ignore[type-arg]
    return rx.box(
        rx.hstack(
            rx.text(fc["name"], weight="bold", size="2", font_family="monospace"),
            status_badge(fc["status"]),
            rx.spacer(),
            rx.text(fc["duration"], size="1", color_scheme="gray"),
            align="center",
            width="100%",
        ),
        rx.text("args: ", fc["arguments"], size="1", font_family="monospace", class_name="fc-args"),
        rx.cond(
            fc["output"] != "",
            rx.text(
                "output: ", fc["output"], size="1", font_family="monospace", class_name="fc-output"
            ),
        ),
        rx.cond(fc["source"] != "", rx.text("by ", fc["source"], size="1", color_scheme="gray")),
        rx.cond(
            fc["status"] == "pending",
            rx.form(
                rx.hstack(
                    rx.el.input(type="hidden", name="call_id", value=fc["call_id"]),
                    rx.input(
                        name="output", placeholder='{"status": "shipped"}', size="1", width="100%"
                    ),
                    rx.button("Send", size="1", type="submit"),
                    width="100%",
                ),
                rx.text(
                    "answer before the relay's timeout (",
                    fc["timeout"],
                    ")",
                    size="1",
                    color_scheme="gray",
                ),
                on_submit=FeedState.answer_function,
                reset_on_submit=True,
            ),
        ),
        padding="8px",
        border="1px solid var(--gray-5)",
        border_radius="6px",
        width="100%",
        class_name="function-call",
    )


def functions_panel() -> rx.Component:
    return panel(
        "Function calls",
        rx.cond(
            FeedState.functions.length() > 0,
            rx.vstack(
                rx.foreach(FeedState.functions, _call),
                spacing="2",
                width="100%",
                id="function-calls",
            ),
            rx.text("None yet.", size="1", color_scheme="gray"),
        ),
    )
