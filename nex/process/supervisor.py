"""The supervisor: ``workers = N`` processes serving one port, kept running and reloaded.

One Python process runs one thread at a time, so with ``workers`` above 1 Nex runs that many
worker processes, each a whole :class:`nex.process.listener.Server` with its own connection threads,
under this supervisor, which serves no request itself.

**Fork, not exec.**  Workers are ``os.fork`` children of the supervisor, which has validated
the settings and made every load a worker makes before it serves
(:func:`nex.process.startup.check_startup`): a worker starts from exactly that :class:`Config`
(a reload hands the new workers exactly the settings it checked; a restart costs no
interpreter start) and runs :func:`nex.process.run.run_server`, a lone Nex's start path.
With ``webdav = write`` every worker shares the supervisor's one WebDAV lock table
(:meth:`nex.files.davlocks.LockTable.shared`), which outlives workers and reloads.
Forking is safe because the supervisor runs no thread of its own (so it writes its log lines
itself, not through :class:`nex.process.log.Logger`, whose flusher is a thread).  A fresh
child closes the supervisor's descriptors at once (its signal pipe, its log file, its end of
the lifeline pipe, the other workers' listeners), so a worker holds only its own listener,
connections and log files.

**One port.**  On Linux each worker accepts on a listener of its own, and ``SO_REUSEPORT``
lets the kernel spread new connections over the listeners by a hash of the addresses.  The
supervisor creates those listeners, one per worker slot, and keeps them: a worker inherits
its slot's listener, and the worker that replaces it (after a crash or on SIGHUP) inherits the
same one.  So the connections waiting in a listener's queue are never lost with a worker; a
listener the kernel closes drops its queue with resets, which is why no worker's exit closes
one.  The first listener is bound as a lone Nex binds (``SO_REUSEADDR``, without
``SO_REUSEPORT``), so that a port any other socket uses, even one that shares its port, fails
at once with exit status 2; port 0 picks the port there, and ``SO_REUSEPORT`` is set before it
listens so that the others, bound to that same port, join it.  Elsewhere ``SO_REUSEPORT``
does not spread connections, so the supervisor listens once and every worker accepts on that
one inherited socket (:data:`REUSE_PORT` chooses).

**Signals.**  SIGINT and SIGTERM are passed to every worker, which stops as a lone Nex does
(stops accepting, finishes responses in flight within ``shutdown_grace``); the supervisor
waits for all of them and exits 0.  A second SIGINT (a second Ctrl+C), or a SIGQUIT, is
passed on as :data:`~nex.process.signals.FORCE_SIGNAL` (SIGQUIT), which cuts the workers'
transfers short as it does a lone Nex's; the exit status is then 130.  It is not passed on
as SIGINT: a worker in the terminal's process group gets each Ctrl+C's SIGINT itself,
sometimes after its supervisor's SIGTERM, and counts only SIGINTs towards a second Ctrl+C.
A worker that exits otherwise is restarted at once, with a line in the error log; one that
keeps dying within :data:`QUICK_EXIT_SECONDS` of its start is restarted after a pause that
doubles up to :data:`MAX_RESTART_DELAY`.  SIGHUP reads the settings again (the same file and
command-line overrides) and replaces the workers one by one: a new worker starts and is
serving before an old one is told to stop, and the old one stops as on SIGTERM, so it
finishes the responses it has in flight and closes idle keep-alive connections.  It makes
way rather than stops, though (it is told with :data:`~nex.process.signals.RETIRE_SIGNAL`):
a connection it accepted still gets the answer to its first request, however late within
``request_head`` that comes, and its CONNECT tunnels and WebSockets drain on the old
settings until they end or reach ``tunnel_idle``.  Fewer workers than before close the
surplus listeners, resetting connections that wait in them.  Settings that fail their
checks, or that change ``bind`` or ``port``, leave the running workers alone and are
reported in one log line.  A worker whose supervisor has gone away (even by SIGKILL) stops
by itself: it watches a pipe whose other end only the supervisor holds.  SIGUSR1 (logrotate)
reopens the supervisor's log and is passed to every worker, which reopens its own.  The
supervisor, not its workers, speaks to systemd (:mod:`nex.process.systemd`): it takes the
socket systemd passed (every worker then accepts on it) and says when it is ready, reloading
and stopping.

**Caps.**  ``max_connections`` and ``max_connections_per_client`` are totals: each worker
admits its share (:func:`worker_config`).  With ``SO_REUSEPORT`` the kernel does not look at
how busy a worker is, so a worker may reach its share while another has room.
"""

from __future__ import annotations

import dataclasses
import os
import select
import signal
import socket
import sys
import time
import traceback
from typing import Callable, Dict, List, NoReturn, Optional, Tuple

from nex import SERVER_SOFTWARE
from nex.files.davlocks import LockTable
from nex.process.config import Config, ConfigError
from nex.process.log import SupervisorLog
from nex.process.listener import bind_listener, listener_url, print_lan_code, start_listening
from nex.process.signals import FORCE_SIGNAL, RETIRE_SIGNAL, ignore_signals, release_signals
from nex.process.metrics import MetricsTable, process_metrics
from nex.process.run import FORCED_EXIT, print_metrics_line
from nex.process.startup import (StartupError, bind_metrics_listener, check_startup,
                                 listen_failure, log_failure, restart_only_change)
from nex.process.worker import READY, serve_as_worker
from nex.process import systemd

#: Each worker slot has a listener of its own, with SO_REUSEPORT (Linux); else all share one.
REUSE_PORT = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
#: A worker that exits sooner than this after its start counts as failing to run.
QUICK_EXIT_SECONDS = 10.0
#: The pause before the second quick restart in a row; it doubles with each further one.
FIRST_RESTART_DELAY = 0.5
#: The longest pause between restarts of a worker that keeps failing.
MAX_RESTART_DELAY = 30.0
#: The longest a new worker may take to report that it listens.
START_TIMEOUT = 60.0

_SIGNALS = (signal.SIGINT, signal.SIGTERM, FORCE_SIGNAL, signal.SIGHUP, signal.SIGCHLD,
            signal.SIGUSR1)


def worker_config(config: Config) -> Config:
    """The settings one of ``config.workers`` workers runs with: its share of each cap.

    Each worker admits ``max_connections / workers`` connections, and
    ``max_connections_per_client / workers`` from one address, rounded down, at least 1; the
    failed-login budgets (site and proxy) are divided the same way, so that a client trying
    every worker gets no more guesses than one process would give it (0, no limit, stays).
    """
    def share(count: int) -> int:
        return max(1, count // config.workers)

    return dataclasses.replace(
        config,
        max_connections=share(config.max_connections),
        max_connections_per_client=share(config.max_connections_per_client),
        auth_max_failures_per_minute=(share(config.auth_max_failures_per_minute)
                                      if config.auth_max_failures_per_minute else 0),
        proxy_auth_failures_per_minute=(share(config.proxy_auth_failures_per_minute)
                                        if config.proxy_auth_failures_per_minute else 0))


def restart_delay(quick_exits: int) -> float:
    """Seconds to wait before restarting a worker that failed ``quick_exits`` times in a row.

    The first restart is at once; from the second, the pause doubles from
    :data:`FIRST_RESTART_DELAY` up to :data:`MAX_RESTART_DELAY`.
    """
    if quick_exits <= 1:
        return 0.0
    return min(MAX_RESTART_DELAY, FIRST_RESTART_DELAY * 2.0 ** min(quick_exits - 2, 32))


def describe_exit(status: int) -> str:
    """How a process ended, from its ``waitpid`` status: ``exited with status 1``."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exited with status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = str(-code)
    return f"was killed by signal {name}"


def supervise(config: Config, load: Callable[[], Config]) -> int:
    """Run ``config.workers`` workers until SIGINT or SIGTERM; return the exit status.

    ``load`` reads the settings again, as the command line did, and is called on SIGHUP.  A
    problem found before serving prints one ``nex:`` line and returns 2, before any worker
    starts: whatever a worker would refuse (the TLS pair, the log files, the templates, the
    users file: :func:`nex.process.startup.check_startup`), the port, the metrics port, the
    socket systemd passed.  The line is the one a lone Nex prints.
    """
    try:
        check_startup(config)
        activated = systemd.activated_listener()
    except (StartupError, systemd.ActivationError) as error:
        print(f"nex: {error}", file=sys.stderr)
        return 2
    try:
        first = activated if activated is not None else _first_listener(config)
    except OSError as error:
        print(f"nex: {listen_failure(config.bind, config.port, error)}", file=sys.stderr)
        return 2
    try:
        scrapes = bind_metrics_listener(config)
    except StartupError as error:
        print(f"nex: {error}", file=sys.stderr)
        first.close()
        return 2
    try:
        log = SupervisorLog(config.error_log)
    except OSError as error:
        print(f"nex: {log_failure(config, error)}", file=sys.stderr)
        first.close()
        if scrapes is not None:
            scrapes.close()
        return 2
    return Supervisor(config, load, first, log, activated=activated is not None,
                      scrapes=scrapes).run()


def _first_listener(config: Config) -> socket.socket:
    """The first listener: it alone decides whether the port is free, and picks port 0."""
    if not REUSE_PORT:
        return bind_listener(config)
    listener = bind_listener(config, listen=False)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        start_listening(listener, config.backlog)
    except OSError:
        listener.close()
        raise
    return listener


@dataclasses.dataclass
class _Slot:
    """One of the N places a worker runs in, and the worker in it now."""

    number: int
    pid: int = 0  # 0: no worker runs in this slot now
    started: float = 0.0
    quick_exits: int = 0
    restart_at: Optional[float] = None


class Supervisor:
    """Starts, watches, restarts and replaces the worker processes (see the module)."""

    def __init__(self, config: Config, load: Callable[[], Config], first: socket.socket,
                 log: SupervisorLog, *, activated: bool = False,
                 scrapes: Optional[socket.socket] = None) -> None:
        self._config = config
        self._activated = activated  # first came from systemd: every worker accepts on it
        self._scrapes = scrapes  # the metrics port, if any: every worker accepts on it
        self._load = load
        #: The listener of each slot in turn (slot 1 first); one shared by all without
        #: SO_REUSEPORT.
        self._listeners = [first]
        #: The port every listener binds: the configured one, or the one port 0 picked.
        self._port: int = first.getsockname()[1]
        self._log = log
        #: Every worker's counters, and the row of each worker by pid (nex.process.metrics).
        self._metrics = MetricsTable()
        #: The WebDAV locks every worker shares, made once settings first take them.
        self._locks: Optional[LockTable] = None
        self._rows: Dict[int, int] = {}
        self._slots = [_Slot(number) for number in range(1, config.workers + 1)]
        #: Workers told to stop after a reload, by pid, with their slot number.
        self._retiring: Dict[int, int] = {}
        self._stopping = False
        #: A second SIGINT came (to this process, or to a worker that exited 130).
        self._forced = False
        #: The workers were told to stop at once (FORCE_SIGNAL passed on).
        self._cut_short = False
        self._wakeup_read, self._wakeup_write = os.pipe()
        #: Only the supervisor holds the write end: workers see end-of-file once it is gone.
        self._lifeline_read, self._lifeline_write = os.pipe()

    def run(self) -> int:
        """Start the workers, print the start-up line, supervise until stopped; exit status."""
        previous = self._catch_signals()
        try:
            for slot in self._slots:
                failure = self._fill(slot, self._config)
                if failure:
                    print(f"nex: worker {slot.number} {failure}", file=sys.stderr, flush=True)
                    self._stop()
                    self._wait_for_every_worker()
                    return 2
            url = listener_url(self._listeners[0], https=bool(self._config.tls_certificate))
            print(f"{SERVER_SOFTWARE} serving {self._config.document_root} at {url} with "
                  f"{len(self._slots)} workers (Ctrl+C stops)", flush=True)
            print_lan_code(self._listeners[0], https=bool(self._config.tls_certificate))
            print_metrics_line(self._scrapes, self._config)
            systemd.notify("READY=1", f"STATUS=serving with {len(self._slots)} workers")
            self._supervise()
            self._log.info(f"{SERVER_SOFTWARE} stopped")
            return FORCED_EXIT if self._forced else 0
        finally:
            # Nex is on its way out: a late Ctrl+C must not raise in what is left.
            signal.signal(signal.SIGCHLD, previous[signal.SIGCHLD])
            ignore_signals(sig for sig in previous if sig != signal.SIGCHLD)
            signal.set_wakeup_fd(-1)
            for fd in (self._wakeup_read, self._wakeup_write, self._lifeline_read,
                       self._lifeline_write):
                os.close(fd)
            for listener in self._listeners + ([self._scrapes] if self._scrapes else []):
                listener.close()
            self._log.close()

    # --- the loop ------------------------------------------------------------------------

    def _catch_signals(self) -> Dict[int, object]:
        """Route the signals into the wake-up pipe; return the handlers they had."""
        os.set_blocking(self._wakeup_read, False)
        os.set_blocking(self._wakeup_write, False)
        signal.set_wakeup_fd(self._wakeup_write)
        previous = {sig: signal.signal(sig, _note_signal) for sig in _SIGNALS}
        release_signals()
        return previous

    def _supervise(self) -> None:
        """Act on signals and due restarts until stopped and every worker has exited."""
        while not (self._stopping and not self._worker_pids()):
            timeout = self._next_restart()
            select.select([self._wakeup_read], [], [], timeout)
            signals = self._take_signals()
            if signal.SIGUSR1 in signals:  # the logs were rotated: every process reopens
                self._log.reopen()
                for pid in self._worker_pids():
                    _signal(pid, signal.SIGUSR1)
            interrupts = signals.count(signal.SIGINT)
            if (FORCE_SIGNAL in signals or (interrupts and (self._stopping or interrupts > 1))
                    ) and not self._cut_short:
                self._forced = self._cut_short = True
                self._stop()
                for pid in self._worker_pids():
                    _signal(pid, FORCE_SIGNAL)
            elif interrupts or signal.SIGTERM in signals:
                self._stop()
            # Reaped only now: a worker that a terminal's Ctrl+C stopped before this
            # process saw its own is not restarted.
            self._reap()
            if signal.SIGHUP in signals and not self._stopping:
                systemd.notify(*systemd.reloading_lines("reloading the settings"))
                self._reload()
                systemd.notify("READY=1", f"STATUS=serving with {len(self._slots)} workers")
            self._restart_due()

    def _take_signals(self) -> bytes:
        """The signals that arrived since the last call, in order (their numbers fill the
        pipe)."""
        received = bytearray()
        while True:
            try:
                chunk = os.read(self._wakeup_read, 512)
            except BlockingIOError:
                break
            if not chunk:
                break
            received += chunk
        return bytes(received)

    def _next_restart(self) -> Optional[float]:
        """Seconds until the next restart is due; None when none is waiting."""
        due = [slot.restart_at for slot in self._slots if slot.restart_at is not None]
        if not due or self._stopping:
            return None
        return max(0.0, min(due) - time.monotonic())

    def _worker_pids(self) -> List[int]:
        return [slot.pid for slot in self._slots if slot.pid] + list(self._retiring)

    def _reap(self) -> None:
        """Collect every worker that exited, and plan the restart of those that should run."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._exited(pid, status)

    def _exited(self, pid: int, status: int) -> None:
        self._metrics.give_back(self._rows.pop(pid, 0))
        if pid in self._retiring:
            number = self._retiring.pop(pid)
            if os.waitstatus_to_exitcode(status) == FORCED_EXIT and self._stopping:
                self._forced = True
            elif os.waitstatus_to_exitcode(status) != 0:
                self._log.warning(f"replaced worker {number} (pid {pid}) "
                                  f"{describe_exit(status)}")
            return
        slot = next((slot for slot in self._slots if slot.pid == pid), None)
        if slot is None:
            return
        slot.pid = 0
        if self._stopping:
            if os.waitstatus_to_exitcode(status) == FORCED_EXIT:
                self._forced = True  # a second Ctrl+C reached the worker first
            elif os.waitstatus_to_exitcode(status) != 0:
                self._log.warning(f"worker {slot.number} (pid {pid}) {describe_exit(status)} "
                                  "while stopping")
            return
        self._plan_restart(slot, f"worker {slot.number} (pid {pid}) {describe_exit(status)}")

    def _plan_restart(self, slot: _Slot, what: str) -> None:
        """Log ``what`` happened to the slot's worker and when a new one starts."""
        now = time.monotonic()
        if slot.started and now - slot.started >= QUICK_EXIT_SECONDS:
            slot.quick_exits = 0
        slot.quick_exits += 1
        self._metrics.count_restart()
        delay = restart_delay(slot.quick_exits)
        slot.restart_at = now + delay
        when = f"in {delay:g} s" if delay else "now"
        self._log.warning(f"{what}; restarting it {when}")

    def _restart_due(self) -> None:
        if self._stopping:
            return
        for slot in self._slots:
            if slot.restart_at is not None and slot.restart_at <= time.monotonic():
                failure = self._fill(slot, self._config)
                if failure:
                    self._plan_restart(slot, f"worker {slot.number} {failure}")

    def _stop(self) -> None:
        """Tell every worker to stop; no more restarts."""
        if self._stopping:
            return
        self._stopping = True
        systemd.notify("STOPPING=1", "STATUS=stopping: the workers finish the responses in flight")
        for slot in self._slots:
            slot.restart_at = None
        for pid in self._worker_pids():
            _signal(pid, signal.SIGTERM)

    def _wait_for_every_worker(self) -> None:
        while self._worker_pids():
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return
            self._exited(pid, status)

    # --- starting and replacing workers --------------------------------------------------

    def _fill(self, slot: _Slot, config: Config) -> str:
        """Start a worker in the empty ``slot``; return why it failed, or "" once it listens.

        A failed start counts as a quick exit, so repeated failures back off.
        """
        slot.restart_at, slot.started = None, time.monotonic()
        slot.pid, failure = self._spawn(config, slot.number)
        return failure

    def _reload(self) -> None:
        """SIGHUP: re-read the settings and replace the workers one by one."""
        try:
            config = self._load()
            check_startup(config)
        except (ConfigError, StartupError) as error:
            self._log.warning(f"settings not reloaded, the workers keep theirs: {error}")
            return
        change = restart_only_change(self._config, config)
        if change is not None:
            self._log.warning(f"settings not reloaded, the workers keep theirs: {change}")
            return
        try:  # opened again even under the same name, so that a rotated log is let go
            log = SupervisorLog(config.error_log)
        except OSError as error:
            self._log.warning(f"settings not reloaded, the workers keep theirs: "
                              f"{log_failure(config, error)}")
            return
        self._log.close()
        self._log = log
        self._config = config
        while len(self._slots) > config.workers:
            slot = self._slots.pop()
            if slot.pid:
                self._retire(slot)
            if REUSE_PORT and len(self._listeners) > len(self._slots):
                self._listeners.pop().close()
        for listener in self._listeners:
            start_listening(listener, config.backlog)
        for slot in self._slots:
            if not slot.pid:
                failure = self._fill(slot, config)
                if failure:
                    self._plan_restart(slot, f"worker {slot.number} {failure}")
                continue
            pid, failure = self._spawn(config, slot.number)
            if not pid:
                self._log.warning(f"worker {slot.number} (pid {slot.pid}) keeps the settings "
                                  f"it has: its replacement {failure}")
                continue
            self._retire(slot)
            slot.pid, slot.started = pid, time.monotonic()
        while len(self._slots) < config.workers:
            slot = _Slot(len(self._slots) + 1)
            self._slots.append(slot)
            failure = self._fill(slot, config)
            if failure:
                self._plan_restart(slot, f"worker {slot.number} {failure}")
        self._log.info(f"settings reloaded: {config.workers} workers")

    def _retire(self, slot: _Slot) -> None:
        """Let the slot's worker finish its responses and its tunnels and exit, with nothing
        to replace it (RETIRE_SIGNAL; stopping Nex then cuts the tunnels with SIGTERM)."""
        self._retiring[slot.pid] = slot.number
        _signal(slot.pid, RETIRE_SIGNAL)
        slot.pid = 0

    def _spawn(self, config: Config, number: int) -> Tuple[int, str]:
        """Fork worker ``number`` and wait until it serves: ``(pid, "")``, or ``(0, why not)``."""
        try:
            listener = self._listener(number, config)
        except OSError as error:
            return 0, f"could not start: {listen_failure(config.bind, self._port, error)}"
        if config.webdav == "write" and self._locks is None:
            try:
                self._locks = LockTable.shared()
            except OSError as error:
                return 0, f"could not start: cannot make the WebDAV lock table: {error.strerror}"
        report_read, report_write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        # Signals wait until the child has its own handlers: a signal meant for a worker must
        # not run the supervisor's handler in it and land in the supervisor's pipe.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        row = self._metrics.take_row()
        try:
            pid = os.fork()
        except OSError as error:
            self._metrics.give_back(row)
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            os.close(report_read)
            os.close(report_write)
            return 0, f"could not start: {error.strerror}"
        if pid == 0:
            os.close(report_read)
            self._become_worker(worker_config(config), listener, report_write, blocked, row)
        self._rows[pid] = row
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(report_write)
        try:
            report = _read_report(report_read, START_TIMEOUT)
        finally:
            os.close(report_read)
        if report == READY:
            self._log.info(f"worker {number} started (pid {pid})")
            return pid, ""
        if report is None:
            _signal(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        self._metrics.give_back(self._rows.pop(pid))
        if report:
            return 0, f"could not start: {report.decode('utf-8', 'replace')}"
        if report is None:
            return 0, f"did not start within {START_TIMEOUT:g} s"
        return 0, f"{describe_exit(status)} before it was ready"

    def _listener(self, number: int, config: Config) -> socket.socket:
        """The listener of slot ``number``, bound now for a slot that is new."""
        if not REUSE_PORT or self._activated:
            return self._listeners[0]
        while len(self._listeners) < number:
            self._listeners.append(
                bind_listener(dataclasses.replace(config, port=self._port), reuse_port=True))
        return self._listeners[number - 1]

    def _become_worker(self, config: Config, listener: socket.socket, report: int,
                       blocked: object, row: int) -> NoReturn:
        """In the new child: drop the supervisor's part, serve, and exit with the status."""
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGINT, signal.SIGTERM, FORCE_SIGNAL, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # until the worker's logger is up
            os.environ.pop("NOTIFY_SOCKET", None)  # only the supervisor speaks to systemd
            for fd in (self._wakeup_read, self._wakeup_write, self._lifeline_write):
                os.close(fd)
            self._log.close()
            for other in self._listeners:
                if other is not listener:
                    other.close()
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # type: ignore[arg-type]
            status = serve_as_worker(config, listener, report, self._lifeline_read,
                                      shared=self._activated or not REUSE_PORT,
                                      metrics=process_metrics(config, self._metrics, row),
                                      scrapes=self._scrapes, locks=self._locks)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(status)


def _read_report(fd: int, timeout: float) -> Optional[bytes]:
    """All a new worker wrote before it closed the pipe; None if it took over ``timeout``."""
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        readable, _, _ = select.select([fd], [], [], remaining)
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # already exited; the loop reaps it


def _note_signal(signum: int, frame: object) -> None:
    """The handler of the supervisor's signals: their numbers reach the loop by the pipe."""
