"""A worker process's life under the supervisor (:mod:`nex.process.supervisor`).

A worker serves as a lone Nex does (:func:`nex.process.run.run_server`) on the listener its
supervisor gave it; it reports on a pipe that it is ready, or why it could not start, and
stops by itself once its supervisor is gone.  Why it could not start is one line, even for a
fault nothing foresaw: the exception and where it was raised, not a traceback, so that the
supervisor can say it in its one ``nex:`` line.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import traceback
from typing import TYPE_CHECKING, Optional

from nex.process.config import Config
from nex.process.listener import Server
from nex.process.metrics import Metrics
from nex.process.run import run_server

if TYPE_CHECKING:
    from nex.files.davlocks import LockTable

#: What a new worker writes to the supervisor once it is ready; else it writes why it failed.
READY = b"ready"


def serve_as_worker(config: Config, listener: socket.socket, report: int, lifeline: int, *,
                     shared: bool, metrics: Optional[Metrics],
                     scrapes: Optional[socket.socket], locks: Optional[LockTable]) -> int:
    """One worker's life: serve as a lone Nex does, on ``listener`` (``shared`` with other
    workers or not), counting in ``metrics``, answering scrapes on ``scrapes``, keeping
    WebDAV locks in the table ``locks`` every worker shares; report ready (or why not) on
    ``report``; stop when the supervisor is gone.  Returns the exit status: 2 when it could
    not start."""
    reported = []  # what the supervisor was told: READY, or why the worker did not start

    def ready(server: Server) -> None:
        threading.Thread(target=_stop_when_orphaned, args=(lifeline,), daemon=True,
                         name="supervisor-watch").start()
        reported.append(READY)
        _report(report, READY)

    def fail(line: str) -> None:
        reported.append(line)
        _report(report, line.encode("utf-8", "replace"))

    try:
        return run_server(config, listener=listener, ready=ready, fail=fail, shared=shared,
                          metrics=metrics, scrapes=scrapes, locks=locks)
    except Exception as error:
        if reported:  # it served (or said why not): the supervisor logs how it ended
            raise
        fail(fault_line(error))
        return 2


def fault_line(error: BaseException) -> str:
    """One line for an exception nothing foresaw: its type, its message and where it was
    raised (``ValueError: bad (nex/process/run.py:80 in run_server)``)."""
    line = type(error).__name__
    message = " ".join(str(error).split())
    if message:
        line += f": {message}"
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        line += f" ({frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name})"
    return line


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
