"""Is this Nex itself?  The one answer, for absolute-form targets and resolved addresses.

A request for Nex's own authority is served from the files (RFC 9112 §3.2.2), and a
destination that resolves to Nex's own address and port would make the proxy call itself in
a loop (``508``).  Both questions are answered by :class:`Itself`, from the port Nex listens
on, the address it is bound to, its ``server_name`` and the address the client reached.
"""

from __future__ import annotations

import ipaddress
from typing import FrozenSet, Optional

from nex.addresses import Address, address_forms, parse_address, unmapped
from nex.proxy.blacklist import canonical_host

#: Bind addresses meaning every local address.
WILDCARDS = frozenset({"0.0.0.0", "::"})


def _bound_addresses(bind: str) -> FrozenSet[Address]:
    """The addresses a listener bound to ``bind`` owns by name; none listed for a wildcard."""
    if bind in WILDCARDS:
        return frozenset()
    if bind == "localhost":
        return frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")})
    return frozenset(address_forms(ipaddress.ip_address(bind)))


def _canonical_or_lower(name: str) -> str:
    try:
        return canonical_host(name)
    except ValueError:
        return name.lower()


class Itself:
    """This Nex as a destination: ``listen_port`` at ``bind`` (a wildcard such as
    ``0.0.0.0`` means every local address), known by ``localhost`` and ``server_name``."""

    def __init__(self, listen_port: int, bind: str = "127.0.0.1",
                 server_name: str = "localhost") -> None:
        self.listen_port = listen_port
        self._names = frozenset({"localhost", _canonical_or_lower(server_name)})
        self._addresses = _bound_addresses(bind)
        self._any_local = bind in WILDCARDS

    def is_address(self, address: Address, port: int, local_address: Optional[str]) -> bool:
        """Whether connecting to ``address`` and ``port`` reaches this Nex.

        It does on the listening port at the bound address (either spelling of an
        IPv4-mapped one), at ``local_address`` (the address the client reached, None if
        unknown), or, bound to every address, at any loopback or unspecified address.
        """
        if port != self.listen_port:
            return False
        reached: Optional[Address] = None
        if local_address is not None:
            try:
                reached = unmapped(parse_address(local_address))
            except ValueError:
                pass
        return any(form in self._addresses or form == reached
                   or (self._any_local and (form.is_loopback or form.is_unspecified))
                   for form in address_forms(address))

    def is_host(self, host: str, port: int, local_address: Optional[str]) -> bool:
        """Whether the canonical ``host`` (see :func:`canonical_host`) and ``port`` name this
        Nex: one of its names, or an IP literal :meth:`is_address` accepts."""
        if port != self.listen_port:
            return False
        if host in self._names:
            return True
        try:
            address = parse_address(host)
        except ValueError:
            return False
        return self.is_address(address, port, local_address)
