"""The folder download handler: ``?download=zip`` on a listed folder streams it as a zip.

The archive holds exactly what a listing of the folder and of each folder below it shows
(:func:`nex.files.listing.read_folder`: the same dotfile rule and symlink policy), under one top
folder named like the archive.  A folder reached a second time through links is left out,
so links that loop cannot make an archive without end.

Nothing is written to disk and the archive is never held whole: the stdlib's ``zipfile``
writes into a sink that the response's body stream empties as it goes, files are read in
pieces, and the writer sends the pieces chunked to an HTTP/1.1 client, or ends the body by
closing the connection for HTTP/1.0.  Memory grows with the number of entries (the plan, and
the central directory ``zipfile`` writes last), never with the size of the files.  Before anything is sent, the folder is walked once
and refused with ``413`` when its files add up to more than ``max_zip_size``.  Text and
other compressible types are deflated, everything else stored as it is; ``zipfile`` turns
to zip64 records where a size or an offset needs them.
"""

from __future__ import annotations

import re
import time
import zipfile
from typing import TYPE_CHECKING, Iterator, List, NamedTuple, Optional
from urllib.parse import quote

from nex.http.errors import HTTPError, size_limit
from nex.files.listing import human_size, query_values, read_folder
from nex.files.mediatypes import content_type, file_extension
from nex.files.paths import Target
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


def folder_archive(target: Target, config: Config) -> Response:
    """The ``200`` zip of the folder ``target`` (a directory :func:`resolve` returned).

    Raises ``HTTPError`` 404 when folder downloads are off (``zip_download``), 413 when the
    folder's files add up to more than ``max_zip_size``, and 403/404 when the folder itself
    cannot be read.  The body is a stream of unknown length (see the module).
    """
    if not config.zip_download:
        raise HTTPError(404, f"No download is offered for {target.url_path}.")
    name = archive_name(target.url_path, config.server_name)
    members = plan_archive(target, config, name)
    headers = [("Content-Type", "application/zip"),
               ("Content-Disposition", content_disposition(name + ".zip"))]
    return Response(200, headers, stream=stream_archive(members), stream_length=None)


def plan_archive(folder: Target, config: Config, top: str) -> List[Member]:
    """Every entry of the archive of ``folder``, folders before what they hold, under the
    top folder ``top``.

    Raises ``HTTPError`` 413 as soon as the files add up to more than
    ``config.max_zip_size``, and the 403/404 of :func:`read_folder` for ``folder`` itself;
    a folder below it that cannot be read is left out.
    """
    members = [Member(top + "/", None, 0, folder.stat.st_mtime, False)]
    seen = {(folder.stat.st_dev, folder.stat.st_ino)}
    total = 0
    pending = [(folder, top + "/", iter(read_folder(folder, config)))]
    while pending:
        current, prefix, entries = pending[-1]
        entry = next(entries, None)
        if entry is None:
            pending.pop()
            continue
        name, is_folder, st = entry
        fs_path = current.fs_path.rstrip("/") + "/" + name
        if not is_folder:
            total += st.st_size
            if total > config.max_zip_size:
                limit = human_size(config.max_zip_size)
                raise HTTPError(413, f"The folder holds more than {limit}, the most a "
                                     "download may hold ("
                                     f"{size_limit('max_zip_size', config.max_zip_size)}).")
            members.append(Member(prefix + name, fs_path, st.st_size, st.st_mtime,
                                  content_type(file_extension(name), config.mime_types)[1]))
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        below = Target("directory", fs_path, current.url_path + name + "/", st)
        try:
            inside = read_folder(below, config)
        except HTTPError:
            continue
        members.append(Member(prefix + name + "/", None, 0, st.st_mtime, False))
        pending.append((below, prefix + name + "/", iter(inside)))
    return members


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


def stream_archive(members: List[Member]) -> Iterator[bytes]:
    """The zip of ``members`` as pieces of bytes, produced as they are taken.

    A file that cannot be opened any more is left out; one that shrank since the plan ends
    early, one that grew is cut to its planned size, so each entry stays consistent.  A read
    error part way through a file raises :class:`BodyFault`: the body cannot be finished.
    """
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w")
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
