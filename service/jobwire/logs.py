"""One logging set-up for every process: one line per event, ``key=value`` fields (logfmt)."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(level: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("JOBWIRE_LOG_LEVEL") or "INFO").upper())
    # aiokafka logs every refused connection at ERROR while a broker restarts: keep it to warnings.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
