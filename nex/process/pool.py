"""The thread pool: parked worker threads that take the next accepted connection.

Starting and joining a thread costs about as much as answering a small request, and under
load a new thread waits long for the interpreter before it even starts.  So a thread that
has served its connection does not end: it parks, and the next connection is handed to it
at once.  The pool grows when no thread is parked (the listener's cap on live connections
bounds it, since every busy thread serves one), and a thread parked for ``idle_seconds``
ends, so the pool shrinks back when the load is gone.

A parked thread is handed work through its own lock, released by the hand-over: waking it
costs one futex, and no thread looks at another's work.  Parked threads are kept last in,
first out, so the threads that run are the ones whose stacks are warm, and those parked
longest are the ones that end.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, List, Optional, Tuple

#: How long a thread stays parked before it ends.
IDLE_SECONDS = 5.0


class _Parked:
    """One parked thread: the lock it waits on and the work handed to it."""

    __slots__ = ("wake", "work")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.work: Optional[Tuple[Any, Callable[[Any], None], str]] = None


class ThreadPool:
    """Runs each piece of work in a parked thread, or in a new one when none is parked.

    Threads are daemon threads named after their work (``name``).  :meth:`close` ends the
    parked threads; a busy thread ends when its work is done.
    """

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self._idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._parked: List[_Parked] = []
        self._closed = False

    def run(self, item: Any, call: Callable[[Any], None], name: str) -> None:
        """Run ``call(item)`` in a thread named ``name``; RuntimeError when no thread is
        parked and none can start."""
        with self._lock:
            parked = self._parked.pop() if self._parked else None
        if parked is not None:
            parked.work = (item, call, name)
            parked.wake.release()
            return
        parked = _Parked()
        parked.work = (item, call, name)  # not in the thread's arguments, kept for its life
        threading.Thread(target=self._serve, args=(parked,), name=name, daemon=True).start()

    def close(self) -> None:
        """End the parked threads; a thread that finishes its work then ends instead of
        parking."""
        with self._lock:
            self._closed = True
            parked, self._parked = self._parked, []
        for thread in parked:
            thread.wake.release()  # with no work: it ends

    def _serve(self, parked: _Parked) -> None:
        """A pool thread's life: do the work, parking in between, until idle or closed."""
        current = threading.current_thread()
        while parked.work is not None:
            (item, call, name), parked.work = parked.work, None
            current.name = name
            call(item)
            item = None  # a parked thread keeps nothing of its last connection alive
            with self._lock:
                if self._closed:
                    return
                self._parked.append(parked)
            if not parked.wake.acquire(timeout=self._idle_seconds):
                with self._lock:
                    if parked in self._parked:  # no work came: end
                        self._parked.remove(parked)
                        return
                parked.wake.acquire()  # work is being handed over right now
