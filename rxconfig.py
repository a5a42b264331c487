"""Reflex config for the console (the app lives in the `console` package; see console/app.py).

Kept at the repository root so `console` stays an importable package for plain tests and
`reflex` runs from the checkout root, where `.web/` is already git-ignored.
"""

import os

import reflex as rx

config = rx.Config(
    app_name="console",
    app_module_import="console.app",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    frontend_port=int(os.environ.get("CONSOLE_PORT", "3000")),
    backend_port=int(os.environ.get("CONSOLE_BACKEND_PORT", "8000")),
    plugins=[
        rx.plugins.RadixThemesPlugin(
            theme=rx.theme(accent_color="indigo", radius="medium", scaling="95%")
        )
    ],
    disable_plugins=[rx.plugins.SitemapPlugin],
)
