"""Twilio signatures, the TwiML the relay serves, and refusing calls politely when full."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from relay.harness import running_relay
from relay.security import StreamTokens
from relay.sim.caller import Hangup, Silence, SimCaller, parse_twiml, place_call

TOKEN = "f" * 32
ENV = {"TWILIO_AUTH_TOKEN": TOKEN, "RELAY_PREWARM": "false"}
PARAMS = {"CallSid": "CA" + "3" * 32, "From": "+15551230000", "To": "+15559870000"}


async def _post_twiml(base: str, params: dict[str, str], signature: str | None) -> tuple[int, str]:
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/twiml", data=params, headers=headers) as resp,
    ):
        return resp.status, await resp.text()


async def test_twiml_connects_the_call_to_the_stream_with_a_token_and_the_numbers() -> None:
    async with running_relay({"RELAY_PREWARM": "false"}) as relay:
        status, body = await _post_twiml(relay.base_url, PARAMS, None)
        assert status == 200
        url, params = parse_twiml(body)
        host = relay.base_url.split("//")[1]
        assert url == f"ws://{host}/call"  # wss:// for any public (non-loopback) URL
        assert params["from"] == "+15551230000" and params["to"] == "+15559870000"
        assert len(params["stream_token"]) >= 24
        root = ET.fromstring(body)
        assert root.tag == "Response" and root[0].tag == "Connect"


async def test_twiml_without_public_url_is_a_clear_500() -> None:
    # With a key (the simulated model accepts any), the relay expects real Twilio calls.
    async with running_relay({"PUBLIC_URL": "", "OPENAI_API_KEY": "sk-test-key"}) as relay:
        status, body = await _post_twiml(relay.base_url, PARAMS, None)
        assert status == 500
        assert "PUBLIC_URL" in body and "Traceback" not in body


async def test_in_simulator_mode_twiml_works_without_public_url() -> None:
    async with running_relay({"PUBLIC_URL": "", "RELAY_PREWARM": "false"}) as relay:
        record = await place_call(relay.base_url, steps=[Silence(ms=200), Hangup()])
        assert record.ok, record.summary()


async def test_twiml_signature_is_checked_when_an_auth_token_is_set() -> None:
    async with running_relay(ENV) as relay:
        url = f"{relay.base_url}/twiml"
        good = RequestValidator(TOKEN).compute_signature(url, PARAMS)
        forged = RequestValidator("0" * 32).compute_signature(url, PARAMS)
        assert (await _post_twiml(relay.base_url, PARAMS, None))[0] == 403
        assert (await _post_twiml(relay.base_url, PARAMS, forged))[0] == 403
        tampered = {**PARAMS, "From": "+19999999999"}
        assert (await _post_twiml(relay.base_url, tampered, good))[0] == 403
        assert (await _post_twiml(relay.base_url, PARAMS, good))[0] == 200


@pytest.mark.parametrize("signature", [None, "forged"])
async def test_media_stream_upgrade_needs_a_valid_signature(signature: str | None) -> None:
    async with running_relay(ENV) as relay:
        headers = {} if signature is None else {"X-Twilio-Signature": signature}
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await http.ws_connect(f"{relay.ws_url}/call", headers=headers)
            assert err.value.status == 403


async def test_a_signed_call_goes_through_end_to_end() -> None:
    async with running_relay(ENV) as relay:
        record = await place_call(
            relay.base_url, steps=[Silence(ms=300), Hangup()], auth_token=TOKEN
        )
        assert record.ok, record.summary()


async def test_a_stream_token_is_single_use_and_bound_to_its_call() -> None:
    tokens = StreamTokens(ttl_s=10)
    tok = tokens.issue("CA1", now=0.0)
    assert not tokens.redeem(tok, "CA2", now=1.0)  # wrong call: and now spent
    tok = tokens.issue("CA1", now=0.0)
    assert tokens.redeem(tok, "CA1", now=1.0)
    assert not tokens.redeem(tok, "CA1", now=1.0)  # used once already
    late = tokens.issue("CA1", now=0.0)
    assert not tokens.redeem(late, "CA1", now=11.0)  # expired
    assert not tokens.redeem("", "CA1", now=1.0)


async def test_when_full_new_calls_get_a_polite_busy_message() -> None:
    async with running_relay({"RELAY_MAX_CALLS": "1", "RELAY_PREWARM": "false"}) as relay:
        status, body = await _post_twiml(relay.base_url, PARAMS, None)
        _, params = parse_twiml(body)
        caller = SimCaller(
            f"{relay.ws_url}/call", custom_parameters=params, call_sid=PARAMS["CallSid"]
        )
        async with caller:
            assert await caller.do(Silence(ms=200))
            second = {**PARAMS, "CallSid": "CA" + "4" * 32}
            status, body = await _post_twiml(relay.base_url, second, None)
            assert status == 200
            assert "<Say>" in body and "busy" in body and "<Hangup" in body
            assert "<Connect>" not in body
