"""The `demo` process of `make run`: once the relay is up, place one simulated call.

In simulator mode this shows the whole flow with no accounts: the TwiML webhook, the
signed media stream, the model's answer, a barge-in, and what the caller heard.
Then it idles, so honcho keeps the other processes running.
"""

from __future__ import annotations

import asyncio
import os
import signal

from relay.harness import wait_healthy
from relay.sim.caller import (
    Hangup,
    barge_in,
    place_call,
)


async def main() -> None:
    # Not $PORT: honcho gives every process its own PORT (5000, 5100, ...).
    base = os.environ.get("RELAY_URL", "http://127.0.0.1:8081").rstrip("/")
    try:
        health: dict[str, object] | None = await wait_healthy(base, timeout=60)
    except TimeoutError:
        health = None
    if health is None:
        print("demo: the relay did not come up; see the relay's log above")
    elif not health.get("simulator"):
        print("demo: the relay uses the real OpenAI API: call your Twilio number to talk to it")
    else:
        print("demo: placing a simulated call (speak, answer, interrupt, answer, hang up)...")
        record = await place_call(
            base,
            steps=[*barge_in(heard_ms=800, speak_ms=1200, pause_ms=500), Hangup()],
            auth_token=os.environ.get("TWILIO_AUTH_TOKEN") or None,
        )
        print("demo: " + record.summary().replace("\n", "\ndemo: "))
        print("demo: place another with `make call`; watch them in the console")
    await asyncio.get_running_loop().create_future()  # idle until honcho stops us


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
