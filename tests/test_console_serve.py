"""The console's production mode: Hypercorn serves Reflex's backend and the exported frontend
on one port (console/serve.py, started by `scripts/start-console prod`).

The first tests check when the frontend counts as built (no Reflex, no npm). The last one
starts the real thing on a free port, as a PaaS would, and checks what a browser and an
operator see: Hypercorn answers (not Reflex's own Granian), pages and the event websocket
share the port, a refresh on a client-side route loads, SIGTERM stops it cleanly, and a
second start does not rebuild a current frontend.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from console import serve
from shared.envparse import SettingsError

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
START_TIMEOUT_S = float(os.environ.get("CONSOLE_START_TIMEOUT_S", "600"))  # first npm install


# --- which port, and when the frontend is current ------------------------------------------


def test_port_is_paas_port_then_console_port_then_3000() -> None:
    assert serve.port_from({"PORT": "4321", "CONSOLE_PORT": "3001"}) == 4321
    assert serve.port_from({"PORT": " ", "CONSOLE_PORT": "3001"}) == 3001
    assert serve.port_from({}) == 3000
    with pytest.raises(SettingsError, match="PORT"):
        serve.port_from({"PORT": "http"})


@pytest.fixture
def app_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A tiny project tree, and a backend URL we choose instead of asking Reflex."""
    (tmp_path / "rxconfig.py").write_text("config = 1\n")
    (tmp_path / "console").mkdir()
    (tmp_path / "console" / "app.py").write_text("PAGES = ['/']\n")
    endpoints = {"EVENT": "ws://localhost:3000/_event"}
    monkeypatch.setattr(serve, "_endpoints", lambda: dict(endpoints))
    yield tmp_path


def test_fingerprint_follows_sources_and_backend_url_only(
    app_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = serve.fingerprint(app_tree)
    assert serve.fingerprint(app_tree) == first

    # Settings, secrets and bytecode are not built into the bundle.
    (app_tree / "console" / ".env").write_text("CONSOLE_PASSWORD=x\n")
    (app_tree / "console" / "__pycache__").mkdir()
    (app_tree / "console" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    assert serve.fingerprint(app_tree) == first

    (app_tree / "console" / "app.py").write_text("PAGES = ['/', '/login']\n")
    changed = serve.fingerprint(app_tree)
    assert changed != first

    # Another port: the bundle tells the browser where the backend is, so it must be rebuilt.
    monkeypatch.setattr(serve, "_endpoints", lambda: {"EVENT": "ws://localhost:8080/_event"})
    assert serve.fingerprint(app_tree) != changed


def test_build_is_current_only_with_a_matching_stamp_and_a_bundle(app_tree: Path) -> None:
    expected = serve.fingerprint(app_tree)
    assert not serve.build_is_current(app_tree, expected)  # never built
    client = app_tree / ".web" / "build" / "client"
    client.mkdir(parents=True)
    (app_tree / serve.STAMP).write_text(json.dumps({"fingerprint": expected, "port": 3000}))
    assert not serve.build_is_current(app_tree, expected)  # stamp without a bundle
    (client / "index.html").write_text("<html></html>")
    assert serve.build_is_current(app_tree, expected)
    assert not serve.build_is_current(app_tree, "another")
    (app_tree / serve.STAMP).write_text("{not json")
    assert not serve.build_is_current(app_tree, expected)


def test_build_refuses_to_run_without_npm_mode(
    app_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without REFLEX_USE_NPM=1 Reflex would download bun: refuse before starting it."""
    monkeypatch.delenv("REFLEX_USE_NPM", raising=False)
    with pytest.raises(SystemExit, match="REFLEX_USE_NPM"):
        serve.build_frontend(app_tree, 3000, "x")
    assert not (app_tree / serve.STAMP).exists()


# --- the real thing ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Console:
    """`scripts/start-console prod` in its own process group, its output in a log file."""

    def __init__(self, port: int, log_name: str) -> None:
        drop = ("OPENAI_", "TWILIO_", "CONSOLE_", "RELAY_", "PUBLIC_URL", "PORT")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        # No relay behind it: the pages and the socket do not need one to load.
        env.update(PORT=str(port), CONSOLE_PASSWORD="serve-test-pw", PYTHON=sys.executable)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / log_name
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(ROOT / "scripts" / "start-console"), "prod"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    pytest.fail(f"console exited ({self.proc.returncode}):\n{self.log()[-6000:]}")
                try:
                    if (await http.get(self.url + "/ping", timeout=2)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)  # a port coming up: there is no event to await
        pytest.fail(f"console did not answer within {timeout:.0f} s:\n{self.log()[-6000:]}")

    def terminate(self) -> int:
        """SIGTERM, as a PaaS or `docker stop` sends it; the exit code."""
        os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(15)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.mark.timeout(START_TIMEOUT_S + 120)
async def test_prod_mode_is_hypercorn_serving_backend_and_frontend_on_one_port() -> None:
    import websockets

    port = free_port()
    console = Console(port, "console-serve.log")
    try:
        await console.wait_up(START_TIMEOUT_S)
        async with httpx.AsyncClient(base_url=console.url) as http:
            # Hypercorn answers, for the backend's routes and for the frontend's files alike.
            ping = await http.get("/ping")
            assert ping.json() == "pong"
            assert ping.headers["server"] == "hypercorn-h11"
            index = await http.get("/")
            assert index.status_code == 200
            assert index.headers["content-type"].startswith("text/html")
            assert index.headers["server"] == "hypercorn-h11"
            # A refresh on a client-side route loads that page, as in Reflex's own mode.
            login = await http.get("/login", follow_redirects=True)
            assert login.status_code == 200
            assert login.headers["content-type"].startswith("text/html")
            assert "<script" in login.text
            # An unknown path is the exported 404 page, with a 404.
            missing = await http.get("/no-such-page")
            assert missing.status_code == 404
            assert missing.headers["content-type"].startswith("text/html")

        # Reflex's event websocket is on the same port: engine.io opens, socket.io connects.
        event_url = f"ws://127.0.0.1:{port}/_event/?EIO=4&transport=websocket"
        async with websockets.connect(event_url) as ws:
            assert ws.response is not None
            assert ws.response.headers["server"] == "hypercorn-h11"
            opened = await asyncio.wait_for(ws.recv(), 10)
            assert isinstance(opened, str) and opened.startswith("0{")
            await ws.send("40")
            connected = await asyncio.wait_for(ws.recv(), 10)
            assert isinstance(connected, str) and connected.startswith("40")

            # SIGTERM: the browser's socket is told to close (it reconnects by itself), and the
            # server exits cleanly without waiting for it.
            os.killpg(console.proc.pid, signal.SIGTERM)
            frames = []
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    frames.append(await asyncio.wait_for(ws.recv(), 10))
                    if frames[-1] == "1":  # engine.io's close packet, as a browser closes on it
                        await ws.close()
            assert "1" in frames
        assert console.proc.wait(15) == 0
        log = console.log()
        assert "Hypercorn" in log and "stopping" in log
        assert "Traceback" not in log

        # A second start on the same port finds the frontend current and does not rebuild.
        again = Console(port, "console-serve-restart.log")
        try:
            await again.wait_up(60)
            assert "frontend build is current" in again.log()
            assert "building the frontend" not in again.log()
            assert again.terminate() == 0
        finally:
            again.kill()
    finally:
        console.kill()
