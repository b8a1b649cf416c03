"""The receiver: request bodies counted and discarded, so the next request starts cleanly.

Nex serves files and never needs a request's body, but a persistent connection can only go
on once the body's last byte has been read.  The decoders here are fed whatever the
connection has buffered, in pieces of any size, and say how much of it belonged to the
body; bytes after the body's end are left for the next request.
"""

from __future__ import annotations

import re
from typing import Union

from nex.errors import HTTPError
from nex.grammar import CHUNK_LINE
from nex.request import Limits, parse_field_line

Data = Union[bytes, bytearray, memoryview]

_NEWLINE = re.compile(rb"\n")
_CR, _LF = 13, 10
# A chunk-size line holds at most 16 hex digits, a chunk extension and CRLF.
_MAX_SIZE_DIGITS = 16

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


def _bad(detail: str) -> HTTPError:
    return HTTPError(400, detail, close=True)


class FixedLengthBody:
    """A body framed by Content-Length: exactly ``length`` bytes."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.received = 0

    @property
    def done(self) -> bool:
        """Whether every byte of the body has been fed."""
        return self.received >= self.length

    def feed(self, data: Data) -> int:
        """Count the body bytes at the start of ``data``; returns how many were taken."""
        taken = min(len(data), self.length - self.received)
        self.received += taken
        return taken


class ChunkedBody:
    """A body framed by the chunked transfer coding (RFC 9112 §7.1), parsed strictly.

    Chunk sizes have at most 16 hex digits, a chunk-size line's extensions at most
    ``limits.request_line`` bytes, and the trailer section at most ``limits.header_block``
    bytes and ``limits.header_count`` field lines, each a valid field line.  Every line ends
    in CRLF and every chunk's data is followed by CRLF.  A violation raises
    ``HTTPError(400)``; chunk sizes adding up to more than ``max_body`` raise
    ``HTTPError(413)`` before the data is read.  Both ask the connection to close.
    ``received`` counts chunk data only, not the framing around it.
    """

    def __init__(self, max_body: int, limits: Limits) -> None:
        self.max_body = max_body
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

    def feed(self, data: Data) -> int:
        """Parse as much of ``data`` as belongs to the body; returns how many bytes that was."""
        with memoryview(data) as view:
            pos, end = 0, len(view)
            while pos < end and self._state != _DONE:
                if self._state == _DATA:
                    taken = min(end - pos, self._left)
                    pos += taken
                    self._left -= taken
                    self.received += taken
                    if not self._left:
                        self._state, self._left = _DATA_END, 2
                elif self._state == _DATA_END:
                    if view[pos] != (_CR if self._left == 2 else _LF):
                        raise _bad("chunk data not followed by CRLF")
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
                raise _bad("chunk-size line or trailer section too long")
            self._line += view[pos:end]
            return end
        stop = found.end()
        self._line += view[pos:stop]
        line = bytes(self._line)
        self._line.clear()
        if line[-2:] != b"\r\n":
            raise _bad("bare LF in chunked framing")
        text = line[:-2].decode("latin-1")
        if self._state == _SIZE:
            self._start_chunk(text)
        else:
            self._trailer_line(text, len(line))
        return stop

    def _start_chunk(self, text: str) -> None:
        match = CHUNK_LINE.fullmatch(text)
        if match is None:
            raise _bad("malformed chunk-size line")
        if len(match.group("ext")) > self.limits.request_line:
            raise _bad("chunk extension too long")
        size = int(match.group("size"), 16)
        if self.received + size > self.max_body:
            raise HTTPError(413, "request body too large", close=True)
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
            raise _bad("too many trailer fields")
        parse_field_line(text)
