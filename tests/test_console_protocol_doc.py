"""docs/console-protocol.md and the relay agree: every event the relay emits is documented,
with the fields it carries, and every event carries `ts`."""

from __future__ import annotations

import ast
import asyncio
import json
import re
from pathlib import Path
from typing import Any

from relay.harness import next_event, running_relay
from relay.sim.caller import Dtmf, Hangup, Silence, barge_in, place_call
from relay.sim.script import ModelScript, Reply, ToolCall

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "console-protocol.md"
# Named shapes in the table, expanded to their fields.
SHAPES = {"ModelStatus": {"status", "detail"}, "Summary": {"summary"}}
COMMON = {"type", "ts", "call_sid"}


def documented() -> dict[str, set[str]]:
    """type -> the fields the table lists for it."""
    section = DOC.read_text().split("## Relay -> console", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([a-z_.]+)`", cells[0]) if len(cells) >= 3 else None
        if match is None:
            continue
        fields = set(re.findall(r"`([a-z_]+)`\??", cells[1]))
        for shape, expanded in SHAPES.items():
            if shape in cells[1] and not fields:
                fields |= expanded
        table[match.group(1)] = fields
    return table


def emitted_types() -> set[str]:
    """Event types the relay's code can emit: `_event("x", ...)`, and dicts with a literal
    "type" handed to publish/send_to or returned as a refusal; plus the spliced `model`."""
    found = {"model"}
    for path in (ROOT / "relay").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            first = node.args[0] if node.args else None
            if name == "_event" and isinstance(first, ast.Constant):
                found.add(str(first.value))
            elif name in ("publish", "send_to"):
                for arg in node.args:
                    found |= _dict_types(arg)
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef) and fn.name == "_refused":
                for ret in ast.walk(fn):
                    if isinstance(ret, ast.Return) and ret.value is not None:
                        found |= _dict_types(ret.value)
    return found


def _dict_types(node: ast.AST) -> set[str]:
    if not isinstance(node, ast.Dict):
        return set()
    for key, value in zip(node.keys, node.values, strict=True):
        literal = isinstance(key, ast.Constant) and isinstance(value, ast.Constant)
        if literal and key.value == "type":  # type: ignore[union-attr]
            return {str(value.value)}  # type: ignore[union-attr]
    return set()


def test_every_event_type_in_the_code_is_documented() -> None:
    table = documented()
    assert {"relay.hello", "call.ended", "turn.latency", "pong"} <= set(table)
    missing = emitted_types() - set(table)
    assert not missing, f"emitted but not in docs/console-protocol.md: {sorted(missing)}"


async def test_what_a_console_receives_during_a_call_matches_the_document() -> None:
    """Run a call through the paths that emit events and check every frame a console got."""
    table = documented()
    script = ModelScript(
        replies=[
            Reply("Hello there, how can I help you today?", audio_ms=1500),
            ToolCall("crm_lookup", {"q": "x"}),
            Reply("Found it.", audio_ms=300),
        ],
        pacing="realtime",
    )
    env = {
        "OPENAI_TURN_DETECTION_JSON": '{"type":"server_vad","silence_duration_ms":300}',
        "RELAY_PREWARM": "false",
    }
    async with running_relay(env, script) as relay:
        async with relay.ctx.http.ws_connect(f"{relay.ws_url}/logs") as console:
            frames: list[str] = []
            await console.send_str('{"type":"ping","id":"p1"}')
            await next_event(console, "pong", seen=frames)
            await console.send_str(
                json.dumps(
                    {
                        "type": "session.update",
                        "scope": "default",
                        "session": {"instructions": "Be brief."},
                    }
                )
            )
            steps = [*barge_in(heard_ms=500), Dtmf("3"), Silence(2500), Hangup()]
            call = asyncio.create_task(place_call(relay.base_url, steps=steps))
            pending = await next_event(console, "tool.pending", seen=frames, timeout=15)
            answer = {
                "type": "function_call.output",
                "call_sid": pending["call_sid"],
                "call_id": pending["call_id"],
                "output": "{}",
            }
            await console.send_str(json.dumps(answer))
            await console.send_str('{"type":"nonsense"}')  # command.error
            await next_event(console, "call.ended", seen=frames, timeout=20)
            record = await call
    assert record.ok, record.summary()
    events: list[dict[str, Any]] = [json.loads(f) for f in frames]
    kinds = {e["type"] for e in events}
    assert {"pong", "session.default", "barge_in", "dtmf", "turn.latency", "call.ended"} <= kinds
    for event in events:
        kind = event["type"]
        assert kind in table, f"{kind} is not documented"
        assert isinstance(event.get("ts"), float), event
        extra = set(event) - COMMON - table[kind]
        assert not extra, f"{kind} carries undocumented fields {sorted(extra)}"
    summary = next(e for e in events if e["type"] == "call.ended")["summary"]
    summary_doc = DOC.read_text().split("`Summary` = `{", 1)[1].split("}`", 1)[0]
    summary_fields = {f.strip() for f in summary_doc.replace("\n", " ").split(",")}
    assert set(summary) == summary_fields
