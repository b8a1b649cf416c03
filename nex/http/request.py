"""The parser: bytes of a request head in, a :class:`Request` out, or an ``HTTPError``.

Nothing here touches a socket; the connection loop feeds it what it has read.  A
:class:`HeadScanner` says where the next head lies in the connection's buffer, resuming
where it stopped as bytes arrive, and :func:`parse_head` turns those bytes into a
:class:`Request`.  The rules come from :mod:`nex.http.grammar` (RFC 9112 and RFC 9110);
where the head and the body end, and whether the connection persists, from
:mod:`nex.http.framing`, which judges the proxy's origin responses alike.

Every error raised here asks the connection to close: once a head is rejected, nothing
says where its body ends, so the bytes after it cannot be trusted to start a request.
"""

from __future__ import annotations

import functools
from typing import AbstractSet, Dict, Iterator, List, NamedTuple, Optional, Tuple, Union

from nex.http.errors import HTTPError, protocol_error
from nex.http.framing import (CHUNKED, HEAD_ENDS, HeadLimits, body_framing, connection_options,
                              head_too_large, line_length, line_too_long, persists,
                              refuse_bare_cr_lf, split_head)
from nex.http.grammar import (ABSOLUTE_FORM, ASTERISK_FORM, FIELD_NAME, FIELD_SECTION,
                              FIELD_VALUE, HTTP_VERSION, METHOD, ORIGIN_FORM, RANGE_SET_BYTES,
                              REQUEST_TARGET, TCHAR_BYTES, parse_host)

_CR, _LF = 13, 10


class Headers:
    """Case-insensitive, order-keeping multimap of a message's field lines (a request's, or
    an origin response's for the proxy).

    Names keep the spelling the sender used; lookups ignore case.  ``get`` joins repeated
    fields with ``", "`` as RFC 9110 §5.3 allows for list-based fields.  Iterating gives the
    ``(name, value)`` pairs in order.
    """

    __slots__ = ("_items", "_index", "_lines")

    def __init__(self, items: List[Tuple[str, str]],
                 index: Optional[Dict[str, List[Tuple[str, str]]]] = None,
                 lines: Optional[List[str]] = None) -> None:
        """``items`` as sent; ``index`` holds the very same pairs by lower-case name, when the
        caller built it already (:func:`parse_fields` does, in its one pass over the
        lines); ``lines`` the field lines ``items`` were parsed from, one each, without
        their CRLF, when they passed the field grammar whole."""
        self._items = items
        self._lines = lines
        if index is None:
            index = {}
            for field in items:
                key = field[0].lower()
                fields = index.get(key)
                if fields is None:
                    index[key] = [field]
                else:
                    fields.append(field)
        self._index = index

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The field's value (repeats joined by ``", "``), or ``default`` when absent."""
        fields = self._index.get(name.lower())
        if fields is None:
            return default
        return fields[0][1] if len(fields) == 1 else ", ".join([value for _, value in fields])

    def has_any(self, lowercase_names: AbstractSet[str]) -> bool:
        """Whether any of ``lowercase_names`` was sent (a quick test before several gets)."""
        return not lowercase_names.isdisjoint(self._index)

    def get_all(self, name: str) -> List[str]:
        """Every value sent for ``name``, in order; empty when absent."""
        return [value for _, value in self._index.get(name.lower(), ())]

    def lines_without(self, lowercase_names: AbstractSet[str]) -> List[str]:
        """The field lines, without their CRLF, less those whose names are in
        ``lowercase_names``: as they were received when they were parsed (so nothing is
        formatted again), else ``name: value``.

        Only the fields named are looked at, never each line: the proxy drops two or three
        of a message's fields, and passes the rest on.
        """
        lines = self._lines
        lines = ([f"{name}: {value}" for name, value in self._items] if lines is None
                 else list(lines))
        removed = self._index.keys() & lowercase_names
        if removed:
            items = self._items
            positions = set()
            for key in removed:
                for field in self._index[key]:
                    # Equal pairs each have a line of their own: the next one not taken.
                    position = items.index(field)
                    while position in positions:
                        position = items.index(field, position + 1)
                    positions.add(position)
            for position in sorted(positions, reverse=True):
                del lines[position]
        return lines

    def with_value(self, lowercase_name: str, value: str) -> Optional[Headers]:
        """A copy in which the one field ``lowercase_name`` has ``value``, its line made
        again as ``name: value``; None when that field was not sent exactly once."""
        fields = self._index.get(lowercase_name)
        if fields is None or len(fields) != 1:
            return None
        old = fields[0]
        field = (old[0], value)
        position = self._items.index(old)
        items = self._items.copy()
        items[position] = field
        index = self._index.copy()
        index[lowercase_name] = [field]
        lines = self._lines
        if lines is not None:
            lines = lines.copy()
            lines[position] = f"{old[0]}: {value}"
        return Headers(items, index, lines)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[Tuple[str, str]]:
        return iter(self._items)

    def items(self) -> List[Tuple[str, str]]:
        """The field lines as sent: ``(name, value)`` pairs."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Request(NamedTuple):
    """One parsed request head.

    ``target`` is the request-target as sent; ``path`` its path part, still
    percent-encoded (for absolute-form targets, the path of the URL); ``query`` the part
    after ``?`` without it.  ``host`` is the authority the request is for: the Host field,
    or the authority of an absolute-form target, which RFC 9112 §3.2.2 says wins.
    ``body_length`` is the Content-Length (0 when absent); ``chunked`` says the body is
    framed by the chunked transfer coding instead.
    """

    method: str
    target: str
    path: str
    query: str
    version: str
    headers: Headers
    host: str
    keep_alive: bool
    body_length: int = 0
    chunked: bool = False

    @property
    def request_line(self) -> str:
        """The request line as logged: ``METHOD target HTTP/x.y``."""
        return f"{self.method} {self.target} {self.version}"

    @property
    def has_body(self) -> bool:
        """Whether a message body follows the head."""
        return self.chunked or self.body_length > 0


_EMPTY_LINES, _REQUEST_LINE, _FIELD_LINES = range(3)


class HeadScanner:
    """Finds where the next request head lies in a connection's buffer as its bytes arrive.

    :meth:`scan` is called after each read with the whole buffer; it resumes where the
    previous call stopped, so a head dribbled in byte by byte costs work in proportion to
    its length, not its square.  The buffer may only grow at its end between calls; once
    the head found has been removed from its front, :meth:`reset` starts over at 0.

    Lines are split at LF, so that a head ending in a bare-LF blank line is returned (and
    refused by :func:`parse_head`) instead of waited on.  Limits are enforced as soon as the
    bytes at hand prove them crossed, and the search never looks past them.
    """

    __slots__ = ("_limits", "_phase", "_start", "_position", "_blank_from")

    def __init__(self, limits: HeadLimits) -> None:
        self._limits = limits
        self.reset()

    def reset(self) -> None:
        """Forget the buffer: the next :meth:`scan` starts at its position 0."""
        self._phase = _EMPTY_LINES
        self._start = 0  # where the request line starts, past any empty lines
        self._position = 0  # where the search for the request line's LF resumes
        self._blank_from = [0, 0]  # where the search for each of HEAD_ENDS resumes

    def scan(self, buffer: Union[bytes, bytearray]) -> Optional[Tuple[int, int]]:
        """Where the next head lies in ``buffer``: ``(start, end)``, or None for "read more".

        ``start`` skips the empty lines RFC 9112 §2.2 lets a server ignore before a request
        line; ``end`` is just past the blank line that ends the head.  Raises 400 for a
        first byte that cannot start a request line (RFC 9112 §3: method = token; a TLS
        handshake starts with 0x16) or too many empty lines, 414 for a request line longer
        than ``limits.request_line`` and 431 for a head longer than ``limits.header_block``.
        """
        limits = self._limits
        if (self._phase == _EMPTY_LINES and self._start == 0 and buffer
                and buffer[0] in TCHAR_BYTES):
            # The usual case: a whole head from the buffer's first byte, found in one pass.
            # Anything else (empty lines first, a head not complete yet, a limit crossed)
            # is left to the step by step search below, which starts from scratch.  (The
            # searches' ends may lie past the buffer's; the first byte is no LF, so lf > 0.)
            lf = buffer.find(b"\n", 0, limits.request_line + 2)
            if lf != -1 and lf - (buffer[lf - 1] == _CR) <= limits.request_line:
                end = buffer.find(b"\n\r\n", lf, limits.header_block)
                bare = buffer.find(b"\n\n", lf, limits.header_block if end == -1 else end + 2)
                if bare != -1:
                    self._phase = _FIELD_LINES  # reset() is due once the head is taken
                    return 0, bare + 2
                if end != -1:
                    self._phase = _FIELD_LINES
                    return 0, end + 3
        size = len(buffer)
        if self._phase == _EMPTY_LINES:
            start = self._start
            while start + 1 < size and buffer[start] == _CR and buffer[start + 1] == _LF:
                start += 2
                if start > limits.request_line:
                    raise protocol_error("too many empty lines before the request line")
            self._start = self._position = start
            if start == size or (start + 1 == size and buffer[start] == _CR):
                return None
            if buffer[start] not in TCHAR_BYTES:
                raise protocol_error("the request does not start with a method")
            self._phase = _REQUEST_LINE
        start = self._start
        if self._phase == _REQUEST_LINE:
            stop = min(size, start + limits.request_line + 2)
            lf = buffer.find(b"\n", self._position, stop)
            if lf == -1:
                self._position = stop
                # Without its LF yet, the line holds every byte seen but a final CR.
                if size - start - (buffer[size - 1] == _CR) > limits.request_line:
                    raise line_too_long(limits)
                if size - start > limits.header_block:
                    raise head_too_large(limits)
                return None
            if line_length(buffer, start, lf) > limits.request_line:
                raise line_too_long(limits)
            self._phase, self._blank_from = _FIELD_LINES, [lf, lf]
        # The head ends at the first LF followed by CRLF or LF, the request line's included.
        stop = min(size, start + limits.header_block)
        ends = []
        for index, blank in enumerate(HEAD_ENDS):
            at = buffer.find(blank, self._blank_from[index], stop)
            if at == -1:
                # Next time, look again only where one cut off by the buffer's end may start.
                self._blank_from[index] = max(self._blank_from[index], stop - len(blank) + 1)
            else:
                self._blank_from[index] = at
                ends.append(at + len(blank))
        if ends:
            return start, min(ends)
        if size - start > limits.header_block:
            raise head_too_large(limits)
        return None


def parse_field_line(line: str) -> Tuple[str, str]:
    """``(name, value)`` of one field line (RFC 9112 §5), its CRLF already removed.

    field-line = field-name ":" OWS field-value OWS.  A line starting with whitespace
    (obs-fold, or whitespace before the first field), whitespace before the colon, a name
    that is not a token and a value holding control characters are all refused with 400.
    """
    if line[:1] in (" ", "\t"):
        raise protocol_error("folded or indented field line")
    name, colon, rest = line.partition(":")
    if not colon:
        raise protocol_error("field line without a colon")
    if not FIELD_NAME.fullmatch(name):
        raise protocol_error("malformed field name")
    value = rest.strip(" \t")  # exactly the OWS around the value; anything else stays
    if not FIELD_VALUE.fullmatch(value):
        raise protocol_error("control character in a field value")
    return name, value


def _valid_host(value: str, *, need_host: bool = False, need_port: bool = False) -> bool:
    """Whether ``value`` is uri-host [ ":" port ], with the parts asked for not empty."""
    match = parse_host(value)
    return (match is not None and (not need_host or bool(match.group("host")))
            and (not need_port or bool(match.group("port"))))


def _split_target(method: str, target: str) -> Tuple[str, str, Optional[str]]:
    """``(path, query, authority)`` of a request-target in one of RFC 9112 §3.2's forms.

    ``authority`` is set for the absolute-form only.  The asterisk-form (OPTIONS only) and
    the authority-form (CONNECT only) have no path or query.
    """
    if not REQUEST_TARGET.fullmatch(target):
        raise protocol_error("malformed request target")
    if method == "CONNECT":
        if not _valid_host(target, need_host=True, need_port=True):
            raise protocol_error("CONNECT needs a host:port target")
        return "", "", None
    origin = ORIGIN_FORM.fullmatch(target)
    if origin is not None:
        return origin.group("path"), origin.group("query") or "", None
    if target == ASTERISK_FORM:
        if method != "OPTIONS":
            raise protocol_error("the * target is for OPTIONS only")
        return "", "", None
    absolute = ABSOLUTE_FORM.fullmatch(target)
    if absolute is None:
        raise protocol_error("malformed request target")
    authority = absolute.group("authority")
    # RFC 9110 §4.2.1 and §4.2.4: an http(s) URI with an empty host or a userinfo is invalid.
    if not _valid_host(authority, need_host=True):
        raise protocol_error("malformed authority in request target")
    return absolute.group("path") or "/", absolute.group("query") or "", authority


def _parse_request_line(line: str) -> Tuple[str, str, str]:
    """``(method, target, version)`` of ``METHOD SP request-target SP HTTP-version``.

    ``version`` is the one the request is handled as: ``HTTP/1.0``, or ``HTTP/1.1`` for
    any ``HTTP/1.x`` with x > 0, as RFC 9110 §6.2 asks of a recipient of a later minor
    version than it implements (RFC 9112 §2.3).  Any other major version is 505.
    """
    parts = line.split(" ")
    if len(parts) != 3:
        raise protocol_error("malformed request line")
    method, target, version = parts
    if not METHOD.fullmatch(method):
        raise protocol_error("malformed method")
    match = HTTP_VERSION.fullmatch(version)
    if match is None:
        raise protocol_error("malformed HTTP version")
    if match.group("major") != "1":
        raise protocol_error("HTTP version not supported", 505)
    return method, target, "HTTP/1.0" if match.group("minor") == "0" else "HTTP/1.1"


#: Request lines longer than this are parsed each time rather than remembered.
_CACHED_LINE_LENGTH = 512


@functools.lru_cache(maxsize=1024)
def _cached_request_line(line: str) -> Tuple[str, str, str, str, str, Optional[str]]:
    """:func:`_request_line`, remembered: the same lines recur (every client asks for the
    same few addresses), and the result depends on nothing but the line.  Refusals are
    raised each time, never remembered."""
    return _parse_request_target(line)


def _parse_request_target(line: str) -> Tuple[str, str, str, str, str, Optional[str]]:
    """The request line's parts, then its target's (see :func:`_request_line`)."""
    method, target, version = _parse_request_line(line)
    return (method, target, version) + _split_target(method, target)


def _request_line(line: str) -> Tuple[str, str, str, str, str, Optional[str]]:
    """``(method, target, version, path, query, authority)`` of a request line."""
    if len(line) <= _CACHED_LINE_LENGTH:
        return _cached_request_line(line)
    return _parse_request_target(line)


@functools.lru_cache(maxsize=256)
def _valid_host_field(value: str) -> bool:
    """:func:`_valid_host` for a Host field value, remembered (clients send few values;
    the answer depends on nothing but the value)."""
    return _valid_host(value)


def _host(fields: Optional[List[Tuple[str, str]]], version: str) -> str:
    """The Host field's value, checked against RFC 9112 §3.2 and RFC 9110 §7.2; ``fields``
    is its entry in :class:`Headers`' index (None: not sent)."""
    if fields is None:
        if version == "HTTP/1.1":
            raise protocol_error("missing Host field")
        return ""
    if len(fields) > 1:
        raise protocol_error("more than one Host field")
    value = fields[0][1]
    if not (_valid_host_field(value) if len(value) <= _CACHED_LINE_LENGTH
            else _valid_host(value)):
        raise protocol_error("malformed Host field")
    return value


#: Heads longer than this are parsed each time rather than remembered.
_CACHED_HEAD_LENGTH = 2048


def parse_head(head: Union[bytes, bytearray], limits: HeadLimits) -> Request:
    """The :class:`Request` in ``head``: a request line, field lines and the blank line.

    ``head`` is what :meth:`HeadScanner.scan` delimits.  Raises ``HTTPError`` (always asking
    the connection to close) with 414 for a long request line, 431 for a large head or too
    many fields, 505 for an HTTP version other than 1.x, 501 for a transfer coding other
    than chunked, and 400 for anything else RFC 9112 or RFC 9110 does not allow: bare CR or
    LF, obs-fold, whitespace before a colon, a missing or repeated Host, conflicting framing.
    The last heads parsed are remembered (:func:`_remembered_head`).
    """
    if len(head) <= _CACHED_HEAD_LENGTH:
        return _remembered_head(bytes(head), limits)
    return _parse_head(head, limits)


@functools.lru_cache(maxsize=256)
def _remembered_head(head: bytes, limits: HeadLimits) -> Request:
    """:func:`_parse_head`, remembered.

    A client on a kept-alive connection, a health check, a poller or a load tester sends the
    same head again and again, and the :class:`Request` depends on nothing but the bytes
    and the limits, and never changes.  Refusals are raised each time, never remembered; at
    most 256 heads of at most 2 KiB are kept.  A head not seen before that differs from one
    seen in its Range value alone costs little more (:func:`_ranged_head`).
    """
    at = head.find(_RANGE_LINE)
    if at != -1:
        request = _ranged_head(head, at + len(_RANGE_LINE), limits)
        if request is not None:
            return request
    return _parse_head(head, limits)


#: How a Range field line of bytes usually begins: a client asking for random ranges of a
#: file (a media player seeking, a download manager) sends heads that differ in it alone.
_RANGE_LINE = b"\r\nRange: bytes="


def _ranged_head(head: bytes, start: int, limits: HeadLimits) -> Optional[Request]:
    """The request of ``head``, whose Range value's range set begins at ``start``, as the
    remembered request of the same head with an empty range set, the value put back; None
    when the value is not a simple one (the whole head is then parsed as it is).

    The cut-out bytes are digits and a hyphen, which a field value may hold, so the rest of
    the head decides whether it is well formed, and the limits are checked on the whole.
    (The head with an empty range set comes back here, and is parsed as it is.)
    """
    end = head.find(b"\r\n", start)
    if (not RANGE_SET_BYTES.fullmatch(head, start, end)
            or len(head) > limits.header_block):
        return None
    request = _remembered_head(head[:start] + head[end:], limits)
    headers = request.headers.with_value("range", "bytes=" + head[start:end].decode("ascii"))
    if headers is None:  # Range sent twice: parsed as it is, for the refusal or the answer
        return None
    method, target, path, query, version, _, host, keep_alive, body_length, chunked = request
    return Request(method, target, path, query, version, headers, host, keep_alive,
                   body_length, chunked)


def _parse_head(head: Union[bytes, bytearray], limits: HeadLimits) -> Request:
    start_line, section = split_head(head, limits)
    try:
        method, target, version, path, query, authority = _request_line(start_line)
    except HTTPError:
        refuse_bare_cr_lf(head)
        raise
    headers, host, keep_alive, body_length, chunked = (
        _remembered_fields(section, version) if len(section) <= _CACHED_HEAD_LENGTH
        else _request_fields(section, version))
    return Request(method, target, path, query, version, headers,
                   authority if authority is not None else host, keep_alive, body_length,
                   chunked)


#: What a request's field section says: its :class:`Headers`, its Host, whether the
#: connection persists, the body's length and whether the body is chunked.
_RequestFields = Tuple[Headers, str, bool, int, bool]


@functools.lru_cache(maxsize=256)
def _remembered_fields(section: str, version: str) -> _RequestFields:
    """:func:`_request_fields`, remembered.

    A client sends the same fields with many request lines (a browser with a page's images,
    a crawler, a proxy's client), so a head seen before with another target costs its
    request line alone.  Refusals are raised each time, never remembered; at most 256
    sections of at most 2 KiB are kept.
    """
    return _request_fields(section, version)


def _request_fields(section: str, version: str) -> _RequestFields:
    """The field section of a request of ``version`` parsed and checked (see
    :data:`_RequestFields`)."""
    headers = parse_fields(section)
    index = headers._index
    host = _host(index.get("host"), version)
    body_length, chunked = 0, False
    if "content-length" in index or "transfer-encoding" in index:
        framing, length = body_framing(version, *framing_fields(headers), request=True)
        body_length, chunked = length or 0, framing == CHUNKED
    options, well_formed = connection_options(
        headers.get("Connection") if "connection" in index else None)
    if not well_formed:
        raise protocol_error("malformed Connection field")
    return headers, host, persists(version, options), body_length, chunked


def framing_fields(headers: Headers) -> Tuple[List[str], List[str]]:
    """The values of the Content-Length and the Transfer-Encoding fields of ``headers`` (as
    :func:`~nex.http.framing.body_framing` takes them), read straight from its index."""
    index = headers._index
    lengths, codings = index.get("content-length"), index.get("transfer-encoding")
    return ([] if lengths is None else [value for _, value in lengths],
            [] if codings is None else [value for _, value in codings])


def parse_fields(section: str, request: bool = True) -> Headers:
    """The field lines of a request's head (without ``request``, a response's) as
    :class:`Headers`.

    ``section`` is what :func:`~nex.http.framing.split_head` gives: the field lines, each
    ending in CRLF.  400 for a bare CR or LF, else for a line :func:`parse_field_line`
    refuses.
    """
    lines = section.split("\r\n")
    del lines[-1]  # what follows the last CRLF: nothing
    if FIELD_SECTION.fullmatch(section):
        # Every line is known good: split each once, and index it in the same pass.
        items: List[Tuple[str, str]] = []
        index: Dict[str, List[Tuple[str, str]]] = {}
        for line in lines:
            name, _, value = line.partition(":")
            field = (name, value.strip(" \t"))
            items.append(field)
            key = name.lower()
            fields = index.get(key)
            if fields is None:
                index[key] = [field]
            else:
                fields.append(field)
        return Headers(items, index, lines)
    # Find the offending line, for the error's detail.
    refuse_bare_cr_lf(section, request)
    return Headers([parse_field_line(line) for line in lines])


def expects_continue(request: Request) -> bool:
    """Whether an HTTP/1.1 client waits for ``100 Continue`` before sending its body
    (RFC 9110 §10.1.1)."""
    expect = request.headers.get("Expect")
    return (expect is not None and request.version == "HTTP/1.1"
            and expect.strip(" \t").lower() == "100-continue")
