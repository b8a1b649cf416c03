"""Media types: the one table, [mime] overrides, and a listing that agrees with GET."""

from __future__ import annotations

import ast
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
from nex.files.typetable import MEDIA_TYPES
from nex.http.grammar import MEDIA_TYPE
from nex.http.request import Headers, Request
from nex.files.templates import TemplateSet
from tests.support import REPO, NexServer, ResponseReader

#: The type column of each listing row: ``(linked name, type)``.
ROW_TYPE = re.compile(r'<a href="[^"]*">([^<]*)</a></td>.*?<td class="type">([^<]*)</td>')
#: Extensions some hosts' /etc/mime.types name otherwise than Nex's table does.
HOST_NAMED_OTHERWISE = {".kil": "application/x-killustrator", ".js": "application/javascript",
                        ".css": "application/x-host-specific"}
OVERRIDES = {".data": "text/csv", ".md": "text/plain"}
#: Every extension of Nex's table and its type, on every Python version.  Python's own
#: table answers by version: .js is application/javascript before 3.12, .bmp image/x-ms-bmp
#: before 3.11, .rtf text/rtf from 3.13, .3gp audio/3gpp from 3.10; 3.9 lacks .aac and
#: .heic, 3.10 .vtt, .webp and .avif, 3.12 .md.
PINNED = {
    ".3g2": "video/3gpp2", ".3gp": "video/3gpp", ".3gpp": "video/3gpp", ".3gpp2": "video/3gpp2",
    ".7z": "application/x-7z-compressed", ".a": "application/octet-stream", ".aac": "audio/aac",
    ".adts": "audio/aac", ".ai": "application/postscript", ".aif": "audio/x-aiff",
    ".aifc": "audio/x-aiff", ".aiff": "audio/x-aiff", ".amr": "audio/amr",
    ".apk": "application/vnd.android.package-archive", ".apng": "image/apng",
    ".asc": "application/pgp-signature", ".ass": "text/x-ssa", ".atom": "application/atom+xml",
    ".au": "audio/basic", ".avi": "video/x-msvideo", ".avif": "image/avif", ".bat": "text/plain",
    ".bcpio": "application/x-bcpio", ".bin": "application/octet-stream", ".bmp": "image/bmp",
    ".bz2": "application/x-bzip2", ".c": "text/plain", ".cdf": "application/x-netcdf",
    ".cer": "application/pkix-cert", ".cjs": "text/javascript", ".cpio": "application/x-cpio",
    ".crl": "application/pkix-crl", ".csh": "application/x-csh", ".css": "text/css",
    ".csv": "text/csv", ".deb": "application/vnd.debian.binary-package",
    ".dll": "application/octet-stream", ".dmg": "application/x-apple-diskimage",
    ".doc": "application/msword",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".dot": "application/msword", ".dvi": "application/x-dvi", ".eml": "message/rfc822",
    ".eot": "application/vnd.ms-fontobject", ".eps": "application/postscript",
    ".epub": "application/epub+zip", ".etx": "text/x-setext", ".exe": "application/octet-stream",
    ".flac": "audio/flac", ".flv": "video/x-flv", ".geojson": "application/geo+json",
    ".gif": "image/gif", ".gpx": "application/gpx+xml", ".gtar": "application/x-gtar",
    ".gz": "application/gzip", ".h": "text/plain", ".h5": "application/x-hdf5",
    ".hdf": "application/x-hdf", ".hdf5": "application/x-hdf5", ".heic": "image/heic",
    ".heif": "image/heif", ".htm": "text/html", ".html": "text/html",
    ".ico": "image/vnd.microsoft.icon", ".ics": "text/calendar", ".ief": "image/ief",
    ".ifb": "text/calendar", ".iso": "application/x-iso9660-image",
    ".jar": "application/java-archive", ".jfif": "image/jpeg", ".jp2": "image/jp2",
    ".jpe": "image/jpeg", ".jpeg": "image/jpeg", ".jpg": "image/jpeg", ".js": "text/javascript",
    ".json": "application/json", ".jsonld": "application/ld+json", ".jxl": "image/jxl",
    ".kml": "application/vnd.google-earth.kml+xml", ".kmz": "application/vnd.google-earth.kmz",
    ".ksh": "text/plain", ".latex": "application/x-latex", ".loas": "audio/aac",
    ".log": "text/plain", ".lz": "application/x-lzip", ".m1v": "video/mpeg", ".m2ts": "video/mp2t",
    ".m3u": "application/vnd.apple.mpegurl", ".m3u8": "application/vnd.apple.mpegurl",
    ".m4a": "audio/mp4", ".m4b": "audio/mp4", ".m4v": "video/mp4",
    ".man": "application/x-troff-man", ".map": "application/json", ".markdown": "text/markdown",
    ".md": "text/markdown", ".me": "application/x-troff-me", ".mht": "message/rfc822",
    ".mhtml": "message/rfc822", ".mid": "audio/midi", ".midi": "audio/midi",
    ".mif": "application/x-mif", ".mjs": "text/javascript", ".mka": "audio/x-matroska",
    ".mkv": "video/x-matroska", ".mov": "video/quicktime", ".movie": "video/x-sgi-movie",
    ".mp2": "audio/mpeg", ".mp3": "audio/mpeg", ".mp4": "video/mp4", ".mpa": "video/mpeg",
    ".mpd": "application/dash+xml", ".mpe": "video/mpeg", ".mpeg": "video/mpeg",
    ".mpg": "video/mpeg", ".ms": "application/x-troff-ms", ".n3": "text/n3",
    ".nc": "application/x-netcdf", ".nq": "application/n-quads", ".nt": "application/n-triples",
    ".nws": "message/rfc822", ".o": "application/octet-stream", ".obj": "application/octet-stream",
    ".oda": "application/oda", ".odg": "application/vnd.oasis.opendocument.graphics",
    ".odp": "application/vnd.oasis.opendocument.presentation",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".odt": "application/vnd.oasis.opendocument.text", ".oga": "audio/ogg", ".ogg": "audio/ogg",
    ".ogv": "video/ogg", ".opus": "audio/ogg", ".otf": "font/otf", ".p12": "application/x-pkcs12",
    ".p7c": "application/pkcs7-mime", ".p7m": "application/pkcs7-mime",
    ".p7s": "application/pkcs7-signature", ".p8": "application/pkcs8",
    ".pac": "application/x-ns-proxy-autoconfig",
    ".pbm": "image/x-portable-bitmap", ".pct": "image/pict", ".pdf": "application/pdf",
    ".pfx": "application/x-pkcs12", ".pgm": "image/x-portable-graymap", ".pic": "image/pict",
    ".pict": "image/pict", ".pl": "text/plain", ".png": "image/png",
    ".pnm": "image/x-portable-anymap", ".pot": "application/vnd.ms-powerpoint",
    ".ppa": "application/vnd.ms-powerpoint", ".ppm": "image/x-portable-pixmap",
    ".pps": "application/vnd.ms-powerpoint", ".ppt": "application/vnd.ms-powerpoint",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".ps": "application/postscript", ".psd": "image/vnd.adobe.photoshop",
    ".pwz": "application/vnd.ms-powerpoint", ".py": "text/x-python",
    ".pyc": "application/x-python-code", ".pyo": "application/x-python-code",
    ".qt": "video/quicktime", ".ra": "audio/x-pn-realaudio", ".ram": "application/x-pn-realaudio",
    ".rar": "application/vnd.rar", ".ras": "image/x-cmu-raster", ".rdf": "application/rdf+xml",
    ".rgb": "image/x-rgb", ".roff": "application/x-troff", ".rpm": "application/x-rpm",
    ".rss": "application/rss+xml", ".rst": "text/x-rst", ".rtf": "application/rtf",
    ".rtx": "text/richtext", ".sgm": "text/x-sgml", ".sgml": "text/x-sgml",
    ".sh": "application/x-sh", ".shar": "application/x-shar", ".sig": "application/pgp-signature",
    ".snd": "audio/basic", ".so": "application/octet-stream", ".spx": "audio/ogg",
    ".sql": "application/sql", ".src": "application/x-wais-source", ".srt": "application/x-subrip",
    ".ssa": "text/x-ssa", ".sv4cpio": "application/x-sv4cpio", ".sv4crc": "application/x-sv4crc",
    ".svg": "image/svg+xml", ".swf": "application/x-shockwave-flash", ".t": "application/x-troff",
    ".tar": "application/x-tar", ".tbz2": "application/x-bzip2", ".tcl": "application/x-tcl",
    ".tex": "application/x-tex", ".texi": "application/x-texinfo",
    ".texinfo": "application/x-texinfo", ".text": "text/plain", ".tgz": "application/gzip",
    ".tif": "image/tiff", ".tiff": "image/tiff", ".tr": "application/x-troff",
    ".trig": "application/trig", ".ts": "video/mp2t", ".tsv": "text/tab-separated-values",
    ".ttc": "font/collection", ".ttf": "font/ttf", ".ttl": "text/turtle", ".txt": "text/plain",
    ".txz": "application/x-xz", ".ustar": "application/x-ustar", ".vcard": "text/vcard",
    ".vcf": "text/vcard", ".vtt": "text/vtt", ".wasm": "application/wasm", ".wav": "audio/wav",
    ".weba": "audio/webm", ".webm": "video/webm", ".webmanifest": "application/manifest+json",
    ".webp": "image/webp", ".wiz": "application/msword", ".wmv": "video/x-ms-wmv",
    ".woff": "font/woff", ".woff2": "font/woff2", ".wsdl": "application/wsdl+xml",
    ".xbm": "image/x-xbitmap", ".xht": "application/xhtml+xml", ".xhtml": "application/xhtml+xml",
    ".xlb": "application/vnd.ms-excel", ".xls": "application/vnd.ms-excel",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".xml": "text/xml", ".xpdl": "application/xml", ".xpm": "image/x-xpixmap",
    ".xsd": "application/xml", ".xsl": "application/xml", ".xslt": "application/xslt+xml",
    ".xul": "text/xul", ".xwd": "image/x-xwindowdump", ".xz": "application/x-xz",
    ".yaml": "application/yaml", ".yml": "application/yaml", ".zip": "application/zip",
    ".zst": "application/zstd",
}


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

    def test_every_extension_has_its_pinned_type(self) -> None:
        self.assertEqual(MEDIA_TYPES, PINNED)

    def test_every_entry_is_a_lower_case_media_type_without_parameters(self) -> None:
        for extension, value in MEDIA_TYPES.items():
            with self.subTest(extension=extension):
                self.assertRegex(extension, r"\A\.[a-z0-9]+\Z")
                match = MEDIA_TYPE.fullmatch(value)
                self.assertIsNotNone(match)
                self.assertEqual(match.group("parameters"), "")
                self.assertEqual(value, value.lower())

    def test_types_answered_differently_by_python_versions(self) -> None:
        for extension, expected in ((".js", "text/javascript; charset=utf-8"),
                                    (".bmp", "image/bmp"), (".rtf", "application/rtf"),
                                    (".vtt", "text/vtt; charset=utf-8"), (".aac", "audio/aac"),
                                    (".heic", "image/heic"), (".3gp", "video/3gpp"),
                                    (".md", "text/markdown; charset=utf-8")):
            with self.subTest(extension=extension):
                self.assertEqual(content_type(extension, {})[0], expected)

    def test_no_module_reads_the_interpreters_type_table(self) -> None:
        # mimetypes answers by Python version and reads the host's /etc/mime.types.
        package = os.path.join(REPO, "nex")
        for folder, _, names in os.walk(package):
            for name in names:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as source:
                    tree = ast.parse(source.read())
                imported = {alias.name for node in ast.walk(tree)
                            if isinstance(node, (ast.Import, ast.ImportFrom))
                            for alias in node.names}
                imported |= {node.module for node in ast.walk(tree)
                             if isinstance(node, ast.ImportFrom) and node.module}
                with self.subTest(path=path):
                    self.assertNotIn("mimetypes", imported)

    def test_host_mime_types_file_does_not_change_results(self) -> None:
        # Nex's table is its own; what the mimetypes module learns (from /etc/mime.types,
        # which might map .css to something else) never reaches it.
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
        for name in ("table.data", "notes.md", "app.js", "style.css", "drawing.kil", "README"):
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
                                      "drawing.kil", "README"})
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
        self.assertEqual(shown["drawing.kil"], DEFAULT_TYPE)


class ListingAgreesWithGetOverTheWireTest(unittest.TestCase):
    """The same agreement from the real server, [mime] set in its settings file."""

    def test_listing_and_get_agree(self) -> None:
        root = tempfile.mkdtemp(prefix="nex-types-")
        self.addCleanup(shutil.rmtree, root)
        names = ("table.data", "notes.md", "drawing.kil", "app.js")
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
