# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
from __future__ import annotations

import reflex as rx

from console.components.common import panel
from console.state.tools import ToolsState


def _actions(index: rx.Var) -> rx.Component:  # type: ignore[type-arg]
    return rx.cond(
        ToolsState.confirm_delete == index,
        rx.hstack(
            rx.text("Delete it?", size="1"),
            rx.button(
                "Delete",
                size="1",
                color_scheme="red",
                on_click=ToolsState.delete(index),
                class_name="tool-delete-confirm",
            ),
            rx.button("Keep", size="1", variant="soft", on_click=ToolsState.keep),
            align="center",
            spacing="1",
        ),
        rx.hstack(
            rx.button("Edit", size="1", variant="ghost", on_click=ToolsState.open_editor(index)),
            rx.button(
                "Delete",
                size="1",
                variant="ghost",
                color_scheme="red",
                on_click=ToolsState.ask_delete(index),
                class_name="tool-delete",
            ),
            spacing="1",
        ),
    )


def _tool(row: rx.Var, index: rx.Var) -> rx.Component:  # type: ignore[type-arg]
    return rx.vstack(
        rx.hstack(
            rx.switch(checked=row["enabled"] == "1", size="1", on_change=ToolsState.toggle(index)),
            # The name gets a line of its own, so it shows in full; on a phone it may still
            # wrap (never cut), and the title shows it on hover too.
            rx.text(
                row["key"],
                size="2",
                font_family="monospace",
                min_width="0",
                overflow_wrap="anywhere",
                title=row["key"],
                class_name="tool-name",
            ),
            align="center",
            width="100%",
        ),
        rx.hstack(
            rx.cond(row["kind"] != "function", rx.badge(row["kind"], variant="soft", size="1")),
            rx.cond(
                row["backend"] == "1",
                rx.badge("backend", color_scheme="green", size="1"),
                rx.cond(
                    row["kind"] == "function",
                    rx.badge("answered from the console", color_scheme="amber", size="1"),
                ),
            ),
            rx.spacer(),
            _actions(index),
            align="center",
            width="100%",
            wrap="wrap",
            padding_left="36px",
        ),
        spacing="1",
        width="100%",
        class_name="tool-row",
    )


def _editor() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Tool"),
            rx.select(
                ToolsState.template_names,
                placeholder="Start from a template",
                on_change=ToolsState.use_template,
                size="1",
            ),
            rx.text_area(
                value=ToolsState.editor_text,
                on_change=ToolsState.edit,
                rows="16",
                font_family="monospace",
                width="100%",
                margin_y="8px",
                id="tool-json",
            ),
            rx.cond(
                ToolsState.editor_error != "",
                rx.callout(ToolsState.editor_error, color_scheme="red", size="1", id="tool-error"),
            ),
            rx.hstack(
                rx.button("Cancel", variant="soft", on_click=ToolsState.close_editor),
                rx.button(
                    "Save",
                    on_click=ToolsState.save_tool,
                    disabled=ToolsState.editor_error != "",
                    id="tool-save",
                ),
                justify="end",
                spacing="2",
                margin_top="8px",
            ),
            max_width="min(560px, calc(100vw - 16px))",
        ),
        open=ToolsState.editor_open,
        on_open_change=lambda _: ToolsState.close_editor(),
    )


def tools_panel() -> rx.Component:
    return panel(
        "Tools",
        rx.vstack(rx.foreach(ToolsState.tools, _tool), spacing="1", width="100%", id="tools"),
        rx.button(
            "Add tool",
            size="1",
            variant="soft",
            on_click=ToolsState.open_editor(-1),
            id="add-tool",
        ),
        rx.text(
            "backend: the relay runs it. Answered from the console: the model's call waits in "
            "Function calls for you to answer. Changes are sent with the session (Apply / "
            "Save as default).",
            size="1",
            color_scheme="gray",
        ),
        _editor(),
    )
