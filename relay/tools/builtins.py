"""Built-in tools: weather (as the original), end_call and transfer_call."""

from __future__ import annotations

from typing import Any

import aiohttp

from .registry import Tool, ToolContext, ToolRegistry

OPEN_METEO_URL = "https://api.open-meteo.com/v1/forecast"


async def get_weather_from_coords(args: dict[str, Any], ctx: ToolContext) -> Any:
    params = {
        "latitude": str(args["latitude"]),
        "longitude": str(args["longitude"]),
        "current": "temperature_2m,wind_speed_10m",
    }
    session: aiohttp.ClientSession | None = ctx.http
    if session is None:
        return {"error": "no HTTP client available"}
    timeout = aiohttp.ClientTimeout(total=5)
    try:
        async with session.get(OPEN_METEO_URL, params=params, timeout=timeout) as resp:
            if resp.status != 200:
                return {"error": f"weather service answered HTTP {resp.status}"}
            data = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return {"error": f"the weather service is unreachable ({type(exc).__name__})"}
    current = data.get("current") or {}
    return {"temp": current.get("temperature_2m"), "wind_speed": current.get("wind_speed_10m")}


async def end_call(args: dict[str, Any], ctx: ToolContext) -> Any:
    ctx.hangup("")
    return {"ok": True, "note": "Say a short goodbye now; the call ends once it has been heard."}


def make_transfer(number: str) -> Tool:
    async def transfer_call(args: dict[str, Any], ctx: ToolContext) -> Any:
        ctx.hangup(number)
        return {"ok": True, "note": "Tell the caller you are transferring them now."}

    return Tool(
        name="transfer_call",
        description="Transfer the caller to a human colleague.",
        parameters={"type": "object", "properties": {"reason": {"type": "string"}}},
        handler=transfer_call,
    )


def default_registry(*, timeout_s: float, can_transfer: bool, transfer_number: str) -> ToolRegistry:
    reg = ToolRegistry(default_timeout_s=timeout_s)
    reg.add(
        Tool(
            name="get_weather_from_coords",
            description="Get the current weather at a latitude and longitude.",
            parameters={
                "type": "object",
                "properties": {
                    "latitude": {"type": "number", "minimum": -90, "maximum": 90},
                    "longitude": {"type": "number", "minimum": -180, "maximum": 180},
                },
                "required": ["latitude", "longitude"],
            },
            handler=get_weather_from_coords,
        )
    )
    # end_call works without Twilio REST (closing the stream ends a <Connect> call), but
    # a transfer needs a REST API to move the call (Twilio's redirect, or a SIP refer).
    reg.add(
        Tool(
            name="end_call",
            description="Hang up when the conversation is over, after saying goodbye.",
            parameters={"type": "object", "properties": {}},
            handler=end_call,
        )
    )
    if can_transfer and transfer_number:
        reg.add(make_transfer(transfer_number))
    return reg
