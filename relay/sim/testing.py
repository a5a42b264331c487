"""Helpers for tests that talk to the simulated model directly (no relay in between)."""

from __future__ import annotations

import asyncio
import base64
from types import TracebackType
from typing import Any

import aiohttp
import msgspec

from shared.audio import FRAME_MS, silence_mulaw, tone_mulaw

GA_PCMU_SESSION: dict[str, Any] = {
    "type": "realtime",
    "output_modalities": ["audio"],
    "audio": {
        "input": {
            "format": {"type": "audio/pcmu"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 200},
        },
        "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
    },
}


def frames_b64(audio: bytes, frame_ms: int = FRAME_MS) -> list[str]:
    step = 8 * frame_ms
    return [base64.b64encode(audio[i : i + step]).decode() for i in range(0, len(audio), step)]


class RealtimeTestClient:
    """A bare Realtime client: send dicts, read dicts, wait for a given event type."""

    def __init__(self, url: str, *, api_key: str | None = "test-key", beta: bool = False) -> None:
        self.url = url if "?" in url else f"{url}?model=gpt-realtime"
        self.headers: dict[str, str] = {}
        if api_key is not None:
            self.headers["Authorization"] = f"Bearer {api_key}"
        if beta:
            self.headers["OpenAI-Beta"] = "realtime=v1"
        self.events: list[dict[str, Any]] = []
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    @property
    def ws(self) -> aiohttp.ClientWebSocketResponse:
        assert self._ws is not None, "not connected"
        return self._ws

    async def __aenter__(self) -> RealtimeTestClient:
        self._http = aiohttp.ClientSession()
        try:
            self._ws = await self._http.ws_connect(self.url, headers=self.headers)
        except BaseException:
            await self._http.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send_str(msgspec.json.encode(event).decode())

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket closed: {msg.type!r} {msg.data!r} {msg.extra!r}")
        event: dict[str, Any] = msgspec.json.decode(msg.data)
        self.events.append(event)
        return event

    async def until(
        self,
        type: str,
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """Read events up to and including the next one of `type`."""
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                event = await self.recv(timeout)
                got.append(event)
                if event["type"] == type:
                    return got

    async def append(self, audio: bytes) -> None:
        for payload in frames_b64(audio):
            await self.send({"type": "input_audio_buffer.append", "audio": payload})

    async def speak(self, speech_ms: int = 600, silence_ms: int = 400) -> None:
        """A caller's turn as the relay would forward it: tone, then silence."""
        await self.append(tone_mulaw(speech_ms) + silence_mulaw(silence_ms))
