"""What a client has sent that Nex has not read yet, looked at without waiting for more.

A newcomer's thread reads what already came before it counts as under way (it contends for
nothing while it waits), and a stopping server answers a request that has already arrived
rather than closing on it, since closing a socket with unread input resets the connection
and destroys what was not sent yet.  For the same reason a connection closed with input
unread lingers: it shuts its sending side and drains what still comes (:func:`drain`).
"""

from __future__ import annotations

import select
import socket
import time
from typing import Optional


def already_sent(sock: socket.socket, size: int, flags: int = 0) -> Optional[bytes]:
    """What ``sock.recv(size, flags)`` gives when it need not wait for the client, else None
    (and nothing is taken).  A ``MSG_WAITALL`` read (the PROXY header's) needs all ``size``
    bytes there, so they are peeked at first: a read without waiting would return fewer."""
    try:
        if flags & socket.MSG_WAITALL and len(
                sock.recv(size, socket.MSG_PEEK | socket.MSG_DONTWAIT)) < size:
            return None
        return sock.recv(size, flags | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None


def input_waiting(sock: socket.socket, encrypted: bool) -> bool:
    """Whether the client has sent bytes not read yet, or closed its side: for an
    ``encrypted`` socket, bytes TLS has decrypted already count too."""
    if encrypted and sock.pending():  # type: ignore[attr-defined]
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def drain(sock: socket.socket, seconds: float, most: int) -> None:
    """Read and drop what the client still sends, until it closes its side, ``most`` bytes
    went or ``seconds`` passed; a reset or a failed read ends it too.  For a socket whose
    sending side is shut, so that the client reads the whole answer before the close."""
    deadline = time.monotonic() + seconds
    drained = 0
    try:
        while drained < most:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                return
            sock.settimeout(timeout)
            chunk = sock.recv(65536)
            if not chunk:
                return
            drained += len(chunk)
    except OSError:  # reset, or the time ran out (socket.timeout)
        pass
