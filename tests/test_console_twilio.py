"""Twilio REST through the console's httpx transport, mocked with respx."""

from __future__ import annotations

from urllib.parse import parse_qs

import httpx
import pytest
import respx

from console.settings import ConsoleSettings
from console.twilio_service import TwilioError, twilio
from shared.secret import Secret

SID = "AC" + "a" * 32
CALL = "CA" + "b" * 32
REC = "RE" + "c" * 32
BASE = f"https://api.twilio.com/2010-04-01/Accounts/{SID}"


@pytest.fixture
def settings() -> ConsoleSettings:
    return ConsoleSettings(
        twilio_account_sid=SID,
        twilio_auth_token=Secret("tok"),
        public_url="https://relay.example.com",
    )


def form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


def number(voice_url: str = "") -> dict[str, object]:
    return {
        "sid": "PN" + "1" * 32,
        "phone_number": "+14155550100",
        "friendly_name": "(415) 555-0100",
        "voice_url": voice_url,
        "account_sid": SID,
    }


def recording(status: str = "in-progress") -> dict[str, object]:
    return {
        "sid": REC,
        "call_sid": CALL,
        "status": status,
        "duration": "-1",
        "channels": 2,
        "date_created": "Tue, 02 Sep 2025 10:00:00 +0000",
        "account_sid": SID,
    }


@respx.mock
async def test_lists_numbers(settings: ConsoleSettings) -> None:
    route = respx.get(f"{BASE}/IncomingPhoneNumbers.json").respond(
        json={"incoming_phone_numbers": [number("https://x/twiml")], "next_page_uri": None}
    )
    async with twilio(settings) as tw:
        numbers = await tw.list_numbers()
    assert [(n.phone_number, n.voice_url) for n in numbers] == [("+14155550100", "https://x/twiml")]
    assert route.calls.last.request.headers["authorization"].startswith("Basic ")


@respx.mock
async def test_updates_voice_webhook(settings: ConsoleSettings) -> None:
    sid = "PN" + "1" * 32
    route = respx.post(f"{BASE}/IncomingPhoneNumbers/{sid}.json").respond(
        json=number("https://relay.example.com/twiml")
    )
    async with twilio(settings) as tw:
        n = await tw.set_voice_url(sid, "https://relay.example.com/twiml")
    assert n.voice_url == "https://relay.example.com/twiml"
    assert form(route.calls.last.request) == {
        "VoiceUrl": ["https://relay.example.com/twiml"],
        "VoiceMethod": ["POST"],
    }


@respx.mock
async def test_places_call_with_relay_twiml(settings: ConsoleSettings) -> None:
    route = respx.post(f"{BASE}/Calls.json").respond(
        201, json={"sid": CALL, "status": "queued", "account_sid": SID}
    )
    async with twilio(settings) as tw:
        call = await tw.place_call("+14155550199", "+14155550100", record=True)
    assert (call.sid, call.status) == (CALL, "queued")
    sent = form(route.calls.last.request)
    assert sent["To"] == ["+14155550199"] and sent["From"] == ["+14155550100"]
    assert sent["Url"] == ["https://relay.example.com/twiml"]
    assert sent["Record"] == ["true"] and sent["RecordingChannels"] == ["dual"]


@respx.mock
async def test_call_is_not_recorded_unless_asked(settings: ConsoleSettings) -> None:
    route = respx.post(f"{BASE}/Calls.json").respond(201, json={"sid": CALL, "status": "queued"})
    async with twilio(settings) as tw:
        await tw.place_call("+14155550199", "+14155550100")
    assert "Record" not in form(route.calls.last.request)


@respx.mock
async def test_hang_up(settings: ConsoleSettings) -> None:
    route = respx.post(f"{BASE}/Calls/{CALL}.json").respond(
        json={"sid": CALL, "status": "completed"}
    )
    async with twilio(settings) as tw:
        await tw.hang_up(CALL)
    assert form(route.calls.last.request) == {"Status": ["completed"]}


@respx.mock
async def test_recording_start_pause_resume_stop_list(settings: ConsoleSettings) -> None:
    create = respx.post(f"{BASE}/Calls/{CALL}/Recordings.json").respond(201, json=recording())
    update = respx.post(f"{BASE}/Calls/{CALL}/Recordings/{REC}.json").mock(
        side_effect=lambda req: httpx.Response(200, json=recording(form(req)["Status"][0]))
    )
    respx.get(f"{BASE}/Calls/{CALL}/Recordings.json").respond(
        json={"recordings": [recording("completed")], "next_page_uri": None}
    )
    async with twilio(settings) as tw:
        rec = await tw.start_recording(CALL)
        assert (rec.sid, rec.status, rec.channels) == (REC, "in-progress", 2)
        assert form(create.calls.last.request) == {
            "RecordingChannels": ["dual"],
            "Trim": ["do-not-trim"],
        }
        assert (await tw.set_recording_status(CALL, REC, "paused")).status == "paused"
        assert form(update.calls.last.request) == {"Status": ["paused"], "PauseBehavior": ["skip"]}
        assert (await tw.set_recording_status(CALL, REC, "in-progress")).status == "in-progress"
        assert (await tw.set_recording_status(CALL, REC, "stopped")).status == "stopped"
        listed = await tw.list_recordings(CALL)
    assert [(r.sid, r.status) for r in listed] == [(REC, "completed")]


@respx.mock
async def test_recording_media_is_fetched_with_credentials(settings: ConsoleSettings) -> None:
    route = respx.get(f"{BASE}/Recordings/{REC}.mp3").respond(content=b"ID3audio")
    async with twilio(settings) as tw:
        assert await tw.recording_media(REC) == b"ID3audio"
        with pytest.raises(TwilioError, match="not a recording SID"):
            await tw.recording_media("../../Calls")
    assert route.calls.last.request.headers["authorization"].startswith("Basic ")


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (21211, "Invalid 'To' Phone Number", "21211: that is not a valid phone number"),
        (20003, "Authenticate", "20003: Twilio refused the credentials"),
        (21999, "Something new went wrong", "21999: Something new went wrong"),
    ],
)
@respx.mock
async def test_twilio_errors_become_readable(
    settings: ConsoleSettings, code: int, message: str, expected: str
) -> None:
    respx.post(f"{BASE}/Calls.json").respond(
        400, json={"code": code, "message": message, "more_info": "", "status": 400}
    )
    async with twilio(settings) as tw:
        with pytest.raises(TwilioError) as err:
            await tw.place_call("+1555", "+14155550100")
    assert str(err.value).startswith(expected)
    assert "Traceback" not in str(err.value) and "\x1b" not in str(err.value)


@respx.mock
async def test_network_failure_is_readable(settings: ConsoleSettings) -> None:
    respx.get(f"{BASE}.json").mock(side_effect=httpx.ConnectError("boom"))
    async with twilio(settings) as tw:
        with pytest.raises(TwilioError, match="cannot reach Twilio"):
            await tw.account_name()


async def test_unconfigured_twilio_says_what_to_set() -> None:
    with pytest.raises(TwilioError, match="TWILIO_ACCOUNT_SID"):
        async with twilio(ConsoleSettings()):
            pass
