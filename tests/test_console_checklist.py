"""The setup checklist, against respx-mocked relay and Twilio."""

from __future__ import annotations

import httpx
import pytest
import respx

from console.checklist import ChecklistResult, FeedStatus, Step, live_update, run_checklist
from console.settings import ConsoleSettings
from console.twilio_service import TwilioService
from shared.secret import Secret

SID = "AC" + "a" * 32
BASE = f"https://api.twilio.com/2010-04-01/Accounts/{SID}"
PUBLIC = "https://abc.ngrok.app"
RELAY = "http://localhost:8081"
HEALTH = {"status": "ok", "version": "0.1.0", "calls": 0, "simulator": False, "draining": False}


def settings(**kw: object) -> ConsoleSettings:
    base: dict[str, object] = {
        "twilio_account_sid": SID,
        "twilio_auth_token": Secret("tok"),
        "public_url": PUBLIC,
    }
    base.update(kw)
    return ConsoleSettings(**base)  # type: ignore[arg-type]


def numbers(*voice_urls: str) -> dict[str, object]:
    return {
        "incoming_phone_numbers": [
            {
                "sid": f"PN{i:032d}",
                "phone_number": f"+1415555010{i}",
                "friendly_name": f"n{i}",
                "voice_url": url,
            }
            for i, url in enumerate(voice_urls)
        ],
        "next_page_uri": None,
    }


def mock_all(voice_urls: tuple[str, ...] = (f"{PUBLIC}/twiml",), health: object = HEALTH) -> None:
    respx.get(f"{RELAY}/health").respond(json=health)
    respx.get(f"{PUBLIC}/health").respond(json=health)
    respx.get(f"{BASE}.json").respond(
        json={"sid": SID, "friendly_name": "Acme", "status": "active"}
    )
    respx.get(f"{BASE}/IncomingPhoneNumbers.json").respond(json=numbers(*voice_urls))


async def check(s: ConsoleSettings, **kw: object) -> ChecklistResult:
    async with httpx.AsyncClient() as http:
        tw = TwilioService(s, http) if s.twilio_configured else None
        return await run_checklist(s, http, twilio=tw, **kw)  # type: ignore[arg-type]


def status(result: ChecklistResult) -> dict[str, str]:
    return {step.key: step.status for step in result.steps}


@respx.mock
async def test_all_green() -> None:
    mock_all()
    result = await check(settings(), feed=FeedStatus(online=True))
    assert set(status(result).values()) == {"ok"}
    assert result.ready
    assert "Acme" in result.steps[0].detail


@respx.mock
async def test_empty_webhook_is_a_failure_with_an_action() -> None:
    mock_all(voice_urls=("",))
    result = await check(settings(), feed=FeedStatus(online=True))
    webhook = next(s for s in result.steps if s.key == "webhook")
    assert webhook.status == "fail" and "empty" in webhook.detail
    assert "Update webhook" in webhook.todo and f"{PUBLIC}/twiml" in webhook.todo
    assert not result.ready


@respx.mock
async def test_wrong_webhook_and_choice_among_numbers() -> None:
    mock_all(voice_urls=("https://old.example/twiml", f"{PUBLIC}/twiml"))
    first = await check(settings(), feed=FeedStatus(online=True))
    assert status(first)["webhook"] == "fail"
    assert "old.example" in next(s for s in first.steps if s.key == "webhook").detail
    chosen = await check(settings(), feed=FeedStatus(online=True), chosen_number_sid=f"PN{1:032d}")
    assert chosen.chosen is not None and chosen.chosen.phone_number == "+14155550101"
    assert status(chosen)["webhook"] == "ok"


@respx.mock
async def test_ngrok_warning_page_is_not_the_relay() -> None:
    mock_all()
    respx.get(f"{PUBLIC}/health").respond(
        200, html="<html>You are about to visit abc.ngrok.app ... ngrok</html>"
    )
    result = await check(settings(), feed=FeedStatus(online=True))
    step = next(s for s in result.steps if s.key == "public_url")
    assert step.status == "fail" and "ngrok warning page" in step.detail and step.todo


@respx.mock
async def test_public_url_answering_as_another_relay_fails() -> None:
    mock_all()
    respx.get(f"{PUBLIC}/health").respond(json={**HEALTH, "version": "9.9.9"})
    assert status(await check(settings(), feed=FeedStatus(online=True)))["public_url"] == "fail"


@respx.mock
async def test_bad_credentials_and_relay_down_say_what_to_do() -> None:
    respx.get(f"{RELAY}/health").mock(side_effect=httpx.ConnectError("refused"))
    respx.get(f"{PUBLIC}/health").mock(side_effect=httpx.ConnectError("refused"))
    respx.get(f"{BASE}.json").respond(
        401, json={"code": 20003, "message": "Authenticate", "status": 401}
    )
    result = await check(settings())
    by_key = {s.key: s for s in result.steps}
    assert by_key["twilio"].status == "fail" and "20003" in by_key["twilio"].detail
    assert by_key["number"].status == "fail"
    assert by_key["relay"].status == "fail" and "make run" in by_key["relay"].todo
    assert by_key["feed"].status == "fail" and "RELAY_CONSOLE_TOKEN" in by_key["feed"].todo
    assert all(s.todo for s in result.steps if s.status == "fail")


@respx.mock
async def test_no_credentials_no_numbers() -> None:
    mock_all(voice_urls=())
    missing = await check(settings(twilio_account_sid="", twilio_auth_token=Secret("")))
    assert "TWILIO_ACCOUNT_SID" in missing.steps[0].todo
    none = await check(settings(), feed=FeedStatus(online=True))
    step = next(s for s in none.steps if s.key == "number")
    assert step.status == "fail" and step.link


@respx.mock
async def test_simulator_mode_skips_twilio_with_reason() -> None:
    respx.get(f"{RELAY}/health").respond(json={**HEALTH, "simulator": True})
    twilio_api = respx.route(host="api.twilio.com")
    result = await check(settings(public_url=""), feed=FeedStatus(online=True))
    assert status(result) == {
        "twilio": "skipped",
        "number": "skipped",
        "relay": "ok",
        "public_url": "skipped",
        "webhook": "skipped",
        "feed": "ok",
    }
    assert result.simulator and result.ready
    assert "simulator" in result.steps[0].detail
    assert not twilio_api.called


@pytest.mark.parametrize("body", [{"ok": True}, ["x"]])
@respx.mock
async def test_relay_url_not_a_relay(body: object) -> None:
    respx.get(f"{RELAY}/health").respond(json=body)
    result = await check(settings(twilio_account_sid="", public_url=""))
    assert status(result)["relay"] == "fail"


def test_feed_still_connecting_is_not_a_failure_and_not_ready() -> None:
    steps = [Step("relay", "Relay reachable", "ok", "x"), Step("feed", "Console feed", "ok")]
    connecting = live_update(
        steps,
        FeedStatus(connecting=True),
        version="1",
        relay_url=RELAY,
        live_calls=0,
        simulator=True,
    )
    assert [s.status for s in connecting] == ["ok", "pending"]


def test_live_update_follows_the_relay_going_away_and_calls_starting() -> None:
    steps = [
        Step("twilio", "Twilio account", "skipped"),
        Step("relay", "Relay reachable", "ok", "relay 1 at x, 0 live call(s)"),
        Step("feed", "Console feed", "ok", "receiving live events"),
    ]
    live = dict(version="1.2", relay_url=RELAY, simulator=True)
    busy = live_update(steps, FeedStatus(online=True), live_calls=2, **live)  # type: ignore[arg-type]
    assert "2 live call(s)" in busy[1].detail and busy[1].status == "ok"
    gone = FeedStatus(reason=f"cannot reach the relay at {RELAY} (nothing answers there)")
    down = live_update(busy, gone, live_calls=0, **live)  # type: ignore[arg-type]
    assert down[0].status == "skipped"
    assert down[1].status == "fail" and down[1].detail.startswith("relay offline: cannot reach")
    assert "make run" in down[1].todo
    assert down[2].status == "fail" and "reconnects by itself" in down[2].todo
    refused = FeedStatus(reason="the relay refused the console token", reachable=True)
    token = live_update(busy, refused, live_calls=0, **live)  # type: ignore[arg-type]
    assert token[1].status == "ok"  # it answered: reachable, just not ours to watch
    assert "RELAY_CONSOLE_TOKEN" in token[2].todo


@respx.mock
async def test_a_refused_openai_key_is_a_failed_step_with_what_to_fix() -> None:
    why = "OpenAI refused the API key (401): check OPENAI_API_KEY"
    mock_all(health={**HEALTH, "model": {"status": "refused", "detail": why}})
    result = await check(settings(), feed=FeedStatus(online=True))
    model = next(s for s in result.steps if s.key == "model")
    assert model.status == "fail" and why in model.detail
    assert "OPENAI_API_KEY" in model.todo and "restart the relay" in model.todo
    assert not result.ready
    assert [s.key for s in result.steps].index("model") == 3  # right after the relay


@respx.mock
async def test_a_model_not_tried_yet_is_not_a_failure() -> None:
    mock_all(health={**HEALTH, "model": {"status": "unknown", "detail": ""}})
    result = await check(settings(), feed=FeedStatus(online=True))
    assert status(result)["model"] == "unknown" and result.ready


def test_the_feed_brings_the_model_status_live() -> None:
    steps = [Step("relay", "Relay reachable", "ok", "x"), Step("feed", "Console feed", "ok")]
    live = dict(version="1", relay_url=RELAY, live_calls=0, simulator=False)
    online = FeedStatus(online=True)
    refused = {"status": "refused", "detail": "the key was refused (401)"}
    added = live_update(steps, online, model=refused, **live)  # type: ignore[arg-type]
    assert [(s.key, s.status) for s in added] == [
        ("relay", "ok"),
        ("model", "fail"),
        ("feed", "ok"),
    ]
    assert "the key was refused (401)" in added[1].detail
    fixed = live_update(added, online, model={"status": "ok", "detail": ""}, **live)  # type: ignore[arg-type]
    assert [(s.key, s.status) for s in fixed] == [("relay", "ok"), ("model", "ok"), ("feed", "ok")]
    assert live_update(fixed, online, **live)[1].status == "ok"  # type: ignore[arg-type]
