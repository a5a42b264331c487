"""Typed keys for what the relay keeps on its aiohttp application."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .context import RelayContext

RELAY: web.AppKey[RelayContext] = web.AppKey("relay", "RelayContext")  # type: ignore[arg-type]
# Open /logs sockets, closed first on shutdown so a watching console never holds it up.
CONSOLES: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("consoles", set)
