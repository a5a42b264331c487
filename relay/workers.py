"""RELAY_WORKERS=N: N relay processes on one port, supervised by the process that bound it.

The parent binds the listening socket once and starts N children (`python -m relay`, each
its own event loop), which accept on that same socket: the kernel hands each connection to
whichever worker accepts first, and a connection waiting in the backlog survives the death
of any one worker. The children share state through Redis (REDIS_URL is required).

- SIGTERM or SIGINT to the parent is passed to every worker; each drains its own calls
  (RELAY_DRAIN_SECONDS) and the parent exits when all have.
- A worker that dies otherwise is reported and started again: after 1 s, doubling (up to
  30 s) while it keeps dying within 30 s of its start. Its calls are not restarted: the other
  processes see its heartbeat stop and mark them ended ("relay worker N died").
- Metrics: the parent gives the workers one PROMETHEUS_MULTIPROC_DIR, so a scrape reaching
  any worker answers for the whole instance (relay/metrics.py).
- Each worker watches its parent: if the parent is gone, it drains and exits too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from types import FrameType

from .cluster import default_instance
from .cluster.redis_state import display
from .settings import Settings

log = logging.getLogger("relay.workers")

RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
STABLE_S = 30.0  # a worker that lived this long restarts after RESTART_FIRST_S again
BACKLOG = 2048
MIGRATE_TIMEOUT_S = 15.0


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = RESTART_FIRST_S
    restart_at: float | None = None


@dataclass
class Supervisor:
    settings: Settings
    sock: socket.socket
    metrics_dir: str
    instance: str
    workers: list[Worker] = field(default_factory=list)
    stopping: bool = False

    def spawn(self, worker: Worker) -> None:
        fd = self.sock.fileno()
        env = {
            **os.environ,
            "RELAY_WORKER_INDEX": str(worker.index),
            "RELAY_LISTEN_FD": str(fd),
            "RELAY_INSTANCE_ID": self.instance,
            "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir,
        }
        worker.proc = subprocess.Popen([sys.executable, "-m", "relay"], env=env, pass_fds=(fd,))
        worker.started = time.monotonic()
        worker.restart_at = None
        log.info("relay worker %d started (pid %d)", worker.index, worker.proc.pid)

    def stop(self, signum: int, _frame: FrameType | None = None) -> None:
        if not self.stopping:
            log.info("%s: draining %d workers", signal.Signals(signum).name, len(self.workers))
        self.stopping = True
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)

    def run(self) -> int:
        self.workers = [Worker(i) for i in range(1, self.settings.workers + 1)]
        for worker in self.workers:
            self.spawn(worker)
        while True:
            now = time.monotonic()
            for worker in self.workers:
                self._check(worker, now)
            if self.stopping and all(w.proc is None for w in self.workers):
                return 0
            time.sleep(0.1)

    def _check(self, worker: Worker, now: float) -> None:
        proc = worker.proc
        if proc is None:
            if worker.restart_at is not None and now >= worker.restart_at and not self.stopping:
                self.spawn(worker)
            return
        code = proc.poll()
        if code is None:
            return
        worker.proc = None
        _mark_dead(self.metrics_dir, proc.pid)
        if self.stopping:
            log.info("relay worker %d (pid %d) stopped", worker.index, proc.pid)
            return
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        lived = now - worker.started
        worker.backoff = (
            RESTART_FIRST_S if lived >= STABLE_S else min(worker.backoff * 2, RESTART_MAX_S)
        )
        worker.restart_at = now + worker.backoff
        log.error(
            "relay worker %d (pid %d) died (%s) after %.0f s; its calls are ended by the "
            "other processes; starting it again in %.0f s",
            worker.index,
            proc.pid,
            how,
            lived,
            worker.backoff,
        )


def _mark_dead(metrics_dir: str, pid: int) -> None:
    """Its live gauges (calls, consoles) no longer count; its counters still do."""
    from prometheus_client import multiprocess

    try:
        multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]
    except OSError:
        pass


def bind(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.create_server((settings.host, settings.port), family=family, backlog=BACKLOG)
    sock.set_inheritable(True)
    return sock


async def _migrate(settings: Settings) -> None:
    """Bring the store's schema up to date once, so the workers do not race to do it."""
    from .store.db import create_engine, migrate

    engine = create_engine(settings.store.database_url.get())
    try:
        await asyncio.wait_for(migrate(engine), MIGRATE_TIMEOUT_S)
    except Exception as exc:  # the workers retry, as a lone relay does
        log.warning("store migration before the workers failed: %s: %s", type(exc).__name__, exc)
    finally:
        await engine.dispose()


def supervise(settings: Settings) -> int:
    """Run the workers until SIGTERM/SIGINT; the exit code of the whole."""
    try:
        sock = bind(settings)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        return 1
    asyncio.run(_migrate(settings))
    metrics_dir = tempfile.mkdtemp(prefix="relay-metrics-")
    instance = settings.instance_id or default_instance(settings.port)
    supervisor = Supervisor(settings, sock, metrics_dir, instance)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    log.info(
        "relay: %d workers on %s:%d (instance %s), sharing state through Redis at %s",
        settings.workers,
        settings.host,
        sock.getsockname()[1],
        instance,
        display(settings.redis_url.get()),
    )
    try:
        return supervisor.run()
    finally:
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        log.info("relay stopped")


async def watch_parent(stop: asyncio.Event) -> None:
    """In a worker: when the parent is gone (killed), drain and exit like on SIGTERM."""
    parent = os.getppid()
    while not stop.is_set():
        await asyncio.sleep(1.0)
        if os.getppid() != parent:
            log.warning("the workers' parent process is gone: draining")
            stop.set()
