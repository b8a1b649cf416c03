"""What a client has sent that Nex has not read yet, looked at without waiting for more.

A newcomer's thread reads what already came before it counts as under way (it contends for
nothing while it waits), and a stopping server answers a request that has already arrived
rather than closing on it, since closing a socket with unread input resets the connection
and destroys what was not sent yet.
"""

from __future__ import annotations

import select
import socket
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
