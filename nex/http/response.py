"""The writer: the one place bytes go out to a client.

A :class:`Response` is a plain value that handlers build; :func:`write_response` puts it on
the socket: the head, then the body from bytes, slices of an open file (``os.sendfile``,
zero-copy; read in bounded pieces and encrypted on a TLS socket), or a stream produced while
sending (a proxied body) framed by Content-Length, chunked, or the end of the connection.  A
response owns what its body comes from and :meth:`Response.release` frees it, whatever path
the exchange took.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import (Dict, Iterable, Iterator, NamedTuple, Optional, Protocol, Sequence,
                    Tuple, Union)

from nex import SERVER_SOFTWARE
from nex.http.dates import http_date_now
from nex.http.errors import REASON_PHRASES
from nex.http.framing import (CHUNK_END, CHUNKED, LAST_CHUNK, LENGTH, NO_BODY,
                              chunk_size_line, outgoing_framing)

#: The most plaintext one TLS record carries (RFC 8446 §5.1, RFC 5246 §6.2.1): the unit in
#: which bodies go to an encrypted socket.
RECORD_SIZE = 16 * 1024
_KEEP_ALIVE = "Connection: keep-alive\r\n\r\n"
_CLOSE = "Connection: close\r\n\r\n"


class FileSlice(NamedTuple):
    """``count`` bytes of the response's file, starting at ``offset``."""

    offset: int
    count: int


BodyPiece = Union[bytes, FileSlice]


class OpenFile:
    """A file descriptor a response body is read from, closed once.

    Lighter than a Python file object, whose creation costs system calls (``fstat``,
    ``ioctl``, ``lseek``) that ``os.sendfile`` and ``os.pread`` never need.
    """

    __slots__ = ("_descriptor",)

    def __init__(self, descriptor: int) -> None:
        self._descriptor = descriptor

    def fileno(self) -> int:
        """The descriptor."""
        return self._descriptor

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._descriptor < 0

    def close(self) -> None:
        """Close the descriptor; later calls do nothing."""
        if self._descriptor >= 0:
            descriptor, self._descriptor = self._descriptor, -1
            os.close(descriptor)


class Tunnel(Protocol):
    """A CONNECT tunnel, run over the client's socket once the 2xx head is out."""

    def __call__(self, client_sock: socket.socket, pending: bytes) -> Tuple[int, int]:
        """Relay until the tunnel ends; ``pending`` is what the client already sent past
        the request head.  Returns the bytes relayed ``(client to origin, origin to
        client)`` and leaves nothing of its own open."""

    def close(self) -> None:
        """Free what the tunnel holds without running it (the head could not be sent)."""


class BodyFault(OSError):
    """The server could not produce the body it announced (a file that shrank, a disk read
    error, an origin that broke off): the response is cut short and the connection closed."""


@dataclass
class Response:
    """A reply ready to write.

    ``headers`` are the handler's own; the writer adds ``Date``, ``Server``,
    ``X-Content-Type-Options: nosniff`` (browsers take the ``Content-Type`` as sent, so a
    file is never run as a script or page it was not sent as), the framing
    (``Content-Length`` computed from ``body``, or ``Transfer-Encoding``) and
    ``Connection``.  The body is one of:

    - ``body``: a sequence of pieces, bytes or :class:`FileSlice` ranges of ``file`` (an
      :class:`OpenFile`, or anything with ``fileno()`` and ``close()``);
    - ``stream``: bytes produced while sending, ``stream_length`` long when that is known;
      otherwise chunked for an HTTP/1.1 client, else delimited by closing the connection.

    ``forwarded`` marks headers relayed from an origin: the writer then adds neither
    ``Server`` nor ``Date`` (the relay adds ``Date`` when the origin sent none), and
    ``reason`` is the origin's reason phrase (None: the RFC 9110 one for ``status``).
    ``made_fields`` holds field lines made and checked already, each ending in CRLF: those an
    origin sent, passed on as they are (:func:`nex.proxy.forwarding.relayed_fields` made
    them once per origin head), or a range's ``Content-Range`` beside the file's remembered
    ``headers``; they go before ``headers``.  A relayed ``304`` whose ``stream_length``
    is known carries it as ``Content-Length``: it describes the representation (RFC 9110
    §8.6).  ``tunnel`` (CONNECT) takes the connection over after the head; the connection
    runs it, or closes it when the head could not be sent.  ``close`` asks for the
    connection to close afterwards.  A handler answers HEAD with the very response it gives
    GET; the writer leaves the body out.  ``user``, ``refusal`` (the token of the rule that
    refused the request, see :class:`HTTPError`) and ``upstream`` (the origin a proxied
    request went to) are for the access log, ``failure`` (what failed beyond Nex, see
    :class:`HTTPError`) for the metrics.
    """

    status: int
    headers: Sequence[Tuple[str, str]] = field(default_factory=list)
    body: Sequence[BodyPiece] = ()
    file: Optional[OpenFile] = None
    close: bool = False
    stream: Optional[Iterable[bytes]] = None
    stream_length: Optional[int] = None
    forwarded: bool = False
    made_fields: str = ""
    tunnel: Optional[Tunnel] = None
    user: Optional[str] = None
    reason: Optional[str] = None
    refusal: Optional[str] = None
    upstream: Optional[str] = None
    failure: Optional[str] = None

    @property
    def content_length(self) -> Optional[int]:
        """The number of body bytes GET would carry, or None when not known in advance."""
        if self.stream is not None:
            return self.stream_length
        body = self.body
        if len(body) == 1:  # most bodies: one piece, counted without a generator
            piece = body[0]
            return piece.count if isinstance(piece, FileSlice) else len(piece)
        return sum([piece.count if isinstance(piece, FileSlice) else len(piece)
                    for piece in body])

    def release(self) -> None:
        """Close the file and stream the body comes from; safe to call more than once.

        A stream is closed by its ``close()``, if it has one (a relayed body returns its
        origin connection to the pool there)."""
        if self.file is not None:
            self.file.close()
        close = getattr(self.stream, "close", None)
        if close is not None:
            close()


#: The status line of each status with its RFC 9110 reason phrase.
_STATUS_LINES = {status: f"HTTP/1.1 {status} {phrase}\r\n"
                 for status, phrase in REASON_PHRASES.items()}
#: What follows ``Date`` in the head of each of Nex's own responses.
_OWN_FIELDS = f"\r\nServer: {SERVER_SOFTWARE}\r\nX-Content-Type-Options: nosniff\r\n"
#: The field lines of header tuples, by tuple (:func:`field_lines`), and how many it keeps.
_FIELD_LINES: Dict[Tuple[Tuple[str, str], ...], str] = {}
_FIELD_LINES_LIMIT = 1024
_SMALL_BODY = 64 * 1024
#: A file slice larger than this goes out through ``os.sendfile`` even in a small body:
#: reading it into memory and writing it again copies it twice, which costs more than the
#: second system call the head then needs.
_COPY_LIMIT = 16 * 1024
_MSG_MORE = getattr(socket, "MSG_MORE", 0)
_SENDFILE_BLOCK = 1 << 30
#: How much of a file one read takes on its way to a TLS socket, which has no sendfile.
_READ_BLOCK = 256 * 1024
#: What a send raises when its time-out runs out: a plain socket's SO_SNDTIMEO makes the
#: kernel answer EAGAIN (BlockingIOError); a TLS socket has a Python time-out instead
#: (socket.timeout), since a blocking SSLSocket retries past SO_SNDTIMEO for ever.
TIMED_OUT = (BlockingIOError, socket.timeout)


def timeval(seconds: float) -> bytes:
    """``seconds`` as the ``struct timeval`` that SO_RCVTIMEO and SO_SNDTIMEO take.

    Those kernel time-outs cost no system call per send or receive, where a socket's Python
    time-out polls before each one.
    """
    whole = int(seconds)
    return struct.pack("@ll", whole, int((seconds - whole) * 1_000_000) or (0 if whole else 1))


def serialize_head(response: Response, *, keep_alive: bool,
                   content_length: Optional[int] = None, framing: Optional[str] = None
                   ) -> bytes:
    """The status line and header section of ``response``, ending in the blank line.

    Raises ``ValueError`` when a header or the reason would carry CR, LF or NUL: such a
    value could split the response, so it is a fault of the server, never something to
    send.  ``content_length`` saves recounting the body when the caller knows its size, and
    ``framing`` deciding it (:func:`~nex.http.framing.outgoing_framing`; None: decided here
    for an HTTP/1.1 client).
    """
    status = response.status
    if framing is None:
        if content_length is None:
            content_length = response.content_length
        framing = outgoing_framing(content_length, status, True)
    fields = field_lines(response.headers)
    reason = response.reason
    if reason is None:
        status_line = _STATUS_LINES[status]
    elif "\r" in reason or "\n" in reason or "\0" in reason:
        raise ValueError(f"unsafe characters in the reason phrase {reason!r}")
    else:
        status_line = f"HTTP/1.1 {status} {reason}\r\n"
    if response.tunnel is not None:
        length, connection = "", "\r\n"
    else:
        connection = _KEEP_ALIVE if keep_alive else _CLOSE
        if framing == LENGTH:
            if content_length is None:
                content_length = response.content_length
            length = f"Content-Length: {content_length}\r\n"
        elif framing == NO_BODY:  # a status without content (RFC 9110 §6.4.1)
            length = (f"Content-Length: {response.stream_length}\r\n"
                      if status == 304 and response.stream is not None
                      and response.stream_length is not None else "")
        elif framing == CHUNKED:
            length = "Transfer-Encoding: chunked\r\n"
        else:  # UNTIL_CLOSE
            length = ""
    stamp = "" if response.forwarded else f"Date: {http_date_now()}{_OWN_FIELDS}"
    return (f"{status_line}{stamp}{response.made_fields}{fields}{length}{connection}"
            ).encode("latin-1")


def field_lines(headers: Sequence[Tuple[str, str]]) -> str:
    """The field lines of ``headers``, each ending in CRLF; ``ValueError`` for a name or
    value that would carry CR, LF or NUL.

    Those of a tuple are remembered (at most :data:`_FIELD_LINES_LIMIT` tuples, all
    forgotten at once past it): a handler whose fields repeat (a file served again, an
    error in one form) passes the same tuple, whose lines are then made and checked once.
    Such a tuple holds ``str`` names and values only: tuples are told apart by equality,
    which would take ``1`` and ``True`` for the same value.
    """
    remembered = type(headers) is tuple
    if remembered:
        lines = _FIELD_LINES.get(headers)  # type: ignore[arg-type]
        if lines is not None:
            return lines
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers])
    # Each field line must end in the one CRLF put there above, and hold no NUL.
    if lines.count("\n") != len(headers) or lines.count("\r") != len(headers) or "\0" in lines:
        raise ValueError(f"unsafe characters in response headers {headers!r}")
    if remembered:
        if len(_FIELD_LINES) >= _FIELD_LINES_LIMIT:
            _FIELD_LINES.clear()
        _FIELD_LINES[headers] = lines  # type: ignore[index]
    return lines


class Progress:
    """What a write has put on the wire so far: ``body_sent`` bytes of content."""

    __slots__ = ("body_sent",)

    def __init__(self) -> None:
        self.body_sent = 0


def write_response(sock: socket.socket, response: Response, *, head_only: bool,
                   keep_alive: bool, min_rate: int = 0, grace: float = 0.0,
                   chunked_allowed: bool = True, progress: Optional[Progress] = None,
                   encrypted: bool = False) -> int:
    """Send ``response`` on ``sock``; return the number of body bytes sent.

    Small bodies (up to 64 KiB, with no file slice over 16 KiB) go out with the head in one
    write; larger file slices through ``os.sendfile`` (zero-copy), the head flagged
    ``MSG_MORE`` so the kernel can put it in the same segment as the first body bytes.  The
    socket's SO_SNDTIMEO bounds each call; beyond ``grace`` seconds a client that has read
    less than ``min_rate`` bytes per second on average is dropped (``TimeoutError``), so
    trickling reads cannot hold a worker.
    ``progress`` counts the body bytes sent, also when the write fails part way.  A body
    that cannot be produced whole raises :class:`BodyFault`.  The response is released in
    every case.

    ``encrypted`` says ``sock`` is an ``ssl.SSLSocket``: bytes must pass through it, so file
    slices are read in pieces of 256 KiB instead of sent with ``os.sendfile``, no send
    flags are given, and each send carries at most one TLS record, because its time-out
    (the socket's own, set by the caller) covers the whole call, not each byte moved.
    """
    pace = _Pace(min_rate, grace, progress or Progress())
    more = 0 if encrypted else _MSG_MORE
    most = RECORD_SIZE if encrypted else None
    try:
        total = response.content_length
        framing = outgoing_framing(total, response.status, chunked_allowed)
        head = serialize_head(response, keep_alive=keep_alive, content_length=total,
                              framing=framing)
        if head_only or framing == NO_BODY or response.tunnel is not None:
            _send_all(sock, head, 0, None, most=most)
            return 0
        if response.stream is not None:
            _send_stream(sock, head, response.stream, total, framing, pace, more, most)
            return pace.progress.body_sent
        body = response.body
        if not body:
            _send_all(sock, head, 0, None, most=most)
            return 0
        if total <= _SMALL_BODY:
            if len(body) == 1 and not isinstance(body[0], FileSlice):  # bytes in memory
                _send_all(sock, head + body[0], 0, pace, len(head), most)
                return total
            if encrypted or not _has_large_slice(body):
                _send_all(sock, head + b"".join(_read_pieces(response)), 0, pace, len(head),
                          most)
                return total
        _send_all(sock, head, more, None, most=most)
        last = len(body) - 1
        for index, piece in enumerate(body):
            if isinstance(piece, FileSlice):
                if encrypted:
                    _copy_file_slice(sock, response.file.fileno(), piece, pace)
                else:
                    _send_file_slice(sock, response.file.fileno(), piece, pace)
            else:
                _send_all(sock, piece, more if index < last else 0, pace, most=most)
        return total
    finally:
        if response.file is not None or response.stream is not None:
            response.release()


class _Pace:
    """Body bytes sent so far in one response, checked against a minimum average rate."""

    __slots__ = ("_min_rate", "_grace", "_started", "progress")

    def __init__(self, min_rate: int, grace: float, progress: Progress) -> None:
        self._min_rate = min_rate
        self._grace = grace
        self._started = time.monotonic()
        self.progress = progress

    def add(self, count: int) -> None:
        """Count ``count`` more bytes sent; raise ``TimeoutError`` if the client lags."""
        self.progress.body_sent += count
        if self._min_rate:
            elapsed = time.monotonic() - self._started
            if elapsed > self._grace and self.progress.body_sent < self._min_rate * elapsed:
                raise TimeoutError("the client reads slower than the minimum send rate")


def _send_all(sock: socket.socket, data: bytes, flags: int, pace: Optional[_Pace],
              skip: int = 0, most: Optional[int] = None) -> None:
    """``sock.sendall`` that keeps ``pace``, counting bytes past the first ``skip`` (a head
    sent with its body) as body bytes; one ``send`` when the buffer has room.  ``most``
    caps the bytes one ``send`` is given (None: no cap)."""
    try:
        sent = sock.send(data if most is None else memoryview(data)[:most], flags)
        if sent == len(data):
            if pace is not None:
                pace.progress.body_sent += sent - skip
            return
        view = memoryview(data)
        while True:
            if pace is not None:
                counted = max(0, sent - skip)
                skip = max(0, skip - sent)
                pace.add(counted)
            view = view[sent:]
            if not view:
                return
            sent = sock.send(view if most is None else view[:most], flags)
    except TIMED_OUT:
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
            raise BodyFault(f"the file shrank while being sent ({piece.count - remaining} of "
                            f"{piece.count} bytes)")
        offset += sent
        remaining -= sent
        pace.add(sent)


def _copy_file_slice(sock: socket.socket, file_descriptor: int, piece: FileSlice,
                     pace: _Pace) -> None:
    """Send the slice through a TLS socket, keeping ``pace``: read in pieces of
    ``_READ_BLOCK`` bytes (memory stays bounded however large the file), each sent one TLS
    record at a time."""
    offset, remaining = piece.offset, piece.count
    while remaining:
        try:
            data = os.pread(file_descriptor, min(remaining, _READ_BLOCK), offset)
        except OSError as error:
            raise BodyFault(f"the file could not be read: {error.strerror}") from None
        if not data:
            raise BodyFault(f"the file shrank while being sent ({piece.count - remaining} of "
                            f"{piece.count} bytes)")
        _send_all(sock, data, 0, pace, most=RECORD_SIZE)
        offset += len(data)
        remaining -= len(data)


def _send_stream(sock: socket.socket, head: bytes, stream: Iterable[bytes],
                 length: Optional[int], framing: str, pace: _Pace, more: int,
                 most: Optional[int]) -> None:
    """Send ``head``, then each piece of ``stream`` as it comes, framed per ``framing``;
    ``more`` is the flag for sends that more bytes follow, ``most`` caps one send.

    The send that completes a body of known length goes without ``more``: nothing follows
    it to push the held-back bytes out, and the kernel would sit on them for 200 ms.
    """
    _send_all(sock, head, 0 if length == 0 else more, None, most=most)
    produced = 0
    for piece in stream:
        if not piece:
            continue
        produced += len(piece)
        if length is not None and produced > length:
            raise BodyFault(f"the body ran past its announced length of {length} bytes")
        if framing == CHUNKED:
            _send_all(sock, chunk_size_line(len(piece)), more, None, most=most)
            _send_all(sock, piece, more, pace, most=most)
            _send_all(sock, CHUNK_END, more, None, most=most)
        else:
            _send_all(sock, piece, 0 if produced == length else more, pace, most=most)
    if length is not None and produced != length:
        raise BodyFault(f"the body ended after {produced} of {length} bytes")
    if framing == CHUNKED:
        _send_all(sock, LAST_CHUNK, 0, None, most=most)


def _has_large_slice(body: Sequence[BodyPiece]) -> bool:
    """Whether ``body`` holds a file slice worth sending with ``os.sendfile`` even though
    the whole body is small enough to go out with the head in one write."""
    # A loop, not any() over a generator: leaving a generator early raises GeneratorExit
    # inside it, and a raised exception is dear on some interpreters (CPython gh-109181).
    for piece in body:
        if isinstance(piece, FileSlice) and piece.count > _COPY_LIMIT:
            return True
    return False


def _read_pieces(response: Response) -> Iterator[bytes]:
    for piece in response.body:
        if isinstance(piece, FileSlice):
            try:
                data = os.pread(response.file.fileno(), piece.count, piece.offset)
            except OSError as error:
                raise BodyFault(f"the file could not be read: {error.strerror}") from None
            if len(data) != piece.count:
                raise BodyFault(f"the file shrank while being sent ({len(data)} of "
                                f"{piece.count} bytes)")
            yield data
        else:
            yield piece


def write_interim(sock: socket.socket, status: int,
                  headers: Sequence[Tuple[str, str]] = ()) -> None:
    """Send a ``1xx`` interim response, such as ``100 Continue`` (RFC 9110 §15.2), with
    ``headers`` (names and values Nex made, never CR, LF or NUL)."""
    fields = "".join(f"{name}: {value}\r\n" for name, value in headers)
    try:
        sock.sendall(f"{_STATUS_LINES[status]}{fields}\r\n".encode("latin-1"))
    except TIMED_OUT:
        raise TimeoutError("the client stopped reading") from None
