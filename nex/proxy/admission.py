"""Whether the proxy takes a request, and where to: the admission checks, in one fixed order.

Like squid's ``http_access`` list, the checks run in a written order and the first refusal
wins; nothing about the destination is looked at before the client has been admitted, and
nothing is looked up in DNS before the names Nex refuses outright have been refused:

1. client network — the client's address in ``allowed_clients``, else ``403``;
2. loop — the request's ``Via`` already carries Nex's own pseudonym: ``508``;
3. proxy authentication (when ``auth`` names a users file) — a client that failed too often
   gets ``429`` with ``Retry-After``; missing or wrong ``Proxy-Authorization`` gets ``407``
   with ``Proxy-Authenticate: Basic realm="...", charset="UTF-8"``;
4. blacklist — a malformed host ``400``; a listed name or address ``403``, without DNS;
5. resolve — the canonical host through the resolver (``getaddrinfo``); failure ``502``;
6. every resolved address — Nex's own listening address and port ``508``; an address in
   ``denied_destinations`` or in a blacklisted network ``403``.  One bad address refuses the
   whole request, so a name cannot mix a public address with a private one;
7. CONNECT port — a CONNECT to a port outside ``connect_ports``: ``403``.

Refusals are ``HTTPError``s for the connection to render; an admitted request yields a
:class:`Destination` to connect to.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from typing import (TYPE_CHECKING, Callable, FrozenSet, Iterable, List, NamedTuple, Optional,
                    Sequence, Tuple)

from nex.site.login import FailureLimiter, UsersFile, challenge
from nex.proxy.blacklist import Address, DomainList, address_forms, canonical_host, in_networks
from nex.http.errors import HTTPError
from nex.site.clients import parse_networks
from nex.proxy.forwarding import via_carries

if TYPE_CHECKING:
    from nex.process.config import Config

#: One address to connect to: ``(family, sockaddr)`` as ``getaddrinfo`` gives them.
SocketAddress = Tuple[int, tuple]
Resolver = Callable[[str, int], Sequence[SocketAddress]]

_WILDCARDS = frozenset({"0.0.0.0", "::"})


class Destination(NamedTuple):
    """An admitted destination: where to connect and who asked.

    ``host`` is canonical (see :func:`nex.proxy.blacklist.canonical_host`), ``addresses`` every
    resolved address in the resolver's order of preference, each of them checked;
    ``user`` is the proxy user name for the log, None when the proxy asks for no login.
    """

    host: str
    port: int
    addresses: Tuple[SocketAddress, ...]
    user: Optional[str]


@functools.lru_cache(maxsize=4096)  # addresses repeat: clients, Nex's own, origins
def _parse_address(text: str) -> Address:
    """The IP address ``text`` spells, without an IPv6 zone index; ``ValueError`` if none."""
    return ipaddress.ip_address(text.partition("%")[0])


def resolve_host(host: str, port: int) -> List[SocketAddress]:
    """The TCP addresses of ``host`` through ``getaddrinfo``, IPv4 and IPv6, duplicates gone.

    An IP address is its own answer, as ``getaddrinfo`` would give it.  Raises ``OSError``
    (``socket.gaierror``) when the name does not resolve.
    """
    if "%" not in host:
        try:
            literal = _parse_address(host)
        except ValueError:
            pass
        else:
            if literal.version == 4:
                return [(socket.AF_INET, (host, port))]
            return [(socket.AF_INET6, (host, port, 0, 0))]
    found: List[SocketAddress] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                        proto=socket.IPPROTO_TCP):
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in found:
            found.append((family, sockaddr))
    return found


def _bound_addresses(bind: str) -> FrozenSet[Address]:
    """The addresses a listener bound to ``bind`` owns; none listed for a wildcard."""
    if bind in _WILDCARDS:
        return frozenset()
    if bind == "localhost":
        return frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")})
    return frozenset({ipaddress.ip_address(bind)})


def _address(sockaddr: tuple) -> Address:
    """The IP address of a ``sockaddr``, without an IPv6 zone index."""
    return _parse_address(sockaddr[0])


class Admission:
    """The proxy's admission checks; see the module text for their order.

    ``allowed_clients`` and ``denied_destinations`` are addresses or CIDR networks;
    ``users`` the proxy's users (None: no login asked); ``failures`` counts failed logins
    (None: no limit); ``pseudonym`` is the received-by name Nex puts in ``Via`` (None: Nex
    adds no Via, and only the address check catches loops).  Nex listens on
    ``listen_port`` at ``bind`` (a wildcard such as ``0.0.0.0`` means every local address);
    ``resolver(host, port)`` returns ``(family, sockaddr)`` pairs or raises ``OSError``.
    """

    def __init__(self, *, allowed_clients: Iterable[str], blacklist: DomainList,
                 denied_destinations: Iterable[str], connect_ports: Iterable[int],
                 listen_port: int, bind: str = "127.0.0.1",
                 users: Optional[UsersFile] = None,
                 failures: Optional[FailureLimiter] = None, realm: str = "Nex proxy",
                 pseudonym: Optional[str] = None, resolver: Resolver = resolve_host) -> None:
        self._allowed_clients = parse_networks(allowed_clients)
        self._blacklist = blacklist
        self._denied = parse_networks(denied_destinations)
        self._connect_ports = frozenset(connect_ports)
        self._listen_port = listen_port
        self._any_local = bind in _WILDCARDS
        self._listen_addresses = _bound_addresses(bind)
        self._users = users
        self._failures = failures
        self._challenge = (("Proxy-Authenticate", challenge(realm)),)
        self._pseudonym = pseudonym
        self._resolver = resolver

    @classmethod
    def from_config(cls, config: Config, *, listen_port: int, pseudonym: str,
                    on_error: Callable[[str], None]) -> "Admission":
        """The checks the ``[proxy]`` settings describe, for a server on ``listen_port``.

        ``pseudonym`` is used only with ``via = yes``; ``on_error`` receives one line when a
        users or blacklist file changes into something that cannot be used.  ``ValueError``
        when one of those files has turned bad since the settings were checked.
        """
        users = (UsersFile.load(config.proxy_auth, on_error=on_error)
                 if config.proxy_auth else None)
        failures = (FailureLimiter(config.proxy_auth_failures_per_minute)
                    if users is not None and config.proxy_auth_failures_per_minute else None)
        blacklist = DomainList(config.proxy_blacklist, config.proxy_blacklist_file or None,
                               on_error=on_error)
        return cls(allowed_clients=config.proxy_allowed_clients, blacklist=blacklist,
                   denied_destinations=config.proxy_denied_destinations,
                   connect_ports=config.proxy_connect_ports, listen_port=listen_port,
                   bind=config.bind, users=users, failures=failures,
                   realm=f"Nex proxy at {config.server_name}",
                   pseudonym=pseudonym if config.proxy_via else None)

    def admit(self, *, client: str, method: str, host: str, port: int,
              proxy_authorization: Optional[str], via: Optional[str],
              local_address: Optional[str] = None) -> Destination:
        """Run the checks for one request, or raise the ``HTTPError`` of the first refusal.

        ``client`` is the connection's peer address (never one from X-Forwarded-For);
        ``host`` and ``port`` the destination as the request names it
        (``nex.proxy.forwarding.parse_absolute_target`` or, for CONNECT,
        ``split_authority(target, None)``); ``proxy_authorization`` and ``via`` the request's
        fields (None when absent); ``local_address`` the address of Nex the client
        connected to, which is one of Nex's own.
        """
        self._check_client(client)
        if self._pseudonym is not None and via_carries(via, self._pseudonym):
            raise HTTPError(508, "This request has already passed through this proxy.")
        user = self._authenticate(client, proxy_authorization)
        try:
            name = canonical_host(host)
        except ValueError:
            raise HTTPError(400, "The request names a malformed host.") from None
        if self._blacklist.matches(name):
            raise HTTPError(403, f"This proxy does not connect to {name}: the proxy's"
                                 " blacklist ([proxy] blacklist, blacklist_file) lists it.")
        addresses = self._resolve(name, port)
        local = address_forms(_parse_address(local_address)) if local_address is not None else ()
        for _, sockaddr in addresses:
            address = _address(sockaddr)
            if port == self._listen_port and any(self._is_own(form, local)
                                                 for form in address_forms(address)):
                raise HTTPError(508, "The request is aimed at this proxy itself.")
            if in_networks(address, self._denied):
                raise HTTPError(403, f"This proxy does not connect to {address}: the setting"
                                     " [proxy] denied_destinations covers it.")
            if self._blacklist.matches_address(address):
                raise HTTPError(403, f"This proxy does not connect to {address}: the proxy's"
                                     " blacklist ([proxy] blacklist, blacklist_file) lists it.")
        if method == "CONNECT" and port not in self._connect_ports:
            raise HTTPError(403, f"This proxy does not tunnel to port {port}: the setting"
                                 " [proxy] connect_ports does not list it.")
        return Destination(name, port, tuple(addresses), user)

    def _check_client(self, client: str) -> None:
        try:
            allowed = in_networks(_parse_address(client), self._allowed_clients)
        except ValueError:
            allowed = False
        if not allowed:
            raise HTTPError(403, "This proxy does not serve your address: the setting"
                                 " [proxy] allowed_clients does not list it.")

    def _authenticate(self, client: str, proxy_authorization: Optional[str]) -> Optional[str]:
        """The proxy user, or None when no login is asked; 429 or 407 otherwise."""
        if self._users is None:
            return None
        if self._failures is not None:
            wait = self._failures.retry_after(client)
            if wait:
                raise HTTPError(429, "Too many failed proxy logins; try again later.",
                                headers=[("Retry-After", str(wait))])
        user = self._users.check(proxy_authorization)
        if user is None:
            if proxy_authorization is not None and self._failures is not None:
                self._failures.record_failure(client)
            raise HTTPError(407, "This proxy needs a user name and password.",
                            headers=self._challenge)
        return user

    def _resolve(self, name: str, port: int) -> Sequence[SocketAddress]:
        try:
            addresses = self._resolver(name, port)
        except (OSError, UnicodeError):
            addresses = ()
        if not addresses:
            raise HTTPError(502, "The destination's name could not be resolved.")
        return addresses

    def _is_own(self, address: Address, local: Tuple[Address, ...]) -> bool:
        """Whether ``address`` (with the listening port) reaches this very Nex."""
        return (address in self._listen_addresses or address in local
                or (self._any_local and (address.is_loopback or address.is_unspecified)))
