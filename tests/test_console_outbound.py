"""Outbound calls: caller ID choices, validation, and hanging up (Twilio first, else relay)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import pytest
import respx

from console.hangup import hang_up
from console.outbound import caller_id_options, check_call, initial_caller_id
from console.phone import PhoneNumberError
from console.settings import ConsoleSettings
from shared.secret import Secret

SID = "AC" + "a" * 32
CALL = "CA" + "b" * 32
BASE = f"https://api.twilio.com/2010-04-01/Accounts/{SID}"
A, B = "+14155550100", "+14155550101"


def test_caller_ids_offer_the_default_first_then_the_account_numbers() -> None:
    assert caller_id_options([A, B], "") == [A, B]
    assert caller_id_options([A, B], B) == [B, A]
    assert caller_id_options([], B) == [B]
    assert caller_id_options([], "") == []


def test_initial_caller_id() -> None:
    assert initial_caller_id("", [B, A], B) == B  # TWILIO_OUTBOUND_NUMBER by default
    assert initial_caller_id("", [A, B], "") == A
    assert initial_caller_id(A, [B, A], B) == A  # the user's pick stays
    assert initial_caller_id("+19999999999", [A], "") == A  # no longer offered
    assert initial_caller_id("", [], "") == ""


def test_check_call_normalises_and_validates() -> None:
    call = check_call("+1 (415) 555-0199", A, [A, B])
    assert (call.to, call.from_) == ("+14155550199", A)
    assert check_call("004155550199", A, []).to == "+4155550199"
    with pytest.raises(PhoneNumberError, match=r"E\.164"):
        check_call("+1", A, [A])
    with pytest.raises(PhoneNumberError, match="country code"):
        check_call("4155550199", A, [A])
    with pytest.raises(PhoneNumberError, match="TWILIO_OUTBOUND_NUMBER"):
        check_call("+14155550199", "", [])
    with pytest.raises(PhoneNumberError, match="not one of the account's numbers"):
        check_call("+14155550199", "+14155550177", [A, B])
    with pytest.raises(PhoneNumberError, match="caller ID itself"):
        check_call(A, A, [A])


class Relay:
    def __init__(self, answer: str = "") -> None:
        self.sent: list[dict[str, Any]] = []
        self.answer = answer

    async def __call__(self, command: dict[str, Any]) -> str:
        self.sent.append(command)
        return self.answer


def twilio_settings(configured: bool = True) -> ConsoleSettings:
    return ConsoleSettings(
        twilio_account_sid=SID if configured else "",
        twilio_auth_token=Secret("tok" if configured else ""),
    )


@respx.mock
async def test_real_calls_hang_up_through_twilio() -> None:
    route = respx.post(f"{BASE}/Calls/{CALL}.json").respond(
        json={"sid": CALL, "status": "completed"}
    )
    relay = Relay()
    result = await hang_up(CALL, twilio_settings(), simulator=False, send=relay)
    assert (result.via, result.error) == ("twilio", False)
    assert parse_qs(route.calls.last.request.content.decode()) == {"Status": ["completed"]}
    assert relay.sent == []


@respx.mock
async def test_simulated_or_unconfigured_calls_end_through_the_relay() -> None:
    for settings, simulator in ((twilio_settings(), True), (twilio_settings(False), False)):
        relay = Relay()
        result = await hang_up(CALL, settings, simulator=simulator, send=relay)
        assert (result.via, result.error, result.message) == ("relay", False, "Hanging up…")
        assert relay.sent == [{"type": "call.end", "call_sid": CALL}]
    assert not respx.calls


@respx.mock
async def test_a_twilio_refusal_falls_back_to_the_relay() -> None:
    respx.post(f"{BASE}/Calls/{CALL}.json").respond(
        404, json={"code": 20404, "message": "The requested resource was not found", "status": 404}
    )
    relay = Relay()
    result = await hang_up(CALL, twilio_settings(), simulator=False, send=relay)
    assert result.via == "relay" and result.error
    assert "20404" in result.message and "asked the relay" in result.message
    assert relay.sent == [{"type": "call.end", "call_sid": CALL}]


async def test_relay_offline_is_said_plainly() -> None:
    relay = Relay("relay offline: the command was not sent")
    result = await hang_up(CALL, twilio_settings(False), simulator=False, send=relay)
    assert result.error and result.message == "relay offline: the command was not sent"
