"""The origin side of the proxy: connecting, reading responses strictly, pooling connections.

:func:`connect` opens a connection to the first admitted address that answers, racing
them (happy eyeballs).
:class:`Origin` sends a request head and body and reads the response: the head is parsed as
strictly as the request parser parses requests (:func:`parse_response_head`), the body is
framed by RFC 9112 §6.3 and handed out decoded, in pieces of at most :data:`MAX_PIECE`
bytes.  :class:`OriginPool` keeps idle keep-alive connections for reuse.

Failures before the response head map to statuses for the client: an origin that refuses,
cannot be reached, closes early or sends a malformed head is ``502``; one that does not
answer within its time is ``504``.  Once the head has been passed on, nothing can be said to
the client any more: a body that breaks off raises :class:`OriginBodyError`, and the caller
closes the client's connection so that the client sees a cut-off response.
"""

from __future__ import annotations

import collections
import errno
import functools
import math
import os
import re
import select
import selectors
import socket
import threading
import time
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from nex.http.body import NO_LIMIT, ChunkedBody
from nex.http.errors import HTTPError
from nex.http.framing import (CHUNKED, LENGTH, UNTIL_CLOSE, HeadLimits, body_framing,
                              connection_options, find_head_end, has_content, persists,
                              refuse_bare_cr_lf, split_head)
from nex.http.request import Headers, framing_fields, parse_fields
from nex.proxy.figures import ORIGINS_OPENED, ORIGINS_REUSED, Tally, new_tally
from nex.proxy.forwarding import Relayed, names_websocket, relayed_fields
from nex.http.response import TIMED_OUT, timeval

#: The most body bytes handed out at once.
MAX_PIECE = 64 * 1024
#: Seconds between the starts of two connection attempts (RFC 8305 §5 recommends 250 ms).
ATTEMPT_DELAY = 0.25

Key = Tuple[str, int]
SocketAddress = Tuple[int, tuple]
Data = Union[bytes, bytearray, memoryview]

# RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ], with
# reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ).  RFC 9110 §15: codes run from 100 to
# 599.  A missing SP before an empty reason is tolerated: clients ignore the reason anyway.
_STATUS_LINE = re.compile(r"(HTTP/1\.[0-9]) ([1-5][0-9]{2})(?: ([\t \x21-\x7e\x80-\xff]*))?")


class OriginBodyError(Exception):
    """The origin's body broke off (closed early, stalled, misframed) after its head.

    The response to the client cannot be completed: close the client's connection.
    """


class StaleConnection(HTTPError):
    """A reused connection failed before any byte of the response: the origin had closed it.

    A ``502`` for callers that do not look closer; one that can send the request again (no
    body, or a body it still holds) may retry once on a new connection.
    """

    def __init__(self) -> None:
        super().__init__(502, "The origin server closed the connection.", failure="reset")


def _bad_gateway(detail: str, failure: str = "bad_response") -> HTTPError:
    return HTTPError(502, f"The origin server sent {detail}.", failure=failure)


class ResponseHead(NamedTuple):
    """A parsed response head.

    ``framing`` is :data:`NO_BODY`, :data:`LENGTH`, :data:`CHUNKED` or :data:`UNTIL_CLOSE`;
    ``content_length`` the validated ``Content-Length`` when one was sent (also on HEAD and
    304 responses, where it describes the representation, not a body that follows);
    ``keep_alive`` whether the origin lets the connection carry another request afterwards;
    ``relayed`` the fields a client is given of it, worked out with the (remembered) head
    (:func:`~nex.proxy.forwarding.relayed_fields`).
    """

    version: str
    status: int
    reason: str
    headers: Headers
    framing: str
    content_length: Optional[int]
    keep_alive: bool
    relayed: Relayed


#: Response heads longer than this are parsed each time rather than remembered.
_CACHED_HEAD_LENGTH = 2048


def parse_response_head(head: Data, method: str, limits: HeadLimits = HeadLimits()
                        ) -> ResponseHead:
    """The :class:`ResponseHead` in ``head`` (status line to blank line) to a ``method`` request.

    Refused with ``HTTPError(502)``: a status line other than ``HTTP/1.x NNN [reason]``, and
    whatever :mod:`nex.http.framing` and the field-line parser refuse in a request head: bare
    CR or LF; a bad field line; more than ``limits`` allow (the status line is held to
    ``limits.request_line``); ``Content-Length`` with ``Transfer-Encoding``, differing or
    malformed lengths; a transfer coding other than exactly ``chunked``, or any in an
    HTTP/1.0 response.  Framing per RFC 9112 §6.3: none for HEAD, for a 2xx to CONNECT and
    for 1xx, 204 and 304; else chunked, else Content-Length, else until close.

    The last 256 heads of at most 2 KiB are remembered: an origin answering the same
    resource again sends the same head until its ``Date`` ticks over, and the
    :class:`ResponseHead` depends on nothing but the bytes, the method and the limits, and
    never changes.  Refusals are raised each time.
    """
    if len(head) <= _CACHED_HEAD_LENGTH:
        return _remembered_response_head(bytes(head), method, limits)
    return _parse_response_head(head, method, limits)


@functools.lru_cache(maxsize=256)
def _remembered_response_head(head: bytes, method: str, limits: HeadLimits) -> ResponseHead:
    return _parse_response_head(head, method, limits)


def _parse_response_head(head: Data, method: str, limits: HeadLimits) -> ResponseHead:
    head = bytes(head)
    try:
        start_line, section = split_head(head, limits, request=False)
        status_line = _STATUS_LINE.fullmatch(start_line)
        if status_line is None:
            refuse_bare_cr_lf(head, request=False)
            raise _bad_gateway("a malformed status line")
        version, code, reason = status_line.groups()
        status = int(code)
        headers = parse_fields(section, request=False)
        framing, content_length = body_framing(
            version, *framing_fields(headers), request=False,
            no_body=(method == "HEAD" or not has_content(status)
                     or (method == "CONNECT" and status < 300)))
    except HTTPError as error:
        if error.status == 502:
            raise
        raise _bad_gateway(f"a malformed response head ({error.detail})") from None
    options, _ = connection_options(headers.get("Connection"))
    keep_alive = framing != UNTIL_CLOSE and persists(version, options)
    return ResponseHead(version, status, reason or "", headers, framing,
                        content_length, keep_alive, relayed_fields(headers))


def _pieces(data: Data) -> Iterator[bytes]:
    """``data`` in pieces of at most MAX_PIECE bytes."""
    for start in range(0, len(data), MAX_PIECE):
        yield bytes(data[start:start + MAX_PIECE])


class Origin:
    """One connection to an origin server, carrying one request at a time.

    Use: :meth:`send` the head and body, :meth:`read_head`, then iterate :meth:`read_body`
    to its end; then :attr:`reusable` says whether :meth:`OriginPool.release` may keep it.
    ``timeout`` (``upstream_timeout``) bounds the wait for a head and each read or write.
    ``reused`` is True for a connection that came out of a pool.  The socket is blocking,
    its waits bounded by the kernel (SO_RCVTIMEO, SO_SNDTIMEO), which costs no system call
    per send or receive as a Python time-out's poll would.
    """

    def __init__(self, sock: socket.socket, key: Key, timeout: float,
                 limits: HeadLimits = HeadLimits()) -> None:
        self.sock = sock
        self.key = key
        self.timeout = timeout
        self.limits = limits
        self.reused = False
        self._buffer = bytearray()
        self._answered = False  # a byte of the current response has arrived
        self._reusable = False
        self._waits = {socket.SO_RCVTIMEO: -1.0, socket.SO_SNDTIMEO: -1.0}
        #: Watches the idle connection for an EOF or stray bytes; registered once, so that
        #: each reuse costs one ``poll`` and nothing more.
        self._idle_watch = select.poll()
        self._idle_watch.register(sock, select.POLLIN | select.POLLPRI)
        sock.settimeout(None)

    def still_idle(self) -> bool:
        """Whether the idle connection is still quiet: no EOF, no stray bytes, no error."""
        return not self._idle_watch.poll(0)

    def _wait_at_most(self, option: int, seconds: float) -> None:
        """Bound the next receives (SO_RCVTIMEO) or sends (SO_SNDTIMEO) to ``seconds``."""
        if self._waits[option] != seconds:
            self._waits[option] = seconds
            self.sock.setsockopt(socket.SOL_SOCKET, option, timeval(seconds))

    @property
    def buffered(self) -> int:
        """Bytes received past the response head that have not been handed out yet."""
        return len(self._buffer)

    @property
    def reusable(self) -> bool:
        """Whether the last response was read to its end and the origin allows another."""
        return self._reusable

    def send(self, data: Data) -> None:
        """Send request bytes: ``502`` on failure (:class:`StaleConnection` for a reused
        connection the origin had closed), ``504`` when the origin stops reading."""
        self._reusable = False
        self._wait_at_most(socket.SO_SNDTIMEO, self.timeout)
        try:
            self.sock.sendall(data)
        except TIMED_OUT:
            raise HTTPError(504, "The origin server stopped reading the request.",
                            failure="timeout") from None
        except OSError:
            if self.reused and not self._answered:
                raise StaleConnection() from None
            raise HTTPError(502, "The connection to the origin server failed.",
                            failure="reset") from None

    def read_head(self, method: str, upgrade: bool = False) -> ResponseHead:
        """The response head to a ``method`` request; interim 1xx responses are skipped.

        The whole head must arrive within ``timeout`` seconds (``504`` otherwise); a
        malformed head or a connection closed before it is ``502`` (a reused connection
        closed before any byte: :class:`StaleConnection`).  A ``101`` is returned when the
        request asked to switch to WebSocket (``upgrade``) and the origin's ``Upgrade``
        names it; any other ``101`` is ``502``.
        """
        self._reusable = False
        self._answered = False
        deadline = time.monotonic() + self.timeout
        while True:
            head = parse_response_head(self._receive_head(deadline), method, self.limits)
            if head.status == 101:
                if upgrade and names_websocket(head.headers.get_all("Upgrade")):
                    return head
                raise _bad_gateway("a protocol switch nobody asked for")
            if head.status >= 200:
                return head

    def detach(self) -> Tuple[socket.socket, bytes]:
        """Hand the socket over (to a tunnel after ``101``), with the bytes the origin sent
        past the response head; the :class:`Origin` is of no further use."""
        pending = bytes(self._buffer)
        self._buffer.clear()
        self._reusable = False
        return self.sock, pending

    def _receive_head(self, deadline: float) -> bytes:
        buffer = self._buffer
        scanned = 0
        while True:
            if buffer:  # empty after a whole response, the usual case: no need to search
                stop = find_head_end(buffer, scanned)
                if stop != -1:
                    head = bytes(buffer[:stop])
                    del buffer[:stop]
                    return head
                if len(buffer) > self.limits.header_block:
                    raise _bad_gateway("a response head that is too large")
                scanned = max(0, len(buffer) - 2)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HTTPError(504, "The origin server did not answer in time.",
                                failure="timeout")
            # Rounded up to whole milliseconds, so that the time-out changes rarely.
            self._wait_at_most(socket.SO_RCVTIMEO,
                               min(math.ceil(remaining * 1000) / 1000, self.timeout))
            try:
                chunk = self.sock.recv(MAX_PIECE)
            except TIMED_OUT:
                raise HTTPError(504, "The origin server did not answer in time.",
                                failure="timeout") from None
            except OSError:
                chunk = b""
            if not chunk:
                if self.reused and not self._answered and not buffer:
                    raise StaleConnection()
                raise _bad_gateway("no complete response head before closing", failure="reset")
            self._answered = True
            buffer += chunk

    def read_body(self, head: ResponseHead) -> Iterator[bytes]:
        """The decoded body of the response ``head`` came with, in pieces of <= MAX_PIECE.

        Each read waits at most ``timeout`` seconds.  A body cut off by the origin, a stall or
        bad chunked framing raises :class:`OriginBodyError`.  After the last piece,
        :attr:`reusable` tells whether the connection can carry another request.
        """
        if head.framing == LENGTH:
            yield from self._length_body(head.content_length or 0)
        elif head.framing == CHUNKED:
            yield from self._chunked_body()
        elif head.framing == UNTIL_CLOSE:
            yield from _pieces(self._buffer)
            self._buffer.clear()
            while True:
                chunk = self._receive_body()
                if not chunk:
                    return
                yield chunk
        self._reusable = head.keep_alive and not self._buffer

    def buffered_body(self, head: ResponseHead) -> bytes:
        """The whole body of a Content-Length response that came with its ``head`` (the
        caller checked ``head.content_length <= buffered``), in one copy; then
        :attr:`reusable` says whether the connection can carry another request, as after
        :meth:`read_body`."""
        length = head.content_length or 0
        buffer = self._buffer
        if length == len(buffer):  # the usual case: nothing came after the body
            body = bytes(buffer)
        else:
            with memoryview(buffer) as view:
                body = bytes(view[:length])
        del buffer[:length]
        self._reusable = head.keep_alive and not buffer
        return body

    def _receive_body(self, size: int = MAX_PIECE) -> bytes:
        self._wait_at_most(socket.SO_RCVTIMEO, self.timeout)
        try:
            return self.sock.recv(size)
        except TIMED_OUT:
            raise OriginBodyError("the origin server stalled inside the body") from None
        except OSError as error:
            raise OriginBodyError(f"the origin connection failed ({error})") from None

    def _length_body(self, length: int) -> Iterator[bytes]:
        left = length
        if self._buffer:
            taken = min(left, len(self._buffer))
            yield from _pieces(self._buffer[:taken])
            del self._buffer[:taken]
            left -= taken
        while left:
            chunk = self._receive_body(min(left, MAX_PIECE))
            if not chunk:
                raise OriginBodyError(f"the origin closed after {length - left} of {length}"
                                      " body bytes")
            left -= len(chunk)
            yield chunk

    def _chunked_body(self) -> Iterator[bytes]:
        decoder = ChunkedBody(NO_LIMIT, self.limits)
        pieces: List[bytes] = []
        while True:
            try:
                consumed = decoder.feed(self._buffer, lambda data: pieces.append(bytes(data)))
            except HTTPError as error:
                raise OriginBodyError(f"bad chunked framing: {error.detail}") from None
            del self._buffer[:consumed]
            yield from pieces
            pieces.clear()
            if decoder.done:
                return
            chunk = self._receive_body()
            if not chunk:
                raise OriginBodyError("the origin closed inside a chunked body")
            self._buffer += chunk

    def close(self) -> None:
        """Close the connection."""
        self._reusable = False
        self.sock.close()


def interleave(addresses: Sequence[SocketAddress]) -> List[SocketAddress]:
    """``addresses`` in the order RFC 8305 §4 tries them: families taking turns, IPv6 first,
    each family in the resolver's order."""
    ipv6 = [address for address in addresses if address[0] == socket.AF_INET6]
    others = [address for address in addresses if address[0] != socket.AF_INET6]
    ordered: List[SocketAddress] = []
    for index in range(max(len(ipv6), len(others))):
        ordered += ipv6[index:index + 1] + others[index:index + 1]
    return ordered


def connect(key: Key, addresses: Sequence[SocketAddress], connect_timeout: float,
            upstream_timeout: float, limits: HeadLimits = HeadLimits(),
            attempt_delay: float = ATTEMPT_DELAY) -> Origin:
    """A new :class:`Origin` for ``key`` over :func:`open_connection`'s socket, with
    ``upstream_timeout`` and ``limits`` for its exchanges."""
    return Origin(open_connection(addresses, connect_timeout, attempt_delay), key,
                  upstream_timeout, limits)


def open_connection(addresses: Sequence[SocketAddress], connect_timeout: float,
                    attempt_delay: float = ATTEMPT_DELAY) -> socket.socket:
    """A socket connected to the first of ``addresses`` to accept, TCP_NODELAY set (happy
    eyeballs, RFC 8305).

    The addresses are tried in :func:`interleave` order; the next attempt starts
    ``attempt_delay`` seconds after the last one, or at once when one fails, while the
    earlier ones go on.  The first connection made wins and the others are closed, so a dead
    IPv6 address costs a quarter of a second, not a whole ``connect_timeout`` (which bounds
    each attempt).  When none accepts: ``504`` if every attempt timed out, else ``502``
    (refused, unreachable).
    """
    waiting = interleave(addresses)
    attempts: Dict[socket.socket, float] = {}  # each attempt's deadline
    selector = selectors.DefaultSelector()
    failed = timed_out = 0
    last_error = 0
    next_start = time.monotonic()
    try:
        while waiting or attempts:
            now = time.monotonic()
            if waiting and (now >= next_start or not attempts):
                family, sockaddr = waiting.pop(0)
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                error = sock.connect_ex(sockaddr)
                if error not in (0, errno.EINPROGRESS):
                    sock.close()
                    failed, last_error = failed + 1, error
                    continue
                attempts[sock] = now + connect_timeout
                selector.register(sock, selectors.EVENT_WRITE)
                next_start = now + attempt_delay
                continue
            wake = min(attempts.values())
            if waiting:
                wake = min(wake, next_start)
            for key_event, _ in selector.select(max(0.0, wake - now)):
                sock = key_event.fileobj
                selector.unregister(sock)
                del attempts[sock]
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error == 0:
                    sock.setblocking(True)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    return sock
                sock.close()
                failed, last_error = failed + 1, error
                next_start = time.monotonic()  # a failure starts the next attempt at once
            now = time.monotonic()
            for sock, deadline in list(attempts.items()):
                if deadline <= now:
                    selector.unregister(sock)
                    del attempts[sock]
                    sock.close()
                    timed_out += 1
    finally:
        for sock in attempts:
            sock.close()
        selector.close()
    if timed_out and not failed:
        raise HTTPError(504, "The origin server did not accept a connection in time.",
                        failure="connect_timeout")
    if last_error == errno.ECONNREFUSED:
        raise HTTPError(502, "The origin server refused the connection.", failure="refused")
    reason = f" ({os.strerror(last_error)})" if last_error else ""
    raise HTTPError(502, f"The origin server cannot be reached{reason}.", failure="unreachable")


class OriginPool:
    """Idle keep-alive connections to origins, reused per ``(host, port)``; thread-safe.

    At most ``per_host`` idle connections per key and ``total`` in all (the least recently
    used goes first when full); one idle longer than ``idle_timeout`` seconds is closed.
    The defaults are the proxy's: enough for a busy client's parallel connections to one
    origin to find theirs again.
    Connections in use are not counted: the connection cap bounds them.  A pooled
    connection is checked for an EOF or stray bytes before it is handed out again, and it
    is newest-first, since the newest is the least likely to have been closed by the origin.
    ``tally`` counts the connections opened and those handed out again
    (:mod:`nex.proxy.figures`).
    """

    def __init__(self, *, per_host: int = 64, total: int = 256, idle_timeout: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 tally: Optional[Tally] = None) -> None:
        self._tally = new_tally() if tally is None else tally
        self.per_host = per_host
        self.total = total
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._lock = threading.Lock()
        #: Idle connections, least recently released first, with the time of release.
        self._idle: "collections.OrderedDict[Origin, float]" = collections.OrderedDict()
        #: The same connections by key, the most recently released last.
        self._by_key: Dict[Key, List[Origin]] = {}
        #: Until then no idle connection can have been idle too long: none need be looked at.
        self._quiet_until = math.inf

    def connect(self, host: str, port: int, addresses: Sequence[SocketAddress], *,
                connect_timeout: float, upstream_timeout: float,
                limits: HeadLimits = HeadLimits()) -> Origin:
        """An idle connection to ``(host, port)`` if one is pooled, else a new one.

        ``host`` and ``port`` are the admitted destination's; ``addresses`` are used only
        for a new connection (see :func:`connect`, whose errors this raises).
        """
        key = (host, port)
        while True:
            origin = self._take(key)
            if origin is None:
                return self.open_new(key, addresses, connect_timeout=connect_timeout,
                                     upstream_timeout=upstream_timeout, limits=limits)
            if origin.still_idle():
                origin.reused = True
                origin.timeout = upstream_timeout
                origin.limits = limits
                return origin
            origin.close()

    def open_new(self, key: Key, addresses: Sequence[SocketAddress], *,
                  connect_timeout: float, upstream_timeout: float,
                  limits: HeadLimits = HeadLimits()) -> Origin:
        """A new connection for ``key`` (see :func:`connect`), counted as opened: there was no
        idle one, or the one taken turned out closed by the origin."""
        origin = connect(key, addresses, connect_timeout, upstream_timeout, limits)
        with self._lock:
            self._tally[ORIGINS_OPENED] += 1
        return origin

    def _take(self, key: Key) -> Optional[Origin]:
        """The newest idle connection for ``key``, counted as reused; None when there is
        none."""
        with self._lock:
            now = self._clock()
            closing = self._expire(now) if now >= self._quiet_until else []
            found = None
            idle = self._by_key.get(key)
            if idle is not None:
                found = idle.pop()
                if not idle:
                    del self._by_key[key]
                del self._idle[found]
                self._tally[ORIGINS_REUSED] += 1
        for origin in closing:
            origin.close()
        return found

    def release(self, origin: Origin) -> None:
        """Give back ``origin``: kept when :attr:`Origin.reusable` and the caps allow, else
        closed."""
        if not origin.reusable:
            origin.close()
            return
        key = origin.key
        with self._lock:
            now = self._clock()
            closing = self._expire(now) if now >= self._quiet_until else []
            idle = self._by_key.get(key)
            if idle is not None and len(idle) >= self.per_host:
                closing.append(origin)
            else:
                if len(self._idle) >= self.total:
                    oldest = next(iter(self._idle))
                    self._forget(oldest)
                    closing.append(oldest)
                self._by_key.setdefault(key, []).append(origin)
                if not self._idle:
                    self._quiet_until = now + self.idle_timeout
                self._idle[origin] = now
        for connection in closing:
            connection.close()

    def _expire(self, now: float) -> List[Origin]:
        """Take out the connections idle too long at ``now`` (the lock is held); the caller
        closes them."""
        oldest = now - self.idle_timeout
        expired = []
        self._quiet_until = math.inf
        for origin, since in self._idle.items():
            if since > oldest:
                self._quiet_until = since + self.idle_timeout
                break
            expired.append(origin)
        for origin in expired:
            self._forget(origin)
        return expired

    def _forget(self, origin: Origin) -> None:
        """Take ``origin`` out of the idle connections (the lock is held)."""
        del self._idle[origin]
        idle = self._by_key[origin.key]
        idle.remove(origin)
        if not idle:
            del self._by_key[origin.key]

    def close(self) -> None:
        """Close every idle connection (at shutdown)."""
        with self._lock:
            idle = list(self._idle)
            self._idle.clear()
            self._by_key.clear()
            self._quiet_until = math.inf
        for origin in idle:
            origin.close()
