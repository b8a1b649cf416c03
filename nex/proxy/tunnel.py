"""The tunnel: bytes copied both ways between a client and an origin, in one thread.

After ``200`` to a CONNECT, or an origin's ``101`` to a WebSocket upgrade, Nex knows nothing
of what flows (TLS, WebSocket frames) and copies it.
:func:`relay` waits on both sockets with a selector, so one worker thread serves both
directions; each direction holds at most :data:`BUFFER_SIZE` bytes that the other side has
not taken yet, and stops reading while its buffer is full, so a slow reader slows the sender
instead of filling memory.  An end of stream (EOF) from one side is passed on as a
half-close of the other (``shutdown(SHUT_WR)``) while the opposite direction goes on: TCP
half-closes mean something to some protocols.  They are not kept for long, though: once one
side has ended, the tunnel ends when no byte has moved for :data:`LINGER_SECONDS` (instead
of the whole idle time-out), so a client that closed its tunnels to a silent origin frees
the thread, both sockets and its connection slot within seconds.

The client's socket may be TLS (an ``ssl.SSLSocket``, when Nex serves HTTPS): the tunnel
then runs inside that TLS connection.  Bytes pass through the SSL object, which may hold
decrypted bytes the kernel no longer signals (``pending()``), writes go one TLS record at a
time and are offered again unchanged when OpenSSL asks for a retry, and an EOF from the
origin ends the tunnel once its bytes are delivered instead of half-closing the client's
side: TLS can only be ended with its closure alert, which the connection sends as it closes.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import time
from typing import Dict, Tuple

from nex.http.response import RECORD_SIZE

#: The most bytes a direction holds that its destination has not taken yet.
BUFFER_SIZE = 64 * 1024
#: How long a tunnel one side has ended stays open without traffic.
LINGER_SECONDS = 3.0
#: What a non-blocking socket raises when it cannot move a byte now: the kernel's EAGAIN, or
#: OpenSSL's wish to read or write first.
_NOT_NOW = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _decrypted(sock: socket.socket) -> bool:
    """Whether a TLS socket holds decrypted bytes that no readiness event will announce."""
    return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


class _Direction:
    """One way through the tunnel: bytes read from ``source``, written to ``target``."""

    def __init__(self, source: socket.socket, target: socket.socket, pending: bytes) -> None:
        self.source = source
        self.target = target
        self.buffer = bytearray(pending)
        self.source_done = False  # the source sent EOF
        self.done = False  # ... and everything has been passed on (and the target half-closed)
        self.sent = 0
        self._tls = isinstance(target, ssl.SSLSocket)
        #: A TLS target cannot be half-closed: TLS ends only with its closure alert.
        self.half_closes = not self._tls
        self._retry = 0  # the size of a TLS send to offer again, byte for byte

    @property
    def wants_read(self) -> bool:
        return not self.source_done and len(self.buffer) < BUFFER_SIZE

    def read(self) -> bool:
        """Read what the source has; returns whether anything (data or EOF) arrived."""
        try:
            data = self.source.recv(BUFFER_SIZE - len(self.buffer))
        except _NOT_NOW:
            return False
        if data:
            self.buffer += data
        else:
            self.source_done = True
            self._finish_if_drained()
        return True

    def write(self) -> bool:
        """Write what the target takes; returns whether it took anything."""
        if self._tls:
            # One record per send; OpenSSL wants a send it asked to retry offered again
            # with the same bytes.
            self._retry = self._retry or min(len(self.buffer), RECORD_SIZE)
            data = self.buffer[:self._retry]
        else:
            data = self.buffer
        try:
            count = self.target.send(data)
        except _NOT_NOW:
            return False
        self._retry = 0
        del self.buffer[:count]
        self.sent += count
        self._finish_if_drained()
        return count > 0

    def _finish_if_drained(self) -> None:
        if self.source_done and not self.buffer and not self.done:
            self.done = True
            if self.half_closes:
                self.target.shutdown(socket.SHUT_WR)


def relay(client_sock: socket.socket, origin_sock: socket.socket, idle_timeout: float,
          client_pending: bytes = b"", linger: float = LINGER_SECONDS,
          origin_pending: bytes = b"") -> Tuple[int, int]:
    """Copy bytes both ways until both sides have ended, one fails, or the tunnel idles.

    ``client_pending`` is what the client sent after its CONNECT (or Upgrade) head before
    the tunnel opened; it goes to the origin first, as ``origin_pending`` (what an origin
    sent after its ``101`` head) goes to the client first.  Returns ``(bytes client to
    origin, bytes origin to client)`` actually delivered.  Ends when each side has sent EOF
    and it has been passed on (for a TLS client: as soon as the origin's EOF has been), on
    the first socket error
    (a reset, say), after ``idle_timeout`` seconds in which no byte moved either way, or,
    once one side has ended, after ``linger`` seconds without traffic.  Both sockets are
    left non-blocking; the caller closes them.
    """
    upstream = _Direction(client_sock, origin_sock, client_pending)
    downstream = _Direction(origin_sock, client_sock, origin_pending)
    directions = (upstream, downstream)
    client_sock.setblocking(False)
    origin_sock.setblocking(False)
    selector = selectors.DefaultSelector()
    registered: Dict[socket.socket, int] = {}
    try:
        last_traffic = time.monotonic()
        while not (upstream.done and downstream.done) and not (
                downstream.done and not downstream.half_closes):
            _register(selector, registered, directions)
            quiet = (min(idle_timeout, linger) if upstream.source_done
                     or downstream.source_done else idle_timeout)
            timeout = last_traffic + quiet - time.monotonic()
            if timeout <= 0:
                break
            decrypted = any(direction.wants_read and _decrypted(direction.source)
                            for direction in directions)
            ready = {key.fileobj: mask
                     for key, mask in selector.select(0 if decrypted else timeout)}
            for direction in directions:
                moved = False
                if direction.wants_read and (ready.get(direction.source, 0) & selectors.EVENT_READ
                                             or _decrypted(direction.source)):
                    moved = direction.read()
                if direction.buffer and ready.get(direction.target, 0) & selectors.EVENT_WRITE:
                    moved = direction.write() or moved
                if moved:
                    last_traffic = time.monotonic()
    except OSError:
        pass  # one side failed: the tunnel ends, the caller closes both
    finally:
        selector.close()
    return upstream.sent, downstream.sent


def _register(selector: selectors.BaseSelector, registered: Dict[socket.socket, int],
              directions: Tuple[_Direction, ...]) -> None:
    """Bring the selector's interest in each socket up to date with what the directions need."""
    wanted: Dict[socket.socket, int] = {}
    for direction in directions:
        wanted.setdefault(direction.source, 0)
        wanted.setdefault(direction.target, 0)
    for direction in directions:
        if direction.wants_read:
            wanted[direction.source] |= selectors.EVENT_READ
        if direction.buffer:
            wanted[direction.target] |= selectors.EVENT_WRITE
    for sock, events in wanted.items():
        current = registered.get(sock, 0)
        if events == current:
            continue
        if not events:
            selector.unregister(sock)
            del registered[sock]
        elif not current:
            selector.register(sock, events)
            registered[sock] = events
        else:
            selector.modify(sock, events)
            registered[sock] = events
