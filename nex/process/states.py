"""The states of a connection, the moves between them, and whether it stays open; and the
flag that says its server is stopping.

:class:`nex.process.connection.Connection` goes from state to state only along
:data:`TRANSITIONS`; :func:`stays_open` is the one decision whether it goes back to IDLE
after a response, and a stopping server's (:class:`StopFlag`) keep none open nor open a
new tunnel (:func:`refuse_new_tunnel`).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Optional

from nex.http.errors import HTTPError
from nex.http.framing import UNTIL_CLOSE, outgoing_framing

if TYPE_CHECKING:
    from nex.http.body import BodyReader
    from nex.http.request import Request
    from nex.http.response import Response

#: Statuses after which the rest of the byte stream cannot be trusted to be framed right.
_CLOSING_STATUSES = frozenset({400, 408, 413, 414, 431, 500, 501, 505})


class State(enum.Enum):
    """Where a connection is in its life."""

    PROXY_HEADER = "receiving the PROXY protocol header from a load balancer"
    HANDSHAKING = "looking at the first bytes, then completing the TLS handshake"
    IDLE = "waiting for the first byte of a request"
    READING_HEAD = "receiving a request head"
    ANSWERING = "handling a request; its body is read, streamed or discarded"
    SENDING = "sending a response"
    TUNNEL = "relaying bytes both ways after CONNECT"
    CLOSING = "half-closed, draining what the client still sends"
    CLOSED = "closed"

    # Members are singletons compared by identity: hashing them by identity too (in C)
    # spares each transition's table look-ups the Python-level ``Enum.__hash__``.
    __hash__ = object.__hash__


TRANSITIONS = {
    State.PROXY_HEADER: frozenset({State.IDLE, State.HANDSHAKING, State.SENDING, State.CLOSED}),
    State.HANDSHAKING: frozenset({State.IDLE, State.SENDING, State.CLOSED}),
    State.IDLE: frozenset({State.READING_HEAD, State.SENDING, State.CLOSED}),
    State.READING_HEAD: frozenset({State.ANSWERING, State.SENDING, State.CLOSED}),
    State.ANSWERING: frozenset({State.SENDING, State.CLOSED}),
    State.SENDING: frozenset({State.IDLE, State.TUNNEL, State.CLOSING, State.CLOSED}),
    State.TUNNEL: frozenset({State.CLOSED}),
    State.CLOSING: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


def stays_open(request: Optional[Request], response: Response, body: Optional[BodyReader],
               stopping: bool) -> bool:
    """Whether the connection waits for another request after ``response`` (RFC 9112 §9).

    It does only when the request asked for it (HTTP/1.1 by default, HTTP/1.0 with
    ``keep-alive``; ``Connection: close`` either way), the response neither asks to close
    nor has a status that leaves the byte stream's framing in doubt (a status relayed from
    an origin says nothing about this connection), the request body was read to its end,
    the response's own end is marked by its framing rather than by closing (a response to
    HEAD has no body to end), no tunnel takes the connection over, and the server is not
    stopping.
    """
    return (request is not None and request.keep_alive and not stopping
            and not response.close
            and (response.forwarded or response.status not in _CLOSING_STATUSES)
            and response.tunnel is None and (body is None or body.done)
            # An HTTP/1.1 client takes chunked, so only an HTTP/1.0 one can get a body whose
            # end is the connection's.
            and (request.version == "HTTP/1.1" or request.method == "HEAD"
                 or outgoing_framing(response.content_length, response.status,
                                     False) != UNTIL_CLOSE))


def refuse_new_tunnel(request: Request) -> None:
    """On a stopping server, refuse (``503``, ``Retry-After: 0``) a request that could open a
    tunnel: CONNECT, or any with ``Upgrade``.

    A tunnel outlives the stop's grace period: a reload leaves it to drain on the settings
    it replaced for as long as it carries traffic.  A client that connected just before a
    reload would reach, on the old settings, what the new ones may refuse; asked again, the
    server that took over answers.
    """
    if request.method == "CONNECT" or "Upgrade" in request.headers:
        raise HTTPError(503, "Nex is restarting: ask again.", headers=[("Retry-After", "0")],
                        close=True)


class StopFlag:
    """Whether a server is stopping: set once, read by every thread.

    A plain attribute rather than a ``threading.Event``: the signal handler sets it, and a
    second signal can run its handler in the main thread while the first one is still
    inside ``Event.set``, holding the event's lock, which the second would then wait for
    forever.  Nothing waits on this flag; the threads that must notice it are woken by other
    means (the accept loop's wake-up pipe, :meth:`Connection.wake`).
    """

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        """Mark the server as stopping."""
        self._set = True

    def is_set(self) -> bool:
        """Whether the server is stopping."""
        return self._set
