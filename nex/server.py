"""The listener: binds the socket, accepts clients and runs one worker thread per connection.

A cap on live connections (and on connections per client address) keeps the thread count
bounded: a client past a cap gets a short ``503``/``429`` page at once and is closed, without
a thread.  SIGINT and SIGTERM stop accepting, wake idle keep-alive connections, give
in-flight responses ``shutdown_grace`` seconds to finish, and exit with status 0.
"""

from __future__ import annotations

import errno
import ipaddress
import signal
import socket
import sys
import threading
import time
from typing import Dict, Optional, Tuple

from nex import SERVER_SOFTWARE
from nex.config import Config
from nex.connection import Connection
from nex.dispatch import Site
from nex.errors import HTTPError
from nex.filecache import SmallFileCache
from nex.forwarded import ForwardedFor
from nex.hosts import HostValidator
from nex.log import Logger
from nex.response import Response, serialize_head
from nex.templates import TemplateError, TemplateSet

_RETRY_AFTER_SECONDS = "5"
#: accept() errors that last until a connection ends (descriptors or kernel memory exhausted).
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_RETRY_SECONDS = 0.05
#: Thread names number clients by address; the table restarts past this many addresses.
_MAX_NUMBERED_CLIENTS = 65536


class _Stop(Exception):
    """Raised in the main thread by the signal handler to end the accept loop."""


class Server:
    """One listening socket and the worker threads of its connections."""

    def __init__(self, config: Config, templates: TemplateSet, logger: Logger) -> None:
        self.config = config
        self._logger = logger
        self.listener = _bind(config)
        self.port = self.listener.getsockname()[1]
        self.site = Site(config, templates, HostValidator(config.allowed_hosts),
                         f"{SERVER_SOFTWARE} Server at {config.server_name} Port {self.port}",
                         SmallFileCache(config.file_cache_size)
                         if config.file_cache_size else None,
                         ForwardedFor(config.trusted_proxies) if config.trusted_proxies else None)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        #: Each live connection and the worker thread serving it.
        self._live: Dict[Connection, threading.Thread] = {}
        self._per_client: Dict[str, int] = {}
        self._client_numbers: Dict[str, int] = {}
        self._refusal_pages = {
            status: templates.render_error(HTTPError(status, detail), self.site.signature)
            for status, detail in ((503, "The server is at its connection limit; try again shortly."),
                                   (429, "Too many connections from your address; "
                                         "close some and try again."))}

    @property
    def url(self) -> str:
        """The URL that reaches this server."""
        host = self.listener.getsockname()[0]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def serve_forever(self) -> None:
        """Accept clients until a signal (or :meth:`stop`) ends the loop."""
        try:
            while not self.stopping.is_set():
                try:
                    sock, address = self.listener.accept()
                except OSError as error:
                    if self.stopping.is_set():
                        break
                    if error.errno in _OUT_OF_RESOURCES:
                        # The waiting client stays queued and accept() fails at once until
                        # a connection ends: retrying without a pause would spin a core.
                        time.sleep(_ACCEPT_RETRY_SECONDS)
                    continue  # e.g. a reset before accept: keep serving the rest
                self._start_worker(sock, address)
        except _Stop:
            pass
        finally:
            self._shut_down()

    def handle_signal(self, signum: int, frame: Optional[object]) -> None:
        """SIGINT/SIGTERM: end the accept loop once; later signals wait for the shutdown."""
        if not self.stopping.is_set():
            self.stopping.set()
            raise _Stop()

    def stop(self) -> None:
        """Ask the accept loop to end (safe from any thread)."""
        self.stopping.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _start_worker(self, sock: socket.socket, address: Tuple) -> None:
        client = _plain_address(address[0])
        with self._lock:
            if len(self._live) >= self.config.max_connections:
                refusal = 503
            elif self._per_client.get(client, 0) >= self.config.max_connections_per_client:
                refusal = 429
            else:
                refusal = 0
                self._per_client[client] = self._per_client.get(client, 0) + 1
                if len(self._client_numbers) >= _MAX_NUMBERED_CLIENTS:
                    self._client_numbers.clear()
                number = self._client_numbers.setdefault(client, len(self._client_numbers) + 1)
        if refusal:
            self._refuse(sock, client, refusal)
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = Connection(sock, client, self.site, self._logger, self.stopping)
        except OSError:  # some systems refuse options on a socket the client already reset
            with self._lock:
                self._forget_client(client)
            sock.close()
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
            self._refuse(sock, client, 503)

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

    def _shut_down(self) -> None:
        self.stopping.set()
        self.listener.close()
        with self._lock:
            connections = list(self._live)
        for connection in connections:
            connection.wake()
        deadline = time.monotonic() + self.config.shutdown_grace
        while True:
            with self._lock:
                workers = list(self._live.values())
            if not workers:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._logger.warning(f"{len(workers)} connection(s) still busy after the "
                                     "shutdown grace period; closing them")
                break
            workers[0].join(remaining)
            for connection in connections:
                connection.wake()

    def _refuse(self, sock: socket.socket, client: str, status: int) -> None:
        """Answer ``status`` with its ready-rendered page without blocking the accept loop,
        then close; the head is made now so that its Date is current."""
        page = self._refusal_pages[status]
        response = Response(status, [("Content-Type", "text/html; charset=utf-8"),
                                     ("Retry-After", _RETRY_AFTER_SECONDS)], (page,), close=True)
        try:
            sock.setblocking(False)
            sock.send(serialize_head(response, keep_alive=False) + page)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            sock.close()
        self._logger.access(client, "-", status, len(page), None, None)


def _plain_address(host: str) -> str:
    """``host`` with an IPv4-mapped IPv6 address (``::ffff:1.2.3.4``) written as IPv4.

    A dual-stack listener sees IPv4 clients in that form; logs and per-client limits should
    know them by the address they really have.
    """
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host


def _format_address(address: Tuple) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind(config: Config) -> socket.socket:
    host = "127.0.0.1" if config.bind == "localhost" else config.bind
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "::":
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind((host, config.port))
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
    """Run Nex with ``config`` until SIGINT or SIGTERM; return the process exit status."""
    try:
        templates = TemplateSet.load(config.error_pages, config.templates)
    except TemplateError as error:
        print(f"nex: {error}", file=sys.stderr)
        return 2
    if config.thread_stack_size:
        threading.stack_size(config.thread_stack_size)
    logger = Logger.from_config(config)
    try:
        server = Server(config, templates, logger)
    except OSError as error:
        print(f"nex: cannot listen on {config.bind} port {config.port}: {error.strerror}",
              file=sys.stderr)
        logger.close()
        return 2
    previous = {sig: signal.signal(sig, server.handle_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"{SERVER_SOFTWARE} serving {config.document_root} at {server.url} (Ctrl+C stops)",
          flush=True)
    try:
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        logger.message(f"{SERVER_SOFTWARE} stopped")
        logger.close()
    return 0
