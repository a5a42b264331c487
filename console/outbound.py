"""Outbound calls: which caller IDs the page offers, and checking a call before placing it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from console.phone import PhoneNumberError, normalize_e164


def caller_id_options(account_numbers: Iterable[str], default: str) -> list[str]:
    """TWILIO_OUTBOUND_NUMBER (if set) first, then the account's numbers, each once."""
    seen: list[str] = []
    for number in (default, *account_numbers):
        if number and number not in seen:
            seen.append(number)
    return seen


def initial_caller_id(current: str, options: list[str], default: str) -> str:
    """Keep the user's pick while it is still offered; else the default; else the first."""
    if current and (current in options or not options):
        return current
    return default or (options[0] if options else "")


@dataclass(frozen=True)
class OutboundCall:
    to: str
    from_: str


def check_call(to_raw: str, caller_id: str, options: list[str]) -> OutboundCall:
    """Both numbers in E.164, the caller ID one of the offered numbers (if any are known)."""
    to = normalize_e164(to_raw)
    if not caller_id.strip():
        raise PhoneNumberError(
            "choose a caller ID: set TWILIO_OUTBOUND_NUMBER or buy a number on the account"
        )
    from_ = normalize_e164(caller_id)
    if options and from_ not in options:
        raise PhoneNumberError(
            f"{from_} is not one of the account's numbers: choose one of {', '.join(options)}"
        )
    if to == from_:
        raise PhoneNumberError("the number to call is the caller ID itself")
    return OutboundCall(to=to, from_=from_)


def twilio_unavailable(twilio_configured: bool, simulator: bool) -> str:
    """Why outbound calls and recordings cannot work here, as one line ("" when they can).

    They go through the Twilio REST API to a real phone line, which the simulator has not.
    """
    if simulator:
        return (
            "Simulator mode: outbound calls and recordings need a real phone line. To use "
            "them, set OPENAI_API_KEY for the relay and TWILIO_ACCOUNT_SID, "
            "TWILIO_AUTH_TOKEN and PUBLIC_URL for relay and console, then restart both."
        )
    if not twilio_configured:
        return (
            "Outbound calls and recordings use Twilio: set TWILIO_ACCOUNT_SID and "
            "TWILIO_AUTH_TOKEN in .env, then restart the console."
        )
    return ""
