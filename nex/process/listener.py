"""The listener: binds the socket, accepts clients and runs one worker thread per connection.

A connection is handed to a parked thread of the server's :class:`ThreadPool` when one
waits, so that no thread is started per connection under load, and counted among the
:class:`Newcomers` until it is under way, so that a burst of clients is answered at once
rather than the first few hundred of it.

A cap on live connections (and on connections per client address) keeps the thread count
bounded: a client past a cap gets a short ``503``/``429`` page at once and is closed, without
a thread (over HTTPS it is closed without the page, which would need a handshake).  SIGINT
and SIGTERM stop accepting, wake idle keep-alive connections and give in-flight responses
``shutdown_grace`` seconds to finish; a second Ctrl+C cuts them short.  A reload (SIGHUP)
ends the accept loop without stopping, so that :func:`nex.process.run.run_server` can hand
the listener to a new server and :meth:`Server.retire` this one.  A retired server (and a
worker that gets :data:`RETIRE_SIGNAL`, SIGUSR2, which the supervisor sends a worker it
replaces on reload) stops the same way, except that a connection it accepted still gets
the answer to its first request, and CONNECT tunnels and WebSockets are left to drain on
the old settings until they end or reach ``tunnel_idle``, as squid's reconfigure leaves
them, though no new one opens (:func:`~nex.process.states.refuse_new_tunnel`); a SIGINT or
SIGTERM then cuts them.  With a trusted proxy's PROXY protocol header, the client it
carries is the one counted against the per-client cap.
"""

from __future__ import annotations

import ipaddress
import os
import select
import signal
import socket
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Set, Tuple

from nex import SERVER_SOFTWARE, qrcode
from nex.addresses import plain_address
from nex.process.config import Config
from nex.process.connection import Connection
from nex.site.routing import Dispatcher
from nex.http.errors import HTTPError
from nex.process.interfaces import lan_address, local_addresses
from nex.process.log import Logger
from nex.process.metrics import Metrics
from nex.process.newcomers import Newcomers
from nex.process.signals import FORCE_SIGNAL, RETIRE_SIGNAL, STOP_SIGNALS
from nex.process.states import StopFlag
from nex.files.oserrors import OUT_OF_RESOURCES
from nex.process.pool import ThreadPool
from nex.process.tls import ServerTLS

_RETRY_AFTER_SECONDS = "5"
_REFUSALS = {503: "The server is at its connection limit (max_connections); try again"
                  " shortly.",
             429: "Too many connections from your address (max_connections_per_client);"
                  " close some and try again."}
#: The reason each refusal is logged with: the setting whose cap was reached.
_REFUSAL_TOKENS = {503: "max_connections", 429: "max_connections_per_client"}
#: How long cut transfers get to log their lines after the grace period.
_ABORT_WAIT_SECONDS = 2.0
_WAKE_INTERVAL_SECONDS = 0.5
_ACCEPT_RETRY_SECONDS = 0.05
#: Whether accepted sockets share the (non-blocking) listener's O_NONBLOCK: BSDs and macOS,
#: not Linux.
_ACCEPTED_INHERIT_NONBLOCKING = not sys.platform.startswith("linux")
#: Thread names number clients by address; the table restarts past this many addresses.
_MAX_NUMBERED_CLIENTS = 65536
class _Stop(Exception):
    """Raised in the main thread by the signal handler to end the accept loop."""


class ForceStop(Exception):
    """Raised in the main thread by a second Ctrl+C: stop without waiting for transfers."""


class Server:
    """One listening socket and the worker threads of its connections.

    ``dispatcher`` answers the requests; it is built once the port is known (page footers
    name it) by ``make_dispatcher(port)``.  The server listens on ``listener`` when one is
    given (a worker process of several, or a socket systemd passed), else on a new socket
    bound per ``config``; ``shared`` says that other processes accept on ``listener`` too.
    With ``tls`` every connection speaks HTTPS.  ``metrics`` counts connections and requests.
    A ``supervised`` server is a worker's: its supervisor passes signals on to it (see
    :meth:`handle_signal`).
    """

    def __init__(self, config: Config, make_dispatcher: Callable[[int], Dispatcher],
                 logger: Logger, listener: Optional[socket.socket] = None,
                 tls: Optional[ServerTLS] = None, *, shared: bool = False,
                 metrics: Optional[Metrics] = None, supervised: bool = False) -> None:
        self.config = config
        self.metrics = metrics
        #: Whether other processes accept on the listener too (a reloaded server's as well);
        #: else it is a lone server's own, or a worker's on Linux, where each worker has one
        #: (SO_REUSEPORT).
        self.shared = shared
        self.tls = tls
        self._logger = logger
        self.listener = listener if listener is not None else bind_listener(config)
        # Clients are accepted once the poll reports one, without blocking: a blocking
        # accept() could wait on a listener other processes share.
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        try:
            self.dispatcher: Dispatcher = make_dispatcher(self.port)
        except BaseException:
            if listener is None:  # a listener handed over stays its owner's
                self.listener.close()
            raise
        self.stopping = StopFlag()
        #: Whether the stop makes way for a reload's server (retired, RETIRE_SIGNAL): tunnels
        #: are left to end on their own, and new connections to send their first request.
        self._making_way = False
        #: Set by :meth:`request_reload`: the accept loop ends, the connections go on.
        self.reload_requested = False
        self._supervised = supervised
        #: A SIGINT or SIGTERM came (a reload's new server takes it over).
        self._stop_signalled = False
        #: A stop came that makes the next SIGINT a second Ctrl+C (see :meth:`handle_signal`).
        self._pressed = False
        self._forced = False
        #: :meth:`serve_forever` has returned: a second Ctrl+C has nothing left to cut short,
        #: and must not raise in what the process does on its way out.
        self._finished = False
        #: :meth:`_shut_down` has run: the server has stopped for good (not only ended its
        #: accept loop for a reload).
        self.stopped = False
        self._in_accept = False
        self._lock = threading.Lock()
        #: Notified each time a connection ends.
        self._ended = threading.Condition(self._lock)
        #: Each live connection; a thread of the pool serves it.
        self._live: Set[Connection] = set()
        self._pool = ThreadPool()
        #: Connections admitted and not yet under way, which answered ones make way for.
        self._newcomers = Newcomers()
        self._per_client: Dict[str, int] = {}
        self._client_numbers: Dict[str, int] = {}

    @property
    def logger(self) -> Logger:
        """The logger of this server's connections."""
        return self._logger

    def urls(self) -> List[str]:
        """URLs that reach this server, the most local first.

        A wildcard address (``0.0.0.0``, ``::``) is no place to browse to: it stands for
        loopback and for each address of the machine's interfaces, which are listed.
        """
        host = self.listener.getsockname()[0]
        hosts = [host]
        if host in ("0.0.0.0", "::"):
            hosts = local_addresses(ipv6=host == "::")
        scheme = "http" if self.tls is None else "https"
        return [f"{scheme}://[{name}]:{self.port}/" if ":" in name else
                f"{scheme}://{name}:{self.port}/" for name in hosts]

    def serve_forever(self, wakeup: Optional[int] = None) -> None:
        """Accept clients until a signal (or :meth:`stop`) ends the loop, then stop; after
        :meth:`request_reload` return instead, still serving the connections it has.

        ``wakeup`` is the read end of the pipe ``signal.set_wakeup_fd`` writes to: a signal
        that reaches another thread, or comes just before the wait starts, would otherwise
        leave the wait asleep until the next client.
        """
        self._finished = False  # again, after a reload that kept this server
        waiting = select.poll()
        waiting.register(self.listener, select.POLLIN)
        if wakeup is not None:
            waiting.register(wakeup, select.POLLIN)
        try:
            while True:
                # A signal raises _Stop only while this flag is up: while waiting for a
                # client, never once accept() has taken one (its socket would be lost).
                self._in_accept = True
                if self.stopping.is_set() or self.reload_requested:
                    break
                events = waiting.poll()
                self._in_accept = False
                if wakeup is not None and any(fd == wakeup for fd, _ in events):
                    _drain(wakeup)
                    continue  # the signal's handler has run, or runs now
                try:
                    sock, address = self.listener.accept()
                    accepted = time.monotonic()
                except BlockingIOError:
                    continue  # another process sharing the listener took the client
                except OSError as error:
                    if self.stopping.is_set():
                        break
                    # Out of descriptors or kernel memory: lasts until a connection ends.
                    if error.errno in OUT_OF_RESOURCES:
                        # The waiting client stays queued and accept() fails at once until
                        # a connection ends: retrying without a pause would spin a core.
                        time.sleep(_ACCEPT_RETRY_SECONDS)
                    continue  # e.g. a reset before accept: keep serving the rest
                self._hand_out(sock, address, accepted)
        except _Stop:
            pass
        finally:
            self._in_accept = False
            if self.stopping.is_set() or not self.reload_requested:
                if self._forced:  # FORCE_SIGNAL began the stop, or a second Ctrl+C came
                    self.listener.close()
                    raise ForceStop()
                self._shut_down()
        self._finished = True

    def _hand_out(self, sock: socket.socket, address: Tuple, accepted: float) -> None:
        """Give ``sock``, accepted at ``accepted`` (``time.monotonic()``), and each client
        that queued meanwhile to the pool of worker threads.

        Clients the kernel has already queued are first taken off its listen queue without
        waiting, so that the queue (``backlog``) never overflows and drops a connection;
        they are accepted one after another until none is left, without a poll between
        them, since under load each call that releases the interpreter costs this loop a
        turn among the busy threads.  The whole burst then goes to the pool at once: parked
        threads take what they can, and the rest waits for threads that start by doubling
        (:meth:`ThreadPool.run_all`), so this loop waits for at most one thread to start per
        burst, however many clients came.  Every client taken gets its worker, also once the
        server is stopping.  Each connection's head time-out counts from its accept, however
        long its worker takes to start.
        """
        burst = [(sock, address, accepted)]
        while burst:
            # Another process accepting on the same listener would take its share of the
            # queue, and a blocking accept could wait: only a listener of its own is drained,
            # and not once a reload is asked for (the next server takes the queue over).
            while not (self.shared or self.stopping.is_set() or self.reload_requested):
                try:
                    burst.append((*self.listener.accept(), time.monotonic()))
                except OSError:  # none left, a reset before accept, or out of descriptors
                    break
            works = [work for work in (self._admit(*client) for client in burst)
                     if work is not None]
            unstarted = self._pool.run_all(works)
            if unstarted:
                self._logger.warning(f"could not start a worker thread; refusing "
                                     f"{len(unstarted)} client(s)")
                for connection, _, _ in unstarted:
                    self._release(connection)
                    self._turn_away(connection, 503)
            burst = []
            if not (self.shared or self.stopping.is_set() or self.reload_requested):
                try:  # clients that came while a thread started
                    burst.append((*self.listener.accept(), time.monotonic()))
                except OSError:
                    pass

    def handle_signal(self, signum: int, frame: Optional[object]) -> None:
        """SIGINT/SIGTERM/RETIRE_SIGNAL: end the accept loop once (RETIRE_SIGNAL making way:
        see :meth:`retire`); a SIGINT or SIGTERM after it stops the server as usual.

        A second Ctrl+C raises :class:`ForceStop`, once, and only until :meth:`serve_forever`
        has returned: any later signal changes nothing.  That is a SIGINT after a SIGINT or
        SIGTERM, or :data:`FORCE_SIGNAL`.  A supervised server counts only a SIGINT as the
        first: its supervisor passes a first Ctrl+C on as SIGTERM, which can arrive before
        the terminal's own SIGINT of that same Ctrl+C.  Like every handler, this takes no
        lock (see :mod:`nex.process.signals`).
        """
        self._stop_signalled = self._stop_signalled or signum in STOP_SIGNALS
        force = signum == FORCE_SIGNAL or (signum == signal.SIGINT and self._pressed)
        if signum == signal.SIGINT or (signum == signal.SIGTERM and not self._supervised):
            self._pressed = True
        if force and not self._forced:
            self._forced = True
            if self.stopping.is_set() and not self._finished:
                raise ForceStop()
        if not self.stopping.is_set():
            self._making_way = signum == RETIRE_SIGNAL
            self.stopping.set()
            if self._in_accept:
                raise _Stop()
        elif signum != RETIRE_SIGNAL:
            self._making_way = False

    def carry_stop_from(self, old: "Server") -> None:
        """Take over the stop signals ``old`` got while this server was made to replace it
        on a reload (a Ctrl+C then, and the next one, make two), adding to those it got
        itself; called again after the switch, for those that reached ``old`` meanwhile."""
        if old._stop_signalled:  # not a stop of its own retiring
            self._stop_signalled = True
            self.stopping.set()
        self._pressed = self._pressed or old._pressed
        self._forced = self._forced or old._forced

    def request_reload(self) -> None:
        """SIGHUP: end the accept loop (unless stopping) without stopping the server."""
        if not self.stopping.is_set():
            self.reload_requested = True
            if self._in_accept:
                raise _Stop()

    def retire(self) -> None:
        """Stop as on SIGTERM after a reload, leaving the listener open for the server that
        took it over: idle connections close, in-flight responses get ``shutdown_grace``,
        new connections get their first request answered, and tunnels drain on the old
        settings."""
        self._making_way = True
        self._shut_down(close_listener=False)

    def cut_tunnels(self) -> None:
        """End the wait of a retired server's tunnels, and of its new connections for their
        first request: they are cut like any transfer left after the grace period (Nex is
        stopping), at once rather than at the stop's next wake-up."""
        self._making_way = False
        self._wake_all()
        with self._lock:
            self._ended.notify_all()

    def stop(self) -> None:
        """Ask the accept loop to end (safe from any thread)."""
        self.stopping.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _admit(self, sock: socket.socket, address: Tuple, accepted: float
               ) -> Optional[Tuple[Connection, Callable[[Connection], None], str]]:
        """The pool's work for the client on ``sock``: its connection, the call that serves
        it and the thread's name; None when it was turned away (a cap) or already gone."""
        client = plain_address(address[0])
        with self._lock:
            if len(self._live) >= self.config.max_connections:
                refusal = 503
            elif self._at_client_cap(client):
                refusal = 429
            else:
                refusal = 0
                self._count_client(client)
                if len(self._client_numbers) >= _MAX_NUMBERED_CLIENTS:
                    self._client_numbers.clear()
                number = self._client_numbers.setdefault(client, len(self._client_numbers) + 1)
        try:
            if _ACCEPTED_INHERIT_NONBLOCKING:
                sock.setblocking(True)
            if not refusal:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = Connection(sock, client, self.dispatcher, self._logger, self.stopping,
                                    self.tls, accepted=accepted, readmit=self._readmit,
                                    metrics=self.metrics,
                                    newcomers=None if refusal else self._newcomers)
        except OSError:  # some systems refuse options on a socket the client already reset
            if not refusal:
                with self._lock:
                    self._forget_client(client)
            sock.close()
            return None
        if refusal:
            self._turn_away(connection, refusal)
            return None
        with self._lock:
            self._live.add(connection)
        if self.metrics is not None:
            self.metrics.connection_opened()
        return connection, self._run, f"Client-{number} {_format_address(address)}"

    def _turn_away(self, connection: Connection, status: int) -> None:
        """Refuse ``connection`` with ``status`` (503 or 429)."""
        connection.turn_away(self._refusal(status))

    def _refusal(self, status: int) -> HTTPError:
        """The error a client over a connection cap is turned away with (503 or 429),
        counted for the metrics."""
        if self.metrics is not None:
            self.metrics.refused(_REFUSAL_TOKENS[status])
        return HTTPError(status, _REFUSALS[status],
                         headers=[("Retry-After", _RETRY_AFTER_SECONDS)], close=True,
                         refusal=_REFUSAL_TOKENS[status])

    def _run(self, connection: Connection) -> None:
        try:
            connection.serve()
        finally:
            self._release(connection)

    def _release(self, connection: Connection) -> None:
        with self._lock:
            self._live.discard(connection)
            self._forget_client(connection.counted_as)
            self._ended.notify_all()
        if self.metrics is not None:
            self.metrics.connection_closed()

    def _readmit(self, connection: Connection, client: str) -> Optional[HTTPError]:
        """Count ``connection`` as one of ``client``'s, the address a PROXY header carried,
        and return None; when ``client`` is at its cap, leave it counted as before and
        return the refusal (429) to turn it away with."""
        with self._lock:
            at_cap = self._at_client_cap(client)
            if not at_cap:
                self._forget_client(connection.counted_as)
                self._count_client(client)
                connection.counted_as = client
        return self._refusal(429) if at_cap else None

    def _at_client_cap(self, client: str) -> bool:
        """Whether ``client`` may open no more connections (with the lock held)."""
        return (self._per_client.get(client, 0) >= self.config.max_connections_per_client
                and not self._is_trusted_proxy(client))

    def _count_client(self, client: str) -> None:
        """Count one connection of ``client`` more (with the lock held)."""
        self._per_client[client] = self._per_client.get(client, 0) + 1

    def _forget_client(self, client: str) -> None:
        """Count one connection of ``client`` less (with the lock held)."""
        left = self._per_client.get(client, 1) - 1
        if left:
            self._per_client[client] = left
        else:
            self._per_client.pop(client, None)

    def _is_trusted_proxy(self, client: str) -> bool:
        """Whether ``client`` is a configured proxy or load balancer: one address that
        carries many clients' connections, so the per-client cap does not apply to it."""
        forwarded = self.dispatcher.forwarded
        return forwarded is not None and forwarded.is_trusted(client)

    def _shut_down(self, close_listener: bool = True) -> None:
        """Stop accepting, let busy connections finish within the grace period, then cut
        what is left, so that each cut transfer is still logged with what it sent."""
        self.stopping.set()
        self.stopped = True
        if close_listener:
            self.listener.close()
        busy = [connection for connection in self._wake_all() if connection.busy]
        if busy:
            grace = self.config.shutdown_grace
            print(f"waiting up to {grace:g} s for {len(busy)} transfer"
                  f"{'' if len(busy) == 1 else 's'}; Ctrl+C again to stop now",
                  file=sys.stderr, flush=True)
        deadline = time.monotonic() + self.config.shutdown_grace
        while self._wait_for_workers(deadline):
            connections = self._wake_all()
            if self._making_way and all(connection.tunnelling for connection in connections):
                break  # only tunnels are left, and they may take their time
        with self._lock:
            left = list(self._live)
        tunnels = [connection for connection in left
                   if self._making_way and connection.tunnelling]
        self._cut([connection for connection in left if connection not in tunnels])
        if tunnels:
            self._logger.warning(f"{len(tunnels)} tunnel(s) left to drain on the old settings")
            while self._making_way and self._wait_for_workers(
                    time.monotonic() + _WAKE_INTERVAL_SECONDS):
                pass
            with self._lock:
                left = list(self._live)
            self._cut(left)
        self._pool.close()
        if self.dispatcher.proxy is not None:
            self.dispatcher.proxy.close()
        if self.dispatcher.open_files is not None:
            self.dispatcher.open_files.close()

    def _wake_all(self) -> List[Connection]:
        """Wake every live connection that is idle (see :meth:`Connection.wake`); the live
        connections."""
        with self._lock:
            connections = list(self._live)
        for connection in connections:
            connection.wake(new_too=not self._making_way)
        return connections

    def _cut(self, connections: List[Connection]) -> None:
        """Abort ``connections``, left after the grace period, and let them log; those that
        still wait for their client to begin (a retired server's silent new connection)
        are closed without a warning, as a stop closes them."""
        busy = [connection for connection in connections if not connection.waiting]
        if busy:
            self._logger.warning(f"{len(busy)} connection(s) still busy after the "
                                 "shutdown grace period; closing them")
        if connections:
            for connection in connections:
                connection.abort()
            self._wait_for_workers(time.monotonic() + _ABORT_WAIT_SECONDS)

    def _wait_for_workers(self, deadline: float) -> bool:
        """Wait for a connection to end before ``deadline``, at most a wake interval; False
        once none are left or the deadline has passed."""
        with self._lock:
            remaining = deadline - time.monotonic()
            if not self._live or remaining <= 0:
                return False
            self._ended.wait(min(remaining, _WAKE_INTERVAL_SECONDS))
        return True


def _drain(fd: int) -> None:
    """Read whatever waits in the non-blocking pipe ``fd``."""
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _format_address(address: Tuple) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listener_url(listener: socket.socket, https: bool = False) -> str:
    """The URL that reaches the socket ``listener`` is bound to."""
    host, port = listener.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if https else 'http'}://{host}:{port}/"


def bind_listener(config: Config, *, reuse_port: bool = False,
                  listen: bool = True) -> socket.socket:
    """A socket bound to the configured address, listening unless ``listen`` is False.

    ``reuse_port`` sets ``SO_REUSEPORT``, so that listeners of several processes share the
    port and the kernel spreads new connections over them.
    """
    host = "127.0.0.1" if config.bind == "localhost" else config.bind
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and host == "::":
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind((host, config.port))
        if listen:
            start_listening(listener, config.backlog)
    except OSError:
        listener.close()
        raise
    return listener


def start_listening(listener: socket.socket, backlog: int) -> None:
    """``listen()`` on ``listener`` with a queue of ``backlog`` clients, capped by the kernel;
    called again, it changes the queue's length."""
    listener.listen(_capped_backlog(backlog))


def _capped_backlog(backlog: int) -> int:
    """``backlog`` capped by the kernel's limit on listen queues (Linux's somaxconn) if known."""
    try:
        with open("/proc/sys/net/core/somaxconn", "rb") as limit:
            text = limit.read().strip()
    except OSError:
        return backlog
    return min(backlog, int(text)) if text.isdigit() and int(text) > 0 else backlog


def print_start_line(server: Server) -> None:
    """Tell the user where Nex serves what: the first URL, then any other addresses; on a
    terminal, with a wildcard bind, the QR code of the first address other devices can use."""
    urls = server.urls()
    print(f"{SERVER_SOFTWARE} serving {server.config.document_root} at {urls[0]} "
          "(Ctrl+C stops)", flush=True)
    for url in urls[1:]:
        print(f"  also at {url}", flush=True)
    print_lan_code(server.listener, https=server.tls is not None)


def print_lan_code(listener: socket.socket, https: bool) -> None:
    """On a terminal, when ``listener`` is bound to a wildcard address, print the QR code of
    the first of the machine's addresses that other devices can reach (or how to get one)."""
    host, port = listener.getsockname()[:2]
    address = lan_address(host)
    if address and sys.stdout.isatty():
        shown = f"[{address}]" if ":" in address else address
        url = f"{'https' if https else 'http'}://{shown}:{port}/"
        print(f"Scan to open {url} on a phone:\n{qrcode.terminal(url)}", flush=True)
