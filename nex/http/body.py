"""The receiver: a request body, pulled in bounded pieces by whoever needs it.

A persistent connection can only go on once the body's last byte has been read, so the body
is either read by a handler (the proxy streams it to an origin, an upload to disk) or
discarded.  :class:`BodyReader` is the one way to do either.  Underneath, the decoders are
fed whatever the connection has buffered, in pieces of any size, hand the body's data to a
sink and say how much of the input belonged to the body; bytes after the body's end are left
for the next request.
"""

from __future__ import annotations

import re
import time
from typing import Callable, List, Optional, Sequence, Tuple, Union

from nex.http.errors import HTTPError, protocol_error, size_limit
from nex.http.framing import HeadLimits
from nex.http.grammar import CHUNK_LINE
from nex.http.request import Request, parse_field_line

Data = Union[bytes, bytearray, memoryview]
#: Receives the body's data as the decoders find it; None drops it.
Sink = Optional[Callable[[memoryview], None]]
#: A bound no real body reaches (16 EiB): for bodies that are passed on, never held.
NO_LIMIT = 1 << 64

_NEWLINE = re.compile(rb"\n")
_CR, _LF = 13, 10
# A chunk-size line holds at most 16 hex digits, a chunk extension and CRLF.
_MAX_SIZE_DIGITS = 16

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class FixedLengthBody:
    """A body framed by Content-Length: exactly ``length`` bytes."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.received = 0

    @property
    def done(self) -> bool:
        """Whether every byte of the body has been fed."""
        return self.received >= self.length

    def feed(self, data: Data, sink: Sink = None) -> int:
        """Take the body bytes at the start of ``data`` into ``sink``; returns how many."""
        taken = min(len(data), self.length - self.received)
        if sink is not None and taken:
            with memoryview(data) as view:
                sink(view[:taken])
        self.received += taken
        return taken


class ChunkedBody:
    """A body framed by the chunked transfer coding (RFC 9112 §7.1), parsed strictly.

    The one chunked decoder: request bodies use it, and so do origin responses the proxy
    relays (:mod:`nex.proxy.upstream`), which turns its refusals into a broken-off body.

    Chunk sizes have at most 16 hex digits, a chunk-size line's extensions at most
    ``limits.request_line`` bytes, and the trailer section at most ``limits.header_block``
    bytes and ``limits.header_count`` field lines, each a valid field line.  Every line ends
    in CRLF and every chunk's data is followed by CRLF.  A violation raises
    ``HTTPError(400)``; chunk sizes adding up to more than ``max_body`` raise
    ``HTTPError(413)`` before the data is read.  Both ask the connection to close.
    ``received`` counts chunk data only, not the framing around it.
    """

    def __init__(self, max_body: int, limits: HeadLimits) -> None:
        self.max_body = max_body
        #: The setting ``max_body`` comes from, named by the 413.
        self.limit_setting = "max_request_body"
        self.limits = limits
        self.received = 0
        self._state = _SIZE
        self._line = bytearray()
        self._left = 0  # data bytes of the current chunk, or bytes of the CRLF after it
        self._trailer_size = 0
        self._trailer_fields = 0

    @property
    def done(self) -> bool:
        """Whether the last chunk, the trailer section and its blank line have been fed."""
        return self._state == _DONE

    def feed(self, data: Data, sink: Sink = None) -> int:
        """Parse as much of ``data`` as belongs to the body, handing chunk data to ``sink``;
        returns how many bytes of ``data`` that was."""
        with memoryview(data) as view:
            pos, end = 0, len(view)
            while pos < end and self._state != _DONE:
                if self._state == _DATA:
                    taken = min(end - pos, self._left)
                    if sink is not None:
                        sink(view[pos:pos + taken])
                    pos += taken
                    self._left -= taken
                    self.received += taken
                    if not self._left:
                        self._state, self._left = _DATA_END, 2
                elif self._state == _DATA_END:
                    if view[pos] != (_CR if self._left == 2 else _LF):
                        raise protocol_error("chunk data not followed by CRLF")
                    pos += 1
                    self._left -= 1
                    if not self._left:
                        self._state = _SIZE
                else:
                    pos = self._read_line(view, pos, end)
        return pos

    def _room(self) -> int:
        """How many more bytes the line being read may take, its LF included."""
        if self._state == _SIZE:
            return _MAX_SIZE_DIGITS + self.limits.request_line + 2 - len(self._line)
        return self.limits.header_block - self._trailer_size - len(self._line)

    def _read_line(self, view: memoryview, pos: int, end: int) -> int:
        """Gather the current line from ``view[pos:end]``; returns the new position."""
        room = self._room()
        found = _NEWLINE.search(view, pos, min(end, pos + room))
        if found is None:
            if end - pos >= room:
                raise protocol_error("chunk-size line or trailer section too long")
            self._line += view[pos:end]
            return end
        stop = found.end()
        self._line += view[pos:stop]
        line = bytes(self._line)
        self._line.clear()
        if line[-2:] != b"\r\n":
            raise protocol_error("bare LF in chunked framing")
        text = line[:-2].decode("latin-1")
        if self._state == _SIZE:
            self._start_chunk(text)
        else:
            self._trailer_line(text, len(line))
        return stop

    def _start_chunk(self, text: str) -> None:
        match = CHUNK_LINE.fullmatch(text)
        if match is None:
            raise protocol_error("malformed chunk-size line")
        if len(match.group("ext")) > self.limits.request_line:
            raise protocol_error("chunk extension too long")
        size = int(match.group("size"), 16)
        if self.received + size > self.max_body:
            raise HTTPError(413, "The request body is larger than this server accepts ("
                                 f"{size_limit(self.limit_setting, self.max_body)}).",
                            close=True)
        if size:
            self._state, self._left = _DATA, size
        else:
            self._state = _TRAILER

    def _trailer_line(self, text: str, size: int) -> None:
        self._trailer_size += size
        if not text:
            self._state = _DONE
            return
        self._trailer_fields += 1
        if self._trailer_fields > self.limits.header_count:
            raise protocol_error("too many trailer fields")
        parse_field_line(text)


class BodyReader:
    """The body of one request, read from the connection in bounded pieces.

    ``receive(deadline)`` returns the next bytes from the client (b"" when it closed) or
    raises the ``HTTPError`` for a ``time.monotonic()`` deadline that passed.  Each
    :meth:`read` may wait ``timeout`` seconds for its bytes; :meth:`discard` that long for the
    whole rest of the body, since nobody needs it.  ``buffer`` is the connection's buffer,
    where bytes past the body stay for the next request.  ``limit`` bounds the body (413
    beyond it, before the excess is read); a handler that accepts more raises it before
    reading.  When the client
    sent ``Expect: 100-continue``, ``send_continue`` is called once, before the first wait
    for body bytes (RFC 9110 §10.1.1), so a client that waits for it gets it only when Nex
    really reads the body.  ``send_interim`` sends another ``1xx`` response for
    :meth:`interim` (None where none may be sent: to an HTTP/1.0 client).

    ``min_rate`` (bytes per second, 0 for none) bounds the body's average rate: once Nex has
    waited ``grace`` seconds for it in all, a body whose bytes (framing included) arrive
    slower than that on average gets 408, so a client dribbling a byte now and then cannot
    hold a worker for ever.  Only time spent waiting for the client counts, never time the
    handler spends elsewhere (writing to disk, waiting for an origin).
    """

    def __init__(self, request: Request, buffer: bytearray,
                 receive: Callable[[float], bytes], timeout: float, limit: int,
                 limits: HeadLimits,
                 send_continue: Optional[Callable[[], None]] = None,
                 send_interim: Optional[Callable[[int, Sequence[Tuple[str, str]]], None]] = None,
                 *, min_rate: int = 0, grace: float = 0.0) -> None:
        self.length: Optional[int] = None if request.chunked else request.body_length
        self.limit = limit
        #: The setting ``limit`` comes from, named by the 413; a handler that changes
        #: ``limit`` names its own.
        self.limit_setting = "max_request_body"
        self._decoder: Union[ChunkedBody, FixedLengthBody] = (
            ChunkedBody(limit, limits) if request.chunked else FixedLengthBody(request.body_length))
        self._buffer = buffer
        self._receive = receive
        self._timeout = timeout
        self._send_continue = send_continue
        self._send_interim = send_interim
        self._min_rate = min_rate
        self._grace = grace
        #: Seconds spent waiting for the client's bytes, and the bytes that arrived.
        self._waited = 0.0
        self._arrived = 0

    @property
    def done(self) -> bool:
        """Whether the whole body has been read."""
        return self._decoder.done

    @property
    def awaiting_continue(self) -> bool:
        """Whether the client waits for ``100 Continue`` that nobody has asked to send:
        nothing read the body, so it may never come."""
        return self._send_continue is not None

    def interim(self, status: int, headers: Sequence[Tuple[str, str]]) -> None:
        """Send the interim response ``status`` with ``headers`` before the body is read, if
        the client may get one (RFC 9110 §15.2); raises ``HTTPError`` 400 (closing) when the
        client is gone."""
        if self._send_interim is not None:
            self._send_interim(status, headers)

    @property
    def received(self) -> int:
        """Body bytes read so far (chunk data only, for a chunked body)."""
        return self._decoder.received

    def read(self) -> bytes:
        """The next piece of the body, at most what one receive brings; b"" at its end.

        Raises ``HTTPError`` 400 for broken framing or a client that closed inside the body,
        408 for one too slow, 413 past ``limit``; each asks the connection to close.
        """
        pieces: List[bytes] = []
        deadline = time.monotonic() + self._timeout
        while not pieces and not self.done:
            self._take(lambda view: pieces.append(bytes(view)), deadline)
        return b"".join(pieces)

    def discard(self) -> None:
        """Read the rest of the body and drop it."""
        deadline = time.monotonic() + self._timeout
        while not self.done:
            self._take(None, deadline)

    def __iter__(self):
        """The body's remaining pieces, in order."""
        while True:
            piece = self.read()
            if not piece:
                return
            yield piece

    def _take(self, sink: Sink, deadline: float) -> None:
        """Feed the buffered bytes to the decoder, receiving more when it has none."""
        decoder = self._decoder
        if isinstance(decoder, FixedLengthBody):
            if decoder.length > self.limit:
                raise HTTPError(413, "The request body is larger than this server accepts ("
                                     f"{size_limit(self.limit_setting, self.limit)}).",
                                close=True)
        else:
            decoder.max_body = self.limit
            decoder.limit_setting = self.limit_setting
        buffer = self._buffer
        if buffer:
            with memoryview(buffer) as view:
                consumed = decoder.feed(view, sink)
            del buffer[:consumed]
            if consumed or decoder.done:
                return
        if self._send_continue is not None:
            send_continue, self._send_continue = self._send_continue, None
            send_continue()
        started = time.monotonic()
        if self._min_rate:
            # The moment the average would fall below the minimum if nothing more came.
            allowed = max(self._grace, self._arrived / self._min_rate) - self._waited
            if started + allowed < deadline:
                deadline = started + allowed
        try:
            chunk = self._receive(deadline)
        finally:
            self._waited += time.monotonic() - started
        if not chunk:
            raise HTTPError(400, "The connection closed inside the request body.", close=True)
        self._arrived += len(chunk)
        buffer += chunk
