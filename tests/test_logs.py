"""Operator logs: JSON lines or readable text, the CallSid on a call's lines, secrets never
written, and no log record can crash the relay."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from relay import logs
from shared.secret import Secret

SECRET = "sk-test-0123456789abcdef"
TOKEN = "console-token-xyz"


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def capture(fmt: str, secrets: list[str | Secret] | None = None) -> io.StringIO:
    out = io.StringIO()
    logs.configure("DEBUG", fmt, secrets=secrets or [], stream=out)
    return out


def json_lines(out: io.StringIO) -> list[dict[str, Any]]:
    lines = out.getvalue().splitlines()
    assert lines, "nothing was logged"
    objects = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(o, dict) for o in objects)
    return objects


log = logging.getLogger("relay.test")


def test_json_lines_have_the_fields_and_the_call_sid() -> None:
    out = capture("json")
    log.info("call started", extra={"call_sid": "CA111"})
    token = logs.current_call_sid.set("CA222")
    try:
        log.warning("model reconnected after %d ms", 250)
    finally:
        logs.current_call_sid.reset(token)
    log.info("no call here")
    first, second, third = json_lines(out)
    assert first["msg"] == "call started" and first["call_sid"] == "CA111"
    assert first["level"] == "INFO" and first["logger"] == "relay.test"
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert second["msg"] == "model reconnected after 250 ms" and second["call_sid"] == "CA222"
    assert "call_sid" not in third


def test_explicit_call_sid_wins_over_the_context() -> None:
    out = capture("json")
    token = logs.current_call_sid.set("CA-context")
    try:
        log.info("x", extra={"call_sid": "CA-explicit"})
    finally:
        logs.current_call_sid.reset(token)
    assert json_lines(out)[0]["call_sid"] == "CA-explicit"


def test_extras_and_exceptions_are_fields_of_the_same_line() -> None:
    out = capture("json")
    log.info("tool call", extra={"call_sid": "CA1", "tool": "get_weather", "ms": 12.5})
    try:
        raise RuntimeError("upstream closed")
    except RuntimeError:
        log.exception("model socket failed", extra={"call_sid": "CA1"})
    tool, failure = json_lines(out)
    assert tool["tool"] == "get_weather" and tool["ms"] == 12.5
    assert "RuntimeError: upstream closed" in failure["exc"]
    assert failure["level"] == "ERROR"


def test_text_format_is_readable_with_the_call_sid() -> None:
    out = capture("text")
    log.info("call started", extra={"call_sid": "CA123"})
    log.info("relay listening on %s", ":8081")
    first, second = out.getvalue().splitlines()
    assert "INFO" in first and "relay.test" in first and "[CA123] call started" in first
    assert second.endswith("relay.test relay listening on :8081")
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_are_redacted_everywhere(fmt: str) -> None:
    out = capture(fmt, secrets=[SECRET, Secret(TOKEN), "", Secret("")])
    log.info("connecting with key %s", SECRET)
    log.info(f"token={TOKEN}")
    log.info("headers", extra={"auth": f"Bearer {TOKEN}", "call_sid": "CA1"})
    try:
        raise ValueError(f"bad key {SECRET}")
    except ValueError:
        log.exception("failed")
    text = out.getvalue()
    assert SECRET not in text and TOKEN not in text
    assert text.count(logs.REDACTED) == 4  # the argument, the f-string, the extra, the exception


def test_reconfiguring_replaces_the_handler_and_its_secrets() -> None:
    capture("json", secrets=[SECRET])
    out = capture("json")  # secrets no longer configured, and one handler only
    log.info("once")
    assert len(json_lines(out)) == 1
    ours = [h for h in logging.getLogger().handlers if h.get_name() == "relay.logs"]
    assert len(ours) == 1


def test_level_filters_and_a_bad_level_falls_back_to_info() -> None:
    out = io.StringIO()
    logs.configure("warning", "json", stream=out)
    log.info("hidden")
    log.warning("shown")
    assert [o["msg"] for o in json_lines(out)] == ["shown"]
    out = io.StringIO()
    logs.configure("LOUD", "json", stream=out)
    log.debug("hidden")
    log.info("shown")
    msgs = [o["msg"] for o in json_lines(out)]
    assert msgs[-1] == "shown" and "hidden" not in msgs


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    __repr__ = __str__


def record(msg: object, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("relay.test", logging.INFO, __file__, 1, msg, args or None, None)
    for key, val in extra.items():
        setattr(rec, key, val)
    return rec


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_odd_records_never_crash(fmt: str) -> None:
    """Straight to the relay's handler (pytest's own capture handler is stricter)."""
    out = io.StringIO()
    handler = logs.configure("DEBUG", fmt, secrets=[SECRET], stream=out)
    odd = [
        record("%d calls", "not a number"),  # wrong argument type
        record("%s and %s", "only one"),  # too few arguments
        record({"a": 1}),  # not a string
        record(Unprintable()),
        record("x", obj=object(), weird=Unprintable(), call_sid=12345),
        record("y", levelname=None, name=Unprintable()),
    ]
    exc_record = record("no exception in flight")
    exc_record.exc_info = (None, None, None)
    for rec in [*odd, exc_record]:
        handler.handle(rec)
    lines = out.getvalue().splitlines()
    assert len(lines) >= len(odd) + 1
    if fmt == "json":
        objects = json_lines(out)
        assert objects[0]["msg"].startswith("%d calls")
        assert objects[2]["msg"] == "{'a': 1}"
        assert objects[4]["call_sid"] == "12345"
