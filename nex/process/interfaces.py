"""The machine's own addresses, for telling a user where a wildcard listener is reachable."""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from typing import List

_SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address
_IF_INET6 = "/proc/net/if_inet6"


def local_addresses(ipv6: bool) -> List[str]:
    """Loopback first, then each interface's address: IPv4, and IPv6 when ``ipv6``.

    Link-local IPv6 addresses are left out (a URL would need the interface's zone).  Where
    the interfaces cannot be read (not Linux), the addresses the host name resolves to
    stand in for them.
    """
    found = ["127.0.0.1"] + (["::1"] if ipv6 else [])
    found += _ipv4_of_interfaces() or _resolved(socket.AF_INET)
    if ipv6:
        found += _ipv6_of_interfaces()
    unique = []
    for address in found:
        if address not in unique:
            unique.append(address)
    return unique


def lan_address(bind: str) -> str:
    """The first address of this machine that other devices can reach, for a server bound to
    the wildcard ``bind`` (``0.0.0.0``, ``::``); "" for any other bind or when there is none."""
    if bind not in ("0.0.0.0", "::"):
        return ""
    for address in local_addresses(ipv6=bind == "::"):
        if not ipaddress.ip_address(address).is_loopback:
            return address
    return ""


def _ipv4_of_interfaces() -> List[str]:
    addresses = []
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for name in names:
            try:
                packed = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR,
                                     struct.pack("256s", name.encode()[:15]))
            except OSError:  # no IPv4 address on this interface
                continue
            addresses.append(socket.inet_ntoa(packed[20:24]))
    return addresses


def _ipv6_of_interfaces() -> List[str]:
    try:
        with open(_IF_INET6, encoding="ascii") as table:
            rows = table.read().split("\n")
    except OSError:
        return _resolved(socket.AF_INET6)
    addresses = []
    for row in rows:
        fields = row.split()
        if not fields:
            continue
        address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
        if not address.is_link_local:
            addresses.append(str(address))
    return addresses


def _resolved(family: int) -> List[str]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_STREAM)
    except OSError:
        return []
    return [info[4][0] for info in infos]
