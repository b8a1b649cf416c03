"""The parser: bytes of a request head in, a :class:`Request` out, or an ``HTTPError``.

Nothing here touches a socket; the connection loop feeds it what it has read.
:func:`find_head` says where the next head lies in the connection's buffer and
:func:`parse_head` turns those bytes into a :class:`Request`.  The grammar (RFC 9112 and
RFC 9110) is written once below; the chunked body decoder in :mod:`nex.body` shares it.

Every error raised here asks the connection to close: once a head is rejected, nothing
says where its body ends, so the bytes after it cannot be trusted to start a request.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, FrozenSet, List, NamedTuple, Optional, Tuple, Union

from nex.errors import HTTPError

if TYPE_CHECKING:
    from nex.config import Config

# --- Grammar -------------------------------------------------------------------------------
# Every pattern is used with fullmatch (or anchored match inside a list scanner) and is free
# of nested ambiguous repetition, so matching is linear in the length of the text.

_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_OWS = r"[ \t]*"
# RFC 9110 §5.6.4: quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
_QUOTED_STRING = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# RFC 3986 §3.2.2: reg-name = *( unreserved / pct-encoded / sub-delims )
_REG_NAME = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*"

#: RFC 9110 §5.6.2: token = 1*tchar.
TOKEN = re.compile(_TCHAR + "+")
#: RFC 9112 §2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT; HTTP-name is case-sensitive.
HTTP_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")
#: RFC 9112 §3.2: a request-target is visible ASCII; RFC 9110 §7.1: a fragment ("#") is
#: never sent.
REQUEST_TARGET = re.compile(r"[\x21\x22\x24-\x7e]+")
#: RFC 9112 §3.2.2 absolute-form for the http and https schemes (RFC 9110 §4.2.1-4.2.2):
#: scheme "://" authority path-abempty [ "?" query ], the scheme case-insensitive.
ABSOLUTE_FORM = re.compile(
    r"(?i:https?)://(?P<authority>[^/?]*)(?P<path>/[^?]*)?(?:\?(?P<query>.*))?")
#: RFC 9110 §7.2: Host = uri-host [ ":" port ]; RFC 3986 §3.2.2-3.2.3: uri-host is an
#: IP-literal (IPv6 only here), an IPv4address or a reg-name (which covers IPv4address),
#: port = *DIGIT.
HOST = re.compile(
    rf"(?P<host>\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|{_REG_NAME})(?::(?P<port>[0-9]*))?")
#: RFC 9110 §5.5: field-value = *field-content;
#: field-content = field-vchar [ 1*( SP / HTAB / field-vchar ) field-vchar ].
FIELD_VALUE = re.compile(
    r"(?:[\x21-\x7e\x80-\xff](?:[\t \x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")
#: RFC 9112 §6.3: Content-Length = 1*DIGIT, accepted as a list of identical values; more
#: than 18 digits could not be a body anyone sends.
CONTENT_LENGTH = re.compile(r"[0-9]{1,18}(?:[ \t]*,[ \t]*[0-9]{1,18})*")
#: RFC 9112 §7: transfer-coding = token *( OWS ";" OWS transfer-parameter );
#: transfer-parameter = token BWS "=" BWS ( token / quoted-string ).
TRANSFER_CODING = re.compile(
    rf"(?P<name>{_TCHAR}+)(?P<params>(?:{_OWS};{_OWS}{_TCHAR}+{_OWS}={_OWS}"
    rf"(?:{_TCHAR}+|{_QUOTED_STRING}))*)")
#: RFC 9112 §7.1: chunk-size [ chunk-ext ] (the line before its CRLF), chunk-size = 1*HEXDIG
#: bounded to 16 digits; chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS
#: chunk-ext-val ] ), chunk-ext-val = token / quoted-string.
CHUNK_LINE = re.compile(
    rf"(?P<size>[0-9A-Fa-f]{{1,16}})(?P<ext>(?:{_OWS};{_OWS}{_TCHAR}+"
    rf"(?:{_OWS}={_OWS}(?:{_TCHAR}+|{_QUOTED_STRING}))?)*)")

# RFC 9112 §2.2: empty lines (CRLF) before a request line may be ignored.
#: A whole field section (RFC 9112 §5) of valid field lines, each ending in CRLF: one pass
#: over the bytes validates every line at once; :func:`parse_field_line` says which is bad.
_FIELD_SECTION = re.compile(
    rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[ \t]*"
    rb"(?:[\x21-\x7e\x80-\xff](?:[\t \x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?"
    rb"[ \t]*\r\n)*")
_EMPTY_LINES = re.compile(rb"(?:\r\n)*")
# RFC 9110 §5.6.1: list separators and empty list elements, which a recipient ignores.
_LIST_GAP = re.compile(r"[ \t,]*")
_OWS_RE = re.compile(_OWS)

_SUPPORTED_VERSIONS = ("HTTP/1.1", "HTTP/1.0")
_CR, _LF = 13, 10


def _bad(detail: str, status: int = 400) -> HTTPError:
    return HTTPError(status, detail, close=True)


class Headers:
    """Case-insensitive, order-keeping multimap of the request's field lines.

    Names keep the spelling the client sent; lookups ignore case.  ``get`` joins repeated
    fields with ``", "`` as RFC 9110 §5.3 allows for list-based fields.
    """

    __slots__ = ("_items", "_index")

    def __init__(self, items: List[Tuple[str, str]]) -> None:
        self._items = items
        self._index: Dict[str, List[str]] = {}
        for name, value in items:
            self._index.setdefault(name.lower(), []).append(value)

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The field's value (repeats joined by ``", "``), or ``default`` when absent."""
        values = self._index.get(name.lower())
        if values is None:
            return default
        return values[0] if len(values) == 1 else ", ".join(values)

    def has_any(self, lowercase_names: FrozenSet[str]) -> bool:
        """Whether any of ``lowercase_names`` was sent (a quick test before several gets)."""
        return not lowercase_names.isdisjoint(self._index)

    def get_all(self, name: str) -> List[str]:
        """Every value sent for ``name``, in order; empty when absent."""
        return list(self._index.get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

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


@dataclass(frozen=True)
class Limits:
    """Size limits on a request head, in bytes (``header_count`` in field lines).

    ``request_line`` bounds the request line without its CRLF (over it: 414);
    ``header_block`` the whole head from the request line to the blank line that ends it,
    and ``header_count`` its field lines (over either: 431).  The chunked decoder reuses
    them: chunk extensions are bounded like a request line, trailers like a head.
    """

    request_line: int = 8192
    header_block: int = 65536
    header_count: int = 100

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        """The limits set in ``config``'s ``[limits]`` section."""
        return cls(config.max_request_line, config.max_header_block, config.max_header_count)


def _line_length(buffer: Union[bytes, bytearray], start: int, lf: int) -> int:
    """Length of the line at ``start`` ending at the LF at ``lf``, without CR LF."""
    return lf - start - (lf > start and buffer[lf - 1] == _CR)


def find_head(buffer: Union[bytes, bytearray], limits: Limits) -> Optional[Tuple[int, int]]:
    """Where the next request head lies in ``buffer``: ``(start, end)``, or None for "read more".

    ``start`` skips the empty lines RFC 9112 §2.2 lets a server ignore before a request
    line; ``end`` is just past the blank line that ends the head.  Lines are split at LF so
    that a head ending in a bare-LF blank line is returned (and refused by
    :func:`parse_head`) instead of waited on.  Raises 414 or 431 as soon as the bytes at hand
    prove the request line or the head longer than ``limits`` allow.  The search never
    looks further than the limits, so calling it again on a growing buffer stays cheap.
    """
    start = _EMPTY_LINES.match(buffer, 0, limits.request_line + 2).end()
    if start > limits.request_line:
        raise _bad("too many empty lines before the request line")
    size = len(buffer) - start
    lf = buffer.find(b"\n", start, start + limits.request_line + 2)
    if lf == -1:
        # Without its LF yet, the line holds every byte seen but a final CR.
        if size - (buffer[-1:] == b"\r") > limits.request_line:
            raise _bad("request line too long", 414)
        if size > limits.header_block:
            raise _bad("request head too large", 431)
        return None
    if _line_length(buffer, start, lf) > limits.request_line:
        raise _bad("request line too long", 414)
    stop = start + limits.header_block
    ends = [at + len(blank) for blank in (b"\n\r\n", b"\n\n")
            for at in (buffer.find(blank, lf, stop),) if at != -1]
    if ends:
        return start, min(ends)
    if size > limits.header_block:
        raise _bad("request head too large", 431)
    return None


def parse_field_line(line: str) -> Tuple[str, str]:
    """``(name, value)`` of one field line (RFC 9112 §5), its CRLF already removed.

    field-line = field-name ":" OWS field-value OWS.  A line starting with whitespace
    (obs-fold, or whitespace before the first field), whitespace before the colon, a name
    that is not a token and a value holding control characters are all refused with 400.
    """
    if line[:1] in (" ", "\t"):
        raise _bad("folded or indented field line")
    name, colon, rest = line.partition(":")
    if not colon:
        raise _bad("field line without a colon")
    if not TOKEN.fullmatch(name):
        raise _bad("malformed field name")
    value = rest.strip(" \t")  # exactly the OWS around the value; anything else stays
    if not FIELD_VALUE.fullmatch(value):
        raise _bad("control character in a field value")
    return name, value


def _list_elements(value: str, element: re.Pattern[str]) -> Optional[List[re.Match[str]]]:
    """The elements of a comma-separated list field value (RFC 9110 §5.6.1), or None.

    Empty elements are skipped as the RFC asks; None means the value is not such a list.
    """
    found = []
    pos = _LIST_GAP.match(value).end()
    while pos < len(value):
        match = element.match(value, pos)
        if match is None:
            return None
        found.append(match)
        pos = _OWS_RE.match(value, match.end()).end()
        if pos < len(value) and value[pos] != ",":
            return None
        pos = _LIST_GAP.match(value, pos).end()
    return found


def _valid_host(value: str, *, need_host: bool = False, need_port: bool = False) -> bool:
    """Whether ``value`` is uri-host [ ":" port ], with the parts asked for not empty."""
    match = HOST.fullmatch(value)
    if (match is None or (need_host and not match.group("host"))
            or (need_port and not match.group("port"))):
        return False
    if match.group("ipv6") is not None:
        try:
            ipaddress.IPv6Address(match.group("ipv6"))
        except ValueError:
            return False
    return True


def _split_target(method: str, target: str) -> Tuple[str, str, Optional[str]]:
    """``(path, query, authority)`` of a request-target in one of RFC 9112 §3.2's forms.

    ``authority`` is set for the absolute-form only.  The asterisk-form (OPTIONS only) and
    the authority-form (CONNECT only) have no path or query.
    """
    if not REQUEST_TARGET.fullmatch(target):
        raise _bad("malformed request target")
    if method == "CONNECT":
        if not _valid_host(target, need_host=True, need_port=True):
            raise _bad("CONNECT needs a host:port target")
        return "", "", None
    if target.startswith("/"):
        path, _, query = target.partition("?")
        return path, query, None
    if target == "*":
        if method != "OPTIONS":
            raise _bad("the * target is for OPTIONS only")
        return "", "", None
    absolute = ABSOLUTE_FORM.fullmatch(target)
    if absolute is None:
        raise _bad("malformed request target")
    authority = absolute.group("authority")
    # RFC 9110 §4.2.1 and §4.2.4: an http(s) URI with an empty host or a userinfo is invalid.
    if not _valid_host(authority, need_host=True):
        raise _bad("malformed authority in request target")
    return absolute.group("path") or "/", absolute.group("query") or "", authority


def _parse_request_line(line: str) -> Tuple[str, str, str]:
    """``(method, target, version)`` of ``METHOD SP request-target SP HTTP-version``."""
    parts = line.split(" ")
    if len(parts) != 3:
        raise _bad("malformed request line")
    method, target, version = parts
    if not TOKEN.fullmatch(method):
        raise _bad("malformed method")
    if not HTTP_VERSION.fullmatch(version):
        raise _bad("malformed HTTP version")
    if version not in _SUPPORTED_VERSIONS:
        raise _bad("HTTP version not supported", 505)
    return method, target, version


def _host(headers: Headers, version: str) -> str:
    """The Host field's value, checked against RFC 9112 §3.2 and RFC 9110 §7.2."""
    values = headers.get_all("Host")
    if len(values) > 1:
        raise _bad("more than one Host field")
    if not values:
        if version == "HTTP/1.1":
            raise _bad("missing Host field")
        return ""
    if not _valid_host(values[0]):
        raise _bad("malformed Host field")
    return values[0]


def _framing(headers: Headers, version: str) -> Tuple[int, bool]:
    """``(body_length, chunked)`` from the framing fields, per RFC 9112 §6."""
    codings = headers.get_all("Transfer-Encoding")
    lengths = headers.get_all("Content-Length")
    if codings and lengths:
        raise _bad("both Transfer-Encoding and Content-Length")
    if codings:
        if version == "HTTP/1.0":
            raise _bad("Transfer-Encoding in an HTTP/1.0 request")
        elements = _list_elements(", ".join(codings), TRANSFER_CODING)
        if elements is None:
            raise _bad("malformed Transfer-Encoding")
        names = [match.group("name").lower() for match in elements]
        if not names:
            raise _bad("empty Transfer-Encoding")
        # RFC 9112 §6.3: unless chunked is the final coding, the body's length cannot be
        # known, and the server MUST answer 400 and close.  With chunked last, a coding we do
        # not implement (gzip, chunked) is 501 (§6.1).
        if names[-1] != "chunked" or "chunked" in names[:-1]:
            raise _bad("chunked is not the final transfer coding")
        if names != ["chunked"] or elements[-1].group("params"):
            raise _bad("transfer coding not implemented", 501)
        return 0, True
    if lengths:
        if not all(CONTENT_LENGTH.fullmatch(value) for value in lengths):
            raise _bad("malformed Content-Length")
        values = {int(digits.strip(" \t")) for value in lengths for digits in value.split(",")}
        if len(values) != 1:
            raise _bad("conflicting Content-Length values")
        return values.pop(), False
    return 0, False


def _keep_alive(headers: Headers, version: str) -> bool:
    """Whether the connection persists after this request (RFC 9112 §9.3)."""
    if "Connection" not in headers:
        return version == "HTTP/1.1"
    elements = _list_elements(", ".join(headers.get_all("Connection")), TOKEN)
    if elements is None:
        raise _bad("malformed Connection field")
    options = {match.group(0).lower() for match in elements}
    if "close" in options:
        return False
    return version == "HTTP/1.1" or "keep-alive" in options


def parse_head(head: Union[bytes, bytearray], limits: Limits) -> Request:
    """The :class:`Request` in ``head``: a request line, field lines and the blank line.

    ``head`` is what :func:`find_head` delimits.  Raises ``HTTPError`` (always asking the
    connection to close) with 414 for a long request line, 431 for a large head or too many
    fields, 505 for an HTTP version other than 1.0 and 1.1, 501 for a transfer coding other
    than chunked, and 400 for anything else RFC 9112 or RFC 9110 does not allow: bare CR or
    LF, obs-fold, whitespace before a colon, a missing or repeated Host, conflicting framing.
    """
    lf = head.find(b"\n")
    if _line_length(head, 0, lf if lf != -1 else len(head)) > limits.request_line:
        raise _bad("request line too long", 414)
    if len(head) > limits.header_block:
        raise _bad("request head too large", 431)
    # Each CR must start a CRLF and each LF end one (RFC 9112 §2.2).
    if not head.count(b"\r") == head.count(b"\n") == head.count(b"\r\n"):
        raise _bad("bare CR or LF in request head")
    if not head.endswith(b"\r\n\r\n"):
        raise _bad("incomplete request head")
    lines = head[:-4].decode("latin-1").split("\r\n")
    if len(lines) - 1 > limits.header_count:
        raise _bad("too many header fields", 431)
    method, target, version = _parse_request_line(lines[0])
    path, query, authority = _split_target(method, target)
    if _FIELD_SECTION.fullmatch(head, len(lines[0]) + 2, len(head) - 2):
        headers = Headers([(name, value.strip(" \t")) for name, _, value in
                           (line.partition(":") for line in lines[1:])])
    else:  # find the offending line, for the error's detail
        headers = Headers([parse_field_line(line) for line in lines[1:]])
    host = _host(headers, version)
    body_length, chunked = _framing(headers, version)
    return Request(method=method, target=target, path=path, query=query, version=version,
                   headers=headers, host=authority if authority is not None else host,
                   keep_alive=_keep_alive(headers, version), body_length=body_length,
                   chunked=chunked)
