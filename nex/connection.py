"""The connection: one client's requests, in order, over one socket.

A connection moves through the states of :class:`State`; :meth:`Connection._enter` is the
only place the state changes, and it refuses a transition the table does not allow::

    IDLE ──first byte──▶ READING_HEAD ──head──▶ ANSWERING ──▶ SENDING ──▶ IDLE (keep-alive)
      │                      │ (bad head, time-out)              │ ├──▶ TUNNEL (CONNECT) ──▶ CLOSED
      └──client left──▶ CLOSED └────────────────▶ SENDING        │ └──▶ CLOSING ──▶ CLOSED
                                                                  └──▶ CLOSED

:func:`stays_open` is the one decision whether the connection goes back to IDLE.  Time
limits apply to waiting for a request (idle keep-alive) and to receiving one (a slow client
must deliver its whole head within ``request_head_timeout`` of its first byte, or for a new
connection of its start, however it dribbles it).  Every response is logged exactly once,
with the body bytes actually sent.
"""

from __future__ import annotations

import enum
import errno
import socket
import struct
import threading
import time
from typing import Optional, Union

from nex.body import BodyReader
from nex.dispatch import Dispatcher
from nex.errors import HTTPError
from nex.log import Logger
from nex.request import HeadScanner, Limits, Request, parse_head
from nex.response import BodyFault, Progress, Response, framing_for, Framing, write_interim, \
    write_response

_RECV_SIZE = 64 * 1024
#: Statuses after which the rest of the byte stream cannot be trusted to be framed right.
_CLOSING_STATUSES = frozenset({400, 408, 413, 414, 431, 500, 501, 505})
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 256 * 1024
#: Errors that mean the client went away or stopped reading: nobody is left to tell.
_CLIENT_GONE = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN,
                          errno.ESHUTDOWN, errno.ETIMEDOUT})


class State(enum.Enum):
    """Where a connection is in its life."""

    IDLE = "waiting for the first byte of a request"
    READING_HEAD = "receiving a request head"
    ANSWERING = "handling a request; its body is read, streamed or discarded"
    SENDING = "sending a response"
    TUNNEL = "relaying bytes both ways after CONNECT"
    CLOSING = "half-closed, draining what the client still sends"
    CLOSED = "closed"


_TRANSITIONS = {
    State.IDLE: frozenset({State.READING_HEAD, State.CLOSED}),
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
    nor has a status that leaves the byte stream's framing in doubt, the request body was
    read to its end, the response's own end is marked by its framing rather than by closing,
    no tunnel takes the connection over, and the server is not stopping.
    """
    return (request is not None and request.keep_alive and not stopping
            and not response.close and response.status not in _CLOSING_STATUSES
            and response.tunnel is None and (body is None or body.done)
            and framing_for(response, request.version == "HTTP/1.1") != Framing.CLOSE)


def timeval(seconds: float) -> bytes:
    """``seconds`` as the ``struct timeval`` that SO_RCVTIMEO and SO_SNDTIMEO take."""
    whole = int(seconds)
    return struct.pack("@ll", whole, int((seconds - whole) * 1_000_000) or (0 if whole else 1))


def _expects_continue(request: Request) -> bool:
    """Whether an HTTP/1.1 client waits for ``100 Continue`` before sending its body."""
    expect = request.headers.get("Expect")
    return (expect is not None and request.version == "HTTP/1.1"
            and expect.strip(" \t").lower() == "100-continue")


class Connection:
    """Serves the requests that arrive on one accepted socket."""

    def __init__(self, sock: socket.socket, client: str, dispatcher: Dispatcher,
                 logger: Logger, stopping: threading.Event) -> None:
        self.sock = sock
        self.client = client
        self.state = State.IDLE
        self._dispatcher = dispatcher
        self._config = dispatcher.config
        self._limits = Limits.from_config(dispatcher.config)
        self._head_scanner = HeadScanner(self._limits)
        self._logger = logger
        self._stopping = stopping
        self._buffer = bytearray()
        #: The bytes of the head being parsed, so a request refused as malformed is logged.
        self._head_bytes: Union[bytes, bytearray] = b""
        self._receive_timeout = -1.0
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        timeval(dispatcher.config.send_timeout))

    @property
    def busy(self) -> bool:
        """Whether a request is being answered (a stopping server waits for these)."""
        return self.state in (State.ANSWERING, State.SENDING, State.TUNNEL)

    def serve(self) -> None:
        """Run the loop until the client leaves, a time limit passes, or the server stops."""
        try:
            self._serve_requests()
        except OSError:
            pass  # the client went away or stopped reading: nobody is left to answer
        except Exception:
            self._logger.exception(f"unexpected fault on the connection from {self.client}")
        finally:
            self.state = State.CLOSED
            self.sock.close()

    def wake(self) -> None:
        """Wake the loop if it is idle, so that a stopping server need not wait for it."""
        if self.state is State.IDLE:
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def abort(self) -> None:
        """End a transfer the server will not wait for: its write fails and is logged."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _enter(self, state: State) -> None:
        if state not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"connection cannot go from {self.state.name} to {state.name}")
        self.state = state

    def _serve_requests(self) -> None:
        idle_timeout = self._config.request_head_timeout
        # A new connection's first head is timed from the connection's start, so waiting
        # before the first byte cannot buy a slow client a second full time-out.
        started: Optional[float] = time.monotonic()
        while True:
            try:
                request = self._read_request(idle_timeout, started)
            except HTTPError as error:
                self._enter(State.SENDING)
                self._send(self._dispatcher.error_response(error), None, keep_alive=False)
                self._linger()
                return
            if request is None:
                return
            idle_timeout, started = self._config.keep_alive_timeout, None
            if not self._answer(request):
                return

    def _answer(self, request: Request) -> bool:
        """Respond to ``request``; return whether the connection stays open."""
        self._enter(State.ANSWERING)
        body = None
        if request.has_body:
            body = BodyReader(request, self._buffer, self._receive_body,
                              self._config.request_head_timeout, self._config.max_request_body,
                              self._limits,
                              self._send_continue if _expects_continue(request) else None)
        try:
            response = self._dispatcher.respond(request, body, self._client_of(request))
        except HTTPError as error:
            response = self._dispatcher.error_response(error)
        except Exception:
            self._logger.exception(f"fault while answering {request.request_line!r}")
            response = self._dispatcher.error_response(HTTPError(500, close=True))
        # A body nobody read is discarded so the next request can be found; not after an
        # error (the connection closes instead), nor while the client still waits for
        # 100 Continue (it may never send the body: close and let it be).
        if (body is not None and not body.done and response.status < 400
                and not body.awaiting_continue):
            try:
                body.discard()
            except HTTPError as error:
                response.release()
                response = self._dispatcher.error_response(error)
        keep_alive = stays_open(request, response, body, self._stopping.is_set())
        self._enter(State.SENDING)
        self._send(response, request, keep_alive=keep_alive)
        if keep_alive:
            self._enter(State.IDLE)
            return True
        if response.tunnel is not None:
            self._enter(State.TUNNEL)
            pending = bytes(self._buffer)
            self._buffer.clear()
            response.tunnel(self.sock, pending)
            return False
        # Unread input (a body, pipelined requests) would turn the close into a reset.
        if (body is not None and not body.done) or response.status >= 400 or self._buffer:
            self._linger()
        return False

    def _read_request(self, idle_timeout: float, started: Optional[float]) -> Optional[Request]:
        """The next request head, or None when the client closed or idled out.

        The head must be complete ``request_head_timeout`` after ``started``, or, when that is
        None, after its first byte arrived.
        """
        buffer = self._head_bytes = self._buffer
        deadline = None
        while True:
            if buffer:
                if self.state is State.IDLE:
                    self._enter(State.READING_HEAD)
                bounds = self._head_scanner.scan(buffer)
                if bounds is not None:
                    start, end = bounds
                    with memoryview(buffer) as view:
                        head = bytes(view[start:end])  # one copy, not slice then bytes
                    del buffer[:end]
                    self._head_scanner.reset()
                    self._head_bytes = head
                    return parse_head(head, self._limits)
                if deadline is None:
                    deadline = ((time.monotonic() if started is None else started)
                                + self._config.request_head_timeout)
            chunk = self._receive(deadline, idle_timeout)
            if chunk is None:
                if deadline is None:
                    return None
                raise HTTPError(408, "The request head did not arrive in time.", close=True)
            if not chunk:
                return None
            buffer += chunk

    def _receive(self, deadline: Optional[float], idle_timeout: float) -> Optional[bytes]:
        """Bytes from the client; b"" when it closed; None when the wait timed out.

        Without a ``deadline`` the connection is idle: it waits ``idle_timeout`` and a
        stopping server ends the wait.
        """
        if deadline is None:
            if self._stopping.is_set():
                return b""
            timeout = idle_timeout
        else:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                return None
        self._set_receive_timeout(timeout)
        try:
            return self.sock.recv(_RECV_SIZE)
        except BlockingIOError:  # SO_RCVTIMEO ran out
            return None

    def _receive_body(self, deadline: float) -> bytes:
        """Bytes of a request body, or 408 once ``deadline`` passed (for a body reader)."""
        chunk = self._receive(deadline, 0)
        if chunk is None:
            raise HTTPError(408, "The request body did not arrive in time.", close=True)
        return chunk

    def _send_continue(self) -> None:
        write_interim(self.sock, 100)

    def _set_receive_timeout(self, seconds: float) -> None:
        """Bound the next ``recv`` in the kernel (SO_RCVTIMEO).

        A Python-level socket timeout would ``poll`` before every ``recv`` and ``send``; the
        kernel's own time-outs cost no extra system call, and a changed value costs one.
        """
        if seconds != self._receive_timeout:
            self._receive_timeout = seconds
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(seconds))

    def _send(self, response: Response, request: Optional[Request], *,
              keep_alive: bool) -> None:
        """Write ``response`` and log it, once, with the body bytes that went out.

        A client that went away is not an error worth a line; a body the server could not
        produce whole is, without a traceback.  Either way the connection then closes.
        """
        progress = Progress()
        try:
            write_response(self.sock, response,
                           head_only=request is not None and request.method == "HEAD",
                           keep_alive=keep_alive, min_rate=self._config.min_send_rate,
                           grace=self._config.send_timeout,
                           chunked_allowed=request is not None and request.version == "HTTP/1.1",
                           progress=progress)
        except BodyFault as fault:
            self._logger.warning(f"response to {self.client} cut short: {fault}")
            raise
        except OSError as error:
            if not isinstance(error, TimeoutError) and error.errno not in _CLIENT_GONE:
                self._logger.warning(f"sending to {self.client} failed: {error}")
            raise
        finally:
            self._log(request, response, progress.body_sent)

    def _client_of(self, request: Request) -> str:
        """The client ``request`` comes from: the peer, or whom trusted proxies forwarded for."""
        forwarded = self._dispatcher.forwarded
        if forwarded is None:
            return self.client
        return forwarded.client(self.client, request.headers.get("X-Forwarded-For"))

    def _log(self, request: Optional[Request], response: Response, sent: int) -> None:
        if request is None:
            client, request_line, referer, agent = (self.client, _first_line(self._head_bytes),
                                                    None, None)
        else:
            client, request_line = self._client_of(request), request.request_line
            referer = request.headers.get("Referer")
            agent = request.headers.get("User-Agent")
        self._logger.access(client, request_line, response.status, sent, referer, agent,
                            user=response.user)

    def _linger(self) -> None:
        """Half-close, then drain what the client still sends, so it can read our answer.

        Closing a socket with unread input makes the kernel send a reset, which can destroy
        the response before the client has read it (RFC 9112 §9.6).
        """
        self._enter(State.CLOSING)
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + _LINGER_SECONDS
            drained = 0
            while drained < _LINGER_BYTES:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    return
                self._set_receive_timeout(timeout)
                chunk = self.sock.recv(_RECV_SIZE)
                if not chunk:
                    return
                drained += len(chunk)
        except OSError:
            pass


def _first_line(data: Union[bytes, bytearray]) -> str:
    """The start of ``data``'s first line, for logging a request that could not be parsed."""
    end = data.find(b"\r\n", 0, 1024)
    return data[:end if end >= 0 else 1024].lstrip(b"\r\n").decode("latin-1")
