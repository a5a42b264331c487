"""Function and MCP tools: add from templates, edit with live validation, enable/disable."""

from __future__ import annotations

import json
from typing import Any

import reflex as rx

from console.state.auth import AuthState
from console.tools import (
    ToolEntry,
    ToolError,
    blank_tool,
    entry,
    name_clash,
    parse_tool,
    templates,
)


def _row(e: ToolEntry) -> dict[str, str]:
    return {
        "key": e.key,
        "kind": e.kind,
        "json": e.json,
        "enabled": "1" if e.enabled else "",
        "backend": "1" if e.backend else "",
    }


class ToolsState(AuthState):
    tools: list[dict[str, str]] = []
    backend_names: list[str] = []
    template_json: dict[str, str] = {}
    dirty: bool = False  # only a changed tool list is sent, else the relay's own tools stay
    editor_open: bool = False
    editor_index: int = -1
    editor_text: str = ""
    editor_error: str = ""
    confirm_delete: int = -1  # the row asking "delete it?"

    @rx.var
    def template_names(self) -> list[str]:
        return list(self.template_json)

    def load(self, session_tools: list[dict[str, Any]], backend: list[dict[str, Any]]) -> None:
        self.backend_names = [str(t.get("name")) for t in backend]
        self.template_json = {k: v for k, (v, _) in templates(backend).items()}
        if self.dirty:
            return
        present = {str(t.get("name") or t.get("server_label")) for t in session_tools}
        rows = [entry(t, backend=t.get("name") in self.backend_names) for t in session_tools]
        rows += [entry(t, backend=True) for t in backend if t.get("name") not in present]
        self.tools = [_row(e) for e in rows]

    def session_tools(self) -> list[dict[str, Any]] | None:
        if not self.dirty:
            return None
        return [json.loads(t["json"]) for t in self.tools if t["enabled"]]

    @rx.event
    def toggle(self, index: int) -> None:
        if self.authed() and 0 <= index < len(self.tools):
            row = dict(self.tools[index])
            row["enabled"] = "" if row["enabled"] else "1"
            self.tools = [*self.tools[:index], row, *self.tools[index + 1 :]]
            self.dirty = True

    @rx.event
    def ask_delete(self, index: int) -> None:
        self.confirm_delete = index

    @rx.event
    def keep(self) -> None:
        self.confirm_delete = -1

    @rx.event
    def delete(self, index: int) -> None:
        if self.authed() and 0 <= index < len(self.tools) and index == self.confirm_delete:
            self.tools = [*self.tools[:index], *self.tools[index + 1 :]]
            self.dirty = True
        self.confirm_delete = -1

    @rx.event
    def open_editor(self, index: int) -> None:
        self.editor_index = index
        if 0 <= index < len(self.tools):
            self.editor_text = self.tools[index]["json"]
        else:  # a new tool: never one that exists (Save would overwrite it)
            self.editor_text = blank_tool({t["key"] for t in self.tools})
        self.editor_error = ""
        self.editor_open = True

    @rx.event
    def close_editor(self) -> None:
        self.editor_open = False

    @rx.event
    def use_template(self, name: str) -> None:
        self._validate(self.template_json.get(name, self.editor_text))

    @rx.event
    def edit(self, text: str) -> None:
        self._validate(text)

    def _validate(self, text: str) -> None:
        self.editor_text = text
        try:
            tool = parse_tool(text)
        except ToolError as exc:
            self.editor_error = str(exc)
            return
        key = str(tool.get("name") or tool.get("server_label") or "")
        editing = self.editor_index if 0 <= self.editor_index < len(self.tools) else -1
        self.editor_error = name_clash(key, [t["key"] for t in self.tools], editing)

    @rx.event
    def save_tool(self) -> None:
        if not self.authed():
            return
        try:
            tool = parse_tool(self.editor_text)
        except ToolError as exc:
            self.editor_error = str(exc)
            return
        row = _row(entry(tool, backend=tool.get("name") in self.backend_names))
        editing = self.editor_index if 0 <= self.editor_index < len(self.tools) else -1
        if clash := name_clash(row["key"], [t["key"] for t in self.tools], editing):
            self.editor_error = clash
            return
        if editing >= 0:
            self.tools = [*self.tools[:editing], row, *self.tools[editing + 1 :]]
        else:
            self.tools = [*self.tools, row]
        self.dirty = True
        self.editor_open = False
