"""Routing: a parsed request through the host validator and resolver to its handler.

This is the part of a worker's path that works on plain values only: a :class:`Request`
comes in, a :class:`Response` goes out, or an ``HTTPError`` rises for the connection loop to
render.  It never sees the socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nex.config import Config
from nex.errors import HTTPError
from nex.filecache import SmallFileCache
from nex.forwarded import ForwardedFor
from nex.hosts import HostValidator
from nex.listing import render_listing
from nex.request import Request
from nex.resolver import resolve
from nex.response import Response
from nex.static import serve_file
from nex.templates import TemplateSet

#: The methods Nex serves for files and folders.
SERVED_METHODS = ("GET", "HEAD", "OPTIONS")
_ALLOW = ", ".join(SERVED_METHODS)
#: Methods RFC 9110 defines that Nex knows but does not serve: 405, not 501.
_KNOWN_METHODS = frozenset({"POST", "PUT", "DELETE", "CONNECT", "TRACE", "PATCH"})


@dataclass(frozen=True)
class Site:
    """What every worker shares: settings, templates, host rules, signature, file cache, and
    the trusted proxies whose X-Forwarded-For names the client."""

    config: Config
    templates: TemplateSet
    hosts: HostValidator
    signature: str
    file_cache: Optional[SmallFileCache] = None
    forwarded: Optional[ForwardedFor] = None


def respond(request: Request, site: Site) -> Response:
    """The response to ``request``, or an ``HTTPError`` describing the refusal."""
    site.hosts.check(request.host)
    method = request.method
    if method not in SERVED_METHODS:
        if method in _KNOWN_METHODS:
            raise HTTPError(405, f"{method} is not supported here.", headers=[("Allow", _ALLOW)])
        raise HTTPError(501, "The request method is not implemented by this server.")
    if method == "OPTIONS":
        if request.target != "*":
            resolve(request.path, request.query, site.config)  # a missing path is still 404
        return Response(204, [("Allow", _ALLOW)])
    target = resolve(request.path, request.query, site.config)
    if target.kind == "directory":
        return render_listing(target, request, site.templates, site.signature,
                              show_dotfiles=site.config.dotfiles,
                              mime_types=site.config.mime_types)
    return serve_file(request, target, site.config, site.file_cache)
