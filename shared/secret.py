"""A string that never shows itself in repr, str, logs or JSON by accident."""

from __future__ import annotations

import hmac


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def matches(self, candidate: str) -> bool:
        """Constant-time comparison with a presented value."""
        return bool(self._value) and hmac.compare_digest(self._value.encode(), candidate.encode())
