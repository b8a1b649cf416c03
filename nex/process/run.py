"""The one start path of a server process: a lone Nex and every worker of a supervisor.

:func:`run_server` loads what the settings name (TLS pair, log files, templates), listens
(or takes a worker's listener), logs the cleartext-password warning, serves until SIGINT or
SIGTERM, and returns the exit status: 0 after a graceful stop, 130 when a second Ctrl+C cut
it short (one line, no traceback), 2 when it cannot start.

**Reload.**  Given ``load`` (a lone Nex), SIGHUP reads the settings again, as the supervisor
does for its workers: a new :class:`Server` with the new settings, templates, log files and
TLS pair takes over the listener, and the old one is retired as a replaced worker is: it
finishes its responses in flight within ``shutdown_grace``, answers the first request of
each connection it accepted, closes idle keep-alive connections, then closes its logs.
Settings that fail their checks, or that change ``bind``, ``port`` or ``workers``, leave the
running server alone, with one line in the error log.  A TLS pair that does not load leaves
the previous pair serving (one line), and the other settings apply.  Workers get no
``load``: their supervisor replaces them instead.

**systemd and logs.**  A lone Nex serves on the socket systemd passed, if any, and tells
systemd when it is ready, reloading (and ready again) and stopping (:mod:`nex.process.systemd`;
a worker's supervisor does that for all).  SIGUSR1 reopens the current server's log files
after logrotate moved them.  With ``[metrics]`` on, each server counts in its process's row
of the metrics table, across reloads, and the separate metrics port, when set, is served by
a thread until the process ends.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple

from nex import SERVER_SOFTWARE
from nex.process.config import Config, ConfigError
from nex.process import systemd
from nex.process.listener import ForceStop, Server, listener_url, start_listening
from nex.process.signals import FORCE_SIGNAL, RETIRE_SIGNAL, ignore_signals, release_signals
from nex.process.log import Logger
from nex.process.metrics import Metrics, MetricsTable, process_metrics, start_scrape_server
from nex.process.startup import (RESTART_ONLY, StartupError, bind_metrics_listener,
                                 dispatcher_for, listen_failure, load_tls, open_logger,
                                 restart_only_change)
from nex.process.tls import ServerTLS, TLSError
from nex.site.login import cleartext_warning

if TYPE_CHECKING:
    from nex.files.davlocks import LockTable

#: Exit status after a second SIGINT, as a shell reports a process SIGINT ended (128 + 2).
FORCED_EXIT = 130


def _say(line: str) -> None:
    print(f"nex: {line}", file=sys.stderr, flush=True)


def run_server(config: Config, *, ready: Callable[[Server], None],
               listener: Optional[socket.socket] = None,
               load: Optional[Callable[[], Config]] = None,
               fail: Callable[[str], None] = _say, shared: bool = False,
               metrics: Optional[Metrics] = None,
               scrapes: Optional[socket.socket] = None,
               locks: Optional[LockTable] = None) -> int:
    """Serve ``config`` from the main thread until stopped; return the exit status.

    ``ready(server)`` is called once the server listens and signals would stop it.  A
    worker passes its ``listener`` (``shared`` when other workers accept on it too), its
    ``metrics``, the metrics port's listener ``scrapes`` and the WebDAV lock table ``locks``
    all workers share; without a listener this is a lone Nex, which takes the socket systemd
    passed or binds its own, and keeps its own metrics and locks.  ``load`` reads the
    settings again on SIGHUP (None, for a worker: SIGHUP is left as it is, and RETIRE_SIGNAL
    stops the server leaving its tunnels to drain).  A
    problem found before serving is passed to ``fail`` as one line (by default printed as
    ``nex: ...``) and gives status 2.
    """
    lone = listener is None
    threading.stack_size(config.thread_stack_size)  # 0: the platform's default
    try:
        tls = load_tls(config)
        if lone:
            listener = systemd.activated_listener()
    except (StartupError, systemd.ActivationError) as error:
        fail(str(error))
        return 2
    table = MetricsTable(1) if lone else None
    if table is not None:
        metrics = process_metrics(config, table, 1)
    try:
        logger = open_logger(config, metrics)
    except StartupError as error:
        fail(str(error))
        return 2
    try:
        server = _server(config, logger, listener, tls, shared, metrics, locks,
                         supervised=not lone)
    except StartupError as error:
        logger.close()
        fail(str(error))
        return 2
    except OSError as error:
        logger.close()
        fail(str(listen_failure(config.bind, config.port, error)))
        return 2
    if lone:
        try:
            scrapes = bind_metrics_listener(config)
        except StartupError as error:
            server.listener.close()
            logger.close()
            fail(str(error))
            return 2
    warning = cleartext_warning(config)
    if warning is not None:
        logger.warning(warning)
    current = [server]  # the server the signal handlers act on
    # A lone Nex reloads on SIGHUP; a worker is retired by its supervisor.  Either stops at
    # once on FORCE_SIGNAL: a worker from its supervisor, a lone Nex from an operator.
    handled = [signal.SIGINT, signal.SIGTERM, FORCE_SIGNAL] + (
        [signal.SIGHUP] if load else [RETIRE_SIGNAL])
    for sig in handled:
        signal.signal(sig, lambda signum, frame: _on_signal(current[0], signum, frame, lone))
    # Reopening takes no lock, so it runs in the handler itself.
    signal.signal(signal.SIGUSR1, lambda signum, frame: current[0].logger.reopen())
    handled.append(signal.SIGUSR1)
    release_signals()
    wakeup, woken = os.pipe()
    os.set_blocking(wakeup, False)
    os.set_blocking(woken, False)
    signal.set_wakeup_fd(woken)
    retiring: List[Tuple[threading.Thread, Server]] = []
    status = 0
    done = threading.Event()  # ends the metrics port's thread, which outlives reloads
    scraper = start_scrape_server(scrapes, metrics, done)
    try:
        ready(server)
        if lone:
            print_metrics_line(scrapes, config)
            _notify_ready(server)
        while True:
            server = current[0]
            server.serve_forever(wakeup)
            if server.stopped or load is None:
                break
            if server.stopping.is_set():
                continue  # a stop came as the loop ended for a reload: it stops as usual
            systemd.notify(*systemd.reloading_lines("reloading the settings"))
            current[0] = _reloaded(server, load, retiring, table)
            current[0].carry_stop_from(server)  # what reached it until the switch
            _notify_ready(current[0])
    except ForceStop:
        print("stopping now", file=sys.stderr, flush=True)
        status = FORCED_EXIT
    finally:
        # Nex is on its way out: a later Ctrl+C must not raise in what is left.
        ignore_signals(handled)
        signal.set_wakeup_fd(-1)
        os.close(wakeup)
        os.close(woken)
        if status == 0:
            for thread, old in retiring:
                old.cut_tunnels()  # stopping Nex ends the tunnels a reload left to drain
                thread.join()
        done.set()
        if scraper is not None:
            scraper.join()
        if lone and scrapes is not None:
            scrapes.close()
        logger = current[0].logger
        if lone:  # a worker's supervisor logs the stop once for all
            logger.message(f"{SERVER_SOFTWARE} stopped")
        logger.close()
    return status


def _on_signal(server: Server, signum: int, frame: Optional[object], lone: bool) -> None:
    if signum == signal.SIGHUP:
        server.request_reload()
        return
    if lone and not server.stopping.is_set() and signum != RETIRE_SIGNAL:
        systemd.notify("STOPPING=1", "STATUS=stopping: finishing the responses in flight")
    server.handle_signal(signum, frame)


def _notify_ready(server: Server) -> None:
    """Tell systemd that Nex serves (nothing is sent when systemd did not start it)."""
    systemd.notify("READY=1", f"STATUS=serving at {server.urls()[0]}")


def print_metrics_line(scrapes: Optional[socket.socket], config: Config) -> None:
    """Tell the user where the separate metrics port serves the metrics."""
    if scrapes is not None:
        print(f"  metrics at {listener_url(scrapes)}{config.metrics_path[1:]}", flush=True)


def _server(config: Config, logger: Logger, listener: Optional[socket.socket],
            tls: Optional[ServerTLS], shared: bool, metrics: Optional[Metrics],
            locks: Optional[LockTable] = None, *, supervised: bool = False) -> Server:
    """A server for ``config`` whose dispatcher is assembled once the port is known (a
    worker's is ``supervised``)."""
    tally = None if metrics is None else metrics.proxy_tally()
    return Server(config,
                  lambda port: dispatcher_for(config, port, logger.warning, locks, tally),
                  logger, listener, tls, shared=shared, metrics=metrics, supervised=supervised)


def _reloaded(old: Server, load: Callable[[], Config],
              retiring: List[Tuple[threading.Thread, Server]],
              table: Optional[MetricsTable] = None) -> Server:
    """SIGHUP: the server for the settings read again, or ``old`` when they cannot serve.

    ``old`` is retired in a thread added to ``retiring``; the new server takes its listener
    and its WebDAV locks, and counts on in the process's row of the metrics ``table``.
    """
    old.reload_requested = False
    refused = "settings not reloaded, Nex keeps the running ones: "
    try:
        config = load()
    except ConfigError as error:
        old.logger.warning(refused + str(error))
        return old
    # A lone Nex cannot become a supervisor.
    change = restart_only_change(old.config, config, (*RESTART_ONLY, "workers"))
    if change is not None:
        old.logger.warning(refused + change)
        return old
    tls = _reloaded_tls(old, config)
    metrics = None if table is None else process_metrics(config, table, 1)
    try:
        logger = open_logger(config, metrics)
    except StartupError as error:
        old.logger.warning(refused + str(error))
        return old
    # The WebDAV locks clients hold outlive the reload (a worker's are the supervisor's).
    dav = old.dispatcher.dav
    try:
        new = _server(config, logger, old.listener, tls, old.shared, metrics,
                      None if dav is None else dav.locks)
    except StartupError as error:
        logger.close()
        old.logger.warning(refused + str(error))
        return old
    start_listening(new.listener, config.backlog)
    threading.stack_size(config.thread_stack_size)
    logger.message("settings reloaded")
    new.reload_requested = old.reload_requested  # another SIGHUP came meanwhile
    new.carry_stop_from(old)  # SIGINT or SIGTERM came meanwhile, to the old server
    thread = threading.Thread(target=_retire, args=(old,), name="retiring-server", daemon=True)
    thread.start()
    retiring[:] = [earlier for earlier in retiring if earlier[0].is_alive()] + [(thread, old)]
    return new


def _reloaded_tls(old: Server, config: Config) -> Optional[ServerTLS]:
    """The TLS pair for ``config`` read again (the running one re-reads its files when they
    are the same); the running one, unchanged, when the new pair does not load."""
    if not config.tls_certificate:
        return None
    tls = old.tls
    try:
        if tls is not None and (tls.certificate, tls.key) == (config.tls_certificate,
                                                              config.tls_key):
            tls.reload()
        else:
            tls = ServerTLS(config.tls_certificate, config.tls_key)
    except TLSError as error:
        old.logger.warning(f"TLS certificate not reloaded; the previous one stays: {error}")
        return old.tls
    old.logger.message(f"TLS certificate reloaded from {tls.certificate} "
                       f"(SHA-256 {tls.fingerprint})")
    return tls


def _retire(server: Server) -> None:
    server.retire()
    server.logger.close()
