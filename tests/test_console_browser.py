"""End to end in headless Chromium: relay (simulator mode, an in-test SimModel with the
default conversation) + console + `make run`'s demo process, driven like a new user would.

Starts `python -m relay`, `scripts/start-console prod` and `scripts/demo_call.py
--wait-for-console` as subprocesses on free ports, then checks, in order:
  8. the login throttle says it is waiting, and for how long;
  2. the demo call is happening on the first screen, with no false alarm in the checklist;
  9. Twilio-only controls are off in simulator mode, with one line saying what enables them;
  7. the simulated model's tool calls show in Function calls, and the console answers one;
 10. a bad setting is refused in plain words; 5. one status line, never a pile;
  6. a new call does not take over the transcript the user picked (until asked to);
  3. the voice-to-voice latency per turn matches what the simulated caller measured;
  1. hanging up from the console is a normal end with the right reason, no error;
     (and Add tool / Delete do not overwrite or delete by surprise);
  4. at 390 px wide nothing overflows and tool names show in full;
  5. the checklist turns "relay offline" within 10 s of the relay stopping;
 10. the console's own offline banner replaces Reflex's connection toast.
Screenshots of each state go to tests/artifacts/.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
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
PHONE = {"width": 390, "height": 844}
WIDE = {"width": 1440, "height": 1000}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(CONSOLE_START_TIMEOUT_S + 300),  # the first build runs npm install
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]

# What overflows the page sideways: the page's own scroll width, and the widest element
# that is not inside a scrolling box of its own.
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  const scrolls = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const s = getComputedStyle(p);
      if (['auto', 'scroll', 'hidden'].includes(s.overflowX)) return true;
    }
    return false;
  };
  let worst = null;
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > width + 1 && !scrolls(el)) {
      if (!worst || r.right > worst.right) worst = {right: r.right, tag: el.tagName,
        cls: String(el.className).slice(0, 80), text: (el.textContent || '').slice(0, 60)};
    }
  }
  return {width, scrollWidth: document.documentElement.scrollWidth, worst};
}"""
# Names cut short: the element's text is wider than the element.
CUT_JS = """(sel) => [...document.querySelectorAll(sel)]
  .filter((el) => el.scrollWidth > el.clientWidth + 1).map((el) => el.textContent)"""


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
                self.proc.wait(5)
        if not self._log.closed:
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
async def stack(artifacts: Path, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    from relay.sim.model import SimModel
    from relay.sim.script import ModelScript

    model = SimModel(ModelScript())  # the default conversation, as `make run` has it
    model_url = await model.start()
    try:
        async with _with_demo(model, model_url, tmp_path) as running:
            yield running
    finally:
        await model.stop()


@contextlib.asynccontextmanager
async def _with_demo(model: Any, model_url: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    from relay.sim.script import LOOKUP_ORDER

    stack = console_stack(
        "",
        model_url,
        tmp_path / "relay-data",
        OPENAI_DEFAULT_TOOLS_JSON=json.dumps([LOOKUP_ORDER]),  # as scripts/run.py sets
        RELAY_DRAIN_SECONDS="2",
    )
    async with stack as (relay_url, console_url, relay, console):
        # `make run`'s demo: it waits for someone to log in, then places its call.
        port = console_url.rsplit(":", 1)[1]
        demo = Proc(
            "demo",
            [sys.executable, "scripts/demo_call.py", "--wait-for-console", "--seconds", "60"],
            clean_env(RELAY_URL=relay_url, RELAY_CONSOLE_TOKEN=TOKEN, CONSOLE_PORT=port),
        )
        try:
            yield {
                "model": model,
                "url": console_url,
                "relay_url": relay_url,
                "relay": relay,
                "console": console,
                "demo": demo,
            }
        finally:
            demo.stop()


@contextlib.asynccontextmanager
async def console_stack(
    name: str, model_url: str, data_dir: Path, **relay_env: str
) -> AsyncIterator[tuple[str, str, Proc, Proc]]:
    """The relay (`python -m relay`, its store in `data_dir`) and the console in prod mode,
    as subprocesses on free ports, up and answering: (relay URL, console URL, procs)."""
    relay_port, console_port = free_port(), free_port()
    relay_url = f"http://127.0.0.1:{relay_port}"
    relay = Proc(
        f"{name}relay",
        [sys.executable, "-m", "relay"],
        clean_env(
            PORT=str(relay_port),
            PUBLIC_URL=relay_url,
            RELAY_DATA_DIR=str(data_dir),
            RELAY_CONSOLE_TOKEN=TOKEN,
            OPENAI_REALTIME_URL=model_url,
            **relay_env,
        ),
    )
    console = Proc(
        f"{name}console",
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
        console_url = f"http://127.0.0.1:{console_port}"
        await wait_http(f"{console_url}/login", console, CONSOLE_START_TIMEOUT_S)
        print(f"console up in {time.monotonic() - started:.1f} s")
        yield relay_url, console_url, relay, console
    finally:
        console.stop()
        relay.stop()


def step(page: Any, key: str) -> Any:
    return page.locator(f"#checklist .check-step[data-key='{key}']")


async def test_console_end_to_end(stack: dict[str, Any], artifacts: Path) -> None:
    from playwright.async_api import async_playwright, expect

    from relay.sim.caller import Hangup, WaitForAssistantDone, one_turn, place_call

    url: str = stack["url"]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = await browser.new_context(viewport=WIDE)
        page = await context.new_page()
        try:
            # 8. Log in after wrong passwords: the throttle says it waits, and how long.
            await page.goto(url + "/")
            await page.wait_for_url(url + "/login")
            for _ in range(3):
                await page.fill("#password", "not-the-password")
                await page.click("#login")
                await expect(page.locator("#login-error")).to_contain_text("Wrong password")
                await expect(page.locator("#login")).to_be_enabled()
            await page.fill("#password", PASSWORD)
            await page.click("#login")
            wait = page.locator("#login-wait")
            await expect(wait).to_contain_text("Too many failed attempts")
            await expect(wait).to_contain_text("in 2 s")
            await expect(page.locator("#login")).to_be_disabled()
            await expect(page.locator("#login-error")).to_have_count(0)
            await page.screenshot(path=artifacts / "1-login-throttled.png")
            await page.wait_for_url(url + "/")

            # 2. The first screen: the demo call is happening; no false alarm.
            await expect(page.locator("#relay-status")).to_have_text("relay online", timeout=20000)
            demo_row = page.locator(".call-row[data-state='active']").first
            await expect(demo_row).to_be_visible(timeout=20000)
            demo_sid = await demo_row.get_attribute("data-sid")
            await expect(page.locator("#transcript-call")).to_have_text(demo_sid or "?")
            transcript = page.locator("#transcript")
            await expect(transcript.locator(".line-caller").first).to_contain_text(
                "can you hear me", timeout=30000
            )
            await expect(step(page, "feed")).to_have_attribute("data-status", "ok")
            await expect(step(page, "relay")).to_contain_text("1 live call(s)", timeout=10000)
            await expect(step(page, "twilio")).to_have_attribute("data-status", "skipped")
            await expect(page.locator("#ready")).to_have_text("ready")
            await page.screenshot(path=artifacts / "2-first-login-demo-call.png")

            # 9. Twilio-only controls are off in simulator mode, with what enables them.
            await expect(page.locator("#twilio-note")).to_contain_text("Simulator mode")
            await expect(page.locator("#twilio-note")).to_contain_text("OPENAI_API_KEY")
            for control in ("#place-call", "#to-number", "#rec-start", "#rec-list"):
                await expect(page.locator(control)).to_be_disabled()
            await page.locator("#recording").screenshot(path=artifacts / "3-twilio-off.png")

            # 7. The model calls a backend tool and a console-answered one; answer it here.
            functions = page.locator("#function-calls")
            weather = functions.locator(".function-call[data-name='get_weather_from_coords']")
            await expect(weather.locator(".fc-output")).to_be_visible(timeout=40000)
            await expect(weather).to_contain_text("answered by backend")
            order = functions.locator(".function-call[data-name='lookup_order']")
            await expect(order).to_have_attribute("data-status", "pending", timeout=40000)
            await expect(order).to_contain_text("the model waits for your answer")
            await page.screenshot(path=artifacts / "4-tool-waiting-for-the-console.png")
            await order.locator("input[name='output']").fill('{"status": "shipped"}')
            await order.locator(".fc-send").click()
            await expect(order).to_have_attribute("data-status", "done", timeout=10000)
            await expect(order).to_contain_text("answered by console")
            await expect(order.locator(".fc-output")).to_contain_text("shipped")
            await expect(page.locator("#notice")).to_contain_text("Answer sent")
            await expect(transcript).to_contain_text("looked up order A1234", timeout=20000)

            # 10 + 5. A bad value is refused in plain words; one status line, replaced.
            status = page.locator("#config-status")
            speed = page.locator("#field-speed")
            await speed.fill("2")
            await speed.blur()
            await page.click("#apply-call")
            await expect(status).to_have_text("Speed must be between 0.25 and 1.5.")
            await expect(status).to_have_attribute("data-kind", "error")
            await speed.fill("1.0")
            await page.fill("#instructions", PIRATE)
            await page.locator("#instructions").blur()  # flush the debounced input
            await page.click("#apply-call")
            await expect(status).to_have_text(
                f"Call …{(demo_sid or '')[-6:]} now uses these settings.", timeout=10000
            )
            # What the model applied (its session.updated) is labelled with its call.
            await expect(page.get_by_text(PIRATE, exact=False).last).to_be_visible()
            sessions = stack["model"].sessions
            assert any(
                e.get("type") == "session.update"
                and e.get("session", {}).get("instructions") == PIRATE
                for s in sessions
                for e in s.received
            )
            await page.screenshot(path=artifacts / "5-settings-applied.png", full_page=True)

            # 6. The user picks the demo call; a new call starts: the transcript stays.
            await demo_row.click()
            steps = [WaitForAssistantDone(timeout=8), *one_turn(800, 600, 10)]
            steps += [*one_turn(800, 600, 10), Hangup()]
            call = asyncio.create_task(place_call(stack["relay_url"], steps=steps))
            await expect(page.locator("#new-call")).to_be_visible(timeout=15000)
            await expect(page.locator("#transcript-call")).to_have_text(demo_sid or "?")
            await page.screenshot(path=artifacts / "6-new-call-transcript-kept.png")
            await page.locator("#new-call").get_by_role("button").click()
            await expect(page.locator("#transcript-call")).not_to_have_text(demo_sid or "?")

            # 3. Voice-to-voice latency per turn = what the simulated caller measured.
            record = await call
            assert record.ok, record.summary()
            measured = [ms for ms in record.latencies_ms if ms is not None]
            assert len(measured) == 2, record.summary()
            turns = page.locator("#latency-turns .latency-turn")
            await expect(turns).to_have_count(2, timeout=10000)
            shown = [float(await t.get_attribute("data-ms") or "nan") for t in await turns.all()]
            for got, want in zip(shown, measured, strict=True):
                assert abs(got - want) <= 50, (shown, measured)
            await expect(page.locator("#latency-p50")).to_contain_text(" ms")
            await expect(page.locator("#latency-p95")).to_contain_text(" ms")
            await page.locator("#latency-turns").scroll_into_view_if_needed()
            await page.screenshot(path=artifacts / "7-latency.png", full_page=True)

            # 1. Follow live calls; a simulated call hung up from the console ends normally.
            await page.click("#follow")
            await page.click("#sim-call")
            await expect(page.locator("#notice")).to_contain_text("Simulated call started")
            sim_row = page.locator(".call-row[data-state='active']").first
            await expect(page.locator("#transcript-call")).to_have_text(
                re.compile(r"^CA"), timeout=10000
            )
            await expect(page.locator("#latency-empty")).to_contain_text("Nothing yet")
            await expect(page.locator("#latency-last")).to_have_text("none yet")
            sim_sid = await page.locator("#transcript-call").text_content()
            assert sim_sid not in (demo_sid, record.call_sid)
            await expect(transcript.locator(".line-assistant").first).to_be_visible(timeout=20000)
            await page.click("#hang-up")
            await expect(page.locator("#end-reason")).to_contain_text("console", timeout=10000)
            sim_row = page.locator(f".call-row[data-sid='{sim_sid}']")
            await expect(sim_row).to_have_attribute("data-state", "ended")
            await expect(page.locator("#call-error")).to_have_count(0)
            await expect(transcript.locator(".line-error")).to_have_count(0)
            await page.screenshot(path=artifacts / "8-hung-up-from-the-console.png")

            # A greeting saved for new calls comes back from the relay.
            await expect(page.locator("#relay-greeting")).to_contain_text("none")
            await page.fill("#greeting", GREETING)
            await page.locator("#greeting").blur()
            await page.click("#save-default")
            await expect(page.locator("#relay-greeting")).to_contain_text(GREETING, timeout=10000)
            await expect(status).to_have_text("Saved: new calls start with these settings.")

            # Add tool never starts from an existing tool; Delete asks first.
            await page.click("#add-tool")
            editor = page.locator("#tool-json")
            await expect(editor).to_have_value(re.compile('"name": "my_tool"'))
            await editor.fill(json.dumps({"name": "lookup_order"}))
            await expect(page.locator("#tool-error")).to_contain_text("already exists")
            await expect(page.locator("#tool-save")).to_be_disabled()
            await page.get_by_role("button", name="Cancel").click()
            rows = page.locator("#tools .tool-row")
            count = await rows.count()
            await rows.first.locator(".tool-delete").click()
            await expect(rows.first).to_contain_text("Delete it?")
            await rows.first.get_by_role("button", name="Keep").click()
            await expect(rows).to_have_count(count)
            # Tool names are shown in full, even the long one.
            assert await page.evaluate(CUT_JS, ".tool-name") == []

            # The hung-up call still shows no error once its caller has long finished.
            await page.click(f".call-row[data-sid='{sim_sid}']")
            await expect(page.locator("#end-reason")).to_contain_text("console")
            await expect(page.locator("#call-error")).to_have_count(0)

            # 4. A phone: one column, nothing overflows, names wrap in full.
            phone = await context.new_page()
            await phone.set_viewport_size(PHONE)
            await phone.goto(url + "/")
            await expect(phone.locator("#relay-status")).to_have_text("relay online", timeout=20000)
            await expect(phone.locator("#tools .tool-row").first).to_be_visible(timeout=10000)
            await expect(phone.locator("#checklist .check-step").first).to_be_visible()
            overflow = await phone.evaluate(OVERFLOW_JS)
            assert overflow["scrollWidth"] <= PHONE["width"], overflow
            assert overflow["worst"] is None, overflow
            assert await phone.evaluate(CUT_JS, ".tool-name") == []
            assert await phone.evaluate(CUT_JS, ".function-call .rt-Text") == []
            await phone.screenshot(path=artifacts / "9-phone.png", full_page=True)
            await phone.close()

            # 5. The relay stops: the checklist says so within 10 s, with what to do.
            stack["demo"].stop()
            stack["relay"].stop()
            relay_step = step(page, "relay")
            await expect(relay_step).to_contain_text("relay offline", timeout=10000)
            await expect(relay_step).to_have_attribute("data-status", "fail")
            await expect(relay_step).to_contain_text("make run")
            await expect(page.locator("#relay-offline")).to_be_visible()
            await expect(page.locator("#ready")).to_have_text("not ready")
            await page.screenshot(path=artifacts / "10-relay-offline.png")

            # 10. The console's server stops: its own banner, not Reflex's toast.
            stack["console"].stop()
            await expect(page.locator("#console-offline")).to_be_visible(timeout=30000)
            await expect(page.get_by_text("Check if server is reachable")).to_have_count(0)
            await expect(page.get_by_text("Cannot connect to server")).to_have_count(0)
            await page.screenshot(path=artifacts / "11-console-offline.png")
        except BaseException:
            await page.screenshot(path=artifacts / "failure.png", full_page=True)
            for name in ("console", "relay", "demo"):
                print(f"---- {name} log ----\n" + stack[name].log())
            raise
        finally:
            await browser.close()
