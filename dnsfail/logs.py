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
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: One line per kind of internal error (exception type and the line that raised it) in
#: this many seconds at most: the packet that finds a bug can be sent at line rate.
ERROR_LOG_INTERVAL = 10.0
#: Kinds remembered for that.  There are at most as many as lines of code that raise, so
#: reaching this means something odd, and the memory simply starts afresh.
ERROR_KINDS_LIMIT = 256
#: Longest exception message logged: it may quote the peer's bytes.
ERROR_MESSAGE_LIMIT = 200


def iso(ts: float) -> str:
    """A wall-clock time as the logs and the control API show it: UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


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


class ErrorLog:
    """Rate-limited one-line reports of internal errors: type, message, where raised.

    An exception that a peer's input can provoke must not write a traceback
    per message.  The first of a kind is logged at ERROR at once, as one line
    (the message ``repr``-quoted, so it cannot forge lines); more of that kind
    within ``interval`` seconds are only counted, and the next line says how
    many were held back.  The traceback goes to DEBUG, with each line logged.
    """

    def __init__(self, logger: logging.Logger, interval: float = ERROR_LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        #: Kind -> (when last logged, how many of it since then were not).
        self._kinds: dict[tuple[str, str], tuple[float, int]] = {}

    def report(self, exc: BaseException, doing: str) -> None:
        """Log ``exc``, raised while ``doing`` (``"answering a 40-byte message"``), or count it."""
        frames = traceback.extract_tb(exc.__traceback__)
        where = "?"
        if frames:
            where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}"
        kind = (type(exc).__name__, where)
        now = self.clock()
        seen = self._kinds.get(kind)
        if seen is not None and now - seen[0] < self.interval:
            self._kinds[kind] = (seen[0], seen[1] + 1)
            return
        if seen is None and len(self._kinds) >= ERROR_KINDS_LIMIT:
            self._kinds.clear()
        self._kinds[kind] = (now, 0)
        held = f" ({seen[1]} more since the last report)" if seen and seen[1] else ""
        self.logger.error("internal error %s: %s: %r at %s%s", doing, kind[0],
                          str(exc)[:ERROR_MESSAGE_LIMIT], where, held,
                          extra={"fields": {"event": "internal_error", "error": kind[0],
                                            "where": where}})
        self.logger.debug("traceback of that internal error", exc_info=exc)
