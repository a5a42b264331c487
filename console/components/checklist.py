# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
from __future__ import annotations

import reflex as rx

from console.components.common import panel, status_badge
from console.state.twilio import ChecklistState


def _step(step: rx.Var) -> rx.Component:  # type: ignore[type-arg]
    return rx.hstack(
        status_badge(step["status"]),
        rx.vstack(
            rx.text(step["title"], weight="medium", size="2"),
            rx.text(step["detail"], size="1", color_scheme="gray", overflow_wrap="anywhere"),
            rx.cond(
                step["status"] == "fail",
                rx.hstack(
                    rx.text(
                        "→ ", step["todo"], size="1", color_scheme="red", overflow_wrap="anywhere"
                    ),
                    rx.cond(
                        step["link"] != "",
                        rx.link("open", href=step["link"], is_external=True, size="1"),
                    ),
                ),
            ),
            rx.cond(
                (step["key"] == "webhook") & (step["status"] == "fail"),
                rx.button("Update webhook", size="1", on_click=ChecklistState.update_webhook),
            ),
            spacing="0",
            align="start",
            min_width="0",
        ),
        align="start",
        spacing="2",
        class_name="check-step",
        custom_attrs={"data-key": step["key"], "data-status": step["status"]},
    )


def checklist_panel() -> rx.Component:
    return panel(
        "Setup checklist",
        rx.hstack(
            rx.button(
                "Check",
                size="1",
                on_click=ChecklistState.check,
                loading=ChecklistState.checking,
                id="check",
            ),
            rx.cond(
                ChecklistState.steps.length() > 0,
                rx.cond(
                    ChecklistState.ready,
                    rx.badge("ready", color_scheme="green", id="ready"),
                    rx.cond(
                        ChecklistState.pending,
                        rx.badge("checking…", color_scheme="blue", id="ready"),
                        rx.badge("not ready", color_scheme="red", id="ready"),
                    ),
                ),
            ),
            spacing="2",
        ),
        rx.cond(
            ChecklistState.numbers.length() > 1,
            rx.select(
                ChecklistState.number_labels,
                value=ChecklistState.chosen_label,
                on_change=ChecklistState.choose,
                size="1",
            ),
        ),
        rx.vstack(rx.foreach(ChecklistState.steps, _step), spacing="2", id="checklist"),
        rx.cond(ChecklistState.message != "", rx.text(ChecklistState.message, size="1")),
    )
