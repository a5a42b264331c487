"""Shared state in Redis: several worker processes, and several instances, as one relay.

Keys (all under `relay:`):

    token:{token}      string  the CallSid; expires with the token; GETDEL spends it once
    calls              hash    CallSid -> {"owner", "instance", "info"}: every live call
    inst:{instance}    hash    CallSid -> owner: one instance's calls (RELAY_MAX_CALLS)
    procs              hash    process id -> {"instance", "worker", "pid", "consoles"}
    alive:{process}    string  refreshed every second, expires in 3: the process is up
    reaping:{process}  string  SET NX: one survivor cleans up after a dead process
    ended              list    recent ended calls (CallInfo + summary), newest first
    defaults           string  {"seq", "session", "greeting", "from"}: the last saved defaults

Channels: `relay:feed` carries console events ("{process id}\\n{event}\\n{event}..."), and
only processes with a console subscribe to it; `relay:ctl` carries console counts, new
defaults and departures to every process; `relay:to:{process}` carries console commands
for that process's calls and their answers.

Nothing here is on the audio path: a call's frames never touch Redis. Writes that a call
must not wait for (a call started or ended, feed events) are queued and sent by tasks; if
Redis is away they are logged and counted, and the calls carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.console_protocol import CommandError, ConsoleCommand, decode_command

from .. import metrics
from .base import Node, Shared, SharedStateError, SharedStateUnavailable

if TYPE_CHECKING:
    from ..hub import Hub

log = logging.getLogger("relay.shared")

P = "relay:"
FEED = P + "feed"
CTL = P + "ctl"
CALLS = P + "calls"
PROCS = P + "procs"
ENDED = P + "ended"
DEFAULTS = P + "defaults"
ENDED_KEPT = 100
TOKEN_TTL_S = 300.0
BEAT_S = 1.0  # heartbeat period
ALIVE_TTL_S = 3.0  # a process silent this long is dead: its calls are marked ended
RPC_TIMEOUT_S = 5.0  # a command for a call on another process: its answer, at most
STARTUP_S = 10.0  # waiting for Redis at start-up, at most
FEED_MAX_PENDING = 20_000  # feed events waiting for Redis; past it they are dropped
FEED_BATCH_BYTES = 256 * 1024

# Admit a call if it is not live anywhere and this instance is under its limit, atomically:
# two workers checking at once cannot both take the last place.
_ADMIT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'duplicate' end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[2]) then return 'busy' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
return ''
"""

# New defaults get the next sequence number; every process applies only newer ones, so
# two consoles saving at once on two processes still leave every process with the same.
_DEFAULTS = """
local seq = redis.call('INCR', KEYS[2])
local rest = string.sub(ARGV[1], 2)
redis.call('SET', KEYS[1], '{"seq":' .. seq .. ',' .. rest)
redis.call('PUBLISH', KEYS[3], '{"op":"defaults","seq":' .. seq .. ',' .. rest)
return seq
"""

_json = msgspec.json.Encoder()


def _dumps(value: Any) -> bytes:
    return _json.encode(value)


def _inst_key(instance: str) -> str:
    return f"{P}inst:{instance}"


def _alive_key(process: str) -> str:
    return f"{P}alive:{process}"


def _to(process: str) -> str:
    return f"{P}to:{process}"


def dead_summary(info: dict[str, Any], now: float, detail: str) -> dict[str, Any]:
    """The console Summary of a call whose process died: only what the registry knew."""
    started = info.get("started_at")
    duration = max(0.0, now - started) if isinstance(started, int | float) else 0.0
    return {
        "duration_s": round(duration, 3),
        "turns": 0,
        "usage": {},
        "reason": detail,
        "end_reason": "error",
        "latency_ms": [],
        "latency_p50_ms": None,
        "latency_p95_ms": None,
        "reconnects": 0,
        "handovers": 0,
    }


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _shared_errors(
    fn: Callable[_P, Coroutine[Any, Any, _T]],
) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """Redis's own errors become SharedStateError, the one the rest of the relay knows."""

    @functools.wraps(fn)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await fn(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise SharedStateError(f"Redis: {type(exc).__name__}: {exc}") from exc

    return wrapper


class RedisLink:
    """This process's connection to the shared Redis: its identity, heartbeat, the reaping
    of dead processes, and the control channels. The interfaces below are views on it."""

    def __init__(self, url: str, node: Node, hub: Hub) -> None:
        self.url = url
        self.node = node
        self.hub = hub
        # Any: redis-py types each async command as a union of its sync and async results,
        # which mypy cannot await; results are typed where they are used.
        self.client: Any = aioredis.from_url(
            url, socket_connect_timeout=2.0, socket_timeout=5.0, health_check_interval=10
        )
        self.tasks: set[asyncio.Task[Any]] = set()
        # Other live processes -> (their console-count version, their console count).
        self.remote: dict[str, tuple[int, int]] = {}
        self.console_seq = 0  # bumped on each change of this process's console count
        self.ok = False
        self._error_logged: set[str] = set()
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {}
        # Run when the control channel is back after an outage (messages were missed).
        self.resync: list[Callable[[], Awaitable[None]]] = []
        self._closing = False

    # --- plumbing ----------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def failed(self, op: str, exc: BaseException) -> None:
        """Log the first failure of each kind until Redis answers again; count them all."""
        metrics.redis_error(op)
        self.ok = False
        if op not in self._error_logged:
            self._error_logged.add(op)
            log.warning("redis: %s failed (%s: %s); calls carry on", op, type(exc).__name__, exc)

    def healthy(self) -> None:
        if not self.ok:
            if self._error_logged:
                log.info("redis: answering again")
            self.ok = True
            self._error_logged.clear()

    def background(self, coro: Awaitable[Any], op: str) -> None:
        """A write nobody waits for."""

        async def run() -> None:
            try:
                await coro
            except (RedisError, OSError) as exc:
                self.failed(op, exc)

        self.spawn(run(), op)

    def heard(self, process: str, seq: int, consoles: int) -> None:
        """Another process's console count, from its message or its registry entry,
        whichever is newer (the two travel separately)."""
        if process == self.node.id:
            return
        known = self.remote.get(process)
        if known is None or seq >= known[0]:
            self.remote[process] = (seq, consoles)

    def rewatch(self) -> None:
        """This process's calls are watched while a console is connected anywhere."""
        self.hub.set_remote_watched(any(n > 0 for _, n in self.remote.values()))

    def on(self, op: str, handler: Callable[[dict[str, Any]], None]) -> None:
        self._handlers[op] = handler

    async def publish(self, channel: str, message: dict[str, Any]) -> int:
        receivers: int = await self.client.publish(channel, _dumps(message))
        return receivers

    # --- lifetime ------------------------------------------------------------------------

    async def connect(self) -> None:
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                await self.client.ping()
                break
            except (RedisError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise SharedStateUnavailable(
                        f"cannot reach Redis at {display(self.url)}: {type(exc).__name__}: {exc}"
                    ) from None
                await asyncio.sleep(0.2)
        self.ok = True

    def start_listening(self) -> asyncio.Event:
        """Subscribe to the control channels; the event is set once subscribed."""
        subscribed = asyncio.Event()
        self.spawn(self._listen(subscribed), "redis-control")
        return subscribed

    async def _listen(self, subscribed: asyncio.Event) -> None:
        backoff = 0.1
        while not self._closing:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CTL, _to(self.node.id))
                if subscribed.is_set():
                    for resync in self.resync:
                        self.background(resync(), "resync")
                subscribed.set()
                backoff = 0.1
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        self._dispatch(msg["data"])
            except (RedisError, OSError) as exc:
                self.failed("subscribe", exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _dispatch(self, data: bytes) -> None:
        try:
            message = json.loads(data)
            handler = self._handlers.get(message.get("op", ""))
            if handler is not None:
                handler(message)
        except Exception:  # a bad message must not stop the listener
            log.exception("redis: control message not handled")

    async def close(self) -> None:
        self._closing = True
        for task in list(self.tasks):
            if task.get_name() in ("redis-control", "redis-beat", "redis-feed-in", "redis-command"):
                task.cancel()
        # Let queued writes (the last calls' ends) land, briefly.
        pending = [t for t in self.tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=2.0)
        with contextlib.suppress(Exception):
            await self.client.aclose()


def display(url: str) -> str:
    """The URL without a password, for logs."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisTokens:
    def __init__(self, link: RedisLink, ttl_s: float = TOKEN_TTL_S) -> None:
        self.link = link
        self.ttl_ms = int(ttl_s * 1000)

    @_shared_errors
    async def issue(self, call_sid: str) -> str:
        token = secrets.token_urlsafe(24)
        await self.link.client.set(P + "token:" + token, call_sid, px=self.ttl_ms)
        return token

    @_shared_errors
    async def redeem(self, token: str, call_sid: str) -> bool:
        if not token or len(token) > 128:
            return False
        # GETDEL: read and delete in one step, so a token is spent once across processes.
        bound = await self.link.client.getdel(P + "token:" + token)
        return bound is not None and secrets.compare_digest(bound, call_sid.encode())


class RedisRegistry:
    """Live calls by CallSid in Redis, the processes that hold them, and clean-up after a
    process that died: its calls are ended with a reason, for every console."""

    def __init__(
        self,
        link: RedisLink,
        on_reaped: Callable[[list[dict[str, Any]], str], None] = lambda entries, detail: None,
    ) -> None:
        self.link = link
        self.node = link.node
        self.inst_key = _inst_key(self.node.instance)
        self.on_reaped = on_reaped
        self._admit = link.client.register_script(_ADMIT)
        self._written: dict[str, dict[str, Any]] = {}  # CallInfo last written, by CallSid
        self._registered = False
        link.on("cmd", self._on_command)
        link.on("reply", self._on_reply)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def _entry(self, info: dict[str, Any] | None) -> bytes:
        return _dumps({"owner": self.node.id, "instance": self.node.instance, "info": info})

    @_shared_errors
    async def has_room(self, limit: int) -> bool:
        count: int = await self.link.client.hlen(self.inst_key)
        return count < limit

    @_shared_errors
    async def admit(self, call_sid: str, limit: int) -> str:
        keys = [CALLS, self.inst_key]
        args = [call_sid, limit, self._entry(None), self.node.id]
        verdict = await self._admit(keys=keys, args=args)
        return verdict.decode() if isinstance(verdict, bytes) else str(verdict or "")

    def started(self, info: dict[str, Any]) -> None:
        sid = info["call_sid"]
        self._written[sid] = info
        self.link.background(self.link.client.hset(CALLS, sid, self._entry(info)), "call-start")

    def release(self, call_sid: str) -> None:
        pipe = self.link.client.pipeline(transaction=True)
        pipe.hdel(CALLS, call_sid)
        pipe.hdel(self.inst_key, call_sid)
        self.link.background(pipe.execute(), "call-release")

    def ended(self, call_sid: str, entry: dict[str, Any]) -> None:
        self._written.pop(call_sid, None)
        pipe = self.link.client.pipeline(transaction=True)
        pipe.hdel(CALLS, call_sid)
        pipe.hdel(self.inst_key, call_sid)
        pipe.lpush(ENDED, _dumps(entry))
        pipe.ltrim(ENDED, 0, ENDED_KEPT - 1)
        self.link.background(pipe.execute(), "call-end")

    @_shared_errors
    async def live(self) -> list[dict[str, Any]]:
        raw = await self.link.client.hvals(CALLS)
        calls = [json.loads(v)["info"] for v in raw]
        return sorted((c for c in calls if c), key=lambda c: c.get("started_at") or 0)

    @_shared_errors
    async def recent(self, n: int) -> list[dict[str, Any]]:
        raw = await self.link.client.lrange(ENDED, 0, n - 1)
        return [json.loads(v) for v in reversed(raw)]

    # --- console commands for calls on other processes ------------------------------------

    @_shared_errors
    async def forward(self, call_sid: str, cmd: ConsoleCommand) -> dict[str, Any] | None:
        raw = await self.link.client.hget(CALLS, call_sid)
        if raw is None:
            return None
        owner = json.loads(raw)["owner"]
        if owner == self.node.id:
            return None  # admitted here but not started yet, or just ended
        req = secrets.token_hex(8)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req] = reply
        try:
            message = {"op": "cmd", "from": self.node.id, "id": req, "cmd": _dumps(cmd).decode()}
            if not await self.link.publish(_to(owner), message):
                raise ValueError(f"call {call_sid} was on a relay process that is gone")
            try:
                answer = await asyncio.wait_for(reply, RPC_TIMEOUT_S)
            except TimeoutError:
                raise ValueError(
                    f"the relay process holding call {call_sid} did not answer"
                ) from None
        finally:
            self._pending.pop(req, None)
        if not answer.get("ok"):
            raise ValueError(str(answer.get("message", "refused")))
        result: dict[str, Any] = answer.get("result") or {}
        return result

    def _on_reply(self, message: dict[str, Any]) -> None:
        future = self._pending.get(str(message.get("id")))
        if future is not None and not future.done():
            future.set_result(message)

    def _on_command(self, message: dict[str, Any]) -> None:
        self.link.spawn(self._run_command(message), "redis-command")

    async def _run_command(self, message: dict[str, Any]) -> None:
        answer: dict[str, Any] = {"op": "reply", "id": message.get("id")}
        try:
            cmd = decode_command(str(message.get("cmd", "")))
            call_sid = getattr(cmd, "call_sid", None) or ""
            runner = self.link.hub.calls.get(call_sid)
            if runner is None:
                raise ValueError(f"no live call {call_sid}")
            await runner.on_console(cmd)
            answer.update(ok=True, result={})
        except (ValueError, CommandError) as exc:
            answer.update(ok=False, message=str(exc))
        try:
            await self.link.publish(_to(str(message.get("from"))), answer)
        except (RedisError, OSError) as exc:
            self.link.failed("command-reply", exc)

    # --- heartbeat, and clean-up after dead processes ---------------------------------------

    def proc_entry(self) -> bytes:
        node, link = self.node, self.link
        return _dumps(
            {"instance": node.instance, "worker": node.worker, "pid": node.pid,
             "consoles": len(link.hub.consoles), "cseq": link.console_seq,
             "started_at": node.started_at}
        )  # fmt: skip

    async def beat(self) -> None:
        """Say this process is alive, refresh its calls' info, and clean up dead ones."""
        link, node, client = self.link, self.node, self.link.client
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(PROCS)
        pipe.set(_alive_key(node.id), b"1", px=int(ALIVE_TTL_S * 1000))
        pipe.hset(PROCS, node.id, self.proc_entry())
        changed = []
        for sid, runner in list(link.hub.calls.items()):
            info = runner.bridge.info()
            if self._written.get(sid) != info:
                changed.append((sid, info))
                pipe.hset(CALLS, sid, self._entry(info))
        procs_raw, *_ = await pipe.execute()
        for sid, info in changed:
            self._written[sid] = info
        procs = {k.decode(): json.loads(v) for k, v in procs_raw.items()}
        if self._registered and node.id not in procs:
            # Redis was away long enough for others to take this process for dead.
            log.warning("redis: this process had been taken for dead; registering its calls again")
            await self._register_calls()
        self._registered = True
        others = [p for p in procs if p != node.id]
        check = client.pipeline(transaction=False)
        for p in others:
            check.exists(_alive_key(p))
        alive = await check.execute() if others else []
        up = {p for p, a in zip(others, alive, strict=True) if a}
        for p in list(link.remote):
            if p not in up:
                del link.remote[p]
        for p in up:
            link.heard(p, int(procs[p].get("cseq") or 0), int(procs[p].get("consoles") or 0))
        link.rewatch()  # before reaping: the ends of dead calls go to every console
        for p in others:
            if p not in up:
                await self._reap(p, procs[p])

    async def _register_calls(self) -> None:
        pipe = self.link.client.pipeline(transaction=False)
        for sid, runner in list(self.link.hub.calls.items()):
            info = runner.bridge.info()
            self._written[sid] = info
            pipe.hset(CALLS, sid, self._entry(info))
            pipe.hset(self.inst_key, sid, self.node.id)
        await pipe.execute()

    async def _reap(self, process: str, proc: dict[str, Any]) -> None:
        client = self.link.client
        claimed = await client.set(P + "reaping:" + process, self.node.id, nx=True, px=60_000)
        if not claimed:
            return  # another survivor is on it
        worker, pid, instance = proc.get("worker"), proc.get("pid"), proc.get("instance", "")
        detail = f"relay worker {worker} died (pid {pid} on {instance})"
        now = time.time()
        entries: list[dict[str, Any]] = []
        for sid, raw in (await client.hgetall(CALLS)).items():
            entry = json.loads(raw)
            if entry.get("owner") != process:
                continue
            info = entry.get("info") or {"call_sid": sid.decode(), "started_at": now}
            entries.append({**info, "state": "ended", "summary": dead_summary(info, now, detail)})
        pipe = client.pipeline(transaction=True)
        for e in entries:
            pipe.hdel(CALLS, e["call_sid"])
            pipe.hdel(_inst_key(instance), e["call_sid"])
            pipe.lpush(ENDED, _dumps(e))
        pipe.ltrim(ENDED, 0, ENDED_KEPT - 1)
        pipe.hdel(PROCS, process)
        pipe.publish(CTL, _dumps({"op": "gone", "process": process}))
        await pipe.execute()
        log.error("%s: %d of its calls marked ended", detail, len(entries))
        metrics.WORKERS_LOST.inc()
        hub = self.link.hub
        for e in entries:
            sid = e["call_sid"]
            hub.publish({"type": "call.state", "call_sid": sid, "state": "ended"})
            hub.publish({"type": "call.ended", "call_sid": sid, "summary": e["summary"]})
        self.on_reaped(entries, detail)

    async def leave(self) -> None:
        """On a clean exit: this process is gone, and nobody needs to reap it."""
        client, node = self.link.client, self.node
        pipe = client.pipeline(transaction=False)
        pipe.delete(_alive_key(node.id))
        pipe.hdel(PROCS, node.id)
        pipe.publish(CTL, _dumps({"op": "gone", "process": node.id}))
        await pipe.execute()


class RedisFeed:
    """Console events across processes. Out: every event of this process's calls, batched
    into one PUBLISH per loop turn. In: only while this process has a console."""

    def __init__(self, link: RedisLink, proc_entry: Callable[[], bytes]) -> None:
        self.link = link
        self.proc_entry = proc_entry  # this process's registry entry, with its consoles
        self.me = link.node.id.encode()
        self._out: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._dropped_logged = False
        self._stopping = False
        link.on("watch", self._on_watch)
        link.on("gone", self._on_gone)

    def start(self) -> None:
        self.link.spawn(self._send(), "redis-feed-out")

    def publish(self, data: bytes) -> None:
        if len(self._out) >= FEED_MAX_PENDING:
            metrics.FEED_DROPPED.inc()
            if not self._dropped_logged:
                self._dropped_logged = True
                log.warning("redis: console feed backed up; events for other processes dropped")
            return
        self._out.append(data)
        self._wake.set()

    def stop(self) -> None:
        """Send what is queued, then end (at close)."""
        self._stopping = True
        self._wake.set()

    async def _send(self) -> None:
        out, client = self._out, self.link.client
        while not (self._stopping and not out):
            await self._wake.wait()
            self._wake.clear()
            while out:
                batch = [self.me]
                size = 0
                while out and size < FEED_BATCH_BYTES:
                    item = out.popleft()
                    batch.append(item)
                    size += len(item)
                try:
                    await client.publish(FEED, b"\n".join(batch))
                    self._dropped_logged = False
                except (RedisError, OSError) as exc:
                    self.link.failed("feed", exc)
                    metrics.FEED_DROPPED.inc(len(batch) - 1)
                    if self._stopping:
                        return

    def consoles_changed(self, count: int) -> None:
        if count and self._reader is None:
            self._reader = self.link.spawn(self._receive(), "redis-feed-in")
        elif not count and self._reader is not None:
            self._reader.cancel()
            self._reader = None
        link = self.link
        link.console_seq += 1
        message = {"op": "watch", "process": link.node.id, "consoles": count}
        message["cseq"] = link.console_seq
        pipe = link.client.pipeline(transaction=False)
        pipe.hset(PROCS, link.node.id, self.proc_entry())
        pipe.publish(CTL, _dumps(message))
        link.background(pipe.execute(), "watch")

    async def _receive(self) -> None:
        backoff = 0.1
        deliver = self.link.hub.deliver
        me = self.me
        while True:
            pubsub = self.link.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(FEED)
                backoff = 0.1
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None or msg.get("type") != "message":
                        continue
                    sender, _, body = msg["data"].partition(b"\n")
                    if sender == me:
                        continue  # this process's own events reached its consoles directly
                    for event in body.split(b"\n"):
                        deliver(event)
            except (RedisError, OSError) as exc:
                self.link.failed("feed-subscribe", exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _on_watch(self, message: dict[str, Any]) -> None:
        seq, consoles = int(message.get("cseq") or 0), int(message.get("consoles") or 0)
        self.link.heard(str(message.get("process")), seq, consoles)
        self.link.rewatch()

    def _on_gone(self, message: dict[str, Any]) -> None:
        self.link.remote.pop(str(message.get("process")), None)
        self.link.rewatch()


class RedisDefaults:
    """The console's saved defaults, the same on every process: each save gets a sequence
    number in Redis; every process applies the newest it has heard of."""

    def __init__(self, link: RedisLink, apply: Callable[[dict[str, Any], str, bool], None]) -> None:
        self.link = link
        self.apply = apply
        self.seq = 0
        self._script = link.client.register_script(_DEFAULTS)
        link.on("defaults", self._on_defaults)
        link.resync.append(self.load)  # a save announced while the channel was down

    async def load(self) -> None:
        """At start-up: the defaults the running processes use, if any were saved."""
        raw = await self.link.client.get(DEFAULTS)
        if raw is not None:
            self._on_defaults(json.loads(raw), force=not self.seq)

    async def changed(self, session: dict[str, Any], greeting: str) -> None:
        doc = _dumps({"session": session, "greeting": greeting, "from": self.link.node.id})
        try:
            seq = int(await self._script(keys=[DEFAULTS, DEFAULTS + ":seq", CTL], args=[doc]))
        except (RedisError, OSError) as exc:
            self.link.failed("defaults", exc)
            return
        if seq > self.seq:
            # Ours is the newest; an older save heard while ours was on its way may have
            # been applied meanwhile, so ours goes back on (quietly: the caller tells).
            self.seq = seq
            self.apply(session, greeting, False)

    def _on_defaults(self, message: dict[str, Any], force: bool = False) -> None:
        seq = int(message.get("seq") or 0)
        if seq <= self.seq:
            return  # older than what this process has (or its own save, already applied)
        self.seq = seq
        # Our own save is applied too (quietly: the saving console is told by the caller):
        # its announcement can arrive before the script's reply, after an older save from
        # another process was applied, and then nothing else would put ours back.
        own = message.get("from") == self.link.node.id
        session, greeting = message.get("session"), message.get("greeting")
        if isinstance(session, dict) and isinstance(greeting, str):
            self.apply(session, greeting, not force and not own)


class RedisShared(Shared):
    """The Redis implementations, with the heartbeat that keeps this process registered."""

    def __init__(
        self,
        link: RedisLink,
        apply_defaults: Callable[[dict[str, Any], str, bool], None],
        on_reaped: Callable[[list[dict[str, Any]], str], None],
    ) -> None:
        self.link = link
        self.redis_registry = RedisRegistry(link, on_reaped)
        self.redis_feed = RedisFeed(link, self.redis_registry.proc_entry)
        self.redis_defaults = RedisDefaults(link, apply_defaults)
        super().__init__(
            link.node, RedisTokens(link), self.redis_registry, self.redis_feed, self.redis_defaults
        )

    async def start(self) -> None:
        link = self.link
        await link.connect()
        subscribed = link.start_listening()
        await asyncio.wait_for(subscribed.wait(), STARTUP_S)
        await self.redis_defaults.load()
        await self.redis_registry.beat()
        self.redis_feed.start()
        link.spawn(self._beat(), "redis-beat")
        log.info(
            "shared state: Redis at %s, as %s (%d other processes)",
            display(link.url),
            link.node.label,
            len(link.remote),
        )

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(BEAT_S)
            try:
                await self.redis_registry.beat()
                self.link.healthy()
            except (RedisError, OSError) as exc:
                self.link.failed("heartbeat", exc)
            except Exception:
                log.exception("redis: heartbeat failed")

    async def close(self) -> None:
        self.redis_feed.stop()
        try:
            await asyncio.wait_for(self.redis_registry.leave(), 2.0)
        except (RedisError, OSError, TimeoutError) as exc:
            self.link.failed("leave", exc)
        await self.link.close()

    def status(self) -> dict[str, Any]:
        return {
            "backend": "redis",
            "redis": "ok" if self.link.ok else "unavailable",
            "processes": 1 + len(self.link.remote),
        }


def redis_state(
    url: str,
    node: Node,
    hub: Hub,
    apply_defaults: Callable[[dict[str, Any], str, bool], None],
    on_reaped: Callable[[list[dict[str, Any]], str], None],
) -> RedisShared:
    link = RedisLink(url, node, hub)
    return RedisShared(link, apply_defaults, on_reaped)
