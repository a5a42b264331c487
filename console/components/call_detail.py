# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
"""One call from the history: facts, why it ended, the transcript with barge-ins and
tool calls, latency per turn, usage and cost, model session changes, the recording."""

from __future__ import annotations

from typing import Any

import reflex as rx

from console.components.common import panel, status_badge
from console.components.history import export_button
from console.components.media import backend_url
from console.state.history import CallDetailState as S

COLUMNS = rx.breakpoints(initial="minmax(0, 1fr)", lg="minmax(300px, 1fr) minmax(0, 1.8fr)")
MONO = {"font_family": "monospace", "overflow_wrap": "anywhere"}
ROLE = {"caller": "Caller", "assistant": "Assistant", "tool": "Tool"}


def _fact(fact: Any) -> rx.Component:
    return rx.hstack(
        rx.text(fact["label"], size="1", color_scheme="gray", min_width="72px"),
        rx.text(fact["value"], size="2", overflow_wrap="anywhere", min_width="0"),
        custom_attrs={"data-fact": fact["id"]},
        class_name="fact",
        spacing="2",
        align="baseline",
    )


def summary_panel() -> rx.Component:
    return panel(
        "Call",
        rx.text(S.sid, size="1", color_scheme="gray", word_break="break-all", id="detail-sid"),
        rx.vstack(rx.foreach(S.facts, _fact), spacing="1", width="100%"),
        rx.vstack(
            rx.text("Why it ended", size="1", color_scheme="gray"),
            rx.text(S.end, size="2", weight="medium", id="detail-end", overflow_wrap="anywhere"),
            spacing="0",
        ),
        rx.hstack(
            export_button("CSV", S.csv_path, "detail-export-csv"),
            export_button("JSON", S.json_path, "detail-export-json"),
            spacing="2",
        ),
    )


def _recording(rec: Any) -> rx.Component:
    return rx.vstack(
        rx.text(rec["sid"], size="1", color_scheme="gray", word_break="break-all"),
        rx.el.audio(
            src=backend_url(rec["path"]), controls=True, preload="none", style={"width": "100%"}
        ),
        spacing="1",
        width="100%",
        class_name="recording-player",
    )


def recording_panel() -> rx.Component:
    return rx.cond(
        S.recordings.length() > 0,
        panel("Recording", rx.foreach(S.recordings, _recording)),
    )


def _usage(row: Any) -> rx.Component:
    return rx.hstack(
        rx.text(row["label"], size="1", color_scheme="gray", min_width="72px"),
        rx.text(row["tokens"], size="2", weight="medium"),
        rx.text(row["note"], size="1", color_scheme="gray"),
        spacing="2",
        align="baseline",
    )


def usage_panel() -> rx.Component:
    return panel(
        "Usage and cost",
        rx.vstack(rx.foreach(S.usage, _usage), spacing="1", id="detail-usage"),
        rx.text("Cost: ", S.cost, size="2", id="detail-cost", overflow_wrap="anywhere"),
    )


def _turn(point: Any) -> rx.Component:
    return rx.badge(
        "turn ", point["turn"], ": ", point["ms"], " ms", variant="soft", class_name="latency-turn"
    )


def latency_panel() -> rx.Component:
    return panel(
        "Latency per turn",
        rx.text(
            "Voice to voice: from the end of the caller's speech to the first answer audio.",
            size="1",
            color_scheme="gray",
        ),
        rx.cond(
            S.latency.length() > 0,
            rx.vstack(
                rx.hstack(rx.foreach(S.latency, _turn), spacing="2", wrap="wrap"),
                rx.text("p50 ", S.latency_p50, " · p95 ", S.latency_p95, size="2"),
                spacing="2",
                id="detail-latency",
            ),
            rx.text("No turn measured.", size="1", color_scheme="gray"),
        ),
    )


def _change(change: Any) -> rx.Component:
    return rx.text(
        rx.text.span(change["at"], " ", color="var(--gray-10)"),
        change["what"],
        rx.cond(change["reason"] != "", rx.text.span(" (", change["reason"], ")")),
        size="2",
        class_name="session-change",
    )


def changes_panel() -> rx.Component:
    return panel(
        "Reconnects and hand-overs",
        rx.cond(
            S.changes.length() > 0,
            rx.vstack(rx.foreach(S.changes, _change), spacing="1", id="detail-changes"),
            rx.text("None: one model session from start to end.", size="1", color_scheme="gray"),
        ),
    )


def _line(line: Any) -> rx.Component:
    role = line["role"]
    return rx.hstack(
        rx.text(line["at"], size="1", color_scheme="gray", min_width="36px"),
        rx.text(
            rx.match(role, *ROLE.items(), "?"),
            size="1",
            weight="bold",
            min_width="64px",
            color_scheme=rx.match(role, ("caller", "blue"), ("assistant", "green"), "gray"),
        ),
        rx.box(
            rx.text.span(line["text"]),
            rx.cond(
                line["interrupted"] == "1",
                rx.badge("✂ " + line["note"], color_scheme="amber", variant="soft", margin="0 6px"),
                rx.cond(
                    line["note"] != "",
                    rx.text.span(
                        "  (", line["note"], ")", color="var(--gray-10)", font_size="12px"
                    ),
                ),
            ),
            rx.cond(
                line["latency"] != "",
                rx.badge(line["latency"], variant="outline", margin_left="6px"),
            ),
            font_family=rx.cond(role == "tool", "monospace", ""),
            font_size="14px",
            overflow_wrap="anywhere",
            min_width="0",
        ),
        align="start",
        spacing="2",
        width="100%",
        class_name="detail-line line-" + role.to(str),
        custom_attrs={"data-interrupted": line["interrupted"]},
    )


def transcript_panel() -> rx.Component:
    return panel(
        "Transcript",
        rx.cond(
            S.lines.length() > 0,
            rx.vstack(
                rx.foreach(S.lines, _line), spacing="2", width="100%", id="detail-transcript"
            ),
            rx.text("Nothing was said.", size="1", color_scheme="gray"),
        ),
    )


def _tool(tc: Any) -> rx.Component:
    return rx.box(
        rx.hstack(
            rx.text(tc["name"], weight="bold", size="2", min_width="0", **MONO),
            status_badge(tc["status"]),
            rx.spacer(),
            rx.text(tc["at"], " · ", tc["duration"], size="1", color_scheme="gray"),
            align="center",
            width="100%",
            wrap="wrap",
        ),
        rx.text("arguments: ", tc["arguments"], size="1", class_name="tool-args", **MONO),
        rx.text("output: ", tc["output"], size="1", class_name="tool-output", **MONO),
        rx.text("ok: ", tc["ok"], " · answered by ", tc["source"], size="1", color_scheme="gray"),
        padding="8px",
        border="1px solid var(--gray-5)",
        border_radius="6px",
        width="100%",
        class_name="detail-tool",
        custom_attrs={"data-name": tc["name"], "data-status": tc["status"]},
    )


def tools_panel() -> rx.Component:
    return panel(
        "Tool calls",
        rx.cond(
            S.tools.length() > 0,
            rx.vstack(rx.foreach(S.tools, _tool), spacing="2", width="100%", id="detail-tools"),
            rx.text("None.", size="1", color_scheme="gray"),
        ),
    )


def _column(*children: rx.Component) -> rx.Component:
    return rx.vstack(*children, spacing="3", min_width="0", width="100%")


def call_detail_body() -> rx.Component:
    return rx.vstack(
        rx.link("← History", href="/history", size="2", id="back-to-history"),
        rx.cond(
            S.error != "",
            rx.callout(S.error, color_scheme="red", size="1", id="detail-error"),
        ),
        rx.cond(
            S.loading,
            rx.text("Loading the call…", size="2", color_scheme="gray"),
        ),
        rx.cond(
            S.facts.length() > 0,
            rx.grid(
                _column(
                    summary_panel(),
                    recording_panel(),
                    usage_panel(),
                    latency_panel(),
                    changes_panel(),
                ),
                _column(transcript_panel(), tools_panel()),
                spacing="3",
                width="100%",
                style={"grid_template_columns": COLUMNS},
            ),
        ),
        spacing="3",
        padding=rx.breakpoints(initial="8px", sm="12px"),
        width="100%",
    )
