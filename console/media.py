"""Recording playback through the console backend: the browser gets a short-lived signed
path, the backend fetches the MP3 from Twilio with the account's credentials."""

from __future__ import annotations

import hashlib
import hmac
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from console import settings as console_settings
from console.twilio_service import RECORDING_SID, TwilioError, twilio
from shared.secret import Secret

PREFIX = "/_console/recording"
TTL_S = 3600


def _sig(password: Secret, sid: str, expires: int) -> str:
    key = hmac.new(password.get().encode(), b"recording-url", hashlib.sha256).digest()
    return hmac.new(key, f"{sid}:{expires}".encode(), hashlib.sha256).hexdigest()


def signed_path(password: Secret, sid: str, now: float) -> str:
    expires = int(now) + TTL_S
    return f"{PREFIX}/{sid}.mp3?e={expires}&s={_sig(password, sid, expires)}"


def verify(password: Secret, sid: str, expires: str, sig: str, now: float) -> bool:
    if not password or not RECORDING_SID.match(sid) or not expires.isdigit():
        return False
    good = hmac.compare_digest(_sig(password, sid, int(expires)), sig)
    return good and int(expires) > now


async def recording(request: Request) -> Response:
    settings = console_settings.get()
    sid = request.path_params["sid"]
    q = request.query_params
    if not verify(settings.password, sid, q.get("e", ""), q.get("s", ""), time.time()):
        return Response("forbidden", status_code=403)
    try:
        async with twilio(settings) as tw:
            body = await tw.recording_media(sid)
    except TwilioError as exc:
        return Response(str(exc), status_code=502)
    return Response(
        body, media_type="audio/mpeg", headers={"Cache-Control": "private, max-age=600"}
    )


routes = [Route(PREFIX + "/{sid}.mp3", recording)]
