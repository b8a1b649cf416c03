"""What a forward proxy changes in the messages it passes on; pure functions, no sockets.

RFC 9110 §7.6.1 splits fields into end-to-end ones, passed on, and hop-by-hop ones, which
describe one connection and must not be: ``Connection`` and every field it names, plus the
fixed list in :data:`HOP_BY_HOP`.  This is where proxies break (tinyproxy freed memory twice
on ``Connection: Connection``, CVE-2023-49606, and forwarded both ``Content-Length`` and
``Transfer-Encoding``), so the removal is written once, in :func:`end_to_end_lines`.

Framing is never copied from received fields.  The builders here drop ``Content-Length``
(and ``Transfer-Encoding``, which is hop-by-hop anyway) and the request's ``Host``; the
request head gets ``Host`` from the target URI and its framing from the ``body_framing``
the caller computed from the body it actually relays, and the caller frames a response
itself (see :func:`added_response_fields`).  So whatever a ``Connection`` field names —
``Connection``, ``Host``, ``Content-Length`` — the message sent on is framed exactly by the
body that goes with it.
"""

from __future__ import annotations

import functools
import re
import secrets
import threading
from typing import Callable, Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Tuple, Union

from nex.http.errors import HTTPError
from nex.http.framing import CHUNKED
from nex.http.framing import connection_options as parse_connection
from nex.http.request import Headers, Request
from nex.http.grammar import (ABSOLUTE_FORM, DEFAULT_PORTS, FIELD_VALUE, PROTOCOL, REQUEST_TARGET,
                              TOKEN, parse_host, parse_list)

Fields = Iterable[Tuple[str, str]]

#: RFC 9110 §7.6.1 (and §11.7.1-2, §10.1.4, §7.8, RFC 9112 §6.1, §7.1): fields that hold
#: for one connection only, in lower case.  Proxy-Connection and Keep-Alive are not
#: standard but are sent as hop-by-hop by older clients.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization",
                        "proxy-authenticate", "te", "trailer", "upgrade", "transfer-encoding"})
#: A request body's framing towards the origin: None (no body), a Content-Length, or
#: :data:`~nex.http.framing.CHUNKED`.
BodyFraming = Union[None, int, str]

_PORT = re.compile(r"[0-9]{1,5}")
#: The field line ``Expect: 100-continue``, in any case and spacing the grammar allows.
_EXPECT_CONTINUE = re.compile(r"expect:[ \t]*100-continue[ \t]*", re.IGNORECASE)
# RFC 9110 §7.6.2: Max-Forwards = 1*DIGIT; 18 digits is more hops than any chain has.
_MAX_FORWARDS = re.compile(r"[0-9]{1,18}")
_MAX_FORWARDS_METHODS = frozenset({"OPTIONS", "TRACE"})
#: Fields the request head builder writes itself rather than copying; Max-Forwards too
#: for the methods it applies to.
_REPLACED_IN_REQUEST = frozenset({"host", "content-length"})
_REPLACED_WITH_MAX_FORWARDS = _REPLACED_IN_REQUEST | {"max-forwards"}


def _as_headers(fields: Fields) -> Headers:
    """``fields`` as :class:`Headers`: a parsed head's as they are, pairs indexed once."""
    return fields if isinstance(fields, Headers) else Headers(list(fields))


def connection_options(fields: Fields) -> FrozenSet[str]:
    """The lower-case names listed in every ``Connection`` field of ``fields``.

    Elements that are not tokens cannot name a field and are skipped, as are empty ones.
    Repeated fields are read as one list (RFC 9110 §5.3), which names the same fields.
    """
    return parse_connection(_as_headers(fields).get("Connection"))[0]


def end_to_end_lines(fields: Fields, also: FrozenSet[str] = frozenset()) -> List[str]:
    """The field lines of ``fields`` without the hop-by-hop ones (RFC 9110 §7.6.1), nor those
    named in ``also`` (lower case: fields the caller writes itself), in their order, each
    without its CRLF: as received when ``fields`` is a parsed head, else ``name: value``.

    Removed: every name in :data:`HOP_BY_HOP` and every field a ``Connection`` field names.
    The names are gathered before anything is removed, so a ``Connection`` that names
    ``Connection`` (or itself twice) is just one more name in a set.
    """
    headers = _as_headers(fields)
    return headers.lines_without(HOP_BY_HOP.union(also, connection_options(headers)))


#: What no response passes on as the origin sent it, beyond the hop-by-hop fields: the
#: Content-Length that the writer sets from the body it relays.
_NOT_RELAYED = frozenset({"content-length"})


#: ``[proxy] forwarded_for`` modes: pass the client's fields as they are, add the client's
#: address, or remove what the client sent.
FORWARDED_FOR_MODES = ("no", "yes", "delete")
_FORWARDING_FIELDS = frozenset({"x-forwarded-for", "forwarded"})


def forwarded_for(fields: Fields, mode: str, client: str) -> Fields:
    """``fields`` as ``[proxy] forwarded_for = mode`` passes them on for ``client`` (an IP
    address): ``no`` unchanged; ``delete`` without ``X-Forwarded-For`` and ``Forwarded``;
    ``yes`` with ``X-Forwarded-For: client`` and ``Forwarded: for=client`` (RFC 7239 §5.2,
    an IPv6 address quoted in brackets) appended, which continue any list the client sent."""
    if mode == "no":
        return fields
    kept = [(name, value) for name, value in fields if name.lower() not in _FORWARDING_FIELDS
            ] if mode == "delete" else list(fields)
    if mode == "yes":
        node = f'"[{client}]"' if ":" in client else client
        kept += [("X-Forwarded-For", client), ("Forwarded", f"for={node}")]
    return kept


def asks_for_websocket(method: str, version: str, fields: Fields) -> bool:
    """Whether a request asks to switch its connection to WebSocket (RFC 6455 §4.1): a GET
    over HTTP/1.1 whose ``Upgrade`` lists ``websocket`` and whose ``Connection`` lists
    ``upgrade`` (RFC 9110 §7.8).  Other protocols in Upgrade are not passed on."""
    if method != "GET" or version != "HTTP/1.1":
        return False
    headers = _as_headers(fields)
    return "upgrade" in connection_options(headers) and names_websocket(
        headers.get_all("Upgrade"))


def names_websocket(upgrade_values: Iterable[str]) -> bool:
    """Whether the ``Upgrade`` field values list the ``websocket`` protocol (any case)."""
    for value in upgrade_values:
        protocols = parse_list(value, PROTOCOL)
        if protocols and any(protocol.group("name").lower() == "websocket"
                             for protocol in protocols):
            return True
    return False


class ProxyTarget(NamedTuple):
    """An absolute-form request-target (RFC 9112 §3.2.2) taken apart.

    ``scheme`` is lower case; ``authority`` is as sent (the origin's ``Host``); ``host`` and
    ``port`` come from it (the scheme's port when it has none; IPv6 without brackets);
    ``origin_form`` is what the request line to the origin carries.
    """

    @property
    def absolute_form(self) -> str:
        """The target as the request line to a parent proxy carries it (RFC 9112 §3.2.2)."""
        path = "" if self.origin_form == "*" else self.origin_form
        return f"{self.scheme}://{self.authority}{path}"

    scheme: str
    authority: str
    host: str
    port: int
    origin_form: str


#: Targets and authorities longer than this are parsed each time rather than remembered.
_CACHED_LENGTH = 512


def split_authority(authority: str, default_port: Optional[int]) -> Tuple[str, int]:
    """``(host, port)`` of ``uri-host [":" port]``; an empty or absent port is ``default_port``.

    The authority is read by the grammar's Host rule (:func:`nex.http.grammar.parse_host`);
    IPv6 literals lose their brackets.  ``HTTPError(400)`` when it does not match, there is
    no host, the port is missing but needed (``default_port`` None, as for CONNECT) or
    outside 1-65535.  Short authorities are remembered (clients ask for the same few, and the
    answer depends on nothing else); refusals are raised each time.
    """
    if len(authority) <= _CACHED_LENGTH:
        return _cached_authority(authority, default_port)
    return _split_authority(authority, default_port)


@functools.lru_cache(maxsize=1024)
def _cached_authority(authority: str, default_port: Optional[int]) -> Tuple[str, int]:
    return _split_authority(authority, default_port)


def _split_authority(authority: str, default_port: Optional[int]) -> Tuple[str, int]:
    match = parse_host(authority)
    if match is None:
        raise HTTPError(400, "The request target has a malformed host.")
    host = match.group("ipv6") or match.group("host")
    port_text = match.group("port")
    if not host:
        raise HTTPError(400, "The request target has no host.")
    if not port_text:
        if default_port is None:
            raise HTTPError(400, "The request target needs a port.")
        return host, default_port
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise HTTPError(400, "The request target's port is not from 1 to 65535.")
    return host, int(port_text)


def parse_absolute_target(method: str, target: str) -> ProxyTarget:
    """The parts of an absolute-form ``target`` such as ``http://example.com:8080/a?b``.

    An empty path is sent as ``/``, or as ``*`` for OPTIONS without a query (RFC 9112
    §3.2.4).  ``HTTPError(400)`` when ``target`` is not absolute-form or its authority is bad.
    Short targets are remembered, as :func:`split_authority`'s authorities are.
    """
    if len(target) <= _CACHED_LENGTH:
        return _cached_absolute_target(method, target)
    return _parse_absolute_target(method, target)


@functools.lru_cache(maxsize=1024)
def _cached_absolute_target(method: str, target: str) -> ProxyTarget:
    return _parse_absolute_target(method, target)


def _parse_absolute_target(method: str, target: str) -> ProxyTarget:
    match = ABSOLUTE_FORM.fullmatch(target)
    if match is None:
        raise HTTPError(400, "A proxy request needs an absolute URL as its target.")
    scheme = target[:target.index(":")].lower()
    authority = match.group("authority")
    host, port = split_authority(authority, DEFAULT_PORTS[scheme])
    path, query = match.group("path"), match.group("query")
    if path is None:
        path = "*" if method == "OPTIONS" and query is None else "/"
    origin_form = path if query is None else f"{path}?{query}"
    return ProxyTarget(scheme, authority, host, port, origin_form)


def remaining_forwards(method: str, fields: Fields) -> Optional[int]:
    """The ``Max-Forwards`` of an OPTIONS or TRACE request (RFC 9110 §7.6.2), else None.

    Other methods ignore the field.  ``HTTPError(400)`` when it is not one decimal number.
    """
    if method not in _MAX_FORWARDS_METHODS:
        return None
    values = _as_headers(fields).get_all("Max-Forwards")
    if not values:
        return None
    if len(values) > 1 or not _MAX_FORWARDS.fullmatch(values[0]):
        raise HTTPError(400, "Max-Forwards must be one decimal number.")
    return int(values[0])


def answers_locally(method: str, fields: Fields) -> bool:
    """Whether Nex must answer the request itself: OPTIONS or TRACE with ``Max-Forwards: 0``.

    RFC 9110 §7.6.2: such a request is not forwarded; the recipient responds as its final
    recipient.  ``HTTPError(400)`` for a malformed Max-Forwards.
    """
    return method in _MAX_FORWARDS_METHODS and remaining_forwards(method, fields) == 0


def origin_request_head(method: str, path_and_query: str, host_header: str, fields: Fields,
                        body_framing: BodyFraming, via: Optional[str],
                        websocket: bool = False, to_parent: bool = False,
                        parent_authorization: Optional[str] = None) -> bytes:
    """The head Nex sends to the origin for a request received in absolute-form.

    * The request line is ``method path_and_query HTTP/1.1`` (origin-form, or ``*``; RFC
      9110 §6.2: a proxy sends its own version).  ``to_parent`` a parent proxy, it is
      absolute-form instead, with ``parent_authorization`` (when given) as
      ``Proxy-Authorization``.
    * ``Host: host_header`` comes first: the target URI's authority, whatever Host the client
      sent (RFC 9112 §3.2.2).
    * The end-to-end ``fields`` follow in order (each line as received, when ``fields`` is a
      parsed head's), without ``Host`` and ``Content-Length``, and
      without ``Expect: 100-continue``: Nex streams the body at once and skips interim
      responses, so an origin waiting for its own go-ahead would only add a delay.
    * ``Max-Forwards`` of OPTIONS and TRACE goes on one lower; the caller answers the request
      itself instead when it is 0 (:func:`answers_locally`), and this raises ``ValueError``.
    * ``via``, when given, is appended as the last ``Via`` (RFC 9110 §7.6.3), e.g.
      ``via_element(request.version, pseudonym)``.
    * Framing from ``body_framing``: None for a request without a body (no framing field),
      an int for ``Content-Length``, or :data:`CHUNKED` for ``Transfer-Encoding: chunked``.

    No ``Connection`` field is sent: the connection to the origin persists by default;
    with ``websocket`` (see :func:`asks_for_websocket`) the head asks the origin to switch
    with ``Connection: Upgrade`` and ``Upgrade: websocket``.
    ``ValueError`` for a method, target, Host or Via that could not be sent as they are.
    """
    headers = _as_headers(fields)
    forwards = remaining_forwards(method, headers)
    if forwards == 0:
        raise ValueError("Max-Forwards is 0: the request is answered, not forwarded")
    if not TOKEN.fullmatch(method):
        raise ValueError(f"method {method!r} is not a token")
    if not REQUEST_TARGET.fullmatch(path_and_query) or (
            path_and_query != "*" and not path_and_query.startswith("/")
            and not (to_parent and ABSOLUTE_FORM.fullmatch(path_and_query))):
        raise ValueError(f"{path_and_query!r} is not a target Nex can send as it is")
    lines = [f"{method} {path_and_query} HTTP/1.1", f"Host: {_field_value(host_header)}"]
    if parent_authorization is not None:
        lines.append(f"Proxy-Authorization: {_field_value(parent_authorization)}")
    kept = end_to_end_lines(headers, _REPLACED_IN_REQUEST if forwards is None
                            else _REPLACED_WITH_MAX_FORWARDS)
    if "Expect" in headers:
        kept = [line for line in kept if not _EXPECT_CONTINUE.fullmatch(line)]
    lines += kept
    if forwards is not None:
        lines.append(f"Max-Forwards: {forwards - 1}")
    if via:
        lines.append(f"Via: {_field_value(via)}")
    if websocket:
        lines += ["Connection: Upgrade", "Upgrade: websocket"]
    if body_framing == CHUNKED:
        lines.append("Transfer-Encoding: chunked")
    elif isinstance(body_framing, int) and body_framing >= 0:
        lines.append(f"Content-Length: {body_framing}")
    elif body_framing is not None:
        raise ValueError(f"body_framing {body_framing!r} is not None, a length or CHUNKED")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


#: Heads longer than this, or built from requests longer than this, are built for each
#: request rather than remembered.
_REMEMBERED_HEAD_LENGTH = 2048
_RequestKey = Tuple[Request, Optional[str], Optional[str], bool]


class RequestHeads:
    """The heads Nex sends on for the requests it receives in absolute-form, remembered.

    Built once per proxy, for its ``pseudonym`` (the received-by name in ``Via``, None
    without one) and its ``[proxy] forwarded_for`` mode.  The request parser hands out the
    very same :class:`Request` for the same head bytes, so a client asking again for the
    same URL with the same fields gets the head built the first time: the key is the
    request itself (its method, target, version, framing and its one ``Headers`` object),
    the client's address when ``forwarded_for = yes`` (it is in the head then) and what goes
    to a parent proxy; nothing else changes the head.  At most ``size`` heads are kept, the
    oldest forgotten first, each of at most 2 KiB and built from a request of at most 2 KiB;
    refusals are raised each time.
    """

    def __init__(self, pseudonym: Optional[str], forwarded_for: str, size: int = 256) -> None:
        self._pseudonym = pseudonym
        self._forwarded_for = forwarded_for
        self._size = size
        self._lock = threading.Lock()
        self._heads: Dict[_RequestKey, Tuple[bytes, bool]] = {}

    def head(self, request: Request, client: str, to_parent: bool = False,
             parent_authorization: Optional[str] = None) -> Tuple[bytes, bool]:
        """``(head, websocket)``: the :func:`origin_request_head` of ``request`` from
        ``client`` (its address), and whether it asks the origin to switch to WebSocket.

        The request line is origin-form, or absolute-form ``to_parent`` a parent proxy with
        ``parent_authorization``.  The body keeps the request's framing (chunked, or its
        ``Content-Length``).  ``ValueError`` (or ``HTTPError(400)``) as
        :func:`origin_request_head` raises them.
        """
        key = (request, client if self._forwarded_for == "yes" else None,
               parent_authorization, to_parent)
        found = self._heads.get(key)
        if found is not None:
            return found
        found = self._build(request, client, to_parent, parent_authorization)
        # The key holds the request: a large one, even if most of it is not passed on, is
        # not kept (nor would the parser hand it out again).
        if len(found[0]) <= _REMEMBERED_HEAD_LENGTH and len(request.target) + sum(
                [len(name) + len(value) for name, value in request.headers]
        ) <= _REMEMBERED_HEAD_LENGTH:
            with self._lock:
                if len(self._heads) >= self._size:
                    del self._heads[next(iter(self._heads))]
                self._heads[key] = found
        return found

    def _build(self, request: Request, client: str, to_parent: bool,
               parent_authorization: Optional[str]) -> Tuple[bytes, bool]:
        method, fields = request.method, request.headers
        target = parse_absolute_target(method, request.target)
        framing: BodyFraming = None
        if request.chunked:
            framing = CHUNKED
        elif "Content-Length" in fields:
            framing = request.body_length
        via = (via_element(request.version, self._pseudonym)
               if self._pseudonym is not None else None)
        websocket = "Upgrade" in fields and asks_for_websocket(method, request.version, fields)
        sent = forwarded_for(fields, self._forwarded_for, client)
        head = origin_request_head(method, target.absolute_form if to_parent
                                   else target.origin_form, target.authority, sent, framing,
                                   via, websocket, to_parent, parent_authorization)
        return head, websocket


class Relayed(NamedTuple):
    """What an origin response passes on of its fields, worked out once per response head
    (see :func:`relayed_fields`): the ``text`` of the fields kept (their lines as the writer
    sends them, each ending in CRLF), and whether one was ``Date``."""

    text: str
    dated: bool


def relayed_fields(origin_fields: Fields) -> Relayed:
    """The origin response's fields that reach the client as they are: without the
    hop-by-hop ones and ``Content-Length``, in their order, each line as it was received.

    ``ValueError`` for a CR, LF or NUL in a name or value: the text goes on as it is
    (:attr:`nex.http.response.Response.made_fields`), so nothing in it may split the response.
    (The parser refuses an origin's head with any of them already.)
    """
    headers = _as_headers(origin_fields)
    lines = end_to_end_lines(headers, _NOT_RELAYED)
    text = "\r\n".join(lines) + "\r\n" if lines else ""
    if text.count("\n") != len(lines) or text.count("\r") != len(lines) or "\0" in text:
        raise ValueError(f"unsafe characters in relayed fields {lines!r}")
    return Relayed(text, "Date" in headers)


def added_response_fields(relayed: Relayed, via: Optional[str],
                          received: Callable[[], str]) -> List[Tuple[str, str]]:
    """The fields Nex adds to the origin response's :func:`relayed_fields`, which it passes
    on as they are (hop-by-hop fields and ``Content-Length`` removed).

    ``via`` (e.g. ``via_element(head.version, pseudonym)``) is appended as the last ``Via``.
    The caller frames the body it relays: ``Content-Length: head.content_length`` when the
    origin gave one (this also keeps it on HEAD and 304 responses, where it describes the
    representation), else chunked to an HTTP/1.1 client or close-delimited to HTTP/1.0.
    Date, Server and the rest pass unchanged; a writer must not add its own.  A response
    without ``Date`` gets ``Date: received()``, the HTTP-date it arrived at: RFC 9110 §6.6.1
    has a recipient with a clock that forwards such a response append one.
    """
    fields = []
    if not relayed.dated:
        fields.append(("Date", received()))
    if via:
        fields.append(("Via", _field_value(via)))
    return fields


def new_pseudonym() -> str:
    """A received-by name for ``Via`` unique to this process: ``nex-`` and 16 hex digits.

    Nex refuses requests whose ``Via`` already carries it (a loop), so it must not collide
    with another proxy's; two Nex instances with the same server name still differ.
    """
    return f"nex-{secrets.token_hex(8)}"


@functools.lru_cache(maxsize=64)
def via_element(http_version: str, pseudonym: str) -> str:
    """One ``Via`` element: ``1.1 nex-…`` for a message received as ``HTTP/1.1``.

    Remembered: a process has one pseudonym, and messages come in a few versions."""
    return f"{http_version[len('HTTP/'):]} {pseudonym}"


def via_carries(via: Optional[str], pseudonym: str) -> bool:
    """Whether the ``Via`` value ``via`` carries ``pseudonym`` as a received-by (any case)."""
    if not via:
        return False
    return _received_by(pseudonym).search(via) is not None


@functools.lru_cache(maxsize=16)
def _received_by(pseudonym: str) -> "re.Pattern[str]":
    """The pattern finding ``pseudonym`` as a received-by in a ``Via`` value, built once per
    pseudonym (a process has one) rather than per request."""
    return re.compile(rf"(?<![^ \t,(]){re.escape(pseudonym)}(?![^ \t,)])", re.IGNORECASE)


def _field_value(value: str) -> str:
    """``value`` if it can be sent as one field line's value, else ``ValueError``."""
    if not value or not FIELD_VALUE.fullmatch(value):
        raise ValueError(f"{value!r} cannot be sent as a field value")
    return value
