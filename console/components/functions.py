# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
from __future__ import annotations

import reflex as rx

from console.components.common import panel, status_badge
from console.state.feed import FeedState

MONO = {"font_family": "monospace", "overflow_wrap": "anywhere"}


def _answer_form(fc: rx.Var) -> rx.Component:  # type: ignore[type-arg]
    return rx.form(
        rx.text(
            "No handler on the relay: the model waits for your answer. Type what the tool "
            "returns (JSON or plain text) and Send: the model reads it and answers the caller. "
            "Without an answer within ",
            fc["timeout"],
            ", the model is told the tool did not answer.",
            size="1",
            color_scheme="gray",
        ),
        rx.hstack(
            rx.el.input(type="hidden", name="call_id", value=fc["call_id"]),
            rx.input(
                name="output",
                placeholder='{"status": "shipped"}',
                size="1",
                width="100%",
                class_name="fc-answer",
            ),
            rx.button("Send", size="1", type="submit", class_name="fc-send"),
            width="100%",
        ),
        on_submit=FeedState.answer_function,
        reset_on_submit=True,
        width="100%",
    )


def _call(fc: rx.Var) -> rx.Component:  # type: ignore[type-arg]
    return rx.box(
        rx.hstack(
            rx.text(fc["name"], weight="bold", size="2", min_width="0", **MONO),
            status_badge(fc["status"]),
            rx.spacer(),
            rx.text(fc["duration"], size="1", color_scheme="gray"),
            align="center",
            width="100%",
            wrap="wrap",
        ),
        rx.text("args: ", fc["arguments"], size="1", class_name="fc-args", **MONO),
        rx.cond(
            fc["output"] != "",
            rx.text("output: ", fc["output"], size="1", class_name="fc-output", **MONO),
        ),
        rx.cond(
            fc["source"] != "",
            rx.text("answered by ", fc["source"], size="1", color_scheme="gray"),
        ),
        rx.cond(fc["status"] == "pending", _answer_form(fc)),
        padding="8px",
        border="1px solid var(--gray-5)",
        border_radius="6px",
        width="100%",
        class_name="function-call",
        custom_attrs={"data-name": fc["name"], "data-status": fc["status"]},
    )


def functions_panel() -> rx.Component:
    return panel(
        "Function calls",
        rx.text(
            "The model's tool calls on the selected call. Backend tools run on the relay; "
            "a tool without one (like lookup_order) waits here for you to answer it.",
            size="1",
            color_scheme="gray",
        ),
        rx.cond(
            FeedState.functions.length() > 0,
            rx.vstack(
                rx.foreach(FeedState.functions, _call),
                spacing="2",
                width="100%",
                id="function-calls",
            ),
            rx.text("None yet on this call.", size="1", color_scheme="gray"),
        ),
    )
