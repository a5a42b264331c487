"""The post-call webhook: each ended call's record, POSTed and signed as Standard Webhooks
does (standardwebhooks.com), retried with backoff, never blocking a call.

Headers:
    webhook-id         msg_<CallSid>: the same on every retry, an idempotency key
    webhook-timestamp  unix seconds of this attempt (a retry is signed anew)
    webhook-signature  v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">

The secret (RELAY_POSTCALL_WEBHOOK_SECRET) is either `whsec_<base64>`, as the Standard
Webhooks libraries generate and expect (the key is the decoded bytes), or any other string,
whose UTF-8 bytes are the key. Either way it must give at least 24 bytes of key. Receivers
can check a delivery with verify() below, or any Standard Webhooks library (with a whsec_
secret: those libraries base64-decode whatever they are given).

Body: {"type": "call.ended", "timestamp": "<ISO 8601 end time>", "data": <the call record>}.
2xx is delivered; 5xx, 408, 429, timeouts and connection errors are retried with exponential
backoff up to `attempts`; any other 4xx is a refusal and not retried.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import random
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import aiohttp
import msgspec

from . import metrics
from .records import CallRecord

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
MIN_KEY_BYTES = 24  # the Standard Webhooks minimum for HMAC keys
TOLERANCE_S = 300  # a receiver refuses timestamps further than this from its clock
RETRY_STATUSES = frozenset({408, 429})
MAX_IN_FLIGHT = 100  # deliveries retrying at once; more are dropped (and counted)

_encoder = msgspec.json.Encoder()


class WebhookVerificationError(ValueError):
    pass


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: whsec_<base64> decoded, else the string's UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a whsec_ secret must be base64 after the prefix") from None
    else:
        key = secret.encode()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"too short: at least {MIN_KEY_BYTES} bytes of key; generate one with python -c "
            "\"import base64,os; print('whsec_'+base64.b64encode(os.urandom(32)).decode())\""
        )
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: v1,<base64 HMAC-SHA256>."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    key: bytes, msg_id: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    ts = int(time.time() if now is None else now)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(key, msg_id, ts, body),
    }


def verify(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Check a delivery as a receiver should; raises WebhookVerificationError if not genuine.

    `headers` is looked up case-insensitively; `body` must be the raw bytes received.
    """
    key = secret if isinstance(secret, bytes) else signing_key(secret)
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not unix seconds") from None
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is too far from now (a replay?)")
    expected = sign(key, msg_id, ts, body).encode()
    for candidate in signatures.split():
        if hmac.compare_digest(candidate.encode(), expected):
            return
    raise WebhookVerificationError("no matching v1 signature")


def message_id(call_sid: str) -> str:
    # No '.' may appear in the id (it delimits the signed content).
    return "msg_" + re.sub(r"[^A-Za-z0-9_-]", "_", call_sid)


def payload(record: CallRecord) -> bytes:
    when = record.ended_at if record.ended_at is not None else time.time()
    stamp = datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")
    return _encoder.encode({"type": "call.ended", "timestamp": stamp, "data": record})


class WebhookSender:
    """Delivers call records to one URL, each in its own task; send() never waits."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        attempts: int = 8,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        timeout_s: float = 10.0,
        max_in_flight: int = MAX_IN_FLIGHT,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = url
        self._key = signing_key(secret)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_in_flight = max_in_flight
        self._http = http
        self._own_http = http is None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def send(self, record: CallRecord) -> None:
        """Queue a delivery; never raises, never waits."""
        try:
            if len(self._tasks) >= self.max_in_flight:
                metrics.webhook("dropped")
                log.warning(
                    "post-call webhook for %s dropped: %d deliveries already pending",
                    record.call_sid,
                    len(self._tasks),
                    extra={"call_sid": record.call_sid},
                )
                return
            task = asyncio.get_running_loop().create_task(
                self._deliver(message_id(record.call_sid), payload(record), record.call_sid)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        except Exception:
            log.exception("post-call webhook for %s not sent", record.call_sid)

    async def _deliver(self, msg_id: str, body: bytes, call_sid: str) -> None:
        extra = {"call_sid": call_sid}
        for attempt in range(1, self.attempts + 1):
            problem = await self._post(msg_id, body)
            if problem is None:
                metrics.webhook("delivered")
                if attempt > 1:
                    log.info("post-call webhook delivered on attempt %d", attempt, extra=extra)
                return
            retry, why = problem
            if not retry:
                metrics.webhook("failed")
                log.warning("post-call webhook refused (%s); not retried", why, extra=extra)
                return
            if attempt == self.attempts:
                break
            metrics.webhook("retried")
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
            delay *= random.uniform(0.8, 1.2)  # spread the retries of calls that ended together
            log.info("post-call webhook failed (%s); retry in %.1f s", why, delay, extra=extra)
            await asyncio.sleep(delay)
        metrics.webhook("failed")
        log.warning("post-call webhook gave up after %d attempts", self.attempts, extra=extra)

    async def _post(self, msg_id: str, body: bytes) -> tuple[bool, str] | None:
        """None if delivered, else (worth retrying, why)."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        headers = signed_headers(self._key, msg_id, body)
        try:
            async with self._http.post(
                self.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            ) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return None
                retry = resp.status >= 500 or resp.status in RETRY_STATUSES
                return retry, f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return True, type(exc).__name__ + (f": {exc}" if str(exc) else "")

    async def close(self, timeout: float = 5.0) -> None:
        """Give pending deliveries `timeout` seconds, then cancel them (each is logged)."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("shutdown: %d post-call webhooks not delivered", len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
                for _ in pending:
                    metrics.webhook("failed")
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None
