"""The writer: a :class:`Response` onto a socket, file bodies through ``socket.sendfile``."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from nex import SERVER_SOFTWARE
from nex.clock import http_date_now
from nex.errors import reason_phrase

_KEEP_ALIVE = "Connection: keep-alive\r\n\r\n"
_CLOSE = "Connection: close\r\n\r\n"


class FileSlice(NamedTuple):
    """``count`` bytes of the response's file, starting at ``offset``."""

    offset: int
    count: int


BodyPiece = Union[bytes, FileSlice]


@dataclass
class Response:
    """A reply ready to write.

    ``headers`` are the handler's own; the writer adds ``Date``, ``Server``,
    ``Content-Length`` (computed from ``body``) and ``Connection``.  ``body`` is a sequence of
    pieces: bytes, or :class:`FileSlice` ranges of ``file``, an open binary file that the
    writer closes when done.  A handler answers HEAD with the very response it gives GET; the
    writer leaves the body out.  ``close`` asks for the connection to close afterwards.
    """

    status: int
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: Sequence[BodyPiece] = ()
    file: Optional[BinaryIO] = None
    close: bool = False

    @property
    def content_length(self) -> int:
        """The number of body bytes GET would carry."""
        return sum(piece.count if isinstance(piece, FileSlice) else len(piece)
                   for piece in self.body)


_NO_BODY_STATUSES = frozenset({204, 304})
_SMALL_BODY = 64 * 1024
_MSG_MORE = getattr(socket, "MSG_MORE", 0)
_SENDFILE_BLOCK = 1 << 30


def _has_content_length(status: int) -> bool:
    return status >= 200 and status not in _NO_BODY_STATUSES


def serialize_head(response: Response, *, keep_alive: bool,
                   content_length: Optional[int] = None) -> bytes:
    """The status line and header section of ``response``, ending in the blank line.

    Raises ``ValueError`` when a header would carry CR, LF or NUL: such a value could split
    the response, so it is a fault of the server, never something to send.
    ``content_length`` saves recounting the body when the caller knows its size.
    """
    status = response.status
    fields = "".join([f"{name}: {value}\r\n" for name, value in response.headers])
    # Each field line must end in the one CRLF put there above, and hold no NUL.
    if fields.count("\n") != len(response.headers) or fields.count("\r") != len(
            response.headers) or "\0" in fields:
        raise ValueError(f"unsafe characters in response headers {response.headers!r}")
    if not _has_content_length(status):
        length = ""
    else:
        if content_length is None:
            content_length = response.content_length
        length = f"Content-Length: {content_length}\r\n"
    return (f"HTTP/1.1 {status} {reason_phrase(status)}\r\nDate: {http_date_now()}\r\n"
            f"Server: {SERVER_SOFTWARE}\r\n{fields}{length}"
            f"{_KEEP_ALIVE if keep_alive else _CLOSE}").encode("latin-1")


def write_response(sock: socket.socket, response: Response, *, head_only: bool,
                   keep_alive: bool, min_rate: int = 0, grace: float = 0.0) -> int:
    """Send ``response`` on ``sock``; return the number of body bytes sent.

    Small bodies go out with the head in one write; larger file slices through
    ``os.sendfile`` (zero-copy), the head flagged ``MSG_MORE`` so the kernel can put it in
    the same segment as the first body bytes.  The socket's SO_SNDTIMEO bounds each call;
    beyond ``grace`` seconds a client that has read less than ``min_rate`` bytes per second
    on average is dropped (``TimeoutError``), so trickling reads cannot hold a worker.
    The response's file is closed in every case.
    """
    pace = _Pace(min_rate, grace)
    try:
        body = response.body
        total = response.content_length
        head = serialize_head(response, keep_alive=keep_alive, content_length=total)
        if head_only or not body or not _has_content_length(response.status):
            _send_all(sock, head, 0, pace)
            return 0
        if total <= _SMALL_BODY:
            if len(body) == 1 and not isinstance(body[0], FileSlice):
                _send_all(sock, head + body[0], 0, pace)
            else:
                _send_all(sock, head + b"".join(_read_pieces(response)), 0, pace)
            return total
        _send_all(sock, head, _MSG_MORE, pace)
        last = len(body) - 1
        for index, piece in enumerate(body):
            if isinstance(piece, FileSlice):
                _send_file_slice(sock, response.file.fileno(), piece, pace)
            else:
                _send_all(sock, piece, _MSG_MORE if index < last else 0, pace)
        return total
    finally:
        if response.file is not None:
            response.file.close()


class _Pace:
    """Bytes sent so far in one response, checked against a minimum average rate."""

    __slots__ = ("_min_rate", "_grace", "_started", "sent")

    def __init__(self, min_rate: int, grace: float) -> None:
        self._min_rate = min_rate
        self._grace = grace
        self._started = time.monotonic()
        self.sent = 0

    def add(self, count: int) -> None:
        """Count ``count`` more bytes sent; raise ``TimeoutError`` if the client lags."""
        self.sent += count
        if self._min_rate:
            elapsed = time.monotonic() - self._started
            if elapsed > self._grace and self.sent < self._min_rate * elapsed:
                raise TimeoutError("the client reads slower than the minimum send rate")


def _send_all(sock: socket.socket, data: bytes, flags: int, pace: _Pace) -> None:
    """``sock.sendall`` that keeps ``pace``; one ``send`` when the buffer has room."""
    try:
        sent = sock.send(data, flags)
        if sent == len(data):
            pace.sent += sent
            return
        view = memoryview(data)
        while True:
            pace.add(sent)
            view = view[sent:]
            if not view:
                return
            sent = sock.send(view, flags)
    except BlockingIOError:
        raise TimeoutError("the client stopped reading") from None


def _send_file_slice(sock: socket.socket, file_descriptor: int, piece: FileSlice,
                     pace: _Pace) -> None:
    """``os.sendfile`` the slice, keeping ``pace``.

    ``socket.sendfile`` is not used: on a blocking socket it waits forever for a client
    that stopped reading, and with a Python time-out it polls before every call.
    """
    offset, remaining = piece.offset, piece.count
    out = sock.fileno()
    while remaining:
        try:
            sent = os.sendfile(out, file_descriptor, offset, min(remaining, _SENDFILE_BLOCK))
        except BlockingIOError:
            raise TimeoutError("the client stopped reading") from None
        if sent == 0:
            raise OSError(f"file shrank while being sent ({piece.count - remaining} of "
                          f"{piece.count} bytes)")
        offset += sent
        remaining -= sent
        pace.add(sent)


def _read_pieces(response: Response) -> Iterator[bytes]:
    for piece in response.body:
        if isinstance(piece, FileSlice):
            data = os.pread(response.file.fileno(), piece.count, piece.offset)
            if len(data) != piece.count:
                raise OSError(f"file shrank while being sent ({len(data)} of {piece.count} bytes)")
            yield data
        else:
            yield piece
