# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
from __future__ import annotations

from typing import Any

import reflex as rx

from console.components.calls import recording_status
from console.components.common import panel
from console.state.feed import FeedState

ROLE_LABEL = {
    "caller": "Caller",
    "assistant": "Assistant",
    "tool_call": "Tool call",
    "tool_output": "Tool output",
    "dtmf": "Keypad",
    "error": "Error",
    "system": "Call",
    "model": "Model",
    "recording": "Recording",
}
QUIET_ROLES = ("system", "model", "recording")  # small grey lines about the call itself


def _line(line: rx.Var) -> rx.Component:  # type: ignore[type-arg]
    role = line["role"]
    return rx.hstack(
        rx.text(
            rx.match(role, *[(k, v) for k, v in ROLE_LABEL.items()], "?"),
            size="1",
            weight="bold",
            min_width="72px",
            color_scheme=rx.match(
                role, ("caller", "blue"), ("assistant", "green"), ("error", "red"), "gray"
            ),
        ),
        rx.box(
            rx.text.span(line["text"]),
            rx.cond(
                line["cut"] != "",
                rx.text.span(
                    " ✂ ", line["cut"], text_decoration="line-through", color="var(--gray-9)"
                ),
            ),
            rx.cond(
                line["note"] != "",
                rx.text.span("  (", line["note"], ")", color="var(--gray-9)", font_size="11px"),
            ),
            font_family=rx.cond((role == "tool_call") | (role == "tool_output"), "monospace", ""),
            font_size=rx.cond(_quiet(role), "12px", "14px"),
            color=rx.cond(_quiet(role), "var(--gray-11)", ""),
            opacity=rx.cond(line["status"] == "streaming", "0.7", "1"),
            overflow_wrap="anywhere",
            min_width="0",
        ),
        align="start",
        spacing="2",
        class_name=rx.cond(True, "line line-" + role.to(str), "line"),
        width="100%",
    )


def _quiet(role: rx.Var) -> rx.Var:  # type: ignore[type-arg]
    return (role == QUIET_ROLES[0]) | (role == QUIET_ROLES[1]) | (role == QUIET_ROLES[2])


def transcript_panel() -> rx.Component:
    return panel(
        "Transcript",
        rx.cond(
            FeedState.selected != "",
            rx.hstack(
                rx.text(
                    FeedState.selected,
                    size="1",
                    color_scheme="gray",
                    word_break="break-all",
                    id="transcript-call",
                ),
                rx.badge(FeedState.call_state, variant="soft"),
                rx.cond(
                    FeedState.call_end_reason != "",
                    rx.text(FeedState.call_end_reason, size="1", id="end-reason"),
                ),
                rx.cond(
                    FeedState.call_end_reason != "",
                    rx.link(
                        "details in History",
                        href="/history/" + FeedState.selected,
                        size="1",
                        id="open-in-history",
                    ),
                ),
                recording_status(),
                spacing="2",
                align="center",
                wrap="wrap",
            ),
            rx.text("Pick a call (or place a simulated one).", size="1", color_scheme="gray"),
        ),
        rx.cond(
            ~FeedState.call_seen_live,
            rx.text(
                "This call ended before the console opened: only its summary is known.",
                size="1",
                color_scheme="gray",
            ),
        ),
        rx.scroll_area(
            rx.vstack(
                rx.foreach(FeedState.lines, _line), spacing="2", width="100%", id="transcript"
            ),
            height=rx.breakpoints(initial="40vh", lg="46vh"),
            scrollbars="vertical",
        ),
        rx.cond(
            FeedState.call_error != "",
            rx.callout(FeedState.call_error, color_scheme="red", size="1", id="call-error"),
        ),
    )


def latency_panel() -> rx.Component:
    return panel(
        "Latency and usage",
        rx.text(
            "Voice-to-voice latency, what the caller feels: from the end of the caller's "
            "speech to the first assistant audio sent to the phone, per turn.",
            size="1",
            color_scheme="gray",
        ),
        rx.cond(
            FeedState.latency.length() > 0,
            rx.vstack(
                rx.recharts.line_chart(
                    rx.recharts.line(
                        data_key="latency_ms",
                        name="latency",
                        unit=" ms",
                        stroke="var(--accent-9)",
                        dot=True,
                        is_animation_active=False,
                    ),
                    rx.recharts.x_axis(data_key="turn", name="turn"),
                    rx.recharts.y_axis(width=72, unit=" ms"),
                    rx.recharts.graphing_tooltip(),
                    data=FeedState.latency,
                    width="100%",
                    height=150,
                ),
                rx.hstack(
                    rx.foreach(FeedState.latency, _turn),
                    spacing="2",
                    wrap="wrap",
                    id="latency-turns",
                ),
                spacing="1",
                width="100%",
            ),
            rx.text(
                "Nothing yet: latency shows after the caller's first turn.",
                size="1",
                id="latency-empty",
            ),
        ),
        rx.hstack(
            _stat("last turn", FeedState.latency_last, "latency-last"),
            _stat("p50 (call)", FeedState.latency_p50, "latency-p50"),
            _stat("p95 (call)", FeedState.latency_p95, "latency-p95"),
            _stat("input tokens", FeedState.usage["input"], "tokens-in"),
            _stat("output tokens", FeedState.usage["output"], "tokens-out"),
            spacing="4",
            wrap="wrap",
        ),
    )


def _turn(point: rx.Var) -> rx.Component:  # type: ignore[type-arg]
    return rx.badge(
        "turn ",
        point["turn"],
        ": ",
        point["latency_ms"],
        " ms",
        variant="soft",
        class_name="latency-turn",
        custom_attrs={"data-ms": point["latency_ms"]},
    )


def _stat(label: str, value: Any, id: str) -> rx.Component:
    return rx.vstack(
        rx.text(label, size="1", color_scheme="gray"),
        rx.text(rx.cond(value, value, "none yet"), size="3", weight="bold", id=id),
        spacing="0",
    )
