"""Start-up: what a server process loads before it serves, each failure as one line.

A lone Nex and every worker load the TLS pair (:func:`load_tls`), open their logs
(:func:`open_logger`), assemble the dispatcher (:func:`dispatcher_for`) and bind the
metrics port (:func:`bind_metrics_listener`) through these functions, in
:func:`nex.process.run.run_server`.  The supervisor makes the very same loads through
:func:`check_startup` before it starts any worker, and drops what they made; so settings a
lone Nex refuses stop ``workers = N`` with the same line and exit status 2, and no worker
is started for them.  ``--check-config`` makes them too.  Every failure is a
:class:`StartupError` whose message is the line Nex prints after ``nex:``.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from nex.files.templates import TemplateError
from nex.process.assembly import assemble
from nex.process.config import Config, ConfigError
from nex.process.listener import bind_listener
from nex.process.log import Logger, open_log_file
from nex.process.metrics import Metrics
from nex.process.tls import ServerTLS, TLSError
from nex.site.routing import Dispatcher

if TYPE_CHECKING:
    from nex.files.davlocks import LockTable
    from nex.proxy.figures import Tally


#: The settings a reload leaves as they are: the listening socket is bound once.
RESTART_ONLY = ("bind", "port")


class StartupError(Exception):
    """Nex cannot serve with these settings; the message is the one line saying why."""


def restart_only_change(old: Config, new: Config, names: Sequence[str] = RESTART_ONLY
                        ) -> Optional[str]:
    """Why ``new`` cannot be taken up by a reload of ``old``: the line naming the first of
    ``names`` it changes; None when it changes none."""
    for name in names:
        if getattr(new, name) != getattr(old, name):
            return f"{name} changes only when Nex restarts"
    return None


def load_tls(config: Config) -> Optional[ServerTLS]:
    """The TLS pair the settings name; None for plain HTTP."""
    if not config.tls_certificate:
        return None
    try:
        return ServerTLS(config.tls_certificate, config.tls_key)
    except TLSError as error:
        raise StartupError(str(error)) from None


def open_logger(config: Config, metrics: Optional[Metrics] = None) -> Logger:
    """The logger for ``config``, counting the lines it drops in ``metrics``."""
    try:
        logger = Logger.from_config(config)
    except OSError as error:
        raise log_failure(config, error) from None
    if metrics is not None:
        logger.on_drop = metrics.log_line_dropped
    return logger


def log_failure(config: Config, error: OSError) -> StartupError:
    """The line for a log file of ``config`` that ``error`` kept from opening."""
    key = "access_log" if error.filename == config.access_log else "error_log"
    return StartupError(f"[logging] {key} = {error.filename}: cannot open it: "
                        f"{error.strerror}")


def dispatcher_for(config: Config, port: int, on_error: Callable[[str], None],
                   locks: Optional[LockTable] = None,
                   tally: Optional[Tally] = None) -> Dispatcher:
    """The dispatcher for ``config`` on ``port`` (:func:`nex.process.assembly.assemble`)."""
    try:
        return assemble(config, port, on_error=on_error, locks=locks, tally=tally)
    except (TemplateError, ConfigError) as error:
        raise StartupError(str(error)) from None


def listen_failure(bind: str, port: int, error: OSError) -> StartupError:
    """The line for a listener on ``bind`` and ``port`` that ``error`` kept from binding."""
    return StartupError(f"cannot listen on {bind} port {port}: {error.strerror}")


def bind_metrics_listener(config: Config) -> Optional[socket.socket]:
    """The listener of the separate metrics port, when metrics are on and have one."""
    if not config.metrics_enabled or config.metrics_port is None:
        return None
    try:
        return bind_listener(dataclasses.replace(config, bind=config.metrics_bind,
                                                 port=config.metrics_port))
    except OSError as error:
        raise StartupError(f"cannot listen for metrics on {config.metrics_bind} port "
                           f"{config.metrics_port}: {error.strerror}") from None


def check_startup(config: Config, *, create_logs: bool = True) -> None:
    """Load what a server process loads before serving ``config``, and let it go again:
    the TLS pair, the log files (opened and closed; a missing one is not created without
    ``create_logs``) and the dispatcher with its templates, users file and proxy rules.

    Raises :class:`StartupError` with the line a lone Nex would fail with.  Nothing is
    bound, and no thread is left running.
    """
    load_tls(config)
    for path in (config.access_log, config.error_log):
        if path == "-" or not (create_logs or os.path.lexists(path)):
            continue
        try:
            os.close(open_log_file(path, create=create_logs))
        except OSError as error:
            raise log_failure(config, error) from None
    # Dropped at once, the dispatcher never re-reads a file, so nothing reaches on_error.
    dispatcher_for(config, config.port, on_error=lambda line: None)
