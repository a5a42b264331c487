# mypy: disable-error-code="index, operator, no-any-return, attr-defined"
# (Reflex Vars are built dynamically from state annotations; mypy cannot follow them.)
"""Bits shared by the panels."""

from __future__ import annotations

import reflex as rx

STATUS_COLOR = {"ok": "green", "fail": "red", "skipped": "gray"}


def panel(title: str, *children: rx.Component, **props: object) -> rx.Component:
    return rx.card(
        rx.vstack(rx.heading(title, size="3"), *children, spacing="2", width="100%"),
        width="100%",
        min_width="0",
        **props,
    )


def status_badge(status: rx.Var[str]) -> rx.Component:
    return rx.badge(
        status,
        color_scheme=rx.match(
            status,
            ("ok", "green"),
            ("done", "green"),
            ("active", "green"),
            ("fail", "red"),
            ("failed", "red"),
            ("timeout", "red"),
            ("ended", "gray"),
            ("pending", "amber"),
            ("running", "blue"),
            ("connecting", "blue"),
            ("skipped", "gray"),
            "gray",
        ),
        variant="soft",
    )


def mono(text: rx.Var[str] | str, **props: object) -> rx.Component:
    return rx.code_block(text, language="json", wrap_long_lines=True, font_size="12px", **props)
