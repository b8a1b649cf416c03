"""PROXY protocol version 2 headers built from their parts, for the intake's tests."""

from __future__ import annotations

import ipaddress
import struct

from nex.http.proxy_header import V2_SIGNATURE


def v2(command: int = 0x21, family: int = 0x11, addresses: bytes = b"", tlvs: bytes = b"",
       length=None) -> bytes:
    """A version 2 header from its parts; ``length`` overrides the length field."""
    body = addresses + tlvs
    return (V2_SIGNATURE + bytes([command, family])
            + struct.pack("!H", len(body) if length is None else length) + body)


def ipv4(source: str = "192.0.2.7", destination: str = "198.51.100.1",
         ports=(56324, 443)) -> bytes:
    return (ipaddress.IPv4Address(source).packed + ipaddress.IPv4Address(destination).packed
            + struct.pack("!HH", *ports))


def ipv6(source: str = "2001:db8::7", destination: str = "2001:db8::1") -> bytes:
    return (ipaddress.IPv6Address(source).packed + ipaddress.IPv6Address(destination).packed
            + struct.pack("!HH", 40000, 443))


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value
