"""Which client a request came from when Nex sits behind trusted proxies or load balancers.

A proxy in ``trusted_proxies`` appends the address it received the request from to
``X-Forwarded-For``.  Reading that list from the right and skipping trusted hops gives the
first address nobody trusted vouches for: the client.  Addresses sent by anyone else are
ignored, since a client can write any ``X-Forwarded-For`` it likes.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Optional, Tuple, Union

from nex.addresses import in_networks, parse_address
from nex.http.grammar import FORWARDED_FOR_ELEMENT, parse_list

_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def parse_networks(specs: Iterable[str]) -> Tuple[_Network, ...]:
    """IP networks from addresses or CIDR blocks (``10.0.0.0/8``); ``ValueError`` if invalid."""
    return tuple(ipaddress.ip_network(spec, strict=False) for spec in specs)


class ForwardedFor:
    """Resolves the client address of a request through ``X-Forwarded-For``."""

    def __init__(self, trusted: Iterable[str]) -> None:
        self._trusted = parse_networks(trusted)

    def is_trusted(self, address: str) -> bool:
        """Whether ``address`` (an IP address as text) is one of the trusted proxies."""
        try:
            return in_networks(parse_address(address), self._trusted)
        except ValueError:
            return False

    def client(self, peer: str, forwarded_for: Optional[str]) -> str:
        """The client's address: ``peer`` unless a trusted proxy forwarded the request."""
        if not self._trusted or forwarded_for is None or not self.is_trusted(peer):
            return peer
        hops = parse_list(forwarded_for, FORWARDED_FOR_ELEMENT)
        if hops is None:
            return peer  # a malformed list proves nothing about the client
        for hop in reversed(hops):
            address = hop.group(0)
            try:
                ipaddress.ip_address(address)
            except ValueError:
                return peer  # a malformed list proves nothing about the client
            if not self.is_trusted(address):
                return address
        return peer
