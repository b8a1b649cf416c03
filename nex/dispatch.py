"""Routing: a parsed request through the host validator and resolver to its handler.

This is the part of a worker's path that works on plain values only: a :class:`Request`
(and the :class:`BodyReader` of its body) comes in, a :class:`Response` goes out, or an
``HTTPError`` rises, which :meth:`Dispatcher.error_response` turns into the rendered error
page.  It never sees the socket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nex.body import BodyReader
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
from nex.upload import UPLOAD_FORM, allowed_methods, post_form, put_file

#: The methods Nex serves for files and folders; with uploads on, PUT and POST too.
SERVED_METHODS = ("GET", "HEAD", "OPTIONS")
_ALLOW = ", ".join(SERVED_METHODS)
#: Methods RFC 9110 defines that Nex knows but does not serve: 405, not 501.
_KNOWN_METHODS = frozenset({"POST", "PUT", "DELETE", "CONNECT", "TRACE", "PATCH"})
_HTML = ("Content-Type", "text/html; charset=utf-8")


@dataclass(frozen=True)
class Dispatcher:
    """Answers requests for one served site; every worker thread shares it.

    It holds what answering needs: the settings, the page templates and the ``signature``
    line they show, the Host rules, the small-file cache, and the trusted proxies whose
    X-Forwarded-For names the client in the log.
    """

    config: Config
    templates: TemplateSet
    hosts: HostValidator
    signature: str
    file_cache: Optional[SmallFileCache] = None
    forwarded: Optional[ForwardedFor] = None

    def respond(self, request: Request, body: Optional[BodyReader]) -> Response:
        """The response to ``request``, or an ``HTTPError`` describing the refusal.

        ``body`` reads the request's body, None when it has none; a handler that does not
        read it leaves the connection to discard it.
        """
        self.hosts.check(request.host)
        method = request.method
        config = self.config
        if config.upload and method == "PUT":
            return put_file(request, body, config)
        if config.upload and method == "POST":
            return post_form(request, body, config)
        if method not in SERVED_METHODS:
            if method in _KNOWN_METHODS:
                raise HTTPError(405, f"{method} is not supported here.",
                                headers=[("Allow", self._allow(request.path))])
            raise HTTPError(501, "The request method is not implemented by this server.")
        if method == "OPTIONS":
            if request.target != "*":
                resolve(request.path, request.query, config)  # a missing path is still 404
            return Response(204, [("Allow", self._allow(request.path))])
        target = resolve(request.path, request.query, config)
        if target.kind == "directory":
            return render_listing(target, request, self.templates, self.signature,
                                  show_dotfiles=config.dotfiles,
                                  upload_form=UPLOAD_FORM if config.upload else "")
        return serve_file(request, target, config, self.file_cache)

    def _allow(self, path: str) -> str:
        """The ``Allow`` value for the address ``path`` (empty for ``*``): the served
        methods, and with uploads on PUT for a file's address, POST for a folder's."""
        return ", ".join(allowed_methods(path)) if self.config.upload else _ALLOW

    def error_response(self, error: HTTPError) -> Response:
        """The page for ``error``: the one way every error reply is made."""
        page = self.templates.render_error(error, self.signature)
        return Response(error.status, [_HTML, *error.headers], (page,), close=error.close)
