"""Routing: a parsed request through the host check, the login and the resolver to its handler.

This is the part of a worker's path that works on plain values only: a :class:`Request`
(and the :class:`BodyReader` of its body) comes in, a :class:`Response` goes out, or an
``HTTPError`` rises, which :meth:`Dispatcher.error_response` turns into the rendered error
page.  It never sees the socket.  With the forward proxy on, requests meant for it (CONNECT,
absolute-form for another host; see :meth:`nex.proxy.handler.ForwardProxy.claims`) go to it first,
before any of the file server's checks.  The others run in this order: Host (``403``), a
CORS preflight (``204``), login for a protected path (``429``, ``401``), method (``405``,
``501``), then the resolver and handler.

Cross-origin rules (:mod:`nex.site.cors`) are applied here, in :meth:`Dispatcher.respond`, to
every answer of the file server: content, redirects and errors alike, so a web page on an
allowed origin can read a 404 as well as a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Tuple

from nex.site.login import SiteAuth
from nex.files.archive import folder_archive, wants_archive
from nex.http.body import BodyReader
from nex.site.cors import CorsPolicy
from nex.http.errors import HTTPError
from nex.files.filecache import SmallFileCache
from nex.site.clients import ForwardedFor
from nex.http.grammar import CACHE_DIRECTIVE, parse_list
from nex.site.hosts import HostValidator
from nex.files.listing import render_listing
from nex.http.request import Request
from nex.files.paths import resolve
from nex.http.response import Response
from nex.files.static import serve_file
from nex.files.templates import TemplateSet
from nex.files.upload import UPLOAD_FORM, allowed_methods, post_form, put_file
from nex.files.resumable import is_resumable, resumable_upload
from nex.files.uploadpage import UploadPage
from nex.files.davwrite import destination_path
from nex.files.webdav import WebDav

if TYPE_CHECKING:
    from nex.process.config import Config
    from nex.proxy.handler import ForwardProxy

#: The methods Nex serves for files and folders; with uploads on, PUT and POST too.
SERVED_METHODS = ("GET", "HEAD", "OPTIONS")
_ALLOW = ", ".join(SERVED_METHODS)
#: Methods RFC 9110 defines that Nex knows but does not serve: 405, not 501.
_KNOWN_METHODS = frozenset({"POST", "PUT", "DELETE", "CONNECT", "TRACE", "PATCH"})
_HTML = ("Content-Type", "text/html; charset=utf-8")
#: Directives that would let a shared cache give one user's response to another
#: (RFC 9111 §3.5).
_SHARED_CACHE_GRANTS = frozenset({"public", "s-maxage"})


def private_cache_control(value: Optional[str]) -> str:
    """The ``Cache-Control`` for a response that needed a login, from the one it had.

    RFC 9111 §3.5 lets a shared cache reuse a response to a request with ``Authorization``
    for other requests when the response says ``public`` or ``s-maxage``.  Those go, and an
    unqualified ``private`` (§5.2.2.7: no shared cache may store it) comes first, unless the
    response already says ``private`` or ``no-store``, which keeps it out of every cache.
    The rest of the policy (``no-cache``, ``max-age``) stays for the browser's own cache.
    A value that is not a directive list becomes ``private, no-cache``.
    """
    if value is None or not value.strip(" \t"):
        return "private"
    directives = parse_list(value.strip(" \t"), CACHE_DIRECTIVE)
    if directives is None:
        return "private, no-cache"
    kept = [match.group() for match in directives
            if match.group().partition("=")[0].lower() not in _SHARED_CACHE_GRANTS]
    if not any(directive.lower() in ("private", "no-store") for directive in kept):
        kept.insert(0, "private")
    return ", ".join(kept)


def _private(headers: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """``headers`` with their Cache-Control fields made one private one, in the first's place."""
    values = [value for name, value in headers if name.lower() == "cache-control"]
    field = ("Cache-Control", private_cache_control(", ".join(values) if values else None))
    result: List[Tuple[str, str]] = []
    placed = False
    for name, value in headers:
        if name.lower() != "cache-control":
            result.append((name, value))
        elif not placed:
            result.append(field)
            placed = True
    if not placed:
        result.append(field)
    return result


@dataclass(frozen=True)
class Dispatcher:
    """Answers requests for one served site; every worker thread shares it.

    It holds what answering needs: the settings, the page templates and the ``signature``
    line they show, the Host rules, the small-file cache, the trusted proxies whose
    X-Forwarded-For names the client in the log, the login for protected paths (None: no
    login), the CORS policy (None: no CORS), the forward proxy (None: proxy mode off),
    WebDAV with the listing's file management (None: off), and the upload panel's script
    (None: listings show the plain form alone).
    """

    config: Config
    templates: TemplateSet
    hosts: HostValidator
    signature: str
    file_cache: Optional[SmallFileCache] = None
    forwarded: Optional[ForwardedFor] = None
    auth: Optional[SiteAuth] = None
    cors: Optional[CorsPolicy] = None
    proxy: Optional[ForwardProxy] = None
    dav: Optional[WebDav] = None
    upload_page: Optional[UploadPage] = None

    def respond(self, request: Request, body: Optional[BodyReader], client: str, *,
                peer: Optional[str] = None, local_address: Optional[str] = None) -> Response:
        """The response to ``request``, or an ``HTTPError`` describing the refusal.

        ``body`` reads the request's body, None when it has none; a handler that does not
        read it leaves the connection to discard it.  ``client`` is the address the request
        comes from (behind trusted proxies, the one they forwarded for): failed logins count
        per client.  The response, or the refusal, names the user who logged in, if any;
        a response for a logged-in user is marked private for caches.  With a CORS policy, a
        preflight from an allowed origin is answered ``204`` for any path (the request it
        announces gets the real status), and every response and refusal carries the policy's
        fields.

        A request for the proxy is answered by it alone, its admission checks judging the
        connection's ``peer`` (``client`` when None) and ``local_address``, the address of
        Nex the client reached.
        """
        proxy = self.proxy
        if proxy is not None and proxy.claims(request, local_address):
            return proxy.respond(request, body, client if peer is None else peer,
                                 local_address)
        cors = self.cors
        user = None
        try:
            self.hosts.check(request.host)
            if cors is not None:
                preflight = cors.preflight(request)
                if preflight is not None:
                    return Response(204, [("Allow", _ALLOW), *preflight])
            auth = self.auth
            # The asterisk-form and the authority-form have no path to protect.
            protected = (auth is not None and request.path != ""
                         and (auth.protects(request.path) or self._writes_protected(request)))
            # A CORS preflight never carries credentials (Fetch standard), so OPTIONS is
            # answered without a login; under a protected prefix it does not look at the disk.
            if protected and request.method != "OPTIONS":
                user = auth.login(request.headers.get("Authorization"), client)
            response = self._serve(request, body, protected)
        except HTTPError as error:
            error.user = user
            if cors is not None:
                error.headers = tuple(cors.add_headers(request, error.headers))
            raise
        if user is not None:
            response.user = user
            response.headers = _private(response.headers)
        if cors is not None:
            response.headers = cors.add_headers(request, response.headers)
        return response

    def _serve(self, request: Request, body: Optional[BodyReader],
               protected: bool) -> Response:
        """The answer of the method's handler once the request may be served."""
        method = request.method
        config = self.config
        dav = self.dav
        if config.upload and is_resumable(request):
            if dav is not None and dav.writable and method in ("PUT", "POST", "PATCH"):
                dav.guard_put(request)
            return resumable_upload(request, body, config, self._may)
        if dav is not None and method in dav.methods:
            return dav.respond(request, body, self._may)
        if config.upload and method == "PUT":
            if dav is not None and dav.writable:
                dav.guard_put(request)
            return put_file(request, body, config)
        if config.upload and method == "POST":
            return post_form(request, body, config)
        if method not in SERVED_METHODS:
            if method in _KNOWN_METHODS or (dav is not None and method in dav.known_methods):
                raise HTTPError(405, f"{method} is not supported here.",
                                headers=[("Allow", self._allow(request.path))])
            raise HTTPError(501, "The request method is not implemented by this server.")
        if method == "OPTIONS":
            if request.target != "*" and not protected:
                resolve(request.path, request.query, config)  # a missing path is still 404
            dav_fields = self.dav.options_headers() if self.dav is not None else []
            return Response(204, [("Allow", self._allow(request.path)), *dav_fields])
        page = self.upload_page
        if page is not None and page.claims(request):
            return page.serve(request)
        target = resolve(request.path, request.query, config)
        if target.kind == "directory":
            if wants_archive(request.query):
                return folder_archive(target, config)
            form = "" if not config.upload else (
                UPLOAD_FORM if page is None else page.form(config))
            return render_listing(target, request, self.templates, self.signature, config,
                                  upload_form=form)
        return serve_file(request, target, config, self.file_cache)

    def _writes_protected(self, request: Request) -> bool:
        """Whether a COPY or MOVE writes under a protected prefix: its Destination needs
        the login that its own path would."""
        if self.dav is None or request.method not in self.dav.methods:
            return False
        destination = destination_path(request)
        return destination is not None and self.auth.protects(destination)

    def _may(self, action: str, url_path: str, real_path: str) -> bool:
        """The access checker handlers are given: whether ``action`` (read, list, archive,
        write) is allowed on ``url_path`` (``real_path`` on disk).  Today's rules are the same
        for every path and user: reading what the resolver serves, listing with ``[files]
        listing``, archives with ``zip_download``, writing with ``upload``."""
        config = self.config
        return {"read": True, "list": config.listing, "archive": config.zip_download,
                "write": config.upload}[action]

    def _allow(self, path: str) -> str:
        """The ``Allow`` value for the address ``path`` (empty for ``*``): the served
        methods, and with uploads on PUT for a file's address, POST for a folder's."""
        methods = allowed_methods(path) if self.config.upload else SERVED_METHODS
        return ", ".join(methods + (self.dav.methods if self.dav is not None else ()))

    def error_response(self, error: HTTPError) -> Response:
        """The page for ``error``: the one way every error reply is made."""
        page = self.templates.render_error(error, self.signature)
        return Response(error.status, [_HTML, *error.headers], (page,), close=error.close,
                        user=error.user)
