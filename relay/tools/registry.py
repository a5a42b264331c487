"""A registry of async tool handlers with JSON-schema'd arguments and timeouts.

The model's output is always a single JSON-encoded string: a handler returns a value
(dict, list, number...) and it is encoded once; a handler returning `str` is sent as is.
A handler that raises, times out or gets invalid arguments yields an `{"error": ...}`
output, so the model can tell the caller -- the call never hangs on a tool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema

log = logging.getLogger("relay.tools")


@dataclass
class ToolContext:
    """What a handler may use: the call it serves and a way to end or transfer it."""

    call_sid: str
    hangup: Callable[[str], None]  # hangup(transfer_to=""): after the goodbye is heard
    http: Any = None  # an aiohttp.ClientSession shared by the relay


Handler = Callable[[dict[str, Any], ToolContext], Awaitable[Any]]


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: Handler
    timeout_s: float | None = None  # None: the registry default

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }


@dataclass
class ToolResult:
    output: str
    ok: bool
    duration_ms: float


@dataclass
class ToolRegistry:
    default_timeout_s: float = 10.0
    tools: dict[str, Tool] = field(default_factory=dict)

    def add(self, tool: Tool) -> None:
        jsonschema.Draft202012Validator.check_schema(tool.parameters)
        self.tools[tool.name] = tool

    def names(self) -> frozenset[str]:
        return frozenset(self.tools)

    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema for t in self.tools.values()]


def _error(message: str) -> str:
    return json.dumps({"error": message})


async def run_tool(
    registry: ToolRegistry, name: str, arguments: str, ctx: ToolContext
) -> ToolResult:
    """Validate, run with a timeout, and encode the output once. Never raises."""
    start = time.perf_counter()

    def done(output: str, ok: bool) -> ToolResult:
        return ToolResult(output, ok, (time.perf_counter() - start) * 1000.0)

    tool = registry.tools.get(name)
    if tool is None:
        return done(_error(f"unknown tool {name!r}"), False)
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        return done(_error(f"arguments are not valid JSON: {exc.msg}"), False)
    if not isinstance(args, dict):
        return done(_error("arguments must be a JSON object"), False)
    try:
        jsonschema.validate(args, tool.parameters)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "arguments"
        return done(_error(f"invalid arguments ({where}): {exc.message}"), False)
    timeout = tool.timeout_s if tool.timeout_s is not None else registry.default_timeout_s
    try:
        async with asyncio.timeout(timeout):
            result = await tool.handler(args, ctx)
    except TimeoutError:
        log.warning("call %s: tool %s timed out after %.1f s", ctx.call_sid, name, timeout)
        return done(_error(f"{name} did not answer within {timeout:g} s"), False)
    except Exception as exc:  # a tool's bug must never take the call down
        log.exception("call %s: tool %s raised", ctx.call_sid, name)
        return done(_error(f"{name} failed: {type(exc).__name__}: {exc}"), False)
    if isinstance(result, str):
        return done(result, True)
    if isinstance(result, dict) and "error" in result:
        return done(json.dumps(result), False)  # the handler reported a failure in-band
    try:
        return done(json.dumps(result), True)
    except (TypeError, ValueError) as exc:
        return done(_error(f"{name} returned something that is not JSON: {exc}"), False)
