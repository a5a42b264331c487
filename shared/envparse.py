"""Small typed readers for environment variables, each failing with the variable's name."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """A bad environment value; the message is one line naming the variable."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(f"{name}: {message}")


Env = Mapping[str, str]


def text(env: Env, name: str, default: str = "") -> str:
    return env.get(name, default).strip() or default


def integer(env: Env, name: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"expected an integer, got {raw!r}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise SettingsError(name, f"{value} is out of range [{lo}, {hi}]")
    return value


def number(env: Env, name: str, default: float, lo: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"expected a number, got {raw!r}") from None
    if value < lo:
        raise SettingsError(name, f"must be at least {lo}, got {value}")
    return value


def boolean(env: Env, name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(name, f"expected true or false, got {raw!r}")


def url(
    env: Env, name: str, default: str = "", schemes: tuple[str, ...] = ("http", "https")
) -> str:
    raw = env.get(name, "").strip() or default
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not parts.netloc:
        raise SettingsError(
            name,
            f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}, got {raw!r}",
        )
    return raw.rstrip("/")


def json_value(env: Env, name: str) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(name, f"malformed JSON ({exc.msg} at column {exc.colno})") from None
