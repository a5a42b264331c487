"""The post-call webhook: signed as Standard Webhooks does, checked by a real HTTP server
with verify(), retried after a 500, never retried after a refusal, never holding up the
call that ended."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay import metrics as relay_metrics
from relay.store import CallRecord, EndReason, Store, Turn, from_env
from relay.store.webhook import (
    WebhookVerificationError,
    sign,
    signed_headers,
    signing_key,
    verify,
)
from shared.envparse import SettingsError

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def test_signatures_match_the_standard_webhooks_test_vector() -> None:
    # The reference libraries' own test case.
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    assert (
        sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_verify_accepts_genuine_deliveries_only() -> None:
    body = b'{"type":"call.ended"}'
    headers = signed_headers(signing_key(SECRET), "msg_CA1", body, now=1_000_000)
    verify(SECRET, headers, body, now=1_000_010)
    # Header names are case-insensitive; several signatures (a key rotation) are fine.
    upper = {k.upper(): v for k, v in headers.items()}
    upper["WEBHOOK-SIGNATURE"] = "v1,bm90IGl0 v2,whatever " + headers["webhook-signature"]
    verify(SECRET, upper, body, now=1_000_010)
    bad: list[tuple[dict[str, str], bytes, str]] = [
        (headers, b'{"type":"call.ended "}', "tampered body"),
        ({**headers, "webhook-id": "msg_CA2"}, body, "another id"),
        ({**headers, "webhook-timestamp": "1000001"}, body, "another timestamp"),
        ({k: v for k, v in headers.items() if k != "webhook-signature"}, body, "unsigned"),
        ({**headers, "webhook-timestamp": "soon"}, body, "not a timestamp"),
    ]
    for hdrs, data, why in bad:
        with pytest.raises(WebhookVerificationError):
            verify(SECRET, hdrs, data, now=1_000_010)
            pytest.fail(why)
    with pytest.raises(WebhookVerificationError):
        verify("whsec_" + base64.b64encode(b"x" * 32).decode(), headers, body, now=1_000_010)
    with pytest.raises(WebhookVerificationError, match="too far"):
        verify(SECRET, headers, body, now=1_000_000 + 301)  # a replay, later


def test_secrets_in_either_form() -> None:
    assert signing_key(SECRET) == b"k" * 32
    plain = "correct horse battery staple, really"
    assert signing_key(plain) == plain.encode()
    with pytest.raises(ValueError, match="at least 24 bytes"):
        signing_key("short")
    with pytest.raises(ValueError, match="base64"):
        signing_key("whsec_not base64!")
    with pytest.raises(SettingsError, match="RELAY_POSTCALL_WEBHOOK_SECRET"):
        from_env({"RELAY_POSTCALL_WEBHOOK_URL": "https://example.test/hook"})
    with pytest.raises(SettingsError, match="RELAY_POSTCALL_WEBHOOK_SECRET"):
        from_env(
            {"RELAY_POSTCALL_WEBHOOK_URL": "https://x.test", "RELAY_POSTCALL_WEBHOOK_SECRET": "abc"}
        )
    with pytest.raises(SettingsError, match="RELAY_POSTCALL_WEBHOOK_URL"):
        from_env(
            {"RELAY_POSTCALL_WEBHOOK_URL": "ftp://x.test", "RELAY_POSTCALL_WEBHOOK_SECRET": SECRET}
        )


@dataclass
class Receiver:
    """A webhook receiver that verifies every delivery and answers from a script."""

    answers: list[int]
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if self.release is not None:
            await self.release.wait()
        body = await request.read()
        try:
            verify(SECRET, request.headers, body)
            verified = True
        except WebhookVerificationError:
            verified = False
        self.deliveries.append(
            {"headers": dict(request.headers), "body": body, "verified": verified}
        )
        status = self.answers.pop(0) if self.answers else 200
        if status == 200:
            self.arrived.set()
        return web.Response(status=status)


async def serve(receiver: Receiver) -> TestServer:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = TestServer(app)
    await server.start_server()
    return server


@pytest.fixture
async def receiver_and_store(
    request: pytest.FixtureRequest, tmp_path: Any
) -> AsyncIterator[tuple[Receiver, Store]]:
    receiver = Receiver(answers=list(getattr(request, "param", [])))
    server = await serve(receiver)
    env = {
        "RELAY_DATA_DIR": str(tmp_path),
        "RELAY_POSTCALL_WEBHOOK_URL": str(server.make_url("/hook")),
        "RELAY_POSTCALL_WEBHOOK_SECRET": SECRET,
        "RELAY_REDACT_NUMBERS": "true",
    }
    settings = dataclasses.replace(from_env(env), webhook_backoff_s=0.05)
    store = await Store.open(settings)
    try:
        yield receiver, store
    finally:
        await store.close(timeout=2)
        await server.close()


def ended_call(sid: str = "CA" + "9" * 32) -> CallRecord:
    return CallRecord(
        call_sid=sid,
        started_at=time.time() - 30,
        ended_at=time.time(),
        end_reason=EndReason.AGENT_ENDED,
        from_="+15551234567",
        to="+15557654321",
        turns=[Turn(role="user", text="thanks, bye")],
    )


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("receiver_and_store", [[500, 503]], indirect=True)
async def test_the_webhook_is_signed_retried_after_errors_and_verified(
    receiver_and_store: tuple[Receiver, Store],
) -> None:
    receiver, store = receiver_and_store
    delivered_before = relay_metrics.value("relay_history_webhooks_total", outcome="delivered")
    record = ended_call()
    store.submit(record)
    await asyncio.wait_for(receiver.arrived.wait(), 10)

    assert [d["verified"] for d in receiver.deliveries] == [True, True, True]
    ids = {d["headers"]["webhook-id"] for d in receiver.deliveries}
    assert ids == {"msg_" + record.call_sid}  # one id across retries: an idempotency key
    body = msgspec.json.decode(receiver.deliveries[-1]["body"])
    assert body["type"] == "call.ended"
    assert body["timestamp"].endswith("Z")
    data = body["data"]
    assert data["call_sid"] == record.call_sid and data["end_reason"] == "agent_ended"
    assert data["turns"][0]["text"] == "thanks, bye"
    assert (data["from"], data["to"]) == ("***4567", "***4321")  # redacted before sending
    # The same record was stored.
    assert await store.flush(5)
    stored = await store.get_call(record.call_sid)
    assert stored is not None and msgspec.to_builtins(stored) == data
    assert relay_metrics.value("relay_history_webhooks_total", outcome="delivered") == (
        delivered_before + 1
    )


@pytest.mark.parametrize("receiver_and_store", [[400]], indirect=True)
async def test_a_refusal_is_not_retried(receiver_and_store: tuple[Receiver, Store]) -> None:
    receiver, store = receiver_and_store
    failed_before = relay_metrics.value("relay_history_webhooks_total", outcome="failed")
    store.submit(ended_call())
    await until(
        lambda: (
            relay_metrics.value("relay_history_webhooks_total", outcome="failed") > failed_before
        )
    )
    assert len(receiver.deliveries) == 1


async def test_the_call_never_waits_for_the_webhook(
    receiver_and_store: tuple[Receiver, Store],
) -> None:
    receiver, store = receiver_and_store
    receiver.release = asyncio.Event()  # the receiver hangs until told
    store.submit(ended_call("CA-slow"))  # returns at once
    store.submit(CallRecord(call_sid="CA-live", started_at=time.time()))  # not ended: no webhook
    assert await store.flush(5)  # the record is written meanwhile
    assert store.webhook is not None and store.webhook.in_flight == 1
    receiver.release.set()
    await asyncio.wait_for(receiver.arrived.wait(), 10)
    assert [msgspec.json.decode(d["body"])["data"]["call_sid"] for d in receiver.deliveries] == [
        "CA-slow"
    ]
