"""History and Profiles in headless Chromium: relay (simulator mode, its store in a
temporary folder, an in-test SimModel) + console in prod mode, driven like a user would.

  1. a simulated call placed from the console (a barge-in, a backend tool, a tool the
     console answers), hung up from the console;
  2. History lists it first, older calls a page at a time (Load more), its end reason in
     plain words; a filter that excludes it says so, Clear brings the list back, a search
     for what was said finds it;
  3. the filtered list exports as CSV through the console (the file names the call);
  4. its detail: transcript lines, the barge-in mark, both tool calls with who answered,
     latency per turn, usage, the end reason; the call's own CSV export;
  5. at 390 px wide History, the detail and Profiles do not overflow;
  6. Profiles: a profile the relay refuses shows the refusal next to the field; fixed, it
     is saved; a number is mapped to it (a bad number is refused by its field); it becomes
     the default, and the next call uses it (its detail, opened from the live page, and
     History filtered by profile show it); edited, then deleted with its number.
Screenshots go to tests/artifacts/history-*.png.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_console_browser import (
    CHROMIUM,
    CONSOLE_START_TIMEOUT_S,
    OVERFLOW_JS,
    PASSWORD,
    PHONE,
    ROOT,
    TOKEN,
    WIDE,
    console_stack,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(CONSOLE_START_TIMEOUT_S + 300),  # the first build runs npm install
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]
PROFILE = "sales desk"


@pytest.fixture
async def stack(artifacts: Path, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    from relay.sim.model import SimModel
    from relay.sim.script import LOOKUP_ORDER, ModelScript

    model = SimModel(ModelScript())
    model_url = await model.start()
    data_dir = tmp_path / "relay-data"
    stack = console_stack(
        "history-",
        model_url,
        data_dir,
        OPENAI_DEFAULT_TOOLS_JSON=json.dumps([LOOKUP_ORDER]),
        RELAY_DRAIN_SECONDS="2",
    )
    try:
        async with stack as (relay_url, console_url, relay, console):
            yield {
                "data_dir": data_dir,
                "url": console_url,
                "relay_url": relay_url,
                "relay": relay,
                "console": console,
            }
    finally:
        await model.stop()


@pytest.fixture
def artifacts() -> Path:
    path = ROOT / "tests" / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


async def saved(relay_url: str, call_sid: str, timeout: float = 20) -> dict[str, Any]:
    """The call's record once the relay's store has written it (writes are queued)."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            resp = await http.get(f"{relay_url}/api/calls/{call_sid}", headers=headers)
            if resp.status_code == 200:
                record: dict[str, Any] = resp.json()
                return record
            await asyncio.sleep(0.2)  # the store has no event to await from outside
    pytest.fail(f"call {call_sid} was not saved within {timeout:.0f} s")


async def seed(data_dir: Path, n: int) -> None:
    """Older calls written straight into the relay's store (its SQLite file), for paging."""
    from relay.store import CallRecord, EndReason, Store, Turn, from_env

    store = await Store.open(from_env({"RELAY_DATA_DIR": str(data_dir)}))
    day_ago = time.time() - 86400
    try:
        for i in range(n):
            store.submit(
                CallRecord(
                    call_sid=f"CA{i:032x}",
                    started_at=day_ago + i,
                    ended_at=day_ago + i + 20,
                    from_="+15550009999",
                    to="+15550002222",
                    end_reason=EndReason.CALLER_HUNG_UP,
                    turns=[Turn(role="user", text=f"seeded call {i}")],
                )
            )
        assert await store.flush(20)
    finally:
        await store.close()


async def sim_call(page: Any, answer_order: bool) -> str:
    """Place a simulated call from the live page, let it talk, hang it up; its CallSid."""
    from playwright.async_api import expect

    await page.click("#nav-live")
    await expect(page.locator("#relay-status")).to_have_text("relay online", timeout=20000)
    follow = page.locator("#follow")
    if await follow.get_attribute("data-state") != "checked":
        await follow.click()  # show the new call as it starts
    await page.click("#sim-call")
    row = page.locator(".call-row[data-state='active']").first
    await expect(row).to_be_visible(timeout=15000)
    sid = await row.get_attribute("data-sid")
    assert sid
    await expect(page.locator("#transcript-call")).to_have_text(sid, timeout=10000)
    transcript = page.locator("#transcript")
    if answer_order:
        order = page.locator("#function-calls .function-call[data-name='lookup_order']")
        await expect(order).to_have_attribute("data-status", "pending", timeout=40000)
        await order.locator("input[name='output']").fill('{"status": "shipped"}')
        await order.locator(".fc-send").click()
        await expect(order).to_have_attribute("data-status", "done", timeout=10000)
        await expect(transcript).to_contain_text("looked up order A1234", timeout=20000)
    else:
        await expect(transcript.locator(".line-assistant").first).to_be_visible(timeout=20000)
    await page.click("#hang-up")
    await expect(page.locator("#end-reason")).to_contain_text("console", timeout=10000)
    return sid


async def pick(page: Any, trigger: str, option: str) -> None:
    """Choose in a Radix select: open it, click the option."""
    await page.click(trigger)
    await page.get_by_role("option", name=option, exact=True).click()


async def test_history_detail_export_and_profiles(
    stack: dict[str, Any], artifacts: Path, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright, expect

    url: str = stack["url"]
    started = time.monotonic()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = await browser.new_context(viewport=WIDE, accept_downloads=True)
        page = await context.new_page()
        try:
            # History is behind the login too.
            await page.goto(url + "/history")
            await page.wait_for_url(url + "/login")
            await page.fill("#password", PASSWORD)
            await page.click("#login")
            await page.wait_for_url(url + "/")

            # 1. A simulated call from the console, hung up from the console.
            sid = await sim_call(page, answer_order=True)
            record = await saved(stack["relay_url"], sid)
            assert record["end_reason"] == "console_ended"

            # 2. History lists it, newest first (older calls a page at a time), in plain words.
            await seed(stack["data_dir"], 60)
            await page.click("#nav-history")
            await page.wait_for_url(url + "/history")
            rows = page.locator(".history-row")
            row = page.locator(f".history-row[data-sid='{sid}']")
            await expect(row).to_be_visible(timeout=10000)
            assert await rows.first.get_attribute("data-sid") == sid
            await expect(rows).to_have_count(50)
            await page.screenshot(path=artifacts / "history-1-list.png")
            await page.click("#load-more")
            await expect(rows).to_have_count(61)
            await expect(page.locator("#load-more")).to_have_count(0)
            assert await rows.last.get_attribute("data-sid") == f"CA{0:032x}"
            await expect(row.locator(".cell-end")).to_have_text("hung up from the console")
            await expect(row.locator(".cell-profile")).to_have_text("default")
            await expect(row.locator(".cell-direction")).to_have_text("in")
            await pick(page, "#filter-end_reason", "an error ended the call")
            await page.click("#history-search")
            await expect(page.locator("#history-empty")).to_contain_text("No call matches")
            await expect(rows).to_have_count(0)
            await page.click("#history-clear")
            await expect(rows).to_have_count(50, timeout=10000)
            await expect(page.locator("#filter-end_reason")).to_contain_text("any end reason")
            await page.fill("#filter-text", "order A1234")
            await page.click("#history-search")
            await expect(rows).to_have_count(1)
            await expect(row).to_be_visible()

            # 3. The filtered list as CSV, through the console (the token stays on the backend).
            async with page.expect_download() as download_info:
                await page.click("#export-csv")
            download = await download_info.value
            assert download.suggested_filename == "calls.csv"
            path = tmp_path / "calls.csv"
            await download.save_as(path)
            exported = list(csv.DictReader(io.StringIO(path.read_text())))
            assert [r["call_sid"] for r in exported] == [sid]
            assert exported[0]["end_reason"] == "console_ended"
            href = await page.locator("#export-csv").get_attribute("href") or ""
            assert TOKEN not in href and "/_console/export/calls.csv" in href

            # 4. Its detail.
            await row.click()
            await page.wait_for_url(f"{url}/history/{sid}")
            await expect(page.locator("#detail-sid")).to_have_text(sid)
            lines = page.locator("#detail-transcript")
            await expect(lines.locator(".line-caller").first).to_contain_text("can you hear me")
            await expect(lines.locator(".line-assistant[data-interrupted='1']")).not_to_have_count(
                0
            )
            await expect(lines).to_contain_text("interrupted: the caller heard")
            order = page.locator(".detail-tool[data-name='lookup_order']")
            await expect(order).to_contain_text("answered by the console")
            await expect(order.locator(".tool-output")).to_contain_text("shipped")
            weather = page.locator(".detail-tool[data-name='get_weather_from_coords']")
            await expect(weather).to_contain_text("answered by the relay")
            await expect(page.locator("#detail-end")).to_have_text("hung up from the console")
            await expect(page.locator("#detail-latency .latency-turn").first).to_contain_text(" ms")
            await expect(page.locator("#detail-usage")).to_contain_text("Total")
            await page.screenshot(path=artifacts / "history-2-detail.png", full_page=True)
            async with page.expect_download() as download_info:
                await page.click("#detail-export-csv")
            download = await download_info.value
            assert download.suggested_filename == f"{sid}.csv"
            await download.save_as(tmp_path / "call.csv")
            kinds = [r["kind"] for r in csv.DictReader((tmp_path / "call.csv").open())]
            assert "turn" in kinds and "tool" in kinds

            # 5. On a phone: History and the detail fit the screen.
            phone = await context.new_page()
            await phone.set_viewport_size(PHONE)
            for name, path_, ready in (
                ("detail", f"/history/{sid}", "#detail-transcript"),
                ("list", "/history", f".history-row[data-sid='{sid}']"),
                ("profiles", "/profiles", "#new-profile"),
            ):
                await phone.goto(url + path_)
                await expect(phone.locator(ready)).to_be_visible(timeout=20000)
                overflow = await phone.evaluate(OVERFLOW_JS)
                assert overflow["scrollWidth"] <= PHONE["width"], (path_, overflow)
                assert overflow["worst"] is None, (path_, overflow)
                await phone.screenshot(
                    path=artifacts / f"history-3-phone-{name}.png", full_page=True
                )
            await phone.close()

            # 6. Profiles: the relay's refusal shows by its field; a saved profile, mapped.
            await page.click("#nav-profiles")
            await page.wait_for_url(url + "/profiles")
            await page.click("#new-profile")
            await page.fill("#profile-name", PROFILE)
            await pick(page, "#profile-voice", "cedar")
            await pick(page, "#profile-greeting_mode", "say this:")
            await page.fill("#profile-greeting", "Say: this is the sales desk.")
            await page.fill("#profile-tools", '[{"type": "function"}]')  # a tool needs a name
            await page.click("#profile-save")
            tools_error = page.locator(".field-error[data-field='tools']")
            await expect(tools_error).to_contain_text("a function tool needs a name")
            await expect(tools_error).to_contain_text("Tools")
            await page.screenshot(path=artifacts / "history-4-profile-refused.png")
            await page.fill("#profile-tools", "[]")
            await page.click("#profile-save")
            profile_row = page.locator(f".profile-row[data-name='{PROFILE}']")
            await expect(profile_row).to_contain_text("voice cedar", timeout=10000)
            await expect(profile_row).to_contain_text("no tools")
            await expect(page.locator("#profile-editor")).to_have_count(0)

            await page.fill("#map-number", "hello")
            await pick(page, "#map-profile", PROFILE)
            await page.click("#map-submit")
            await expect(page.locator(".field-error[data-field='number']")).to_contain_text(
                "no country code"
            )
            await page.fill("#map-number", "+1 (415) 555-0100")
            await page.click("#map-submit")
            number_row = page.locator(".number-row[data-number='+14155550100']")
            await expect(number_row).to_contain_text(PROFILE, timeout=10000)
            await expect(profile_row).to_contain_text("+14155550100")
            await pick(page, "#default-profile", PROFILE)
            await expect(profile_row).to_contain_text("default", timeout=10000)
            await page.screenshot(path=artifacts / "history-5-profiles.png", full_page=True)
            async with httpx.AsyncClient() as http:
                resp = await http.get(
                    f"{stack['relay_url']}/api/profiles",
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )
            book = resp.json()
            assert book["default"] == PROFILE and book["numbers"] == {"+14155550100": PROFILE}
            assert book["profiles"][0]["voice"] == "cedar"

            # The next call uses the default profile: History filtered by profile shows it.
            second = await sim_call(page, answer_order=False)
            await page.click("#open-in-history")  # from the live page, as soon as it ended
            await page.wait_for_url(f"{url}/history/{second}")
            profile_fact = page.locator(".fact[data-fact='profile']")
            await expect(profile_fact).to_contain_text(PROFILE, timeout=10000)
            await expect(page.locator(".fact[data-fact='voice']")).to_contain_text("cedar")
            await page.click("#nav-history")
            await expect(page.locator("#filter-text")).to_have_value("order A1234")  # kept
            await page.click("#history-clear")
            await expect(rows).to_have_count(50, timeout=10000)
            await pick(page, "#filter-profile", PROFILE)
            await page.click("#history-search")
            only = page.locator(f".history-row[data-sid='{second}']")
            await expect(only.locator(".cell-profile")).to_have_text(PROFILE, timeout=10000)
            await expect(rows).to_have_count(1)
            await page.screenshot(path=artifacts / "history-6-by-profile.png")

            # A profile is edited, then deleted with its number (after asking).
            await page.click("#nav-profiles")
            await profile_row.locator(".profile-edit").click()
            await expect(page.locator("#profile-editing")).to_contain_text(PROFILE)
            await expect(page.locator("#profile-voice")).to_contain_text("cedar")
            await pick(page, "#profile-voice", "sage")
            await page.click("#profile-save")
            await expect(profile_row).to_contain_text("voice sage", timeout=10000)
            await profile_row.locator(".profile-delete").click()
            await expect(profile_row).to_contain_text("Delete it")
            await profile_row.locator(".profile-delete-confirm").click()
            await expect(profile_row).to_have_count(0, timeout=10000)
            await expect(number_row).to_have_count(0)
            await expect(page.locator("#default-profile")).to_contain_text("(none)")
            print(f"browser part: {time.monotonic() - started:.1f} s")
        except BaseException:
            await page.screenshot(path=artifacts / "history-failure.png", full_page=True)
            for name in ("console", "relay"):
                print(f"---- {name} log ----\n" + stack[name].log())
            raise
        finally:
            await browser.close()
