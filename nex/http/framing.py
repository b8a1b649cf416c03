"""Message framing, once for both directions: where a head ends, where its body ends, and
whether the connection carries another message (RFC 9112 §2, §6, §7.1, §9.3).

The request parser (:mod:`nex.http.request`), the writer (:mod:`nex.http.response`), the
connection and the proxy's origin side (:mod:`nex.proxy.upstream`) all decide framing here,
as h11's ``_body_framing`` and ``_keep_alive`` serve requests and responses alike.  A body is
framed in one of four ways, :data:`NO_BODY`, :data:`LENGTH`, :data:`CHUNKED` or
:data:`UNTIL_CLOSE`.  Refusals are ``HTTPError(400)`` (``501`` for a transfer coding Nex
does not implement) asking the connection to close, as a server answers a request; the
proxy turns them into ``502`` for a response.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, FrozenSet, NamedTuple, Optional, Sequence, Tuple, Union

from nex.http.errors import HTTPError, protocol_error, size_limit
from nex.http.grammar import CONTENT_LENGTH, TOKEN, TRANSFER_CODING, parse_list

if TYPE_CHECKING:
    from nex.process.config import Config

#: The framing vocabulary (RFC 9112 §6.3): no body; Content-Length; the chunked transfer
#: coding; until the sender closes the connection.
NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE = "none", "length", "chunked", "close"

#: A head ends at an LF followed by CRLF, or by a bare LF that :func:`split_head` then
#: refuses (so a head ending in bare LFs is answered at once instead of waited on).
HEAD_ENDS = (b"\n\r\n", b"\n\n")
#: What ends each chunk's data, and the last chunk with an empty trailer section (§7.1).
CHUNK_END = b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"
_CR = 13

_NO_CONTENT_STATUSES = frozenset({204, 304})
#: Field values longer than this are parsed each time rather than remembered.
_CACHED_VALUE_LENGTH = 512
_NO_OPTIONS: Tuple[FrozenSet[str], bool] = (frozenset(), True)


class HeadLimits(NamedTuple):
    """Size limits on a message head, in bytes (``header_count`` in field lines).

    ``request_line`` bounds the start line (request or status line) without its CRLF (over
    it: 414 for a request); ``header_block`` the whole head from the start line to the blank
    line that ends it, and ``header_count`` its field lines (over either: 431).  The chunked
    decoder and the form parser reuse them: chunk extensions and a form's delimiter lines
    are bounded like a start line, trailers and a form part's header section like a head.
    These defaults are the ``[limits]`` settings' defaults.  A tuple, so that it hashes in C:
    the parse caches key on it.
    """

    request_line: int = 8192
    header_block: int = 65536
    header_count: int = 100

    @classmethod
    def from_config(cls, config: Config) -> HeadLimits:
        """The limits set in ``config``'s ``[limits]`` section."""
        return cls(config.max_request_line, config.max_header_block, config.max_header_count)


def line_length(buffer: Union[bytes, bytearray], start: int, lf: int) -> int:
    """Length of the line at ``start`` ending at the LF at ``lf``, without CR LF."""
    return lf - start - (lf > start and buffer[lf - 1] == 13)


def find_head_end(buffer: Union[bytes, bytearray], start: int = 0) -> int:
    """Where the head at the front of ``buffer`` ends (just past its blank line), searching
    from ``start``; -1 when no head end has arrived yet."""
    end = buffer.find(b"\n\r\n", start)
    # A bare-LF end counts only when it comes first: look no further than the CRLF one.
    bare = buffer.find(b"\n\n", start, len(buffer) if end == -1 else end + 2)
    if bare != -1:
        return bare + 2
    return end if end == -1 else end + 3


def split_head(head: Union[bytes, bytearray], limits: HeadLimits, *,
               request: bool = True) -> Tuple[str, str]:
    """``(start_line, field_section)`` of ``head``, decoded as Latin-1.

    ``start_line`` is without its CRLF; ``field_section`` holds the field lines, each still
    ending in its CRLF, without the blank line.  ``head`` runs from the start line to the
    blank line of a request (or, without ``request``, a response).  Refused: a start line
    longer than ``limits.request_line`` (414), a head larger than ``limits.header_block`` or
    with more than ``limits.header_count`` field lines (431), a head that does not end in
    the blank line (400).

    A bare CR or LF (RFC 9112 §2.2) is refused here only on the way to another refusal:
    the grammar of a start line and :data:`~nex.http.grammar.FIELD_SECTION` admit a CR or
    LF only as the CRLF that ends a line, so a head they accept has none.  Before refusing
    the start line or the field section, the caller calls :func:`refuse_bare_cr_lf`, as
    this does, for the reason that comes first.
    """
    lf = head.find(b"\n")
    # A line whose LF comes within the limit is within it: measured only when it does not.
    if ((lf == -1 or lf > limits.request_line)
            and line_length(head, 0, lf if lf != -1 else len(head)) > limits.request_line):
        raise line_too_long(limits, "request" if request else "status")
    if len(head) > limits.header_block:
        raise head_too_large(limits, "request" if request else "response")
    # Every LF ends a CRLF (or the head is refused): one for the start line, one for each
    # field line, one blank line.
    if (not head.endswith(b"\r\n\r\n") or head[lf - 1] != _CR
            or head.count(b"\n") - 2 > limits.header_count):
        refuse_bare_cr_lf(head, request)
        if not head.endswith(b"\r\n\r\n"):
            raise protocol_error(f"incomplete {'request' if request else 'response'} head")
        raise protocol_error(f"too many header fields (max_header_count = {limits.header_count})",
                             431)
    text = head.decode("latin-1")
    return text[:lf - 1], text[lf + 1:-2]


def refuse_bare_cr_lf(data: Union[bytes, bytearray, str], request: bool = True) -> None:
    """Refuse (400) ``data``, a request's head or part of it (without ``request``, a
    response's), if a CR in it does not start a CRLF or an LF does not end one."""
    if not has_only_crlf(data):
        raise protocol_error(f"bare CR or LF in {'request' if request else 'response'} head")


def line_too_long(limits: HeadLimits, what: str = "request") -> HTTPError:
    """The ``414`` for a start line over ``limits.request_line``, naming the setting."""
    return protocol_error(
        f"{what} line too long ({size_limit('max_request_line', limits.request_line)})", 414)


def head_too_large(limits: HeadLimits, what: str = "request") -> HTTPError:
    """The ``431`` for a head over ``limits.header_block``, naming the setting."""
    return protocol_error(
        f"{what} head too large ({size_limit('max_header_block', limits.header_block)})", 431)


def has_only_crlf(data: Union[bytes, bytearray, str]) -> bool:
    """Whether each CR in ``data`` starts a CRLF and each LF ends one (RFC 9112 §2.2)."""
    if isinstance(data, str):
        return data.count("\r") == data.count("\n") == data.count("\r\n")
    return data.count(b"\r") == data.count(b"\n") == data.count(b"\r\n")


def has_content(status: int) -> bool:
    """Whether a response with ``status`` carries content (RFC 9110 §6.4.1, §15)."""
    return status >= 200 and status not in _NO_CONTENT_STATUSES


def body_framing(version: str, lengths: Sequence[str], codings: Sequence[str], *,
                 request: bool, no_body: bool = False) -> Tuple[str, Optional[int]]:
    """``(framing, content_length)`` of a message, per RFC 9112 §6.1-6.3.

    ``lengths`` and ``codings`` are the values of its Content-Length and Transfer-Encoding
    fields; ``version`` its HTTP version.  ``no_body`` marks a response that has none
    whatever its fields say (to HEAD; 1xx, 204, 304).  Without either field a request has
    no body and a response runs until the connection closes.  ``content_length`` is the
    validated Content-Length whenever one was sent (a list of equal values is one), also
    with ``no_body``.

    Refused with 400: both fields; Transfer-Encoding in HTTP/1.0; a malformed or
    disagreeing Content-Length; a transfer-coding list that is malformed, empty, or does not
    end in ``chunked`` once.  With ``chunked`` last, any other coding or parameter is 501.
    """
    if codings and lengths:
        raise protocol_error("both Transfer-Encoding and Content-Length")
    if codings and version == "HTTP/1.0":
        raise protocol_error("Transfer-Encoding in an HTTP/1.0 "
                             + ("request" if request else "response"))
    content_length = _content_length(lengths) if lengths else None
    if no_body:
        return NO_BODY, content_length
    if codings:
        _check_codings(codings)
        return CHUNKED, None
    if content_length is not None:
        return LENGTH, content_length
    return (NO_BODY if request else UNTIL_CLOSE), None


def _content_length(values: Sequence[str]) -> int:
    if len(values) == 1:
        value = values[0]
        # The usual case, one plain number: the grammar's check without a regex.
        if len(value) <= _LENGTH_DIGITS and value.isascii() and value.isdigit():
            return int(value)
    if not all(CONTENT_LENGTH.fullmatch(value) for value in values):
        raise protocol_error("malformed Content-Length")
    lengths = {int(digits.strip(" \t")) for value in values for digits in value.split(",")}
    if len(lengths) != 1:
        raise protocol_error("conflicting Content-Length values")
    return lengths.pop()


#: The most digits a Content-Length may have (grammar.CONTENT_LENGTH's bound).
_LENGTH_DIGITS = 18


def _check_codings(values: Sequence[str]) -> None:
    elements = parse_list(", ".join(values), TRANSFER_CODING)
    if elements is None:
        raise protocol_error("malformed Transfer-Encoding")
    names = [match.group("name").lower() for match in elements]
    if not names:
        raise protocol_error("empty Transfer-Encoding")
    # RFC 9112 §6.3: unless chunked is the final coding, the body's length cannot be known,
    # and a server MUST answer 400 and close.  With chunked last, a coding we do not
    # implement (gzip, chunked) is 501 (§6.1).
    if names[-1] != "chunked" or "chunked" in names[:-1]:
        raise protocol_error("chunked is not the final transfer coding")
    if names != ["chunked"] or elements[-1].group("params"):
        raise protocol_error("transfer coding not implemented", 501)


def connection_options(value: Optional[str]) -> Tuple[FrozenSet[str], bool]:
    """``(options, well_formed)`` of a Connection field value (repeats joined by ``", "``).

    ``options`` are the lower-case tokens it lists, elements that are not tokens skipped
    (they cannot name a field); ``well_formed`` says it is a list of tokens (RFC 9110
    §7.6.1), which a request must send.  An absent field lists nothing.
    """
    if value is None:
        return _NO_OPTIONS
    if len(value) <= _CACHED_VALUE_LENGTH:
        return _cached_connection_options(value)
    return _connection_options(value)


def _connection_options(value: str) -> Tuple[FrozenSet[str], bool]:
    elements = parse_list(value, TOKEN)
    if elements is not None:
        return frozenset(match.group(0).lower() for match in elements), True
    members = (element.strip(" \t") for element in value.split(","))
    return frozenset(member.lower() for member in members if TOKEN.fullmatch(member)), False


@functools.lru_cache(maxsize=64)
def _cached_connection_options(value: str) -> Tuple[FrozenSet[str], bool]:
    """:func:`_connection_options`, remembered: senders use few values, and the answer
    depends on nothing but the value."""
    return _connection_options(value)


def persists(version: str, options: FrozenSet[str]) -> bool:
    """Whether the sender of an ``HTTP/1.x`` message with Connection ``options`` lets the
    connection carry another message (RFC 9112 §9.3): ``close`` ends it; HTTP/1.0 needs
    ``keep-alive``; later versions persist by default."""
    return "close" not in options and (version != "HTTP/1.0" or "keep-alive" in options)


#: Methods whose intended effect is the same however often a request is sent (RFC 9110
#: §9.2.2): the only ones a proxy may send again on its own after a connection failed
#: (RFC 9112 §9.3.1).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def outgoing_framing(content_length: Optional[int], status: int, chunked_allowed: bool) -> str:
    """How Nex frames a response body of ``content_length`` bytes (None: not known before
    sending) to a client that may (``chunked_allowed``: HTTP/1.1) take chunked."""
    if not has_content(status):
        return NO_BODY
    if content_length is not None:
        return LENGTH
    return CHUNKED if chunked_allowed else UNTIL_CLOSE


def chunk_size_line(size: int) -> bytes:
    """The line that starts a chunk of ``size`` data bytes (RFC 9112 §7.1), without
    extensions; the data and :data:`CHUNK_END` follow."""
    return b"%x\r\n" % size
