"""`make run`: the relay, the console and a demo call, together under honcho.

Fills in what local development needs and nobody has set: a console password
(printed), a console token shared by relay and console, and a local PUBLIC_URL.
With no OPENAI_API_KEY the relay runs on the built-in simulated model.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys

from dotenv import dotenv_values


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
    if not env.get("CONSOLE_PASSWORD"):
        env["CONSOLE_PASSWORD"] = secrets.token_urlsafe(9)
        notes.append(f"console password (generated for this run): {env['CONSOLE_PASSWORD']}")
    env["PYTHONUNBUFFERED"] = "1"  # log lines appear as they happen, not in blocks
    simulator = not env.get("OPENAI_API_KEY")
    console_port = env.get("CONSOLE_PORT", "3000")
    print("=" * 72)
    print(f"  relay    http://localhost:{relay_port}   (health: /health)")
    print(f"  console  http://localhost:{console_port}")
    if simulator:
        print("  model    the built-in SIMULATOR (set OPENAI_API_KEY for the real API)")
    for note in notes:
        print(f"  - {note}")
    print("  place a simulated call any time:  make call")
    print("  stop everything:                  Ctrl-C")
    print("=" * 72, flush=True)
    honcho = shutil.which("honcho", path=os.path.dirname(sys.executable)) or "honcho"
    os.execvpe(honcho, [honcho, "-f", "Procfile", "start"], env)


if __name__ == "__main__":
    sys.exit(main())
