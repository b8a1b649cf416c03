"""Routing: a parsed request through the host validator and resolver to its handler.

This is the part of a worker's path that works on plain values only: a :class:`Request`
(and the :class:`BodyReader` of its body) comes in, a :class:`Response` goes out, or an
``HTTPError`` rises, which :meth:`Dispatcher.error_response` turns into the rendered error
page.  It never sees the socket.

Cross-origin rules (:mod:`nex.cors`) are applied here, in :meth:`Dispatcher.respond`, to
every answer of the file server: content, redirects and errors alike, so a web page on an
allowed origin can read a 404 as well as a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nex.archive import folder_archive, wants_archive
from nex.body import BodyReader
from nex.config import Config
from nex.cors import CorsPolicy
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
_HTML = ("Content-Type", "text/html; charset=utf-8")


@dataclass(frozen=True)
class Dispatcher:
    """Answers requests for one served site; every worker thread shares it.

    It holds what answering needs: the settings, the page templates and the ``signature``
    line they show, the Host rules, the small-file cache, the trusted proxies whose
    X-Forwarded-For names the client in the log, and the CORS policy (None: no CORS).
    """

    config: Config
    templates: TemplateSet
    hosts: HostValidator
    signature: str
    file_cache: Optional[SmallFileCache] = None
    forwarded: Optional[ForwardedFor] = None
    cors: Optional[CorsPolicy] = None

    def respond(self, request: Request, body: Optional[BodyReader]) -> Response:
        """The response to ``request``, or an ``HTTPError`` describing the refusal.

        ``body`` reads the request's body, None when it has none; a handler that does not
        read it leaves the connection to discard it.  With a CORS policy, a preflight from
        an allowed origin is answered ``204`` for any path (the request it announces gets
        the real status), and every response and refusal carries the policy's fields.
        """
        cors = self.cors
        try:
            self.hosts.check(request.host)
            if cors is not None:
                preflight = cors.preflight(request)
                if preflight is not None:
                    return Response(204, [("Allow", _ALLOW), *preflight])
            response = self._route(request)
        except HTTPError as error:
            if cors is not None:
                error.headers = tuple(cors.add_headers(request, error.headers))
            raise
        if cors is not None:
            response.headers = cors.add_headers(request, response.headers)
        return response

    def _route(self, request: Request) -> Response:
        """The handler's response to ``request`` for an allowed host."""
        method = request.method
        if method not in SERVED_METHODS:
            if method in _KNOWN_METHODS:
                raise HTTPError(405, f"{method} is not supported here.",
                                headers=[("Allow", _ALLOW)])
            raise HTTPError(501, "The request method is not implemented by this server.")
        config = self.config
        if method == "OPTIONS":
            if request.target != "*":
                resolve(request.path, request.query, config)  # a missing path is still 404
            return Response(204, [("Allow", _ALLOW)])
        target = resolve(request.path, request.query, config)
        if target.kind == "directory":
            if wants_archive(request.query):
                return folder_archive(target, config)
            return render_listing(target, request, self.templates, self.signature, config)
        return serve_file(request, target, config, self.file_cache)

    def error_response(self, error: HTTPError) -> Response:
        """The page for ``error``: the one way every error reply is made."""
        page = self.templates.render_error(error, self.signature)
        return Response(error.status, [_HTML, *error.headers], (page,), close=error.close)
