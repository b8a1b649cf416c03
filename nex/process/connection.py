"""The connection: one client's requests, in order, over one socket.

A connection moves through the states of :class:`State`; :meth:`Connection._enter` is the
only place the state changes, and it refuses a transition the table does not allow::

    HANDSHAKING (TLS) ──TLS up──▶ IDLE; ──plain HTTP──▶ SENDING (400); ──failed──▶ CLOSED
    IDLE ──first byte──▶ READING_HEAD ──head──▶ ANSWERING ──▶ SENDING ──▶ IDLE (keep-alive)
      │                      │ (bad head, time-out)              │ ├──▶ TUNNEL (CONNECT) ──▶ CLOSED
      └──client left──▶ CLOSED └────────────────▶ SENDING        │ └──▶ CLOSING ──▶ CLOSED
                                                                  └──▶ CLOSED

A plain connection starts in IDLE, a TLS one in HANDSHAKING; with ``proxy_protocol`` both
start in PROXY_HEADER, which leads to either (or to SENDING a 400).  :func:`stays_open` is
the one decision whether the connection goes back to IDLE.  Time limits apply to waiting for
a request (idle keep-alive), to receiving its head (a slow client must deliver the whole head
within ``request_head_timeout`` of its first byte, or for a new connection of its accept,
however it dribbles it; the TLS handshake counts against that same limit), to each wait for
request body bytes (``request_head_timeout`` again), to a request body's average rate (at
least ``body_min_rate``) and to sending (``send_timeout``, and ``min_send_rate`` on
average).  Every response, also the page that turns away a client over a connection cap
(:meth:`Connection.turn_away`), is written by :meth:`Connection._send` and logged exactly
once (a CONNECT tunnel's when the tunnel ends), with the body bytes actually sent.  A client
that resets the connection inside a request body is no server fault: the handler lets go of
what it holds, nothing is sent, and one access line says ``400`` with the body bytes
received (`` received=N``).

On a TLS connection the kernel's time-outs (SO_RCVTIMEO, SO_SNDTIMEO) are of no use: a
blocking ``SSLSocket`` whose ``recv`` or ``send`` times out in the kernel retries it for
ever.  Such a connection uses the socket's Python time-out instead, one value for both
directions, set before each receive and each response.
"""

from __future__ import annotations

import socket
import time
from typing import Callable, Optional, Sequence, Tuple, Union

from nex.http.body import BodyReader
from nex.site.routing import Dispatcher
from nex.http.errors import HTTPError
from nex.process.gone import ClientGone, client_gone
from nex.process.log import Logger, first_line
from nex.http.framing import HeadLimits
from nex.http.request import HeadScanner, Request, expects_continue, parse_head
from nex.http.response import TIMED_OUT, BodyFault, Progress, Response, timeval, write_interim, \
    write_response
from nex.process.metrics import Metrics
from nex.process.newcomers import Newcomers
from nex.process.unread import already_sent, drain, input_waiting
from nex.process.proxy_intake import take_proxy_header
from nex.process.states import TRANSITIONS, State, StopFlag, refuse_new_tunnel, stays_open
from nex.process.tls import ServerTLS, is_plain_http, send_close_notify

_RECV_SIZE = 64 * 1024
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 256 * 1024
_PLAIN_HTTP_DETAIL = ("This port speaks HTTPS: the request came as plain HTTP. "
                     "Use an https:// address instead of http://.")


class Connection:
    """Serves the requests that arrive on one accepted socket.

    With ``tls`` the client must first complete a TLS handshake with its context; a client
    that sends plain HTTP instead gets a ``400`` page in plain text.  ``accepted`` is when
    the listener accepted the socket (default: now).  With ``proxy_protocol`` the client a
    trusted proxy's header names becomes :attr:`client`; ``readmit(self, client)`` then
    counts the connection as that client's, or gives the refusal of a client at its cap.
    ``metrics`` counts the responses and tunnels, and may answer a request itself.
    """

    def __init__(self, sock: socket.socket, client: str, dispatcher: Dispatcher,
                 logger: Logger, stopping: StopFlag,
                 tls: Optional[ServerTLS] = None, *, accepted: Optional[float] = None,
                 readmit: Optional[Callable[["Connection", str], Optional[HTTPError]]] = None,
                 metrics: Optional[Metrics] = None,
                 newcomers: Optional[Newcomers] = None) -> None:
        self.sock = sock
        self.client = client
        #: The address the listener counts this connection under (its caps).
        self.counted_as = client
        self._readmit = readmit
        self._metrics = metrics
        self.state = State.IDLE if tls is None else State.HANDSHAKING
        if dispatcher.config.proxy_protocol != "no":
            self.state = State.PROXY_HEADER
        #: Whether TLS is up: the socket is then an ``ssl.SSLSocket`` with a Python time-out.
        self.encrypted = False
        self._tls = tls
        self._owes_close_notify = False
        #: When the socket was accepted (``time.monotonic()``), which the first head's
        #: deadline counts from; ``_kept_alive``: whether a response went out and the
        #: connection stayed open for another request.
        self._accepted = time.monotonic() if accepted is None else accepted
        self._kept_alive = False
        #: When the request being answered began to arrive (its duration is logged).
        self._request_started = self._accepted
        self._dispatcher = dispatcher
        self._config = dispatcher.config
        self._limits = HeadLimits.from_config(dispatcher.config)
        self._head_scanner = HeadScanner(self._limits)
        self._logger = logger
        self._stopping = stopping
        self._buffer = bytearray()
        #: The bytes of the head being parsed, so a request refused as malformed is logged.
        self._head_bytes: Union[bytes, bytearray] = b""
        self._receive_timeout = -1.0
        #: The body reader of the request being answered, for the bytes it took in.
        self._body: Optional[BodyReader] = None
        #: Counts the body bytes of the response being sent (one, reset per response).
        self._progress = Progress()
        #: Strict-Transport-Security for Nex's own responses over TLS (RFC 6797 §7.2: never
        #: over plain HTTP); None when it is not sent.
        self._hsts = (("Strict-Transport-Security", f"max-age={self._config.tls_hsts}")
                      if tls is not None and self._config.tls_hsts else None)
        #: The address of Nex the client reached, which the proxy's checks need.
        self._local_address: Optional[str] = (
            sock.getsockname()[0] if dispatcher.proxy is not None else None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        timeval(dispatcher.config.send_timeout))
        #: The listener's newcomers (see :mod:`nex.process.newcomers`), and whether this
        #: connection is still counted among them.
        self._newcomers = newcomers
        self._newcomer = newcomers is not None
        if newcomers is not None:
            newcomers.arrive()

    @property
    def tunnelling(self) -> bool:
        """Whether the connection relays a tunnel (CONNECT, WebSocket)."""
        return self.state is State.TUNNEL

    @property
    def waiting(self) -> bool:
        """Whether the client has yet to begin a request, the TLS handshake or PROXY header."""
        return self.state in (State.IDLE, State.HANDSHAKING, State.PROXY_HEADER)

    @property
    def busy(self) -> bool:
        """Whether a request is being answered (a stopping server waits for these)."""
        return self.state in (State.ANSWERING, State.SENDING, State.TUNNEL)

    def serve(self) -> None:
        """Run the loop until the client leaves, a time limit passes, or the server stops."""
        try:
            if self.state is State.PROXY_HEADER and not self._take_proxy_header():
                return
            if self._tls is None or self._start_tls():
                self._serve_requests()
        except OSError:
            pass  # the client went away, stopped reading or failed the handshake
        except Exception:
            self._logger.exception(f"unexpected fault on the connection from {self.client}")
        finally:
            self._under_way()
            self.state = State.CLOSED
            self._close_notify()
            self.sock.close()

    def wake(self, new_too: bool) -> None:
        """Wake the loop if it waits for a next request, so that a stopping server need not
        wait for it; with ``new_too`` also if it waits for a first request or handshake (a
        server making way for a reload answers those instead)."""
        if self.waiting and (new_too or self._kept_alive):
            self._shut_down_transport(socket.SHUT_RD)

    def abort(self) -> None:
        """End a transfer the server will not wait for: its write fails and is logged."""
        self._shut_down_transport(socket.SHUT_RDWR)

    def _shut_down_transport(self, how: int) -> None:
        """Shut the TCP connection down from another thread.  ``SSLSocket.shutdown`` would
        also drop the TLS layer under the worker, which could then read ciphertext as if it
        were a request: the plain socket's method leaves it."""
        try:
            socket.socket.shutdown(self.sock, how)
        except OSError:
            pass

    def _under_way(self) -> None:
        """Stop counting this connection as a newcomer, if it still is one."""
        if self._newcomer:
            self._newcomer = False
            self._newcomers.settle()

    def _enter(self, state: State) -> None:
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"connection cannot go from {self.state.name} to {state.name}")
        self.state = state

    def _take_proxy_header(self) -> bool:
        """Take the PROXY header off the connection (see :mod:`nex.process.proxy_intake`)
        and serve the client it names; return whether requests can follow."""
        deadline = self._accepted + self._config.request_head_timeout
        forwarded = self._dispatcher.forwarded
        try:
            go_on, client, seen = take_proxy_header(
                lambda size, flags: self._receive(deadline, 0, size, flags),
                self._config.proxy_protocol,
                forwarded is not None and forwarded.is_trusted(self.client))
        except HTTPError as error:
            self._refuse(error)
            return False
        self._head_bytes = seen
        if not go_on:
            return False
        if client is not None:
            refusal = None if self._readmit is None else self._readmit(self, client)
            self.client = client
            if refusal is not None:
                self.turn_away(refusal)
                return False
        self._enter(State.IDLE if self._tls is None else State.HANDSHAKING)
        return True

    def _start_tls(self) -> bool:
        """Complete the TLS handshake before the first head's deadline; return whether
        requests can follow.

        The first byte is peeked at first: a plain HTTP request gets the 400 page that says
        this port speaks HTTPS, in plain text, instead of a failed handshake.
        """
        deadline = self._accepted + self._config.request_head_timeout
        first = self._receive(deadline, 0, 1, socket.MSG_PEEK)
        if not first:
            return False  # closed or timed out before sending anything
        if is_plain_http(first):
            pending = self._receive(deadline, 0)
            self._buffer += pending or b""
            self._head_bytes = self._buffer  # so the log shows the request line
            self._refuse(HTTPError(400, _PLAIN_HTTP_DETAIL, close=True))
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self._under_way()  # the handshake's waits are not a newcomer's
        self.sock = self._tls.wrap(self.sock)
        self.encrypted = True
        self._receive_timeout = -1.0  # from now on the socket's Python time-out counts
        self._set_receive_timeout(remaining)
        self.sock.do_handshake()
        self._owes_close_notify = True
        self._enter(State.IDLE)
        return True

    def _serve_requests(self) -> None:
        newcomers = self._newcomers
        while True:
            try:
                request = self._read_request()
            except HTTPError as error:
                self._refuse(error)
                return
            if request is None:
                return
            if not self._kept_alive:
                self._under_way()
            if not self._answer(request):
                return
            if newcomers is not None and newcomers.waiting:
                newcomers.give_way()

    def _refuse(self, error: HTTPError) -> None:
        """Answer a request that could not be read with ``error``'s page, then close."""
        self._under_way()  # the lingering close waits for the client
        self._enter(State.SENDING)
        self._send(self._dispatcher.error_response(error), None, keep_alive=False)
        self._linger()

    def turn_away(self, error: HTTPError) -> None:
        """Answer a client Nex will not serve (a connection cap is reached) with ``error``'s
        page, then close, never waiting on the client: the accept loop calls this, so the
        page goes out only as far as the socket's buffer takes it at once, and nothing the
        client sends is read.  A TLS client is closed without the page: it would need a
        handshake, and handshakes happen only in worker threads.
        """
        try:
            if self._tls is None:
                self.sock.setblocking(False)
                self._enter(State.SENDING)
                self._send(self._dispatcher.error_response(error), None, keep_alive=False)
                self.sock.shutdown(socket.SHUT_WR)
            else:
                self._logger.access(self.client, "-", error.status, 0, None, None,
                                    refusal=error.refusal)
        except OSError:
            pass
        finally:
            self._under_way()
            self.state = State.CLOSED
            self.sock.close()

    def _answer(self, request: Request) -> bool:
        """Respond to ``request``; return whether the connection stays open."""
        self._enter(State.ANSWERING)
        body = self._body = None
        if request.has_body:
            body = self._body = BodyReader(
                request, self._buffer, self._receive_body, self._config.request_head_timeout,
                self._config.max_request_body, self._limits,
                self._send_continue if expects_continue(request) else None,
                self._send_interim if request.version == "HTTP/1.1" else None,
                min_rate=self._config.body_min_rate, grace=self._config.body_grace)
        client = self._client_of(request)
        try:
            if self._stopping.is_set():
                refuse_new_tunnel(request)
            response = None if self._metrics is None else self._metrics.answer(request, client)
            if response is None:
                response = self._dispatcher.respond(request, body, client, peer=self.client,
                                                    local_address=self._local_address)
        except ClientGone as gone:
            self._log_gone(request, body, gone)
            return False
        except HTTPError as error:
            response = self._dispatcher.error_response(error, request)
        except Exception:
            self._logger.exception(f"fault while answering {request.request_line!r}")
            response = self._dispatcher.error_response(HTTPError(500, close=True), request)
        # A body nobody read is discarded so the next request can be found; not after an
        # error (the connection closes instead), nor while the client still waits for
        # 100 Continue (it may never send the body: close and let it be).
        if (body is not None and not body.done and response.status < 400
                and not body.awaiting_continue):
            try:
                body.discard()
            except HTTPError as error:
                response.release()
                if isinstance(error, ClientGone):
                    self._log_gone(request, body, error)
                    return False
                response = self._dispatcher.error_response(error, request)
        keep_alive = stays_open(request, response, body, self._stopping.is_set())
        self._enter(State.SENDING)
        if response.tunnel is not None:
            self._run_tunnel(request, response)
            return False
        self._send(response, request, keep_alive=keep_alive, client=client)
        if keep_alive:
            self._kept_alive = True
            self._enter(State.IDLE)
            return True
        # Unread input (a body, pipelined requests, a next request of a client that asked for
        # keep-alive) would turn the close into a reset, destroying what is not sent yet.
        if ((body is not None and not body.done) or response.status >= 400 or self._buffer
                or (request.keep_alive and input_waiting(self.sock, self.encrypted))):
            self._linger()
        return False

    def _run_tunnel(self, request: Request, response: Response) -> None:
        """Send a CONNECT's ``2xx`` head, then relay until the tunnel ends.

        The response is logged once, when the tunnel has ended: its size is the bytes
        relayed to the client, and ``up=N down=N`` at the end of the line counts both ways.
        A head that cannot be sent closes the tunnel unrun and is logged as it failed.
        """
        tunnel = response.tunnel
        try:
            self._send(response, request, keep_alive=False, tunnel_follows=True)
        except BaseException:
            tunnel.close()
            raise
        self._enter(State.TUNNEL)
        pending = bytes(self._buffer)
        self._buffer.clear()
        up = down = 0
        if self._metrics is not None:
            self._metrics.tunnel_opened()
        try:
            up, down = tunnel(self.sock, pending)
        finally:
            if self._metrics is not None:
                self._metrics.tunnel_closed()
            self._log(request, response, down, f" up={up} down={down}", relayed=up)

    def _read_request(self) -> Optional[Request]:
        """The next request head, or None when the client closed or sent nothing in time.

        A new connection's first head must be complete ``request_head_timeout`` after the
        accept, so that a slow client's wait (or handshake) buys it no second time-out; a
        next head must begin within ``keep_alive_timeout``, which a stopping server cuts
        short, and be complete ``request_head_timeout`` after its first byte.
        """
        buffer = self._head_bytes = self._buffer
        deadline = None if self._kept_alive else self._accepted + self._config.request_head_timeout
        while True:
            if buffer:
                if self.state is State.IDLE:
                    self._enter(State.READING_HEAD)
                    self._request_started = time.monotonic()
                bounds = self._head_scanner.scan(buffer)
                if bounds is not None:
                    start, end = bounds
                    if start or end < len(buffer):
                        with memoryview(buffer) as view:
                            head = bytes(view[start:end])  # one copy, not slice then bytes
                    else:
                        head = bytes(buffer)  # the usual case: the buffer holds the head alone
                    del buffer[:end]
                    self._head_scanner.reset()
                    self._head_bytes = head
                    return parse_head(head, self._limits)
                if deadline is None:
                    deadline = time.monotonic() + self._config.request_head_timeout
            chunk = self._receive(deadline, self._config.keep_alive_timeout)
            if chunk is None:
                if not buffer:
                    return None
                raise HTTPError(408, "The request head did not arrive in time.", close=True)
            if not chunk:
                return None
            buffer += chunk

    def _receive(self, deadline: Optional[float], idle_timeout: float,
                 size: int = _RECV_SIZE, flags: int = 0) -> Optional[bytes]:
        """Up to ``size`` bytes from the client; b"" when it closed; None when time ran out.

        Without a ``deadline`` the connection is idle: it waits ``idle_timeout`` and a
        stopping server ends the wait, unless the client has sent something already.
        ``flags`` go to ``recv`` (MSG_PEEK before TLS).
        """
        if deadline is None:
            # A next request already sent is arriving, not idle: it gets its answer.
            if self._stopping.is_set() and not input_waiting(self.sock, self.encrypted):
                return b""
            timeout = idle_timeout
        else:
            timeout = deadline - time.monotonic()
        if timeout <= 0:
            return None
        if self._newcomer and not self.encrypted:
            chunk = already_sent(self.sock, size, flags)
            if chunk is not None:
                return chunk
            self._under_way()  # a newcomer is under way once it has to wait for the client
        self._set_receive_timeout(timeout)
        try:
            return self.sock.recv(size, flags)
        except TIMED_OUT:  # SO_RCVTIMEO, or a TLS socket's own time-out, ran out
            return None

    def _receive_body(self, deadline: float) -> bytes:
        """Bytes of a request body, or 408 once ``deadline`` passed (for a body reader).

        A client that resets the connection raises :class:`ClientGone`, which handlers
        treat as any refusal of the body (an upload removes its temporary file).
        """
        try:
            chunk = self._receive(deadline, 0)
        except OSError as error:
            if client_gone(error):
                raise ClientGone() from None
            raise
        if chunk is None:
            raise HTTPError(408, "The request body did not arrive in time.", close=True)
        return chunk

    def _send_continue(self) -> None:
        """Ask for the body; a client gone meanwhile raises :class:`ClientGone`."""
        self._set_send_timeout()
        try:
            write_interim(self.sock, 100)
        except OSError as error:
            if client_gone(error):
                raise ClientGone() from None
            raise

    def _send_interim(self, status: int, headers: Sequence[Tuple[str, str]]) -> None:
        """Send a handler's interim response; a client gone meanwhile is no fault (400)."""
        self._set_send_timeout()
        try:
            write_interim(self.sock, status, headers)
        except OSError:
            raise HTTPError(400, "The client went away during an interim response.",
                            close=True) from None

    def _set_receive_timeout(self, seconds: float) -> None:
        """Bound the next ``recv`` in the kernel (SO_RCVTIMEO), or on a TLS connection with
        the socket's Python time-out.

        A Python-level socket timeout would ``poll`` before every ``recv`` and ``send``; the
        kernel's own time-outs cost no extra system call, and a changed value costs one.
        """
        if seconds != self._receive_timeout:
            self._receive_timeout = seconds
            if self.encrypted:
                self.sock.settimeout(seconds)
            else:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(seconds))

    def _set_send_timeout(self) -> None:
        """On TLS, set the socket's one time-out to send's (plain ones keep SO_SNDTIMEO)."""
        if self.encrypted:
            self.sock.settimeout(self._config.send_timeout)
            self._receive_timeout = -1.0

    def _send(self, response: Response, request: Optional[Request], *,
              keep_alive: bool, tunnel_follows: bool = False,
              client: Optional[str] = None) -> None:
        """Write ``response`` and log it, once, with the body bytes that went out.

        A client that went away is not an error worth a line; a body the server could not
        produce whole is, without a traceback.  Either way the connection then closes.
        With ``tunnel_follows`` a response written whole is left for the tunnel to log.
        ``client`` is :meth:`_client_of` the request when the caller has it already.
        """
        progress = self._progress
        progress.body_sent = 0
        written = False
        if self._hsts is not None and self.encrypted and not response.forwarded:
            response.headers = [*response.headers, self._hsts]
        try:
            self._set_send_timeout()
            write_response(self.sock, response,
                           head_only=request is not None and request.method == "HEAD",
                           keep_alive=keep_alive, min_rate=self._config.min_send_rate,
                           grace=self._config.send_timeout,
                           chunked_allowed=request is not None and request.version == "HTTP/1.1",
                           progress=progress, encrypted=self.encrypted)
            written = True
        except BodyFault as fault:
            self._logger.warning(f"response to {self.client} cut short: {fault}")
            raise
        except OSError as error:
            if not client_gone(error):
                self._logger.warning(f"sending to {self.client} failed: {error}")
            raise
        finally:
            if not (written and tunnel_follows):
                self._log(request, response, progress.body_sent, client=client)

    def _client_of(self, request: Request) -> str:
        """The client ``request`` comes from: the peer, or whom trusted proxies forwarded for."""
        forwarded = self._dispatcher.forwarded
        if forwarded is None:
            return self.client
        return forwarded.client(self.client, request.headers.get("X-Forwarded-For"))

    def _log(self, request: Optional[Request], response: Response, sent: int,
             suffix: str = "", client: Optional[str] = None, relayed: int = 0) -> None:
        """Log ``response`` with ``sent`` body bytes; ``relayed``: bytes a tunnel took in."""
        received = len(self._head_bytes) + relayed
        if self._body is not None:
            received += self._body.received
            self._body = None
        if self._metrics is not None:
            self._metrics.request_done(request, response, sent, received, len(self._head_bytes))
        if request is None:
            client, referer, agent = self.client, None, None
            request_line = first_line(self._head_bytes) if self._head_bytes else "-"
        else:
            client = client or self._client_of(request)
            request_line = request.request_line
            referer = request.headers.get("Referer")
            agent = request.headers.get("User-Agent")
        self._logger.access(client, request_line, response.status, sent, referer, agent,
                            user=response.user, suffix=suffix,
                            duration_us=int((time.monotonic() - self._request_started) * 1e6),
                            received=received, upstream=response.upstream,
                            refusal=response.refusal)

    def _log_gone(self, request: Request, body: BodyReader, gone: ClientGone) -> None:
        """Log a request whose client reset inside its body: 400, no bytes, those received."""
        self._log(request, Response(gone.status, user=gone.user), 0, f" received={body.received}")

    def _linger(self) -> None:
        """Half-close, then drain what the client still sends, so it can read our answer.

        Closing a socket with unread input makes the kernel send a reset, which can destroy
        the response before the client has read it (RFC 9112 §9.6).  A TLS connection sends
        its closure alert first; ``SSLSocket.shutdown`` then leaves TLS, so the rest is
        drained without decrypting it.
        """
        self._enter(State.CLOSING)
        try:
            self._close_notify()
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        drain(self.sock, _LINGER_SECONDS, _LINGER_BYTES)

    def _close_notify(self) -> None:
        """Send TLS's closure alert once the handshake is done, at most once (RFC 9112
        §9.8: a TLS connection is closed with an exchange of closure alerts)."""
        if self._owes_close_notify:
            self._owes_close_notify = False
            self._receive_timeout = -1.0
            send_close_notify(self.sock)

