"""The setup checklist: is everything in place for a real call? Each failed step says what to do.

Fixes the original's defects: an empty webhook is a failure, PUBLIC_URL must answer as the
relay (JSON /health, not an ngrok warning page), no hard-coded localhost, and in simulator
mode the Twilio steps are skipped with the reason instead of blocking the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from console.relay_api import relay_health
from console.settings import ConsoleSettings
from console.twilio_service import PhoneNumber, TwilioError, TwilioService

# "unknown": not found out yet, and nothing to do about it (e.g. the model before any call).
Status = Literal["ok", "fail", "skipped", "pending", "unknown"]
TWILIO_CONSOLE = "https://console.twilio.com/"
BUY_NUMBER = "https://console.twilio.com/us1/develop/phone-numbers/manage/incoming"


@dataclass
class Step:
    key: str
    title: str
    status: Status
    detail: str = ""
    todo: str = ""  # what to do when it failed
    link: str = ""


@dataclass(frozen=True)
class FeedStatus:
    """The console's own feed from the relay, as it is right now."""

    online: bool = False
    connecting: bool = False  # no attempt has finished yet: not a failure
    reason: str = ""  # why it is offline, in the feed's words
    reachable: bool = False  # the relay answered (e.g. it refused the token)


@dataclass
class ChecklistResult:
    steps: list[Step]
    numbers: list[PhoneNumber] = field(default_factory=list)
    chosen: PhoneNumber | None = None
    relay_health: dict[str, Any] | None = None

    @property
    def simulator(self) -> bool:
        return bool(self.relay_health and self.relay_health.get("simulator"))

    @property
    def ready(self) -> bool:
        return ready(self.steps)


def ready(steps: list[Step]) -> bool:
    return all(s.status in ("ok", "skipped", "unknown") for s in steps)


RELAY_TODO = (
    "start it with `make run` (which starts it again by itself if it stops) or "
    "`scripts/start-relay`, or set RELAY_URL to where it runs"
)


def relay_offline_step(why: str) -> Step:
    return Step("relay", "Relay reachable", "fail", f"relay offline: {why}", RELAY_TODO)


def relay_online_detail(version: str, relay_url: str, live_calls: int, simulator: bool) -> str:
    return f"relay {version or '?'} at {relay_url}, {live_calls} live call(s)" + (
        ", simulator mode" if simulator else ""
    )


MODEL_TODO = (
    "fix what the relay says (usually OPENAI_API_KEY, else OPENAI_REALTIME_MODEL or "
    "OPENAI_REALTIME_URL) in the relay's settings, then restart the relay"
)
API_KEYS = "https://platform.openai.com/api-keys"


def model_step(model: Any, simulator: bool) -> Step | None:
    """The relay's ModelStatus ({status: unknown|ok|refused, detail}) as a checklist line;
    None for a relay that does not report it."""
    if not isinstance(model, dict):
        return None
    title = "Model (simulated)" if simulator else "OpenAI model"
    status, detail = str(model.get("status") or "unknown"), str(model.get("detail") or "")
    if status == "refused":
        return Step(
            "model", title, "fail", f"the model refused the relay: {detail}", MODEL_TODO, API_KEYS
        )
    if status == "ok":
        return Step("model", title, "ok", "the model accepted the relay's last connection")
    return Step(
        "model",
        title,
        "unknown",
        "not tried yet: the relay connects to the model when a call comes in",
    )


def feed_step(feed: FeedStatus) -> Step:
    if feed.online:
        return Step("feed", "Console feed", "ok", "receiving live events")
    if feed.connecting:
        return Step("feed", "Console feed", "pending", "connecting to the relay's /logs…")
    if "token" in feed.reason:
        todo = "set the same RELAY_CONSOLE_TOKEN for relay and console, then restart them"
    elif feed.reason and not feed.reachable:
        todo = "it reconnects by itself as soon as the relay is up again"
    else:
        todo = "check the relay is up and RELAY_CONSOLE_TOKEN is the same for relay and console"
    detail = feed.reason or "not connected to the relay's /logs"
    return Step("feed", "Console feed", "fail", detail, todo)


def live_update(
    steps: list[Step],
    feed: FeedStatus,
    *,
    version: str,
    relay_url: str,
    live_calls: int,
    simulator: bool,
    model: dict[str, str] | None = None,
) -> list[Step]:
    """The checklist with its relay, model and feed steps brought up to date from the feed,
    which knows at once when the relay goes away, calls start or the model refuses the
    relay (a check is only a snapshot)."""
    out = []
    new_model = model_step(model, simulator) if model else None
    for step in steps:
        if step.key == "feed":
            step = feed_step(feed)
        elif step.key == "model" and new_model is not None:
            step, new_model = new_model, None
        elif step.key == "relay":
            if feed.online:
                detail = relay_online_detail(version, relay_url, live_calls, simulator)
                step = Step("relay", "Relay reachable", "ok", detail)
            elif not feed.connecting and not feed.reachable:
                step = relay_offline_step(feed.reason or "no answer")
        out.append(step)
    if new_model is not None:  # the check ran before the relay reported it: after the relay
        at = next((i + 1 for i, s in enumerate(out) if s.key == "relay"), len(out))
        out.insert(at, new_model)
    return out


def _skip(key: str, title: str) -> Step:
    return Step(
        key,
        title,
        "skipped",
        "simulator mode: the relay runs without OpenAI, so "
        "calls come from the built-in simulator and Twilio is not needed",
    )


async def run_checklist(
    settings: ConsoleSettings,
    http: httpx.AsyncClient,
    *,
    twilio: TwilioService | None,
    chosen_number_sid: str = "",
    feed: FeedStatus | None = None,
) -> ChecklistResult:
    result = ChecklistResult(steps=[])
    steps = result.steps

    health, why = await relay_health(http, settings.relay_url)
    result.relay_health = health
    relay_step = (
        Step(
            "relay",
            "Relay reachable",
            "ok",
            relay_online_detail(
                str(health.get("version", "")),
                settings.relay_url,
                int(health.get("calls") or 0),
                bool(health.get("simulator")),
            ),
        )
        if health
        else relay_offline_step(why)
    )
    sim = result.simulator

    # 1. credentials, checked with a real API call
    if sim:
        steps.append(_skip("twilio", "Twilio account"))
    elif twilio is None:
        steps.append(
            Step(
                "twilio",
                "Twilio account",
                "fail",
                "credentials are not set",
                "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (Twilio console > "
                "Account info) in .env, then restart the console",
                TWILIO_CONSOLE,
            )
        )
    else:
        try:
            name = await twilio.account_name()
            steps.append(Step("twilio", "Twilio account", "ok", name))
        except TwilioError as exc:
            steps.append(
                Step(
                    "twilio",
                    "Twilio account",
                    "fail",
                    str(exc),
                    "copy the Account SID and Auth Token from the Twilio console into .env",
                    TWILIO_CONSOLE,
                )
            )
            twilio = None

    # 2. a number on the account
    if sim:
        steps.append(_skip("number", "Phone number"))
    elif twilio is None:
        steps.append(
            Step(
                "number",
                "Phone number",
                "fail",
                "needs working Twilio credentials",
                "fix the Twilio account step first",
            )
        )
    else:
        try:
            result.numbers = await twilio.list_numbers()
        except TwilioError as exc:
            steps.append(Step("number", "Phone number", "fail", str(exc), "retry in a moment"))
        else:
            if not result.numbers:
                steps.append(
                    Step(
                        "number",
                        "Phone number",
                        "fail",
                        "the account has no number",
                        "buy a voice-capable number (about $1.15/month)",
                        BUY_NUMBER,
                    )
                )
            else:
                by_sid = {n.sid: n for n in result.numbers}
                result.chosen = by_sid.get(chosen_number_sid, result.numbers[0])
                steps.append(
                    Step(
                        "number",
                        "Phone number",
                        "ok",
                        f"{result.chosen.phone_number} ({len(result.numbers)} on the account)",
                    )
                )

    steps.append(relay_step)
    if health and (model := model_step(health.get("model"), sim)) is not None:
        steps.append(model)

    # 4. PUBLIC_URL reachable and really this relay
    if not settings.public_url:
        if sim:
            steps.append(
                Step(
                    "public_url",
                    "Public URL",
                    "skipped",
                    "simulator mode: no public URL needed until Twilio calls in",
                )
            )
        else:
            steps.append(
                Step(
                    "public_url",
                    "Public URL",
                    "fail",
                    "PUBLIC_URL is not set",
                    "expose the relay (e.g. `ngrok http 8081`) and set PUBLIC_URL to "
                    "its https URL for both relay and console",
                )
            )
    else:
        pub, why = await relay_health(http, settings.public_url)
        if pub is None:
            steps.append(
                Step(
                    "public_url",
                    "Public URL",
                    "fail",
                    why,
                    "start the tunnel (e.g. `ngrok http 8081`) and check PUBLIC_URL",
                )
            )
        elif health and (pub.get("version"), pub.get("simulator")) != (
            health.get("version"),
            health.get("simulator"),
        ):
            steps.append(
                Step(
                    "public_url",
                    "Public URL",
                    "fail",
                    f"{settings.public_url} answers as a different relay "
                    f"(version {pub.get('version')}, simulator {pub.get('simulator')})",
                    "point the tunnel at this relay's port",
                )
            )
        else:
            steps.append(
                Step(
                    "public_url", "Public URL", "ok", f"{settings.public_url} answers as the relay"
                )
            )

    # 5. the number's voice webhook; an empty one is a failure
    if sim:
        steps.append(_skip("webhook", "Voice webhook"))
    elif result.chosen is None:
        steps.append(
            Step(
                "webhook",
                "Voice webhook",
                "fail",
                "no phone number to check",
                "fix the phone number step first",
            )
        )
    elif not settings.webhook_url:
        steps.append(
            Step(
                "webhook", "Voice webhook", "fail", "PUBLIC_URL is not set", "set PUBLIC_URL first"
            )
        )
    else:
        current = result.chosen.voice_url
        want = settings.webhook_url
        if current == want:
            steps.append(Step("webhook", "Voice webhook", "ok", f"points to {want}"))
        else:
            detail = f"points to {current}" if current else "is empty"
            steps.append(
                Step(
                    "webhook",
                    "Voice webhook",
                    "fail",
                    f"{result.chosen.phone_number}'s voice webhook {detail}",
                    f"click Update webhook to set it to {want}",
                )
            )

    # 6. our own feed from the relay
    steps.append(feed_step(feed or FeedStatus()))
    return result
