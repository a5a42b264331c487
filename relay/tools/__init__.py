"""Function tools the relay runs itself: a registry and the built-ins."""

from .registry import Tool, ToolContext, ToolRegistry, run_tool

__all__ = ["Tool", "ToolContext", "ToolRegistry", "run_tool"]
