"""One load point: a server (the relay or the pass-through) pinned to one core, the
generator (lean callers + lean model) pinned to the other, N calls, numbers back.

`relay-1w` and `relay-2w` compare one relay process with two workers (RELAY_WORKERS=2 and
a Redis): the generator needs a core of its own on this 2-core machine, so each worker
gets an equal CPU budget instead of a core (a cgroup quota, `CpuBudget`), all on core 0.
Two workers thus get twice the CPU of one, as two cores would give them. Redis runs on the
generator's core (a deployment gives it a machine of its own) and is measured apart."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from .procstat import machine_busy_seconds

CFS_PERIOD_US = 10_000  # a short period: a throttled worker waits at most ~7.5 ms
WORKER_KINDS = ("relay-1w", "relay-2w")
SIP_KINDS = ("relay-sip", "sip-floor")  # driven by bench.sip_load: no audio through them

SERVER_CORE = "0"
GEN_CORE = "1"
AUTH_TOKEN = "bench-auth-token"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Timing:
    ramp_s: float
    warm_s: float
    measure_s: float
    drain_s: float = 1.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _taskset(core: str) -> list[str]:
    ncpu = os.cpu_count() or 1
    return ["taskset", "-c", core] if ncpu >= 2 else []


def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was up")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server at {url} did not come up")


class CpuBudget:
    """A cgroup (v1 cpu controller, or v2) that caps its processes at `share` of a core."""

    def __init__(self, name: str, share: float) -> None:
        quota = max(1000, int(share * CFS_PERIOD_US))
        v1 = "/sys/fs/cgroup/cpu"
        if os.path.isdir(v1) and os.path.exists(f"{v1}/cpu.cfs_quota_us"):
            self.path = f"{v1}/{name}"
            os.makedirs(self.path, exist_ok=True)
            self._write("cpu.cfs_period_us", str(CFS_PERIOD_US))
            self._write("cpu.cfs_quota_us", str(quota))
        else:  # cgroup v2: the cpu controller must be enabled for children of the root
            self.path = f"/sys/fs/cgroup/{name}"
            os.makedirs(self.path, exist_ok=True)
            self._write("cpu.max", f"{quota} {CFS_PERIOD_US}")

    def _write(self, name: str, value: str) -> None:
        with open(f"{self.path}/{name}", "w") as f:
            f.write(value)

    def add(self, pid: int) -> None:
        self._write("cgroup.procs", str(pid))

    def remove(self) -> None:
        for _ in range(50):  # once its processes are gone
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)


def budgets_available() -> str:
    """ "" if CPU budgets can be set here, else why not."""
    try:
        budget = CpuBudget(f"relay-bench-probe-{os.getpid()}", 0.5)
        budget.remove()
    except OSError as exc:
        return f"cannot create a CPU cgroup ({exc}); run as root with the cpu controller"
    return ""


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(x) for x in f.read().split()]
    return found


def _wait_workers(url: str, n: int, timeout: float = 20.0) -> None:
    """Until /health was answered by `n` distinct workers."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only workers {sorted(seen)} answered")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
            seen.add(json.loads(r.read())["worker"]["worker"])


def server_cmd(
    kind: str, port: int, model_url: str, extra: dict[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    skip = ("OPENAI_", "TWILIO_", "RELAY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    # Run from a scratch directory (no stray .env), importing the relay from this checkout, or
    # from BENCH_RELAY_ROOT (e.g. a `git worktree` of an older commit, for before/after runs).
    env["PYTHONPATH"] = os.environ.get("BENCH_RELAY_ROOT", ROOT)
    if kind in ("relay", "relay-sip", *WORKER_KINDS):
        env.update(extra or {})
        env.update(
            {
                "PORT": str(port),
                "RELAY_HOST": "127.0.0.1",
                "RELAY_DATA_DIR": tempfile.mkdtemp(prefix="bench-relay-data-"),
                "PUBLIC_URL": f"http://127.0.0.1:{port}",
                "OPENAI_REALTIME_URL": model_url,
                "OPENAI_API_KEY": "sk-bench-not-a-key",
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "RELAY_MAX_CALLS": "100000",
                "LOG_LEVEL": "WARNING",
                "RELAY_DRAIN_SECONDS": "3",
            }
        )
        if kind == "relay-2w":
            env["RELAY_WORKERS"] = "2"
        return [sys.executable, "-m", "relay"], env
    if kind == "sip-floor":
        api_base = (extra or {})["OPENAI_API_BASE"]
        return [sys.executable, "-m", "bench.sip_floor", str(port), model_url, api_base], env
    module = "bench.passthrough_aiohttp" if kind == "passthrough-aiohttp" else "bench.passthrough"
    return [sys.executable, "-m", module, str(port), model_url], env


def wait_quiet(max_wait_s: float = 60.0, threshold: float = 0.15) -> float:
    """Wait until the rest of the machine is nearly idle (< `threshold` of a core busy over
    one second), at most `max_wait_s`; returns the last busy fraction seen."""
    deadline = time.monotonic() + max_wait_s
    while True:
        b0 = machine_busy_seconds()
        time.sleep(1.0)
        busy = machine_busy_seconds() - b0
        if busy < threshold or time.monotonic() > deadline:
            return busy
        time.sleep(2.0)


def run_point(
    kind: str,
    calls: int,
    timing: Timing,
    *,
    profile: str | None = None,
    script: dict[str, Any] | None = None,
    quiet: bool = True,
    share: float = 0.25,
    gate: threading.Barrier | None = None,
) -> dict[str, Any]:
    """Run `calls` concurrent calls through `kind` ("relay" or "passthrough"); the worker
    kinds get `share` of a core per worker. `gate`: wait there with the points run beside
    this one, so that all start their calls, and so their windows, at the same moment."""
    busy_before = wait_quiet() if quiet else None
    generator = "bench.sip_load" if kind in SIP_KINDS else "bench.loadgen"
    gen = subprocess.Popen(
        [*_taskset(GEN_CORE), sys.executable, "-m", generator],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    server: subprocess.Popen[bytes] | None = None
    spy: subprocess.Popen[bytes] | None = None
    errlog = tempfile.TemporaryFile()  # noqa: SIM115 -- closed in the finally below
    redis: Any = None
    budgets: list[CpuBudget] = []
    try:
        assert gen.stdout is not None and gen.stdin is not None
        first = gen.stdout.readline()
        if not first:
            raise RuntimeError("load generator died: " + gen.stderr.read().decode()[-2000:])  # type: ignore[union-attr]
        hello = json.loads(first)
        model_url = hello["model_url"]
        extra = {}
        if "api_base" in hello:  # SIP: where the relay accepts calls, and the webhook secret
            extra = {
                "OPENAI_API_BASE": hello["api_base"],
                "OPENAI_WEBHOOK_SECRET": hello["webhook_secret"],
            }
        port = free_port()
        cmd, env = server_cmd(kind, port, model_url, extra)
        pids: list[int] = []
        if kind == "relay-2w":
            from relay.cluster.testing import RedisServer

            redis = RedisServer.start()
            env["REDIS_URL"] = redis.url
            # A deployment runs Redis as a service of its own (Railway's plug-in, compose's
            # redis container), not on the relay's cores: here it shares the generator's.
            subprocess.run(["taskset", "-pc", GEN_CORE, str(redis.proc.pid)], check=False,
                           capture_output=True)  # fmt: skip
        server = subprocess.Popen(
            [*_taskset(SERVER_CORE), *cmd],
            env=env,
            cwd=tempfile.gettempdir(),
            stdout=errlog,
            stderr=errlog,
        )
        _wait_up(f"http://127.0.0.1:{port}/health", server)
        pids = [server.pid]
        if kind in WORKER_KINDS:
            workers = 2 if kind == "relay-2w" else 1
            if workers > 1:
                _wait_workers(f"http://127.0.0.1:{port}/health", workers)
                pids += children(server.pid)
            for i, pid in enumerate(pids[-workers:]):
                budget = CpuBudget(f"relay-bench-{os.getpid()}-{i}", share)
                budget.add(pid)
                budgets.append(budget)
        cfg = {
            "base_url": f"http://127.0.0.1:{port}",
            "server_pid": server.pid,
            "server_pids": pids,
            "aux_pids": [redis.proc.pid] if redis is not None else [],
            "calls": calls,
            "auth_token": AUTH_TOKEN,
            "ramp_s": timing.ramp_s,
            "warm_s": timing.warm_s,
            "measure_s": timing.measure_s,
            "drain_s": timing.drain_s,
            **(script or {}),
        }
        if profile:
            # Sample the server during the window only (starts after ramp + warm).
            delay = timing.ramp_s + timing.warm_s
            spy = subprocess.Popen(
                [
                    "sh",
                    "-c",
                    f"sleep {delay}; exec {os.path.dirname(sys.executable)}/py-spy record "
                    f"--pid {server.pid} --duration {int(timing.measure_s)} --rate 200 "
                    f"--format speedscope --output {profile}.json --nonblocking >/dev/null 2>&1;"
                    f" {os.path.dirname(sys.executable)}/py-spy record --pid {server.pid} "
                    f"--duration 1 --format raw --output /dev/null --nonblocking >/dev/null 2>&1",
                ],
            )
        if gate is not None:
            gate.wait(timeout=120)
        gen.stdin.write((json.dumps(cfg) + "\n").encode())
        gen.stdin.flush()
        result: dict[str, Any] | None = None
        for line in gen.stdout:
            if line.startswith(b"RESULT "):
                result = json.loads(line[7:])
                break
        if result is None:
            raise RuntimeError("load generator died: " + gen.stderr.read().decode()[-2000:])  # type: ignore[union-attr]
        result["kind"] = kind
        result["busy_before"] = busy_before
        if kind in WORKER_KINDS:
            result["cpu_budget"] = share * len(budgets)  # cores' worth the workers may use
        errlog.seek(0)
        tail = errlog.read().decode(errors="replace").strip().splitlines()
        result["server_log_tail"] = tail[-10:]
        return result
    finally:
        if spy is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(timeout=timing.measure_s + 15)
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        for budget in budgets:
            budget.remove()
        if redis is not None:
            redis.stop()
        if gen.poll() is None:
            try:
                gen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                gen.kill()
                gen.wait()
        errlog.close()


def run_side_by_side(kinds: list[str], calls: int, timing: Timing) -> list[dict[str, Any]]:
    """The same point for several servers at once, each with its own generator, started
    together: every server meets the same machine in the same window, which separate runs
    on a shared VM do not (their CPU per call-second moves by up to 2x from run to run)."""
    wait_quiet()
    gate = threading.Barrier(len(kinds))
    results: list[dict[str, Any] | BaseException] = [RuntimeError("not run")] * len(kinds)

    def one(i: int, kind: str) -> None:
        try:
            results[i] = run_point(kind, calls, timing, quiet=False, gate=gate)
        except BaseException as exc:  # reported below, in the caller's thread
            gate.abort()
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i, k)) for i, k in enumerate(kinds)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def summarize(r: dict[str, Any]) -> dict[str, Any]:
    """Percentiles and per-call costs from a raw point result (drops the sample arrays)."""
    out = {k: v for k, v in r.items() if k not in ("in_lat", "out_lat", "pacer_late")}
    for name in ("in_lat", "out_lat", "pacer_late"):
        vals = r[name]
        out[name] = {
            "n": len(vals),
            "p50": pct(vals, 50),
            "p90": pct(vals, 90),
            "p99": pct(vals, 99),
            "max": max(vals) if vals else float("nan"),
        }
    live = max(1, r["live_at_end"])
    call_s = live * r["window_s"]
    out["server_cpu_ms_per_call_s"] = 1000 * r["server_cpu_s"] / call_s
    out["aux_cpu_ms_per_call_s"] = 1000 * r.get("aux_cpu_s", 0.0) / call_s
    out["server_cpu_frac"] = r["server_cpu_s"] / r["window_s"]
    out["gen_cpu_frac"] = r["gen_cpu_s"] / r["window_s"]
    out["other_cpu_frac"] = r.get("other_cpu_s", 0.0) / r["window_s"]
    out["rss_mb"] = r["server_rss"] / 2**20
    out["rss_per_call_kb"] = (r["server_rss"] - r["server_rss0"]) / live / 1024
    out["frames_lost"] = r["frames_sent"] - r["frames_received"]
    out["media_lost"] = r["deltas_sent"] - r["media_received"]
    return out
