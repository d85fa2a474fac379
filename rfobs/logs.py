"""Structured logging: JSON lines (or text for humans) carrying the current trace and span ids, secrets scrubbed."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Final

from opentelemetry import trace

from rfobs._limits import current_limits, stack_trace, truncate
from rfobs._secrets import redact, scrub_text

__all__ = ["JsonFormatter", "OtelLogHandler", "TextFormatter", "setup_logging", "setup_structured_logging"]

# Attributes every LogRecord has; anything else on a record came from `extra=` and is emitted as a field.
_RECORD_FIELDS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"}
)
_HANDLER_MARK: Final = "_rfobs_handler"


def _correlation() -> dict[str, str]:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


def _raw_extra_fields(record: logging.LogRecord, limit: int) -> dict[str, Any]:
    """The record's `extra=` fields, strings cut to `limit` characters."""
    return {
        key: truncate(value, limit) if isinstance(value, str) else value
        for key, value in vars(record).items()
        if key not in _RECORD_FIELDS and not key.startswith("_")
    }


def _extra_fields(record: logging.LogRecord, limit: int) -> dict[str, Any]:
    """The record's `extra=` fields, secrets redacted (nested mappings and lists included)."""
    return {key: redact(value, key) for key, value in _raw_extra_fields(record, limit).items()}


def _message(record: logging.LogRecord, limit: int) -> str:
    """The record's message, cut to `limit` characters and then scrubbed (a 10 MB message costs a slice)."""
    return scrub_text(truncate(record.getMessage(), limit))


def _traceback(formatter: logging.Formatter, record: logging.LogRecord, limit: int) -> str:
    """The record's traceback, cut (a huge exception message is cut before it is formatted) and scrubbed."""
    assert record.exc_info
    error = record.exc_info[1]
    if error is None or type(formatter).formatException is not logging.Formatter.formatException:
        text = truncate(formatter.formatException(record.exc_info), limit)
    else:
        text = stack_trace(error, limit, limit).rstrip("\n")
    return scrub_text(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, extra fields, trace_id and span_id."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as one line of JSON."""
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record, limit := current_limits().log_message),
        }
        entry.update(_correlation())
        entry.update(_extra_fields(record, limit))
        if record.exc_info:
            entry["exception"] = _traceback(self, record, limit)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ... [trace=... span=...]` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as one human-readable line (plus a traceback if there is one)."""
        when = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        limit = current_limits().log_message
        message = _message(record, limit)
        # rfobs's own messages start "rfobs: " (for Python's last-resort output, which prints only the message).
        origin = "" if message.startswith(f"{record.name}: ") else f"{record.name}: "
        parts = [f"{when} {record.levelname:<7} {origin}{message}"]
        parts.extend(f"{k}={v}" for k, v in _extra_fields(record, limit).items())
        if ids := _correlation():
            parts.append(f"[trace={ids['trace_id']} span={ids['span_id']}]")
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + _traceback(self, record, limit)
        return text


def setup_logging(
    level: str | int = "INFO", json_format: bool = True, *, stream: IO[str] | None = None
) -> logging.Handler:
    """Send the root logger's records to `stream` (stderr) as JSON lines or text, with trace correlation.

    Calling it again replaces the handler it installed before, so it never duplicates lines.

    Args:
        level: Root log level, a name (`"DEBUG"`) or a number.
        json_format: JSON lines if True, human-readable text otherwise.
        stream: Where to write; standard error by default.

    Returns:
        The installed handler.

    Raises:
        ValueError: `level` is not a logging level name.
    """
    if isinstance(level, str):
        numeric = logging.getLevelNamesMapping().get(level.upper())
        if numeric is None:
            allowed = ", ".join(sorted(logging.getLevelNamesMapping(), key=logging.getLevelName))
            raise ValueError(f"setup_logging(level={level!r}): expected one of {allowed}")
        level = numeric
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _HANDLER_MARK, False):
            root.removeHandler(existing)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_format else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


setup_structured_logging = setup_logging
"""Seed-compatible name of `setup_logging`."""


class OtelLogHandler(logging.Handler):
    """Bridges `logging` records to an OpenTelemetry `LoggerProvider` (OTLP logs), long messages cut.

    Secrets are scrubbed by the log exporter `rfobs.init()` builds (see `rfobs._scrub_export`), on its
    thread rather than the caller's.

    The SDK's own `LoggingHandler` is deprecated; this is the small part of it rfobs needs.
    """

    def __init__(self, logger_provider: Any, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._provider = logger_provider

    def emit(self, record: logging.LogRecord) -> None:
        """Send one record; never raises into the caller."""
        if record.name.startswith(("opentelemetry", "rfobs")):
            return  # the export path's own warnings would feed back into the export path
        try:
            from opentelemetry._logs import SeverityNumber

            severity = {
                logging.DEBUG: SeverityNumber.DEBUG,
                logging.INFO: SeverityNumber.INFO,
                logging.WARNING: SeverityNumber.WARN,
                logging.ERROR: SeverityNumber.ERROR,
                logging.CRITICAL: SeverityNumber.FATAL,
            }.get(record.levelno, SeverityNumber.UNSPECIFIED)
            # Cut here; scrubbed by the exporter rfobs wraps, on the export thread.
            limit = current_limits().log_message
            attributes = {
                k: v if isinstance(v, (str, bool, int, float)) else truncate(str(v), limit)
                for k, v in _raw_extra_fields(record, limit).items()
            }
            attributes["code.function.name"] = record.funcName
            attributes["code.line.number"] = record.lineno
            self._provider.get_logger(record.name).emit(
                timestamp=int(record.created * 1e9),
                severity_number=severity,
                severity_text=record.levelname,
                body=truncate(record.getMessage(), limit),
                attributes=attributes,
            )
        except Exception:
            self.handleError(record)
