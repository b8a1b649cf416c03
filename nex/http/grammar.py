"""The HTTP grammar, written once: RFC 9110 and RFC 9112, with RFC 3986 where URIs need it.

Each rule stands beside the ABNF it implements.  Rules are regular expressions over ``str``
(field values decoded as Latin-1, so each character is one byte) and are meant for
``fullmatch``, or for an anchored ``match`` inside :func:`parse_list`.  No pattern nests
ambiguous repetition, so matching is linear in the length of the text.  The few helpers here
only apply a rule: :func:`parse_list` (the ``#`` list of RFC 9110 §5.6.1), :func:`parse_host`,
:func:`split_host` and :func:`ipv6_address` (RFC 9110 §7.2 Host), :func:`is_hostname`
(RFC 1123 names).

What a value means — which version is served, which coding wins — is decided by the
modules that use these rules, not here.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import FrozenSet, List, Optional, Tuple

# --- RFC 9110 §5.6: common rules ------------------------------------------------------------

#   tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`"
#         / "|" / "~" / DIGIT / ALPHA
_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
#: The bytes a token may hold: what may start a request line (RFC 9112 §3: method = token).
TCHAR_BYTES: FrozenSet[int] = frozenset(
    byte for byte in range(128) if re.fullmatch(_TCHAR, chr(byte)))
#   OWS = *( SP / HTAB )     BWS = OWS
_OWS = r"[ \t]*"
#   token = 1*tchar
_TOKEN = _TCHAR + "+"
#   quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
#   qdtext        = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
#   quoted-pair   = "\" ( HTAB / SP / VCHAR / obs-text );  obs-text = %x80-FF
_QUOTED_STRING = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'

#: RFC 9110 §5.6.2: token = 1*tchar.
TOKEN = re.compile(_TOKEN)
# RFC 9110 §7.8: Upgrade = #protocol; protocol = protocol-name ["/" protocol-version]
PROTOCOL = re.compile(rf"(?P<name>{_TOKEN})(?:/{_TOKEN})?")

# --- RFC 9110 §5.5 and RFC 9112 §5: fields ----------------------------------------------------

#   field-value   = *field-content
#   field-content = field-vchar [ 1*( SP / HTAB / field-vchar ) field-vchar ]
#   field-vchar   = VCHAR / obs-text
_FIELD_VALUE = r"(?:[\x21-\x7e\x80-\xff](?:[\t \x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?"

#: RFC 9110 §5.1: field-name = token.
FIELD_NAME = TOKEN
#: RFC 9110 §5.5: field-value, without the OWS around it.
FIELD_VALUE = re.compile(_FIELD_VALUE)
#: RFC 9112 §5: a field section of valid field lines, each ending in CRLF:
#:   field-line = field-name ":" OWS field-value OWS
#: One pass validates every line of a head at once (without the request line and the final
#: blank line); obs-fold is refused by not being allowed.  ``OWS field-value OWS`` is
#: exactly any run of SP, HTAB, VCHAR and obs-text (the OWS take the blanks at either end),
#: so it is matched as that run: the same lines, without backtracking at each value's end.
FIELD_SECTION = re.compile(rf"(?:{_TOKEN}:[\t \x21-\x7e\x80-\xff]*\r\n)*")

# --- RFC 9110 §5.6.1: lists -------------------------------------------------------------------

# A recipient accepts empty list elements:  #element => [ element ] *( OWS "," OWS [ element ] )
_LIST_SEPARATOR = re.compile(rf"{_OWS},{_OWS}")


@functools.lru_cache(maxsize=None)
def _list_element(element: re.Pattern[str]) -> re.Pattern[str]:
    """``element`` that must end where the list's next separator or the value's end is."""
    return re.compile(rf"(?:{element.pattern})(?={_OWS},|\Z)", element.flags)


def parse_list(value: str, element: re.Pattern[str]) -> Optional[List[re.Match[str]]]:
    """The elements of the comma-separated list ``value`` (RFC 9110 §5.6.1), or None.

    ``value`` is a field value, OWS around it removed; each element must match ``element``
    entirely, elements are separated by ``OWS "," OWS``, and empty elements are skipped as
    §5.6.1.2 asks of recipients.  None means ``value`` is not such a list.  Elements may
    hold commas of their own (an entity-tag, a quoted-string): each is matched from where
    it starts, not cut at the next comma.
    """
    bounded = _list_element(element)
    found = []
    position, end = 0, len(value)
    while True:
        match = bounded.match(value, position)
        if match is not None and match.end() > position:
            found.append(match)
            position = match.end()
        if position == end:
            return found
        separator = _LIST_SEPARATOR.match(value, position)
        if separator is None:
            return None
        position = separator.end()


#: X-Forwarded-For (de facto, in no RFC): a list whose elements are taken as any run of
#: characters other than comma and white space, for ``ipaddress`` to judge.
FORWARDED_FOR_ELEMENT = re.compile(r"[^,\s]+")


# --- RFC 9112 §3: the request line ------------------------------------------------------------

#: RFC 9110 §9.1: method = token.
METHOD = TOKEN
#: RFC 9112 §2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT;  HTTP-name = %s"HTTP".
HTTP_VERSION = re.compile(r"HTTP/(?P<major>[0-9])\.(?P<minor>[0-9])")
#: RFC 9112 §3.2: a request-target is visible ASCII; RFC 9110 §7.1: a fragment ("#") is
#: never sent.
REQUEST_TARGET = re.compile(r"[\x21\x22\x24-\x7e]+")
#: RFC 9112 §3.2.1: origin-form = absolute-path [ "?" query ] (characters already checked
#: by :data:`REQUEST_TARGET`).
ORIGIN_FORM = re.compile(r"(?P<path>/[^?]*)(?:\?(?P<query>.*))?")
#: RFC 9112 §3.2.2: absolute-form = absolute-URI, here for the http and https schemes
#: (RFC 9110 §4.2.1-4.2.2): scheme "://" authority path-abempty [ "?" query ], the scheme
#: case-insensitive.
ABSOLUTE_FORM = re.compile(
    r"(?i:https?)://(?P<authority>[^/?]*)(?P<path>/[^?]*)?(?:\?(?P<query>.*))?")
#: RFC 9112 §3.2.4: asterisk-form = "*".
ASTERISK_FORM = "*"

# --- RFC 3986 §3.2.2-3.2.3 and RFC 9110 §7.2: hosts -------------------------------------------

#   reg-name = *( unreserved / pct-encoded / sub-delims )
_REG_NAME = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*"
#   IPv6address: its characters here, its structure checked by ipaddress
_IPV6 = r"[0-9A-Fa-f:.]+"
#   IP-literal = "[" ( IPv6address / IPvFuture ) "]"   (IPvFuture is not accepted)
_IP_LITERAL = rf"\[(?P<ipv6>{_IPV6})\]"
#: RFC 9110 §7.2: Host = uri-host [ ":" port ];  RFC 3986: uri-host = IP-literal /
#: IPv4address / reg-name (a reg-name covers every IPv4address);  port = *DIGIT.
HOST = re.compile(rf"(?P<host>{_IP_LITERAL}|{_REG_NAME})(?::(?P<port>[0-9]*))?")
#: Dot-separated labels of letters, digits, "-" and "_": the reg-names Nex compares as host
#: names in Host fields and ``allowed_hosts`` (an IPv4address fits too).
HOST_LABELS = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: RFC 1123 §2.1 host name: labels of 1 to 63 letters, digits and "-", neither starting
#: nor ending with "-", joined by dots.
HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_IPV6_CHARACTERS = re.compile(_IPV6)
_PORT_NUMBER = re.compile(r"[0-9]{1,5}")
#: The port a URI of each scheme names when it gives none (RFC 9110 §4.2.1-2).
DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_host(value: str) -> Optional[re.Match[str]]:
    """:data:`HOST` matched against all of ``value``, an IP-literal checked as IPv6, or None."""
    match = HOST.fullmatch(value)
    if match is None or (match.group("ipv6") is not None
                         and ipv6_address(match.group("ipv6")) is None):
        return None
    return match


def ipv6_address(text: str) -> Optional[str]:
    """The canonical form of the IPv6address ``text`` (RFC 3986 §3.2.2), or None.

    That is RFC 5952's compressed lower-case text, with an IPv4-mapped address ending in
    its dotted IPv4 address as §5 recommends (``::ffff:192.0.2.1``) on every Python version:
    the ``ipaddress`` module writes those in hexadecimal before 3.13.
    """
    if not _IPV6_CHARACTERS.fullmatch(text):
        return None
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    mapped = address.ipv4_mapped
    return address.compressed if mapped is None else f"::ffff:{mapped}"


def split_host(value: str) -> Optional[Tuple[str, Optional[int]]]:
    """``(host, port)`` of a Host value, the host in the form names are compared in.

    The host is lower-cased, one trailing dot (the fully-qualified spelling) removed, and an
    IP-literal given as its compressed IPv6 address without brackets.  A name must be
    :data:`HOST_LABELS`.  ``port`` is None when there is none or it is empty (RFC 3986
    §3.2.3 allows ``example.com:``); a port must be at most 65535.  None when ``value`` is
    not such a host.
    """
    match = parse_host(value.lower())
    if match is None:
        return None
    ipv6 = match.group("ipv6")
    if ipv6 is not None:
        host = ipv6_address(ipv6)
    else:
        host = match.group("host")
        if host.endswith("."):
            host = host[:-1]
        if not HOST_LABELS.fullmatch(host):
            return None
    port = match.group("port")
    if not port:
        return host, None
    if not _PORT_NUMBER.fullmatch(port) or int(port) > 65535:
        return None
    return host, int(port)


def is_hostname(text: str) -> bool:
    """Whether ``text`` is an RFC 1123 host name of at most 253 characters.

    A name whose last label is all digits would read as a malformed IPv4 address, so it is
    not one.
    """
    return (len(text) <= 253 and HOSTNAME.fullmatch(text) is not None
            and not text.rsplit(".", 1)[-1].isdigit())


# --- RFC 9112 §6-7: framing -------------------------------------------------------------------

#: RFC 9112 §6.3: Content-Length = 1*DIGIT, accepted as a list of identical values; more
#: than 18 digits could not be a body anyone sends.
CONTENT_LENGTH = re.compile(r"[0-9]{1,18}(?:[ \t]*,[ \t]*[0-9]{1,18})*")
#: RFC 9112 §7: transfer-coding = token *( OWS ";" OWS transfer-parameter );
#: transfer-parameter = token BWS "=" BWS ( token / quoted-string ).
TRANSFER_CODING = re.compile(
    rf"(?P<name>{_TOKEN})(?P<params>(?:{_OWS};{_OWS}{_TOKEN}{_OWS}={_OWS}"
    rf"(?:{_TOKEN}|{_QUOTED_STRING}))*)")
#: RFC 9112 §7.1: chunk-size [ chunk-ext ] (the line before its CRLF), chunk-size = 1*HEXDIG
#: bounded to 16 digits; chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS
#: chunk-ext-val ] ), chunk-ext-val = token / quoted-string.
CHUNK_LINE = re.compile(
    rf"(?P<size>[0-9A-Fa-f]{{1,16}})(?P<ext>(?:{_OWS};{_OWS}{_TOKEN}"
    rf"(?:{_OWS}={_OWS}(?:{_TOKEN}|{_QUOTED_STRING}))?)*)")

# --- RFC 9110 §8.3 and §12: media types, codings, weights -------------------------------------

#: RFC 9110 §8.3.1: media-type = type "/" subtype parameters;  type = subtype = token;
#: parameters = *( OWS ";" OWS [ parameter ] );
#: parameter = parameter-name "=" parameter-value;  parameter-value = token / quoted-string.
MEDIA_TYPE = re.compile(
    rf"(?P<type>{_TOKEN})/(?P<subtype>{_TOKEN})(?P<parameters>(?:{_OWS};{_OWS}"
    rf"(?:{_TOKEN}=(?:{_TOKEN}|{_QUOTED_STRING}))?)*)")
#: RFC 9110 §5.6.6: one element of parameters, OWS ";" OWS [ parameter ], with the
#: parameter-name and parameter-value (token / quoted-string) as groups.
PARAMETER = re.compile(
    rf"{_OWS};{_OWS}(?:(?P<name>{_TOKEN})=(?P<value>{_TOKEN}|{_QUOTED_STRING}))?")
#   qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)"
#: RFC 9110 §12.5.3: an Accept-Encoding element, codings [ weight ], where
#: codings = content-coding / "identity" / "*" (all tokens) and
#: weight = OWS ";" OWS "q=" qvalue ("q" case-insensitive, as ABNF strings are).
WEIGHTED_CODING = re.compile(rf"(?P<coding>{_TOKEN})(?:{_OWS};{_OWS}[qQ]=(?P<qvalue>{_QVALUE}))?")
#: RFC 9110 §12.5.1: an Accept element, media-range [ weight ], where
#: media-range = ( "*/*" / ( type "/*" ) / ( type "/" subtype ) ) parameters and the weight
#: is the parameter named "q", which comes last.  ``*`` is a tchar, so this also lets
#: ``*/subtype`` through, which the caller refuses.  A parameter's white space is taken
#: after its ";" only when a parameter follows, so no text splits two ways.
MEDIA_RANGE = re.compile(
    rf"(?P<type>{_TOKEN})/(?P<subtype>{_TOKEN})"
    rf"(?:{_OWS};(?!{_OWS}[qQ]=)(?:{_OWS}{_TOKEN}=(?:{_TOKEN}|{_QUOTED_STRING}))?)*"
    rf"(?:{_OWS};{_OWS}[qQ]=(?P<qvalue>{_QVALUE}))?")

# --- RFC 9110 §8.8.3: entity-tags -------------------------------------------------------------

#: RFC 9110 §8.8.3: entity-tag = [ weak ] opaque-tag;  weak = %s"W/";
#: opaque-tag = DQUOTE *etagc DQUOTE;  etagc = %x21 / %x23-7E / obs-text.  An etagc may be
#: ",", so a list of entity-tags is read with :func:`parse_list`, never split at commas.
ENTITY_TAG = re.compile(r'(?P<weak>W/)?(?P<tag>"[\x21\x23-\x7e\x80-\xff]*")')

# --- RFC 9110 §14.1: byte ranges --------------------------------------------------------------

#: RFC 9110 §14.1.2: ranges-specifier = range-unit "=" range-set;  range-unit = token;
#: the range-set (1#range-spec) is read with :func:`parse_list` and :data:`RANGE_SPEC`.
RANGES_SPECIFIER = re.compile(rf"(?P<unit>{_TOKEN})=(?P<set>.*)", re.DOTALL)
#: RFC 9110 §14.1.1: range-spec = int-range / suffix-range / other-range, the byte forms:
#: int-range = first-pos "-" [ last-pos ];  suffix-range = "-" suffix-length;
#: first-pos = last-pos = suffix-length = 1*DIGIT.
RANGE_SPEC = re.compile(r"(?P<first>[0-9]+)-(?P<last>[0-9]*)|-(?P<suffix>[0-9]+)")
#: The commonest ranges-specifier: one int-range of bytes with both positions, first-pos
#: and last-pos in that order (the range unit is case-insensitive), each of at most 18
#: digits, so it converts exactly.
SINGLE_BYTE_RANGE = re.compile(r"[Bb][Yy][Tt][Ee][Ss]=([0-9]{1,18})-([0-9]{1,18})")
#: The bytes after ``bytes=`` of a Range field that a request parse may set apart from the
#: rest of its head: digits and one hyphen, nothing a field value may not hold (so the rest of
#: the head alone decides whether the head is well formed), at most 37 bytes.
RANGE_SET_BYTES = re.compile(rb"[0-9]{0,18}-[0-9]{0,18}")

# --- RFC 9110 §5.6.7: HTTP-date ---------------------------------------------------------------

#: day-name = %s"Mon" / %s"Tue" / %s"Wed" / %s"Thu" / %s"Fri" / %s"Sat" / %s"Sun",
#: in ``time.struct_time.tm_wday`` order.
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: day-name-l = %s"Monday" / %s"Tuesday" / ... / %s"Sunday" (the RFC 850 form).
LONG_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
#: month = %s"Jan" / %s"Feb" / ... / %s"Dec", January first.
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_DAY_NAME = "(?:" + "|".join(DAY_NAMES) + ")"
_MONTH = "(?P<month>" + "|".join(MONTHS) + ")"
#   time-of-day = hour ":" minute ":" second;  hour = minute = second = 2DIGIT
_TIME_OF_DAY = r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"

#: IMF-fixdate = day-name "," SP date1 SP time-of-day SP GMT;
#: date1 = day SP month SP year (``06 Nov 1994``), day = 2DIGIT, year = 4DIGIT, GMT = %s"GMT".
IMF_FIXDATE = re.compile(
    rf"{_DAY_NAME}, (?P<day>[0-9]{{2}}) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME_OF_DAY} GMT")
#: rfc850-date = day-name-l "," SP date2 SP time-of-day SP GMT;
#: date2 = day "-" month "-" 2DIGIT (``06-Nov-94``).
RFC850_DATE = re.compile(
    "(?:" + "|".join(LONG_DAY_NAMES) + ")"
    + rf", (?P<day>[0-9]{{2}})-{_MONTH}-(?P<year>[0-9]{{2}}) {_TIME_OF_DAY} GMT")
#: asctime-date = day-name SP date3 SP time-of-day SP year;
#: date3 = month SP ( 2DIGIT / ( SP DIGIT ) ) (``Nov  6``).
ASCTIME_DATE = re.compile(
    rf"{_DAY_NAME} {_MONTH} (?P<day>[0-9]{{2}}| [0-9]) {_TIME_OF_DAY} (?P<year>[0-9]{{4}})")
#: HTTP-date = IMF-fixdate / obs-date;  obs-date = rfc850-date / asctime-date.  Recipients
#: must accept all three; senders use IMF-fixdate only.
HTTP_DATE_FORMS = (IMF_FIXDATE, RFC850_DATE, ASCTIME_DATE)


# --- RFC 9110 §11: authentication; RFC 9111 §5.2: Cache-Control ------------------------------

#: RFC 9110 §11.4: credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ], for the
#: token68 form (the one Basic uses); token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
#: "+" / "/" ) *"=".
CREDENTIALS = re.compile(rf"(?P<scheme>{_TOKEN}) +(?P<token68>[A-Za-z0-9._~+/-]+=*)")
#: RFC 9111 §5.2: cache-directive = token [ "=" ( token / quoted-string ) ].
CACHE_DIRECTIVE = re.compile(rf"{_TOKEN}(?:=(?:{_TOKEN}|{_QUOTED_STRING}))?")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)

# --- RFC 8941 §3.3: structured field items, as the resumable-upload draft's fields use them ---

#: RFC 8941 §3.3.6: sf-boolean = "?" boolean;  boolean = "0" / "1".
SF_BOOLEAN = re.compile(r"\?(?P<value>[01])")
#: RFC 8941 §3.3.1: sf-integer = ["-"] 1*15DIGIT, for the fields that count bytes, which are
#: never negative (draft-ietf-httpbis-resumable-upload: Upload-Offset, Upload-Length).
SF_COUNT = re.compile(r"[0-9]{1,15}")


def unquote(quoted: str) -> str:
    """The text a quoted-string stands for: without its DQUOTEs, each quoted-pair replaced by
    the character it quotes (RFC 9110 §5.6.4)."""
    return _QUOTED_PAIR.sub(r"\1", quoted[1:-1])
