"""A throwaway Redis server for tests and benchmarks: Debian's redis-server on a free
loopback port, no persistence, in a temporary folder deleted afterwards.

    server = RedisServer.start()     # RedisUnavailable if redis-server is missing
    env = {"REDIS_URL": server.url}
    server.flush()                   # between tests
    server.stop()
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from relay.harness import free_port


class RedisUnavailable(RuntimeError):
    pass


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    proc: subprocess.Popen[bytes]
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisUnavailable(
                "redis-server not found: install Debian's `redis-server` package "
                "(`apt-get install redis-server`; .ci/run does)"
            )
        root = Path(tempfile.mkdtemp(prefix="relay-redis-"))
        port = free_port()
        args = [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--logfile", str(root / "redis.log"),
        ]  # fmt: skip
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        server = cls(proc, root, port)
        deadline = time.monotonic() + timeout
        while not _ping(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (
                    (root / "redis.log").read_text()[-2000:]
                    if (root / "redis.log").exists()
                    else ""
                )
                server.stop()
                raise RedisUnavailable(f"redis-server did not start on port {port}:\n{log}")
            time.sleep(0.02)
        return server

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
            conn.sendall(b"FLUSHALL\r\n")
            conn.recv(16)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)
