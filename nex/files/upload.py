"""The upload handler: PUT writes a request body to a file; a form POST stores its files
(:mod:`nex.files.uploadform`), each as a PUT stores its one.

Nex routes PUT and POST here only when ``[files] upload`` is on.  ``PUT /folder/name``
writes the body to ``name`` in ``folder``; a POST of ``multipart/form-data`` (RFC 7578) to a
folder's address (``/folder/``, the listing's upload form) writes each file of the form into
that folder, named by the last component of its file name.  Every file takes the same steps:

1. The folder is found with GET's rules — the resolver's path decoding, dot-segment
   normalisation, hidden names and symlink policy — and opened; every later step works
   relative to that open descriptor, so the folder checked is the folder written to.  It
   must exist: no folder is made, and a missing one is GET's ``404``.
2. The name is checked: a plain name (no ``/``, ``\\``, control character or format
   character such as a bidi control, not ``.`` or ``..``, not longer than the file system
   allows; else ``400``) that GET would serve (a hidden name gets GET's ``404``), and that
   the access checker lets the client write, judged on the real path (so a folder link
   into a protected folder is protected).  Whatever has the name already must be a
   regular file GET would serve (a folder: ``409``; anything GET refuses: ``404``), and is
   replaced only with ``upload_overwrite``.  Without it, a new file that would change what
   an existing address serves is refused like a replacement (``409``): a ``.gz``/``.br``
   sidecar beside an existing file, an index file in a folder served by another.
3. The body streams, in the bounded pieces the :class:`BodyReader` brings, into a new
   temporary file ``.nex-upload-<random>`` in that folder (``O_CREAT | O_EXCL``), a name
   the resolver and the listing never show.  ``max_upload_size`` bounds the body: ``413``
   before it is read when its Content-Length is larger, as soon as a chunked body passes it.
4. Once the whole body is in, the file is synced to disk and takes its name: ``os.replace``
   where overwriting is allowed; else ``os.link``, which fails when the name was taken in
   the meantime (``409``), so a file someone else created is never overwritten.  The
   preconditions are judged again first, and that judgement and the naming hold the folder
   (:meth:`UploadFolder.held`) against every other upload's naming.  The folder is synced
   after.
5. Whatever ends an upload early — the client leaving, a time-out, broken framing, a body
   over the limit, a malformed form, a full disk — removes its temporary files.

Answers: PUT gets ``201 Created`` with ``Location`` for a new file and ``204 No Content``
for a replaced one (RFC 9110 §9.3.4), both with the file's ``ETag``; preconditions
(``If-Match``, ``If-None-Match: *``, RFC 9110 §13) are evaluated before the body is read.
A form from a browser (``Accept`` lists ``text/html``) gets ``303 See Other`` back to the
folder's listing, so reloading the page does not post the files again; other clients get
``201 Created`` (``200 OK`` when every file replaced one) listing the URL path of each
file, one per line, with ``Location`` when there is one file.  That a write comes from
Nex's own pages is checked before, by routing (:mod:`nex.site.sameorigin`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import stat
import time
import unicodedata
from contextlib import contextmanager, nullcontext
from typing import (TYPE_CHECKING, Callable, ContextManager, Iterator, List, Optional, Sequence,
                    Tuple)

from nex.http.body import BodyReader
from nex.http.conditional import ANY, make_etag, not_modified, parse_etag_list
from nex.http.dates import parse_http_date
from nex.http.errors import HTTPError
from nex.http.request import Headers, Request
from nex.files.oserrors import storage_error
from nex.files.pending import CREATE_NEW, PendingFile
from nex.files.paths import (UPLOAD_TEMP_PREFIX, Checker, Refused, disguised, encode_path,
                             hidden, lookup, not_found, real_path, refuse_along, shown_name,
                             split_path)
from nex.http.response import Response
from nex.files.static import SIDECAR_EXTENSIONS

if TYPE_CHECKING:
    from nex.process.config import Config

#: The methods a file's address takes when uploads are on.
FILE_METHODS = ("GET", "HEAD", "OPTIONS", "PUT")
#: The methods a folder's address takes when uploads are on.
FOLDER_METHODS = ("GET", "HEAD", "OPTIONS", "POST")
#: Every method the server takes when uploads are on (the answer to ``OPTIONS *``).
UPLOAD_METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT")
#: The form a listing shows when uploads are on; it posts to the listing's own address.
UPLOAD_FORM = ('\n<form class="upload" method="post" enctype="multipart/form-data">'
               '<input type="file" name="file" multiple required>'
               '<button type="submit">Upload</button></form>')
#: The type of the plain-text answers to uploads.
TEXT_PLAIN = ("Content-Type", "text/plain; charset=utf-8")
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: How long an upload waits for its folder's hold (:meth:`UploadFolder.held`) before it is
#: refused with 503: another upload holds it for microseconds, another program may not let go.
FOLDER_WAIT_SECONDS = 10.0
#: flock(2) fails this way where a file system cannot lock a folder (some network ones).
_NO_FOLDER_LOCKS = frozenset({errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL})
#: What separates the components of a path a client gives as a file's name.
NAME_SEPARATORS = re.compile(r"[/\\]")


def allowed_methods(is_folder: Optional[bool]) -> Tuple[str, ...]:
    """The methods an address takes with uploads on (RFC 9110 §10.2.1 ``Allow``): PUT for
    a file's, POST for a folder's (``is_folder``, the second value of :func:`split_path`),
    both for ``*`` (None)."""
    if is_folder is None:
        return UPLOAD_METHODS
    return FOLDER_METHODS if is_folder else FILE_METHODS


#: WebDAV's locks on the names uploads are about to take: ``hold(names)`` checks them again
#: (423 for a lock taken while the bodies came in) and keeps every lock as it is while the
#: ``with`` block gives the names.
Hold = Callable[[Sequence[str]], ContextManager[None]]


def put_file(request: Request, body: Optional[BodyReader], config: Config,
             may: Optional[Checker] = None,
             path: Optional[Tuple[List[str], bool]] = None,
             hold: Optional[Hold] = None) -> Response:
    """Answer ``PUT``: write the request body to the file the path names.

    ``body`` is None for an empty body; ``may`` is the access checker (None: anything may
    be written), ``path`` the request path as :func:`split_path` decoded it (None: decode
    it here), ``hold`` WebDAV's locks on the name (None: no locks).  Raises ``HTTPError``
    400 (a ``Content-Range``: RFC 9110 §14.5 forbids storing
    a part as the whole), 403 (a folder that is not writable; :class:`Refused` where the
    access policy says no), 404 (a missing folder, a name GET refuses), 405 (a folder's
    address), 409 (a folder has the name; overwriting is off and the upload would change
    what an existing address serves), 412 (a failed precondition), 413 (over
    ``max_upload_size``), 507 (the disk is full), or the body reader's 400 and 408; nothing
    is left behind by any of them.
    """
    if "Content-Range" in request.headers:
        raise HTTPError(400, "A PUT with Content-Range would store a part as the whole file.")
    folder, name = file_folder(split_path(request.path) if path is None else path, config, may)
    try:
        existing = folder.check(name)
        put_preconditions(request.headers, existing)
        # If-None-Match: * asks for a new file even where overwriting is allowed.
        exclusive = parse_etag_list(request.headers.get("If-None-Match", "")) == ANY
        pending = folder.create(name)
        try:
            take_body(body, config.max_upload_size, pending.write)
            store(pending, exclusive, hold, judged_etag(request.headers, existing))
        finally:
            pending.discard()
    finally:
        folder.close()
    return stored(pending)


def file_folder(path: Tuple[List[str], bool], config: Config,
                may: Optional[Checker]) -> Tuple[UploadFolder, str]:
    """The open folder (asking ``may``) of the file the decoded ``path`` names, and its name;
    405 for a folder's address, GET's 404 for a missing or hidden folder."""
    segments, is_folder = path
    if is_folder:
        raise HTTPError(405, "A folder takes files in a form POST; PUT names a file.",
                        headers=[("Allow", ", ".join(FOLDER_METHODS))])
    shown = "/" + "/".join(segments)
    if any(hidden(segment, config.dotfiles) for segment in segments[:-1]):
        raise not_found(shown)
    return UploadFolder(segments[:-1], config, shown, may), segments[-1]


def store(pending: PendingFile, exclusive: bool = False, hold: Optional[Hold] = None,
          unchanged: Optional[str] = None) -> None:
    """Name the complete upload ``pending`` as PUT does, replacing a file only with
    ``upload_overwrite`` and not ``exclusive`` (``If-None-Match: *``): else 409 (412 where
    overwriting was allowed); 409 for a folder, 404 for a cancelled resumable upload; 423
    when ``hold`` finds the name locked now; :class:`ChangedMeanwhile` when the file there
    is no longer what ``unchanged`` says it must be (:func:`judged_etag`)."""
    folder = pending.folder
    config = folder.config
    shown = folder.shown(pending.name)
    pending.finish()
    try:
        with folder.held(), holding(hold, [pending.name]):
            if unchanged is not None:
                current = folder.check(pending.name)
                if current is None or (unchanged != ANY_FILE and make_etag(
                        current.st_size, current.st_mtime_ns) != unchanged):
                    raise ChangedMeanwhile(shown)
            pending.commit(replace=config.upload_overwrite and not exclusive)
    except FileExistsError:
        if config.upload_overwrite:
            raise HTTPError(412, f"A file {shown} was made meanwhile.") from None
        raise exists_error(shown) from None
    except IsADirectoryError:
        raise folder_error(shown) from None
    except FileNotFoundError:
        raise HTTPError(404, "The upload was cancelled.") from None
    except OSError as error:  # a file mounted at the name (EBUSY), a full disk (ENOSPC)
        raise storage_error(error) from None
    folder.sync()


def holding(hold: Optional[Hold], names: Sequence[str]) -> ContextManager[None]:
    """``hold(names)``, or nothing to hold without locks."""
    return nullcontext() if hold is None else hold(names)


def stored(pending: PendingFile) -> Response:
    """PUT's answer for the stored ``pending``: 204 with its ETag if it replaced a file,
    else 201."""
    etag = make_etag(pending.size, pending.mtime_ns)
    if pending.replaced:
        return Response(204, [("ETag", etag)])
    location = encode_path(pending.folder.segments + [pending.name])
    return Response(201, [("Location", location), ("ETag", etag), TEXT_PLAIN],
                    body=(f"{location}\n".encode("ascii"),))


class UploadFolder:
    """The folder uploads go to, inside the document root, held open by a descriptor.

    ``segments`` are its decoded URL path's segments, ``shown`` the path named in a 404,
    ``may`` the access checker (None: anything may be written).  Raises GET's 404 when the
    folder is missing or refused, 403 when it cannot be opened.
    """

    def __init__(self, segments: Sequence[str], config: Config, shown: str,
                 may: Optional[Checker] = None) -> None:
        self.segments = list(segments)
        self.config = config
        self.may = may
        try:
            fs_path, checked = lookup(config, segments)
        except HTTPError as error:
            if error.status != 404:
                raise
            refuse_along(segments, shown, config, may, "write")
            raise not_found(shown) from None
        if not stat.S_ISDIR(checked.st_mode):
            raise not_found(shown)
        try:
            self.fd = os.open(fs_path, _FOLDER)
        except OSError as error:
            raise storage_error(error) from None
        opened = os.fstat(self.fd)
        if (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino):
            os.close(self.fd)  # replaced between the check and the opening
            raise not_found(shown)
        #: The folder's device and inode: the same for every path and descriptor that
        #: reaches it.
        self.identity = (opened.st_dev, opened.st_ino)
        self._held = False
        self.name_max = os.fpathconf(self.fd, "PC_NAME_MAX")
        self.real_path = real_path(fs_path, config).rstrip("/")

    def close(self) -> None:
        """Let go of the folder."""
        os.close(self.fd)

    def shown(self, name: str) -> str:
        """The decoded URL path of the file ``name`` here, as messages name it."""
        return "/" + "".join(segment + "/" for segment in self.segments) + name

    def check(self, name: str) -> Optional[os.stat_result]:
        """Whether ``name`` may be written here: None when it is free, the ``os.stat`` of
        the regular file that has it when that may be replaced; else ``HTTPError`` 400, 404
        or 409."""
        shown = self.shown(name)
        if name in ("", ".", "..") or NAME_SEPARATORS.search(name) or disguised(name):
            raise HTTPError(400, f"The file name {shown_name(name)!r} is not a plain name: "
                                 "no separators, control or format characters.")
        if hidden(name, self.config.dotfiles):
            raise not_found(shown)
        if len(os.fsencode(name)) > self.name_max:
            raise HTTPError(400, "The file name is longer than this folder allows.")
        self.check_access(name)
        try:
            found = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            found = None
        except OSError as error:
            raise storage_error(error) from None
        if not self.config.upload_overwrite:
            self._check_shadowing(name, shown)
        if found is None:
            return None
        if stat.S_ISLNK(found.st_mode):
            # A link may be replaced only where GET would follow it, and by who may write
            # where it leads.
            try:
                linked, found = lookup(self.config, self.segments + [name])
            except HTTPError as error:
                if error.status != 404:
                    raise
                # As GET answers it: judged where the missing target would be.
                refuse_along(self.segments + [name], shown, self.config, self.may, "write")
                raise not_found(shown) from None
            self.check_access(name, real_path(linked, self.config))
        if stat.S_ISDIR(found.st_mode):
            raise folder_error(shown)
        if not stat.S_ISREG(found.st_mode):
            raise not_found(shown)
        if not self.config.upload_overwrite:
            raise exists_error(shown)
        return found

    def check_access(self, name: str, real: Optional[str] = None) -> None:
        """Raise :class:`Refused` unless the policy lets the entry ``name`` here be written,
        judged at ``real`` (a link's target; None: the path it has here)."""
        if self.may is not None and not self.may(
                "write", self.shown(name), real or self.real_path + "/" + name):
            raise Refused()

    def _check_shadowing(self, name: str, shown: str) -> None:
        """Refuse (``409``) a new file that would change what an existing address serves,
        or whose own address another file already answers: a ``.gz``/``.br`` sidecar of an
        existing file, a file whose sidecar is already there (it would be sent in the
        upload's place), an index file (its folder's address already serves a listing or
        another index file), or a name spelt in another Unicode normal form than one that
        is here."""
        base, _, suffix = name.rpartition(".")
        if base and "." + suffix in SIDECAR_EXTENSIONS and self._is_file(base):
            raise exists_error(shown, f"it would be sent in place of {self.shown(base)}")
        for extension in SIDECAR_EXTENSIONS:
            if self._is_file(name + extension):
                raise exists_error(shown, f"{self.shown(name + extension)} would be sent in its "
                                     "place")
        if name in self.config.index_files:
            raise exists_error(shown, f"it would change what {self.shown('')} serves")
        if not name.isascii():
            # Canonically equivalent names look the same everywhere they are shown, so a
            # second spelling of an existing name would pass for it.
            for form in ("NFC", "NFD"):
                other = unicodedata.normalize(form, name)
                if other != name and self._holds(other):
                    raise exists_error(shown, f"it would look the same as {self.shown(other)}")

    def _holds(self, name: str) -> bool:
        """Whether an entry ``name`` of any kind is here."""
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except OSError:
            return False
        return True

    def _is_file(self, name: str) -> bool:
        """Whether the entry ``name`` here is a file (through a link, too)."""
        try:
            return stat.S_ISREG(os.stat(name, dir_fd=self.fd).st_mode)
        except OSError:
            return False

    def create(self, name: str, suffix: str = "") -> PendingFile:
        """A new temporary file here that will become ``name``, its own name random and
        ending in ``suffix``."""
        while True:
            temp_name = UPLOAD_TEMP_PREFIX + secrets.token_hex(16) + suffix
            try:
                descriptor = os.open(temp_name, CREATE_NEW, 0o666, dir_fd=self.fd)
            except FileExistsError:
                continue  # that random name is in use: draw another
            except OSError as error:
                raise storage_error(error) from None
            return PendingFile(self, name, temp_name, descriptor)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Keep every other upload from naming a file in this folder meanwhile, in this
        process and every other (an exclusive ``flock`` of the folder's own descriptor,
        which each upload opens anew): what is judged of a name inside still holds for the
        rename made inside, so two PUTs sent with the same ``If-Match`` do not both pass.

        Another upload holds it for a rename's microseconds; another program (``flock(1)``)
        may hold it for as long as it likes, so the wait is bounded: after
        :data:`FOLDER_WAIT_SECONDS`, ``503`` with ``Retry-After`` (a resumable upload keeps
        its data for the retry).  Taken before WebDAV's locks are held still (:data:`Hold`),
        so that the wait holds up no request about another folder.  A file system that
        cannot lock a folder leaves the uploads unordered, as without.  Held already through
        this object, it is held on: the inner block lets nothing go.
        """
        if self._held:
            yield
            return
        with folder_held(self.fd):
            self._held = True
            try:
                yield
            finally:
                self._held = False

    def sync(self) -> None:
        """Make the names given here durable (fsync of the folder)."""
        try:
            os.fsync(self.fd)
        except OSError as error:
            if error.errno != errno.EINVAL:  # a file system that cannot sync a folder
                raise


@contextmanager
def folder_held(fd: int) -> Iterator[None]:
    """The hold of the folder open as ``fd`` (:meth:`UploadFolder.held`), for a folder no
    URL path names any more, which a removal empties."""
    try:
        if not _lock_folder(fd):
            raise HTTPError(503, "Another program keeps the folder locked.",
                            headers=[("Retry-After", "5")])
    except OSError as error:
        if error.errno not in _NO_FOLDER_LOCKS:
            raise
        yield
        return
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _lock_folder(fd: int) -> bool:
    """Take the ``flock`` of the folder open as ``fd``, waiting at most
    :data:`FOLDER_WAIT_SECONDS`; whether it was taken.  A lock cannot be waited for with a
    time limit, so it is tried again after waits that grow from a millisecond (another
    upload lets go within one)."""
    deadline = None
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            now = time.monotonic()
            if deadline is None:
                deadline = now + FOLDER_WAIT_SECONDS
            elif now >= deadline:
                return False
            time.sleep(min(pause, deadline - now))
            pause = min(pause * 2, 0.1)


def put_preconditions(headers: Headers, existing: Optional[os.stat_result]) -> None:
    """Evaluate If-Match, If-Unmodified-Since and If-None-Match for a PUT (RFC 9110 §13.2.2)
    against the file it would replace, ``existing`` (None: no file)."""
    if existing is not None:
        last_modified = min(existing.st_mtime_ns // 1_000_000_000, int(time.time()))
        not_modified(headers, "PUT", make_etag(existing.st_size, existing.st_mtime_ns),
                     last_modified)
    elif headers.get("If-Match") is not None:
        raise HTTPError(412, "There is no file here for If-Match to match.")


#: What :func:`judged_etag` gives for ``If-Match: *``: some file must have the name.
ANY_FILE = "*"


class ChangedMeanwhile(HTTPError):
    """412: the file an upload was to replace changed after the upload's preconditions were
    judged against it (:func:`judged_etag`)."""

    def __init__(self, shown: str) -> None:
        super().__init__(412, f"{shown} changed after the request's preconditions were "
                              "checked.")


def judged_etag(headers: Headers, existing: Optional[os.stat_result]) -> Optional[str]:
    """What the file ``existing`` must still be when an upload takes its name, for the
    preconditions :func:`put_preconditions` judged against it to hold however long the body
    takes: its ETag for an ``If-Match`` naming entity-tags, or a valid
    ``If-Unmodified-Since`` without ``If-Match`` (RFC 9110 §13.1.4); :data:`ANY_FILE` for
    ``If-Match: *``; None when neither was judged."""
    if existing is None:
        return None
    if_match = headers.get("If-Match")
    if if_match is not None:
        if parse_etag_list(if_match) == ANY:
            return ANY_FILE
    else:
        since = headers.get("If-Unmodified-Since")
        if since is None or parse_http_date(since) is None:
            return None
    return make_etag(existing.st_size, existing.st_mtime_ns)


def take_body(body: Optional[BodyReader], limit: int, consume: Callable[[bytes], None]
               ) -> None:
    """Hand each piece of the request ``body`` (None: no body) to ``consume`` as it arrives,
    refusing with 413 (naming ``max_upload_size``) a body over ``limit`` bytes."""
    if body is not None:
        body.limit = limit
        body.limit_setting = "max_upload_size"
        for piece in body:
            consume(piece)


def exists_error(shown: str, why: str = "") -> HTTPError:
    """409 for an upload to the name ``shown`` that something has (``why``: what is wrong)."""
    what = f"{shown} exists" if not why else f"{shown} cannot be uploaded: {why}"
    return HTTPError(409, f"{what}; uploads do not replace files here (upload_overwrite = no).")


def folder_error(shown: str) -> HTTPError:
    """409 for an upload to the name ``shown`` that a folder has."""
    return HTTPError(409, f"{shown} is a folder.")
