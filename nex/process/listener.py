"""The listener: binds the socket, accepts clients and runs one worker thread per connection.

A cap on live connections (and on connections per client address) keeps the thread count
bounded: a client past a cap gets a short ``503``/``429`` page at once and is closed, without
a thread (over HTTPS it is closed without the page, which would need a handshake).  SIGINT
and SIGTERM stop accepting, wake idle keep-alive connections, give in-flight responses
``shutdown_grace`` seconds to finish, and exit with status 0.  :data:`RETIRE_SIGNAL`
(SIGUSR2, which the supervisor sends a worker it replaces on reload) stops it the same way,
except that CONNECT tunnels and WebSockets are left to drain on the old settings until they
end or reach ``tunnel_idle``, as squid's reconfigure leaves them; a SIGTERM then cuts them.
With HTTPS, SIGHUP re-reads the certificate and key for new connections.
"""

from __future__ import annotations

import collections
import ipaddress
import queue
import select
import signal
import socket
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from nex import SERVER_SOFTWARE, qrcode
from nex.addresses import plain_address
from nex.process.assembly import assemble
from nex.site.login import cleartext_warning
from nex.process.config import Config, ConfigError
from nex.process.connection import Connection
from nex.site.routing import Dispatcher
from nex.http.errors import HTTPError
from nex.process.interfaces import lan_address, local_addresses
from nex.process.log import Logger
from nex.files.oserrors import OUT_OF_RESOURCES
from nex.files.templates import TemplateError
from nex.process.tls import ServerTLS, TLSError

_RETRY_AFTER_SECONDS = "5"
_REFUSALS = {503: "The server is at its connection limit (max_connections); try again"
                  " shortly.",
             429: "Too many connections from your address (max_connections_per_client);"
                  " close some and try again."}
#: How long cut transfers get to log their lines after the grace period.
_ABORT_WAIT_SECONDS = 2.0
_WAKE_INTERVAL_SECONDS = 0.5
_ACCEPT_RETRY_SECONDS = 0.05
#: Thread names number clients by address; the table restarts past this many addresses.
_MAX_NUMBERED_CLIENTS = 65536
#: Stop accepting, finish requests within the grace period, let tunnels drain.
RETIRE_SIGNAL = signal.SIGUSR2


class _Stop(Exception):
    """Raised in the main thread by the signal handler to end the accept loop."""


class ForceStop(Exception):
    """Raised in the main thread by a second SIGINT: stop without waiting for transfers."""


class Server:
    """One listening socket and the worker threads of its connections.

    ``dispatcher`` answers the requests; it is built once the port is known (page footers
    name it) by ``make_dispatcher(port)``.  The server listens on ``listener`` when one is
    given (a worker process of several), else on a new socket bound per ``config``.  With
    ``tls`` every connection speaks HTTPS.
    """

    def __init__(self, config: Config, make_dispatcher: Callable[[int], Dispatcher],
                 logger: Logger, listener: Optional[socket.socket] = None,
                 tls: Optional[ServerTLS] = None) -> None:
        self.config = config
        self.tls = tls
        self._logger = logger
        self.listener = listener if listener is not None else bind_listener(config)
        #: Whether no other process accepts on the listener: a lone server's own, or a
        #: worker's on Linux, where each worker has one (SO_REUSEPORT).
        self._own_listener = listener is None or sys.platform.startswith("linux")
        #: Says whether clients wait in the listen queue.
        self._queued = select.poll()
        self._queued.register(self.listener, select.POLLIN)
        self.port = self.listener.getsockname()[1]
        try:
            self.dispatcher: Dispatcher = make_dispatcher(self.port)
        except BaseException:
            self.listener.close()
            raise
        self.stopping = threading.Event()
        #: Whether the stop leaves tunnels to end on their own (RETIRE_SIGNAL).
        self._drain_tunnels = False
        self._in_accept = False
        self._lock = threading.Lock()
        #: Each live connection and the worker thread serving it.
        self._live: Dict[Connection, threading.Thread] = {}
        self._per_client: Dict[str, int] = {}
        self._client_numbers: Dict[str, int] = {}

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

    def run(self, ready: Callable[[], None]) -> None:
        """:meth:`serve_forever` with SIGINT and SIGTERM as its stop, from the main thread.

        ``ready`` is called once those signals would stop the server, before it accepts.
        A second SIGINT while stopping raises :class:`ForceStop`.
        """
        previous = {sig: signal.signal(sig, self.handle_signal)
                    for sig in (signal.SIGINT, signal.SIGTERM, RETIRE_SIGNAL)}
        try:
            ready()
            self.serve_forever()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def serve_forever(self) -> None:
        """Accept clients until a signal (or :meth:`stop`) ends the loop."""
        try:
            while True:
                # A signal raises _Stop only while this flag is up, so it cannot strike
                # between accepting a socket and handing it to a worker.
                self._in_accept = True
                if self.stopping.is_set():
                    break
                try:
                    sock, address = self.listener.accept()
                    self._in_accept = False
                except OSError as error:
                    self._in_accept = False
                    if self.stopping.is_set():
                        break
                    # Out of descriptors or kernel memory: lasts until a connection ends.
                    if error.errno in OUT_OF_RESOURCES:
                        # The waiting client stays queued and accept() fails at once until
                        # a connection ends: retrying without a pause would spin a core.
                        time.sleep(_ACCEPT_RETRY_SECONDS)
                    continue  # e.g. a reset before accept: keep serving the rest
                self._hand_out(sock, address)
        except _Stop:
            pass
        finally:
            self._shut_down()

    def _hand_out(self, sock: socket.socket, address: Tuple) -> None:
        """Start a worker for ``sock``, and for each client that queued meanwhile.

        Starting a worker thread waits until the new thread runs, which can take a while
        when hundreds of busy threads want the interpreter.  Between starts, clients the
        kernel has already queued are taken off its listen queue without waiting, so that
        the queue (``backlog``) never overflows and drops a connection.  Every client taken
        gets its worker, also once the server is stopping.
        """
        waiting = collections.deque([(sock, address)])
        while waiting:
            self._start_worker(*waiting.popleft())
            # A client the poll reports is still there to accept, unless another process
            # accepts on the same listener: then the next accept waits, so none is tried.
            while self._own_listener and not self.stopping.is_set() and self._queued.poll(0):
                try:
                    waiting.append(self.listener.accept())
                except OSError:  # reset before accept, or out of descriptors: later
                    break

    def handle_signal(self, signum: int, frame: Optional[object]) -> None:
        """SIGINT/SIGTERM/RETIRE_SIGNAL: end the accept loop once; a second SIGINT stops at
        once; a SIGINT or SIGTERM after RETIRE_SIGNAL cuts the draining tunnels too."""
        if not self.stopping.is_set():
            self._drain_tunnels = signum == RETIRE_SIGNAL
            self.stopping.set()
            if self._in_accept:
                raise _Stop()
            return
        if signum != RETIRE_SIGNAL:
            self._drain_tunnels = False
        if signum == signal.SIGINT:
            raise ForceStop()

    def reload_tls(self) -> bool:
        """Read the TLS certificate and key again for the connections accepted from now on;
        return whether the new pair is in use.

        A pair that does not load leaves the previous one serving.  Either way one line is
        logged.  Any thread may call this, but not a signal handler: logging takes a lock
        the interrupted thread may hold.
        """
        if self.tls is None:
            return False
        try:
            self.tls.reload()
        except TLSError as error:
            self._logger.warning(f"TLS certificate not reloaded; the previous one stays: {error}")
            return False
        self._logger.message(f"TLS certificate reloaded from {self.tls.certificate} "
                             f"(SHA-256 {self.tls.fingerprint})")
        return True

    def stop(self) -> None:
        """Ask the accept loop to end (safe from any thread)."""
        self.stopping.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _start_worker(self, sock: socket.socket, address: Tuple) -> None:
        client = plain_address(address[0])
        with self._lock:
            if len(self._live) >= self.config.max_connections:
                refusal = 503
            elif (self._per_client.get(client, 0) >= self.config.max_connections_per_client
                  and not self._is_trusted_proxy(client)):
                refusal = 429
            else:
                refusal = 0
                self._per_client[client] = self._per_client.get(client, 0) + 1
                if len(self._client_numbers) >= _MAX_NUMBERED_CLIENTS:
                    self._client_numbers.clear()
                number = self._client_numbers.setdefault(client, len(self._client_numbers) + 1)
        try:
            if not refusal:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = Connection(sock, client, self.dispatcher, self._logger, self.stopping,
                                    self.tls)
        except OSError:  # some systems refuse options on a socket the client already reset
            if not refusal:
                with self._lock:
                    self._forget_client(client)
            sock.close()
            return
        if refusal:
            connection.turn_away(_refusal(refusal))
            return
        name = f"Client-{number} {_format_address(address)}"
        thread = threading.Thread(target=self._run, args=(connection,), name=name, daemon=True)
        with self._lock:
            self._live[connection] = thread
        try:
            thread.start()
        except RuntimeError:
            self._logger.warning("could not start a worker thread; refusing the client")
            self._release(connection)
            connection.turn_away(_refusal(503))

    def _run(self, connection: Connection) -> None:
        try:
            connection.serve()
        finally:
            self._release(connection)

    def _release(self, connection: Connection) -> None:
        with self._lock:
            del self._live[connection]
            self._forget_client(connection.client)

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

    def _shut_down(self) -> None:
        """Stop accepting, let busy connections finish within the grace period, then cut
        what is left, so that each cut transfer is still logged with what it sent."""
        self.stopping.set()
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
            if self._drain_tunnels and all(connection.tunnelling for connection in connections):
                break  # only tunnels are left, and they may take their time
        with self._lock:
            left = list(self._live)
        tunnels = [connection for connection in left
                   if self._drain_tunnels and connection.tunnelling]
        self._cut([connection for connection in left if connection not in tunnels])
        if tunnels:
            self._logger.warning(f"{len(tunnels)} tunnel(s) left to drain on the old settings")
            while self._drain_tunnels and self._wait_for_workers(
                    time.monotonic() + _WAKE_INTERVAL_SECONDS):
                pass
            with self._lock:
                left = list(self._live)
            self._cut(left)
        if self.dispatcher.proxy is not None:
            self.dispatcher.proxy.close()

    def _wake_all(self) -> List[Connection]:
        """Wake every live connection that is idle (see :meth:`Connection.wake`); the live
        connections."""
        with self._lock:
            connections = list(self._live)
        for connection in connections:
            connection.wake()
        return connections

    def _cut(self, connections: List[Connection]) -> None:
        """Abort ``connections``, still busy after the grace period, and let them log."""
        if connections:
            self._logger.warning(f"{len(connections)} connection(s) still busy after the "
                                 "shutdown grace period; closing them")
            for connection in connections:
                connection.abort()
            self._wait_for_workers(time.monotonic() + _ABORT_WAIT_SECONDS)

    def _wait_for_workers(self, deadline: float) -> bool:
        """Wait for one worker to end before ``deadline``; False once none are left or the
        deadline has passed."""
        with self._lock:
            workers = list(self._live.values())
        remaining = deadline - time.monotonic()
        if not workers or remaining <= 0:
            return False
        workers[0].join(min(remaining, _WAKE_INTERVAL_SECONDS))
        return True


def _refusal(status: int) -> HTTPError:
    """The error a client over a connection cap is turned away with (503 or 429)."""
    return HTTPError(status, _REFUSALS[status], headers=[("Retry-After", _RETRY_AFTER_SECONDS)],
                     close=True)


def _reload_when_asked(server: Server, reloads: "queue.SimpleQueue[bool]") -> None:
    """Reload the server's TLS certificate for each True queued, until a False."""
    while reloads.get():
        server.reload_tls()


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
            listener.listen(_capped_backlog(config.backlog))
    except OSError:
        listener.close()
        raise
    return listener


def _capped_backlog(backlog: int) -> int:
    """``backlog`` capped by the kernel's limit on listen queues (Linux's somaxconn) if known."""
    try:
        with open("/proc/sys/net/core/somaxconn", "rb") as limit:
            text = limit.read().strip()
    except OSError:
        return backlog
    return min(backlog, int(text)) if text.isdigit() and int(text) > 0 else backlog


def serve(config: Config) -> int:
    """Run Nex with ``config`` until SIGINT or SIGTERM; return the process exit status:
    0 after a graceful stop, 130 when a second SIGINT cut it short, 2 when it cannot start."""
    if config.thread_stack_size:
        threading.stack_size(config.thread_stack_size)
    tls = None
    if config.tls_certificate:
        try:
            tls = ServerTLS(config.tls_certificate, config.tls_key)
        except TLSError as error:
            print(f"nex: {error}", file=sys.stderr)
            return 2
    logger = Logger.from_config(config)
    try:
        server = Server(config, lambda port: assemble(config, port, on_error=logger.warning),
                        logger, tls=tls)
    except (TemplateError, ConfigError) as error:
        print(f"nex: {error}", file=sys.stderr)
        logger.close()
        return 2
    except OSError as error:
        print(f"nex: cannot listen on {config.bind} port {config.port}: {error.strerror}",
              file=sys.stderr)
        logger.close()
        return 2
    warning = cleartext_warning(config)
    if warning is not None:
        logger.warning(warning)
    reloads: "queue.SimpleQueue[bool]" = queue.SimpleQueue()
    reloader = None
    previous_hup = None
    if tls is not None:
        # The handler only queues the request (SimpleQueue.put is safe in a signal
        # handler); a thread does the reload, which logs and so takes a lock.
        previous_hup = signal.signal(signal.SIGHUP, lambda signum, frame: reloads.put(True))
        reloader = threading.Thread(target=_reload_when_asked, args=(server, reloads),
                                    name="tls-reload", daemon=True)
        reloader.start()
    status = 0
    try:
        server.run(lambda: print_start_line(server))
    except ForceStop:
        print("stopping now", file=sys.stderr, flush=True)
        status = 130
    finally:
        if reloader is not None:
            signal.signal(signal.SIGHUP, previous_hup)
            reloads.put(False)
            reloader.join()
        logger.message(f"{SERVER_SOFTWARE} stopped")
        logger.close()
    return status


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
