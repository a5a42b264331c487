"""Plain HTTP to the relay: /health (is it up, and is it really the relay) and /tools."""

from __future__ import annotations

from typing import Any

import httpx


def is_relay_health(body: Any) -> bool:
    return isinstance(body, dict) and "status" in body and "version" in body and "calls" in body


async def relay_health(http: httpx.AsyncClient, base_url: str) -> tuple[dict[str, Any] | None, str]:
    """(health JSON, "") or (None, why not)."""
    try:
        resp = await http.get(
            f"{base_url}/health",
            # ngrok shows browsers an interstitial; Twilio never sees it, so neither should we.
            headers={"ngrok-skip-browser-warning": "1"},
            timeout=5.0,
        )
    except httpx.HTTPError as exc:
        return None, f"no answer from {base_url} ({exc.__class__.__name__})"
    if resp.status_code != 200:
        return None, f"{base_url}/health answered HTTP {resp.status_code}"
    try:
        body = resp.json()
    except ValueError:
        kind = "an ngrok warning page" if "ngrok" in resp.text.lower() else "a web page"
        return None, f"{base_url}/health answered with {kind}, not the relay's JSON"
    if not is_relay_health(body):
        return None, f"{base_url}/health answered JSON that is not the relay's health"
    return body, ""


async def relay_tools(http: httpx.AsyncClient, base_url: str) -> list[dict[str, Any]]:
    """The function schemas the relay runs itself (empty when it cannot be asked)."""
    try:
        resp = await http.get(f"{base_url}/tools", timeout=5.0)
        body = resp.json() if resp.status_code == 200 else []
    except (httpx.HTTPError, ValueError):
        return []
    return (
        [t for t in body if isinstance(t, dict) and t.get("name")] if isinstance(body, list) else []
    )
