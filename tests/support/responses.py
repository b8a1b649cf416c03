"""Responses without sockets: files with a fixed time to serve, and what a Response holds."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from typing import Dict, Iterable, List, Tuple

from nex.process.config import Config
from nex.files.paths import Target
from nex.files.static import serve_file
from nex.http.request import Headers, Request
from nex.http.response import FileSlice, Response

#: A fixed modification time (Sun, 13 Sep 2020 12:26:40 GMT) so validators are predictable.
MTIME = 1_600_000_000
MTIME_DATE = "Sun, 13 Sep 2020 12:26:40 GMT"


def file_request(headers: Iterable[Tuple[str, str]] = (), method: str = "GET") -> Request:
    """A parsed request for ``/f`` with the given header fields."""
    return Request(method, "/f", "/f", "", "HTTP/1.1", Headers(list(headers)), "localhost",
                   True)


class TempFolder(unittest.TestCase):
    """A temporary folder per test, with a helper that writes a file there."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder, True)

    def write(self, name: str, data: bytes) -> str:
        """Write ``data`` to the file ``name`` in the folder and return its path."""
        path = os.path.join(self.folder, name)
        with open(path, "wb") as out:
            out.write(data)
        return path


class TempFiles(TempFolder):
    """A :class:`TempFolder` whose files have a fixed modification time, with a helper that
    writes a file and returns its Target."""

    def write(self, name: str, data: bytes, mtime: float = MTIME) -> str:
        path = super().write(name, data)
        os.utime(path, (mtime, mtime))
        return path

    def target(self, name: str, data: bytes, mtime: float = MTIME) -> Target:
        path = self.write(name, data, mtime)
        return Target("file", path, "/" + name, os.stat(path))

    def serve(self, target: Target, headers: Iterable[Tuple[str, str]] = (),
              method: str = "GET", **settings) -> Response:
        response = serve_file(file_request(headers, method), target, Config(**settings))
        self.addCleanup(close, response)
        return response


def close(response: Response) -> None:
    """Close the response's file, as the writer would."""
    if response.file is not None:
        response.file.close()


def fields(response: Response) -> Dict[str, str]:
    """The response's header fields by lower-case name, its ``made_fields`` lines among
    them (each name is set at most once)."""
    made = [tuple(line.split(": ", 1)) for line in response.made_fields.split("\r\n") if line]
    pairs = [*made, *response.headers]
    names = [name.lower() for name, _ in pairs]
    if len(names) != len(set(names)):
        raise AssertionError(f"a field name is set twice: {pairs}")
    return {name.lower(): value for name, value in pairs}


def body_bytes(response: Response) -> bytes:
    """The bytes the response's body pieces describe, read from its file."""
    out = []
    for piece in response.body:
        if isinstance(piece, FileSlice):
            data = os.pread(response.file.fileno(), piece.count, piece.offset)
            if len(data) != piece.count:
                raise AssertionError(f"the file is shorter than {piece}")
            out.append(data)
        else:
            out.append(bytes(piece))
    return b"".join(out)


def parse_multipart(body: bytes, content_type_value: str
                    ) -> List[Tuple[Dict[str, str], bytes]]:
    """The parts of a multipart/byteranges body as ``(fields, data)``, strictly framed."""
    prefix = "multipart/byteranges; boundary="
    if not content_type_value.startswith(prefix):
        raise AssertionError(f"not multipart/byteranges: {content_type_value}")
    boundary = content_type_value[len(prefix):].encode("ascii")
    opening, closing = b"--" + boundary + b"\r\n", b"\r\n--" + boundary + b"--\r\n"
    if not (body.startswith(opening) and body.endswith(closing)):
        raise AssertionError(f"badly delimited: {body[:100]!r}")
    parts = []
    for part in body[len(opening):-len(closing)].split(b"\r\n--" + boundary + b"\r\n"):
        head, blank, data = part.partition(b"\r\n\r\n")
        if not blank:
            raise AssertionError(f"a part without a blank line: {part[:100]!r}")
        part_fields = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, colon, value = line.partition(": ")
            if not colon:
                raise AssertionError(f"a malformed part field: {line!r}")
            part_fields[name.lower()] = value
        parts.append((part_fields, data))
    return parts


def make_request(method: str, target: str, host: str = "localhost",
                 headers: Iterable[Tuple[str, str]] = ()) -> Request:
    """A parsed HTTP/1.1 request as the parser would build it."""
    path, _, query = target.partition("?")
    return Request(method, target, path if target != "*" else "", query, "HTTP/1.1",
                   Headers([("Host", host), *headers]), host, True)
