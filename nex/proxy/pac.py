"""The proxy auto-config file (PAC) that ``[proxy] pac = yes`` serves at ``/proxy.pac``.

A PAC file is a JavaScript function, ``FindProxyForURL(url, host)``, that browsers and
operating systems fetch to learn which proxy to use.  Nex's sends plain names (no dot),
``localhost`` and loopback addresses directly, and everything else through Nex, at the
host and port the client reached it by.
"""

from __future__ import annotations

from typing import Optional

from nex.http.grammar import split_host

#: Where the PAC file is served.
PAC_PATH = "/proxy.pac"
#: The media type of PAC files (also in :mod:`nex.files.mediatypes` for ``.pac`` files).
PAC_TYPE = "application/x-ns-proxy-autoconfig"

_SCRIPT = """function FindProxyForURL(url, host) {
    if (isPlainHostName(host) || host === "localhost" || shExpMatch(host, "127.*")
            || host === "::1" || host === "[::1]") {
        return "DIRECT";
    }
    return "PROXY %s; DIRECT";
}
"""


def proxy_address(host_field: str, fallback: str, listen_port: int) -> str:
    """``host:port`` of Nex as a client names it: the host and port of its ``Host`` field
    (the port Nex listens on when it has none), or ``fallback`` when that is no valid host.

    Only a host the grammar accepts (letters, digits, dots, hyphens, an IP literal) is taken,
    so nothing a client sends can change the script's code.
    """
    parsed: Optional[tuple] = split_host(host_field) if host_field else None
    host, port = parsed if parsed is not None else (fallback, None)
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port or listen_port}"


def pac_script(address: str) -> bytes:
    """The PAC file sending every request but local ones through the proxy at ``address``."""
    return (_SCRIPT % address).encode("ascii")
