"""Process-wide logging setup: plain text for humans, one JSON object per line for log pipelines. Every line
logged while a request is bound (`lyceum_core.context.CURRENT`) carries its request id and tenant, so one id
finds a request across the fleet."""

from __future__ import annotations

import json
import logging
import sys
import time

from lyceum_core.context import CURRENT


class RequestContextFilter(logging.Filter):
    """Stamps each record with the bound request's id and tenant (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = CURRENT.get()
        record.request_id = ctx.request_id if ctx is not None else "-"
        record.tenant = ctx.tenant if ctx is not None else "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "tenant": getattr(record, "tenant", "-"),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str = "INFO", json_lines: bool = False) -> None:
    """Configures the root logger once, for an entrypoint."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestContextFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        text = "%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s"
        handler.setFormatter(logging.Formatter(text))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
