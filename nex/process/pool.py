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

import collections
import threading
from typing import Any, Callable, Deque, List, Optional, Sequence, Tuple

#: How long a thread stays parked before it ends.
IDLE_SECONDS = 5.0


#: What a thread is handed: the item, the call to make with it, and the thread's name.
_Work = Tuple[Any, Callable[[Any], None], str]


class _Parked:
    """One parked thread: the lock it waits on and the work handed to it."""

    __slots__ = ("wake", "work")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.work: Optional[_Work] = None


class ThreadPool:
    """Runs each piece of work in a parked thread, or in a new one when none is parked.

    Threads are daemon threads named after their work (``name``).  :meth:`close` ends the
    parked threads; a busy thread ends when its work is done.

    The caller of :meth:`run_all` (the accept loop) starts a thread only when no thread is on
    its way: work that finds no parked thread waits in a queue, first come first served,
    and each new thread, before it serves its own work, starts up to ``GROWTH`` more while
    work still waits for one.  Starting a thread waits until the new thread runs, which
    under load is a long wait for the interpreter; so the pool grows by doubling, with many
    starts under way at once, and the accept loop goes on accepting meanwhile.  A thread
    that finishes its work takes the next waiting work before it parks.
    """

    #: How many threads each new thread starts while work waits for one.
    GROWTH = 2

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self._idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._parked: List[_Parked] = []
        #: Work no thread has taken yet (bounded by the caller's cap on live work).
        self._waiting: Deque[_Work] = collections.deque()
        #: Threads started that have not yet taken work from ``_waiting``.
        self._starting = 0
        self._closed = False

    def run_all(self, works: Sequence[_Work]) -> List[_Work]:
        """Run each ``(item, call, name)`` of ``works``, ``call(item)`` in a thread named
        ``name``; return the works that no thread will take, since none was parked or on its
        way and none could start.

        Parked threads take what they can at once; the rest is queued *before* a thread
        starts, so the one new thread sees the whole burst and the pool doubles towards it
        rather than growing by the one thread this call waits for.
        """
        with self._lock:
            handed = []
            for work in works:
                parked = self._parked.pop() if self._parked else None
                if parked is None:
                    self._waiting.append(work)
                else:
                    handed.append((parked, work))
            must_start = bool(self._waiting) and not self._starting
            if must_start:
                self._starting = 1
        for parked, work in handed:
            parked.work = work
            parked.wake.release()
        if not must_start:
            return []
        try:
            self._start_thread()
        except RuntimeError:
            with self._lock:
                self._starting -= 1
                # Work a thread that finished its own has taken meanwhile is on its way.
                ours = {id(work) for work in works}
                unstarted = [work for work in self._waiting if id(work) in ours]
                self._waiting = collections.deque(
                    work for work in self._waiting if id(work) not in ours)
            return unstarted
        return []

    def close(self) -> None:
        """End the parked threads; a thread that finishes its work then ends instead of
        parking."""
        with self._lock:
            self._closed = True
            parked, self._parked = self._parked, []
        for thread in parked:
            thread.wake.release()  # with no work: it ends

    def _start_thread(self) -> None:
        """Start a thread that takes waiting work (RuntimeError when it cannot start)."""
        threading.Thread(target=self._serve, args=(_Parked(),), name="pool",
                         daemon=True).start()

    def _serve(self, parked: _Parked) -> None:
        """A pool thread's life: take waiting work, help the pool grow while more waits, do
        the work, and take the next waiting work or park in between, until idle or closed."""
        current = threading.current_thread()
        with self._lock:
            self._starting -= 1
            work = self._waiting.popleft() if self._waiting else None
            helpers = max(0, min(self.GROWTH, len(self._waiting) - self._starting))
            self._starting += helpers
        for _ in range(helpers):
            try:
                self._start_thread()
            except RuntimeError:  # the waiting work goes to threads that finish theirs
                with self._lock:
                    self._starting -= 1
        while work is not None:
            item, call, name = work
            current.name = name
            call(item)
            # A parked thread keeps nothing of its last work alive.
            work = item = call = None
            with self._lock:
                if self._waiting:
                    work = self._waiting.popleft()
                    continue
                if self._closed:
                    return
                self._parked.append(parked)
            if not parked.wake.acquire(timeout=self._idle_seconds):
                with self._lock:
                    if parked in self._parked:  # no work came: end
                        self._parked.remove(parked)
                        return
                parked.wake.acquire()  # work is being handed over right now
            work, parked.work = parked.work, None
