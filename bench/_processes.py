"""Stopping a process a benchmark started, within a bound."""

from __future__ import annotations

import signal
import subprocess


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """SIGINT (py-spy, when it wraps the process, writes its profile on SIGINT only), then
    SIGKILL if it has not ended within ``timeout_s``."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
