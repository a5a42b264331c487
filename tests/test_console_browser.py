"""End to end in headless Chromium: relay (simulator mode, an in-test SimModel) + console.

Starts `python -m relay` and `scripts/start-console prod` as subprocesses on free ports,
then drives the page like a user: a wrong password is refused, the right one logs in, the
checklist shows, a simulated call streams caller and assistant lines, new instructions
reach the model as a session.update, a greeting saved for new calls comes back from the
relay, and the model's tool call shows in the panel.
Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
PASSWORD = "browser-test-pw"
TOKEN = "browser-test-token"
CONSOLE_START_TIMEOUT_S = float(os.environ.get("CONSOLE_START_TIMEOUT_S", "600"))
PIRATE = "Speak like a pirate on every turn."
GREETING = "Ahoy, this is the test line."

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(CONSOLE_START_TIMEOUT_S + 180),  # the first build runs npm install
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """The test's env without anything that could reach real Twilio or OpenAI."""
    drop = ("OPENAI_", "TWILIO_", "CONSOLE_", "RELAY_", "PUBLIC_URL", "PORT", "NEXT_PUBLIC_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


class Proc:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.log_path = ARTIFACTS / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so we stop exactly what we started
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
        self._log.close()


async def wait_http(url: str, proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if proc.proc.poll() is not None:
                pytest.fail(f"{proc.name} exited ({proc.proc.returncode}):\n{proc.log()}")
            try:
                resp = await http.get(url, timeout=2, follow_redirects=True)
                if resp.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)  # polling a port coming up: there is no event to await
    pytest.fail(f"{proc.name} did not answer {url} within {timeout:.0f} s:\n{proc.log()}")


@pytest.fixture
def artifacts() -> Iterator[Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield ARTIFACTS


@pytest.fixture
async def stack(artifacts: Path) -> AsyncIterator[dict[str, Any]]:
    from relay.sim.model import SimModel
    from relay.sim.script import ModelScript, Reply, ToolCall

    script = ModelScript(
        replies=[
            Reply("Hello! Thanks for calling the test line."),
            ToolCall("get_weather_from_coords", {"latitude": 48.85, "longitude": 2.35}),
            Reply("Here is the weather for Paris."),
            Reply("Anything else?"),
        ],
        caller_transcripts=["Hi, can you hear me?", "What's the weather in Paris?", "Thanks."],
    )
    model = SimModel(script)
    model_url = await model.start()
    relay_port, console_port = free_port(), free_port()
    relay_url = f"http://127.0.0.1:{relay_port}"
    relay = Proc(
        "relay",
        [sys.executable, "-m", "relay"],
        clean_env(
            PORT=str(relay_port),
            PUBLIC_URL=relay_url,
            RELAY_CONSOLE_TOKEN=TOKEN,
            OPENAI_REALTIME_URL=model_url,
        ),
    )
    console = Proc(
        "console",
        [str(ROOT / "scripts" / "start-console"), "prod"],
        clean_env(
            PORT=str(console_port),
            CONSOLE_PASSWORD=PASSWORD,
            RELAY_URL=relay_url,
            RELAY_CONSOLE_TOKEN=TOKEN,
            PYTHON=sys.executable,
        ),
    )
    try:
        await wait_http(f"{relay_url}/health", relay, 30)
        started = time.monotonic()
        await wait_http(f"http://127.0.0.1:{console_port}/login", console, CONSOLE_START_TIMEOUT_S)
        print(f"console up in {time.monotonic() - started:.1f} s")
        yield {
            "model": model,
            "url": f"http://127.0.0.1:{console_port}",
            "relay": relay,
            "console": console,
        }
    finally:
        console.stop()
        relay.stop()
        await model.stop()


async def model_got_instructions(model: Any, text: str, timeout: float) -> dict[str, Any]:
    """Await the session.update carrying `text` on the model's first session."""
    session = await model.wait_for_session(1, timeout=timeout)
    n = 1
    async with asyncio.timeout(timeout):
        while True:
            ev: dict[str, Any] = await session.wait_for("session.update", timeout=timeout, count=n)
            if ev.get("session", {}).get("instructions") == text:
                return ev
            n += 1


async def test_console_end_to_end(stack: dict[str, Any], artifacts: Path) -> None:
    from playwright.async_api import async_playwright, expect

    url: str = stack["url"]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = await browser.new_page(viewport={"width": 1500, "height": 1000})
        try:
            # Log in: a wrong password first.
            await page.goto(url + "/")
            await page.wait_for_url(url + "/login")
            await page.fill("#password", "not-the-password")
            await page.click("#login")
            await expect(page.locator("#login-error")).to_contain_text("Wrong password")
            await page.screenshot(path=artifacts / "1-login-refused.png")
            await page.fill("#password", PASSWORD)
            await page.click("#login")
            await page.wait_for_url(url + "/")

            # The checklist: relay reachable, feed connected, Twilio skipped (simulator).
            await expect(page.locator("#relay-status")).to_have_text("relay online", timeout=20000)
            await page.click("#check")
            checklist = page.locator("#checklist")
            await expect(checklist).to_contain_text("Relay reachable", timeout=20000)
            await expect(checklist.locator(".check-step", has_text="Console feed")).to_contain_text(
                "ok"
            )
            await expect(
                checklist.locator(".check-step", has_text="Twilio account")
            ).to_contain_text("skipped")
            await page.screenshot(path=artifacts / "2-checklist.png")

            # A simulated call: caller and assistant lines stream into the transcript.
            await page.click("#sim-call")
            transcript = page.locator("#transcript")
            await expect(transcript.locator(".line-caller").first).to_contain_text(
                "can you hear me", timeout=30000
            )
            await expect(transcript.locator(".line-assistant").first).to_contain_text(
                "Thanks for calling", timeout=30000
            )
            await page.screenshot(path=artifacts / "3-transcript.png")

            # New instructions reach the model as a session.update.
            await page.fill("#instructions", PIRATE)
            await page.locator("#instructions").blur()  # flush the debounced input
            await page.click("#apply-call")
            update = await model_got_instructions(stack["model"], PIRATE, timeout=20)
            assert update["session"]["type"] == "realtime"
            await expect(page.locator("#notice")).to_contain_text("session.update", timeout=10000)

            # A greeting saved as the default for new calls: the relay confirms it back.
            await expect(page.locator("#relay-greeting")).to_contain_text("none")
            await page.fill("#greeting", GREETING)
            await page.locator("#greeting").blur()
            await page.click("#save-default")
            await expect(page.locator("#relay-greeting")).to_contain_text(GREETING, timeout=10000)

            # The model's tool call shows in the function calls panel, with its outcome.
            calls = page.locator("#function-calls .function-call").first
            await expect(calls).to_contain_text("get_weather_from_coords", timeout=40000)
            await expect(calls).to_contain_text("48.85")
            await expect(calls.locator(".fc-output")).to_be_visible(timeout=20000)
            await expect(transcript).to_contain_text("get_weather_from_coords(")
            await page.screenshot(path=artifacts / "4-call-with-tool.png", full_page=True)
        except BaseException:
            await page.screenshot(path=artifacts / "failure.png", full_page=True)
            print("---- console log ----\n" + stack["console"].log())
            print("---- relay log ----\n" + stack["relay"].log())
            raise
        finally:
            await browser.close()
