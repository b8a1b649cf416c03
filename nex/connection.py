"""The connection loop: one client's requests, in order, over one socket.

Each pass goes read head → parse → route → read or discard the body → write → log, then
either waits for the next request (keep-alive, pipelining) or closes.  Time limits apply to
waiting for a request (idle keep-alive) and to receiving one (a slow client must deliver its
whole head within ``request_head_timeout``, however it dribbles it).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Optional, Union

from nex.body import ChunkedBody, FixedLengthBody
from nex.dispatch import Site, respond
from nex.errors import HTTPError
from nex.log import Logger
from nex.request import HeadScanner, Limits, Request, parse_head
from nex.response import Response, write_response

_RECV_SIZE = 64 * 1024
#: Statuses after which the rest of the byte stream cannot be trusted to be framed right.
_CLOSING_STATUSES = frozenset({400, 408, 413, 414, 431, 500, 501, 505})
_LINGER_SECONDS = 2.0
_LINGER_BYTES = 256 * 1024


def timeval(seconds: float) -> bytes:
    """``seconds`` as the ``struct timeval`` that SO_RCVTIMEO and SO_SNDTIMEO take."""
    whole = int(seconds)
    return struct.pack("@ll", whole, int((seconds - whole) * 1_000_000) or (0 if whole else 1))


class Connection:
    """Serves the requests that arrive on one accepted socket."""

    def __init__(self, sock: socket.socket, client: str, site: Site, logger: Logger,
                 stopping: threading.Event) -> None:
        self.sock = sock
        self.client = client
        self._site = site
        self._config = site.config
        self._limits = Limits.from_config(site.config)
        self._head_scanner = HeadScanner(self._limits)
        self._logger = logger
        self._stopping = stopping
        self._buffer = bytearray()
        #: The head being parsed, kept so that a request refused as malformed can be logged.
        self._unparsed: Union[bytes, bytearray] = b""
        #: True while the loop waits for the first byte of a request; shutdown wakes such waits.
        self.idle = False
        self._receive_timeout = -1.0
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        timeval(site.config.send_timeout))

    def serve(self) -> None:
        """Run the loop until the client leaves, a time limit passes, or the server stops."""
        try:
            self._serve_requests()
        except OSError:
            pass  # the client went away or stopped reading: nobody is left to answer
        except Exception:
            self._logger.exception(f"unexpected fault on the connection from {self.client}")
        finally:
            self.sock.close()

    def wake(self) -> None:
        """Wake the loop if it is idle, so that a stopping server need not wait for it."""
        if self.idle:
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass

    def _serve_requests(self) -> None:
        idle_timeout = self._config.request_head_timeout
        # A new connection's first head is timed from the connection's start, so waiting
        # before the first byte cannot buy a slow client a second full time-out.
        started: Optional[float] = time.monotonic()
        while True:
            try:
                request = self._read_request(idle_timeout, started)
            except HTTPError as error:
                self._send(self._error_response(error), None, head_only=False, keep_alive=False)
                self._linger()
                return
            if request is None:
                return
            idle_timeout, started = self._config.keep_alive_timeout, None
            if not self._answer(request):
                return

    def _answer(self, request: Request) -> bool:
        """Respond to ``request``; return whether the connection stays open."""
        try:
            if request.has_body and request.body_length > self._config.max_request_body:
                raise HTTPError(413, "The request body is larger than this server accepts.",
                                close=True)
            response = respond(request, self._site)
        except HTTPError as error:
            response = self._error_response(error)
        except Exception:
            self._logger.exception(f"fault while answering {request.request_line!r}")
            response = self._error_response(HTTPError(500, close=True))
        keep_alive = (request.keep_alive and not response.close
                      and not self._stopping.is_set())
        if request.has_body:
            if response.status >= 400:
                keep_alive = False  # answer now; the unread body is drained on close
            else:
                try:
                    self._discard_body(request)
                except HTTPError as error:
                    if response.file is not None:
                        response.file.close()
                    response, keep_alive = self._error_response(error), False
        self._send(response, request, head_only=request.method == "HEAD", keep_alive=keep_alive)
        if not keep_alive:
            # Unread input (a body, pipelined requests) would turn the close into a reset.
            if request.has_body or response.status >= 400 or self._buffer:
                self._linger()
            return False
        return True

    def _read_request(self, idle_timeout: float, started: Optional[float]) -> Optional[Request]:
        """The next request head, or None when the client closed or idled out.

        The head must be complete ``request_head_timeout`` after ``started``, or, when that is
        None, after its first byte arrived.
        """
        buffer = self._unparsed = self._buffer
        deadline = None
        while True:
            if buffer:
                bounds = self._head_scanner.scan(buffer)
                if bounds is not None:
                    start, end = bounds
                    with memoryview(buffer) as view:
                        head = bytes(view[start:end])  # one copy, not slice then bytes
                    del buffer[:end]
                    self._head_scanner.reset()
                    self._unparsed = head
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
        """Bytes from the client; b"" when it closed; None when the wait timed out."""
        if deadline is None:
            self.idle = True
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
        finally:
            self.idle = False

    def _set_receive_timeout(self, seconds: float) -> None:
        """Bound the next ``recv`` in the kernel (SO_RCVTIMEO).

        A Python-level socket timeout would ``poll`` before every ``recv`` and ``send``; the
        kernel's own time-outs cost no extra system call, and a changed value costs one.
        """
        if seconds != self._receive_timeout:
            self._receive_timeout = seconds
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(seconds))

    def _discard_body(self, request: Request) -> None:
        """Read the request's body and drop it, leaving any pipelined bytes in the buffer."""
        if request.chunked:
            decoder: Union[ChunkedBody, FixedLengthBody] = ChunkedBody(
                self._config.max_request_body, self._limits)
        else:
            decoder = FixedLengthBody(request.body_length)
        deadline = time.monotonic() + self._config.request_head_timeout
        buffer = self._buffer
        while True:
            with memoryview(buffer) as view:
                consumed = decoder.feed(view)
            del buffer[:consumed]
            if decoder.done:
                return
            chunk = self._receive(deadline, 0)
            if chunk is None:
                raise HTTPError(408, "The request body did not arrive in time.", close=True)
            if not chunk:
                raise HTTPError(400, "The connection closed inside the request body.",
                                close=True)
            buffer += chunk

    def _error_response(self, error: HTTPError) -> Response:
        page = self._site.templates.render_error(error, self._site.signature)
        headers = [("Content-Type", "text/html; charset=utf-8"), *error.headers]
        return Response(error.status, headers, (page,),
                        close=error.close or error.status in _CLOSING_STATUSES)

    def _send(self, response: Response, request: Optional[Request], *, head_only: bool,
              keep_alive: bool) -> None:
        sent = 0
        try:
            sent = write_response(self.sock, response, head_only=head_only,
                                  keep_alive=keep_alive, min_rate=self._config.min_send_rate,
                                  grace=self._config.send_timeout)
        finally:
            client = self.client
            if request is None:
                request_line, referer, agent = _first_line(self._unparsed), None, None
            else:
                request_line = request.request_line
                referer = request.headers.get("Referer")
                agent = request.headers.get("User-Agent")
                if self._site.forwarded is not None:
                    client = self._site.forwarded.client(
                        client, request.headers.get("X-Forwarded-For"))
            self._logger.access(client, request_line, response.status, sent, referer, agent)

    def _linger(self) -> None:
        """Half-close, then drain what the client still sends, so it can read our answer.

        Closing a socket with unread input makes the kernel send a reset, which can destroy
        the response before the client has read it (RFC 9112 §9.6).
        """
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
