"""Origins (RFC 6454): the ``scheme://host[:port]`` that CORS and same-origin checks compare."""

from __future__ import annotations

import re

from nex.http.grammar import DEFAULT_PORTS, ipv6_address, is_hostname

# RFC 6454 §6.2: the serialisation of an origin is scheme "://" host [ ":" port ], scheme
# and host in lower case and the port left out when it is the scheme's default.
_ORIGIN = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[0-9a-f:.]+\]|[^/:?#\[\]@]+)"
                     r"(?::(?P<port>[0-9]{1,5}))?")
_IPV4 = re.compile(r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
                   r"(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}")


def normalise_origin(text: str) -> str:
    """``text`` as browsers send it in ``Origin``: ``scheme://host[:port]``, lower case.

    The host is a DNS name (non-ASCII names in their ``xn--`` form), an IPv4 address or an
    IPv6 address in brackets (written back compressed); a port that is the scheme's default
    (80 for http, 443 for https) is dropped, so ``https://App.Example:443`` becomes
    ``https://app.example``.  Raises ``ValueError`` saying what is wrong: a path, a trailing
    ``/``, a user name, a port out of range, ``null``.
    """
    match = _ORIGIN.fullmatch(text.lower())
    if match is None:
        raise ValueError(f"{text!r} is not an origin such as https://app.example or "
                         "http://localhost:3000 (scheme://host[:port], nothing after)")
    scheme, host, port = match.group("scheme", "host", "port")
    if host.startswith("["):
        compressed = ipv6_address(host[1:-1])
        if compressed is None:
            raise ValueError(f"{text!r} has a malformed IPv6 address")
        host = f"[{compressed}]"
    elif not (_IPV4.fullmatch(host) or is_hostname(host)):
        raise ValueError(f"{text!r} has a malformed host name or IPv4 address")
    if port is not None:
        number = int(port)
        if not 1 <= number <= 65535:
            raise ValueError(f"{text!r} has a port outside 1 to 65535")
        if DEFAULT_PORTS.get(scheme) != number:
            return f"{scheme}://{host}:{number}"
    return f"{scheme}://{host}"
