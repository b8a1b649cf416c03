"""IP addresses as Nex compares them: parsed once, IPv4-mapped ones known by their IPv4 form.

A dual-stack socket shows an IPv4 peer as ``::ffff:a.b.c.d``, and connecting to such an
address reaches ``a.b.c.d``.  Every check that compares addresses — the listener's
per-client count, the login's failure limiter, the proxy's client networks, blacklist and
own-address checks — goes through :func:`address_forms` or :func:`unmapped`, so no spelling
slips past one of them.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Iterable, Tuple, Union

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@functools.lru_cache(maxsize=4096)  # addresses repeat: clients, Nex's own, origins
def parse_address(text: str) -> Address:
    """The IP address ``text`` spells, without an IPv6 zone index; ``ValueError`` if none."""
    return ipaddress.ip_address(text.partition("%")[0])


@functools.lru_cache(maxsize=4096)  # per request and address checked; addresses repeat
def address_forms(address: Address) -> Tuple[Address, ...]:
    """``address``, plus the IPv4 address it carries when it is IPv4-mapped (``::ffff:a.b.c.d``).

    A dual-stack socket connecting to ``::ffff:127.0.0.1`` reaches 127.0.0.1, so a network
    check must see both spellings.  Remembered: the answer depends on the address alone
    (an IPv4 address and its IPv4-mapped form are different keys).
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address, address.ipv4_mapped
    return (address,)


def unmapped(address: Address) -> Address:
    """``address`` itself, or the IPv4 address an IPv4-mapped one carries."""
    return address_forms(address)[-1]


def plain_address(text: str) -> str:
    """The address ``text`` spells as the client really has it: IPv4-mapped as IPv4.

    Anything else comes back unchanged (an IPv6 zone index too), as does text that is no
    IP address.
    """
    try:
        forms = address_forms(parse_address(text))
    except ValueError:
        return text
    return str(forms[1]) if len(forms) > 1 else text


def in_networks(address: Address, networks: Iterable[Network]) -> bool:
    """Whether ``address``, in either of its :func:`address_forms`, lies in one of ``networks``."""
    if not networks:  # most lists are empty: no need to spell the address out
        return False
    forms = address_forms(address)
    for network in networks:  # loops, not any() over a generator: this runs per request
        version = network.version
        for form in forms:
            if form.version == version and form in network:
                return True
    return False
