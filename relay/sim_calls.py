"""Simulator mode: the relay places a simulated call to itself (the console's button)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import RelayContext

log = logging.getLogger("relay.sim")


def start_sim_call(ctx: RelayContext, seconds: float, mode: str = "twilio") -> str:
    """Start a simulated caller against this relay; returns its CallSid (SIP: call id)."""
    from .sim.caller import conversation, place_call
    from .sim.sip import place_sip_call

    if len(ctx.sim_tasks) >= 5:
        raise ValueError("five simulated calls are already running")
    sim = ctx.sim_model
    if mode == "sip" and sim is None:
        raise ValueError("a simulated SIP call needs the built-in simulated model")
    call_sid = ("rtc_" if mode == "sip" else "CA") + secrets.token_hex(16)
    steps = conversation(max(5.0, min(seconds, 300.0)))

    async def run() -> None:
        try:
            if mode == "sip":
                assert sim is not None
                sip = await place_sip_call(
                    sim, ctx.public_base, steps=steps, call_id=call_sid, secret=ctx.webhook_secret
                )
                problems = sip.failures
            else:
                auth = ctx.settings.twilio_auth_token.get() or None
                record = await place_call(
                    ctx.public_base, steps=steps, auth_token=auth, call_sid=call_sid
                )
                # Not among the problems: the relay hanging up (the console's Hang up, the
                # agent's end_call) is a normal end; the call's end reason says which.
                problems = record.failures + record.protocol_errors
        except Exception as exc:
            problems = [f"{type(exc).__name__}: {exc}"]
        if problems:
            log.warning("simulated call %s: %s", call_sid, "; ".join(problems))
            ctx.hub.publish(
                {
                    "type": "error",
                    "call_sid": call_sid,
                    "source": "relay",
                    "code": "simulated_call_failed",
                    "message": "; ".join(problems)[:500],
                }
            )

    task = asyncio.get_running_loop().create_task(run())
    ctx.sim_tasks.add(task)
    task.add_done_callback(ctx.sim_tasks.discard)
    return call_sid
