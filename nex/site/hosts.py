"""The host validator: is the request's Host one this server answers for?

A server that answers any Host lets a hostile page rebind its own name to the server's
address (DNS rebinding) and read the files through the victim's browser.  Listing the names
the server is known by closes that door; ``*`` opens it again on purpose.

Patterns (from ``allowed_hosts``):

* ``*`` — any host, including none at all (an HTTP/1.0 request without Host);
* ``localhost``, ``example.com`` — that name exactly;
* ``*.example.com`` — any subdomain of example.com at any depth, not example.com itself;
* ``127.0.0.1``, ``::1``, ``[::1]`` — an IP literal (IPv6 compared by value, so ``[::0:1]``
  is ``[::1]``);
* any of the above but ``*`` followed by ``:PORT`` (``localhost:8080``, ``[::1]:8080``) —
  then the Host must carry that very port.  A pattern without a port accepts any port or none.

Names are compared without case and without one trailing dot (``example.com.`` is the
fully-qualified spelling of ``example.com``).
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Set, Tuple

from nex.http.errors import HTTPError
from nex.http.grammar import ipv6_address, split_host


def _split(value: str) -> Optional[Tuple[str, Optional[int]]]:
    """``(host, port)`` of a Host value or pattern, as :func:`nex.http.grammar.split_host` gives it.

    Several colons without brackets are an IPv6 literal as patterns may spell it, no port.
    """
    if value.count(":") > 1 and not value.startswith("["):
        host = ipv6_address(value)
        return None if host is None else (host, None)
    return split_host(value)


class HostValidator:
    """Matches Host values against the ``allowed_hosts`` patterns (see the module docstring).

    Raises ``ValueError`` naming the pattern when one is malformed, so a bad setting fails at
    start-up rather than refusing every request.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self._any = False
        # name -> ports it is allowed with; None in the set means "any port".
        self._exact: Dict[str, Set[Optional[int]]] = {}
        self._suffixes: List[Tuple[str, Optional[int]]] = []
        for pattern in patterns:
            if pattern == "*":
                self._any = True
                continue
            wildcard = pattern.startswith("*.")
            parsed = _split(pattern[2:] if wildcard else pattern)
            if parsed is None or (wildcard and parsed[0].count(":")):
                raise ValueError(f"malformed host pattern {pattern!r}")
            host, port = parsed
            if wildcard:
                self._suffixes.append(("." + host, port))
            else:
                self._exact.setdefault(host, set()).add(port)

    def allows(self, host: str) -> bool:
        """Whether a request for ``host`` (the Host value as sent, port included) is served."""
        if self._any:
            return True
        if not host:
            return False
        parsed = _split(host)
        if parsed is None:
            return False
        name, port = parsed
        ports = self._exact.get(name)
        if ports is not None and (None in ports or port in ports):
            return True
        for suffix, wanted in self._suffixes:
            if (name.endswith(suffix) and len(name) > len(suffix)
                    and (wanted is None or wanted == port)):
                return True
        return False

    def check(self, host: str) -> None:
        """Raise ``HTTPError(403)`` unless ``host`` is allowed."""
        if not self._any and not self.allows(host):
            raise HTTPError(403, "The requested host is not served here.")
