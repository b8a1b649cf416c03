"""Routing: a parsed request through the host check, the login and the resolver to its handler.

This is the part of a worker's path that works on plain values only: a :class:`Request`
(and the :class:`BodyReader` of its body) comes in, a :class:`Response` goes out, or an
``HTTPError`` rises, which :meth:`Dispatcher.error_response` turns into the rendered error
page.  It never sees the socket.  With the forward proxy on, requests meant for it (CONNECT,
absolute-form for another host; see :meth:`nex.proxy.handler.ForwardProxy.claims`) go to it first,
before any of the file server's checks.  The others run in this order: Host (``403``), a
CORS preflight (``204``), for a method in :data:`WRITE_METHODS` the same-origin and Host
checks (``403``), login for a protected path (``429``, ``401``), method (``405``, ``501``),
then the resolver and handler.  The handler asks the access policy (:mod:`nex.site.access`)
for every entry it touches, through a checker with the user bound; where the request's own
target is refused, an anonymous client is asked to log in (``401``), others get ``403``.
Resumable uploads (:mod:`nex.files.resumable`) and the WebDAV methods
(:mod:`nex.files.webdav`) are handlers like the others: they get the same checker and the
path decoded here, and those that write have passed the same-origin and Host checks.

Cross-origin rules (:mod:`nex.site.cors`) are applied here, in :meth:`Dispatcher.respond`, to
every answer of the file server: content, redirects and errors alike, so a web page on an
allowed origin can read a 404 as well as a file.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple, Union

from nex.site.login import SiteAuth
from nex.files.archive import ZipSlots, folder_archive, wants_archive
from nex.http.body import BodyReader
from nex.site.cors import CorsPolicy
from nex.http.errors import HTTPError
from nex.files.filecache import SmallFileCache
from nex.files.opencache import OpenFileCache
from nex.site.clients import ForwardedFor
from nex import SERVER_SOFTWARE, qrcode
from nex.http.grammar import CACHE_DIRECTIVE, parse_list, split_host
from nex.site.hosts import HostValidator
from nex.files.listing import render_listing
from nex.http.negotiation import error_form
from nex.http.request import Request
from nex.files.misses import MissCache
from nex.files.paths import (Refused, find_target, real_path, refuse_along, resolve_segments,
                             split_path)
from nex.site.access import AccessPolicy, Checker
from nex.site.sameorigin import WriteGuard
from nex.http.response import Response
from nex.files.search import search_folder, search_term
from nex.files.static import FileKind, remembered_kinds, serve_file
from nex.files.templates import TemplateSet
from nex.files.upload import UPLOAD_FORM, allowed_methods, put_file
from nex.files.uploadform import post_form
from nex.files.resumable import is_resumable, resumable_upload
from nex.files.uploadpage import UploadPage
from nex.files.webdav import WRITE_METHODS as DAV_WRITE_METHODS, WebDav

if TYPE_CHECKING:
    from nex.process.config import Config
    from nex.proxy.handler import ForwardProxy

#: The methods Nex serves for files and folders; with uploads on, PUT and POST too.
SERVED_METHODS = ("GET", "HEAD", "OPTIONS")
_ALLOW = ", ".join(SERVED_METHODS)
#: Methods that change what is stored: each must come from Nex's own pages, for a Host that
#: DNS rebinding cannot forge (:class:`nex.site.sameorigin.WriteGuard`), whatever answers it:
#: the uploads' and every WebDAV method that writes.
WRITE_METHODS = frozenset({"PUT", "POST", "PATCH", *DAV_WRITE_METHODS})
#: Methods RFC 9110 defines that Nex knows but does not serve: 405, not 501.
_KNOWN_METHODS = frozenset({"POST", "PUT", "DELETE", "CONNECT", "TRACE", "PATCH"})
#: The robots.txt served where the document root has none: crawlers may fetch every page
#: but none with a query (RFC 9309 §2.2.3), so that mirrors skip the listings' sorted copies
#: and folder downloads.
ROBOTS_TXT = b"User-agent: *\nDisallow: /*?\n"
_ROBOTS_TYPE = ("Content-Type", "text/plain; charset=utf-8")
#: The Content-Type of each form an error reply takes (see error_form).
_ERROR_TYPES = {"html": ("Content-Type", "text/html; charset=utf-8"),
                "json": ("Content-Type", "application/json"),
                "text": ("Content-Type", "text/plain; charset=utf-8")}
_VARY_ACCEPT = ("Vary", "Accept")
#: The fields of an error reply in each form when the error adds none (one tuple each, so
#: the writer makes their lines once: :func:`~nex.http.response.field_lines`).
_ERROR_FIELDS = {form: (field, _VARY_ACCEPT) for form, field in _ERROR_TYPES.items()}
#: Directives that would let a shared cache give one user's response to another
#: (RFC 9111 §3.5).
_SHARED_CACHE_GRANTS = frozenset({"public", "s-maxage"})
#: How many Host values a dispatcher remembers the footer line of.
HOST_SIGNATURES = 64


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


def _private(headers: Sequence[Tuple[str, str]]) -> List[Tuple[str, str]]:
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
    line they show (``port``: the port in it), the Host rules, the small-file cache, the
    open-file cache, the paths recently found missing, the trusted proxies whose
    X-Forwarded-For names the client in the log, the login for protected paths (None: no
    login), the CORS policy (None: no CORS), the forward proxy (None: proxy mode off),
    WebDAV with the listing's file management (None: off), and the upload panel's script
    (None: listings show the plain form alone).  From these it makes the access policy
    every handler asks (:mod:`nex.site.access`), the checks of requests that write
    (:mod:`nex.site.sameorigin`), the folder-download slots and the table of the files'
    types and caching fields (:func:`nex.files.static.remembered_kinds`).
    """

    config: Config
    templates: TemplateSet
    hosts: HostValidator
    signature: str
    file_cache: Optional[SmallFileCache] = None
    open_files: Optional[OpenFileCache] = None
    misses: Optional[MissCache] = None
    forwarded: Optional[ForwardedFor] = None
    auth: Optional[SiteAuth] = None
    cors: Optional[CorsPolicy] = None
    proxy: Optional[ForwardProxy] = None
    dav: Optional[WebDav] = None
    upload_page: Optional[UploadPage] = None
    #: The port Nex listens on, shown in a footer when the Host names none.
    port: int = 0
    #: With a wildcard bind, an address of this machine other devices can reach: the QR
    #: code of a page reached on loopback shows it instead.
    lan_address: str = ""
    access: AccessPolicy = field(init=False)
    writes: WriteGuard = field(init=False)
    zip_slots: ZipSlots = field(init=False)
    _anonymous: Checker = field(init=False, repr=False)
    _anonymous_resolving: Optional[Checker] = field(init=False, repr=False)
    _host_signature: Callable[[str], str] = field(init=False, repr=False)
    _file_kinds: Callable[[str], FileKind] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Built from the settings and the login, so every way of making a Dispatcher has
        # the one policy they define.
        config = self.config
        object.__setattr__(self, "access", AccessPolicy(
            None if self.auth is None else self.auth.protected, config.document_root,
            config.upload))
        object.__setattr__(self, "writes", WriteGuard.from_config(config))
        object.__setattr__(self, "zip_slots", ZipSlots(config.max_concurrent_zips))
        object.__setattr__(self, "_file_kinds", remembered_kinds(config))
        # Most requests are anonymous: their checker, and what the resolver asks, are made
        # once.
        anonymous = self.access.checker(None)
        object.__setattr__(self, "_anonymous", anonymous)
        object.__setattr__(self, "_anonymous_resolving",
                           None if self.access.opens_everything_to(None) else anonymous)
        object.__setattr__(self, "_host_signature",
                           functools.lru_cache(maxsize=HOST_SIGNATURES)(self._signature_at))

    def respond(self, request: Request, body: Optional[BodyReader], client: str, *,
                peer: Optional[str] = None, local_address: Optional[str] = None) -> Response:
        """The response to ``request``, or an ``HTTPError`` describing the refusal (but a
        GET's or HEAD's 404, which comes as its :meth:`error_response`, nothing raised).

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
            if request.method in WRITE_METHODS:
                self.writes.check(request)
            # The asterisk-form and the authority-form have no path: nothing to decode.
            path = split_path(request.path) if request.path else None
            auth = self.auth
            if auth is None:
                response = self._serve(request, body, path, False, None, client)
            else:
                # A CORS preflight never carries credentials (Fetch standard), so OPTIONS is
                # answered without a login; under a protected prefix it does not look at the
                # disk.
                protected = path is not None and auth.covers(path[0])
                authorization = request.headers.get("Authorization")
                if protected and request.method != "OPTIONS":
                    user = auth.login(authorization, client)
                elif authorization is not None:
                    user = auth.identify(authorization, client)
                try:
                    response = self._serve(request, body, path, protected, user, client)
                except Refused:
                    if user is None:
                        raise auth.refusal(authorization, client) from None
                    raise
        except HTTPError as error:
            self._mark_error(error, request, user)
            raise
        if isinstance(response, HTTPError):  # the resolver's 404, returned rather than raised
            self._mark_error(response, request, user)
            return self.error_response(response, request)
        if user is not None:
            response.user = user
            response.headers = _private(response.headers)
        if cors is not None:
            response.headers = cors.add_headers(request, response.headers)
        return response

    def _mark_error(self, error: HTTPError, request: Request, user: Optional[str]) -> None:
        """Give ``error`` the user who logged in and, with a CORS policy, its fields."""
        error.user = user
        if self.cors is not None:
            error.headers = tuple(self.cors.add_headers(request, error.headers))

    def _serve(self, request: Request, body: Optional[BodyReader],
               path: Optional[Tuple[List[str], bool]], protected: bool,
               user: Optional[str], client: str) -> Union[Response, HTTPError]:
        """The answer of the method's handler once the request may be served; ``path`` is
        the request path decoded (None for ``*``), ``user`` who logged in (None: nobody),
        ``client`` the address it comes from.  The resolver's 404 for a GET or HEAD is
        returned as it is, not raised (:func:`~nex.files.paths.find_target`)."""
        method = request.method
        config = self.config
        # The resolver asks only to read and list: with nothing refused, it skips looking
        # up the real paths it would ask about (a missing path's costs a realpath).
        if user is None:
            may, resolving = self._anonymous, self._anonymous_resolving
        else:
            may = self.access.checker(user)
            resolving = None if self.access.opens_everything_to(user) else may
        dav = self.dav
        if config.upload or dav is not None:  # the handlers that write or speak WebDAV
            resumable = config.upload and is_resumable(request)
            if resolving is not None and path is not None and (
                    resumable or method not in SERVED_METHODS):
                # Before any of them answers what is there: the path may pass a protected
                # folder, through links, whatever it leads to (GET's resolver asks alike).
                refuse_along(path[0], "/" + "/".join(path[0]), config, resolving, "read")
            if resumable:
                if dav is not None and dav.writable and method in ("PUT", "POST", "PATCH"):
                    dav.guard_put(request, path[0])
                return resumable_upload(request, body, config, may, path,
                                        None if dav is None else dav.hold(request, path[0][:-1]))
            if dav is not None and method in dav.methods:
                return dav.respond(request, body, may, path, client)
            if config.upload and method == "PUT":
                if dav is not None and dav.writable:
                    dav.guard_put(request, path[0])
                return put_file(request, body, config, may, path,
                                None if dav is None else dav.hold(request, path[0][:-1]))
            if config.upload and method == "POST":
                return post_form(request, body, config, may, path,
                                 None if dav is None else dav.form_guard(request, path[0]),
                                 None if dav is None else dav.hold(request, path[0]))
        if method not in SERVED_METHODS:
            if method in _KNOWN_METHODS or (dav is not None and method in dav.known_methods):
                raise HTTPError(405, f"{method} is not supported here.",
                                headers=[("Allow", self._allow(path))])
            raise HTTPError(501, "The request method is not implemented by this server.")
        if method == "OPTIONS":
            if path is not None and not protected:
                # A missing path is still 404.
                resolve_segments(path[0], path[1], request.query, config, resolving,
                                 self.misses)
            dav_fields = dav.options_headers() if dav is not None else []
            return Response(204, [("Allow", self._allow(path)), *dav_fields])
        page = self.upload_page
        if page is not None and page.claims(request):
            return page.serve(request)
        target = find_target(path[0], path[1], request.query, config, resolving, self.misses)
        if isinstance(target, HTTPError):  # 404
            if request.path == "/robots.txt":
                return Response(200, [_ROBOTS_TYPE], (ROBOTS_TXT,))
            return target
        if target.kind == "directory":
            # The resolver asked whether the folder may be listed.
            if wants_archive(request.query):
                if not may("archive", target.url_path, real_path(target.fs_path, config)):
                    raise Refused()
                return folder_archive(target, config, may, self.zip_slots)
            if request.query == "qr":
                return self._qr_code(request)
            signature = self.signature_for(request)
            term = search_term(request.query)
            if term is not None:
                return search_folder(target, request, term, self.templates, signature, config,
                                     may)
            form = "" if not config.upload else (
                UPLOAD_FORM if page is None else page.form(config))
            return render_listing(target, request, self.templates, signature, config,
                                  upload_form=form, may=may, viewer=user)
        return serve_file(request, target, config, self.file_cache, may, self.open_files,
                          self._file_kinds)

    def _qr_code(self, request: Request) -> Response:
        """``FOLDER/?qr``: the QR code of the folder's address, as an SVG image; on loopback,
        of its address on the LAN when there is one.  501 without segno."""
        port = self.port or self.config.port
        authority = request.host or f"{self.config.server_name}:{port}"
        parsed = split_host(authority)
        if self.lan_address and parsed is not None and (
                parsed[0] == "localhost" or parsed[0] in ("127.0.0.1", "::1")):
            lan = self.lan_address
            authority = f"[{lan}]:{port}" if ":" in lan else f"{lan}:{port}"
        scheme = "https" if self.config.tls_certificate else "http"
        image = qrcode.svg(f"{scheme}://{authority}{request.path}")
        if image is None:
            raise HTTPError(501, f"{qrcode.INSTALL_HINT}.")
        return Response(200, [("Content-Type", "image/svg+xml"), ("Cache-Control", "no-store")],
                        (image,))

    def _allow(self, path: Optional[Tuple[List[str], bool]]) -> str:
        """The ``Allow`` value for the decoded address ``path`` (None for ``*``): the served
        methods, with uploads on PUT for a file's address, POST for a folder's, and the
        WebDAV methods served."""
        dav = self.dav
        if not self.config.upload and dav is None:
            return _ALLOW
        methods = (allowed_methods(None if path is None else path[1]) if self.config.upload
                   else SERVED_METHODS)
        return ", ".join(methods + (dav.methods if dav is not None else ()))

    def signature_for(self, request: Optional[Request]) -> str:
        """The footer line of a page answering ``request``: the host and port the client
        used, when its Host is one this site serves; else the configured server name (also
        for absolute-form and CONNECT targets, whose authority may be another server's)."""
        if request is None or not request.target.startswith("/") or not request.host:
            return self.signature
        return self._host_signature(request.host)

    def _signature_at(self, host: str) -> str:
        """:meth:`signature_for` a request whose Host is ``host``.  Remembered for the last
        :data:`HOST_SIGNATURES` hosts: it follows from the host and this dispatcher's
        settings alone, and clients send few."""
        if not self.hosts.allows(host):
            return self.signature
        parsed = split_host(host)
        if parsed is None:
            return self.signature
        name, port = parsed
        if port is None:
            port = self.port or self.config.port
        shown = f"[{name}]" if ":" in name else name
        return f"{SERVER_SOFTWARE} Server at {shown} Port {port}"

    def error_response(self, error: HTTPError, request: Optional[Request] = None) -> Response:
        """The reply for ``error``: the one way every error reply is made.

        Suited to the client of ``request`` (None: a request that could not be read, which
        gets the page): the page for browsers, JSON when asked for, else one line of text.
        """
        if request is None:
            page = self.templates.render_error(error, self.signature)
            return Response(error.status, [_ERROR_TYPES["html"], *error.headers], (page,),
                            close=error.close, user=error.user, refusal=error.refusal,
                            failure=error.failure)
        form = error_form(request.headers.get("Accept"), request.query)
        # Only the page shows the footer line, which names the host the client used.
        signature = self.signature_for(request) if form == "html" else self.signature
        body = self.templates.render_error_as(form, error, signature)
        headers: Sequence[Tuple[str, str]] = _ERROR_FIELDS[form]
        if error.headers:
            fields = [_ERROR_TYPES[form]]
            varied = False
            for name, value in error.headers:
                if name.lower() == "vary" and not varied:  # one Vary field, which Accept joins
                    value, varied = f"{value}, Accept", True
                fields.append((name, value))
            if not varied:
                fields.insert(1, _VARY_ACCEPT)
            headers = fields
        return Response(error.status, headers, (body,), close=error.close, user=error.user,
                        refusal=error.refusal, failure=error.failure)
