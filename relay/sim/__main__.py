"""CLI: `model` serves the fake Realtime model; `call URL` rings a relay with simulated calls."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

from .caller import CallRecord, Hangup, barge_in, place_call
from .model import SimModel
from .script import ModelScript


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m relay.sim", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("model", help="serve the simulated Realtime model until Ctrl-C")
    m.add_argument("--host", default="127.0.0.1")
    m.add_argument("--port", type=int, default=8082)
    m.add_argument("--pacing", choices=["burst", "realtime", "slow"], default="burst")
    c = sub.add_parser("call", help="place simulated Twilio calls against a relay")
    c.add_argument("url", help="the relay's public base URL, e.g. http://127.0.0.1:8080")
    c.add_argument("--calls", type=int, default=1, help="concurrent calls")
    c.add_argument("--seconds", type=float, default=30.0, help="time limit per call")
    c.add_argument("--auth-token", default=None, help="Twilio auth token to sign requests with")
    return p


async def serve_model(host: str, port: int, pacing: str) -> None:
    model = SimModel(ModelScript(pacing=pacing))  # type: ignore[arg-type]
    url = await model.start(host, port)
    print(f"simulated Realtime model at {url}")
    print(f"point the relay at it:  OPENAI_REALTIME_URL={url}  (any OPENAI_API_KEY works)")
    print("Ctrl-C to stop")
    try:
        await asyncio.Event().wait()
    finally:
        await model.stop()


async def one_call(url: str, seconds: float, token: str | None, n: int) -> CallRecord:
    try:
        async with asyncio.timeout(seconds):
            # Speak, hear part of the answer, talk over it, hear the next answer out, hang up.
            steps = [*barge_in(heard_ms=400, speak_ms=1000), Hangup()]
            return await place_call(url, steps=steps, auth_token=token)
    except TimeoutError:
        rec = CallRecord(call_sid=f"call #{n}", stream_sid="", account_sid="")
        rec.failures.append(f"did not finish within {seconds} s")
        return rec


async def run_calls(url: str, calls: int, seconds: float, token: str | None) -> int:
    records = await asyncio.gather(*(one_call(url, seconds, token, i) for i in range(calls)))
    for rec in records:
        print(rec.summary())
    failed = sum(not r.ok for r in records)
    print(f"{calls - failed}/{calls} calls ok")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "model":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_model(args.host, args.port, args.pacing))
        return 0
    return asyncio.run(run_calls(args.url, args.calls, args.seconds, args.auth_token))


if __name__ == "__main__":
    sys.exit(main())
