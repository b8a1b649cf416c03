"""A worker process's life under the supervisor (:mod:`nex.process.supervisor`).

A worker serves as a lone Nex does (:func:`nex.process.run.run_server`) on the listener its
supervisor gave it; it reports on a pipe that it is ready, or why it could not start, and
stops by itself once its supervisor is gone.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from typing import Optional

from nex.process.config import Config
from nex.process.listener import Server
from nex.process.metrics import Metrics
from nex.process.run import run_server

#: What a new worker writes to the supervisor once it is ready; else it writes why it failed.
READY = b"ready"


def serve_as_worker(config: Config, listener: socket.socket, report: int, lifeline: int, *,
                     shared: bool, metrics: Optional[Metrics],
                     scrapes: Optional[socket.socket]) -> int:
    """One worker's life: serve as a lone Nex does, on ``listener`` (``shared`` with other
    workers or not), counting in ``metrics`` and answering scrapes on ``scrapes``; report
    ready (or why not) on ``report``; stop when the supervisor is gone."""
    def ready(server: Server) -> None:
        threading.Thread(target=_stop_when_orphaned, args=(lifeline,), daemon=True,
                         name="supervisor-watch").start()
        _report(report, READY)

    def fail(line: str) -> None:
        _report(report, line.encode("utf-8", "replace"))

    return run_server(config, listener=listener, ready=ready, fail=fail, shared=shared,
                      metrics=metrics, scrapes=scrapes)


def _report(fd: int, message: bytes) -> None:
    """Tell the supervisor ``message`` and close the pipe."""
    try:
        os.write(fd, message)
    finally:
        os.close(fd)


def _stop_when_orphaned(lifeline: int) -> None:
    """Wait for end-of-file on the lifeline pipe (the supervisor is gone), then stop."""
    while os.read(lifeline, 1):
        pass
    os.kill(os.getpid(), signal.SIGTERM)
