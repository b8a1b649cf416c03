"""Whether the proxy takes a request, and where to: the admission checks, in one fixed order.

Like squid's ``http_access`` list, the checks run in a written order and the first refusal
wins; nothing about the destination is looked at before the client has been admitted, and
nothing is looked up in DNS before the names Nex refuses outright have been refused:

1. client network — the client's address in ``allowed_clients``, else ``403``;
2. loop — the request's ``Via`` already carries Nex's own pseudonym: ``508``;
3. proxy authentication (when ``auth`` names a users file; :class:`nex.site.login.Login`) —
   a user name that failed too often from the client's address gets ``429`` with
   ``Retry-After``; missing or wrong ``Proxy-Authorization`` gets ``407`` with
   ``Proxy-Authenticate: Basic realm="...", charset="UTF-8"``;
4. host and port — a malformed host ``400``; a port outside ``connect_ports`` (CONNECT) or
   ``http_ports`` (forwarded requests) ``403``, so no name is looked up for a port Nex
   would refuse anyway;
5. blacklist — a listed name or address ``403``, without DNS; with an allow-list
   (``allowed_destinations``), a name it does not list when it lists no networks ``403``;
6. resolve — the canonical host through the resolver (:mod:`nex.proxy.dns`: cached, and
   bounded in time), once; failure ``502``, a look-up that takes too long ``504``;
7. every resolved address — Nex's own listening address and port ``508``; an address in a
   blacklisted network or in ``denied_destinations`` ``403``; with an allow-list, an
   address outside its networks, unless the name itself is listed, ``403``.  One bad address
   refuses the whole request, so a name cannot mix a public address with a private one, and
   only the addresses checked here are ever connected to.

With a ``parent`` proxy, a destination that ``parent_bypass`` does not list is not looked
up: the parent resolves it.  Steps 6 and 7 then apply to an IP address written in the
request only, an allow-list admits listed names only, and the parent's own name is what
Nex resolves.

Refusals are ``HTTPError``s for the connection to render; an admitted request yields a
:class:`Destination` to connect to.
"""

from __future__ import annotations

import functools
import socket
from typing import TYPE_CHECKING, Callable, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from nex.addresses import Address, in_networks, parse_address
from nex.site.login import FailureLimiter, Login, UsersFile
from nex.proxy.blacklist import DomainList, canonical_host
from nex.proxy.dns import CachingResolver
from nex.proxy.figures import Tally
from nex.http.errors import HTTPError
from nex.site.clients import parse_networks
from nex.proxy.forwarding import via_carries
from nex.proxy.itself import Itself
from nex.proxy.parent import Parent, parse_parent

if TYPE_CHECKING:
    from nex.process.config import Config

#: One address to connect to: ``(family, sockaddr)`` as ``getaddrinfo`` gives them.
SocketAddress = Tuple[int, tuple]
Resolver = Callable[[str, int], Sequence[SocketAddress]]


class Destination(NamedTuple):
    """An admitted destination: where to connect and who asked.

    ``host`` is canonical (see :func:`nex.proxy.blacklist.canonical_host`), ``addresses`` every
    resolved address in the resolver's order of preference, each of them checked;
    ``user`` is the proxy user name for the log, None when the proxy asks for no login.
    With ``parent`` the request goes through that parent proxy, and ``addresses`` are the
    parent's.
    """

    host: str
    port: int
    addresses: Tuple[SocketAddress, ...]
    user: Optional[str]
    parent: Optional[Parent] = None


def resolve_host(host: str, port: int) -> Sequence[SocketAddress]:
    """The TCP addresses of ``host`` through ``getaddrinfo``, IPv4 and IPv6, duplicates gone.

    An IP address is its own answer, as ``getaddrinfo`` would give it.  Raises ``OSError``
    (``socket.gaierror``) when the name does not resolve.
    """
    literal = _literal_answer(host, port)
    if literal is not None:
        return literal
    found: List[SocketAddress] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                        proto=socket.IPPROTO_TCP):
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in found:
            found.append((family, sockaddr))
    return found


@functools.lru_cache(maxsize=1024)
def _literal_answer(host: str, port: int) -> Optional[Tuple[SocketAddress, ...]]:
    """What ``getaddrinfo`` answers for ``host`` written as an IP address, None for a name
    (remembered: it depends on nothing else, and the same origins are asked for again)."""
    if "%" in host:
        return None
    try:
        literal = parse_address(host)
    except ValueError:
        return None
    if literal.version == 4:
        return ((socket.AF_INET, (host, port)),)
    return ((socket.AF_INET6, (host, port, 0, 0)),)


class Admission:
    """The proxy's admission checks; see the module text for their order.

    ``allowed_clients`` and ``denied_destinations`` are addresses or CIDR networks;
    ``allowed`` the allow-list (None: every destination not refused otherwise);
    ``connect_ports`` the ports CONNECT may reach and ``http_ports`` the (first, last) port
    ranges forwarded requests may; ``users`` the proxy's users (None: no login asked);
    ``failures`` counts failed logins (None: no limit); ``pseudonym`` is the received-by
    name Nex puts in ``Via`` (None: Nex adds no Via, and only the address check catches
    loops).  Nex listens on ``listen_port`` at ``bind`` (a wildcard such as ``0.0.0.0``
    means every local address) and is called ``server_name``; ``resolver(host, port)``
    returns ``(family, sockaddr)`` pairs or raises ``OSError`` (or the ``HTTPError`` it
    wants sent).  With a ``parent`` proxy, requests go through it except for destinations
    ``parent_bypass`` lists.
    """

    def __init__(self, *, allowed_clients: Iterable[str], blacklist: DomainList,
                 denied_destinations: Iterable[str], connect_ports: Iterable[int],
                 listen_port: int, bind: str = "127.0.0.1", server_name: str = "localhost",
                 http_ports: Iterable[Tuple[int, int]] = ((1, 65535),),
                 allowed: Optional[DomainList] = None,
                 users: Optional[UsersFile] = None,
                 failures: Optional[FailureLimiter] = None, realm: str = "Nex proxy",
                 pseudonym: Optional[str] = None, resolver: Resolver = resolve_host,
                 parent: Optional[Parent] = None,
                 parent_bypass: Optional[DomainList] = None) -> None:
        self._allowed_clients = parse_networks(allowed_clients)
        self._client_allowed = functools.lru_cache(maxsize=1024)(
            self._client_in_allowed_networks)
        self._blacklist = blacklist
        self._allowed = allowed
        self._denied = parse_networks(denied_destinations)
        self._is_denied = functools.lru_cache(maxsize=1024)(self._in_denied_networks)
        self._connect_ports = frozenset(connect_ports)
        #: One byte per port number, 1 where forwarded requests may go: a look-up per request
        #: rather than a walk through the ranges.
        ports = bytearray(65536)
        for first, last in http_ports:
            ports[first:last + 1] = b"\x01" * (last + 1 - first)
        self._http_ports = bytes(ports)
        #: This Nex as a destination, for the loop check and for targets naming it.
        self.itself = Itself(listen_port, bind, server_name)
        self._login = (Login(users, failures, realm, proxy=True) if users is not None
                       else None)
        self._pseudonym = pseudonym
        self._resolver = resolver
        self._parent = parent
        self._bypass = parent_bypass or DomainList()

    @classmethod
    def from_config(cls, config: Config, *, listen_port: int, pseudonym: str,
                    on_error: Callable[[str], None],
                    tally: Optional[Tally] = None) -> "Admission":
        """The checks the ``[proxy]`` settings describe, for a server on ``listen_port``.

        ``pseudonym`` is used only with ``via = yes``; ``on_error`` receives one line when a
        users or blacklist file changes into something that cannot be used; the DNS cache
        counts into ``tally``.  ``ValueError`` when one of those files has turned bad since
        the settings were checked.
        """
        users = (UsersFile.load(config.proxy_auth, on_error=on_error)
                 if config.proxy_auth else None)
        failures = (FailureLimiter(config.proxy_auth_failures_per_minute)
                    if users is not None and config.proxy_auth_failures_per_minute else None)
        blacklist = DomainList(config.proxy_blacklist, config.proxy_blacklist_file or None,
                               on_error=on_error)
        allowed = (DomainList(config.proxy_allowed_destinations)
                   if config.proxy_allowed_destinations else None)
        return cls(allowed_clients=config.proxy_allowed_clients, blacklist=blacklist,
                   denied_destinations=config.proxy_denied_destinations,
                   connect_ports=config.proxy_connect_ports,
                   http_ports=config.proxy_http_ports, allowed=allowed,
                   listen_port=listen_port, bind=config.bind,
                   server_name=config.server_name, users=users, failures=failures,
                   realm=f"Nex proxy at {config.server_name}",
                   pseudonym=pseudonym if config.proxy_via else None,
                   resolver=CachingResolver(resolve_host, ttl=config.proxy_dns_cache_ttl,
                                            timeout=config.proxy_dns_timeout, tally=tally),
                   parent=parse_parent(config.proxy_parent) if config.proxy_parent else None,
                   parent_bypass=DomainList(config.proxy_parent_bypass))

    def admit(self, *, client: str, method: str, host: str, port: int,
              proxy_authorization: Optional[str], via: Optional[str],
              local_address: Optional[str] = None) -> Destination:
        """Run the checks for one request, or raise the ``HTTPError`` of the first refusal.

        ``client`` is the connection's peer address (never one from X-Forwarded-For);
        ``host`` and ``port`` the destination as the request names it
        (``nex.proxy.forwarding.parse_absolute_target`` or, for CONNECT,
        ``split_authority(target, None)``); ``proxy_authorization`` and ``via`` the request's
        fields (None when absent); ``local_address`` the address of Nex the client
        connected to, which is one of Nex's own.  The name is resolved once, and the
        :class:`Destination` holds exactly the addresses that were checked.
        """
        if not self._client_allowed(client):
            raise HTTPError(403, "This proxy does not serve your address: the setting"
                                 " [proxy] allowed_clients does not list it.", refusal="client")
        if via is not None and self._pseudonym is not None and via_carries(via,
                                                                            self._pseudonym):
            raise HTTPError(508, "This request has already passed through this proxy.",
                            refusal="loop")
        user = (self._login.verify(proxy_authorization, client) if self._login is not None
                else None)
        try:
            name = canonical_host(host)
        except ValueError:
            raise HTTPError(400, "The request names a malformed host.") from None
        self._check_port(method, port)
        if self._blacklist.matches(name):
            raise _blacklisted(name)
        # An allow-listed domain admits its name; otherwise every address must be listed.
        named = self._allowed is None or self._allowed.matches_name(name)
        parent = self._parent
        if parent is not None and self._bypass.matches(name):
            parent = None
        if not named and (parent is not None or not self._allowed.has_networks):
            if _literal(name) is None:
                raise _not_allowed()
        if parent is not None:
            # The parent resolves names; only an address written in the request is checked.
            literal = _literal(name)
            if literal is not None:
                self._check_addresses([literal], port, local_address, named)
            addresses = self._resolve(parent.host, parent.port, "parent proxy's")
            return Destination(name, port, tuple(addresses), user, parent)
        addresses = self._resolve(name, port, "destination's")
        self._check_addresses(addresses, port, local_address, named)
        return Destination(name, port, tuple(addresses), user)

    def _check_addresses(self, addresses: Iterable[SocketAddress], port: int,
                         local_address: Optional[str], named: bool) -> None:
        """Refuse the request unless every one of ``addresses`` may be reached."""
        for _, sockaddr in addresses:
            address = parse_address(sockaddr[0])
            if self.itself.is_address(address, port, local_address):
                raise HTTPError(508, "The request is aimed at this proxy itself.", refusal="loop")
            if self._blacklist.matches_address(address):
                raise _blacklisted(address)
            if self._is_denied(address):
                raise HTTPError(403, f"This proxy does not connect to {address}: the setting"
                                     " [proxy] denied_destinations covers it.",
                                refusal="denied_destination")
            if not named and not self._allowed.matches_address(address):
                raise _not_allowed()

    def _in_denied_networks(self, address: Address) -> bool:
        """Whether ``address`` lies in ``denied_destinations`` (remembered per address by
        :attr:`_is_denied`: the same origins are reached again and again, and the setting
        does not change while Nex runs)."""
        return in_networks(address, self._denied)

    def _client_in_allowed_networks(self, client: str) -> bool:
        """Whether the peer address ``client`` lies in ``allowed_clients`` (remembered per
        address by :attr:`_client_allowed`: a connection's requests all ask it)."""
        try:
            return in_networks(parse_address(client), self._allowed_clients)
        except ValueError:
            return False

    def _check_port(self, method: str, port: int) -> None:
        """A port outside ``connect_ports`` (CONNECT) or ``http_ports`` (the rest): 403."""
        if method == "CONNECT":
            if port not in self._connect_ports:
                raise HTTPError(403, f"This proxy does not tunnel to port {port}: the setting"
                                     " [proxy] connect_ports does not list it.", refusal="port")
        elif not self._http_ports[port]:
            raise HTTPError(403, f"This proxy does not forward requests to port {port}: the"
                                 " setting [proxy] http_ports does not list it.", refusal="port")

    def _resolve(self, name: str, port: int, whose: str) -> Sequence[SocketAddress]:
        try:
            addresses = self._resolver(name, port)
        except (OSError, UnicodeError):
            addresses = ()
        if not addresses:
            raise HTTPError(502, f"The {whose} name could not be resolved.",
                            failure="dns_failed")
        return addresses


def _literal(name: str) -> Optional[SocketAddress]:
    """The address a canonical host that is an IP literal stands for, else None."""
    try:
        address = parse_address(name)
    except ValueError:
        return None
    return ((socket.AF_INET6, (name, 0, 0, 0)) if address.version == 6
            else (socket.AF_INET, (name, 0)))


def _blacklisted(destination: object) -> HTTPError:
    """The refusal of a destination (a name or an address) the blacklist lists."""
    return HTTPError(403, f"This proxy does not connect to {destination}: the proxy's blacklist"
                          " ([proxy] blacklist, blacklist_file) lists it.", refusal="blacklist")


def _not_allowed() -> HTTPError:
    return HTTPError(403, "This proxy reaches only the destinations on its allow-list.",
                     refusal="not_allowed")
