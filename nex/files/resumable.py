"""Resumable uploads: draft-ietf-httpbis-resumable-upload-15 on top of PUT's rules.

A client that may lose its connection uploads a file in one or more requests, each resuming
where the server's copy ends, instead of starting over (routed here only with ``[files]
upload`` on):

* **Creation** (§4.1): a PUT or POST to the file's address with ``Upload-Complete``
  (``?1`` when the body is the whole file, ``?0`` when more follows), optionally
  ``Upload-Length``.  Before reading the body Nex sends ``104 (Upload Resumption
  Supported)`` with the upload resource's ``Location`` (``/folder/name?upload=TOKEN``) and
  ``Upload-Limit``.  A complete upload is answered as PUT answers; an incomplete one
  ``201 Created`` with ``Location``, ``Upload-Offset`` and ``Upload-Complete: ?0``.
* **Offset retrieval** (§4.2): ``HEAD`` on the upload resource: ``204`` with
  ``Upload-Offset``, ``Upload-Complete: ?0``, ``Upload-Length`` when known, ``Upload-Limit``.
* **Append** (§4.4): ``PATCH`` on the upload resource, ``Content-Type:
  application/partial-upload``, ``Upload-Offset`` (the server's offset, else ``409`` naming
  it in ``Upload-Offset``) and ``Upload-Complete``.
* **Cancellation** (§4.5): ``DELETE`` on the upload resource: ``204``, the data is gone.

The partial data is a temporary file beside the target,
``.nex-upload-<random>r[<length>][x][m[<etag>]]n<digest>``, hidden like every upload's
temporary file; the random part (128 bits) makes the token a capability.  What the upload
must keep to is part of its name, so it survives a restart of Nex:

* the length the client declared;
* ``x`` for a creation sent with ``If-None-Match: *``: the file is then stored only where
  no file has its name, at completion too (``412`` otherwise, the data kept for when the
  name is free);
* ``m`` and the ETag that a creation's ``If-Match`` or ``If-Unmodified-Since`` was judged
  against, or ``m`` alone for ``If-Match: *`` (:func:`~nex.files.upload.judged_etag`): the
  file is then stored only while the one it replaces is still that one (still there);
  otherwise it never can be, so the completion's ``412`` cancels the upload;
* a digest of the file's name, so that the token completes the upload under the name it
  was created for and no other (``404`` at another address).

On completion it is named exactly as a PUT names its file (same overwrite rule, atomic
rename).  An upload that received nothing for ``[files] upload_expiry`` seconds is removed
when next asked for (``404``).  The target's name, the folder, the preconditions and
``max_upload_size`` are checked at creation as for PUT, and the naming rules again at
completion; each request asks the access policy whether the file may be written (a refusal
is :class:`nex.files.paths.Refused`: routing asks an anonymous client to log in), and those
that write pass routing's same-origin and Host checks first.  Concurrent appends to one
upload are refused with ``409``: one ``flock`` per upload.

Nex's start-up clean-up (:mod:`nex.files.leftovers`) spares the partial data of uploads
younger than ``upload_expiry``, so an upload resumes after a restart.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import stat
import time
from typing import TYPE_CHECKING, List, Optional, Tuple

from nex.files.listing import query_values
from nex.files.paths import UPLOAD_TEMP_PREFIX, Checker, encode_path
from nex.files.pending import PendingFile
from nex.files.upload import (ANY_FILE, ChangedMeanwhile, Hold, UploadFolder, file_folder,
                              judged_etag, put_preconditions, store, stored)
from nex.http.body import BodyReader
from nex.http.conditional import ANY, parse_etag_list
from nex.http.errors import HTTPError, size_limit
from nex.http.grammar import MEDIA_TYPE, SF_BOOLEAN, SF_COUNT
from nex.http.request import Headers, Request
from nex.http.response import Response

if TYPE_CHECKING:
    from nex.process.config import Config

#: The query parameter that names an upload resource: ``/folder/name?upload=TOKEN``.
UPLOAD_QUERY = "upload"
#: The methods an upload resource takes (RFC 9110 §10.2.1 ``Allow``).
RESOURCE_METHODS = ("HEAD", "OPTIONS", "PATCH", "DELETE")
#: The media type of an append's body (draft §4.4).
PARTIAL_UPLOAD = "application/partial-upload"

#: A token: the random part of the temporary file's name, ``r``, the declared length if any,
#: ``x`` when the creation asked for no file to be replaced (``If-None-Match: *``), ``m``
#: and the ETag (unquoted; a modification time before 1970 is negative) of the file its
#: preconditions were judged against, or ``m`` alone for any file, and ``n`` and the digest
#: of the file's name (:func:`_name_digest`).  Tokens made before the last two were added
#: hold neither, and still work.
TOKEN = re.compile(r"[0-9a-f]{32}r(?P<length>[0-9]{1,15})?(?P<exclusive>x)?"
                   r"(?P<judged>m(?P<etag>[0-9a-f]{1,16}--?[0-9a-f]{1,16})?)?"
                   r"(?:n(?P<name_digest>[0-9a-f]{16}))?")
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_STORE = ("Cache-Control", "no-store")


def is_resumable(request: Request) -> bool:
    """Whether ``request`` is a resumable upload's: it names an upload resource
    (``?upload=``) or creates one (``Upload-Complete`` on a PUT or POST)."""
    if request.method in ("PUT", "POST") and request.headers.get("Upload-Complete") is not None:
        return True
    return UPLOAD_QUERY in request.query and UPLOAD_QUERY in query_values(request.query)


def resumable_upload(request: Request, body: Optional[BodyReader], config: Config,
                     may: Checker, path: Tuple[List[str], bool],
                     hold: Optional[Hold] = None) -> Response:
    """Answer a request :func:`is_resumable` claims: creation, offset retrieval, append or
    cancellation, by method and whether an upload resource is named.  ``path`` is the
    request path as routing decoded it, ``may`` the access checker, ``hold`` WebDAV's locks
    on the name (as for :func:`~nex.files.upload.put_file`)."""
    token = query_values(request.query).get(UPLOAD_QUERY)
    if token is None:
        return _create(request, body, config, may, path, hold)
    allow = ("Allow", ", ".join(RESOURCE_METHODS))
    if request.method == "OPTIONS":
        return Response(204, [allow])
    if request.method not in RESOURCE_METHODS:
        raise HTTPError(405, f"An upload resource takes {allow[1]}.", headers=[allow])
    match = TOKEN.fullmatch(token)
    folder, name = _target(path, config, may)
    try:
        if match is None or match["name_digest"] not in (None, _name_digest(name)):
            raise _no_upload()
        length = None if match["length"] is None else int(match["length"])
        temp_name = UPLOAD_TEMP_PREFIX + token
        if request.method == "DELETE":
            os.close(_open(folder, temp_name, _READ, config.upload_expiry)[0])  # 404 unless live
            try:
                os.unlink(temp_name, dir_fd=folder.fd)
            except FileNotFoundError:
                raise _no_upload() from None
            return Response(204, [_NO_STORE])
        if request.method == "HEAD":
            descriptor, age = _open(folder, temp_name, _READ, config.upload_expiry)
            try:
                offset = os.fstat(descriptor).st_size
            finally:
                os.close(descriptor)
            return Response(204, [_NO_STORE, *_progress(offset, length),
                                  ("Upload-Limit", _limit(config, age))])
        return _append(request, body, folder, name, temp_name, length,
                       match["exclusive"] is not None, _unchanged(match), config, hold)
    finally:
        folder.close()


def _create(request: Request, body: Optional[BodyReader], config: Config,
            may: Checker, path: Tuple[List[str], bool], hold: Optional[Hold]) -> Response:
    """Upload creation (draft §4.1), with PUT's checks before the body is read."""
    headers = request.headers
    complete = _complete(headers)
    length = _count(headers, "Upload-Length")
    if complete and not request.chunked:
        if length is not None and length != request.body_length:
            raise HTTPError(400, "Upload-Length differs from the complete body's length.")
        length = request.body_length
    if length is not None and length > config.max_upload_size:
        raise _too_large(config)
    folder, name = _target(path, config, may)
    try:
        existing = folder.check(name)
        put_preconditions(headers, existing)
        exclusive = parse_etag_list(headers.get("If-None-Match", "")) == ANY
        unchanged = judged_etag(headers, existing)
        pending = folder.create(name, "r" + ("" if length is None else str(length))
                                + ("x" if exclusive else "")
                                + ("" if unchanged is None else
                                   "m" + ("" if unchanged == ANY_FILE else unchanged.strip('"')))
                                + "n" + _name_digest(name))
        _lock(pending)  # held while this request writes: an append meanwhile gets 409
        token = pending.temp_name[len(UPLOAD_TEMP_PREFIX):]
        location = f"{encode_path(folder.segments + [name])}?{UPLOAD_QUERY}={token}"
        resource = [("Location", location), ("Upload-Limit", _limit(config, 0))]
        if body is not None:
            try:
                body.interim(104, resource)
            except HTTPError:
                pending.discard()  # the client never learnt where to resume
                raise
        return _receive(pending, body, 0, length, complete, exclusive, unchanged, resource,
                        hold)
    finally:
        folder.close()


def _append(request: Request, body: Optional[BodyReader], folder: UploadFolder, name: str,
            temp_name: str, length: Optional[int], exclusive: bool, unchanged: Optional[str],
            config: Config, hold: Optional[Hold]) -> Response:
    """Append (draft §4.4): the body goes on at the upload's offset, which it must name;
    with ``exclusive`` (the creation's ``If-None-Match: *``) the completed file replaces
    none, with ``unchanged`` (:func:`~nex.files.upload.judged_etag`) only the file that is
    still the one the creation's preconditions were judged against."""
    headers = request.headers
    content_type = headers.get("Content-Type")
    media_type = MEDIA_TYPE.fullmatch(content_type) if content_type is not None else None
    if (media_type is None
            or f"{media_type['type']}/{media_type['subtype']}".lower() != PARTIAL_UPLOAD):
        raise HTTPError(415, f"An append is sent as {PARTIAL_UPLOAD}.")
    claimed = _count(headers, "Upload-Offset")
    if claimed is None:
        raise HTTPError(400, "An append names its Upload-Offset.")
    complete = _complete(headers)
    declared = _count(headers, "Upload-Length")
    if declared is not None and length is not None and declared != length:
        raise HTTPError(400, "Upload-Length differs from the length the upload began with.")
    length = declared if length is None else length
    descriptor, _ = _open(folder, temp_name, _APPEND, config.upload_expiry)
    pending = PendingFile(folder, name, temp_name, descriptor)
    try:
        _lock(pending)
        if not _still_partial(folder, temp_name, descriptor):
            raise _no_upload()  # named or cancelled between its opening and its lock
        offset = os.fstat(descriptor).st_size
        if claimed != offset:
            raise HTTPError(409, f"The upload's offset is {offset}, not {claimed}.",
                            headers=[("Upload-Offset", str(offset))])
        if complete and length is None and not request.chunked:
            length = offset + request.body_length
        if length is not None:
            if length < offset or (not request.chunked and offset + request.body_length
                                   > length):
                raise _past_length()
            if length > config.max_upload_size:
                raise _too_large(config)
        folder.check(name)  # the name may have been taken or hidden meanwhile
    except BaseException:
        pending.keep()
        raise
    return _receive(pending, body, offset, length, complete, exclusive, unchanged, [], hold)


def _receive(pending: PendingFile, body: Optional[BodyReader], offset: int,
             length: Optional[int], complete: bool, exclusive: bool, unchanged: Optional[str],
             resource: List[Tuple[str, str]], hold: Optional[Hold]) -> Response:
    """Write ``body`` after ``offset`` bytes of ``pending``; name the file if ``complete``
    (as :func:`~nex.files.upload.store` names it, with ``exclusive`` and ``unchanged``).

    Whatever ends the body early keeps what arrived, for the client to resume from, and
    ends the request with the body reader's error.
    """
    config = pending.folder.config
    try:
        if body is not None:
            body.limit = (config.max_upload_size if length is None else length) - offset
            try:
                for piece in body:
                    pending.write(piece)
                    offset += len(piece)
            except HTTPError as error:
                if error.status != 413:
                    raise
                # The body reader's cap is what is left: name the upload's own bound.
                bound = _too_large(config) if length is None else _past_length()
                bound.close = True  # the rest of the body was not read
                raise bound from None
        if not complete:
            pending.keep()
            return Response(201 if resource else 204,
                            [_NO_STORE, *resource[:1], *_progress(offset, length)])
        if length is not None and offset != length:
            raise HTTPError(400, f"The upload ended at {offset} bytes; it is {length} long.")
        pending.folder.check(pending.name)  # the name may still take it: rules, policy
        # Finishing closes the descriptor, and with it would go the upload's lock while the
        # naming waits for the folder: a copy of it keeps the lock until the file is named.
        lock = os.dup(pending.fileno())
        try:
            store(pending, exclusive, hold, unchanged)
        finally:
            os.close(lock)
    except ChangedMeanwhile:
        pending.discard()  # the file to replace is gone for good, and so is this upload
        raise
    except BaseException:
        pending.keep()
        raise
    return stored(pending)


def _unchanged(match: "re.Match[str]") -> Optional[str]:
    """What the file a token's upload replaces must still be (see
    :func:`~nex.files.upload.judged_etag`): its ETag, :data:`ANY_FILE`, or None."""
    if match["judged"] is None:
        return None
    return ANY_FILE if match["etag"] is None else f'"{match["etag"]}"'


def _name_digest(name: str) -> str:
    """The 64-bit digest of a file name that binds an upload's token to that name."""
    return hashlib.blake2b(os.fsencode(name), digest_size=8).hexdigest()


def _lock(pending: PendingFile) -> None:
    """Hold the upload's lock for this request (released when its descriptor closes); 409
    with ``Retry-After`` while another request writes to it."""
    try:
        fcntl.flock(pending.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise HTTPError(409, "Another request is appending to this upload.",
                        headers=[("Retry-After", "1")]) from None


def _still_partial(folder: UploadFolder, temp_name: str, descriptor: int) -> bool:
    """Whether the upload's partial data ``temp_name`` in ``folder`` is still the file open
    as ``descriptor``, neither named nor cancelled since."""
    try:
        named = os.stat(temp_name, dir_fd=folder.fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _target(path: Tuple[List[str], bool], config: Config,
            may: Checker) -> Tuple[UploadFolder, str]:
    """The open folder of the file at the decoded request ``path``, and the file's name,
    found as PUT finds them, after the access checker allowed writing there."""
    folder, name = file_folder(path, config, may)
    try:
        folder.check_access(name)
    except BaseException:
        folder.close()
        raise
    return folder, name


def _open(folder: UploadFolder, temp_name: str, flags: int,
          expiry: int) -> Tuple[int, float]:
    """A descriptor of the live upload ``temp_name`` in ``folder``, and the seconds since its
    last byte arrived; an expired one is removed, and it and a missing one are 404."""
    try:
        descriptor = os.open(temp_name, flags, dir_fd=folder.fd)
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ELOOP):  # ELOOP: a link put in its place
            raise _no_upload() from None
        raise
    status = os.fstat(descriptor)
    age = max(0.0, time.time() - status.st_mtime)
    if not stat.S_ISREG(status.st_mode) or age > expiry:
        os.close(descriptor)
        if stat.S_ISREG(status.st_mode):
            try:
                os.unlink(temp_name, dir_fd=folder.fd)
            except FileNotFoundError:
                pass
        raise _no_upload()
    return descriptor, age


def _progress(offset: int, length: Optional[int]) -> List[Tuple[str, str]]:
    """The fields that tell a client where an unfinished upload stands (draft §4.2)."""
    fields = [("Upload-Offset", str(offset)), ("Upload-Complete", "?0")]
    if length is not None:
        fields.append(("Upload-Length", str(length)))
    return fields


def _limit(config: Config, age: float) -> str:
    """``Upload-Limit`` (draft §4.1.3): the largest upload, and the seconds an upload that
    received its last byte ``age`` seconds ago has left."""
    return f"max-size={config.max_upload_size}, expires={max(0, int(config.upload_expiry - age))}"


def _complete(headers: Headers) -> bool:
    """``Upload-Complete`` (an sf-boolean, draft §5.2); 400 when missing or malformed."""
    value = headers.get("Upload-Complete")
    match = SF_BOOLEAN.fullmatch(value) if value is not None else None
    if match is None:
        raise HTTPError(400, "Upload-Complete must be ?0 or ?1.")
    return match["value"] == "1"


def _count(headers: Headers, name: str) -> Optional[int]:
    """A byte count field (a non-negative sf-integer); None when absent, 400 when malformed."""
    value = headers.get(name)
    if value is None:
        return None
    if not SF_COUNT.fullmatch(value):
        raise HTTPError(400, f"{name} must be a number of bytes.")
    return int(value)


def _too_large(config: Config) -> HTTPError:
    return HTTPError(413, "The upload is larger than this server accepts ("
                          f"{size_limit('max_upload_size', config.max_upload_size)}).")


def _past_length() -> HTTPError:
    return HTTPError(400, "The append goes past the upload's length.")


def _no_upload() -> HTTPError:
    return HTTPError(404, "There is no such upload: it was completed, cancelled or expired.")
