"""E.164 phone numbers: what Twilio accepts as `To` and `From`."""

from __future__ import annotations

import re

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SEPARATORS = re.compile(r"[\s\-().]")


class PhoneNumberError(ValueError):
    pass


def normalize_e164(raw: str) -> str:
    """`+1 (415) 555-0100` -> `+14155550100`; anything else says what E.164 looks like."""
    compact = _SEPARATORS.sub("", raw.strip())
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not compact:
        raise PhoneNumberError("enter a phone number in E.164 format, like +14155550100")
    if not compact.startswith("+"):
        raise PhoneNumberError(
            f"{raw.strip()!r} has no country code: start with + and the country code, "
            "like +14155550100"
        )
    if not E164.match(compact):
        raise PhoneNumberError(
            f"{raw.strip()!r} is not an E.164 number: + then 7 to 15 digits, like +14155550100"
        )
    return compact


def mask(number: str) -> str:
    """Show only the last 4 digits (for screenshots and shoulder-surfers)."""
    return "•" * max(len(number) - 4, 0) + number[-4:]
