# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
"""The History view: filters, the calls (newest first, a page at a time), exports."""

from __future__ import annotations

from typing import Any

import reflex as rx

from console.components.common import panel
from console.components.media import backend_url
from console.state.history import REASON_CHOICES, HistoryState

# A table on a wide screen; two columns of labelled cells on a phone (no sideways scroll).
ROW_COLUMNS = rx.breakpoints(
    initial="minmax(0, 1fr) minmax(0, 1fr)",
    md="10.5em 4.5em minmax(0, 1fr) minmax(0, 1fr) 4.5em minmax(0, 1.3fr) minmax(0, 1fr) "
    "3.5em 4.5em",
)
COLUMNS = (
    ("started", "Time"),
    ("direction", "Dir."),
    ("from", "From"),
    ("to", "To"),
    ("duration", "Duration"),
    ("end", "End"),
    ("profile", "Profile"),
    ("turns", "Turns"),
    ("cost", "Cost"),
)
WIDE_ONLY = rx.breakpoints(initial="none", md="grid")
PHONE_ONLY = rx.breakpoints(initial="block", md="none")


def _field(label: str, child: rx.Component, error_key: str = "") -> rx.Component:
    return rx.vstack(
        rx.text(label, size="1", color_scheme="gray"),
        child,
        rx.cond(
            (HistoryState.error_field == error_key) & (error_key != ""),
            rx.text(HistoryState.error, size="1", color_scheme="red", class_name="field-error"),
        ),
        spacing="0",
        width="100%",
        min_width="0",
    )


def _input(name: str, label: str, **props: Any) -> rx.Component:
    return _field(
        label,
        rx.input(
            name=name,
            default_value=HistoryState.form_values[name],
            size="1",
            width="100%",
            id=f"filter-{name}",
            **props,
        ),
        name,
    )


def _select(name: str, label: str, choices: Any, **props: Any) -> rx.Component:
    return _field(
        label,
        rx.select.root(
            rx.select.trigger(width="100%", id=f"filter-{name}"),
            rx.select.content(
                rx.foreach(choices, lambda c: rx.select.item(_label(name, c), value=c))
            ),
            name=name,
            default_value=HistoryState.form_values[name],
            size="1",
            **props,
        ),
        name,
    )


def _label(name: str, choice: Any) -> Any:
    if name == "end_reason":
        return HistoryState.reason_labels[choice]
    return rx.cond(choice == "any", "any profile", choice)


def filters_panel() -> rx.Component:
    return panel(
        "Call history",
        rx.form(
            rx.grid(
                _input("text", "Said in the call", placeholder="e.g. refund", type="search"),
                _input("number", "Phone number (from or to)", placeholder="+1 555…"),
                _input("since", "From day", type="date"),
                _input("until", "To day (included)", type="date"),
                _select("end_reason", "End reason", REASON_CHOICES),
                _select("profile", "Profile", HistoryState.profile_names),
                columns=rx.breakpoints(initial="1", sm="2", lg="6"),
                spacing="2",
                width="100%",
            ),
            rx.hstack(
                rx.button("Search", type="submit", size="1", id="history-search"),
                rx.button(
                    "Clear",
                    type="button",
                    size="1",
                    variant="soft",
                    on_click=HistoryState.clear,
                    id="history-clear",
                ),
                rx.spacer(),
                export_button("CSV", HistoryState.csv_path, "export-csv"),
                export_button("JSON", HistoryState.json_path, "export-json"),
                spacing="2",
                wrap="wrap",
                align="center",
                width="100%",
                margin_top="8px",
            ),
            on_submit=HistoryState.search,
            key=HistoryState.form_key,
            width="100%",
        ),
        rx.text(
            "Calls are saved when they end. Times and days are in the console's time zone (",
            HistoryState.time_zone,
            "). Export takes every call that matches the filter (up to 10,000).",
            size="1",
            color_scheme="gray",
        ),
    )


def export_button(kind: str, path: Any, id: str) -> rx.Component:
    # A link styled as a button (a button inside a link would swallow the click), loaded by
    # the browser, not routed by the app (rx.el.a is a router link): the console backend
    # streams the file, so the browser never sees the relay's token.
    return rx.cond(
        path != "",
        rx.button(
            rx.el.a(
                "Export " + kind,
                href=backend_url(path),
                download="",
                reload_document=True,
                id=id,
            ),
            as_child=True,
            size="1",
            variant="soft",
        ),
    )


def _cell(row: Any, key: str, label: str) -> rx.Component:
    return rx.box(
        rx.text(label, size="1", color_scheme="gray", display=PHONE_ONLY),
        rx.text(
            row[key],
            size="2",
            overflow_wrap="anywhere",
            class_name=f"cell-{key}",
            weight="medium" if key == "started" else "regular",
        ),
        min_width="0",
    )


def _row(row: Any) -> rx.Component:
    return rx.link(
        rx.grid(
            *(_cell(row, key, label) for key, label in COLUMNS),
            spacing="2",
            width="100%",
            style={"grid_template_columns": ROW_COLUMNS},
        ),
        href=row["href"],
        underline="none",
        color="inherit",
        high_contrast=True,
        class_name="history-row",
        custom_attrs={"data-sid": row["sid"], "data-end": row["end_code"]},
        display="block",
        padding="8px",
        border_top="1px solid var(--gray-4)",
        _hover={"background": "var(--accent-2)"},
    )


def _header() -> rx.Component:
    return rx.grid(
        *(rx.text(label, size="1", weight="bold", color_scheme="gray") for _, label in COLUMNS),
        spacing="2",
        width="100%",
        padding="0 8px",
        display=WIDE_ONLY,
        style={"grid_template_columns": ROW_COLUMNS},
    )


def calls_table() -> rx.Component:
    return panel(
        "Calls",
        rx.cond(
            HistoryState.error != "",
            rx.cond(
                HistoryState.error_field == "",
                rx.callout(HistoryState.error, color_scheme="red", size="1", id="history-error"),
            ),
        ),
        _header(),
        rx.box(rx.foreach(HistoryState.rows, _row), width="100%", id="history-rows"),
        rx.cond(
            (HistoryState.rows.length() == 0) & HistoryState.loaded_once & ~HistoryState.loading,
            rx.text(
                rx.cond(
                    HistoryState.filtered,
                    "No call matches this filter.",
                    "No calls saved yet: they show here when they end.",
                ),
                size="2",
                color_scheme="gray",
                id="history-empty",
            ),
        ),
        rx.hstack(
            rx.cond(
                HistoryState.next_cursor != "",
                rx.button(
                    "Load more",
                    size="1",
                    variant="soft",
                    on_click=HistoryState.load_more,
                    loading=HistoryState.loading,
                    id="load-more",
                ),
            ),
            rx.button(
                "Refresh",
                size="1",
                variant="ghost",
                on_click=HistoryState.load,
                loading=HistoryState.loading,
                id="history-refresh",
            ),
            rx.text(HistoryState.rows.length(), " call(s) shown", size="1", color_scheme="gray"),
            spacing="3",
            align="center",
            wrap="wrap",
        ),
    )


def history_body() -> rx.Component:
    return rx.vstack(
        filters_panel(),
        calls_table(),
        spacing="3",
        padding=rx.breakpoints(initial="8px", sm="12px"),
        width="100%",
    )
