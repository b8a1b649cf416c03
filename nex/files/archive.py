"""The folder download handler: ``?download=zip`` on a listed folder streams it as a zip.

The archive holds exactly what a listing of the folder and of each folder below it shows
(:func:`nex.files.listing.scan_folder`: the same dotfile rule, symlink policy and access
checks), under one top
folder named like the archive.  A folder reached a second time through links is left out,
so links that loop cannot make an archive without end.

Nothing is written to disk and the archive is never held whole: the stdlib's ``zipfile``
writes into a sink that the response's body stream empties as it goes, files are read in
pieces, and the writer sends the pieces chunked to an HTTP/1.1 client, or ends the body by
closing the connection for HTTP/1.0.  Memory does not grow with the size of the files, and
barely with their number: the folder is walked as the archive is written, holding one
listing per folder level, and the central directory ``zipfile`` writes last is kept packed
(:class:`_CentralDirectory`, about 60 bytes and the name per entry).  Before anything is
sent, the folder is walked once and refused with ``413`` when its files add up to more than
``max_zip_size``; ``max_concurrent_zips`` bounds how many archives are made at once
(:class:`ZipSlots`, ``503`` past it).  Text and
other compressible types are deflated, everything else stored as it is; ``zipfile`` turns
to zip64 records where a size or an offset needs them.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import threading
import time
import zipfile
from typing import TYPE_CHECKING, Iterable, Iterator, List, NamedTuple, Optional
from urllib.parse import quote

from nex.http.errors import HTTPError, size_limit
from nex.files.listing import (entry_order, folder_below, human_size, query_values,
                               readable, scan_folder)
from nex.files.mediatypes import content_type, file_extension
from nex.files.paths import Checker, Target, real_path, servable_entry
from nex.http.response import BodyFault, Response

if TYPE_CHECKING:
    from nex.process.config import Config

#: Bytes read from a file at a time, and gathered before a piece of the body is sent.
PIECE_SIZE = 256 * 1024
_FLUSH_SIZE = 64 * 1024
# Unix permissions in the high half of external_attr (as Info-ZIP writes them), with the
# MS-DOS folder bit for folders.
_FOLDER_ATTRIBUTES = (0o40755 << 16) | 0x10
_FILE_ATTRIBUTES = 0o100644 << 16
# The MS-DOS times a zip entry can carry.
_EARLIEST = (1980, 1, 1, 0, 0, 0)
_LATEST = (2107, 12, 31, 23, 59, 58)
# RFC 8187 §3.2.1 attr-char, beyond what quote() always keeps (letters, digits, "_.-~").
_ATTR_CHARS = "!#$&+^`|"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")
# Seconds a client is asked to wait when every archive slot is taken.
_RETRY_AFTER = 5


class Member(NamedTuple):
    """One entry of the archive: ``name`` inside it (folders end in ``/``), the file to read
    (None for a folder), its size and modification time, and whether to deflate it."""

    name: str
    fs_path: Optional[str]
    size: int
    mtime: float
    deflate: bool


def wants_archive(query: str) -> bool:
    """Whether the query (as sent, without ``?``) asks for the folder as a zip."""
    return query_values(query).get("download") == "zip"


def archive_name(url_path: str, server_name: str) -> str:
    """The name of the folder ``url_path``'s archive, without ``.zip``: the folder's own
    name, or for the document root ``server_name`` with characters other than letters,
    digits, ``.``, ``-`` and ``_`` replaced by ``_``."""
    segments = [segment for segment in url_path.split("/") if segment]
    if segments:
        return segments[-1]
    return "".join(char if _PLAIN_NAME.fullmatch(char) else "_" for char in server_name)


def content_disposition(filename: str) -> str:
    """``attachment`` naming ``filename`` as RFC 6266 asks.

    The quoted ``filename`` is ASCII, with ``_`` for every character that is not printable
    ASCII and for ``"`` and ``\\``; when that changed the name, ``filename*`` (RFC 8187)
    carries it whole, UTF-8 and percent-encoded, for the clients that read it.
    """
    fallback = "".join(char if " " <= char <= "~" and char not in '"\\' else "_"
                       for char in filename)
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe=_ATTR_CHARS)}"
    return value


class ZipSlots:
    """How many archives may be made at once (``[files] max_concurrent_zips``): each holds
    a worker and memory for as long as it streams.  Shared by every worker thread."""

    def __init__(self, count: int) -> None:
        self._slots = threading.BoundedSemaphore(count)

    def take(self) -> None:
        """Take a slot, or raise ``HTTPError(503)`` with ``Retry-After`` when none is free."""
        if not self._slots.acquire(blocking=False):
            raise HTTPError(503, "Too many folder downloads are being made; try again shortly.",
                            headers=[("Retry-After", str(_RETRY_AFTER))])

    def give_back(self) -> None:
        """Free a slot taken with :meth:`take`."""
        self._slots.release()


class _SlotStream:
    """The body stream of an archive, which gives its slot back once it ends or is closed."""

    def __init__(self, pieces: Iterator[bytes], slots: ZipSlots) -> None:
        self._pieces = pieces
        self._slots: Optional[ZipSlots] = slots

    def __iter__(self) -> Iterator[bytes]:
        return self._pieces

    def close(self) -> None:
        """End the archive (if it was cut short) and free its slot; safe to call again."""
        self._pieces.close()  # type: ignore[attr-defined]
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.give_back()


def folder_archive(target: Target, config: Config, may: Optional[Checker] = None,
                   slots: Optional[ZipSlots] = None) -> Response:
    """The ``200`` zip of the folder ``target`` (a directory :func:`resolve` returned).

    ``may`` is the access checker: only entries it lets be read go in, each checked as the
    folder is walked.  ``slots`` bounds how many archives are made at once.  Raises
    ``HTTPError`` 404 when folder downloads are off (``zip_download``), 503 when no slot is
    free, 413 when the folder's files add up to more than ``max_zip_size``, and 403/404
    when the folder itself cannot be read.  The body is a stream of unknown length (see
    the module).
    """
    if not config.zip_download:
        raise HTTPError(404, f"No download is offered for {target.url_path}.")
    name = archive_name(target.url_path, config.server_name)
    if slots is not None:
        slots.take()
    try:
        members = plan_archive(target, config, name, may)
    except BaseException:
        if slots is not None:
            slots.give_back()
        raise
    headers = [("Content-Type", "application/zip"),
               ("Content-Disposition", content_disposition(name + ".zip"))]
    stream = stream_archive(members)
    return Response(200, headers, stream=stream if slots is None else _SlotStream(stream, slots),
                    stream_length=None)


def plan_archive(folder: Target, config: Config, top: str,
                 may: Optional[Checker] = None) -> Iterator[Member]:
    """Every entry of the archive of ``folder`` that ``may`` (the access checker) lets be
    read, folders before what they hold, under the top folder ``top``.

    The folder is walked once now, adding up the sizes of its files: ``HTTPError`` 413 as
    soon as they pass ``config.max_zip_size``, and the 403/404 of
    :func:`nex.files.listing.scan_folder` for ``folder`` itself; a folder below it that
    cannot be read is left out.  The entries come
    from a second walk, made as the archive is written, so no list of them is kept; should
    the folder have grown past the limit meanwhile, that walk raises :class:`BodyFault`.
    """
    limit = config.max_zip_size
    total = 0
    for member in _walk(folder, config, top, may):
        total += member.size
        if total > limit:
            raise HTTPError(413, f"The folder holds more than {human_size(limit)}, the most "
                                 f"a download may hold ({size_limit('max_zip_size', limit)}).")
    return _within_limit(_walk(folder, config, top, may), limit)


def _within_limit(members: Iterator[Member], limit: int) -> Iterator[Member]:
    """``members``, ending in :class:`BodyFault` once their files add up to over ``limit``."""
    total = 0
    for member in members:
        total += member.size
        if total > limit:
            raise BodyFault("the folder grew past max_zip_size while it was sent")
        yield member


def _names(folder: Target, config: Config, may: Optional[Checker]) -> Iterator[str]:
    """The names of the entries of ``folder`` an archive holds, in a listing's order.

    Only the names are kept (a stat per entry takes ten times the memory), so a folder of
    many files costs little while it is walked; each entry is looked at again as it is
    reached."""
    named = [(name, is_folder) for name, is_folder, _ in scan_folder(folder, config, may)]
    named.sort(key=lambda pair: entry_order(*pair))
    return iter([name for name, _ in named])


def _real_folder(folder: Target, config: Config) -> str:
    """The real path of ``folder``, ending in ``/``."""
    return real_path(folder.fs_path, config).rstrip("/") + "/"


def _walk(folder: Target, config: Config, top: str,
          may: Optional[Checker]) -> Iterator[Member]:
    """The entries of the archive of ``folder`` as the folder is read (see
    :func:`plan_archive`); what it holds at once is the names of one folder per level."""
    yield Member(top + "/", None, 0, folder.stat.st_mtime, False)
    seen = {(folder.stat.st_dev, folder.stat.st_ino)}
    pending = [(folder, _real_folder(folder, config), top + "/", _names(folder, config, may))]
    while pending:
        current, real_folder, prefix, names = pending[-1]
        name = next(names, None)
        if name is None:
            pending.pop()
            continue
        st = servable_entry(current, name, config)
        if st is None:  # gone, or changed into something not served, since it was listed
            continue
        is_folder = stat.S_ISDIR(st.st_mode)
        fs_path = current.fs_path.rstrip("/") + "/" + name
        link = os.path.islink(fs_path)
        # Checked again as it is reached: it may have become a link since it was listed.
        if may is not None and not readable(may, current, real_folder, name, is_folder, link):
            continue
        if not is_folder:
            yield Member(prefix + name, fs_path, st.st_size, st.st_mtime,
                         content_type(file_extension(name), config.mime_types)[1])
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        below = folder_below(current, name, st, link)
        try:
            inside = _names(below, config, may)
        except HTTPError:
            continue
        yield Member(prefix + name + "/", None, 0, st.st_mtime, False)
        pending.append((below, _real_folder(below, config), prefix + name + "/", inside))


class _CentralDirectory:
    """Where ``zipfile`` keeps the entries it has written, for the central directory it
    writes last: packed into one byte string (about 60 bytes and the name per entry)
    instead of a ``ZipInfo`` object each, which takes ten times that.

    ``zipfile`` only appends to it, asks its length, and iterates it once when it closes;
    iterating gives back ``ZipInfo`` objects with every field the central directory takes.
    """

    _RECORD = struct.Struct("<QQQIIHHHHHHHHHHHH")

    def __init__(self) -> None:
        self._data = bytearray()
        self._count = 0

    def append(self, info: zipfile.ZipInfo) -> None:
        """Keep what the central directory needs of ``info``."""
        name = info.filename.encode("utf-8")
        self._data += self._RECORD.pack(
            info.header_offset, info.compress_size, info.file_size, info.CRC,
            info.external_attr, info.flag_bits, info.compress_type, info.extract_version,
            info.create_version, info.create_system, len(name), *info.date_time)
        self._data += name
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def _records(self) -> Iterator[tuple]:
        data, offset, size = self._data, 0, self._RECORD.size
        while offset < len(data):
            fields = self._RECORD.unpack_from(data, offset)
            offset += size
            name_length = fields[10]
            yield fields, bytes(data[offset:offset + name_length]).decode("utf-8")
            offset += name_length

    def __iter__(self) -> Iterator[zipfile.ZipInfo]:
        for fields, name in self._records():
            info = zipfile.ZipInfo(name, fields[11:17])
            (info.header_offset, info.compress_size, info.file_size, info.CRC,
             info.external_attr, info.flag_bits, info.compress_type, info.extract_version,
             info.create_version, info.create_system) = fields[:10]
            yield info


class _NoNames(dict):
    """``zipfile``'s table of names written, which it uses only to warn of a name written
    twice (an archive's names are unique): nothing is kept."""

    def __setitem__(self, name: str, info: zipfile.ZipInfo) -> None:
        pass


class _Sink:
    """Where ``zipfile`` writes: the bytes wait here until the body stream takes them.

    It has no ``tell`` or ``seek``, so ``zipfile`` counts the offsets itself and writes each
    entry's sizes after its data (a data descriptor) instead of going back to its header.
    """

    def __init__(self) -> None:
        self._pieces: List[bytes] = []
        self.size = 0
        self._open = True

    def write(self, data: bytes) -> int:
        """Keep ``data`` (dropped once the stream was abandoned)."""
        if self._open:
            self._pieces.append(bytes(data))
            self.size += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to do: the stream takes the bytes."""

    def take(self) -> bytes:
        """Everything written since the last call."""
        data = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
        self._pieces = []
        self.size = 0
        return data

    def abandon(self) -> None:
        """Drop whatever is written from now on."""
        self._open = False
        self._pieces = []
        self.size = 0


def stream_archive(members: Iterable[Member]) -> Iterator[bytes]:
    """The zip of ``members`` as pieces of bytes, produced as they are taken.

    A file that cannot be opened any more is left out; one that shrank since the plan ends
    early, one that grew is cut to its planned size, so each entry stays consistent.  A read
    error part way through a file raises :class:`BodyFault`: the body cannot be finished.
    """
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w")
    archive.filelist = _CentralDirectory()  # type: ignore[assignment]
    archive.NameToInfo = _NoNames()
    finished = False
    try:
        for member in members:
            info = zipfile.ZipInfo(member.name, _zip_time(member.mtime))
            if member.fs_path is None:
                info.external_attr = _FOLDER_ATTRIBUTES
                archive.writestr(info, b"")
            else:
                yield from _add_file(archive, info, member, sink)
            if sink.size >= _FLUSH_SIZE:
                yield sink.take()
        archive.close()
        finished = True
        yield sink.take()
    finally:
        if not finished:
            # Cut short (the client left, a read failed): finish nothing anyone will read.
            sink.abandon()
            archive.close()


def _add_file(archive: zipfile.ZipFile, info: zipfile.ZipInfo, member: Member,
              sink: _Sink) -> Iterator[bytes]:
    """Write ``member``'s file into ``archive``, yielding the sink's bytes as they pile up."""
    try:
        source = open(member.fs_path, "rb", buffering=0)
    except OSError:
        return
    with source:
        info.external_attr = _FILE_ATTRIBUTES
        info.compress_type = zipfile.ZIP_DEFLATED if member.deflate else zipfile.ZIP_STORED
        info.file_size = member.size  # decides whether the entry needs zip64 records
        with archive.open(info, "w") as entry:
            remaining = member.size
            while remaining:
                try:
                    piece = source.read(min(PIECE_SIZE, remaining))
                except OSError as error:
                    raise BodyFault(f"{member.name} could not be read: {error.strerror}"
                                    ) from None
                if not piece:
                    break
                remaining -= len(piece)
                entry.write(piece)
                if sink.size >= _FLUSH_SIZE:
                    yield sink.take()


def _zip_time(mtime: float) -> tuple:
    """``mtime`` as the local date and time a zip entry holds, within what it can hold."""
    try:
        moment = tuple(time.localtime(mtime)[:6])
    except (OverflowError, OSError, ValueError):
        return _EARLIEST
    return min(max(moment, _EARLIEST), _LATEST)
