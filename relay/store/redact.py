"""RELAY_REDACT_NUMBERS: keep only the last four digits of phone numbers.

Applied to a record before it is queued, so a full number never reaches the database, the
history API or the post-call webhook.
"""

from __future__ import annotations

import msgspec

from .records import CallRecord

MASK = "***"
# Fewer digits than this is not a phone number (a client name, a short code): kept as is.
MIN_DIGITS = 5


def redact_number(value: str) -> str:
    """'+15551234567' -> '***4567'; 'client:alice' -> 'client:alice'."""
    digits = "".join(c for c in value if c.isdigit())
    if len(digits) < MIN_DIGITS:
        return value
    return MASK + digits[-4:]


def redact_record(record: CallRecord) -> CallRecord:
    return msgspec.structs.replace(
        record, from_=redact_number(record.from_), to=redact_number(record.to)
    )


def number_query(value: str, redacted: bool) -> str:
    """What a number filter looks for: its digits (the last four when numbers are redacted)."""
    digits = "".join(c for c in value if c.isdigit())
    if not digits:
        return value.strip()
    return digits[-4:] if redacted else digits
