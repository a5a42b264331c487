"""Tools the console configures: function tools (validated JSON schema) and GA MCP servers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema

from shared import session as ga

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
APPROVAL = ("always", "never")


class ToolError(ValueError):
    pass


@dataclass
class ToolEntry:
    key: str  # function name or MCP server_label
    kind: str  # "function" | "mcp"
    json: str  # pretty JSON as the user edits it
    enabled: bool = True
    backend: bool = False  # the relay runs it; otherwise the console answers it

    @property
    def tool(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.json)
        return value


def _pretty(tool: dict[str, Any]) -> str:
    return json.dumps(tool, indent=2)


def _check_function(tool: dict[str, Any]) -> dict[str, Any]:
    name = tool.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ToolError('name: 1-64 letters, digits, _ or -, e.g. "get_weather"')
    if "description" in tool and not isinstance(tool["description"], str):
        raise ToolError("description: expected a string")
    params = tool.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict):
        raise ToolError("parameters: expected a JSON schema object")
    try:
        jsonschema.Draft202012Validator.check_schema(params)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise ToolError(
            f"parameters is not a valid JSON schema at {where}: {exc.message}"
        ) from None
    if params.get("type") != "object":
        raise ToolError('parameters: the top level must be {"type": "object", "properties": {...}}')
    return {
        "type": "function",
        "name": name,
        "description": tool.get("description", ""),
        "parameters": params,
    }


def _check_mcp(tool: dict[str, Any]) -> dict[str, Any]:
    label = tool.get("server_label")
    if not isinstance(label, str) or not NAME.match(label):
        raise ToolError('server_label: 1-64 letters, digits, _ or -, e.g. "crm"')
    url = tool.get("server_url")
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("https://", "http://"))
    ):
        raise ToolError("server_url: expected an https:// URL")
    allowed = tool.get("allowed_tools")
    if allowed is not None and not (
        (isinstance(allowed, list) and all(isinstance(t, str) for t in allowed))
        or (isinstance(allowed, dict) and set(allowed) <= {"tool_names", "read_only"})
    ):
        raise ToolError(
            'allowed_tools: a list of tool names, or {"tool_names": [...], "read_only": true}'
        )
    approval = tool.get("require_approval")
    if approval is not None and not (
        approval in APPROVAL or (isinstance(approval, dict) and set(approval) <= set(APPROVAL))
    ):
        raise ToolError('require_approval: "always", "never" or {"always": {...}, "never": {...}}')
    headers = tool.get("headers")
    if headers is not None and not (
        isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())
    ):
        raise ToolError("headers: an object of header names to string values")
    return tool


def parse_tool(text: str) -> dict[str, Any]:
    """Parse and check one tool's JSON; ToolError says exactly what is wrong."""
    try:
        tool = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolError(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(tool, dict):
        raise ToolError("expected a JSON object")
    if tool.get("type") == "function" and isinstance(tool.get("function"), dict):
        tool = {"type": "function", **tool["function"]}  # the Chat Completions shape
    elif "type" not in tool and "name" in tool:
        tool = {"type": "function", **tool}
    if tool.get("type") == "function":
        tool = _check_function(tool)
    elif tool.get("type") == "mcp":
        tool = _check_mcp(tool)
    else:
        raise ToolError('type: "function" or "mcp"')
    try:
        ga.check_update({"type": "realtime", "tools": [tool]})
    except ga.SessionConfigError as exc:
        raise ToolError(str(exc).removeprefix("tools[0]").lstrip(".: ")) from None
    return tool


def entry(tool: dict[str, Any], *, backend: bool = False, enabled: bool = True) -> ToolEntry:
    key = str(tool.get("name") or tool.get("server_label") or "")
    return ToolEntry(
        key=key, kind=str(tool.get("type")), json=_pretty(tool), enabled=enabled, backend=backend
    )


def session_tools(entries: list[ToolEntry]) -> list[dict[str, Any]]:
    return [e.tool for e in entries if e.enabled]


TEMPLATES: dict[str, dict[str, Any]] = {
    "lookup_order (answered from the console)": {
        "type": "function",
        "name": "lookup_order",
        "description": "Look up the status of a customer's order by its number.",
        "parameters": {
            "type": "object",
            "properties": {"order_number": {"type": "string", "description": "e.g. A1234"}},
            "required": ["order_number"],
        },
    },
    "MCP server": {
        "type": "mcp",
        "server_label": "docs",
        "server_url": "https://mcp.example.com/mcp",
        "allowed_tools": ["search"],
        "require_approval": "never",
        "headers": {},
    },
}


def templates(backend_tools: list[dict[str, Any]]) -> dict[str, tuple[str, bool]]:
    """Template label -> (pretty JSON, runs on the relay)."""
    out = {f"{t.get('name')} (backend)": (_pretty(t), True) for t in backend_tools}
    out.update({label: (_pretty(t), False) for label, t in TEMPLATES.items()})
    return out


def blank_tool(taken: set[str]) -> str:
    """What "Add tool" opens with: a new function skeleton under a name not in use yet
    (starting from an existing tool would overwrite it on Save)."""
    name, n = "my_tool", 1
    while name in taken:
        n += 1
        name = f"my_tool_{n}"
    return _pretty(
        {
            "type": "function",
            "name": name,
            "description": "What the tool does, for the model.",
            "parameters": {"type": "object", "properties": {}},
        }
    )


def name_clash(key: str, keys: list[str], editing: int) -> str:
    """Why a tool cannot be saved under `key` ("" if it can): another row has that name."""
    for i, other in enumerate(keys):
        if other == key and i != editing:
            return f'A tool named "{key}" already exists: edit that one, or choose another name.'
    return ""
