"""The static handler: one regular file as a 200, 206 or 304 response.

:func:`serve_file` picks the representation (the file, a precompressed ``.br``/``.gz``
sidecar, or the file gzipped on the fly), derives its validators, evaluates the request's
preconditions (:mod:`nex.http.conditional`) and Range (:mod:`nex.http.ranges`), and only then opens
the one file the body comes from.  The writer adds Content-Length, Date, Server and
Connection; this module sets representation and caching fields only.
"""

from __future__ import annotations

import functools
import gzip
import os
import stat as stat_module
import threading
import time
from typing import TYPE_CHECKING, Callable, Dict, List, NamedTuple, Optional, Tuple

from nex.http.dates import format_http_date
from nex.http.conditional import if_range_holds, make_etag, not_modified
from nex.http.errors import HTTPError
from nex.files.filecache import (FileChangedError, FolderIdentity, SmallFileCache, folder_identity,
                           settled)
from nex.http.grammar import WEIGHTED_CODING, parse_list
from nex.http.negotiation import weight
from nex.files.oserrors import reply_for
from nex.files.mediatypes import content_type, file_extension
from nex.files.opencache import FileReplacedError, OpenFileCache
from nex.http.ranges import ByteRange, content_range_line, multipart_body, select_ranges
from nex.http.request import Request
from nex.files.paths import Checker, Target, real_path
from nex.http.response import BodyPiece, FileSlice, OpenFile, Response

if TYPE_CHECKING:
    from nex.process.config import Config

#: Files larger than this are never compressed on the fly: the gzip body is held in memory.
MAX_GZIP_SIZE = 16 * 1024 * 1024
_GZIP_LEVEL = 6

_PRECONDITIONS = frozenset({"if-match", "if-unmodified-since", "if-none-match",
                            "if-modified-since"})
_PRECONDITIONS_OR_RANGE = _PRECONDITIONS | {"range"}
# Sidecar coding → (file extension, ETag suffix), in the order preferred when the client
# weighs them equally.
_SIDECARS = {"br": (".br", "-br"), "gzip": (".gz", "-gz")}
#: The file name endings of precompressed sidecars.
SIDECAR_EXTENSIONS = tuple(extension for extension, _ in _SIDECARS.values())
_ACCEPT_RANGES = ("Accept-Ranges", "bytes")
_VARY_ENCODING = (("Vary", "Accept-Encoding"),)
_SANDBOX = ("Content-Security-Policy", "sandbox")
_ACTIVE_TYPES = frozenset({"text/html", "application/xhtml+xml", "image/svg+xml", "text/xml",
                           "application/xml"})


def cache_control(extension: str, config: Config) -> str:
    """``max-age=N`` when ``config.max_age`` names the extension, else ``config.cache_control``."""
    max_age = config.max_age.get(extension)
    return config.cache_control if max_age is None else f"max-age={max_age}"


class FileKind(NamedTuple):
    """What a file's name decides about its responses under one set of settings."""

    #: The Content-Type value.
    media_type: str
    #: Whether sidecars and gzip apply (text, JavaScript, JSON, XML).
    compressible: bool
    #: Content-Type, then ``Content-Security-Policy: sandbox`` where it applies.
    fields: Tuple[Tuple[str, str], ...]
    #: Cache-Control, unless the settings give none.
    policy: Tuple[Tuple[str, str], ...]


def file_kind(name: str, config: Config) -> FileKind:
    """The :class:`FileKind` of the file ``name`` (a path; its extension decides).

    Active content (HTML, SVG, XML) carries ``Content-Security-Policy: sandbox`` where
    uploads are on or ``active_content = sandbox`` asks for it, so a page someone uploaded
    runs as if from an origin of its own and cannot read the site with the visitor's
    credentials.
    """
    extension = file_extension(name)
    media_type, compressible = content_type(extension, config.mime_types)
    fields: Tuple[Tuple[str, str], ...] = (("Content-Type", media_type),)
    if (config.upload or config.active_content == "sandbox") and active_content(media_type):
        fields += (_SANDBOX,)
    cache = cache_control(extension, config)
    return FileKind(media_type, compressible, fields,
                    (("Cache-Control", cache),) if cache else ())


#: How many files' kinds :func:`remembered_kinds` keeps.
FILE_KINDS = 1024


def remembered_kinds(config: Config) -> Callable[[str], FileKind]:
    """:func:`file_kind` under ``config``, remembered for the last :data:`FILE_KINDS` names.

    A kind follows from the name and the settings alone, and the same files are asked for
    again and again; a dispatcher makes one for its settings, so new settings start anew.
    """
    return functools.lru_cache(maxsize=FILE_KINDS)(functools.partial(file_kind, config=config))


@functools.lru_cache(maxsize=128)
def accepted_codings(value: str) -> Tuple[str, ...]:
    """The sidecar codings (``br``, ``gzip``) ``Accept-Encoding: value`` allows, best first.

    Weights are read exactly; ``q=0`` refuses a coding, ``*`` stands for codings not
    listed, ``x-gzip`` means ``gzip``.  Equal weights prefer ``br``.  A coding loses to
    ``identity`` only when identity (named or through ``*``) has a strictly higher weight.
    A malformed field allows nothing, so the file goes out unencoded.  Cached: clients
    send few distinct values.
    """
    elements = parse_list(value, WEIGHTED_CODING)
    if elements is None:
        return ()
    weights: Dict[str, int] = {}
    for match in elements:
        coding = match.group("coding").lower()
        weights.setdefault("gzip" if coding == "x-gzip" else coding,
                           weight(match.group("qvalue")))
    star = weights.get("*")
    identity = weights.get("identity", star)
    ranked = []
    for coding in _SIDECARS:
        given = weights.get(coding, star)
        if given and (identity is None or given >= identity):
            ranked.append((-given, coding))
    ranked.sort(key=lambda item: item[0])
    return tuple(coding for _, coding in ranked)


def _regular_file(path: str) -> Optional[os.stat_result]:
    # lstat: a sidecar symlink could point outside the document root, which the resolver
    # only checked for the file itself, so only plain regular files qualify.
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info if stat_module.S_ISREG(info.st_mode) else None


class AbsentSidecars:
    """Files whose folder was seen to hold no sidecar of them: the file's path → the
    folder's identity then (:func:`nex.files.filecache.folder_identity`).

    While the folder keeps that identity no entry was added, removed or renamed in it, so
    no sidecar can have appeared.  Only absence is remembered: a sidecar that exists is
    looked at on every request.  Past ``limit`` files the table starts over, which bounds
    its memory.  Every worker thread shares one: a look is one dictionary read, and each
    change happens under a lock, so it is safe without the GIL too.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._files: Dict[str, FolderIdentity] = {}
        self._lock = threading.Lock()

    def known(self, fs_path: str, folder: FolderIdentity) -> bool:
        """Whether ``fs_path`` was seen without sidecars in its folder at ``folder``."""
        return self._files.get(fs_path) == folder

    def remember(self, fs_path: str, folder: FolderIdentity) -> None:
        """Note that ``fs_path``'s folder, at ``folder``, holds no sidecar of it."""
        with self._lock:
            if len(self._files) >= self._limit:
                self._files.clear()
            self._files[fs_path] = folder


#: The table every worker thread shares.
_NO_SIDECARS = AbsentSidecars()


def _folder_of(fs_path: str) -> Optional[FolderIdentity]:
    """The identity of the folder holding ``fs_path``, from one ``stat``; None when it
    cannot be had."""
    try:
        return folder_identity(os.stat(fs_path.rpartition("/")[0] or "/"))
    except OSError:
        return None


def _find_sidecar(fs_path: str, codings: Tuple[str, ...],
                  folder: Optional[os.stat_result] = None
                  ) -> Tuple[Optional[Tuple[str, str, os.stat_result]], bool]:
    """The best acceptable sidecar as ``(coding, path, stat)``, and whether to Vary.

    Costs no system call when the client accepts no sidecar coding; the response then
    carries ``Vary: Accept-Encoding`` anyway, since a sidecar might exist.  ``folder`` is
    the ``lstat`` of the file's folder if the caller has it: while that folder has not
    changed since it was seen to hold no sidecar of the file (:data:`_NO_SIDECARS`), the
    answer comes without looking again.
    """
    if not codings:
        return None, True
    identity = _folder_of(fs_path) if folder is None else folder_identity(folder)
    if identity is not None and _NO_SIDECARS.known(fs_path, identity):
        return None, False
    for coding in codings + tuple(coding for coding in _SIDECARS if coding not in codings):
        path = fs_path + _SIDECARS[coding][0]
        info = _regular_file(path)
        if info is not None:
            return ((coding, path, info) if coding in codings else None), True
    # The identity was taken before looking: a sidecar made since changed it.
    if identity is not None and settled(identity):
        _NO_SIDECARS.remember(fs_path, identity)
    return None, False


def _open_error(error: OSError) -> Exception:
    """The reply for a file that could not be opened; unexpected faults go up as they are."""
    if isinstance(error, FileChangedError):
        return HTTPError(503, "The file changed while it was being read; try again.",
                         headers=[("Retry-After", "1")])
    return reply_for(error) or error


class _Representation(NamedTuple):
    """The bytes a response is about: where they live and how they are coded."""

    path: str
    file_stat: os.stat_result
    encoding: Optional[str]
    etag_suffix: str
    on_the_fly: bool
    vary: bool


def _choose(request: Request, target: Target, config: Config,
            may: Optional[Checker] = None) -> _Representation:
    """The compressible file itself, an acceptable sidecar, or the file gzipped on the fly.

    ``vary`` is set whenever the choice could depend on Accept-Encoding, so caches keep
    the variants apart, on every response including 304 and 206.
    """
    size = target.stat.st_size
    gzippable = config.gzip and config.gzip_min_size <= size <= MAX_GZIP_SIZE
    accept = request.headers.get("Accept-Encoding")
    codings = (accepted_codings(accept)
               if accept is not None and (config.precompressed or gzippable) else ())
    vary = gzippable
    if config.precompressed:
        sidecar, sidecar_vary = _find_sidecar(target.fs_path, codings, target.folder)
        if sidecar is not None:
            coding, path, info = sidecar
            if may is None or may("read", _sidecar_url(target, coding), real_path(path, config)):
                return _Representation(path, info, coding, _SIDECARS[coding][1], False, True)
            sidecar_vary = True
        vary = vary or sidecar_vary
    # Never a range of a body compressed on the fly: a Range request gets the file itself.
    if gzippable and "gzip" in codings and "Range" not in request.headers:
        return _Representation(target.fs_path, target.stat, "gzip", "-gzip", True, True)
    return _Representation(target.fs_path, target.stat, None, "", False, vary)


def _sidecar_url(target: Target, coding: str) -> str:
    """The URL path a sidecar of ``target`` would have: an index file's is in its folder."""
    url_path = target.url_path
    if url_path.endswith("/"):
        url_path += target.fs_path.rpartition("/")[2]
    return url_path + _SIDECARS[coding][0]


def active_content(media_type: str) -> bool:
    """Whether a browser runs script in a response of ``media_type`` (with parameters):
    HTML, XHTML, SVG and other XML."""
    essence = media_type.partition(";")[0].strip(" \t").lower()
    return essence in _ACTIVE_TYPES or essence.endswith("+xml")


def serve_file(request: Request, target: Target, config: Config,
               file_cache: Optional[SmallFileCache] = None,
               may: Optional[Checker] = None,
               open_files: Optional[OpenFileCache] = None,
               kind_of: Optional[Callable[[str], FileKind]] = None) -> Response:
    """Answer GET or HEAD for the regular file ``target`` (RFC 9110 §8.8, §13, §14).

    Raises ``HTTPError`` 412 (failed precondition), 416 (no satisfiable range), or 403/404
    when the file cannot be opened.  HEAD gets exactly GET's response; the writer drops the
    body.  Representation choice: an acceptable ``.br``/``.gz`` sidecar when
    ``config.precompressed``; else an in-memory gzip when ``config.gzip``, the type is
    compressible, the size is within bounds and the request has no Range; else the file.
    Ranges of a sidecar are ranges of its coded bytes.  Small files come from ``file_cache``
    when one is given, as bytes instead of an open file; other files' descriptors from
    ``open_files`` when one is given.  ``may`` is the access checker: a sidecar it refuses
    is never sent (the file itself goes instead).  The type and caching fields are the
    file's :func:`file_kind`, from ``kind_of`` (:func:`remembered_kinds` of ``config``)
    when one is given.
    """
    fs_path = target.fs_path
    kind = file_kind(fs_path, config) if kind_of is None else kind_of(fs_path)
    if kind.compressible:
        chosen = _choose(request, target, config, may)
    else:  # media and archives: one representation, no Vary
        chosen = _Representation(fs_path, target.stat, None, "", False, False)
    file_stat = chosen.file_stat
    now = time.time()
    mtime_ns = file_stat.st_mtime_ns
    if mtime_ns // 1_000_000_000 <= now:
        etag, last_modified, validators = _validators(file_stat.st_size, mtime_ns,
                                                      chosen.etag_suffix)
    else:  # RFC 9110 §8.8.2.1: a modification time in the future is replaced by the present
        last_modified = int(now)
        etag = make_etag(file_stat.st_size, mtime_ns, chosen.etag_suffix)
        validators = (("Last-Modified", format_http_date(last_modified)), ("ETag", etag))
    vary = _VARY_ENCODING if chosen.vary else ()
    policy = kind.policy + vary
    ranges = None
    if request.headers.has_any(_PRECONDITIONS_OR_RANGE):
        if (request.headers.has_any(_PRECONDITIONS)
                and not_modified(request.headers, request.method, etag, last_modified, vary)):
            return Response(304, [*validators, *policy])
        ranges = _requested_ranges(request, chosen, etag, last_modified, now,
                                   config.max_ranges)
    whole = _whole_fields(kind.fields, chosen.encoding, validators, policy)
    if chosen.on_the_fly:
        return Response(200, whole, [_gzipped(chosen)])
    size = file_stat.st_size
    cached = None
    if file_cache is not None:
        try:
            cached = file_cache.read(chosen.path, file_stat)
        except OSError as error:
            raise _open_error(error) from None
    file = None if cached is not None else _open_cached(open_files, chosen)
    if ranges is None:
        content = cached if cached is not None else FileSlice(0, size)
        return Response(200, whole, [content] if size else [], file)
    if cached is not None:
        def piece(offset: int, count: int) -> BodyPiece:
            return cached[offset:offset + count]
    else:
        piece = FileSlice
    if len(ranges) == 1:
        # The whole's remembered fields, whose lines the writer made once, and the range's.
        first, last = ranges[0]
        return Response(206, whole, [piece(first, last - first + 1)], file,
                        made_fields=content_range_line(first, last, size))
    # A multipart body has a type of its own, and its parts carry the page's: the sandbox
    # stays (a coded representation is never sent in several ranges).
    own = len(kind.fields) + (chosen.encoding is not None)
    multipart_type, body = multipart_body(ranges, size, kind.media_type, piece)
    return Response(206, [("Content-Type", multipart_type), *kind.fields[1:], *whole[own:]],
                    body, file)


@functools.lru_cache(maxsize=1024)
def _whole_fields(kind_fields: Tuple[Tuple[str, str], ...], encoding: Optional[str],
                  validators: Tuple[Tuple[str, str], ...],
                  policy: Tuple[Tuple[str, str], ...]) -> Tuple[Tuple[str, str], ...]:
    """The fields of a 200 for a whole representation: the kind's own, Content-Encoding,
    the validators, Accept-Ranges and the caching policy.  One tuple for the same
    arguments, so the writer makes and checks its field lines once
    (:func:`~nex.http.response.field_lines`)."""
    coding = (("Content-Encoding", encoding),) if encoding is not None else ()
    return (*kind_fields, *coding, *validators, _ACCEPT_RANGES, *policy)


@functools.lru_cache(maxsize=1024)
def _validators(size: int, mtime_ns: int, etag_suffix: str
                ) -> Tuple[str, int, Tuple[Tuple[str, str], ...]]:
    """``(etag, last_modified, fields)`` of a representation modified in the past: its
    strong entity-tag, its Last-Modified in whole seconds, and both as response fields.

    They follow from the arguments alone (a modification time in the past stays in the
    past), so they are remembered: a file served again costs a dictionary look-up.
    """
    last_modified = mtime_ns // 1_000_000_000
    etag = make_etag(size, mtime_ns, etag_suffix)
    return etag, last_modified, (("Last-Modified", format_http_date(last_modified)),
                                 ("ETag", etag))


def _requested_ranges(request: Request, chosen: _Representation, etag: str,
                      last_modified: int, now: float, max_ranges: int
                      ) -> Optional[List[ByteRange]]:
    """The byte ranges to send, or None for the whole representation (RFC 9110 §14).

    A Range that If-Range voids, or several ranges of a content-coded representation (a
    multipart body of coded bytes has no agreed meaning), gets the whole; no satisfiable
    range raises 416 with ``Content-Range: bytes */size``.
    """
    headers = request.headers
    range_value = headers.get("Range")
    if range_value is None or request.method not in ("GET", "HEAD"):
        return None
    if_range = headers.get("If-Range")
    if if_range is not None and not if_range_holds(if_range, etag, last_modified, now):
        return None
    size = chosen.file_stat.st_size
    ranges = select_ranges(range_value, size, max_ranges)
    if ranges == []:
        vary = [("Vary", "Accept-Encoding")] if chosen.vary else []
        raise HTTPError(416, headers=[("Content-Range", f"bytes */{size}")] + vary)
    if ranges and len(ranges) > 1 and chosen.encoding is not None:
        return None
    return ranges


def _open(path: str) -> OpenFile:
    """The file at ``path`` opened for reading: one ``open`` system call, no buffering."""
    try:
        return OpenFile(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
    except OSError as error:
        raise _open_error(error) from None


def _open_cached(open_files: Optional[OpenFileCache], chosen: _Representation) -> OpenFile:
    """The representation's file from ``open_files`` if there is one, else opened now.

    A file replaced since the resolver's ``stat`` is opened as it is now, as it would be
    without the cache; only what matches that ``stat`` is kept.
    """
    if open_files is not None:
        try:
            return open_files.open(chosen.path, chosen.file_stat)
        except FileReplacedError:
            pass
        except OSError as error:
            raise _open_error(error) from None
    return _open(chosen.path)


def _gzipped(chosen: _Representation) -> bytes:
    """The whole file compressed with gzip (its size is at most :data:`MAX_GZIP_SIZE`)."""
    file = _open(chosen.path)
    try:
        data = os.pread(file.fileno(), chosen.file_stat.st_size, 0)
    finally:
        file.close()
    return gzip.compress(data, compresslevel=_GZIP_LEVEL, mtime=0)
