"""The form parser: a ``multipart/form-data`` body (RFC 7578) in, its parts out, streaming.

:func:`form_boundary` reads the boundary from the request's Content-Type.
:class:`MultipartParser` is fed the body in pieces of any size and reports each part to a
:class:`PartHandler`: where it starts (with its name and file name), its data as it arrives,
where it ends.  It never holds a whole part: data is handed on as soon as it cannot be the
start of a delimiter, so between two pieces it keeps at most the delimiter's length, or one
part's header section while that is being read.

The body follows RFC 2046 §5.1.1, read strictly::

    multipart-body := [preamble CRLF] dash-boundary transport-padding CRLF body-part
                      *( CRLF dash-boundary transport-padding CRLF body-part )
                      CRLF dash-boundary "--" transport-padding [CRLF epilogue]

A delimiter (CRLF ``--`` boundary) ends a part wherever it occurs: the RFC says content
never holds one, and what follows must then be a delimiter's end.  The body is read as if
it started with CRLF, so the first delimiter needs no line before it; it must hold at least
one part.  Limits come from the request-head limits: a preamble and a part's header section
at most ``header_block`` bytes, at most ``header_count`` header fields per part, the rest of
a delimiter line at most ``request_line`` bytes.  Each part's header section is a field
section as in a request head (RFC 9112 §5, CRLF only, no obs-fold) and must hold one
``Content-Disposition: form-data`` with a ``name`` (RFC 7578 §4.2).  Anything else — a
missing delimiter, text after the final one, a body that ends early — raises
``HTTPError(400)``.
"""

from __future__ import annotations

import re
from typing import Dict, NamedTuple, Optional, Protocol

from nex.http.errors import HTTPError, protocol_error
from nex.http.framing import HeadLimits, has_only_crlf
from nex.http.grammar import MEDIA_TYPE, PARAMETER, TOKEN, unquote
from nex.http.request import parse_field_line

# RFC 2046 §5.1.1: boundary := 0*69<bchars> bcharsnospace.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_FORM_DATA = "multipart/form-data"
# RFC 7578 §4.7: the only Content-Transfer-Encoding values that leave the data as it is.
_IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})
_PADDING = re.compile(rb"[ \t]*")
_CRLF = b"\r\n"
_CR, _LF = 13, 10

_PREAMBLE, _DELIMITER_LINE, _HEADERS, _DATA, _CLOSE, _EPILOGUE = range(6)


class Part(NamedTuple):
    """What a part's Content-Disposition says: the form field's ``name`` and, for a file,
    the ``filename`` as sent (unescaped, not yet reduced to a plain name); None for a field
    that is not a file."""

    name: str
    filename: Optional[str]


class PartHandler(Protocol):
    """Receives the parts of a form as :class:`MultipartParser` finds them.

    ``start_part`` comes first for each part, then ``part_data`` zero or more times, then
    ``end_part``; the view passed to ``part_data`` is valid only during the call.  Any of
    them may raise ``HTTPError`` to refuse the form.
    """

    def start_part(self, part: Part) -> None:
        """A part begins."""

    def part_data(self, data: memoryview) -> None:
        """The next bytes of the current part's content."""

    def end_part(self) -> None:
        """The current part's content is complete."""


def _parameters(text: str, start: int, what: str) -> Dict[str, str]:
    """The parameters in ``text`` from ``start``, names lower-cased and values unquoted.

    A parameter given twice, or anything that is not a parameter, is refused with 400.
    """
    found: Dict[str, str] = {}
    position = start
    while position < len(text):
        match = PARAMETER.match(text, position)
        if match is None:
            raise protocol_error(f"The {what} has malformed parameters.")
        position = match.end()
        name, value = match.groups()
        if name is None:
            continue
        name = name.lower()
        if name in found:
            raise protocol_error(f"The {what} gives the parameter {name} twice.")
        found[name] = unquote(value) if value.startswith('"') else value
    return found


def form_boundary(content_type: Optional[str]) -> bytes:
    """The boundary of a ``multipart/form-data`` body whose Content-Type is ``content_type``.

    Raises ``HTTPError`` 415 when the body is not ``multipart/form-data`` (RFC 9110
    §15.5.16) and 400 when its boundary is missing or not one RFC 2046 §5.1.1 allows.
    """
    if content_type is None:
        raise HTTPError(415, "A form upload is sent as multipart/form-data.")
    media_type = MEDIA_TYPE.match(content_type)
    if (media_type is None
            or f"{media_type['type']}/{media_type['subtype']}".lower() != _FORM_DATA):
        raise HTTPError(415, "A form upload is sent as multipart/form-data.")
    boundary = _parameters(content_type, media_type.start("parameters"),
                           "Content-Type").get("boundary")
    if boundary is None or not _BOUNDARY.fullmatch(boundary):
        raise protocol_error("The form's Content-Type has no valid boundary.")
    return boundary.encode("ascii")


def _text(value: str, what: str) -> str:
    """A header value's text (decoded as Latin-1 by the field parser) read as UTF-8, which
    browsers use for names and file names."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        raise protocol_error(f"The form's {what} is not UTF-8.") from None


def _disposition(value: str) -> Part:
    """The :class:`Part` a ``Content-Disposition: form-data; name=...`` value describes.

    ``filename*`` (RFC 5987) is ignored: RFC 7578 §4.2 forbids it in forms, and senders that
    add it also send ``filename``.
    """
    kind = TOKEN.match(value)
    if kind is None or kind.group(0).lower() != "form-data":
        raise protocol_error("A form part is not form-data.")
    parameters = _parameters(value, kind.end(), "Content-Disposition")
    if "name" not in parameters:
        raise protocol_error("A form part has no name.")
    filename = parameters.get("filename")
    return Part(_text(parameters["name"], "field name"),
                None if filename is None else _text(filename, "file name"))


def _parse_part_head(head: bytes, limits: HeadLimits) -> Part:
    """The :class:`Part` described by a header section: field lines each ending in CRLF."""
    if not has_only_crlf(head):
        raise protocol_error("A form part's header section holds a bare CR or LF.")
    lines = head[:-2].decode("latin-1").split("\r\n") if head else []
    if len(lines) > limits.header_count:
        raise protocol_error("A form part has too many header fields.")
    disposition = None
    for line in lines:
        name, value = parse_field_line(line)
        name = name.lower()
        if name == "content-disposition":
            if disposition is not None:
                raise protocol_error("A form part has two Content-Disposition fields.")
            disposition = value
        elif name == "content-transfer-encoding" and value.lower() not in _IDENTITY_ENCODINGS:
            raise protocol_error("A form part has a content transfer encoding.")
    if disposition is None:
        raise protocol_error("A form part has no Content-Disposition.")
    return _disposition(disposition)


class MultipartParser:
    """Splits one ``multipart/form-data`` body into parts, fed in pieces of any size.

    Call :meth:`feed` with each piece of the body as it arrives and :meth:`finish` at its
    end; both raise ``HTTPError(400)`` for a malformed body, and pass on whatever the
    ``handler`` raises.  Between calls it holds at most ``max(limits.header_block,
    limits.request_line + 2, len(boundary) + 4)`` bytes.
    """

    def __init__(self, boundary: bytes, handler: PartHandler, limits: HeadLimits) -> None:
        self._delimiter = b"\r\n--" + boundary
        self._handler = handler
        self._limits = limits
        self._state = _PREAMBLE
        # The body is read as if it started with CRLF: the first delimiter needs no line
        # before it, and a preamble must end in CRLF.
        self._buffer = bytearray(_CRLF)
        self._skipped = 0  # preamble bytes dropped
        self._scanned = 0  # bytes of the current line or header section searched already
        self._parts = 0
        self._steps = {_PREAMBLE: self._preamble, _DELIMITER_LINE: self._delimiter_line,
                       _HEADERS: self._headers, _DATA: self._data, _CLOSE: self._close}

    def feed(self, data: bytes) -> None:
        """Parse the next piece of the body, reporting what it completes to the handler."""
        if self._state == _EPILOGUE:
            return  # RFC 2046 §5.1.1: the epilogue is to be ignored
        self._buffer += data
        while self._state != _EPILOGUE and self._steps[self._state]():
            pass

    def finish(self) -> None:
        """The body has ended: raise ``HTTPError(400)`` unless it ended after the final
        delimiter (and its transport padding, or a line break and an epilogue)."""
        if not (self._state == _EPILOGUE or (self._state == _CLOSE and not self._buffer)):
            raise protocol_error("The form ended before its final boundary.")

    def _delimiter_start(self) -> int:
        """Where a delimiter may begin that the buffer holds only the start of; its length
        when none may.  Bytes before this position can be passed on or dropped."""
        buffer = self._buffer
        start = buffer.find(b"\r", max(0, len(buffer) - len(self._delimiter) + 1))
        while start >= 0 and not self._delimiter.startswith(buffer[start:]):
            start = buffer.find(b"\r", start + 1)
        return len(buffer) if start < 0 else start

    def _preamble(self) -> bool:
        buffer = self._buffer
        found = buffer.find(self._delimiter)
        dropped = self._delimiter_start() if found < 0 else found
        self._skipped += dropped
        if self._skipped > self._limits.header_block:
            raise protocol_error("The form's preamble is too long.")
        if found < 0:
            del buffer[:dropped]
            return False
        del buffer[:found + len(self._delimiter)]
        self._enter(_DELIMITER_LINE)
        return True

    def _delimiter_line(self) -> bool:
        """After a delimiter: ``--`` ends the body; else transport padding and CRLF."""
        buffer = self._buffer
        if buffer[:2] == b"--":
            if not self._parts:
                raise protocol_error("The form has no parts.")
            del buffer[:2]
            self._enter(_CLOSE)
            return True
        if buffer == b"-":
            return False  # the second "-" may follow
        limit = self._limits.request_line + 2
        end = buffer.find(_CRLF, max(0, self._scanned - 1), limit)
        if end < 0:
            if len(buffer) >= limit:
                raise protocol_error("A form boundary line is too long.")
            self._scanned = len(buffer)
            return False
        if not _PADDING.fullmatch(buffer, 0, end):
            raise protocol_error("A form boundary is followed by text.")
        del buffer[:end + 2]
        self._enter(_HEADERS)
        return True

    def _headers(self) -> bool:
        buffer = self._buffer
        if buffer[:2] == _CRLF:  # an empty header section
            part = _parse_part_head(b"", self._limits)
        else:
            limit = self._limits.header_block
            end = buffer.find(b"\r\n\r\n", max(0, self._scanned - 3), limit)
            if end < 0:
                if len(buffer) >= limit:
                    raise protocol_error("A form part's header section is too large.")
                self._scanned = len(buffer)
                return False
            part = _parse_part_head(bytes(buffer[:end + 2]), self._limits)
            del buffer[:end + 2]
        del buffer[:2]
        self._enter(_DATA)
        self._parts += 1
        self._handler.start_part(part)
        return True

    def _data(self) -> bool:
        buffer = self._buffer
        found = buffer.find(self._delimiter)
        if found < 0:
            self._pass_on(self._delimiter_start())
            return False
        self._pass_on(found)
        del buffer[:len(self._delimiter)]
        self._enter(_DELIMITER_LINE)
        self._handler.end_part()
        return True

    def _pass_on(self, count: int) -> None:
        """Hand the first ``count`` buffered bytes to the handler as part data."""
        if count:
            with memoryview(self._buffer) as view, view[:count] as piece:
                self._handler.part_data(piece)
            del self._buffer[:count]

    def _close(self) -> bool:
        """After the final delimiter: transport padding, then the end or CRLF and an
        epilogue."""
        buffer = self._buffer
        del buffer[:_PADDING.match(buffer).end()]
        if not buffer:
            return False
        if buffer[0] != _CR or (len(buffer) > 1 and buffer[1] != _LF):
            raise protocol_error("The form has text after its final boundary.")
        if len(buffer) > 1:
            buffer.clear()
            self._enter(_EPILOGUE)
        return False

    def _enter(self, state: int) -> None:
        self._state = state
        self._scanned = 0
