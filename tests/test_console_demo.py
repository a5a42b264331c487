"""`make run`'s demo waits for someone watching; its services restart on their own."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import aiohttp
import pytest

from relay.harness import next_event, running_relay

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def test_the_demo_sees_when_a_console_watches() -> None:
    demo = script("demo_call")
    token = "demo-t0ken"
    async with running_relay({"RELAY_CONSOLE_TOKEN": token}) as relay:
        async with aiohttp.ClientSession() as http:
            assert await demo.consoles_watching(http, relay.base_url, token) == 0
            assert await demo.consoles_watching(http, relay.base_url, "wrong") is None
            headers = {"Authorization": f"Bearer {token}"}
            async with http.ws_connect(f"{relay.ws_url}/logs", headers=headers) as ws:
                await next_event(ws, "relay.hello")
                assert await demo.consoles_watching(http, relay.base_url, token) == 1


def test_make_run_restarts_a_stopped_service_instead_of_stopping_all() -> None:
    run = script("run")
    procfile = (SCRIPTS.parent / "Procfile").read_text()
    wrapped = run.with_restarts(procfile).splitlines()
    assert "relay: scripts/keep-running relay scripts/start-relay" in wrapped
    assert "console: scripts/keep-running console scripts/start-console" in wrapped
    assert any(line.startswith("demo:") and "keep-running" not in line for line in wrapped)


async def test_make_call_sip_finds_the_token_make_run_generated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run, demo = script("run"), script("demo_call")
    monkeypatch.chdir(tmp_path)  # no .env files here
    monkeypatch.delenv("RELAY_CONSOLE_TOKEN", raising=False)
    monkeypatch.setenv("RELAY_DATA_DIR", str(tmp_path / "data"))
    env = {"RELAY_DATA_DIR": str(tmp_path / "data"), "RELAY_CONSOLE_TOKEN": "run-t0ken"}
    run.remember_token(env)
    saved = run.token_file(env)
    assert saved.stat().st_mode & 0o777 == 0o600  # a secret: only this user reads it
    assert demo._env()["RELAY_CONSOLE_TOKEN"] == "run-t0ken"
    async with running_relay({"RELAY_CONSOLE_TOKEN": "another-token"}) as relay:
        # A wrong token is explained in a line, not a traceback.
        assert not await demo.sip_call(relay.base_url, 1, "run-t0ken")
    assert "refused its console feed (403)" in capsys.readouterr().out
