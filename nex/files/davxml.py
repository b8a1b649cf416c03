"""WebDAV's XML (RFC 4918 §14): a safe, bounded parser for request bodies, and the writer
of ``207 Multi-Status`` and ``activelock`` bodies.

Request bodies are parsed with expat and nothing else is let in: a document type
declaration (and with it every entity, internal or external: the "billion laughs" and XXE)
is ``400``, as is a body nested deeper than :data:`MAX_DEPTH` elements or holding more than
:data:`MAX_ELEMENTS`.  The body's size is bounded by the caller (:data:`MAX_XML_BYTES`).
Element names are ``{namespace}local``, as ElementTree spells them.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Tuple
from xml.parsers import expat
from xml.sax.saxutils import escape, quoteattr

from nex.http.body import BodyReader
from nex.http.errors import HTTPError

#: The WebDAV namespace.
DAV = "DAV:"
#: The largest XML request body read (413 beyond).
MAX_XML_BYTES = 1024 * 1024
#: The deepest nesting of elements accepted in a request body.
MAX_DEPTH = 32
#: The most elements one request body may hold.
MAX_ELEMENTS = 10000
#: The Content-Type of every XML body Nex sends.
XML_TYPE = ("Content-Type", "application/xml; charset=utf-8")


class Element:
    """One XML element: ``tag`` (``{namespace}local``), its children and its text."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.children: List[Element] = []
        self.text = ""

    def find(self, tag: str) -> Optional[Element]:
        """The first child named ``tag``, or None."""
        return next((child for child in self.children if child.tag == tag), None)

    def xml(self) -> str:
        """The element written back out (its namespace declared on it), for ``owner``."""
        namespace, _, local = self.tag[1:].rpartition("}")
        inner = escape(self.text) + "".join(child.xml() for child in self.children)
        return f"<{local} xmlns={quoteattr(namespace)}>{inner}</{local}>"


def read_xml(body: Optional[BodyReader]) -> Optional[Element]:
    """The root element of the request body, None for an empty body; 400 for anything but
    a well-formed document without a DTD within the bounds, 413 past :data:`MAX_XML_BYTES`
    (or a smaller ``max_request_body``)."""
    if body is None:
        return None
    capped = body.limit > MAX_XML_BYTES
    if capped:
        body.limit = MAX_XML_BYTES
    try:
        data = b"".join(body)
    except HTTPError as error:
        if error.status != 413 or not capped:
            raise  # the body reader's 413 names max_request_body, the smaller cap
        raise HTTPError(413, "A WebDAV request's XML body is at most "
                             f"{MAX_XML_BYTES // 1024} KiB.", close=True) from None
    if not data.strip(b" \t\r\n"):
        return None
    return parse_xml(data)


def parse_xml(data: bytes) -> Element:
    """The root element of ``data`` (see :func:`read_xml`)."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: List[Element] = []
    roots: List[Element] = []
    count = 0

    def refuse(*_) -> None:
        raise HTTPError(400, "XML with a document type declaration or entities is refused.")

    def start(name: str, attributes) -> None:
        nonlocal count
        count += 1
        if len(stack) >= MAX_DEPTH or count > MAX_ELEMENTS:
            raise HTTPError(400, "The XML body is nested too deeply or has too many elements.")
        namespace, _, local = name.rpartition(" ")
        element = Element(f"{{{namespace}}}{local}")
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    def end(name: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].text += data

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except expat.ExpatError as error:
        raise HTTPError(400, f"The XML body is malformed ({expat.ErrorString(error.code)})."
                        ) from None
    return roots[0]


def property_xml(tag: str, value: str = "") -> str:
    """The property ``tag`` (``{namespace}local``) holding ``value``, markup already
    escaped, with its namespace declared on it."""
    namespace, _, local = tag[1:].rpartition("}")
    if namespace == DAV:
        return f"<D:{local}>{value}</D:{local}>" if value else f"<D:{local}/>"
    return (f"<x:{local} xmlns:x={quoteattr(namespace)}>{value}</x:{local}>" if value
            else f"<x:{local} xmlns:x={quoteattr(namespace)}/>")


def multistatus(responses: Iterable[str]) -> Tuple[bytes, ...]:
    """A ``207`` body of the ``response`` elements ``responses``."""
    return ('<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:">'
            + "".join(responses) + "</D:multistatus>\n").encode("utf-8"),


def propstat_response(href: str, groups: Sequence[Tuple[int, Sequence[str]]],
                      reason_of) -> str:
    """One ``response`` for ``href``: a ``propstat`` per (status, property markup)."""
    parts = [f"<D:response><D:href>{escape(href)}</D:href>"]
    for status, properties in groups:
        if properties:
            parts.append(f"<D:propstat><D:prop>{''.join(properties)}</D:prop>"
                         f"<D:status>HTTP/1.1 {status} {reason_of(status)}</D:status>"
                         "</D:propstat>")
    parts.append("</D:response>")
    return "".join(parts)


def status_response(href: str, status: int, reason: str, error: str = "") -> str:
    """One ``response`` giving ``href``'s ``status`` (and a ``DAV:error`` condition)."""
    condition = f"<D:error><D:{error}/></D:error>" if error else ""
    return (f"<D:response><D:href>{escape(href)}</D:href>"
            f"<D:status>HTTP/1.1 {status} {reason}</D:status>{condition}</D:response>")

