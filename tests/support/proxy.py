"""Origins for the proxy tests: raw-socket servers on 127.0.0.1 that record what reaches them.

:class:`RawOrigin` parses each request it receives (Content-Length or chunked bodies) and
records it whole, with the head's bytes exactly as they arrived, then answers with what the
test's ``answer`` function returns.  Requests that never arrive complete are not recorded;
every byte received is kept apart in ``raw`` as well.
"""

from __future__ import annotations

import http.client
import os
import selectors
import shutil
import socket
import ssl
import time
import tempfile
import threading
import unittest
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from tests.support.server import SOCKET_TIMEOUT, NexServer, read_all

#: A test origin's listen queue: long enough for a crowd of connections at once.
BACKLOG = 512


class Exchange(NamedTuple):
    """One complete request as an origin received it."""

    head: bytes
    method: str
    target: str
    fields: Tuple[Tuple[str, str], ...]
    body: bytes
    connection: int  # which of the origin's connections it came on, from 1
    index: int  # its place on that connection, from 0

    def values(self, name: str) -> List[str]:
        """Every value of the field ``name`` (any case), in order."""
        return [value for field, value in self.fields if field.lower() == name.lower()]


class ThenClose(bytes):
    """An answer after which the origin closes the connection (a close-delimited body)."""


#: ``answer(exchange)`` → the bytes to send back (:class:`ThenClose` to close after them),
#: or None to close without answering.
Answer = Callable[[Exchange], Optional[bytes]]


def ok(body: bytes = b"hello", *fields: str) -> bytes:
    """A ``200`` with ``body`` framed by Content-Length, and extra ``Name: value`` fields."""
    extra = "".join(f"{field}\r\n" for field in fields).encode("latin-1")
    return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (extra, len(body), body)


class _Reader:
    """Buffered reading of one origin connection."""

    def __init__(self, sock: socket.socket, raw: bytearray) -> None:
        self.sock = sock
        self.raw = raw
        self.buffer = b""

    def fill(self) -> bool:
        try:
            data = self.sock.recv(256 * 1024)
        except OSError:
            return False
        self.raw += data
        self.buffer += data
        return bool(data)

    def line(self) -> Optional[bytes]:
        while b"\r\n" not in self.buffer:
            if not self.fill():
                return None
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def exactly(self, size: int) -> Optional[bytes]:
        while len(self.buffer) < size:
            if not self.fill():
                return None
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def _read_request(reader: _Reader, connection: int, index: int) -> Optional[Exchange]:
    """The next whole request on the connection, or None when it ends or is malformed."""
    while b"\r\n\r\n" not in reader.buffer:
        if not reader.fill():
            return None
    head, _, reader.buffer = reader.buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    fields = tuple((name, value.strip(" \t")) for name, _, value in
                   (line.partition(":") for line in lines[1:]))
    names = [name.lower() for name, _ in fields]
    if "transfer-encoding" in names:
        pieces = []
        while True:
            size_line = reader.line()
            if size_line is None:
                return None
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while True:  # the trailer section, up to its blank line
                    trailer = reader.line()
                    if trailer is None:
                        return None
                    if not trailer:
                        break
                break
            data = reader.exactly(size + 2)
            if data is None:
                return None
            pieces.append(data[:-2])
        body = b"".join(pieces)
    elif "content-length" in names:
        body = reader.exactly(int(dict((n.lower(), v) for n, v in fields)["content-length"]))
        if body is None:
            return None
    else:
        body = b""
    return Exchange(head + b"\r\n\r\n", method, target, fields, body, connection, index)


class ThreadedOrigin:
    """A TCP server on 127.0.0.1 that serves each connection it accepts on a thread of its own.

    A subclass writes ``serve``; ``register(sock)``, run on the accepting thread, returns the
    arguments ``serve`` takes (the socket alone unless overridden), and ``wake`` runs at
    ``close`` once accepting has stopped, before the connections' threads are waited for.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=BACKLOG)
        self.port = self.listener.getsockname()[1]
        self._threads: List[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def register(self, sock: socket.socket) -> tuple:
        """The arguments of ``serve`` for a connection just accepted."""
        return (sock,)

    def serve(self, sock: socket.socket, *details) -> None:
        """Serve one connection, on its own thread."""
        raise NotImplementedError

    def wake(self) -> None:
        """Wake the connections' threads that would wait on the peer; by default none do."""

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self.serve, args=self.register(sock), daemon=True)
            self._threads.append(thread)
            thread.start()

    def close(self) -> None:
        """Stop accepting, then wait for the connections' threads to end."""
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() alone would not
        self.listener.close()
        self._accepting.join(SOCKET_TIMEOUT)
        self.wake()
        for thread in self._threads:
            thread.join(SOCKET_TIMEOUT)


class RawOrigin(ThreadedOrigin):
    """An origin on 127.0.0.1 answering every request on a connection with ``answer``.

    With ``tls`` (a server ``SSLContext``) it speaks HTTPS.  ``received`` lists the complete
    requests in the order they arrived, ``raw`` every byte of each connection.
    """

    def __init__(self, answer: Answer, tls: Optional[ssl.SSLContext] = None) -> None:
        self.answer = answer
        self.tls = tls
        self.received: List[Exchange] = []
        self.raw: List[bytearray] = []
        self._lock = threading.Lock()
        self._live: List[socket.socket] = []
        super().__init__()

    @property
    def connections(self) -> int:
        """How many connections the origin has accepted."""
        return len(self.raw)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def register(self, sock: socket.socket) -> tuple:
        with self._lock:
            raw = bytearray()
            self.raw.append(raw)
            self._live.append(sock)
            return sock, raw, len(self.raw)

    def serve(self, sock: socket.socket, raw: bytearray, number: int) -> None:
        sock.settimeout(SOCKET_TIMEOUT)
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
            reader = _Reader(sock, raw)
            index = 0
            while True:
                exchange = _read_request(reader, number, index)
                if exchange is None:
                    return
                with self._lock:
                    self.received.append(exchange)
                reply = self.answer(exchange)
                if reply is None:
                    return
                sock.sendall(reply)
                if isinstance(reply, ThenClose):
                    return
                index += 1
        except (OSError, ValueError):
            pass
        finally:
            sock.close()

    def wake(self) -> None:
        """Shut the connections Nex may keep in its pool, which threads wait on."""
        with self._lock:
            live = list(self._live)
        for sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def duplex(sock: socket.socket, outgoing: bytes, incoming: int) -> bytes:
    """Send ``outgoing`` on ``sock`` while receiving ``incoming`` bytes from it, in one thread.

    An ``SSLSocket`` must not be read and written from two threads at once (OpenSSL's
    objects are not thread-safe), so both directions share one loop.  Fails when the peer
    closes early or nothing moves for ``SOCKET_TIMEOUT`` seconds.
    """
    sock.setblocking(False)
    view = memoryview(outgoing)
    received = bytearray()
    deadline = time.monotonic() + SOCKET_TIMEOUT
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        while view or len(received) < incoming:
            wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if view else 0)
            selector.modify(sock, wanted)
            held = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            ready = 0
            for _, mask in selector.select(0 if held else deadline - time.monotonic()):
                ready |= mask
            if not ready and not held:
                if time.monotonic() > deadline:
                    raise AssertionError(f"stalled after {len(received)} bytes")
                continue
            moved = False
            if (ready & selectors.EVENT_READ or held) and len(received) < incoming:
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    data = None
                if data == b"":
                    raise AssertionError(f"closed after {len(received)} of {incoming} bytes")
                if data:
                    received += data
                    moved = True
            if ready & selectors.EVENT_WRITE and view:
                try:  # one record at a time, offered again unchanged after a retry
                    view = view[sock.send(view[:16 * 1024]):]
                    moved = True
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
            if moved:
                deadline = time.monotonic() + SOCKET_TIMEOUT
    sock.setblocking(True)
    sock.settimeout(SOCKET_TIMEOUT)
    return bytes(received)


def free_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def proxy_settings(**proxy: object) -> Dict[str, Dict[str, object]]:
    """Settings for a Nex with the proxy on and ``proxy`` keys on top; destinations on
    loopback allowed, since the tests' origins live there."""
    values: Dict[str, object] = {"enabled": "yes", "denied_destinations": ""}
    values.update(proxy)
    return {"proxy": values}


def make_root() -> str:
    """A new document root holding ``hello.txt``; the caller removes it."""
    root = tempfile.mkdtemp(prefix="nex-proxy-root-")
    with open(os.path.join(root, "hello.txt"), "wb") as out:
        out.write(b"hello, world\n")
    return root


class ProxyTestCase(unittest.TestCase):
    """One Nex for the class, started with ``settings`` (``server_options`` go to
    :class:`NexServer`), origins per test, and ways to talk to the proxy."""

    settings: Dict[str, Dict[str, object]] = proxy_settings()
    server_options: Dict[str, object] = {}

    @classmethod
    def setUpClass(cls) -> None:
        cls.root = make_root()
        try:
            cls.server = NexServer(cls.root, cls.settings, **cls.server_options).start()
        except BaseException:
            shutil.rmtree(cls.root, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def origin(self, answer: Answer, tls: Optional[ssl.SSLContext] = None) -> RawOrigin:
        origin = RawOrigin(answer, tls)
        self.addCleanup(origin.close)
        return origin

    def connection(self) -> http.client.HTTPConnection:
        """An http.client connection to the proxy; a full URL as the path makes the
        request absolute-form."""
        connection = http.client.HTTPConnection(self.server.host, self.server.port,
                                                timeout=SOCKET_TIMEOUT)
        self.addCleanup(connection.close)
        return connection

    def fetch(self, method: str, url: str, body=None, headers=None, **options
              ) -> Tuple[http.client.HTTPResponse, bytes]:
        """One request through the proxy on a new connection: the response, its body.
        ``options`` go to ``HTTPConnection.request``."""
        connection = self.connection()
        connection.request(method, url, body=body, headers=headers or {}, **options)
        response = connection.getresponse()
        return response, response.read()

    def raw(self, data: bytes) -> bytes:
        """Send ``data`` to the proxy and read until it closes (``Connection: close`` in
        the last request, or a request it closes after)."""
        with self.server.connect() as sock:
            sock.sendall(data)
            return read_all(sock)

    def log_has(self, text: str) -> str:
        """The access log once it holds ``text`` (failing if it never does)."""
        log = self.server.wait_for_access_log(lambda log: text in log)
        self.assertIn(text, log)
        return log


class EchoOrigin(ThreadedOrigin):
    """A TCP server on 127.0.0.1 that sends back every byte it receives, then half-closes
    when the client does."""

    def serve(self, sock: socket.socket) -> None:
        sock.settimeout(SOCKET_TIMEOUT)
        with sock:
            try:
                while True:
                    data = sock.recv(65536)
                    if not data:
                        sock.shutdown(socket.SHUT_WR)
                        return
                    sock.sendall(data)
            except OSError:
                pass


def read_head(sock: socket.socket) -> bytes:
    """A response head read byte by byte, so nothing after it is taken from the socket."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise AssertionError(f"closed inside a response head: {head!r}")
        head += byte
    return head


def open_tunnel(sock: socket.socket, port: int, early: bytes = b"") -> bytes:
    """Ask Nex on ``sock`` for a tunnel to ``127.0.0.1:port``, with ``early`` in the same send
    as the CONNECT head; the head of the answer, which must be a 200."""
    sock.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n%s"
                 % (port, port, early))
    head = read_head(sock)
    if not head.startswith(b"HTTP/1.1 200 "):
        raise AssertionError(f"the tunnel was refused: {head!r}")
    return head


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``sock``; fails if it ends first."""
    sock.settimeout(SOCKET_TIMEOUT)
    chunks, received = [], 0
    while received < size:
        chunk = sock.recv(min(256 * 1024, size - received))
        if not chunk:
            raise AssertionError(f"closed after {received} of {size} bytes")
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)
