"""Exact per-process CPU time and memory from /proc (Linux)."""

from __future__ import annotations

import os
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def user_system_seconds(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of the main thread (a wakeup count)."""
    n = 0
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith((b"voluntary_ctxt_switches:", b"nonvoluntary_ctxt_switches:")):
                n += int(line.split()[1])
    return n


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def machine_busy_seconds() -> float:
    """Busy time of all CPUs together (everything but idle and iowait), in seconds."""
    with open("/proc/stat", "rb") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICK


@dataclass(frozen=True)
class Snapshot:
    """The counters a measurement window is the difference of, at one instant: the
    server's processes (their CPU summed), this generator, and the whole machine."""

    at: float
    server_cpu: float
    aux_cpu: float  # services the server uses but a deployment runs elsewhere (Redis)
    gen_cpu: float
    machine_busy: float
    server_user_system: tuple[float, float]  # of the main server process
    server_switches: int

    @classmethod
    def take(cls, pid: int, pids: list[int], at: float, aux: list[int] | None = None) -> Snapshot:
        return cls(
            at=at,
            server_cpu=sum(cpu_seconds(p) for p in pids),
            aux_cpu=sum(cpu_seconds(p) for p in aux or ()),
            gen_cpu=cpu_seconds(os.getpid()),
            machine_busy=machine_busy_seconds(),
            server_user_system=user_system_seconds(pid),
            server_switches=context_switches(pid),
        )


def window(start: Snapshot, end: Snapshot) -> dict[str, float]:
    """What the window between two snapshots cost, as the generators report it."""
    server, gen = end.server_cpu - start.server_cpu, end.gen_cpu - start.gen_cpu
    aux = end.aux_cpu - start.aux_cpu
    return {
        "window_s": end.at - start.at,
        "server_cpu_s": server,
        "gen_cpu_s": gen,
        "aux_cpu_s": aux,
        "server_user_s": end.server_user_system[0] - start.server_user_system[0],
        "server_system_s": end.server_user_system[1] - start.server_user_system[1],
        "server_ctx_switches": end.server_switches - start.server_switches,
        # everything else the machine ran meanwhile (other processes), in core-seconds
        "other_cpu_s": max(0.0, (end.machine_busy - start.machine_busy) - server - gen - aux),
    }
