"""The forward proxy: requests for other hosts passed on to them, and CONNECT tunnels.

With ``[proxy] enabled``, :meth:`ForwardProxy.claims` picks the requests that are meant
for the proxy rather than for the files: every CONNECT, and every absolute-form request
(``GET http://example.com/ HTTP/1.1``) except those that name Nex itself, which RFC 9112
§3.2.2 has an origin server serve as its own.  For each, in this order:

1. an ``https://`` absolute-form target is ``400``: such requests go through a tunnel;
2. the admission checks (:mod:`nex.proxy.admission`: client network, loop, proxy login,
   blacklist, DNS, denied destinations, CONNECT port), the first refusal winning;
3. OPTIONS and TRACE with ``Max-Forwards: 0`` are answered here (RFC 9110 §7.6.2);
4. the request goes to the origin over a pooled connection (:mod:`nex.proxy.upstream`):
   origin-form, hop-by-hop fields removed and ``Via`` added (:mod:`nex.proxy.forwarding`), the
   body streamed from the client as it arrives; the response comes back the same way, its
   body streamed to the client while the origin sends it;
5. CONNECT opens a connection to the origin and, after ``200``, relays bytes both ways
   (:mod:`nex.proxy.tunnel`) until both sides have finished; so does a WebSocket upgrade
   (``GET`` with ``Upgrade: websocket``), passed on to the origin, once it answers ``101``.

Origin failures before the response head are ``502`` (refused, unreachable, unresolvable,
malformed) or ``504`` (too slow); after it, the client's connection is closed, since the
response cannot be completed.  Nothing here touches the client's socket except the tunnel.
"""

from __future__ import annotations

import functools
import socket
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Tuple

from nex.proxy.admission import Admission, Destination
from nex.proxy.blacklist import canonical_host
from nex.http.body import NO_LIMIT, BodyReader
from nex.http.dates import http_date_now
from nex.http.errors import HTTPError
from nex.proxy.forwarding import (RequestHeads, added_response_fields, answers_locally,
                                  new_pseudonym, parse_absolute_target, split_authority,
                                  via_carries, via_element)
from nex.http.framing import (CHUNK_END, IDEMPOTENT_METHODS, LAST_CHUNK, LENGTH, NO_BODY,
                              HeadLimits, chunk_size_line)
from nex.http.grammar import DEFAULT_PORTS
from nex.http.request import Request
from nex.http.response import BodyFault, Response
from nex.proxy.figures import Tally
from nex.proxy.pac import PAC_PATH, PAC_TYPE, pac_script, proxy_address
from nex.proxy.tunnel import relay
from nex.proxy.upstream import (Origin, OriginBodyError, OriginPool, ResponseHead,
                          StaleConnection, connect, open_connection)

if TYPE_CHECKING:
    from nex.process.config import Config

#: What an OPTIONS answered by the proxy itself says it passes on for an http:// target.
FORWARDED_METHODS = "GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"
#: Fields a TRACE echo leaves out: credentials are no business of whoever reads the echo.
_UNECHOED = frozenset({"authorization", "proxy-authorization", "cookie"})
#: The request's fields the admission checks read (lower case).
_ADMISSION_FIELDS = frozenset({"proxy-authorization", "via"})
_VIA = frozenset({"via"})
_USE_CONNECT = ("This proxy passes https:// addresses on only as tunnels: send CONNECT "
                "host:443 and speak TLS inside it, as browsers and curl do.")


class ForwardProxy:
    """The proxy of one Nex process: its admission checks, its pool of origin connections.

    Built once per process (each worker has its own pool and pseudonym) by
    :meth:`from_config`; every worker thread shares it.  ``pseudonym`` is the received-by
    name in ``Via`` (None with ``via = no``).
    """

    def __init__(self, config: Config, admission: Admission, pool: OriginPool,
                 pseudonym: Optional[str], on_error: Callable[[str], None]) -> None:
        self._config = config
        self._on_error = on_error
        self._admission = admission
        self._pool = pool
        self._pseudonym = pseudonym
        self._limits = HeadLimits.from_config(config)
        self._heads = RequestHeads(pseudonym, config.proxy_forwarded_for)
        #: :meth:`names_nex`, remembered: its answer depends on its arguments alone, and
        #: clients ask for a few origins again and again.
        self._names_nex = functools.lru_cache(maxsize=64)(self.names_nex)

    @classmethod
    def from_config(cls, config: Config, *, listen_port: int,
                    on_error: Callable[[str], None],
                    tally: Optional[Tally] = None) -> "ForwardProxy":
        """The proxy the ``[proxy]`` settings describe, for a server on ``listen_port``.

        ``on_error`` receives one line when the users or blacklist file turns bad while
        Nex runs, and one per ``502`` or ``504`` saying what failed; ``ValueError`` when one
        of those files is bad already.  The DNS cache and the origin pool count into
        ``tally`` (:mod:`nex.proxy.figures`).
        """
        pseudonym = new_pseudonym()
        admission = Admission.from_config(config, listen_port=listen_port,
                                          pseudonym=pseudonym, on_error=on_error, tally=tally)
        return cls(config, admission, OriginPool(tally=tally),
                   pseudonym if config.proxy_via else None, on_error)

    def claims(self, request: Request, local_address: Optional[str]) -> bool:
        """Whether ``request`` is for the proxy rather than for the files.

        CONNECT always is; an origin-form or ``*`` target never, but for ``/proxy.pac``
        with ``pac = yes``.  An absolute-form one is, unless it names Nex itself
        (:meth:`names_nex`); a request whose ``Via`` shows it already passed through this
        Nex is claimed either way, so that it gets ``508``.
        """
        if request.method == "CONNECT":
            return True
        target = request.target
        if target.startswith("/") or target == "*":
            return self._config.proxy_pac and request.path == PAC_PATH
        if self._pseudonym is not None and request.headers.has_any(_VIA) and via_carries(
                request.headers.get("Via"), self._pseudonym):
            return True
        return not self._names_nex(target[:target.index(":")].lower(), request.host,
                                   local_address)

    def names_nex(self, scheme: str, authority: str, local_address: Optional[str]) -> bool:
        """Whether an absolute URL's ``authority`` is Nex itself (the scheme's port when it
        gives none; see :class:`nex.proxy.itself.Itself`); ``local_address`` is the address
        of Nex the client reached."""
        try:
            host, port = split_authority(authority, DEFAULT_PORTS[scheme])
            name = canonical_host(host)
        except (HTTPError, ValueError):
            return False
        return self._admission.itself.is_host(name, port, local_address)

    def respond(self, request: Request, body: Optional[BodyReader], peer: str,
                local_address: Optional[str]) -> Response:
        """The response to a request :meth:`claims`, or the ``HTTPError`` refusing it.

        ``peer`` is the address of the client's connection (never one a header names);
        ``local_address`` the address of Nex it reached.  A ``502`` or ``504`` (the origin,
        the parent or DNS failed) is also reported in one line to ``on_error``.
        """
        if request.target.startswith("/"):
            return self._pac(request, local_address)
        try:
            if request.method == "CONNECT":
                return self._tunnel(request, peer, local_address)
            return self._forward(request, body, peer, local_address)
        except HTTPError as error:
            if error.status in (502, 504):
                self._on_error(f"proxy {request.method} {request.target} for {peer}:"
                               f" {error.status} {error.detail}")
            raise

    def _pac(self, request: Request, local_address: Optional[str]) -> Response:
        """``/proxy.pac`` (GET or HEAD): the proxy auto-config file naming this Nex."""
        if request.method not in ("GET", "HEAD"):
            raise HTTPError(405, headers=[("Allow", "GET, HEAD")])
        address = proxy_address(request.host, local_address or self._config.server_name,
                                self._admission.itself.listen_port)
        return Response(200, [("Content-Type", PAC_TYPE), ("Cache-Control", "no-cache")],
                        [pac_script(address)])

    def close(self) -> None:
        """Close the idle origin connections (at shutdown)."""
        self._pool.close()

    def _admit(self, request: Request, peer: str, local_address: Optional[str], host: str,
               port: int) -> Destination:
        fields = request.headers
        if fields.has_any(_ADMISSION_FIELDS):
            proxy_authorization, via = fields.get("Proxy-Authorization"), fields.get("Via")
        else:
            proxy_authorization = via = None
        return self._admission.admit(
            client=peer, method=request.method, host=host, port=port,
            proxy_authorization=proxy_authorization, via=via, local_address=local_address)

    def _tunnel(self, request: Request, peer: str, local_address: Optional[str]) -> Response:
        """Admit a CONNECT and connect to its destination: ``200`` with the tunnel."""
        host, port = split_authority(request.target, None)
        destination = self._admit(request, peer, local_address, host, port)
        config = self._config
        if destination.parent is None:
            origin_sock = open_connection(destination.addresses, config.proxy_connect_timeout)
            pending = b""
        else:
            origin = connect(_connection_key(destination), destination.addresses,
                             config.proxy_connect_timeout, config.proxy_upstream_timeout,
                             self._limits)
            try:
                pending = _parent_tunnel(origin, destination)
            except BaseException:
                origin.close()
                raise
            origin_sock = origin.sock
        return Response(200, tunnel=_Tunnel(origin_sock, config.proxy_tunnel_idle, pending),
                        user=destination.user, upstream=_authority(destination))

    def _forward(self, request: Request, body: Optional[BodyReader], peer: str,
                 local_address: Optional[str]) -> Response:
        """Pass an absolute-form request on to its origin; the origin's response."""
        target = parse_absolute_target(request.method, request.target)
        if target.scheme != "http":
            raise HTTPError(400, _USE_CONNECT)
        destination = self._admit(request, peer, local_address, target.host, target.port)
        if answers_locally(request.method, request.headers):
            return _answer_locally(request, destination.user)
        parent = destination.parent
        try:
            if parent is None:
                head, websocket = self._heads.head(request, peer)
            else:
                head, websocket = self._heads.head(request, peer, True, parent.authorization)
        except ValueError:
            raise HTTPError(400, "The request cannot be passed on as it is.") from None
        if body is not None:
            body.limit = NO_LIMIT  # streamed to the origin, never held
        origin, response_head = self._exchange(destination, head, body, request.method,
                                               websocket)
        try:
            if parent is not None and response_head.status == 407:
                raise HTTPError(502, "The parent proxy did not accept Nex's login.",
                                failure="parent_refused")
            if response_head.status == 101:
                response = self._switch(origin, response_head, destination.user)
            else:
                response = self._relay(origin, response_head, destination.user)
        except BaseException:
            origin.close()
            raise
        response.upstream = _authority(destination)
        return response

    def _switch(self, origin: Origin, head: ResponseHead, user: Optional[str]) -> Response:
        """The origin's ``101`` to a WebSocket upgrade, the tunnel to run after it."""
        via = via_element(head.version, self._pseudonym) if self._pseudonym is not None else None
        fields = added_response_fields(head.relayed, via, http_date_now)
        fields += [("Connection", "Upgrade"), ("Upgrade", "websocket")]
        sock, pending = origin.detach()
        return Response(101, fields, forwarded=True, made_fields=head.relayed.text, user=user,
                        reason=head.reason,
                        tunnel=_Tunnel(sock, self._config.proxy_tunnel_idle, pending))

    def _relay(self, origin: Origin, head: ResponseHead, user: Optional[str]) -> Response:
        """The client's response to the origin's ``head``, its body to come from ``origin``."""
        via = via_element(head.version, self._pseudonym) if self._pseudonym is not None else None
        response = Response(head.status, added_response_fields(head.relayed, via, http_date_now),
                            forwarded=True, made_fields=head.relayed.text, user=user,
                            reason=head.reason)
        length = head.content_length
        if head.framing == LENGTH and length is not None and length <= origin.buffered:
            # The whole body came with the head: it goes out with the head in one write,
            # and the connection back to the pool at once.
            response.body = (origin.buffered_body(head),)
            self._pool.release(origin)
            return response
        response.stream = _OriginBody(self._pool, origin, head)
        if head.status != 204 and head.framing in (LENGTH, NO_BODY):
            response.stream_length = length  # also for HEAD and 304 (RFC 9110 §8.6)
        return response

    def _exchange(self, destination: Destination, head: bytes, body: Optional[BodyReader],
                  method: str, upgrade: bool = False) -> Tuple[Origin, ResponseHead]:
        """Send the request over a pooled connection and read the response head.

        A pooled connection the origin had closed fails before any byte of the response
        (:class:`StaleConnection`).  An idempotent request goes once more over a new
        connection when none of its body has been read yet, since only then can it be sent
        again whole; any other request is never sent twice (RFC 9112 §9.3.1) and ends in
        ``502``.
        """
        config = self._config
        origin = self._pool.connect(*_connection_key(destination), destination.addresses,
                                    connect_timeout=config.proxy_connect_timeout,
                                    upstream_timeout=config.proxy_upstream_timeout,
                                    limits=self._limits)
        while True:
            try:
                _send_request(origin, head, body)
                return origin, origin.read_head(method, upgrade)
            except StaleConnection:
                origin.close()
                if method not in IDEMPOTENT_METHODS or (body is not None and body.received):
                    raise
                origin = self._pool.open_new(
                    _connection_key(destination), destination.addresses,
                    connect_timeout=config.proxy_connect_timeout,
                    upstream_timeout=config.proxy_upstream_timeout, limits=self._limits)
            except BaseException:
                origin.close()
                raise


def _connection_key(destination: Destination) -> Tuple[str, int]:
    """Where a destination's connection goes: its parent proxy, or the origin itself."""
    parent = destination.parent
    return (destination.host, destination.port) if parent is None else (parent.host,
                                                                         parent.port)


def _parent_tunnel(origin: Origin, destination: Destination) -> bytes:
    """Ask the parent proxy on ``origin`` for a tunnel to the destination; the bytes that
    came after its ``2xx`` head.  ``502`` naming the parent's status when it refuses."""
    origin.send(destination.parent.connect_head(_authority(destination)))
    head = origin.read_head("CONNECT")
    if not 200 <= head.status < 300:
        raise HTTPError(502, f"The parent proxy refused the tunnel with {head.status}.",
                        failure="parent_refused")
    return origin.detach()[1]


def _send_request(origin: Origin, head: bytes, body: Optional[BodyReader]) -> None:
    """Send ``head`` and the body as it arrives from the client, chunked again if it came
    chunked (its chunk extensions and trailer fields are not passed on)."""
    origin.send(head)
    if body is None:
        return
    chunked = body.length is None
    for piece in body:
        origin.send(b"".join((chunk_size_line(len(piece)), piece, CHUNK_END)) if chunked
                    else piece)
    if chunked:
        origin.send(LAST_CHUNK)


def _answer_locally(request: Request, user: Optional[str]) -> Response:
    """The proxy's own answer to OPTIONS or TRACE with ``Max-Forwards: 0`` (RFC 9110 §7.6.2):
    OPTIONS lists what it passes on; TRACE echoes the request head as it arrived
    (§9.3.8), without credentials."""
    if request.method == "OPTIONS":
        return Response(200, [("Allow", FORWARDED_METHODS)], user=user)
    lines = [request.request_line] + [f"{name}: {value}"
                                      for name, value in request.headers.items()
                                      if name.lower() not in _UNECHOED]
    echo = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return Response(200, [("Content-Type", "message/http")], [echo], user=user)


class _OriginBody:
    """An origin's response body, as the writer streams it to the client.

    Iterating reads the body from the origin; a body that breaks off is a
    :class:`BodyFault`, which closes the client's connection.  :meth:`close` (the
    response's ``release()``) returns the connection to the pool when it carried a whole
    response and may carry another, and closes it otherwise.
    """

    def __init__(self, pool: OriginPool, origin: Origin, head: ResponseHead) -> None:
        self._pool = pool
        self._origin: Optional[Origin] = origin
        self._pieces = origin.read_body(head)
        if head.framing == NO_BODY:
            for _ in self._pieces:  # nothing to read; marks the connection reusable
                pass

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._pieces
        except OriginBodyError as error:
            raise BodyFault(f"the origin's response broke off: {error}") from None

    def close(self) -> None:
        """Give the origin connection back, or close it; later calls do nothing."""
        if self._origin is not None:
            origin, self._origin = self._origin, None
            self._pieces.close()
            self._pool.release(origin)


class _Tunnel:
    """A tunnel (CONNECT, or WebSocket after ``101``) to the origin connected on
    ``origin_sock``, which already sent ``origin_pending``."""

    def __init__(self, origin_sock: socket.socket, idle_timeout: float,
                 origin_pending: bytes = b"") -> None:
        self._origin_sock = origin_sock
        self._idle_timeout = idle_timeout
        self._origin_pending = origin_pending

    def __call__(self, client_sock: socket.socket, pending: bytes) -> Tuple[int, int]:
        """Relay until the tunnel ends, then close the origin connection."""
        try:
            return relay(client_sock, self._origin_sock, self._idle_timeout, pending,
                         origin_pending=self._origin_pending)
        finally:
            self.close()

    def close(self) -> None:
        """Close the origin connection."""
        self._origin_sock.close()


def _authority(destination: Destination) -> str:
    """The destination as ``host:port``, an IPv6 address in brackets: the target of a
    CONNECT to the parent proxy, and the origin the access log names."""
    return _host_port(destination.host, destination.port)


@functools.lru_cache(maxsize=256)  # per request; clients reach the same few origins
def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
