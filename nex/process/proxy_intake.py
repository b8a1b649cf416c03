"""Taking a PROXY protocol header off a new connection, before TLS and before any request.

:func:`take_proxy_header` reads exactly the header's bytes from the socket and no more, so
what follows (a request, or a TLS handshake) is still there for the next stage.  It peeks
first (``MSG_PEEK``), and waits for a header split across packets with ``MSG_WAITALL`` one
byte further, so that it never spins on bytes already seen.  A connection from an address
that is not a trusted proxy must not send a header; one that does is refused with ``400``.
"""

from __future__ import annotations

import socket
from typing import Callable, Optional, Tuple

from nex.http.errors import HTTPError
from nex.http.proxy_header import (MAX_LENGTH, MIN_LENGTH, ProxyHeaderError, parse,
                                   starts_like_proxy_header)

#: ``receive(size, flags)``: up to ``size`` bytes, b"" once the peer closed, None on time-out.
Receive = Callable[[int, int], Optional[bytes]]
_PEEK = socket.MSG_PEEK
_PEEK_ALL = socket.MSG_PEEK | socket.MSG_WAITALL


def take_proxy_header(receive: Receive, versions: str,
                      trusted: bool) -> Tuple[bool, Optional[str], bytes]:
    """Read the PROXY header a connection starts with.

    Returns ``(go_on, client, seen)``: whether requests may follow, the client address the
    header carries (None: none, keep the connection's), and the bytes looked at (for the log
    line of a refusal).  From a ``trusted`` peer the header of one of ``versions`` (``v1``,
    ``v2``, ``any``) is required; from anyone else a header is refused.  Raises
    ``HTTPError(400)`` for a header that is malformed, missing or not allowed.
    """
    if not trusted:
        start = receive(6, _PEEK_ALL)
        if start and starts_like_proxy_header(start):
            raise HTTPError(400, "A PROXY protocol header is accepted only from a trusted "
                                 "proxy.", close=True)
        return True, None, b""
    seen = receive(MIN_LENGTH, _PEEK_ALL)
    while seen:
        try:
            header = parse(seen, versions)
        except ProxyHeaderError as error:
            raise _refusal(str(error)) from None
        if header is not None:
            taken = receive(header.length, socket.MSG_WAITALL)
            return taken is not None and len(taken) == header.length, header.client, seen
        more = receive(len(seen) + 1, _PEEK_ALL)  # waits for the next byte
        if not more or len(more) <= len(seen):
            return False, None, seen  # closed or timed out inside the header
        seen = receive(MAX_LENGTH, _PEEK) or more
    return False, None, b""


def _refusal(why: str) -> HTTPError:
    return HTTPError(400, f"The connection must start with a valid PROXY protocol header: "
                          f"{why}.", close=True)
