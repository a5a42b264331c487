"""`make run`'s demo waits for someone watching; its services restart on their own."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import aiohttp

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
