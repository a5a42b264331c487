"""The softphone in real headless Chromium with a fake microphone: relay (an in-test
SimModel) + console (prod), as subprocesses on free ports, driven with Playwright.

Chromium's fake capture device plays a WAV this test generates (speech-like bursts with
silences, looped by Chromium), through getUserMedia with echo cancellation, noise
suppression and gain control on, so the audio path is the one a laptop's microphone takes.
It shows, in order:
  1. Talk: the page streams mu-law through the console backend; the simulated model hears
     the speech (its VAD), answers, and the page plays the answer (its playback counters);
  2. the calls list and the transcript show the call, marked as a browser call;
  3. speaking over the answer: the relay clears the page's buffer and truncates the answer
     within 40 ms of what the page had played when the clear arrived (the page's own count);
  4. the on-screen keypad reaches the model; mute sends silence; hang up ends the call;
  5. a wideband call (24 kHz PCM16 end to end), hung up from the console's calls panel.
Screenshots go to tests/artifacts/softphone-*.png.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import wave
from array import array
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_console_browser import (
    ARTIFACTS,
    CHROMIUM,
    CONSOLE_START_TIMEOUT_S,
    PASSWORD,
    ROOT,
    TOKEN,
    WIDE,
    console_stack,
)

from relay.harness import give_number_a_profile

ANSWER_MS = 4000
SPEECH = (0.3, 1.3)  # seconds of "speech" in each loop of the fake microphone
LOOP_S = 4.3  # the next speech starts 3.3 s after the last one: over a 4 s answer
MAX_TRUNCATION_ERROR_MS = 40

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(CONSOLE_START_TIMEOUT_S + 300),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]


def speech_wav(path: Path, rate: int = 48000) -> None:
    """A voice-like sound (a gliding 120-180 Hz buzz with syllable-rate loudness) for
    SPEECH in every LOOP_S, silence otherwise: what noise suppression keeps and a VAD hears."""
    samples = array("h", bytes(2 * round(LOOP_S * rate)))
    start, end = (round(t * rate) for t in SPEECH)
    phase = 0.0
    for i in range(start, end):
        t = (i - start) / rate
        f0 = 120.0 + 60.0 * t / (SPEECH[1] - SPEECH[0])
        phase += 2 * math.pi * f0 / rate
        buzz = sum(math.sin(k * phase) / k for k in range(1, 16))
        envelope = 0.55 + 0.45 * math.sin(2 * math.pi * 4.0 * t)
        fade = min(1.0, t / 0.02, (SPEECH[1] - SPEECH[0] - t) / 0.02)
        samples[i] = round(9000 * buzz * envelope * fade)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    from relay.sim.model import SimModel
    from relay.sim.script import ModelScript, Reply

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wav = ARTIFACTS / "softphone-mic.wav"
    speech_wav(wav)
    model = SimModel(ModelScript(replies=[Reply("A long answer. " * 8, audio_ms=ANSWER_MS)]))
    model_url = await model.start()
    stack = console_stack("softphone-", model_url, tmp_path / "relay-data", RELAY_DRAIN_SECONDS="1")
    try:
        async with stack as (relay_url, console_url, relay, console):
            # A profile the softphone can call as (the Talk panel's "call as" picker).
            pizza = {"instructions": "You are the pizza line."}
            await give_number_a_profile(relay_url, TOKEN, "+15550009999", "pizza", pizza)
            yield {
                "model": model,
                "url": console_url,
                "wav": wav,
                "relay": relay,
                "console": console,
            }
    finally:
        await model.stop()


async def stats(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("() => window.phoneRelaySoftphone.stats")
    return result


async def until(page: Any, condition: str, timeout_ms: int = 20000) -> None:
    """Wait for a condition on the page's softphone counters (`s`)."""
    await page.wait_for_function(
        f"() => {{ const s = window.phoneRelaySoftphone.stats; return {condition}; }}",
        timeout=timeout_ms,
        polling=50,
    )


def appends_since(session: Any, index: int) -> list[bytes]:
    import base64

    return [
        base64.b64decode(e["audio"])
        for e in session.received[index:]
        if e.get("type") == "input_audio_buffer.append"
    ]


async def test_talk_to_the_agent_from_the_browser(stack: dict[str, Any]) -> None:
    from playwright.async_api import async_playwright, expect

    url: str = stack["url"]
    model = stack["model"]
    started = time.monotonic()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={stack['wav']}",
            ],
        )
        context = await browser.new_context(viewport=WIDE)
        page = await context.new_page()
        console_lines: list[str] = []
        page.on("console", lambda m: console_lines.append(f"{m.type}: {m.text}"))
        try:
            await page.goto(url + "/login")
            await page.fill("#password", PASSWORD)
            await page.click("#login")
            await page.wait_for_url(url + "/")
            await expect(page.locator("#relay-status")).to_have_text("relay online", timeout=20000)

            # 1. Talk (mu-law, the default): the model hears the speech and answers.
            await expect(page.locator("#talk")).to_be_visible()
            await page.click("#talk")
            await until(page, "s.state === 'live'")
            s = await stats(page)
            call_sid = s["callSid"]
            assert call_sid.startswith("BR") and s["audio"] == "pcmu"
            assert s["settings"]["echoCancellation"] is True, s["settings"]
            await expect(page.locator("#softphone-status")).to_contain_text("In call")
            session = await model.wait_for_session(1, timeout=10)
            await session.wait_sent("session.updated", timeout=10)  # the relay's config applied
            assert session.effective["audio"]["input"]["format"] == {"type": "audio/pcmu"}
            await session.wait_sent("input_audio_buffer.speech_started", timeout=15)
            await session.wait_sent("response.output_audio.delta", timeout=15)
            await until(page, "s.msPlayed > 800")
            # The input meter moves with the speech (the fake microphone loops it).
            await page.wait_for_function(
                "() => parseFloat(document.getElementById('softphone-level-bar').style.width) > 30",
                timeout=10000,
            )
            await page.screenshot(path=ARTIFACTS / "softphone-1-talking.png")

            # 2. The call is in the calls list, marked as a browser call, and on screen.
            row = page.locator(f".call-row[data-sid='{call_sid}']")
            await expect(row).to_have_attribute("data-direction", "browser")
            await expect(row).to_contain_text("browser call")
            await expect(page.locator("#transcript-call")).to_have_text(call_sid)
            # No Twilio call to record: the recording controls say so and stay off.
            await expect(page.locator("#rec-note")).to_contain_text("does not go through Twilio")
            await expect(page.locator("#rec-start")).to_be_disabled()
            transcript = page.locator("#transcript")
            await expect(transcript.locator(".line-caller").first).to_be_visible(timeout=15000)
            await expect(transcript.locator(".line-assistant").first).to_be_visible()

            # 3. Speaking over the answer truncates it where the page had played it.
            await until(page, "s.clears.some((c) => c.item)", timeout_ms=30000)
            s = await stats(page)
            clear = next(c for c in s["clears"] if c["item"])
            truncations = [t for t in session.truncations if t["item_id"] == clear["item"]]
            assert truncations, (session.truncations, s["clears"])
            truncated_at = truncations[0]["audio_end_ms"]
            error_ms = abs(truncated_at - clear["playedMs"])
            cleared_marks = [m for m in s["marks"] if m["cleared"]]
            heard = [m for m in s["marks"] if m["item"] == clear["item"] and not m["cleared"]]
            print(
                f"barge-in: relay truncated {clear['item']} at {truncated_at} ms; the page had "
                f"played {clear['playedMs']:.1f} ms of it (error {error_ms:.1f} ms); "
                f"{len(heard)} marks echoed as played, {len(cleared_marks)} on the clear"
            )
            assert error_ms <= MAX_TRUNCATION_ERROR_MS, (truncations, clear)
            assert heard and max(m["ms"] for m in heard) <= clear["playedMs"] + 1
            # The transcript marks where the answer was cut.
            await expect(transcript.locator(".line-assistant", has_text="✂").first).to_be_visible(
                timeout=10000
            )
            await page.screenshot(path=ARTIFACTS / "softphone-2-barge-in.png")

            # 4. The keypad reaches the model; mute sends silence; hang up.
            await page.locator("#keypad .dtmf-key[data-digit='5']").click()
            item = await session.wait_for("conversation.item.create", timeout=10)
            assert item["item"]["content"][0]["text"] == "The caller pressed the 5 key."
            await expect(transcript.locator(".line-dtmf").first).to_be_visible(timeout=10000)

            await page.click("#softphone-mute")
            await until(page, "s.muted && s.level === 0")
            await expect(page.locator("#softphone")).to_have_attribute("data-muted", "true")
            mark = len(session.received)
            await until(page, f"s.framesSent > {s['framesSent'] + 150}")  # ~3 s, over a burst
            silent = appends_since(session, mark)[5:]  # frames in flight when muting aside
            assert len(silent) > 100 and all(set(a) == {0xFF} for a in silent)
            await page.screenshot(path=ARTIFACTS / "softphone-3-muted.png")
            await page.click("#softphone-mute")

            await page.click("#softphone-hangup")
            await until(page, "s.state === 'ended'")
            await expect(page.locator("#softphone-status")).to_contain_text("you hung up")
            await expect(row).to_have_attribute("data-state", "ended", timeout=10000)
            await expect(page.locator("#end-reason")).to_contain_text("caller hung up")
            await expect(page.locator("#talk")).to_be_visible()

            # 5. Wideband: 24 kHz PCM16 end to end, called as the pizza line's number (its
            # profile answers); hung up from the console's calls panel.
            await page.locator("#softphone-audio").click()
            await page.get_by_role("option", name="Wideband (24 kHz PCM)").click()
            await page.locator("#softphone-call-as").click()
            await page.get_by_role("option", name="+15550009999 (pizza)").click()
            await page.click("#talk")
            await until(page, "s.state === 'live' && s.audio === 'pcm24'")
            wide_sid = (await stats(page))["callSid"]
            assert wide_sid != call_sid
            wide = await model.wait_for_session(2, timeout=10)
            await wide.wait_sent("session.updated", timeout=10)
            pcm24 = {"type": "audio/pcm", "rate": 24000}
            assert wide.effective["audio"]["input"]["format"] == pcm24
            assert wide.effective["audio"]["output"]["format"] == pcm24
            assert wide.effective["instructions"] == "You are the pizza line."
            assert session.effective["instructions"] != "You are the pizza line."
            await wide.wait_sent("response.output_audio.delta", timeout=20)
            await until(page, "s.msPlayed > 500")
            assert all(len(a) == 960 for a in appends_since(wide, 0))  # 20 ms of 24 kHz PCM16
            await expect(page.locator("#transcript-call")).to_have_text(wide_sid, timeout=10000)
            await page.screenshot(path=ARTIFACTS / "softphone-4-wideband.png")
            await page.click("#hang-up")
            await until(page, "s.state === 'ended'")
            await expect(page.locator("#softphone-status")).to_contain_text(
                "ended from the console"
            )
            await expect(page.locator("#end-reason")).to_contain_text("console", timeout=10000)
            await page.screenshot(path=ARTIFACTS / "softphone-5-ended.png")
            s = await stats(page)
            print(
                f"wideband: played {s['msPlayed']:.0f} ms, sent {s['framesSent'] * 20} ms, "
                f"underruns {s['underruns']}, context rate {s['sampleRate']} Hz; "
                f"run {time.monotonic() - started:.1f} s"
            )
        except BaseException:
            await page.screenshot(path=ARTIFACTS / "softphone-failure.png", full_page=True)
            print("---- page console ----\n" + "\n".join(console_lines[-60:]))
            try:
                print("---- softphone stats ----\n" + json.dumps(await stats(page))[:6000])
            except Exception:
                pass
            for name in ("console", "relay"):
                print(f"---- {name} log ----\n" + stack[name].log())
            raise
        finally:
            await browser.close()


# --- the page's audio code on its own: resampling, mu-law, playback and marks ----------------

WORKLET = ROOT / "assets" / "softphone-worklet.js"

# Runs in the page: load the worklet module, then run the plans in order.
AUDIO_LAB_JS = """async ({ src, plans }) => {
  const ctx = new AudioContext({ latencyHint: "interactive" });
  await ctx.resume();
  const url = URL.createObjectURL(new Blob([src], { type: "text/javascript" }));
  await ctx.audioWorklet.addModule(url);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const wire = (node) => {
    const ch = new MessageChannel();
    node.port.postMessage({ type: "port", port: ch.port1 }, [ch.port1]);
    return ch.port2;
  };
  const capture = (format, rate) => {
    const node = new AudioWorkletNode(ctx, "softphone-capture", {
      numberOfInputs: 1, numberOfOutputs: 0, processorOptions: { rate, format } });
    const frames = [];
    wire(node).onmessage = (e) => frames.push(Array.from(new Uint8Array(e.data.bytes)));
    return { node, frames };
  };
  const results = { sampleRate: ctx.sampleRate };
  for (const plan of plans) {
    if (plan.kind === "tone") {
      // An oscillator into the capture worklet: what reaches the relay.
      const { node, frames } = capture(plan.format, plan.rate);
      const osc = new OscillatorNode(ctx, { frequency: plan.freq });
      const gain = new GainNode(ctx, { gain: 0.5 });
      osc.connect(gain).connect(node);
      osc.start();
      while (frames.length < 40) await sleep(20);
      osc.stop();
      node.disconnect();
      results[plan.name] = frames.slice(10, 40);
    } else if (plan.kind === "playback") {
      // mu-law in 100 ms chunks, each followed by a mark, through the player; the player's
      // output is captured again at 8 kHz; a clear comes in the middle.
      const player = new AudioWorkletNode(ctx, "softphone-player", {
        numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
        processorOptions: { rate: 8000, format: "pcmu" } });
      const port = wire(player);
      const echoes = [];
      const clears = [];
      port.onmessage = (e) => {
        const t = performance.now();
        if (e.data.type === "marks") {
          for (const name of e.data.names) echoes.push({ name, t, cleared: e.data.cleared });
        }
        if (e.data.type === "cleared") clears.push({ ...e.data, t });
      };
      const { node, frames } = capture("pcmu", 8000);
      player.connect(node);
      await sleep(100);
      port.postMessage({ type: "mark", name: "idle:0" });  // nothing queued: echoed at once
      const t0 = performance.now();
      for (let i = 1; i <= plan.chunks; i++) {
        const bytes = new Uint8Array(plan.chunk);
        port.postMessage({ type: "audio", bytes: bytes.buffer }, [bytes.buffer]);
        port.postMessage({ type: "mark", name: `a:${i * 100}` });
      }
      await sleep(plan.clearAfterMs);
      port.postMessage({ type: "clear" });
      await sleep(300);
      player.disconnect();
      results[plan.name] = { t0, echoes, clears, frames };
    } else if (plan.kind === "underrun") {
      // An answer that runs dry and goes on 40 ms later: it resumes after a cushion.
      const player = new AudioWorkletNode(ctx, "softphone-player", {
        numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1],
        processorOptions: { rate: 8000, format: "pcmu" } });
      const port = wire(player);
      const echoes = [];
      let stats = null;
      port.onmessage = (e) => {
        if (e.data.type === "marks") echoes.push(performance.now());
        if (e.data.type === "stats") stats = e.data;
      };
      player.connect(ctx.destination);
      const chunk = (name) => {
        const bytes = new Uint8Array(plan.chunk);
        port.postMessage({ type: "audio", bytes: bytes.buffer }, [bytes.buffer]);
        port.postMessage({ type: "mark", name });
        return performance.now();
      };
      const t1 = chunk("u:100");
      while (echoes.length < 1) await sleep(2);
      await sleep(plan.gapMs);
      const t2 = chunk("u:200");
      while (echoes.length < 2) await sleep(2);
      await sleep(100);
      player.disconnect();
      results[plan.name] = { first: echoes[0] - t1, second: echoes[1] - t2, stats };
    }
  }
  await ctx.close();
  return results;
}"""


def _mulaw_tone(freq: float, ms: int, amplitude: int = 8000) -> list[int]:
    from shared.audio import tone_mulaw

    return list(tone_mulaw(ms, freq, amplitude))


def _level(frames: list[list[int]], fmt: str) -> tuple[float, float]:
    """(RMS, frequency from zero crossings) of captured frames, in 16-bit units and Hz."""
    from shared.audio import MULAW_TO_LINEAR

    if fmt == "pcmu":
        samples = [MULAW_TO_LINEAR[b] for f in frames for b in f]
        rate = 8000
    else:
        data = bytes(b for f in frames for b in f)
        samples = list(array("h", data))
        rate = 24000
    rms = math.sqrt(sum(s * s for s in samples) / len(samples))
    crossings = sum(1 for a, b in itertools.pairwise(samples) if a < 0 <= b)
    return rms, crossings * rate / len(samples)


async def test_the_page_resamples_with_a_low_pass_and_echoes_marks_as_played() -> None:
    """The worklets in Chromium, no console: a tone keeps its level and pitch through
    capture (mu-law 8 kHz and PCM16 24 kHz); a tone above the call's band is filtered out,
    not folded into it (bare decimation would alias 6 kHz to 2 kHz at full level); played
    audio echoes its marks 100 ms apart, at once when idle, and a clear echoes the rest; an
    answer that runs dry and goes on resumes after a jitter cushion."""
    from playwright.async_api import async_playwright

    chunk = _mulaw_tone(1000, 100)
    plans = [
        {"kind": "tone", "name": "pcmu_1k", "format": "pcmu", "rate": 8000, "freq": 1000},
        {"kind": "tone", "name": "pcmu_6k", "format": "pcmu", "rate": 8000, "freq": 6000},
        {"kind": "tone", "name": "pcm24_1k", "format": "pcm24", "rate": 24000, "freq": 1000},
        {"kind": "tone", "name": "pcm24_15k", "format": "pcm24", "rate": 24000, "freq": 15000},
        {"kind": "playback", "name": "play", "chunks": 8, "chunk": chunk, "clearAfterMs": 550},
        {"kind": "underrun", "name": "underrun", "chunk": chunk, "gapMs": 40},
    ]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"],
        )
        try:
            page = await browser.new_page()
            # A page of its own on localhost: worklets need a secure context.
            await page.route(
                "http://localhost/lab",
                lambda route: route.fulfill(body="<html></html>", content_type="text/html"),
            )
            await page.goto("http://localhost/lab")
            src = WORKLET.read_text()
            results = await page.evaluate(AUDIO_LAB_JS, {"src": src, "plans": plans})
        finally:
            await browser.close()

    full = 0.5 * 32768 / math.sqrt(2)  # the oscillator's RMS at gain 0.5
    measured = {
        name: _level(results[name], "pcmu" if name.startswith("pcmu") else "pcm24")
        for name in ("pcmu_1k", "pcmu_6k", "pcm24_1k", "pcm24_15k")
    }
    print(
        f"context {results['sampleRate']} Hz; RMS/Hz: "
        + ", ".join(f"{k} {v[0] / full:.3f}/{v[1]:.0f}" for k, v in measured.items())
    )
    for name, fmt in (("pcmu_1k", "pcmu"), ("pcm24_1k", "pcm24")):
        rms, freq = _level(results[name], fmt)
        assert rms == pytest.approx(full, rel=0.1), (name, rms)
        assert freq == pytest.approx(1000, rel=0.03), (name, freq)
    for name, fmt in (("pcmu_6k", "pcmu"), ("pcm24_15k", "pcm24")):
        rms, _ = _level(results[name], fmt)
        assert rms < 0.01 * full, (name, rms)  # below -40 dB: filtered, not aliased

    play = results["play"]
    echoes = play["echoes"]
    assert echoes[0]["name"] == "idle:0" and echoes[0]["t"] - play["t0"] < 20
    played = [e for e in echoes if e["name"].startswith("a:") and not e["cleared"]]
    cleared = [e for e in echoes if e["cleared"]]
    assert [e["name"] for e in played] == [f"a:{i * 100}" for i in range(1, len(played) + 1)]
    assert 4 <= len(played) <= 6 and len(played) + len(cleared) == 8
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(played)]
    assert all(abs(g - 100) <= 15 for g in gaps), gaps
    (clear,) = play["clears"]
    first_echo = played[0]["t"] - 100  # playback started ~100 ms before the first echo
    assert clear["item"] == "a"
    assert clear["playedMs"] == pytest.approx(clear["t"] - first_echo, abs=25)
    # A jitter cushion after a mid-answer underrun, and only then.
    underrun = results["underrun"]
    print(
        f"underrun: first echo {underrun['first']:.0f} ms, resumed one {underrun['second']:.0f} ms"
    )
    assert underrun["stats"]["underruns"] == 1
    assert underrun["first"] == pytest.approx(100, abs=25)  # into an empty buffer: at once
    assert underrun["second"] - 100 >= 40, underrun  # 40 ms late: waits about twice that
    # The player's output, captured again at 8 kHz: the tone came through both resamplers.
    rms, freq = _level(play["frames"][6:20], "pcmu")
    assert freq == pytest.approx(1000, rel=0.05)
    assert rms == pytest.approx(8000 / math.sqrt(2), rel=0.15)
