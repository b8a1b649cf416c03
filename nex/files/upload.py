"""The upload handler: PUT writes a request body to a file; a form POST stores its files.

Nex routes PUT and POST here only when ``[files] upload`` is on.  ``PUT /folder/name``
writes the body to ``name`` in ``folder``; a POST of ``multipart/form-data`` (RFC 7578) to a
folder's address (``/folder/``, the listing's upload form) writes each file of the form into
that folder, named by the last component of its file name.  Every file takes the same steps:

1. The folder is found with GET's rules — the resolver's path decoding, dot-segment
   normalisation, hidden names and symlink policy — and opened; every later step works
   relative to that open descriptor, so the folder checked is the folder written to.  It
   must exist: no folder is made, and a missing one is GET's ``404``.
2. The name is checked: a plain name (no ``/``, ``\\``, NUL or other control character, not
   ``.`` or ``..``, not longer than the file system allows; else ``400``) that GET would
   serve (a hidden name gets GET's ``404``).  Whatever has the name already must be a
   regular file GET would serve (a folder: ``409``; anything GET refuses: ``404``), and is
   replaced only with ``upload_overwrite`` (``409`` otherwise).
3. The body streams, in the bounded pieces the :class:`BodyReader` brings, into a new
   temporary file ``.nex-upload-<random>`` in that folder (``O_CREAT | O_EXCL``), a name
   the resolver and the listing never show.  ``max_upload_size`` bounds the body: ``413``
   before it is read when its Content-Length is larger, as soon as a chunked body passes it.
4. Once the whole body is in, the file is synced to disk and takes its name: ``os.replace``
   where overwriting is allowed; else ``os.link``, which fails when the name was taken in
   the meantime (``409``), so a file someone else created is never overwritten.  The folder
   is synced after.
5. Whatever ends an upload early — the client leaving, a time-out, broken framing, a body
   over the limit, a malformed form, a full disk — removes its temporary files.

A form's files are named together, once the whole body has been parsed, so a form that is
malformed or ends early leaves nothing.  Should a name be taken between its check and the
end of the body, that form answers ``409`` and the files it had already named are removed.

Answers: PUT gets ``201 Created`` with ``Location`` for a new file and ``204 No Content``
for a replaced one (RFC 9110 §9.3.4), both with the file's ``ETag``; preconditions
(``If-Match``, ``If-None-Match: *``, RFC 9110 §13) are evaluated before the body is read.
A form from a browser (``Accept`` lists ``text/html``) gets ``303 See Other`` back to the
folder's listing, so reloading the page does not post the files again; other clients get
``201 Created`` (``200 OK`` when every file replaced one) listing the URL path of each
file, one per line, with ``Location`` when there is one file.  An upload whose ``Origin``
names another site is refused with ``403``, so a page elsewhere cannot make a visitor's
browser post files here.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import time
from typing import TYPE_CHECKING, List, Optional, Sequence, Set, Tuple

from nex.http.body import BodyReader
from nex.http.conditional import ANY, make_etag, not_modified, parse_etag_list
from nex.http.origin import normalise_origin
from nex.http.errors import HTTPError
from nex.http.multipart import MultipartParser, Part, form_boundary
from nex.http.request import Headers, Limits, Request
from nex.files.paths import (UPLOAD_TEMP_PREFIX, encode_path, hidden, lookup, not_found,
                          redirect_location, resolve, split_path)
from nex.http.response import Response

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

_TEXT = ("Content-Type", "text/plain; charset=utf-8")
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_SEPARATORS = re.compile(r"[/\\]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: link(2) fails this way on file systems without hard links.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP})
_READ_ONLY = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def allowed_methods(path: str) -> Tuple[str, ...]:
    """The methods the address ``path`` (as sent; empty for ``*``) takes with uploads on:
    PUT for a file's address, POST for a folder's (RFC 9110 §10.2.1 ``Allow``)."""
    if not path:
        return UPLOAD_METHODS
    return FOLDER_METHODS if split_path(path)[1] else FILE_METHODS


def put_file(request: Request, body: Optional[BodyReader], config: Config) -> Response:
    """Answer ``PUT``: write the request body to the file the path names.

    ``body`` is None for an empty body.  Raises ``HTTPError`` 403 (another site's page, a
    folder that is not writable), 404 (a missing folder, a name GET refuses), 405 (a folder's
    address), 409 (a folder has the name; a file has it and overwriting is off), 412 (a
    failed precondition), 413 (over ``max_upload_size``), 507 (the disk is full), or the
    body reader's 400 and 408; nothing is left behind by any of them.
    """
    check_origin(request)
    segments, is_folder = split_path(request.path)
    if is_folder:
        raise HTTPError(405, "A folder takes files in a form POST; PUT names a file.",
                        headers=[("Allow", ", ".join(FOLDER_METHODS))])
    shown = "/" + "/".join(segments)
    if any(hidden(segment, config.dotfiles) for segment in segments[:-1]):
        raise not_found(shown)
    folder = UploadFolder(segments[:-1], config, shown)
    try:
        name = segments[-1]
        existing = folder.check(name)
        put_preconditions(request.headers, existing)
        # If-None-Match: * asks for a new file even where overwriting is allowed.
        exclusive = parse_etag_list(request.headers.get("If-None-Match", "")) == ANY
        pending = folder.create(name)
        try:
            if body is not None:
                body.limit = config.max_upload_size
                for piece in body:
                    pending.write(piece)
            store(pending, exclusive)
        finally:
            pending.discard()
    finally:
        folder.close()
    return stored(pending, existing is not None)


def store(pending: PendingFile, exclusive: bool = False) -> None:
    """Give the complete upload ``pending`` its name as PUT does: replacing a file only with
    ``upload_overwrite`` and not ``exclusive`` (``If-None-Match: *``), else 409 (412 where
    overwriting was allowed); 409 when a folder has the name, 404 when its temporary file
    is gone (a cancelled resumable upload).  The folder is synced after."""
    folder = pending.folder
    config = folder.config
    shown = folder.shown(pending.name)
    pending.finish()
    try:
        pending.commit(replace=config.upload_overwrite and not exclusive)
    except FileExistsError:
        if config.upload_overwrite:
            raise HTTPError(412, f"A file {shown} was made meanwhile.") from None
        raise _exists(shown) from None
    except IsADirectoryError:
        raise _is_folder(shown) from None
    except FileNotFoundError:
        raise HTTPError(404, "The upload was cancelled.") from None
    folder.sync()


def stored(pending: PendingFile, replaced: bool) -> Response:
    """PUT's answer for the file ``pending`` was stored as: ``204`` with its ETag when it
    ``replaced`` one, else ``201`` with its ``Location`` as well."""
    etag = make_etag(pending.size, pending.mtime_ns)
    if replaced:
        return Response(204, [("ETag", etag)])
    location = encode_path(pending.folder.segments + [pending.name])
    return Response(201, [("Location", location), ("ETag", etag), _TEXT],
                    body=(f"{location}\n".encode("ascii"),))


def post_form(request: Request, body: Optional[BodyReader], config: Config) -> Response:
    """Answer ``POST``: store the files of a ``multipart/form-data`` form in the folder.

    A file's address gets 405, a folder's without its slash 308 (which keeps the method).
    Besides :func:`put_file`'s refusals it raises 415 for another content type, 400 for a
    malformed form, one without files, or a file name that is not a plain name, 409 for a
    form naming one file twice, and 413 for more files than ``max_upload_files`` or more or
    larger plain fields than the request-head limits allow.
    """
    check_origin(request)
    segments, is_folder = split_path(request.path)
    if not is_folder:
        try:
            resolve(request.path, request.query, config)
        except HTTPError as error:
            if error.status == 301:
                raise HTTPError(308, error.detail, headers=error.headers) from None
            raise
        raise HTTPError(405, "A file's address takes PUT; forms are posted to a folder.",
                        headers=[("Allow", ", ".join(FILE_METHODS))])
    boundary = form_boundary(request.headers.get("Content-Type"))
    shown = "/" + "".join(segment + "/" for segment in segments)
    if any(hidden(segment, config.dotfiles) for segment in segments):
        raise not_found(shown)
    folder = UploadFolder(segments, config, shown)
    form = _FormFiles(folder, Limits.from_config(config), config.max_upload_files)
    try:
        parser = MultipartParser(boundary, form, form.limits)
        if body is not None:
            body.limit = config.max_upload_size
            for piece in body:
                parser.feed(piece)
        parser.finish()
        if not form.files:
            raise HTTPError(400, "The form holds no file.")
        form.commit()
        folder.sync()
    finally:
        form.discard()
        folder.close()
    if _wants_html(request.headers.get("Accept")):
        count = len(form.files)
        raise HTTPError(303, f"{count} file{'' if count == 1 else 's'} uploaded.",
                        headers=[("Location", redirect_location(segments, request.query))])
    paths = [encode_path(segments + [pending.name]) for pending in form.files]
    created = not all(pending.replaced for pending in form.files)
    headers = [("Location", paths[0])] if created and len(paths) == 1 else []
    return Response(201 if created else 200, headers + [_TEXT],
                    body=("".join(path + "\n" for path in paths).encode("ascii"),))


class UploadFolder:
    """The folder uploads go to, inside the document root, held open by a descriptor.

    ``segments`` are its decoded URL path's segments, ``shown`` the path named in a 404.
    Raises GET's 404 when the folder is missing or refused, 403 when it cannot be opened.
    """

    def __init__(self, segments: Sequence[str], config: Config, shown: str) -> None:
        self.segments = list(segments)
        self.config = config
        try:
            fs_path, checked = lookup(config.document_root, segments, config.symlinks)
        except HTTPError as error:
            if error.status != 404:
                raise
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
        self.name_max = os.fpathconf(self.fd, "PC_NAME_MAX")
        #: The folder's path on disk, as the access checker is given it.
        self.real_path = fs_path

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
        if name in ("", ".", "..") or _SEPARATORS.search(name) or _CONTROL.search(name):
            raise HTTPError(400, f"The file name {name!r} is not a plain name.")
        if hidden(name, self.config.dotfiles):
            raise not_found(shown)
        if len(os.fsencode(name)) > self.name_max:
            raise HTTPError(400, "The file name is longer than this folder allows.")
        try:
            found = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise storage_error(error) from None
        if stat.S_ISLNK(found.st_mode):
            # A link may be replaced only where GET would follow it.
            try:
                found = lookup(self.config.document_root, self.segments + [name],
                               self.config.symlinks)[1]
            except HTTPError as error:
                if error.status != 404:
                    raise
                raise not_found(shown) from None
        if stat.S_ISDIR(found.st_mode):
            raise _is_folder(shown)
        if not stat.S_ISREG(found.st_mode):
            raise not_found(shown)
        if not self.config.upload_overwrite:
            raise _exists(shown)
        return found

    def create(self, name: str, suffix: str = "") -> PendingFile:
        """A new temporary file here that will become ``name``, its own name random and
        ending in ``suffix``."""
        while True:
            temp_name = UPLOAD_TEMP_PREFIX + secrets.token_hex(16) + suffix
            try:
                descriptor = os.open(temp_name, _CREATE, 0o666, dir_fd=self.fd)
            except FileExistsError:
                continue  # that random name is in use: draw another
            except OSError as error:
                raise storage_error(error) from None
            return PendingFile(self, name, temp_name, descriptor)

    def sync(self) -> None:
        """Make the names given here durable (fsync of the folder)."""
        try:
            os.fsync(self.fd)
        except OSError as error:
            if error.errno != errno.EINVAL:  # a file system that cannot sync a folder
                raise


class PendingFile:
    """One uploaded file on its way: a temporary file in its folder until :meth:`commit`."""

    def __init__(self, folder: UploadFolder, name: str, temp_name: str, descriptor: int) -> None:
        self.folder = folder
        self.name = name
        self.temp_name = temp_name
        #: Whether a file of this name existed when it was checked.
        self.replaced = False
        self.size = 0
        self.mtime_ns = 0
        self._identity: Tuple[int, int] = (0, 0)
        self._descriptor: Optional[int] = descriptor
        self._temp_exists = True

    def fileno(self) -> int:
        """The descriptor of the temporary file, until it is finished or kept."""
        return self._descriptor

    def write(self, data: bytes) -> None:
        """Append ``data`` (bytes or a view) to the file."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._descriptor, view):]
        except OSError as error:
            raise storage_error(error) from None

    def finish(self) -> None:
        """The content is complete: sync it to disk and close it."""
        descriptor, self._descriptor = self._descriptor, None
        try:
            os.fsync(descriptor)
            status = os.fstat(descriptor)
        except OSError as error:
            raise storage_error(error) from None
        finally:
            os.close(descriptor)
        self.size, self.mtime_ns = status.st_size, status.st_mtime_ns
        self._identity = (status.st_dev, status.st_ino)

    def commit(self, replace: bool) -> None:
        """Give the finished file its name, replacing a file that has it only if ``replace``.

        Raises ``FileExistsError`` when the name is taken and not to be replaced,
        ``IsADirectoryError`` when a folder has it.
        """
        folder = self.folder.fd
        if replace:
            os.replace(self.temp_name, self.name, src_dir_fd=folder, dst_dir_fd=folder)
        else:
            try:
                os.link(self.temp_name, self.name, src_dir_fd=folder, dst_dir_fd=folder)
            except OSError as error:
                if error.errno not in _NO_HARD_LINKS:
                    raise
                # Without hard links, claim the name with a file of our own, then move the
                # upload onto the claim: a name taken meanwhile still fails, as above.
                os.close(os.open(self.name, _CREATE, 0o666, dir_fd=folder))
                try:
                    os.rename(self.temp_name, self.name, src_dir_fd=folder, dst_dir_fd=folder)
                except OSError:
                    os.unlink(self.name, dir_fd=folder)
                    raise
            else:
                os.unlink(self.temp_name, dir_fd=folder)
        self._temp_exists = False

    def withdraw(self) -> None:
        """Remove the committed file again, if its name still holds it."""
        try:
            found = os.stat(self.name, dir_fd=self.folder.fd, follow_symlinks=False)
            if (found.st_dev, found.st_ino) == self._identity:
                os.unlink(self.name, dir_fd=self.folder.fd)
        except FileNotFoundError:
            pass

    def keep(self) -> None:
        """Close the temporary file and leave it there: a resumable upload's partial data."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
        self._temp_exists = False

    def discard(self) -> None:
        """Close and remove the temporary file, if it is still there."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
        if self._temp_exists:
            self._temp_exists = False
            try:
                os.unlink(self.temp_name, dir_fd=self.folder.fd)
            except FileNotFoundError:
                pass


class _FormFiles:
    """The files of one form while it is parsed, as its :class:`PartHandler`.

    Each file part goes into a temporary file; plain fields are dropped, bounded like
    header fields (at most ``limits.header_count`` of them, each at most
    ``limits.header_block`` bytes).  :meth:`commit` names the files once the form is whole;
    :meth:`discard` removes whatever was not named.
    """

    def __init__(self, folder: UploadFolder, limits: Limits, max_files: int) -> None:
        self.folder = folder
        self.limits = limits
        self.max_files = max_files
        self.files: List[PendingFile] = []
        self._names: Set[str] = set()
        self._current: Optional[PendingFile] = None
        self._fields = 0
        self._field_size = 0

    def start_part(self, part: Part) -> None:
        """Open a temporary file for a file part; count a field."""
        self._current = None
        if not part.filename:  # a plain field, or a file input left empty (filename="")
            self._fields += 1
            self._field_size = 0
            if self._fields > self.limits.header_count:
                raise HTTPError(413, "The form has too many fields.")
            return
        # Some senders give a whole path: only its last component names the file.
        name = _SEPARATORS.split(part.filename)[-1]
        shown = self.folder.shown(name)
        if name in self._names:
            raise HTTPError(409, f"The form holds two files named {shown}.")
        if len(self.files) >= self.max_files:
            raise HTTPError(413, f"A form may upload at most {self.max_files} files.")
        existing = self.folder.check(name)
        pending = self.folder.create(name)
        pending.replaced = existing is not None
        self.files.append(pending)
        self._names.add(name)
        self._current = pending

    def part_data(self, data: memoryview) -> None:
        """Write a file part's data; count a field's."""
        if self._current is not None:
            self._current.write(data)
            return
        self._field_size += len(data)
        if self._field_size > self.limits.header_block:
            raise HTTPError(413, "A form field is too large.")

    def end_part(self) -> None:
        """Finish a file part."""
        if self._current is not None:
            self._current.finish()

    def commit(self) -> None:
        """Name every file; if one name is taken meanwhile, remove the new files named
        before it and refuse with 409."""
        replace = self.folder.config.upload_overwrite
        for index, pending in enumerate(self.files):
            try:
                pending.commit(replace)
            except (FileExistsError, IsADirectoryError) as error:
                for earlier in self.files[:index]:
                    if not earlier.replaced:
                        earlier.withdraw()
                shown = self.folder.shown(pending.name)
                if isinstance(error, IsADirectoryError):
                    raise _is_folder(shown) from None
                raise _exists(shown) from None

    def discard(self) -> None:
        """Remove every temporary file left."""
        for pending in self.files:
            pending.discard()


def put_preconditions(headers: Headers, existing: Optional[os.stat_result]) -> None:
    """Evaluate If-Match, If-Unmodified-Since and If-None-Match for a PUT (RFC 9110 §13.2.2)
    against the file it would replace, ``existing`` (None: no file)."""
    if existing is not None:
        last_modified = min(existing.st_mtime_ns // 1_000_000_000, int(time.time()))
        not_modified(headers, "PUT", make_etag(existing.st_size, existing.st_mtime_ns),
                     last_modified)
    elif headers.get("If-Match") is not None:
        raise HTTPError(412, "There is no file here for If-Match to match.")


def check_origin(request: Request) -> None:
    """Refuse an upload whose ``Origin`` (RFC 6454 §7) is not this server: browsers name
    the page that made them send a request, so a page elsewhere cannot post files here.
    ``null`` (a sandboxed page, a local file) is another site too."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    try:
        origin = normalise_origin(origin)
        same_site = origin == normalise_origin(f"{origin.partition(':')[0]}://{request.host}")
    except ValueError:
        same_site = False
    if not same_site:
        raise HTTPError(403, "Uploads from pages of other sites are refused.")


def _wants_html(accept: Optional[str]) -> bool:
    """Whether the ``Accept`` field lists ``text/html``, as a browser's form submission does."""
    return accept is not None and any(
        item.partition(";")[0].strip(" \t").lower() == "text/html" for item in accept.split(","))


def _exists(shown: str) -> HTTPError:
    return HTTPError(409, f"A file {shown} exists already, and uploads do not replace files "
                          "here.")


def _is_folder(shown: str) -> HTTPError:
    return HTTPError(409, f"{shown} is a folder.")


def storage_error(error: OSError) -> Exception:
    """The reply for a folder that cannot take a file; unexpected faults go up unchanged."""
    if error.errno in _READ_ONLY:
        return HTTPError(403, "This folder does not accept files.")
    if error.errno in _FULL:
        return HTTPError(507, "There is no room left for the file.")
    if error.errno == errno.EFBIG:
        return HTTPError(413, "The file is larger than this folder's file system allows.")
    return error
