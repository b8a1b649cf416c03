"""Folder downloads: the plan (what goes in), the streamed zip (bounded pieces, every byte
right), its names and headers, and the real server sending it chunked or close-delimited."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import unittest
import zipfile
from typing import Callable, Dict, List, Tuple
from unittest import mock

from nex.files.archive import (PIECE_SIZE, archive_name, content_disposition, folder_archive,
                         plan_archive, stream_archive, wants_archive)
from nex.process.config import Config
from nex.http.errors import HTTPError
from nex.files.paths import Target
from nex.http.response import BodyFault
from tests.support import NexServer, ResponseReader, exchange

TEXT = b"The quick brown fox jumps over the lazy dog.\n" * 2000


class NamesTest(unittest.TestCase):
    def test_wants_archive(self) -> None:
        cases = {"download=zip": True, "sort=size&download=zip": True,
                 "download=zip&download=tar": True, "download=tar&download=zip": False,
                 "": False, "download": False, "download=ZIP": False, "download=zip ": False,
                 "Download=zip": False, "download=%7Aip": True}
        for query, expected in cases.items():
            with self.subTest(query=query):
                self.assertIs(wants_archive(query), expected)

    def test_archive_name(self) -> None:
        cases = [("/", "localhost", "localhost"), ("/", "::1", "__1"),
                 ("/", "files.example", "files.example"), ("/a/", "x", "a"),
                 ("/a/b c/", "x", "b c"), ("/a/ünï/", "x", "ünï")]
        for url_path, server_name, expected in cases:
            with self.subTest(url_path=url_path, server_name=server_name):
                self.assertEqual(archive_name(url_path, server_name), expected)

    def test_content_disposition(self) -> None:
        cases = {
            "photos.zip": 'attachment; filename="photos.zip"',
            "a b.zip": 'attachment; filename="a b.zip"',
            "ünï.zip": "attachment; filename=\"_n_.zip\"; filename*=UTF-8''%C3%BCn%C3%AF.zip",
            'q"uote.zip': "attachment; filename=\"q_uote.zip\"; filename*=UTF-8''q%22uote.zip",
            "back\\slash.zip":
                "attachment; filename=\"back_slash.zip\"; filename*=UTF-8''back%5Cslash.zip",
            "new\nline.zip":
                "attachment; filename=\"new_line.zip\"; filename*=UTF-8''new%0Aline.zip",
            "semi;colon,=.zip": 'attachment; filename="semi;colon,=.zip"',
        }
        for name, expected in cases.items():
            with self.subTest(name=name):
                self.assertEqual(content_disposition(name), expected)
                self.assertTrue(expected.isascii() and "\n" not in expected)


class Tree:
    """A document root with files of every kind a download must include or leave out."""

    def __init__(self, add_cleanup: Callable[..., None]) -> None:
        self.root = tempfile.mkdtemp(prefix="nex-archive-")
        add_cleanup(shutil.rmtree, self.root)
        outside = tempfile.mkdtemp(prefix="nex-archive-outside-")
        add_cleanup(shutil.rmtree, outside)
        self.write("outside-secret.txt", b"secret", base=outside)
        self.write("top.txt", TEXT)
        self.write("bytes.bin", bytes(range(256)) * 300)
        self.write("empty.dat", b"")
        self.write("docs/readme.md", b"# readme\n")
        self.write("docs/deep/deeper/leaf.html", b"<p>leaf</p>")
        self.write("docs/ünï cødé.txt", "ünï".encode("utf-8"))
        os.makedirs(os.path.join(self.root, "empty folder"))
        self.write(".secret", b"dotfile")
        self.write(".git/config", b"hidden folder")
        self.write("docs/.env", b"hidden file below")
        os.symlink(os.path.join(outside, "outside-secret.txt"),
                   os.path.join(self.root, "leak.txt"))
        os.symlink(outside, os.path.join(self.root, "leakdir"))
        os.symlink("top.txt", os.path.join(self.root, "docs-alias.txt"))
        os.symlink(".", os.path.join(self.root, "docs", "deep", "deeper", "loop"))

    def write(self, name: str, data: bytes, base: str = "") -> None:
        path = os.path.join(base or self.root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as file:
            file.write(data)

    def expected(self, folder: str = "") -> Dict[str, bytes]:
        """The files a download of ``folder`` holds, by path below it."""
        files = {"top.txt": TEXT, "bytes.bin": bytes(range(256)) * 300, "empty.dat": b"",
                 "docs/readme.md": b"# readme\n", "docs/deep/deeper/leaf.html": b"<p>leaf</p>",
                 "docs/ünï cødé.txt": "ünï".encode("utf-8"), "docs-alias.txt": TEXT}
        prefix = folder + "/" if folder else ""
        return {name[len(prefix):]: data for name, data in files.items()
                if name.startswith(prefix)}


def target_of(root: str, url_path: str = "/") -> Target:
    path = os.path.join(root, url_path.strip("/")) if url_path != "/" else root
    return Target("directory", path, url_path, os.stat(path))


def unzip(data: bytes) -> Tuple[Dict[str, bytes], List[str], Dict[str, int]]:
    """``(files by name, folder names, compression by name)`` of a zip, checked whole."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        damaged = archive.testzip()
        if damaged is not None:
            raise AssertionError(f"{damaged} is damaged")
        files = {info.filename: archive.read(info) for info in archive.infolist()
                 if not info.is_dir()}
        folders = [info.filename for info in archive.infolist() if info.is_dir()]
        methods = {info.filename: info.compress_type for info in archive.infolist()}
    return files, folders, methods


class PlanAndStreamTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tree = Tree(self.addCleanup)
        self.config = Config(document_root=self.tree.root, zip_download=True)

    def archive(self, url_path: str = "/", config=None) -> bytes:
        config = config or self.config
        members = plan_archive(target_of(self.tree.root, url_path), config, "top")
        return b"".join(stream_archive(members))

    def test_every_servable_file_byte_exact_and_nothing_else(self) -> None:
        files, folders, methods = unzip(self.archive())
        self.assertEqual(files, {"top/" + name: data
                                 for name, data in self.tree.expected().items()})
        self.assertEqual(sorted(folders), ["top/", "top/docs/", "top/docs/deep/",
                                           "top/docs/deep/deeper/", "top/empty folder/"])
        self.assertEqual(methods["top/top.txt"], zipfile.ZIP_DEFLATED)
        self.assertEqual(methods["top/bytes.bin"], zipfile.ZIP_STORED)

    def test_a_subfolder(self) -> None:
        files, _, _ = unzip(self.archive("/docs/"))
        self.assertEqual(files, {"top/" + name: data
                                 for name, data in self.tree.expected("docs").items()})

    def test_dotfiles_when_served(self) -> None:
        config = Config(document_root=self.tree.root, dotfiles=True)
        files, _, _ = unzip(self.archive(config=config))
        for name in ("top/.secret", "top/.git/config", "top/docs/.env"):
            self.assertIn(name, files)

    def test_symlink_policies(self) -> None:
        never = unzip(self.archive(config=Config(document_root=self.tree.root,
                                                 symlinks="never")))[0]
        self.assertNotIn("top/docs-alias.txt", never)
        always = unzip(self.archive(config=Config(document_root=self.tree.root,
                                                  symlinks="always")))[0]
        self.assertEqual(always["top/leak.txt"], b"secret")
        self.assertEqual(always["top/leakdir/outside-secret.txt"], b"secret")

    def test_a_folder_reached_twice_is_in_once(self) -> None:
        # deeper/loop is deeper itself; docs/up leads to the root, above the docs download.
        os.symlink("..", os.path.join(self.tree.root, "docs", "up"))
        for policy in ("inside", "always"):
            config = Config(document_root=self.tree.root, symlinks=policy)
            with self.subTest(policy=policy):
                names = [member.name for member in
                         plan_archive(target_of(self.tree.root), config, "top")]
                self.assertEqual(len(names), len(set(names)))
                self.assertFalse(any("/loop/" in name or "/up/" in name for name in names))
            with self.subTest(policy=policy, folder="docs"):
                names = [member.name for member in
                         plan_archive(target_of(self.tree.root, "/docs/"), config, "top")]
                self.assertIn("top/up/top.txt", names)
                self.assertFalse(any(name.startswith("top/up/docs/") for name in names))

    def test_over_the_limit_is_413_before_anything_is_read(self) -> None:
        total = sum(len(data) for data in self.tree.expected().values())
        at_limit = Config(document_root=self.tree.root, max_zip_size=total)
        plan_archive(target_of(self.tree.root), at_limit, "top")
        over = Config(document_root=self.tree.root, max_zip_size=total - 1, zip_download=True)
        with mock.patch("builtins.open", side_effect=AssertionError("read")):
            with self.assertRaises(HTTPError) as caught:
                folder_archive(target_of(self.tree.root), over)
        self.assertEqual(caught.exception.status, 413)

    def test_off_is_404(self) -> None:
        with self.assertRaises(HTTPError) as caught:
            folder_archive(target_of(self.tree.root), Config(document_root=self.tree.root))
        self.assertEqual(caught.exception.status, 404)

    def test_response(self) -> None:
        response = folder_archive(target_of(self.tree.root, "/docs/"), self.config)
        self.assertEqual((response.status, response.stream_length, response.body),
                         (200, None, ()))
        self.assertEqual(response.headers,
                         [("Content-Type", "application/zip"),
                          ("Content-Disposition", 'attachment; filename="docs.zip"')])
        files, _, _ = unzip(b"".join(response.stream))
        self.assertEqual(set(files), {"docs/" + name for name in self.tree.expected("docs")})

    def test_pieces_stay_small_whatever_the_file_size(self) -> None:
        big = os.urandom(64 * 1024) * 64  # 4 MiB, incompressible
        self.tree.write("big.bin", big)
        self.tree.write("big.txt", TEXT * 40)  # 3.6 MB of text, deflated
        pieces = list(stream_archive(plan_archive(target_of(self.tree.root), self.config,
                                                  "top")))
        self.assertLessEqual(max(len(piece) for piece in pieces), 2 * PIECE_SIZE)
        files, _, _ = unzip(b"".join(pieces))
        self.assertEqual((files["top/big.bin"], files["top/big.txt"]), (big, TEXT * 40))

    def test_files_that_change_after_the_size_check(self) -> None:
        # The entries are read as the archive is written: it holds the folder as it is then.
        members = plan_archive(target_of(self.tree.root, "/docs/"), self.config, "top")
        os.remove(os.path.join(self.tree.root, "docs", "readme.md"))
        self.tree.write("docs/deep/deeper/leaf.html", b"<p>")  # shrank
        self.tree.write("docs/ünï cødé.txt", b"grown much longer than it was")
        files, _, _ = unzip(b"".join(stream_archive(members)))
        self.assertNotIn("top/readme.md", files)
        self.assertEqual(files["top/deep/deeper/leaf.html"], b"<p>")
        self.assertEqual(files["top/ünï cødé.txt"], b"grown much longer than it was")

    def test_a_file_that_grows_while_it_is_read_is_cut_to_its_size(self) -> None:
        path = os.path.join(self.tree.root, "docs", "ünï cødé.txt")
        with open(path, "rb") as source:
            before = source.read()
        walked = [member for member in plan_archive(target_of(self.tree.root, "/docs/"),
                                                    self.config, "top")
                  if member.fs_path == path]
        with open(path, "ab") as out:
            out.write(b" and then some")
        files, _, _ = unzip(b"".join(stream_archive(walked)))
        self.assertEqual(files[walked[0].name], before)

    def test_a_folder_grown_past_the_limit_after_the_check_cuts_the_body_short(self) -> None:
        total = sum(len(data) for data in self.tree.expected().values())
        config = Config(document_root=self.tree.root, max_zip_size=total)
        members = plan_archive(target_of(self.tree.root), config, "top")
        self.tree.write("late.bin", b"x")
        with self.assertRaises(BodyFault):
            for _ in stream_archive(members):
                pass

    def test_a_read_error_cuts_the_body_short(self) -> None:
        members = plan_archive(target_of(self.tree.root), self.config, "top")
        real_open = open

        class Failing(io.RawIOBase):
            def readinto(self, buffer):
                raise OSError(5, "Input/output error")

        def failing_open(path, *args, **kwargs):
            if str(path).endswith("bytes.bin"):
                return Failing()
            return real_open(path, *args, **kwargs)

        stream = stream_archive(members)
        with mock.patch("builtins.open", failing_open):
            with self.assertRaises(BodyFault):
                for _ in stream:
                    pass

    def test_a_stream_closed_early_stops(self) -> None:
        stream = stream_archive(plan_archive(target_of(self.tree.root), self.config, "top"))
        next(stream)
        stream.close()
        with self.assertRaises(StopIteration):
            next(stream)

    def test_packed_central_directory_writes_what_zipfile_would(self) -> None:
        packed = self.archive()
        with mock.patch("nex.files.archive._CentralDirectory", list), \
                mock.patch("nex.files.archive._NoNames", dict):
            plain = self.archive()
        self.assertEqual(packed, plain)
        with mock.patch.object(zipfile, "ZIP64_LIMIT", 1000), \
                mock.patch.object(zipfile, "ZIP_FILECOUNT_LIMIT", 3):
            packed = self.archive()
            with mock.patch("nex.files.archive._CentralDirectory", list), \
                    mock.patch("nex.files.archive._NoNames", dict):
                plain = self.archive()
        self.assertEqual(packed, plain)

    def test_zip64_records_where_sizes_need_them(self) -> None:
        # The real limits are 4 GiB and 65535 entries; lowered, every record takes its
        # zip64 form, and the archive must still read back whole.
        with mock.patch.object(zipfile, "ZIP64_LIMIT", 1000), \
                mock.patch.object(zipfile, "ZIP_FILECOUNT_LIMIT", 3):
            data = self.archive()
        files, _, _ = unzip(data)
        self.assertEqual(files["top/top.txt"], TEXT)
        self.assertIn(b"PK\x06\x06", data)  # the zip64 end of central directory record


def read_chunked(data: bytes) -> bytes:
    """The body of a chunked message body ``data`` (no trailers), checked."""
    body, position = b"", 0
    while True:
        line_end = data.index(b"\r\n", position)
        size = int(data[position:line_end], 16)
        position = line_end + 2
        if size == 0:
            if data[position:] != b"\r\n":
                raise AssertionError(data[position:])
            return body
        body += data[position:position + size]
        if data[position + size:position + size + 2] != b"\r\n":
            raise AssertionError(f"no CRLF after the chunk at {position}")
        position += size + 2


def split_response(data: bytes) -> Tuple[str, Dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.lower()] = value.strip()
    return lines[0], fields, body


class DownloadOnTheWireTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tree = Tree(cls.addClassCleanup)
        cls.server = NexServer(cls.tree.root, {"files": {"max_zip_size": "10M"}})
        cls.server.args.append("--zip")
        cls.server.start()
        cls.addClassCleanup(cls.server.stop)

    def fetch(self, target: str, version: str = "HTTP/1.1", method: str = "GET",
              close: bool = True) -> Tuple[str, Dict[str, str], bytes]:
        request = f"{method} {target} {version}\r\nHost: localhost\r\n"
        request += "Connection: close\r\n\r\n" if close else "\r\n"
        with self.server.connect() as sock:
            return split_response(exchange(sock, request.encode("ascii")))

    def test_root_download_is_byte_exact(self) -> None:
        status, fields, body = self.fetch("/?download=zip")
        self.assertEqual(status, "HTTP/1.1 200 OK")
        self.assertEqual(fields["content-type"], "application/zip")
        self.assertEqual(fields["content-disposition"], 'attachment; filename="localhost.zip"')
        self.assertEqual(fields["transfer-encoding"], "chunked")
        self.assertNotIn("content-length", fields)
        files, folders, _ = unzip(read_chunked(body))
        self.assertEqual(files, {"localhost/" + name: data
                                 for name, data in self.tree.expected().items()})
        self.assertIn("localhost/empty folder/", folders)
        for name in files:
            self.assertNotIn("secret", name)
            self.assertNotIn("/.", name)

    def test_non_ascii_folder_name(self) -> None:
        status, fields, body = self.fetch("/docs/?download=zip&sort=size")
        self.assertEqual(status, "HTTP/1.1 200 OK")
        self.assertEqual(fields["content-disposition"], 'attachment; filename="docs.zip"')
        self.tree.write("ünï/x.txt", b"x")
        self.addCleanup(shutil.rmtree, os.path.join(self.tree.root, "ünï"))
        status, fields, body = self.fetch("/%C3%BCn%C3%AF/?download=zip")
        self.assertEqual(fields["content-disposition"],
                         "attachment; filename=\"_n_.zip\"; "
                         "filename*=UTF-8''%C3%BCn%C3%AF.zip")
        self.assertEqual(unzip(read_chunked(body))[0], {"ünï/x.txt": b"x"})

    def test_http_1_0_gets_a_close_delimited_body(self) -> None:
        status, fields, body = self.fetch("/docs/?download=zip", version="HTTP/1.0",
                                          close=False)
        self.assertEqual(status, "HTTP/1.1 200 OK")
        self.assertEqual(fields["connection"], "close")
        self.assertNotIn("transfer-encoding", fields)
        self.assertNotIn("content-length", fields)
        files, _, _ = unzip(body)
        self.assertEqual(files, {"docs/" + name: data
                                 for name, data in self.tree.expected("docs").items()})

    def test_head_sends_the_head_only(self) -> None:
        status, fields, body = self.fetch("/?download=zip", method="HEAD")
        self.assertEqual((status, body), ("HTTP/1.1 200 OK", b""))
        self.assertEqual(fields["content-type"], "application/zip")

    def test_connection_stays_open_after_a_chunked_download(self) -> None:
        with self.server.connect() as sock:
            sock.sendall(b"GET /docs/deep/?download=zip HTTP/1.1\r\nHost: localhost\r\n\r\n"
                         b"GET /top.txt HTTP/1.1\r\nHost: localhost\r\n"
                         b"Connection: close\r\n\r\n")
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        first, _, rest = data.partition(b"0\r\n\r\n")
        files, _, _ = unzip(read_chunked(first.partition(b"\r\n\r\n")[2] + b"0\r\n\r\n"))
        self.assertEqual(files, {"deep/deeper/leaf.html": b"<p>leaf</p>"})
        reader_status, fields, body = split_response(rest)
        self.assertEqual(reader_status, "HTTP/1.1 200 OK")
        self.assertEqual(body, TEXT)

    def test_over_the_limit_is_413(self) -> None:
        self.tree.write("huge/big.bin", b"\0" * (10 * 1024 * 1024 + 1))
        self.addCleanup(shutil.rmtree, os.path.join(self.tree.root, "huge"))
        status, fields, body = self.fetch("/huge/?download=zip")
        self.assertEqual(status, "HTTP/1.1 413 Content Too Large")
        self.assertIn(b"10.0 MiB", body)

    def test_listing_links_to_the_download(self) -> None:
        status, _, body = self.fetch("/docs/")
        self.assertEqual(status, "HTTP/1.1 200 OK")
        self.assertIn(b'href="?download=zip"', body)


class DownloadsOffTest(unittest.TestCase):
    def test_404_and_no_link(self) -> None:
        tree = Tree(self.addCleanup)
        with NexServer(tree.root) as server, server.connect() as sock:
            sock.sendall(b"GET /docs/?download=zip HTTP/1.1\r\nHost: localhost\r\n\r\n"
                         b"GET /docs/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
            reader = ResponseReader(sock)
            status, _, body = reader.read()
            self.assertEqual(status, 404)
            self.assertIn(b"No download is offered for /docs/.", body)
            status, _, body = reader.read()
            self.assertEqual(status, 200)
            self.assertNotIn(b"download=zip", body)


if __name__ == "__main__":
    unittest.main()
