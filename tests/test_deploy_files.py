"""The deployment files agree with the code, checked without a Docker engine.

docker-compose.yml, railway.toml and the Dockerfile must name only settings the services read,
use the ports and health paths the services serve, and start and install the services the same
way `make` does; relay/.env.example must list exactly what relay/settings.py reads.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from relay import settings as relay_settings
from relay.store import settings as store_settings

ROOT = Path(__file__).resolve().parent.parent
RELAY_PORT = 8081
CONSOLE_PORT = 3000
CONSOLE_HEALTH = "/ping"  # Reflex's own liveness route, on the single prod port


# --- the env names each service reads ----------------------------------------------------


class RecordingEnv(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.seen.add(key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return default

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.seen.add(key)
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def literal_env_names(path: Path) -> set[str]:
    """String literals passed as the name to an env reader: `ep.text(env, "NAME")`,
    `env.get("NAME")`, `os.environ.get("NAME")`, `os.environ["NAME"]`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        args: list[ast.expr] = []
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id == "ep":
                args = node.args[1:2]
            elif node.func.attr == "get":
                args = node.args[:1]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            args = [node.slice]
        for arg in args:
            value = arg.value if isinstance(arg, ast.Constant) else None
            if isinstance(value, str) and ENV_NAME.match(value):
                names.add(value)
    return names


def relay_env_names() -> set[str]:
    """What the relay reads: every name relay/settings.py and relay/store/settings.py look
    up in an empty environment (all readers run, defaults apply), the session variables
    (some are read only when another is set), and every literal name passed to a reader in
    those sources."""
    env = RecordingEnv()
    relay_settings.from_env(env)
    store_settings.from_env(env)
    names = env.seen | set(relay_settings._SESSION_ENV)
    names |= literal_env_names(ROOT / "relay" / "store" / "settings.py")
    return names | literal_env_names(ROOT / "relay" / "settings.py")


def console_env_names() -> set[str]:
    """What the console reads: console/settings.py, rxconfig.py and scripts/start-console."""
    from console import settings as console_settings

    env = RecordingEnv()
    console_settings.load(env)
    names = env.seen | literal_env_names(ROOT / "console" / "settings.py")
    if (ROOT / "rxconfig.py").exists():
        names |= literal_env_names(ROOT / "rxconfig.py")
    start = ROOT / "scripts" / "start-console"
    if start.exists():
        names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", start.read_text()))
    return names


# --- the files ---------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    svc = compose()["services"][name]
    assert isinstance(svc, dict)
    return svc


def railway() -> dict[str, Any]:
    return tomllib.loads((ROOT / "railway.toml").read_text())


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def one(self, keyword: str) -> str:
        found = self.all(keyword)
        assert len(found) == 1, f"stage {self.name}: expected one {keyword}, found {found}"
        return found[0]


def dockerfile_stages() -> list[Stage]:
    text = (ROOT / "Dockerfile").read_text()
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            m = re.match(r"(\S+)\s+AS\s+(\S+)", args, re.IGNORECASE)
            assert m, f"every stage is named: {line}"
            stages.append(Stage(m.group(2), m.group(1)))
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def stage(name: str) -> Stage:
    return next(s for s in dockerfile_stages() if s.name == name)


def env_keys(svc: Mapping[str, Any]) -> set[str]:
    env = svc.get("environment", {})
    if isinstance(env, list):
        return {item.partition("=")[0] for item in env}
    return set(env)


def env_value(svc: Mapping[str, Any], name: str) -> str:
    env = svc.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return str(env[name])


def published(svc: Mapping[str, Any]) -> dict[int, int]:
    """host port -> container port, from the short syntax `[ip:]host:container`."""
    out: dict[int, int] = {}
    for spec in svc.get("ports", []):
        *_, host, container = str(spec).split(":")
        out[int(host)] = int(container)
    return out


def exec_form(args: str) -> list[str]:
    value = yaml.safe_load(args)  # a JSON array is YAML too
    assert isinstance(value, list), f"exec form expected, got {args}"
    return [str(v) for v in value]


# --- compose -----------------------------------------------------------------------------


def test_compose_parses_with_the_two_services_and_redis() -> None:
    services = compose()["services"]
    assert set(services) == {"relay", "console", "redis"}
    assert service("relay")["build"]["target"] == "relay"
    assert service("console")["build"]["target"] == "console"


def test_compose_runs_two_relay_workers_against_its_redis() -> None:
    relay = service("relay")
    settings = relay_settings.from_env({k: str(v) for k, v in relay["environment"].items()})
    assert settings.workers == 2
    assert settings.redis_url.get() == "redis://redis:6379/0"
    assert relay["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "healthcheck" in service("redis")


def test_compose_relay_env_names_are_relay_settings() -> None:
    unknown = env_keys(service("relay")) - relay_env_names()
    assert not unknown, f"compose sets variables the relay never reads: {sorted(unknown)}"


def test_compose_console_env_names_are_console_settings() -> None:
    if not (ROOT / "console" / "settings.py").exists():
        pytest.skip("console/settings.py is not there yet: nothing to check the console against")
    unknown = env_keys(service("console")) - console_env_names()
    assert not unknown, f"compose sets variables the console never reads: {sorted(unknown)}"


def test_compose_wires_console_to_relay_by_service_name_with_one_token() -> None:
    relay, console = service("relay"), service("console")
    assert env_value(console, "RELAY_URL") == f"http://relay:{RELAY_PORT}"
    assert env_value(relay, "RELAY_CONSOLE_TOKEN") == env_value(console, "RELAY_CONSOLE_TOKEN")
    assert console["depends_on"]["relay"]["condition"] == "service_healthy"


def test_compose_reads_the_env_files_whose_templates_exist() -> None:
    for name in ("relay", "console"):
        files = service(name)["env_file"]
        paths = [f["path"] if isinstance(f, dict) else f for f in files]
        assert paths == [f"{name}/.env"]
        assert all(f.get("required") is False for f in files if isinstance(f, dict))
    assert (ROOT / "relay" / ".env.example").exists()
    if not (ROOT / "console" / ".env.example").exists():
        pytest.skip("console/.env.example is not written yet")


def test_compose_runs_on_the_simulator_without_keys() -> None:
    """No key is required: nothing in compose demands OPENAI_API_KEY or Twilio credentials."""
    text = (ROOT / "docker-compose.yml").read_text()
    for name in ("OPENAI_API_KEY", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        assert name not in text
    assert ":?" not in text  # no `${VAR:?error}` that stops `up` when a variable is unset


def test_ports_agree_everywhere() -> None:
    relay, console = service("relay"), service("console")
    assert published(relay) == {RELAY_PORT: RELAY_PORT}
    assert published(console) == {CONSOLE_PORT: CONSOLE_PORT}
    assert env_value(relay, "PORT") == str(RELAY_PORT)
    assert env_value(console, "PORT") == str(CONSOLE_PORT)
    assert relay_settings.Settings().port == RELAY_PORT
    assert relay_settings.from_env({}).port == RELAY_PORT
    assert relay_settings.from_env({"PORT": "4321"}).port == 4321  # PaaS platforms set PORT
    for name, port in (("relay", RELAY_PORT), ("console", CONSOLE_PORT)):
        s = stage(name)
        assert s.one("EXPOSE") == str(port)
        assert f"PORT={port}" in s.all("ENV")


def test_console_default_port_is_3000() -> None:
    if not (ROOT / "console" / "settings.py").exists():
        pytest.skip("console/settings.py is not there yet")
    from console import settings as console_settings

    assert console_settings.load({}).port == CONSOLE_PORT


def test_health_paths_agree_everywhere() -> None:
    assert railway()["deploy"]["healthcheckPath"] == "/health"
    relay_check = " ".join(service("relay")["healthcheck"]["test"])
    assert f"127.0.0.1:{RELAY_PORT}/health" in relay_check
    console_check = " ".join(service("console")["healthcheck"]["test"])
    assert f"127.0.0.1:{CONSOLE_PORT}{CONSOLE_HEALTH}" in console_check
    assert "/health'" in stage("relay").one("HEALTHCHECK")
    assert f"{CONSOLE_HEALTH}'" in stage("console").one("HEALTHCHECK")
    for name in ("relay", "console"):  # the image's check follows $PORT
        assert "os.environ.get('PORT'" in stage(name).one("HEALTHCHECK")


def test_relay_serves_health_and_metrics() -> None:
    from relay.app import create_app

    app = create_app(relay_settings.from_env({}))
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert {"/health", "/metrics"} <= paths


# --- railway -----------------------------------------------------------------------------


def test_railway_builds_the_relay_from_the_dockerfile() -> None:
    conf = railway()
    assert conf["build"]["builder"] == "DOCKERFILE"
    assert conf["build"]["dockerfilePath"] == "Dockerfile"
    # Railway passes no --target: the relay must be the Dockerfile's default (last) stage.
    assert dockerfile_stages()[-1].name == "relay"
    assert conf["deploy"]["startCommand"] == "scripts/start-relay"
    assert conf["deploy"]["restartPolicyType"] == "ON_FAILURE"


def test_railway_gives_live_calls_time_to_drain() -> None:
    deploy = railway()["deploy"]
    drain = relay_settings.Settings().drain_seconds
    assert isinstance(deploy["drainingSeconds"], int)  # Railway rejects a string here
    assert deploy["drainingSeconds"] >= drain + 10  # SIGTERM -> SIGKILL covers the drain
    grace = str(service("relay")["stop_grace_period"])
    assert int(grace.removesuffix("s")) >= drain + 5


# --- Dockerfile --------------------------------------------------------------------------


def test_dockerfile_has_both_targets_on_a_slim_python_311() -> None:
    names = [s.name for s in dockerfile_stages()]
    assert {"relay", "console"} <= set(names)
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"python:3\.11-slim", text)
    commands = " ".join(args for s in dockerfile_stages() for _, args in s.instructions)
    assert not re.search(r"\bbun\b", commands)  # Reflex uses npm here, never bun


def test_every_file_the_dockerfile_copies_exists() -> None:
    missing = []
    for s in dockerfile_stages():
        for args in s.all("COPY"):
            words = [w for w in args.split() if not w.startswith("--")]
            if "--from=" in args:
                continue
            missing += [src for src in words[:-1] if not (ROOT / src).exists()]
    if missing == ["README.md"]:
        pytest.skip("README.md is not written yet (pyproject.toml's readme: pip install needs it)")
    assert not missing, f"the image build would fail: no {missing}"


def test_images_run_as_a_non_root_user_with_a_healthcheck() -> None:
    for name in ("relay", "console"):
        s = stage(name)
        users = s.all("USER")
        assert users and users[-1] not in ("root", "0"), f"{name} runs as root"
        assert s.one("HEALTHCHECK").startswith("--")


def test_images_start_with_the_scripts_everyone_uses() -> None:
    assert exec_form(stage("relay").one("CMD")) == ["scripts/start-relay"]
    console_cmd = exec_form(stage("console").one("CMD"))
    assert console_cmd[0] == "scripts/start-console"
    assert console_cmd[1:] == ["prod"]  # one port, $PORT: what a PaaS wants
    relay_script = (ROOT / "scripts" / "start-relay").read_text()
    assert re.search(r'^exec "\$PY" -m relay\b', relay_script, re.MULTILINE)
    # prod: Hypercorn serves Reflex's backend and the built frontend (console/serve.py),
    # not `reflex run` and its own server.
    console_script = (ROOT / "scripts" / "start-console").read_text()
    assert re.search(r'^\s*exec "\$PY" -m console\.serve$', console_script, re.MULTILINE)
    assert os.access(ROOT / "scripts" / "start-relay", os.X_OK)
    procfile = ROOT / "Procfile"
    if procfile.exists():
        assert re.search(r"^relay:\s*scripts/start-relay\b", procfile.read_text(), re.MULTILINE)


def pip_install_args(line: str) -> list[str]:
    words = shlex.split(line)
    i = words.index("install")
    assert words[i - 1] == "pip"
    return [w for w in words[i + 1 :] if w not in ("--quiet", "-q")]


def test_image_installs_like_make_without_the_dev_extra() -> None:
    makefile = (ROOT / "Makefile").read_text()
    make_lines = [ln for ln in makefile.splitlines() if "pip install" in ln and "-c " in ln]
    assert len(make_lines) == 1
    make_args = pip_install_args(make_lines[0].replace("$(BIN)/python", "python"))
    installs = [r for r in stage("deps").all("RUN") if "pip install" in r]
    assert len(installs) == 1
    image_args = pip_install_args(installs[0])
    assert image_args == ["-c", "constraints.txt", "."]
    # The same constraints file; make installs the same project editable, with the dev extra.
    assert make_args[:2] == image_args[:2]
    assert make_args[2:] == ["-e", ".[dev]"]


def test_console_frontend_is_built_into_the_image_with_npm() -> None:
    """The image builds the frontend with the command start-up checks it with, for the port
    the image runs on: a container start on that port serves it without rebuilding."""
    from console import serve

    s = stage("console")
    env = " ".join(s.all("ENV"))
    assert "REFLEX_USE_NPM=1" in env
    build = ("RUN", "scripts/start-console build")
    assert build in s.instructions
    port_env = re.compile(rf"(^|\s)PORT={CONSOLE_PORT}\b")
    port_set = [i for i, (kw, a) in enumerate(s.instructions) if kw == "ENV" and port_env.search(a)]
    assert port_set and port_set[0] < s.instructions.index(build), "build for the image's PORT"
    script = (ROOT / "scripts" / "start-console").read_text()
    assert re.search(r'^\s*exec "\$PY" -m console\.serve --build-only$', script, re.MULTILINE)
    assert serve.BUILD_COMMAND[:3] == ("reflex", "export", "--frontend-only")


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = {
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    assert {"**/.env", ".venv", ".git", ".web"} <= ignored
    assert "!**/.env.example" in ignored
    for needed in ("README.md", "pyproject.toml", "constraints.txt", "scripts", "reflex.lock"):
        assert needed not in ignored


# --- relay/.env.example ------------------------------------------------------------------


def env_example() -> list[tuple[str, str]]:
    """(name, comment) for each `NAME=` line: the comment block above it (variables listed
    together, like the two sample rates, share one)."""
    out: list[tuple[str, str]] = []
    comment: list[str] = []
    after_var = False
    for raw in (ROOT / "relay" / ".env.example").read_text().splitlines():
        line = raw.strip()
        if not line:
            comment, after_var = [], False
        elif line.startswith("#"):
            if after_var:
                comment, after_var = [], False
            comment.append(line)
        else:
            name, eq, _ = line.partition("=")
            assert eq and ENV_NAME.match(name), f"not NAME=value: {line}"
            out.append((name, " ".join(comment)))
            after_var = True
    return out


def test_env_example_lists_exactly_what_the_relay_reads() -> None:
    listed = [name for name, _ in env_example()]
    assert len(listed) == len(set(listed)), "a variable is listed twice"
    read = relay_env_names()
    assert set(listed) - read == set(), "listed but never read"
    assert read - set(listed) == set(), "read by relay/settings.py but missing from .env.example"


def test_env_example_documents_every_variable_and_its_default() -> None:
    undocumented = [name for name, comment in env_example() if "Default:" not in comment]
    assert not undocumented, f"no comment with the default above {undocumented}"


def test_env_example_loads_as_valid_settings() -> None:
    """Copied as is, the template starts the relay (on the simulator)."""
    from dotenv import dotenv_values

    values = {k: v or "" for k, v in dotenv_values(ROOT / "relay" / ".env.example").items()}
    settings = relay_settings.from_env(values)
    assert settings.simulator
    assert settings.port == RELAY_PORT
    assert store_settings.from_env(values).backend == "sqlite"
