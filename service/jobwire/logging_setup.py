"""One logging set-up for every process: one line per event, ``key=value`` fields (logfmt)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable

#: Control characters (C0, DEL, C1 with NEL) and Unicode's line and paragraph separators, as
#: they are written: escaped, so no value can end a line or start one in any log reader.
_ESCAPES = ({code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}
            | {0x2028: "\\u2028", 0x2029: "\\u2029", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"})


class OneLineFormatter(logging.Formatter):
    """One line per event, whatever a logged value holds: a request path, a reason a broker
    gave, a traceback. A newline in a value would let whoever chose it write a line of their
    own (``GET /%0ats=… level=ERROR``), so every control character is escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).translate(_ESCAPES)


def setup_logging(level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("JOBWIRE_LOG_LEVEL") or "INFO").upper())
    # aiokafka logs every refused connection at ERROR while a broker restarts: keep it to
    # warnings, and while the process starts (the broker and its group coordinator settling)
    # to INFO, so a healthy start reads as one.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # On the handler: a logger's own filters never see what its child loggers propagate.
    handler.addFilter(StartupGrace(STARTUP_GRACE_S, "aiokafka"))


#: How long after start client-library errors are taken for the broker settling.
STARTUP_GRACE_S = 30.0


class StartupGrace(logging.Filter):
    """Shows a library's warnings and errors at INFO for the first ``grace_s`` of the process,
    and as they are after that: a failure that persists past start-up still reads as one."""

    def __init__(self, grace_s: float, library: str, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._library = library
        self._clock = clock
        self._until = clock() + grace_s

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO and record.name.startswith(self._library) and self._clock() < self._until:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"(starting) {record.msg}"
        return True
