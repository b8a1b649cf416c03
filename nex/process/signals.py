"""The signals a Nex process acts on, and how it holds and lets them go.

A lone Nex and each worker stop on SIGINT and SIGTERM (a second Ctrl+C stops at once), and
at once on :data:`FORCE_SIGNAL` (SIGQUIT), which a supervisor passes on to its workers; a
worker makes way on :data:`RETIRE_SIGNAL`, sent by its supervisor; SIGHUP reloads and
SIGUSR1 reopens the logs.  The handlers
themselves are :func:`nex.process.run.run_server`'s and the supervisor's.  No handler may
take a lock: a second signal can run a handler in the main thread while the first handler
is still inside it.
"""

from __future__ import annotations

import signal
from typing import Iterable

#: Stop accepting, finish requests within the grace period, let tunnels drain.
RETIRE_SIGNAL = signal.SIGUSR2
#: The signals that ask a server to stop (RETIRE_SIGNAL asks a worker to make way).
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
#: Stop at once: a second Ctrl+C, as a supervisor passes it on to its workers, or an
#: operator's SIGQUIT (its default action would dump core).  Not SIGINT, which a worker
#: also gets from the terminal and could not tell from its supervisor's.
FORCE_SIGNAL = signal.SIGQUIT
#: Signals an operator sends a running Nex (reload, reopen the logs) whose default action
#: would end it: held while the pid file is written and Nex starts (:func:`hold_signals`)
#: until their handlers are in place, so that one sent as soon as the pid file appears is
#: acted on instead of ending Nex.
HELD_AT_START = frozenset({signal.SIGHUP, signal.SIGUSR1})


def hold_signals() -> None:
    """Keep :data:`HELD_AT_START` pending until :func:`release_signals`."""
    signal.pthread_sigmask(signal.SIG_BLOCK, HELD_AT_START)


def release_signals() -> None:
    """Deliver the held signals, now that their handlers are in place."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_AT_START)


def ignore_signals(signals: Iterable[int]) -> None:
    """Give each of ``signals`` a handler that does nothing, in a process on its way out, so
    that a late signal cannot raise in what is left.  Not ``SIG_IGN``: a signal caught just
    before, whose handler has yet to run, would then be reported on stderr as "ignored due to
    race condition"."""
    for signum in signals:
        signal.signal(signum, _do_nothing)


def _do_nothing(signum: int, frame: object) -> None:
    """The handler of a signal that comes too late to change anything."""
