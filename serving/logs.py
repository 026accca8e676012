"""Log format of the gateway's processes: one JSON object per line, or the readable text lines.

`INFERBASE_LOG_FORMAT`: `json`, `text`, or `auto` (the default: text when stderr is a terminal, a
person reading it; JSON otherwise: a container, a service, a file a log shipper reads).
`INFERBASE_LOG_LEVEL`: default INFO. httpx's line per HTTP request (the engines' health probes,
every 2 s per worker and replica) is kept to WARNING unless the level is DEBUG.

JSON lines come from python-json-logger (`OrjsonFormatter`, orjson being the gateway's JSON
library already): `time` (UTC, ISO 8601), `level`, `logger`, `process`, `message`, and every field
a record carries in `extra`. The request log line (`serving.front.log_response`) carries
`request_id`, `client_request_id`, `method`, `route`, `path`, `status`, `key_id` (the key's id,
never the key), `latency_ms`, and for a chat completion `model`, `prompt_tokens`,
`completion_tokens`, `cost_micros`, `ttft_ms`, `outcome`, `stream`, `routing_task`, `usage_id`.
Prompts, answers and raw keys are never logged, in either format. gunicorn's own lines
(`serving.gworker.Logger`) use the same format.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import IO, Any

FORMAT_ENV = "INFERBASE_LOG_FORMAT"
LEVEL_ENV = "INFERBASE_LOG_LEVEL"
QUIET = ("httpx", "httpcore")  # at WARNING unless the level is DEBUG
TEXT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def log_format(stream: IO[str] | None = None) -> str:
    """`json` or `text`, from `INFERBASE_LOG_FORMAT` (`auto`: text on a terminal)."""
    chosen = os.environ.get(FORMAT_ENV, "auto").strip().lower()
    if chosen in ("json", "text"):
        return chosen
    if chosen != "auto":
        raise ValueError(f"{FORMAT_ENV} must be json, text or auto, not {chosen!r}")
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.orjson import OrjsonFormatter

    class Formatter(OrjsonFormatter):  # type: ignore[misc]
        def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
            return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

        def add_fields(self, log_data: dict[str, Any], record: Any, message: Any) -> None:
            super().add_fields(log_data, record, message)
            # a record whose fields are all in `extra` says so in a short `summary` (the
            # request line: "POST /path 200"), instead of repeating them in its text message
            if "summary" in log_data:
                log_data["message"] = log_data.pop("summary")

    return Formatter(
        "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )


def formatter(fmt: str) -> logging.Formatter:
    return json_formatter() if fmt == "json" else logging.Formatter(TEXT)


def configure(stream: IO[str] | None = None) -> str:
    """Log the app's records to stderr in the chosen format (unless the root logger already has
    handlers: a host application's own logging wins). Returns the format."""
    fmt = log_format(stream)
    root = logging.getLogger()
    if root.handlers:
        return fmt
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    root.addHandler(handler)
    root.setLevel(os.environ.get(LEVEL_ENV, "INFO").upper())
    if root.level > logging.DEBUG:  # httpx logs every engine health probe at INFO (every 2 s)
        for name in QUIET:
            logging.getLogger(name).setLevel(logging.WARNING)
    return fmt


def reformat(handlers: list[Any], fmt: str) -> None:
    """Give existing handlers (gunicorn's) the chosen format, when it is JSON."""
    if fmt != "json":
        return
    for h in handlers:
        h.setFormatter(json_formatter())
