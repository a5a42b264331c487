"""Logging for operators: JSON lines or readable text, the CallSid on every call's line,
and configured secrets redacted from everything written.

    logs.configure(settings.log_level, settings.log_format,
                   secrets=[settings.openai_api_key, settings.twilio_auth_token,
                            settings.console_token])

A line names its call either explicitly, `log.info("...", extra={"call_sid": sid})`, or
through the context variable, `token = logs.current_call_sid.set(sid)` in the call's task
(every line logged from that task and its children then carries it).

Log one line per event that matters (call start/end, reconnect, tool call, console dropped);
never one per audio frame or delta.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from shared.secret import Secret

current_call_sid: ContextVar[str | None] = ContextVar("current_call_sid", default=None)

LogFormat = Literal["text", "json"]
REDACTED = "[redacted]"
# Shorter values are not redacted: they would blank out ordinary words and numbers.
MIN_SECRET_LEN = 4

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "call_sid", "taskName"}
)


class RedactSecrets(logging.Filter):
    """Replaces every configured secret value in a record's message, exception and extras."""

    def __init__(self, secrets: Iterable[str | Secret] = ()) -> None:
        super().__init__()
        values = {s.get() if isinstance(s, Secret) else s for s in secrets}
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted((v for v in values if len(v) >= MIN_SECRET_LEN), key=len)[::-1]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(_message(record))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = _format_exception(record)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, val in _extras(record).items():
            if isinstance(val, str):
                setattr(record, key, self.redact(val))
            elif not isinstance(val, int | float | bool) and val is not None:
                text = _safe_str(val)
                if (redacted := self.redact(text)) != text:
                    setattr(record, key, redacted)
        return True


class AddCallSid(logging.Filter):
    """Sets `record.call_sid` from `extra=` or else from `current_call_sid` (may be None)."""

    def filter(self, record: logging.LogRecord) -> bool:
        sid = getattr(record, "call_sid", None)
        if not sid:
            sid = current_call_sid.get()
        record.call_sid = _safe_str(sid) if sid else None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, call_sid, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            obj: dict[str, Any] = {
                "ts": _timestamp(record),
                "level": _safe_str(record.levelname),
                "logger": _safe_str(record.name),
                "msg": _message(record),
            }
            sid = getattr(record, "call_sid", None)
            if sid:
                obj["call_sid"] = _safe_str(sid)
            for key, val in _extras(record).items():
                obj.setdefault(key, val)
            if record.exc_info and not record.exc_text:
                record.exc_text = _format_exception(record)
            if record.exc_text:
                obj["exc"] = record.exc_text
            if record.stack_info:
                obj["stack"] = record.stack_info
            return json.dumps(obj, default=_safe_str, ensure_ascii=False)
        except Exception as exc:  # never let a log line take the process down
            return json.dumps({"level": "ERROR", "logger": "relay.logs", "msg": repr(exc)})


class TextFormatter(logging.Formatter):
    """`2025-01-01 12:00:00.123 INFO    relay.call [CA123] message key=value`."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            ts = datetime.fromtimestamp(record.created).isoformat(" ", timespec="milliseconds")
            sid = getattr(record, "call_sid", None)
            line = f"{ts} {record.levelname:<7} {record.name}"
            line += f" [{sid}] " if sid else " "
            line += _message(record)
            for key, val in _extras(record).items():
                line += f" {key}={_safe_str(val)}"
            if record.exc_info and not record.exc_text:
                record.exc_text = _format_exception(record)
            if record.exc_text:
                line += "\n" + record.exc_text
            if record.stack_info:
                line += "\n" + record.stack_info
            return line
        except Exception as exc:  # never let a log line take the process down
            return f"unformattable log record: {exc!r}"


_HANDLER_NAME = "relay.logs"


def configure(
    level: str = "INFO",
    fmt: LogFormat | str = "text",
    *,
    secrets: Iterable[str | Secret] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route every logger through one handler on the root logger (replacing the one a previous
    call installed), in `fmt`, at `level`, redacting `secrets`. Returns the handler."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(AddCallSid())
    handler.addFilter(RedactSecrets(secrets))
    root.addHandler(handler)
    numeric = logging.getLevelName(level.strip().upper())
    root.setLevel(numeric if isinstance(numeric, int) else logging.INFO)
    if not isinstance(numeric, int):
        logging.getLogger(__name__).warning("LOG_LEVEL %r is not a level; using INFO", level)
    return handler


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        return f"{_safe_str(record.msg)} {_safe_str(record.args)}"


def _format_exception(record: logging.LogRecord) -> str:
    try:
        _, exc, _ = record.exc_info or (None, None, None)
        return "".join(traceback.format_exception(exc)).rstrip() if exc else ""
    except Exception:
        return _safe_str(record.exc_info)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


def _timestamp(record: logging.LogRecord) -> str:
    ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    return ts.replace("+00:00", "Z")


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"
