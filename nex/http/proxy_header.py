"""The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2), without sockets.

A load balancer that passes TCP through (HAProxy in TCP mode, or passing TLS on untouched)
hides the client's address: Nex sees the balancer's.  With the PROXY protocol the balancer
sends one header before the client's first byte, naming the client.  Version 1 is a text line::

    PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\\r\\n
    PROXY UNKNOWN ...\\r\\n           (the balancer does not know: use the connection's)

at most :data:`V1_MAX_LENGTH` bytes.  Version 2 is binary: the 12-byte :data:`V2_SIGNATURE`,
a version and command byte (``0x20`` LOCAL, such as a health check, ``0x21`` PROXY), the
address family and transport, a 16-bit length, the addresses, then TLVs (type, 16-bit length,
value) that Nex skips after checking each one fits.  :func:`parse` reads either strictly:
anything malformed, an unsupported version or a longer header than :data:`V2_MAX_LENGTH`
raises :class:`ProxyHeaderError`.  It never reads past the header, so what follows (a request
or a TLS handshake) stays where it is.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from typing import NamedTuple, Optional, Union

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_PREFIX = b"PROXY "
#: The longest version 1 line, CRLF included (proxy-protocol.txt section 2.1).
V1_MAX_LENGTH = 107
#: The shortest header of either version ("PROXY UNKNOWN\r\n").
MIN_LENGTH = 15
_V2_FIXED = 16
#: The longest version 2 header Nex takes, fixed part included: the addresses and a few
#: TLVs (ALPN, authority, TLS details, a unique id) fit well within it.
V2_MAX_LENGTH = _V2_FIXED + 2048
#: The most bytes :func:`parse` may need to see.
MAX_LENGTH = max(V1_MAX_LENGTH, V2_MAX_LENGTH)

#: PROXY TCP4|TCP6 src dst sport dport, or UNKNOWN with anything up to the CRLF.
_V1_LINE = re.compile(
    rb"PROXY (?:(?P<family>TCP4|TCP6) (?P<source>[0-9A-Fa-f.:]+) (?P<destination>[0-9A-Fa-f.:]+)"
    rb" (?P<source_port>0|[1-9][0-9]{0,4}) (?P<destination_port>0|[1-9][0-9]{0,4})"
    rb"|UNKNOWN(?: [\x20-\x7e]*)?)\r\n")
_V2_ADDRESS_SIZES = {0x11: 12, 0x21: 36}  # TCP over IPv4, TCP over IPv6
_V2_UNSPEC, _V2_UNIX_STREAM = 0x00, 0x31
_V2_UNIX_SIZE = 216
_LOCAL, _PROXY = 0x20, 0x21
_V2_LENGTH = struct.Struct("!H")
_V2_IPV4 = struct.Struct("!4s4sHH")
_V2_IPV6 = struct.Struct("!16s16sHH")

Data = Union[bytes, bytearray, memoryview]


class ProxyHeaderError(ValueError):
    """The bytes are not a PROXY header Nex accepts; the message says why."""


class ProxyHeader(NamedTuple):
    """A parsed header: its ``version`` (1 or 2), its ``length`` in bytes, and the client's
    address and port, None when the header carries none (LOCAL, UNKNOWN, UNSPEC, Unix)."""

    version: int
    length: int
    client: Optional[str] = None
    client_port: Optional[int] = None


def starts_like_proxy_header(data: Data) -> bool:
    """Whether ``data`` (at least 6 bytes of a connection's start) begins as a PROXY header
    of either version: no HTTP request or TLS handshake does."""
    start = bytes(data[:6])
    return start == _V1_PREFIX or start == V2_SIGNATURE[:6]


def parse(data: Data, versions: str = "any") -> Optional[ProxyHeader]:
    """The header at the start of ``data``, or None when more bytes are needed to tell.

    ``versions`` is ``v1``, ``v2`` or ``any``: a header of another version is refused.
    Raises :class:`ProxyHeaderError` for bytes that cannot start an accepted header.
    """
    data = bytes(data[:MAX_LENGTH])
    if data[:1] == b"P":
        if versions == "v2":
            raise ProxyHeaderError("a version 1 PROXY header came; only version 2 is accepted")
        return _parse_v1(data)
    if data[:1] == b"\r":
        if versions == "v1":
            if V2_SIGNATURE.startswith(data[:12]):
                raise ProxyHeaderError("a version 2 PROXY header came; only version 1 is "
                                       "accepted")
        return _parse_v2(data)
    if not data:
        return None
    raise ProxyHeaderError("the connection did not start with a PROXY header")


def _parse_v1(data: bytes) -> Optional[ProxyHeader]:
    if not _V1_PREFIX.startswith(data[:6]):
        raise ProxyHeaderError("the connection did not start with a PROXY header")
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(data) >= V1_MAX_LENGTH or b"\n" in data or b"\r" in data[:-1]:
            raise ProxyHeaderError("PROXY header line is malformed or longer than "
                                   f"{V1_MAX_LENGTH} bytes")
        return None
    line = data[:end + 2]
    match = _V1_LINE.fullmatch(line)
    if match is None:
        raise ProxyHeaderError("PROXY header line is malformed")
    if match["family"] is None:
        return ProxyHeader(1, len(line))
    version = 4 if match["family"] == b"TCP4" else 6
    source = _address(match["source"].decode("ascii"), version)
    _address(match["destination"].decode("ascii"), version)
    ports = int(match["source_port"]), int(match["destination_port"])
    if max(ports) > 65535:
        raise ProxyHeaderError("PROXY header port is out of range")
    return ProxyHeader(1, len(line), source, ports[0])


def _address(text: str, version: int) -> str:
    """``text`` as the IP address of ``version`` it must be, in its canonical form."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyHeaderError(f"PROXY header address {text!r} is not an IP address") from None
    if address.version != version:
        raise ProxyHeaderError(f"PROXY header address {text!r} is not IPv{version}")
    return str(address)


def _parse_v2(data: bytes) -> Optional[ProxyHeader]:
    if not V2_SIGNATURE.startswith(data[:12]):
        raise ProxyHeaderError("the connection did not start with a PROXY header")
    if len(data) < _V2_FIXED:
        return None
    command, family = data[12], data[13]
    if command not in (_LOCAL, _PROXY):
        raise ProxyHeaderError(f"PROXY header version/command byte 0x{command:02x} is not "
                               "version 2 LOCAL or PROXY")
    length = _V2_FIXED + _V2_LENGTH.unpack_from(data, 14)[0]
    if length > V2_MAX_LENGTH:
        raise ProxyHeaderError(f"PROXY header of {length} bytes is longer than "
                               f"{V2_MAX_LENGTH}")
    if len(data) < length:
        return None
    if command == _LOCAL:  # the balancer's own connection: its addresses are ignored
        return ProxyHeader(2, length)
    if family in _V2_ADDRESS_SIZES:
        size = _V2_ADDRESS_SIZES[family]
    elif family == _V2_UNIX_STREAM:
        size = _V2_UNIX_SIZE
    elif family == _V2_UNSPEC:
        size = 0
    else:
        raise ProxyHeaderError(f"PROXY header address family 0x{family:02x} is not a "
                               "stream Nex can serve")
    if _V2_FIXED + size > length:
        raise ProxyHeaderError("PROXY header is too short for its addresses")
    _check_tlvs(data, _V2_FIXED + size, length)
    if family == 0x11:
        source, _, port, _ = _V2_IPV4.unpack_from(data, _V2_FIXED)
        return ProxyHeader(2, length, str(ipaddress.IPv4Address(source)), port)
    if family == 0x21:
        source, _, port, _ = _V2_IPV6.unpack_from(data, _V2_FIXED)
        return ProxyHeader(2, length, str(ipaddress.IPv6Address(source)), port)
    return ProxyHeader(2, length)


def _check_tlvs(data: bytes, start: int, end: int) -> None:
    """Walk the TLVs between ``start`` and ``end``: each must fit whole, none may overrun."""
    position = start
    while position < end:
        if position + 3 > end:
            raise ProxyHeaderError("PROXY header ends inside a TLV")
        position += 3 + _V2_LENGTH.unpack_from(data, position + 1)[0]
        if position > end:
            raise ProxyHeaderError("PROXY header TLV runs past the header's end")
