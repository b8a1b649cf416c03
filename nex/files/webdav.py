"""WebDAV (RFC 4918), so file managers and sync tools can mount Nex: ``[files] webdav``.

``read`` serves PROPFIND (class 1: Depth 0 and 1; ``infinity``, also a missing Depth, is
``403`` as §9.1 allows, so one request cannot walk the whole tree).  ``write`` adds
PROPPATCH, MKCOL, COPY, MOVE, DELETE, LOCK and UNLOCK (class 2: Windows Explorer and macOS
Finder write only to a server that locks), and PUT and form uploads then honour locks.
Writing also needs the access policy's ``write`` (``[files] upload``, and a login under a
protected prefix) for every entry touched, the Destination of a COPY or MOVE included; DELETE needs
``allow_delete`` and MOVE ``allow_rename``.  Like every write, the methods that change
something pass routing's same-origin and Host checks first.

A PROPFIND shows exactly what GET serves: hidden names and links the symlink policy refuses
are missing (404), a target the access policy refuses is refused as GET refuses it, and
members it may not read are left out, judged as a listing judges its entries.  The live
properties are ``resourcetype``, ``getcontentlength``, ``getcontenttype``, ``getetag``
(GET's), ``getlastmodified``, ``creationdate`` (the modification time: file systems rarely
keep another), and with locks ``supportedlock`` and ``lockdiscovery``.  Dead properties are
not kept: PROPPATCH answers ``403`` for each, and changes nothing.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union
from xml.sax.saxutils import escape

from nex.files.davlocks import (HeldLocks, Lock, LockConflict, LockTable, parse_if,
                                parse_lock_token, parse_timeout)
from nex.files.davresource import (Resource, find_segments, locate, locate_entry,
                                   locate_members, members, must_exist, parent_folder)
from nex.files.davwrite import changes, check, copy_or_move, delete, may_write, mkcol
from nex.files.davxml import (DAV, XML_TYPE, Element, multistatus, property_xml,
                              propstat_response, read_xml, status_response)
from nex.files.mediatypes import content_type, file_extension
from nex.files.paths import Checker, Refused, encode_path
from nex.files.upload import Hold, store
from nex.http.body import BodyReader
from nex.http.dates import format_http_date
from nex.http.errors import HTTPError, reason_phrase
from nex.http.request import Request
from nex.http.response import Response

if TYPE_CHECKING:
    from nex.process.config import Config

#: The WebDAV method ``webdav = read`` serves.
READ_METHODS = ("PROPFIND",)
#: The WebDAV methods ``webdav = write`` adds.
WRITE_METHODS = ("PROPPATCH", "MKCOL", "COPY", "MOVE", "DELETE", "LOCK", "UNLOCK")

_LOCK_KINDS = ("<D:lockentry><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/>"
               "</D:locktype></D:lockentry><D:lockentry><D:lockscope><D:shared/>"
               "</D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>")


class WebDav:
    """The WebDAV methods of one site: its settings and its locks, shared by its threads,
    and by every worker when ``locks`` is the supervisor's :meth:`LockTable.shared` table
    (else the locks are this process's own).

    It also serves the methods the listing's upload panel uses with uploads on, WebDAV or
    not (:attr:`methods`)."""

    def __init__(self, config: Config, locks: Optional[LockTable] = None) -> None:
        self.config = config
        self.writable = config.webdav == "write"
        self.locks = locks if locks is not None else LockTable()
        if self.writable:
            methods = READ_METHODS + WRITE_METHODS
        else:
            page = ("MKCOL",) + (("DELETE",) if config.allow_delete else ()) + (
                ("MOVE",) if config.allow_rename else ()) if config.upload else ()
            methods = (READ_METHODS if config.webdav == "read" else ()) + page
        #: The methods served: by ``webdav``, and with uploads on (WebDAV or not) those the
        #: listing's file management uses: MKCOL, and DELETE and MOVE where allowed.
        self.methods: Tuple[str, ...] = methods
        #: The methods that get ``405`` rather than ``501`` when not in :attr:`methods`:
        #: every WebDAV method with WebDAV on.
        self.known_methods: Tuple[str, ...] = (
            READ_METHODS + WRITE_METHODS if config.webdav != "no" else methods)

    @classmethod
    def for_site(cls, config: Config, locks: Optional[LockTable] = None) -> Optional[WebDav]:
        """The WebDAV methods a site with ``config`` serves, with ``locks`` (None: a table of
        its own); None for none."""
        return cls(config, locks) if config.webdav != "no" or config.upload else None

    def options_headers(self) -> List[Tuple[str, str]]:
        """The fields an OPTIONS answer adds with WebDAV on: the compliance classes (RFC 4918
        §10.1), and the one Windows' WebDAV client looks for before it mounts."""
        if self.config.webdav == "no":
            return []
        return [("DAV", "1, 2" if self.writable else "1"), ("MS-Author-Via", "DAV")]

    def respond(self, request: Request, body: Optional[BodyReader], may: Checker,
                path: Tuple[List[str], bool], client: str) -> Response:
        """Answer one of :attr:`methods` for the request path ``path`` (decoded by routing,
        as :func:`nex.files.paths.split_path` gives it), asking ``may`` (the access checker)
        for every entry touched; ``client`` is the address a new lock counts against."""
        method = request.method
        config = self.config
        target = find_segments(path[0], config)
        if method == "PROPFIND":
            return self._propfind(request, body, target, may)
        if method == "MKCOL":
            return mkcol(request, body, target, config, self.locks, may)
        if method == "DELETE":
            return delete(request, target, config, self.locks, may)
        if method in ("COPY", "MOVE"):
            return copy_or_move(request, target, config, self.locks, may, method == "MOVE")
        if method == "PROPPATCH":
            return self._proppatch(request, body, target, may)
        if method == "LOCK":
            return self._lock(request, body, target, may, client)
        return self._unlock(request, target, may)

    def guard_put(self, request: Request, segments: List[str],
                  locks: Union[LockTable, HeldLocks, None] = None) -> None:
        """Let an upload of the decoded path ``segments`` (PUT, or a resumable upload's
        creation or append) through the ``If`` header and the locks (``locks``: the table's
        own, or held still) on its file and folder."""
        target = find_segments(segments, self.config)
        if target.segments:
            check(request, self.locks if locks is None else locks, self.config, target,
                  changes(target.segments, self.config, False))

    def hold(self, request: Request, folder: List[str]) -> Optional[Hold]:
        """What checks the locks again on the names uploads take in the folder of the decoded
        path ``folder`` and holds them still while they take them (see
        :data:`~nex.files.upload.Hold`); None where there are no locks (WebDAV not
        writable).  A lock taken while an upload's body came in then stops it."""
        if not self.writable:
            return None
        return lambda names: self._holding(request, folder, names)

    @contextlib.contextmanager
    def _holding(self, request: Request, folder: List[str], names: Sequence[str]
                 ) -> Iterator[None]:
        with self.locks.held_still() as held:
            for name in names:
                self.guard_put(request, folder + [name], held)
            yield

    def form_guard(self, request: Request, segments: List[str]
                   ) -> Optional[Callable[[str], None]]:
        """What lets each file of a form posted to the folder of the decoded path
        ``segments`` through the ``If`` header and the locks, as :meth:`guard_put` lets a
        PUT; None where there are no locks (WebDAV not writable)."""
        if not self.writable:
            return None
        return lambda name: self.guard_put(request, segments + [name])

    def _propfind(self, request: Request, body: Optional[BodyReader], target: Resource,
                  may: Checker) -> Response:
        """PROPFIND (RFC 4918 §9.1): 207 with the properties asked for."""
        depth = request.headers.get("Depth")
        if depth is None or depth.lower() == "infinity":
            raise HTTPError(403, "PROPFIND is served with Depth 0 or 1, not infinity.")
        if depth not in ("0", "1"):
            raise HTTPError(400, "Depth is 0, 1 or infinity.")
        kind, wanted = _propfind_request(read_xml(body))
        must_exist(target, self.config, may, "read")
        listed = depth == "1" and target.collection
        if listed and not self.config.listing:
            raise HTTPError(403, "Folder listings are turned off.")
        if not may("list" if listed else "read", target.url_path, target.real_path()):
            raise Refused()
        entries = [target]
        if listed:
            entries.extend(members(target, self.config, may))
        responses = []
        held = self.locks.live() if self.writable else []
        for entry in entries:
            live = self._properties(entry, held)
            if kind == "propname":
                groups = [(200, [property_xml(tag) for tag in live])]
            elif kind == "allprop":
                groups = [(200, [property_xml(tag, value) for tag, value in live.items()])]
            else:
                groups = [(200, [property_xml(tag, live[tag]) for tag in wanted if tag in live]),
                          (404, [property_xml(tag) for tag in wanted if tag not in live])]
            responses.append(propstat_response(entry.href, groups, reason_phrase))
        return Response(207, [XML_TYPE], body=multistatus(responses))

    def _properties(self, resource: Resource, held: List[Lock]) -> Dict[str, str]:
        """The live properties of ``resource``, their values as markup; ``held`` are the
        live locks, those covering it its ``lockdiscovery``."""
        found = resource.stat
        # As GET's Last-Modified: a modification time in the future is the present
        # (RFC 9110 §8.8.2.1).
        modified = min(int(found.st_mtime), int(time.time()))
        properties = {
            f"{{{DAV}}}resourcetype": "<D:collection/>" if resource.collection else "",
            f"{{{DAV}}}getlastmodified": format_http_date(modified),
            f"{{{DAV}}}creationdate": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                   time.gmtime(modified)),
        }
        if not resource.collection:
            media_type = content_type(file_extension(resource.segments[-1]),
                                      self.config.mime_types)[0]
            properties[f"{{{DAV}}}getcontentlength"] = str(found.st_size)
            properties[f"{{{DAV}}}getcontenttype"] = escape(media_type)
            properties[f"{{{DAV}}}getetag"] = escape(resource.etag)
        if self.writable:
            properties[f"{{{DAV}}}supportedlock"] = _LOCK_KINDS
            where = locate(resource.segments, self.config) if held else None
            properties[f"{{{DAV}}}lockdiscovery"] = "".join(
                _active_lock(lock) for lock in held if lock.covers(where))
        return properties

    def _proppatch(self, request: Request, body: Optional[BodyReader], target: Resource,
                   may: Checker) -> Response:
        """PROPPATCH (RFC 4918 §9.2): dead properties are not kept, so each one is 403."""
        may_write(must_exist(target, self.config, may, "write"), may)
        check(request, self.locks, self.config, target,
              [(locate_entry(target.segments, self.config), False)])
        root = read_xml(body)
        if root is None or root.tag != f"{{{DAV}}}propertyupdate":
            raise HTTPError(400, "PROPPATCH sends a DAV:propertyupdate.")
        names = [prop.tag for action in root.children
                 if action.tag in (f"{{{DAV}}}set", f"{{{DAV}}}remove")
                 for holder in action.children if holder.tag == f"{{{DAV}}}prop"
                 for prop in holder.children]
        if not names:
            raise HTTPError(400, "The propertyupdate names no property.")
        return Response(207, [XML_TYPE], body=multistatus([propstat_response(
            target.href, [(403, [property_xml(tag) for tag in names])], reason_phrase)]))

    def _lock(self, request: Request, body: Optional[BodyReader], target: Resource,
              may: Checker, client: str) -> Response:
        """LOCK (RFC 4918 §9.10): a new lock (201 when it made an empty file at an unmapped
        URL, §7.3), or with no body a refresh of the lock the ``If`` header names."""
        timeout = parse_timeout(request.headers.get("Timeout"))
        root = read_xml(body)
        if root is None:
            tokens = [condition.token for entry in parse_if(request.headers.get("If") or "")
                      for condition in entry.conditions if condition.token]
            if not tokens:
                raise HTTPError(400, "A lock refresh names its lock in the If header.")
            lock = self.locks.refresh(tokens[0], locate(target.segments, self.config), timeout)
            return Response(200, [XML_TYPE], body=_lock_body(lock))
        exclusive, owner = _lock_request(root)
        depth = request.headers.get("Depth")
        if depth not in (None, "0") and depth.lower() != "infinity":
            raise HTTPError(400, "A lock's Depth is 0 or infinity.")
        created = not target.exists
        folder = parent_folder(target, self.config, may) if created else None
        try:
            may_write(target, may, folder)
            if folder is not None:
                check(request, self.locks, self.config, target,
                      [(locate_members(target.segments[:-1], self.config), False)])
                folder.check(target.segments[-1])
            try:
                lock = self.locks.take(locate(target.segments, self.config), depth != "0",
                                       exclusive, owner, timeout, client)
            except LockConflict as conflict:
                if (conflict.root[:len(target.path)] != target.path
                        or conflict.root == target.path):
                    raise
                # A lock below stops a lock on the folder: name it (RFC 4918 §9.10.9).
                return Response(207, [XML_TYPE], body=multistatus([
                    status_response(encode_path(list(conflict.root)), 423, reason_phrase(423)),
                    status_response(target.href, 424, reason_phrase(424))]))
            if folder is not None:
                pending = folder.create(target.segments[-1])
                try:
                    store(pending, exclusive=True)
                except BaseException:
                    self.locks.release(lock.token, locate(target.segments, self.config))
                    raise
                finally:
                    pending.discard()
        finally:
            if folder is not None:
                folder.close()
        return Response(201 if created else 200, [XML_TYPE, ("Lock-Token", f"<{lock.token}>")],
                        body=_lock_body(lock))

    def _unlock(self, request: Request, target: Resource, may: Checker) -> Response:
        """UNLOCK (RFC 4918 §9.11): 204, or 409 when no such lock covers the resource."""
        token = parse_lock_token(request.headers.get("Lock-Token"))
        if target.exists:
            may_write(target, may)
        self.locks.release(token, locate(target.segments, self.config))
        return Response(204)


def _propfind_request(root: Optional[Element]) -> Tuple[str, List[str]]:
    """What a PROPFIND body asks for: ``allprop`` (also an empty body), ``propname``, or
    ``prop`` with the property names; 400 for another body."""
    if root is None:
        return "allprop", []
    if root.tag != f"{{{DAV}}}propfind":
        raise HTTPError(400, "PROPFIND sends a DAV:propfind.")
    for child in root.children:
        if child.tag == f"{{{DAV}}}allprop":
            return "allprop", []
        if child.tag == f"{{{DAV}}}propname":
            return "propname", []
        if child.tag == f"{{{DAV}}}prop":
            return "prop", [prop.tag for prop in child.children]
    raise HTTPError(400, "The propfind asks for nothing.")


def _lock_request(root: Element) -> Tuple[bool, str]:
    """Whether a ``lockinfo`` asks for an exclusive lock, and its owner's markup; 400 for
    anything but a write lock, exclusive or shared."""
    if root.tag != f"{{{DAV}}}lockinfo":
        raise HTTPError(400, "LOCK sends a DAV:lockinfo.")
    scope = root.find(f"{{{DAV}}}lockscope")
    kind = root.find(f"{{{DAV}}}locktype")
    scopes = {child.tag for child in scope.children} if scope is not None else set()
    if (kind is None or kind.find(f"{{{DAV}}}write") is None
            or len(scopes & {f"{{{DAV}}}exclusive", f"{{{DAV}}}shared"}) != 1):
        raise HTTPError(400, "Nex takes write locks, exclusive or shared.")
    owner = root.find(f"{{{DAV}}}owner")
    markup = "" if owner is None else (
        escape(owner.text) + "".join(child.xml() for child in owner.children))
    return f"{{{DAV}}}exclusive" in scopes, markup


def _active_lock(lock: Lock) -> str:
    """The ``activelock`` element of ``lock`` (RFC 4918 §14.1)."""
    scope = "exclusive" if lock.exclusive else "shared"
    return (f"<D:activelock><D:locktype><D:write/></D:locktype><D:lockscope><D:{scope}/>"
            f"</D:lockscope><D:depth>{'infinity' if lock.infinite else '0'}</D:depth>"
            f"<D:owner>{lock.owner}</D:owner><D:timeout>Second-{lock.timeout}</D:timeout>"
            f"<D:locktoken><D:href>{escape(lock.token)}</D:href></D:locktoken>"
            f"<D:lockroot><D:href>{escape(encode_path(list(lock.root)))}</D:href></D:lockroot>"
            "</D:activelock>")


def _lock_body(lock: Lock) -> Tuple[bytes, ...]:
    """The body of a LOCK answer: the lock's ``lockdiscovery``."""
    return ('<?xml version="1.0" encoding="utf-8"?>\n<D:prop xmlns:D="DAV:"><D:lockdiscovery>'
            + _active_lock(lock) + "</D:lockdiscovery></D:prop>\n").encode("utf-8"),
