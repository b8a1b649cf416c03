"""The checks every request that writes passes: sent by Nex's own pages, for a Host DNS
rebinding cannot forge.

A browser sends a form POST (or, from a script, a PUT) to any server a page names, with
the visitor's credentials.  :meth:`WriteGuard.check` refuses such a request (``403``) when

* ``Sec-Fetch-Site`` is ``cross-site`` (Fetch Metadata: the browser says another site made
  it);
* ``Origin`` (RFC 6454 §7) is present and is not Nex's own origin, scheme included:
  ``https://host`` is another origin than a plain-HTTP Nex at ``http://host``, and
  ``null`` (a sandboxed page, a local file) is never Nex's;
* ``Origin`` is absent and ``Referer`` names a page of another origin.

A request with neither (curl, scripts) is not a browser's cross-site request and passes.

DNS rebinding: with ``allowed_hosts = *`` any name is served, so a page at
``attacker.example`` that rebinds its name to Nex's address is same-origin with itself.
Writes are therefore taken only for a Host that names Nex beyond doubt: an IP literal,
``localhost``, ``server_name``, or a name listed exactly (no ``*``) in ``allowed_hosts``.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Optional

from nex.http.errors import HTTPError
from nex.http.grammar import split_host
from nex.http.origin import normalise_origin
from nex.http.request import Request


class WriteGuard:
    """Same-origin and Host checks for writes (see the module).

    ``scheme`` is how clients reach Nex (``http`` or ``https``); ``names`` are the host
    names writes are taken for besides IP literals and ``localhost``: ``server_name`` and
    the exact names of ``allowed_hosts`` (patterns with ``*`` are left out).
    """

    def __init__(self, scheme: str, names: Iterable[str]) -> None:
        self._scheme = scheme
        self._names = frozenset(name.lower().rstrip(".") for name in names
                                if "*" not in name) | {"localhost"}

    @classmethod
    def from_config(cls, config) -> "WriteGuard":
        """The guard for ``config``: its scheme (TLS or not), ``server_name`` and the exact
        names of ``allowed_hosts``, each without a port."""
        names = [config.server_name]
        for pattern in config.allowed_hosts:
            parsed = split_host(pattern)
            if parsed is not None:
                names.append(parsed[0])
        return cls("https" if config.tls_certificate else "http", names)

    def check(self, request: Request) -> None:
        """Raise ``HTTPError(403)`` unless ``request`` may write (see the module)."""
        self._check_host(request.host)
        headers = request.headers
        if (headers.get("Sec-Fetch-Site") or "").lower() == "cross-site":
            raise _cross_site()
        own = self._own_origin(request.host)
        origin = headers.get("Origin")
        if origin is not None:
            if not _is_own(origin, own):
                raise _cross_site()
            return
        referer = headers.get("Referer")
        if referer is not None and not _is_own(_referer_origin(referer), own):
            raise _cross_site()

    def _check_host(self, host: str) -> None:
        """Refuse a Host that DNS rebinding could have pointed at Nex."""
        parsed = split_host(host) if host else None
        if parsed is not None:
            name = parsed[0]
            if name in self._names:
                return
            try:
                ipaddress.ip_address(name)
                return
            except ValueError:
                pass
        raise HTTPError(403, "Uploads are taken only for a Host that is an IP address, "
                             "localhost, [server] server_name, or a name listed in "
                             "[server] allowed_hosts (without *).")

    def _own_origin(self, host: str) -> Optional[str]:
        """Nex's origin as the request reached it."""
        return _origin_of(f"{self._scheme}://{host}")


def _origin_of(text: str) -> Optional[str]:
    """``text`` as a normalised origin, None when it is not one (``null`` among them)."""
    try:
        return normalise_origin(text)
    except ValueError:
        return None


def _is_own(text: str, own: Optional[str]) -> bool:
    """Whether ``text`` names Nex's origin ``own``; never when Nex has none for the Host it
    was reached by (``127.0.0.1:`` or port 0), which would match every text that is no
    origin, ``null`` among them."""
    return own is not None and _origin_of(text) == own


def _referer_origin(referer: str) -> str:
    """The ``scheme://authority`` part of a Referer URL (what is left when it has none)."""
    scheme, separator, rest = referer.partition("://")
    if not separator:
        return referer
    for end in "/?#":
        rest = rest.partition(end)[0]
    return f"{scheme}://{rest}"


def _cross_site() -> HTTPError:
    return HTTPError(403, "Uploads from pages of other sites are refused.")
