"""`make run`: the relay, the console and a demo call, together under honcho.

Fills in what local development needs and nobody has set: a console password
(printed), a console token shared by relay and console, and a local PUBLIC_URL.
With no OPENAI_API_KEY the relay runs on the built-in simulated model, with a
console-answered example tool (`lookup_order`) that the simulated model calls.

The relay and the console run under scripts/keep-running: when one stops (a crash, or
you stop it to change its settings) it starts again and the others keep running.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parent.parent
RESTARTED = ("relay", "console")  # long-running services; the demo runs once and idles
RUN_TOKEN_FILE = "make-run-console-token"  # read by scripts/demo_call.py


def with_restarts(procfile: str) -> str:
    """The Procfile with each long-running service wrapped in scripts/keep-running.

    honcho stops every process as soon as one exits; wrapped, a stopped service comes back.
    """
    out = []
    for line in procfile.splitlines():
        m = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        if m and m.group(1) in RESTARTED:
            line = f"{m.group(1)}: scripts/keep-running {m.group(1)} {m.group(2)}"
        out.append(line)
    return "\n".join(out) + "\n"


def token_file(env: Mapping[str, str]) -> Path:
    """Where `make run` keeps the console token it generated, for `make call MODE=sip`."""
    return Path(env.get("RELAY_DATA_DIR") or "data") / RUN_TOKEN_FILE


def remember_token(env: Mapping[str, str]) -> None:
    """Only this user can read it, in the git-ignored data directory."""
    path = token_file(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(env["RELAY_CONSOLE_TOKEN"])


def main() -> int:
    files: dict[str, str | None] = {}
    for path in (".env", "relay/.env", "console/.env"):
        files.update(dotenv_values(path))
    env = {k: v for k, v in files.items() if v is not None}
    env.update(os.environ)
    notes: list[str] = []
    env.setdefault("PORT", "8081")
    relay_port = env["PORT"]
    if not env.get("PUBLIC_URL"):
        env["PUBLIC_URL"] = f"http://localhost:{relay_port}"
        notes.append(
            "PUBLIC_URL is not set: using the local relay (fine for simulated calls; "
            "real phone calls need a public https URL, e.g. from ngrok)"
        )
    env.setdefault("RELAY_URL", f"http://localhost:{relay_port}")
    if not env.get("RELAY_CONSOLE_TOKEN"):
        env["RELAY_CONSOLE_TOKEN"] = secrets.token_urlsafe(24)
        remember_token(env)
    if not env.get("CONSOLE_PASSWORD"):
        env["CONSOLE_PASSWORD"] = secrets.token_urlsafe(9)
        notes.append(f"console password (generated for this run): {env['CONSOLE_PASSWORD']}")
    env["PYTHONUNBUFFERED"] = "1"  # log lines appear as they happen, not in blocks
    simulator = not env.get("OPENAI_API_KEY")
    if simulator and not env.get("OPENAI_DEFAULT_TOOLS_JSON"):
        from relay.sim.script import LOOKUP_ORDER

        # The simulated model calls it: try answering from the Function calls panel.
        env["OPENAI_DEFAULT_TOOLS_JSON"] = json.dumps([LOOKUP_ORDER])
    console_port = env.get("CONSOLE_PORT", "3000")
    print("=" * 72)
    print(f"  relay    http://localhost:{relay_port}   (health: /health)")
    print(f"  console  http://localhost:{console_port}")
    if simulator:
        print("  model    the built-in SIMULATOR (set OPENAI_API_KEY for the real API)")
    for note in notes:
        print(f"  - {note}")
    if simulator:
        print("  log in to the console: a demo call starts when you do")
    print("  place a simulated call any time:  make call  (SECONDS=120 for a longer one)")
    print("  a stopped relay or console starts again by itself; Ctrl-C stops everything")
    print("=" * 72, flush=True)
    procfile = ROOT / "build" / "Procfile.run"
    procfile.parent.mkdir(exist_ok=True)
    procfile.write_text(with_restarts((ROOT / "Procfile").read_text()))
    honcho = shutil.which("honcho", path=os.path.dirname(sys.executable)) or "honcho"
    os.execvpe(honcho, [honcho, "-f", str(procfile), "-d", str(ROOT), "start"], env)


if __name__ == "__main__":
    sys.exit(main())
