"""The load generator process: lean Twilio-like callers and a lean Realtime-like model.

Run by `bench.scale` as `python -m bench.loadgen` (pinned to the generator core). Protocol
with the parent, one JSON line each way:

    -> stdout  {"model_url": "ws://127.0.0.1:PORT/v1/realtime"}
    <- stdin   {"base_url": ..., "server_pid": ..., "calls": N, ...}   (the relay is up)
    -> stdout  RESULT {...}

Every 20 ms caller frame and every 100 ms model delta carries an 18-byte tag at the start of
its audio: magic, call number, sequence number and the send time (CLOCK_MONOTONIC ns, the same
clock in every process). The receiving side decodes only those 24 base64 characters, so each
frame is matched exactly (latency, loss, reordering) without decoding anything else.

The callers follow the Twilio flow: signed POST /twiml, then the <Stream> URL from the TwiML,
signed upgrade, `connected`, `start` with the stream token, `media` every 20 ms (silence
frames too), marks echoed when their audio has played, `stop`. The model follows the GA
event order: session.created, session.updated for each session.update, and in turns
response.created ... output_audio.delta x K ... response.done, deltas sent faster than real
time. It only implements what a relay needs from it under load: no VAD, no truncation logic.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import os
import random
import re
import struct
import sys
import time
from array import array
from typing import Any

import aiohttp
import msgspec
from twilio.request_validator import RequestValidator

from . import lean_ws
from .procstat import Snapshot, cpu_seconds, rss_bytes, window

MAGIC = 0xA5
TAG = struct.Struct(">BBIIQ")  # magic, 0, call, seq, t_ns -> 18 bytes -> 24 base64 chars
TAG_B64 = 24
FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law
_b2a = binascii.b2a_base64
_a2b = binascii.a2b_base64
_now_ns = time.monotonic_ns
_dict = msgspec.json.Decoder(dict[str, Any])
_enc = msgspec.json.Encoder()

SILENCE_REST = _b2a(b"\xff" * (FRAME_BYTES - TAG.size), newline=False)
APPEND_PREFIX = b'{"type":"input_audio_buffer.append"'
AUDIO_KEY = b'"audio":"'
PAYLOAD_KEY = b'"payload":"'


def tag_b64(call: int, seq: int) -> bytes:
    return _b2a(TAG.pack(MAGIC, 0, call, seq, _now_ns()), newline=False)


def read_tag(b64: bytes) -> tuple[int, int, int]:
    magic, _, call, seq, t_ns = TAG.unpack(_a2b(b64))
    if magic != MAGIC:
        raise ValueError("untagged audio")
    return call, seq, t_ns


class Stats:
    """Everything measured in this process; latencies only while `recording`."""

    def __init__(self) -> None:
        self.recording = False
        self.in_lat = array("d")  # ms: caller sent -> model received the append
        self.out_lat = array("d")  # ms: model sent the delta -> caller received the media
        self.in_received: dict[int, int] = {}  # call -> appends received
        self.in_reordered = 0
        self.in_dup = 0
        self.out_sent: dict[int, int] = {}  # call -> deltas sent
        self.out_reordered = 0
        self.pacer_late = array("d")  # ms the 20 ms ticks fired late (generator lag)
        self.untagged_in = 0
        self.errors: list[str] = []


STATS = Stats()


# --- the model ---------------------------------------------------------------------------


class ModelScript:
    listen_s = 2.0  # the caller "talks" (model silent)
    answer_ms = 2000  # then the model answers with this much audio
    delta_ms = 100
    speedup = 4.0  # deltas are sent this much faster than real time
    connect_delay_s = 0.0
    configure_delay_s = 0.0


class ModelSession(lean_ws.ServerProtocol):
    script = ModelScript()
    stopping = False
    live: set[ModelSession] = set()

    def __init__(self) -> None:
        super().__init__()
        self.call = -1
        self.last_seq = 0
        self.out_seq = 0
        self.task: asyncio.Task[None] | None = None
        self.n = 0
        self.sid = "sess_" + os.urandom(8).hex()

    def on_open(self) -> None:
        ModelSession.live.add(self)
        self._event(
            {
                "type": "session.created",
                "session": {
                    "type": "realtime",
                    "object": "realtime.session",
                    "id": self.sid,
                    "model": "gpt-realtime",
                    "expires_at": int(time.time()) + 3600,
                },
            }
        )

    def on_closed(self) -> None:
        ModelSession.live.discard(self)
        if self.task is not None:
            self.task.cancel()

    def _eid(self) -> str:
        self.n += 1
        return f"event_{self.sid[5:]}{self.n}"

    def _event(self, ev: dict[str, Any]) -> None:
        ev["event_id"] = self._eid()
        self.send_text(_enc.encode(ev))

    def on_message(self, data: bytes) -> None:
        if data.startswith(APPEND_PREFIX):
            i = data.find(AUDIO_KEY)
            try:
                call, seq, t_ns = read_tag(data[i + 9 : i + 9 + TAG_B64])
            except (ValueError, binascii.Error, struct.error):
                STATS.untagged_in += 1
                return
            st = STATS
            if st.recording:
                st.in_lat.append((_now_ns() - t_ns) / 1e6)
            st.in_received[call] = st.in_received.get(call, 0) + 1
            if seq <= self.last_seq:
                if seq == self.last_seq:
                    st.in_dup += 1
                else:
                    st.in_reordered += 1
            else:
                self.last_seq = seq
            if self.call < 0:
                self.call = call
                self.task = asyncio.ensure_future(self._turns())
            return
        try:
            ev = _dict.decode(data)
        except msgspec.DecodeError:
            return
        kind = ev.get("type")
        if kind == "session.update":
            delay = self.script.configure_delay_s
            if delay:
                asyncio.get_running_loop().call_later(delay, self._updated, ev)
            else:
                self._updated(ev)

    def _updated(self, ev: dict[str, Any]) -> None:
        session = ev.get("session") or {}
        self._event({"type": "session.updated", "session": {**session, "id": self.sid}})

    async def _turns(self) -> None:
        sc = self.script
        loop = asyncio.get_running_loop()
        await asyncio.sleep(random.uniform(0, sc.listen_s))  # calls out of phase
        k = 0
        while not ModelSession.stopping and self.transport is not None:
            k += 1
            t0 = loop.time()
            await self._answer(k)
            played = sc.answer_ms / 1000
            await asyncio.sleep(max(0.0, t0 + played + sc.listen_s - loop.time()))

    async def _answer(self, k: int) -> None:
        sc = self.script
        rid = f"resp_{self.sid[5:]}{k}"
        iid = f"item_{self.sid[5:]}{k}"
        ids = {"response_id": rid, "item_id": iid, "output_index": 0}
        item = {"id": iid, "object": "realtime.item", "type": "message", "role": "assistant"}
        resp = {"object": "realtime.response", "id": rid, "status": "in_progress", "output": []}
        self._event({"type": "response.created", "response": resp})
        self._event(
            {"type": "response.output_item.added", "response_id": rid, "output_index": 0,
             "item": {**item, "status": "in_progress", "content": []}}
        )  # fmt: skip
        self._event({"type": "conversation.item.added", "previous_item_id": None, "item": item})
        self._event(
            {"type": "response.content_part.added", **ids, "content_index": 0,
             "part": {"type": "audio", "transcript": ""}}
        )  # fmt: skip
        n = sc.answer_ms // sc.delta_ms
        rest = _b2a(b"\x7f" * (sc.delta_ms * 8 - TAG.size), newline=False)
        head = (
            b'{"type":"response.output_audio.delta","event_id":"%s","response_id":"'
            + rid.encode()
            + b'","item_id":"'
            + iid.encode()
            + b'","output_index":0,"content_index":0,"delta":"'
        )
        loop = asyncio.get_running_loop()
        step = sc.delta_ms / 1000 / sc.speedup
        t0 = loop.time()
        for i in range(n):
            if self.transport is None:
                return
            self._event(
                {"type": "response.output_audio_transcript.delta", **ids, "content_index": 0,
                 "delta": "word "}
            )  # fmt: skip
            self.out_seq += 1
            tag = tag_b64(self.call, self.out_seq)
            self.send_text(head % self._eid().encode() + tag + rest + b'"}')
            STATS.out_sent[self.call] = STATS.out_sent.get(self.call, 0) + 1
            await asyncio.sleep(max(0.0, t0 + (i + 1) * step - loop.time()))
        text = "word " * n
        self._event({"type": "response.output_audio.done", **ids, "content_index": 0})
        self._event(
            {"type": "response.output_audio_transcript.done", **ids, "content_index": 0,
             "transcript": text}
        )  # fmt: skip
        self._event(
            {"type": "response.content_part.done", **ids, "content_index": 0,
             "part": {"type": "audio", "transcript": text}}
        )  # fmt: skip
        done_item = {**item, "status": "completed",
                     "content": [{"type": "output_audio", "transcript": text}]}  # fmt: skip
        self._event({"type": "response.output_item.done", "response_id": rid,
                     "output_index": 0, "item": done_item})  # fmt: skip
        self._event({"type": "conversation.item.done", "previous_item_id": None,
                     "item": done_item})  # fmt: skip
        usage = {"total_tokens": 300, "input_tokens": 200, "output_tokens": 100}
        self._event(
            {"type": "response.done",
             "response": {**resp, "status": "completed", "output": [done_item], "usage": usage}}
        )  # fmt: skip


async def start_model() -> tuple[asyncio.Server, str]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(ModelSession, "127.0.0.1", 0, backlog=2048)
    port = server.sockets[0].getsockname()[1]
    return server, f"ws://127.0.0.1:{port}/v1/realtime"


# --- the callers -------------------------------------------------------------------------


class Caller(lean_ws.ClientProtocol):
    def __init__(self, index: int, host: str, path: str, headers: dict[str, str]) -> None:
        super().__init__(host, path, headers)
        self.index = index
        self.stream_sid = ""
        self.seq = 0  # Twilio sequenceNumber (all message types)
        self.frame = 0  # media frames sent (the tag's sequence number)
        self.media_in = 0
        self.out_last = 0
        self.play_end = 0.0
        self.pending: list[asyncio.TimerHandle] = []
        self._mark_head = b""
        self._media_tail = b""

    def begin(self, call_sid: str, params: dict[str, str]) -> None:
        self.stream_sid = sid = "MZ" + os.urandom(16).hex()
        self._mark_head = b'{"event":"mark","streamSid":"' + sid.encode() + b'","sequenceNumber":"'
        self._media_tail = b'"},"streamSid":"' + sid.encode() + b'"}'
        self._send_event({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        start = {
            "accountSid": "AC" + "0" * 32,
            "streamSid": sid,
            "callSid": call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": params,
        }
        self._send_event({"event": "start", "start": start, "streamSid": sid})

    def _send_event(self, ev: dict[str, Any]) -> None:
        if ev["event"] != "connected":
            self.seq += 1
            ev["sequenceNumber"] = str(self.seq)
        self.send_text(_enc.encode(ev))

    def send_frame(self) -> None:
        self.seq += 1
        self.frame = f = self.frame + 1
        n = str(f).encode()
        self.send_text(
            b'{"event":"media","sequenceNumber":"'
            + str(self.seq).encode()
            + b'","media":{"track":"inbound","chunk":"'
            + n
            + b'","timestamp":"'
            + str(f * 20).encode()
            + b'","payload":"'
            + tag_b64(self.index, f)
            + SILENCE_REST
            + self._media_tail
        )

    def stop(self) -> None:
        for h in self.pending:
            h.cancel()
        self._send_event(
            {"event": "stop", "streamSid": self.stream_sid,
             "stop": {"accountSid": "AC" + "0" * 32, "callSid": ""}}
        )  # fmt: skip
        self.close(1000)

    def on_message(self, data: bytes) -> None:
        kind = data[:14]
        if kind == b'{"event":"medi':
            i = data.find(PAYLOAD_KEY) + 11
            j = data.find(b'"', i)
            now = _now_ns()
            try:
                _, seq, t_ns = read_tag(data[i : i + TAG_B64])
            except (ValueError, binascii.Error, struct.error):
                STATS.errors.append("untagged media")
                return
            st = STATS
            if st.recording:
                st.out_lat.append((now - t_ns) / 1e6)
            if seq <= self.out_last:
                st.out_reordered += 1
            else:
                self.out_last = seq
            self.media_in += 1
            t = asyncio.get_running_loop().time()
            self.play_end = max(self.play_end, t) + (j - i) * 3 / 32000  # 8 bytes per ms
        elif kind == b'{"event":"mark':
            i = data.find(b'"name":"') + 8
            name = data[i : data.find(b'"', i)]
            loop = asyncio.get_running_loop()
            h = loop.call_at(max(self.play_end, loop.time()), self._echo, name)
            self.pending.append(h)
            if len(self.pending) > 64:
                self.pending = [p for p in self.pending if not p.cancelled()][-64:]
        elif kind == b'{"event":"clea':
            for h in self.pending:
                h.cancel()
            self.pending.clear()
            self.play_end = 0.0
        else:
            STATS.errors.append(f"unexpected message {data[:60]!r}")

    def _echo(self, name: bytes) -> None:
        self.seq += 1
        self.send_text(
            self._mark_head + str(self.seq).encode() + b'","mark":{"name":"' + name + b'"}}'
        )


_STREAM = re.compile(r'<Stream url="([^"]+)"')
_PARAM = re.compile(r'<Parameter name="([^"]+)" value="([^"]*)"')


async def place(
    http: aiohttp.ClientSession, base: str, index: int, auth_token: str
) -> Caller | None:
    """POST /twiml like Twilio, then open the stream it names."""
    call_sid = "CA" + os.urandom(16).hex()
    params = {
        "CallSid": call_sid,
        "AccountSid": "AC" + "0" * 32,
        "From": f"+1555{index:07d}",
        "To": "+15550002222",
        "Direction": "inbound",
        "CallStatus": "ringing",
    }
    url = f"{base}/twiml"
    sig = RequestValidator(auth_token).compute_signature(url, params)
    try:
        async with http.post(url, data=params, headers={"X-Twilio-Signature": sig}) as r:
            twiml = await r.text()
            if r.status != 200:
                STATS.errors.append(f"/twiml HTTP {r.status}")
                return None
        m = _STREAM.search(twiml)
        if m is None:
            STATS.errors.append("no <Stream> in TwiML")
            return None
        stream_url = m.group(1)
        custom = {k: v for k, v in _PARAM.findall(twiml)}
        host = base.split("://", 1)[1].split("/", 1)[0]
        hostname, port = host.rsplit(":", 1)
        path = "/" + stream_url.split("://", 1)[1].split("/", 1)[1]
        ssig = RequestValidator(auth_token).compute_signature(stream_url, {})
        headers = {"X-Twilio-Signature": ssig}
        caller = await lean_ws.connect(
            lambda: Caller(index, host, path, headers), hostname, int(port)
        )
        assert isinstance(caller, Caller)
    except (OSError, aiohttp.ClientError, ConnectionError) as exc:
        STATS.errors.append(f"call {index}: {type(exc).__name__}: {exc}")
        return None
    caller.begin(call_sid, custom)
    return caller


def _sum(measure: Any, pids: list[int]) -> Any:
    return sum(measure(p) for p in pids)


class Pacer:
    """20 ms ticks on absolute deadlines; calls spread over 20 phases 1 ms apart."""

    def __init__(self, phases: int = 20) -> None:
        self.buckets: list[list[Caller]] = [[] for _ in range(phases)]
        self.running = True
        self.tasks: list[asyncio.Task[None]] = []
        self._next = 0

    def add(self, c: Caller) -> None:
        self.buckets[self._next % len(self.buckets)].append(c)
        self._next += 1

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        self.tasks = [
            asyncio.ensure_future(self._run(b, t0 + k * 0.020 / len(self.buckets)))
            for k, b in enumerate(self.buckets)
        ]

    async def _run(self, bucket: list[Caller], due: float) -> None:
        loop = asyncio.get_running_loop()
        late = STATS.pacer_late
        while self.running:
            due += 0.020
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.2:  # far behind: skip ahead, count it
                STATS.errors.append("pacer fell 200 ms behind")
                due = loop.time()
            if STATS.recording:
                late.append(max(0.0, (loop.time() - due) * 1000))
            for c in bucket:
                if c.transport is not None:
                    c.send_frame()


async def drive(cfg: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    n = int(cfg["calls"])
    base = cfg["base_url"]
    pid = int(cfg["server_pid"])
    # Several processes make the server (workers, their parent, Redis): CPU and memory of all.
    pids = [int(p) for p in cfg.get("server_pids") or [pid]]
    aux = [int(p) for p in cfg.get("aux_pids") or []]  # Redis: measured, not the server's
    rss0 = _sum(rss_bytes, pids)
    pacer = Pacer(int(cfg.get("phases", 20)))
    callers: list[Caller] = []
    conn = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=conn) as http:
        ramp = float(cfg["ramp_s"])
        pacer.start()
        t0 = loop.time()

        async def one(i: int) -> None:
            await asyncio.sleep(max(0.0, t0 + ramp * i / max(1, n) - loop.time()))
            c = await place(http, base, i, cfg["auth_token"])
            if c is not None:
                callers.append(c)
                pacer.add(c)

        await asyncio.gather(*(one(i) for i in range(n)))
    await asyncio.sleep(float(cfg["warm_s"]))
    # --- measurement window ---
    live_at_start = sum(1 for c in callers if c.transport is not None)
    start = Snapshot.take(pid, pids, loop.time(), aux)
    STATS.recording = True
    await asyncio.sleep(float(cfg["measure_s"]))
    STATS.recording = False
    end = Snapshot.take(pid, pids, loop.time(), aux)
    rss1 = _sum(rss_bytes, pids)
    per_process = [cpu_seconds(p) for p in pids]
    live_at_end = sum(1 for c in callers if c.transport is not None)
    # --- drain: stop sending, let in-flight frames land, then count ---
    ModelSession.stopping = True
    pacer.running = False
    await asyncio.sleep(float(cfg.get("drain_s", 1.5)))
    sent_in = sum(c.frame for c in callers)
    recv_in = sum(STATS.in_received.values())
    sent_out = sum(STATS.out_sent.values())
    recv_out = sum(c.media_in for c in callers)
    for c in callers:
        if c.transport is not None:
            c.stop()
    if callers:
        await asyncio.wait([c.closed for c in callers], timeout=5)
    return {
        "calls": n,
        "connected": len(callers),
        "live_at_start": live_at_start,
        "live_at_end": live_at_end,
        **window(start, end),
        "server_pids_cpu_s": per_process,  # cumulative, per process (since it started)
        "server_rss0": rss0,
        "server_rss": rss1,
        "in_lat": list(STATS.in_lat),
        "out_lat": list(STATS.out_lat),
        "pacer_late": list(STATS.pacer_late),
        "frames_sent": sent_in,
        "frames_received": recv_in,
        "frames_reordered": STATS.in_reordered,
        "frames_dup": STATS.in_dup,
        "deltas_sent": sent_out,
        "media_received": recv_out,
        "media_reordered": STATS.out_reordered,
        "untagged": STATS.untagged_in,
        "errors": STATS.errors[:20],
        "n_errors": len(STATS.errors),
    }


async def amain() -> None:
    server, url = await start_model()
    print(json.dumps({"model_url": url}), flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    cfg = json.loads(line)
    sc = ModelSession.script
    for k in ("listen_s", "answer_ms", "speedup", "connect_delay_s", "configure_delay_s"):
        if k in cfg:
            setattr(sc, k, cfg[k])
    result = await drive(cfg)
    print("RESULT " + json.dumps(result), flush=True)
    server.close()


def main() -> None:
    try:
        import uvloop

        uvloop.run(amain())
    except ImportError:  # pragma: no cover
        asyncio.run(amain())


if __name__ == "__main__":
    main()
