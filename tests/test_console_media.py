"""Recording playback through the console backend: signed paths, credentials stay server-side."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from starlette.applications import Starlette

from console import media
from console import settings as console_settings
from console.settings import ConsoleSettings
from shared.secret import Secret

SID = "AC" + "a" * 32
REC = "RE" + "c" * 32
PW = Secret("pw")


def test_signed_path_verifies_and_expires() -> None:
    path = media.signed_path(PW, REC, now=1000)
    q = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
    assert media.verify(PW, REC, q["e"], q["s"], now=1001)
    assert not media.verify(PW, REC, q["e"], q["s"], now=1000 + media.TTL_S + 1)
    assert not media.verify(PW, "RE" + "d" * 32, q["e"], q["s"], now=1001)
    assert not media.verify(Secret("other"), REC, q["e"], q["s"], now=1001)


@respx.mock
async def test_route_proxies_media_only_with_a_valid_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = ConsoleSettings(
        password=PW, twilio_account_sid=SID, twilio_auth_token=Secret("tw-token")
    )
    monkeypatch.setattr(console_settings, "_cached", settings)
    twilio = respx.get(
        f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Recordings/{REC}.mp3"
    ).respond(content=b"ID3-mp3")
    respx.route(host="console").pass_through()
    app = Starlette(routes=media.routes)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://console"
    ) as client:
        ok = await client.get(media.signed_path(PW, REC, now=time.time()))
        assert ok.status_code == 200 and ok.content == b"ID3-mp3"
        assert ok.headers["content-type"] == "audio/mpeg"
        assert "tw-token" not in ok.text
        bad = await client.get(f"{media.PREFIX}/{REC}.mp3?e=9999999999&s=forged")
        assert bad.status_code == 403
    assert twilio.call_count == 1
