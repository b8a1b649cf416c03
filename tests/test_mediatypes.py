"""Media types: the one table, [mime] overrides, and a listing that agrees with GET."""

from __future__ import annotations

import mimetypes
import os
import re
import shutil
import tempfile
import unittest

from nex.process.config import Config
from nex.site.routing import Dispatcher
from nex.site.hosts import HostValidator
from nex.files.mediatypes import DEFAULT_TYPE, content_type, file_extension, media_type
from nex.http.request import Headers, Request
from nex.files.templates import TemplateSet
from tests.support import REPO, NexServer, ResponseReader

#: The type column of each listing row: ``(linked name, type)``.
ROW_TYPE = re.compile(r'<a href="[^"]*">([^<]*)</a></td>.*?<td class="type">([^<]*)</td>')
#: Extensions some hosts' /etc/mime.types name otherwise than Nex's table does.
HOST_NAMED_OTHERWISE = {".7z": "application/x-7z-compressed", ".js": "application/javascript",
                        ".css": "application/x-host-specific"}
OVERRIDES = {".data": "text/csv", ".md": "text/plain"}


class ContentTypeTest(unittest.TestCase):
    """Content-Type from the built-in table, overrides, and the charset rule."""

    CASES = [
        (".html", "text/html; charset=utf-8"),
        (".css", "text/css; charset=utf-8"),
        (".txt", "text/plain; charset=utf-8"),
        (".js", "text/javascript; charset=utf-8"),
        (".mjs", "text/javascript; charset=utf-8"),
        (".json", "application/json; charset=utf-8"),
        (".webmanifest", "application/manifest+json; charset=utf-8"),
        (".svg", "image/svg+xml"),
        (".png", "image/png"),
        (".jpg", "image/jpeg"),
        (".pdf", "application/pdf"),
        (".wasm", "application/wasm"),
        (".woff2", "font/woff2"),
        (".gz", "application/gzip"),
        (".pac", "application/x-ns-proxy-autoconfig"),
        (".unknownext", "application/octet-stream"),
        ("", "application/octet-stream"),
    ]

    def test_table(self) -> None:
        for extension, expected in self.CASES:
            with self.subTest(extension=extension):
                self.assertEqual(content_type(extension, {})[0], expected)

    def test_overrides_win(self) -> None:
        overrides = {".mjs": "application/javascript", ".data": "text/csv",
                     ".bin": "text/plain; charset=latin-1"}
        self.assertEqual(content_type(".mjs", overrides)[0],
                         "application/javascript; charset=utf-8")
        self.assertEqual(content_type(".data", overrides)[0], "text/csv; charset=utf-8")
        self.assertEqual(content_type(".bin", overrides)[0], "text/plain; charset=latin-1")

    def test_compressible_types(self) -> None:
        for extension in (".html", ".css", ".js", ".json", ".svg", ".xml", ".txt"):
            with self.subTest(extension=extension):
                self.assertTrue(content_type(extension, {})[1])
        for extension in (".png", ".jpg", ".gz", ".woff2", ".mp4", ".unknownext"):
            with self.subTest(extension=extension):
                self.assertFalse(content_type(extension, {})[1])

    def test_host_mime_types_file_does_not_change_results(self) -> None:
        # The table is built once from the interpreter's own data; /etc/mime.types (which
        # might map .js to something else) is never read into it.
        import mimetypes
        mimetypes.add_type("application/x-host-specific", ".css")
        self.addCleanup(mimetypes.add_type, "text/css", ".css")
        self.assertEqual(content_type(".css", {})[0], "text/css; charset=utf-8")


class FileExtensionTest(unittest.TestCase):
    """The extension a type is looked up by, as os.path.splitext finds it, lower-cased."""

    CASES = [("a.html", ".html"), ("A.PNG", ".png"), ("x.tar.gz", ".gz"), ("README", ""),
             (".profile", ""), ("..a", ""), ("a.", "."), ("a..b", ".b"), ("d.d/f", ""),
             ("/srv/www/page.HTM", ".htm"), ("data:,hello", "")]

    def test_cases(self) -> None:
        for name, expected in self.CASES:
            with self.subTest(name=name):
                self.assertEqual(file_extension(name), expected)
                self.assertEqual(file_extension(name), os.path.splitext(name)[1].lower())


class MediaTypeTest(unittest.TestCase):
    """The media type before Nex adds a charset: the table, overrides, the default."""

    def test_table_overrides_and_default(self) -> None:
        self.assertEqual(media_type(".html", {}), "text/html")
        self.assertEqual(media_type(".png", {}), "image/png")
        self.assertEqual(media_type(".md", OVERRIDES), "text/plain")
        self.assertEqual(media_type(".nothing", {}), DEFAULT_TYPE)
        self.assertEqual(media_type("", {}), DEFAULT_TYPE)

    def test_content_type_describes_the_media_type(self) -> None:
        for extension in (".html", ".png", ".md", ".data", ".nothing"):
            with self.subTest(extension=extension):
                value = content_type(extension, OVERRIDES)[0]
                self.assertEqual(value.partition(";")[0], media_type(extension, OVERRIDES))


class ListingAgreesWithGetTest(unittest.TestCase):
    """A listing shows for each file the type a GET of it is sent with.

    The host's /etc/mime.types is simulated by teaching the ``mimetypes`` module other
    names, as reading that file would; neither the listing nor GET may follow it.
    """

    def setUp(self) -> None:
        self.root = os.path.realpath(tempfile.mkdtemp(prefix="nex-types-"))
        self.addCleanup(shutil.rmtree, self.root)
        for name in ("table.data", "notes.md", "app.js", "style.css", "archive.7z", "README"):
            with open(os.path.join(self.root, name), "wb") as file:
                file.write(b"x")
        for extension, host_type in HOST_NAMED_OTHERWISE.items():
            previous = mimetypes.guess_type("f" + extension)[0]
            mimetypes.add_type(host_type, extension)
            if previous is None:
                self.addCleanup(mimetypes.types_map.pop, extension, None)
            else:
                self.addCleanup(mimetypes.add_type, previous, extension)
        config = Config(document_root=self.root, mime_types=OVERRIDES)
        templates = TemplateSet.load(os.path.join(REPO, "error_pages"),
                                     os.path.join(REPO, "other_templates"))
        self.site = Dispatcher(config, templates, HostValidator(["*"]), "Nex")

    def get(self, path: str):
        request = Request("GET", path, path, "", "HTTP/1.1", Headers([("Host", "h")]), "h",
                          True)
        return self.site.respond(request, None, "127.0.0.1")

    def test_listing_and_get_agree(self) -> None:
        listing = self.get("/")
        page = b"".join(listing.body).decode("utf-8")
        shown = dict(ROW_TYPE.findall(page))
        self.assertEqual(set(shown), {"table.data", "notes.md", "app.js", "style.css",
                                      "archive.7z", "README"})
        for name, listed in shown.items():
            with self.subTest(name=name):
                response = self.get("/" + name)
                if response.file is not None:
                    response.file.close()
                sent = dict(response.headers)["Content-Type"]
                self.assertEqual(listed, sent.partition(";")[0])
        self.assertEqual(shown["table.data"], "text/csv")
        self.assertEqual(shown["notes.md"], "text/plain")
        self.assertEqual(shown["app.js"], "text/javascript")
        self.assertEqual(shown["style.css"], "text/css")
        self.assertEqual(shown["archive.7z"], DEFAULT_TYPE)


class ListingAgreesWithGetOverTheWireTest(unittest.TestCase):
    """The same agreement from the real server, [mime] set in its settings file."""

    def test_listing_and_get_agree(self) -> None:
        root = tempfile.mkdtemp(prefix="nex-types-")
        self.addCleanup(shutil.rmtree, root)
        names = ("table.data", "notes.md", "archive.7z", "app.js")
        for name in names:
            with open(os.path.join(root, name), "wb") as file:
                file.write(b"x")
        with NexServer(root, {"mime": OVERRIDES}) as server, server.connect() as sock:
            reader = ResponseReader(sock)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            status, _, body = reader.read()
            self.assertEqual(status, 200)
            shown = dict(ROW_TYPE.findall(body.decode("utf-8")))
            self.assertEqual(set(shown), set(names))
            for name in names:
                with self.subTest(name=name):
                    sock.sendall(f"GET /{name} HTTP/1.1\r\nHost: localhost\r\n\r\n"
                                 .encode("ascii"))
                    status, headers, _ = reader.read()
                    self.assertEqual(status, 200)
                    self.assertEqual(shown[name], headers["content-type"].partition(";")[0])
            self.assertEqual(shown["table.data"], "text/csv")
            self.assertEqual(shown["notes.md"], "text/plain")


if __name__ == "__main__":
    unittest.main()
