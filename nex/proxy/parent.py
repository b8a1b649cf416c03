"""The parent proxy: another HTTP proxy that Nex sends its proxied requests through.

Like squid's ``cache_peer`` with ``never_direct`` and tinyproxy's ``Upstream``, ``[proxy]
parent = http://[user:password@]host:port`` makes Nex pass every forwarded request to the
parent in absolute-form, and open every tunnel with the parent's own CONNECT.  The
credentials, when given, go to the parent as ``Proxy-Authorization: Basic`` (RFC 7617); the
client's own ``Proxy-Authorization`` is for Nex and never passed on.  ``parent_bypass``
lists the destinations reached directly instead (see :mod:`nex.proxy.admission`).
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from typing import NamedTuple, Optional

from nex.http.errors import HTTPError
from nex.proxy.blacklist import canonical_host
from nex.proxy.forwarding import split_authority

# http:// [ userinfo "@" ] host ":" port [ "/" ], the userinfo percent-encoded as in a URL.
_PARENT = re.compile(r"(?i:http)://(?:(?P<user>[^:@/]*):(?P<password>[^@/]*)@)?"
                     r"(?P<authority>[^@/]+)/?")


class Parent(NamedTuple):
    """A parent proxy: where it listens (``host`` canonical) and the ``Proxy-Authorization``
    value Nex sends it (None: no login)."""

    host: str
    port: int
    authorization: Optional[str]

    def connect_head(self, authority: str) -> bytes:
        """The head asking the parent for a tunnel to ``authority`` (``host:port``)."""
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if self.authorization is not None:
            lines.append(f"Proxy-Authorization: {self.authorization}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_parent(text: str) -> Parent:
    """The :class:`Parent` that ``http://[user:password@]host:port`` names; ``ValueError``
    saying what is wrong."""
    match = _PARENT.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a proxy address such as http://proxy.example:3128"
                         " or http://user:password@proxy.example:3128")
    try:
        host, port = split_authority(match.group("authority"), None)
        host = canonical_host(host)
    except (HTTPError, ValueError):
        raise ValueError(f"{text!r} does not name a host and a port from 1 to 65535, such"
                         " as proxy.example:3128") from None
    authorization = None
    if match.group("user") is not None:
        try:
            user = urllib.parse.unquote(match.group("user"), errors="strict")
            password = urllib.parse.unquote(match.group("password"), errors="strict")
        except UnicodeDecodeError:
            raise ValueError(f"{text!r} has a user name or password that is not UTF-8"
                             ) from None
        if not user or re.search(r"[\x00-\x1f\x7f]", user + password):
            raise ValueError(f"{text!r} needs a user name without control characters")
        credentials = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
        authorization = f"Basic {credentials}"
    return Parent(host, port, authorization)
