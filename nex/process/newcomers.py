"""Newcomers first: connections not yet served go ahead of those already answered.

Under a burst of clients (1,000 keep-alive connections at once), every worker thread whose
client has a request waiting wants the interpreter lock, and the lock goes to whichever
thread the kernel wakes, not to the one that has waited longest.  The threads that are
already answering keep winning it, since each returns from a short system call ready to run,
while a new connection's thread first has to be woken and then win the lock several times
before its first response.  Left alone, a few hundred clients were answered at once and
the rest waited for seconds, some past their time-outs.

So the listener counts each connection it admits as a *newcomer* until its thread has read
its first request head (or refused it), would have to wait for the client (nothing sent
yet: it then contends for nothing), or closes.  While any newcomer is counted, a thread
that has just answered a keep-alive request waits, before it reads the next one, until none
is left or :data:`YIELD_SECONDS` pass.  The waiting threads sleep on an event, out of the
contest for the interpreter lock, so the newcomers' threads get it.  With no newcomers, the
cost per request is one read of :attr:`Newcomers.waiting`.

A client cannot hold the others back for long: a newcomer that sends nothing stops being
counted as soon as its thread runs, one that sends slowly as soon as its thread has to wait
for a byte, and no keep-alive request waits more than :data:`YIELD_SECONDS` in any case.
"""

from __future__ import annotations

import threading

#: The longest a keep-alive connection's next request waits for newcomers.
YIELD_SECONDS = 0.25


class Newcomers:
    """The count of admitted connections not yet under way, and the wait for it to empty,
    at most ``yield_seconds`` at a time."""

    __slots__ = ("waiting", "yield_seconds", "_lock", "_none_waiting")

    def __init__(self, yield_seconds: float = YIELD_SECONDS) -> None:
        #: How many newcomers there are; read without the lock (a stale value only moves
        #: one wait by a moment).
        self.waiting = 0
        self.yield_seconds = yield_seconds
        self._lock = threading.Lock()
        self._none_waiting = threading.Event()
        self._none_waiting.set()

    def arrive(self) -> None:
        """Count one newcomer more."""
        with self._lock:
            self.waiting += 1
            if self.waiting == 1:
                self._none_waiting.clear()

    def settle(self) -> None:
        """Count one newcomer less: its connection is under way (or gone)."""
        with self._lock:
            self.waiting -= 1
            if not self.waiting:
                self._none_waiting.set()

    def give_way(self) -> None:
        """Wait until no newcomer is left, at most :attr:`yield_seconds`."""
        self._none_waiting.wait(self.yield_seconds)

