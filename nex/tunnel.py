"""The CONNECT tunnel: bytes copied both ways between a client and an origin, in one thread.

After ``200`` to a CONNECT, Nex knows nothing of what flows (usually TLS) and copies it.
:func:`relay` waits on both sockets with a selector, so one worker thread serves both
directions; each direction holds at most :data:`BUFFER_SIZE` bytes that the other side has
not taken yet, and stops reading while its buffer is full, so a slow reader slows the sender
instead of filling memory.  An end of stream (EOF) from one side is passed on as a
half-close of the other (``shutdown(SHUT_WR)``) while the opposite direction goes on: TCP
half-closes mean something to some protocols and cost nothing to keep.
"""

from __future__ import annotations

import selectors
import socket
import time
from typing import Dict, Tuple

#: The most bytes a direction holds that its destination has not taken yet.
BUFFER_SIZE = 64 * 1024


class _Direction:
    """One way through the tunnel: bytes read from ``source``, written to ``target``."""

    def __init__(self, source: socket.socket, target: socket.socket, pending: bytes) -> None:
        self.source = source
        self.target = target
        self.buffer = bytearray(pending)
        self.source_done = False  # the source sent EOF
        self.done = False  # ... and everything has been passed on, then the target half-closed
        self.sent = 0

    @property
    def wants_read(self) -> bool:
        return not self.source_done and len(self.buffer) < BUFFER_SIZE

    def read(self) -> bool:
        """Read what the source has; returns whether anything (data or EOF) arrived."""
        try:
            data = self.source.recv(BUFFER_SIZE - len(self.buffer))
        except (BlockingIOError, InterruptedError):
            return False
        if data:
            self.buffer += data
        else:
            self.source_done = True
            self._finish_if_drained()
        return True

    def write(self) -> bool:
        """Write what the target takes; returns whether it took anything."""
        try:
            count = self.target.send(self.buffer)
        except (BlockingIOError, InterruptedError):
            return False
        del self.buffer[:count]
        self.sent += count
        self._finish_if_drained()
        return count > 0

    def _finish_if_drained(self) -> None:
        if self.source_done and not self.buffer and not self.done:
            self.done = True
            self.target.shutdown(socket.SHUT_WR)


def relay(client_sock: socket.socket, origin_sock: socket.socket, idle_timeout: float,
          client_pending: bytes = b"") -> Tuple[int, int]:
    """Copy bytes both ways until both sides have ended, one fails, or the tunnel idles.

    ``client_pending`` is what the client sent after its CONNECT head before the tunnel
    opened; it goes to the origin first.  Returns ``(bytes client to origin, bytes origin
    to client)`` actually delivered.  Ends when each side has sent EOF and it has been passed
    on, on the first socket error (a reset, say), or after ``idle_timeout`` seconds in which
    no byte moved either way.  Both sockets are left non-blocking; the caller closes them.
    """
    upstream = _Direction(client_sock, origin_sock, client_pending)
    downstream = _Direction(origin_sock, client_sock, b"")
    directions = (upstream, downstream)
    client_sock.setblocking(False)
    origin_sock.setblocking(False)
    selector = selectors.DefaultSelector()
    registered: Dict[socket.socket, int] = {}
    try:
        last_traffic = time.monotonic()
        while not (upstream.done and downstream.done):
            _register(selector, registered, directions)
            timeout = last_traffic + idle_timeout - time.monotonic()
            if timeout <= 0:
                break
            for key, mask in selector.select(timeout):
                for direction in directions:
                    moved = False
                    if mask & selectors.EVENT_READ and key.fileobj is direction.source \
                            and direction.wants_read:
                        moved = direction.read()
                    if mask & selectors.EVENT_WRITE and key.fileobj is direction.target \
                            and direction.buffer:
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
