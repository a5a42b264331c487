"""Automatic call recording: once per CallSid, only for real Twilio calls, errors readable."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from console import recording
from console import settings as console_settings
from console.recording import (
    CallRecording,
    Recorder,
    auto_record_blocker,
    not_recordable,
    should_record,
)
from console.settings import ConsoleSettings
from console.twilio_service import twilio
from shared.secret import Secret

SID = "AC" + "a" * 32
CALL = "CA" + "b" * 32
REC = "RE" + "c" * 32
BASE = f"https://api.twilio.com/2010-04-01/Accounts/{SID}"


def make_settings(record: bool = True, creds: bool = True) -> ConsoleSettings:
    return ConsoleSettings(
        twilio_account_sid=SID if creds else "",
        twilio_auth_token=Secret("tok" if creds else ""),
        record_calls=record,
    )


def recording_json(status: str = "in-progress", sid: str = REC) -> dict[str, object]:
    return {"sid": sid, "call_sid": CALL, "status": status, "channels": 2, "account_sid": SID}


def test_records_only_with_the_flag_credentials_and_a_real_relay() -> None:
    assert auto_record_blocker(make_settings(), simulator=False) == ""
    assert "CONSOLE_RECORD_CALLS" in auto_record_blocker(make_settings(record=False), False)
    assert "not configured" in auto_record_blocker(make_settings(creds=False), False)
    assert "simulator" in auto_record_blocker(make_settings(), simulator=True)
    for settings, simulator in (
        (make_settings(record=False), False),
        (make_settings(creds=False), False),
        (make_settings(), True),
    ):
        assert not should_record(Recorder(), settings, simulator, CALL)


def test_each_call_is_claimed_once_whatever_the_number_of_browsers() -> None:
    rec = Recorder()
    feeds = [should_record(rec, make_settings(), False, CALL) for _ in range(3)]
    assert feeds == [True, False, False]
    assert rec.get(CALL) == CallRecording(CALL, status="starting", auto=True)
    assert not should_record(rec, make_settings(), False, "not-a-call-sid")


def test_an_outbound_call_asked_to_be_recorded_is_recorded_without_the_flag() -> None:
    rec = Recorder()
    rec.want(CALL)
    assert should_record(rec, make_settings(record=False), False, CALL)
    assert rec.get(CALL) == CallRecording(CALL, status="starting", auto=False)


def test_recorder_forgets_the_oldest_calls() -> None:
    rec = Recorder(limit=2)
    for sid in ("CA1", "CA2", "CA3"):
        rec.claim(sid)
    assert rec.get("CA1") is None and rec.get("CA3") is not None


@respx.mock
async def test_start_records_dual_channel_and_keeps_the_sid() -> None:
    route = respx.post(f"{BASE}/Calls/{CALL}/Recordings.json").respond(201, json=recording_json())
    rec = Recorder()
    assert rec.claim(CALL)
    async with twilio(make_settings()) as tw:
        result = await recording.start(rec, tw, CALL)
    assert (result.recording_sid, result.status, result.error) == (REC, "in-progress", "")
    assert rec.get(CALL) == result
    assert parse_qs(route.calls.last.request.content.decode())["RecordingChannels"] == ["dual"]
    assert result.describe() == f"recording {REC} in-progress (automatic), dual channel"


@respx.mock
async def test_a_twilio_error_is_kept_readable() -> None:
    respx.post(f"{BASE}/Calls/{CALL}/Recordings.json").respond(
        400, json={"code": 21220, "message": "Invalid call state", "status": 400}
    )
    rec = Recorder()
    rec.claim(CALL)
    async with twilio(make_settings()) as tw:
        result = await recording.start(rec, tw, CALL)
    assert result.status == "failed" and result.error.startswith("21220")
    assert result.describe().startswith("recording failed (automatic): 21220")
    assert "Traceback" not in result.describe()


@respx.mock
async def test_a_call_already_recorded_is_not_recorded_twice() -> None:
    create = respx.post(f"{BASE}/Calls/{CALL}/Recordings.json").respond(201, json=recording_json())
    respx.get(f"{BASE}/Calls/{CALL}/Recordings.json").respond(
        json={"recordings": [recording_json("paused")], "next_page_uri": None}
    )
    rec = Recorder()
    rec.claim(CALL)
    async with twilio(make_settings()) as tw:
        result = await recording.start(rec, tw, CALL, check_existing=True)
    assert (result.recording_sid, result.status) == (REC, "paused")
    assert not create.called


@pytest.fixture
def console_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    fresh = Recorder()
    monkeypatch.setattr(console_settings, "_cached", make_settings())
    monkeypatch.setattr(recording, "RECORDER", fresh)
    yield fresh


@respx.mock
async def test_every_open_browser_hears_about_the_recording(console_env: Recorder) -> None:
    from console.state import feed

    respx.post(f"{BASE}/Calls/{CALL}/Recordings.json").respond(201, json=recording_json())
    noted = respx.post(f"http://localhost:8081/api/calls/{CALL}/recordings").respond(
        200, json={"call_sid": CALL, "live": True}
    )
    queues: dict[str, asyncio.Queue[dict[str, Any]]] = {"a": asyncio.Queue(), "b": asyncio.Queue()}
    saved = dict(feed.QUEUES)
    feed.QUEUES.clear()
    feed.QUEUES.update(queues)
    try:
        assert should_record(console_env, make_settings(), False, CALL)
        await feed._record(CALL, check_existing=False)
    finally:
        feed.QUEUES.clear()
        feed.QUEUES.update(saved)
    for queue in queues.values():
        event = queue.get_nowait()
        assert event["type"] == "_recording" and event["call_sid"] == CALL
        assert REC in event["line"]
    assert console_env.get(CALL) is not None
    assert console_env.get(CALL).recording_sid == REC  # type: ignore[union-attr]
    # The relay was told, so the call's history record keeps the recording.
    assert noted.called
    assert json.loads(noted.calls.last.request.content) == {"recording_sid": REC}


@respx.mock
async def test_a_network_failure_while_recording_is_readable(console_env: Recorder) -> None:
    from console.state import feed

    respx.post(f"{BASE}/Calls/{CALL}/Recordings.json").mock(side_effect=httpx.ConnectError("x"))
    console_env.claim(CALL)
    await feed._record(CALL, check_existing=False)
    rec = console_env.get(CALL)
    assert rec is not None and rec.error == "cannot reach Twilio to start recording: ConnectError"


def test_a_running_recording_ends_with_its_call() -> None:
    rec = CallRecording(CALL, REC, "in-progress", auto=True)
    assert "in-progress" in rec.describe(call_live=True)
    assert rec.describe(call_live=False) == (
        f"recording {REC} ended with the call (automatic), dual channel"
    )
    assert "stopped" in CallRecording(CALL, REC, "stopped").describe(call_live=False)


def test_only_calls_twilio_carries_to_the_relay_can_be_recorded_from_the_console() -> None:
    assert not_recordable("inbound") == not_recordable("outbound") == ""
    assert "nothing to record" in not_recordable("browser")
    assert "SIP Trunk" in not_recordable("sip")
