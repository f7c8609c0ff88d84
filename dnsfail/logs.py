"""Log lines for people (``text``) or for log pipelines (``json``), one line per event.

Events that operators search for (a target's state change, a drain, an
undrain or expiry, a reload, a refused control request) are logged with
``extra={"fields": {"event": ..., ...}}``.  The text format prints only the
message, which already says everything in words; the JSON format adds the
fields as top-level keys, so ``jq 'select(.event == "drain")'`` finds every
drain with its selector, reason, author and expiry without parsing prose.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the event fields, and exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                out.setdefault(str(key), value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup(level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger once, on stderr, in ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    # aiohttp's access log would print a line per /metrics scrape; control.py logs
    # what matters (changes and refusals) itself.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
