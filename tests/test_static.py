"""The static handler without sockets: types, validators, caching, sidecars and gzip."""

from __future__ import annotations

import gzip
import errno
import os
import shutil
import stat
import tempfile
import unittest
from typing import Tuple
from unittest import mock

from hypothesis import given, settings, strategies as st

from nex.process.config import Config
from nex.http.errors import HTTPError
from nex.files.paths import Target
from nex.http.response import Response
from nex.files import static as static_module
from nex.files.static import accepted_codings, cache_control
from tests.support import MTIME, MTIME_DATE, TempFiles, body_bytes, close, fields

ALLOWED_FIELDS = {"content-type", "last-modified", "etag", "accept-ranges", "cache-control",
                  "vary", "content-encoding", "content-range"}


class CacheControlTest(unittest.TestCase):
    """Cache-Control: the global policy, or max-age per extension."""

    def test_default_policy(self) -> None:
        self.assertEqual(cache_control(".html", Config()), "no-cache")

    def test_max_age_per_extension(self) -> None:
        config = Config(max_age={".css": 3600, ".png": 60})
        self.assertEqual(cache_control(".css", config), "max-age=3600")
        self.assertEqual(cache_control(".png", config), "max-age=60")
        self.assertEqual(cache_control(".html", config), "no-cache")


class FileKindTest(unittest.TestCase):
    """What a file's name decides, and the table that remembers it per set of settings."""

    NAMES = ("/r/a.html", "/r/b.CSS", "/r/c.svg", "/r/d.bin", "/r/e", "/r/.f.txt", "/r/g.x-new")

    def test_kinds(self) -> None:
        config = Config(upload=True, max_age={".css": 60}, cache_control="",
                        mime_types={".x-new": "text/x-new"})
        self.assertEqual(static_module.file_kind("/r/a.html", config), static_module.FileKind(
            "text/html; charset=utf-8", True,
            (("Content-Type", "text/html; charset=utf-8"),
             ("Content-Security-Policy", "sandbox")), ()))
        self.assertEqual(static_module.file_kind("/r/b.CSS", config).policy,
                         (("Cache-Control", "max-age=60"),))
        self.assertEqual(static_module.file_kind("/r/g.x-new", config).media_type,
                         "text/x-new; charset=utf-8")
        self.assertEqual(static_module.file_kind("/r/d.bin", config),
                         static_module.FileKind("application/octet-stream", False,
                                                (("Content-Type",
                                                  "application/octet-stream"),), ()))

    def test_remembered_kinds_are_those_of_their_own_settings(self) -> None:
        plain = Config()
        other = Config(upload=True, max_age={".css": 60, ".bin": 5}, cache_control="",
                       mime_types={".x-new": "text/x-new", ".html": "text/plain"})
        tables = [(plain, static_module.remembered_kinds(plain)),
                  (other, static_module.remembered_kinds(other))]
        for _ in range(2):  # the second time from what each table remembers
            for config, kind_of in tables:
                for name in self.NAMES:
                    with self.subTest(name=name, upload=config.upload):
                        self.assertEqual(kind_of(name), static_module.file_kind(name, config))
        self.assertNotEqual(tables[0][1]("/r/a.html"), tables[1][1]("/r/a.html"))

    def test_the_table_is_bounded(self) -> None:
        kind_of = static_module.remembered_kinds(Config())
        for number in range(static_module.FILE_KINDS + 10):
            kind_of(f"/r/{number}.txt")
        self.assertEqual(kind_of.cache_info().currsize, static_module.FILE_KINDS)


class PlainFileTest(TempFiles):
    """A 200 for the whole file, its validators and the fields it may carry."""

    def test_whole_file(self) -> None:
        target = self.target("page.html", b"<h1>hi</h1>")
        response = self.serve(target)
        self.assertEqual(response.status, 200)
        self.assertEqual(body_bytes(response), b"<h1>hi</h1>")
        self.assertEqual(response.content_length, 11)
        got = fields(response)
        self.assertEqual(got["content-type"], "text/html; charset=utf-8")
        self.assertEqual(got["last-modified"], MTIME_DATE)
        self.assertEqual(got["etag"], f'"b-{MTIME * 10**9:x}"')
        self.assertEqual(got["accept-ranges"], "bytes")
        self.assertEqual(got["cache-control"], "no-cache")

    def test_extension_case_does_not_matter(self) -> None:
        response = self.serve(self.target("PHOTO.JPG", b"\xff\xd8"), max_age={".jpg": 9})
        self.assertEqual(fields(response)["content-type"], "image/jpeg")
        self.assertEqual(fields(response)["cache-control"], "max-age=9")

    def test_only_representation_fields_are_set(self) -> None:
        target = self.target("a.txt", b"x" * 5000)
        cases = [
            ([], {}),
            ([("Range", "bytes=0-1")], {}),
            ([("Range", "bytes=0-1,10-20")], {}),
            ([("Accept-Encoding", "gzip")], {"gzip": True, "gzip_min_size": 10}),
            ([("If-None-Match", "*")], {}),
        ]
        for request_fields, overrides in cases:
            with self.subTest(request_fields=request_fields):
                response = self.serve(target, request_fields, **overrides)
                self.assertLessEqual(set(fields(response)), ALLOWED_FIELDS)

    def test_empty_file(self) -> None:
        response = self.serve(self.target("empty.txt", b""))
        self.assertEqual(response.status, 200)
        self.assertEqual(body_bytes(response), b"")
        self.assertEqual(fields(response)["etag"], f'"0-{MTIME * 10**9:x}"')

    def test_head_gets_the_get_response(self) -> None:
        target = self.target("a.css", b"body{}")
        get, head = self.serve(target), self.serve(target, method="HEAD")
        self.assertEqual(get.status, head.status)
        self.assertEqual(get.headers, head.headers)
        self.assertEqual(get.content_length, head.content_length)

    def test_file_is_opened_once_and_handed_to_the_writer(self) -> None:
        response = self.serve(self.target("a.bin", b"\x00\x01"))
        self.assertFalse(response.file.closed)
        self.assertEqual(os.fstat(response.file.fileno()).st_ino,
                         os.stat(os.path.join(self.folder, "a.bin")).st_ino)

    def test_etag_changes_with_size_and_mtime_but_not_with_inode(self) -> None:
        first = fields(self.serve(self.target("a.txt", b"one")))["etag"]
        os.remove(os.path.join(self.folder, "a.txt"))
        self.write("other", b"padding to move the inode")
        same = fields(self.serve(self.target("a.txt", b"one")))["etag"]
        self.assertEqual(first, same)
        newer = fields(self.serve(self.target("a.txt", b"one", MTIME + 1)))["etag"]
        longer = fields(self.serve(self.target("a.txt", b"one!")))["etag"]
        self.assertEqual(len({first, newer, longer}), 3)

    def test_etag_uses_nanoseconds(self) -> None:
        path = self.write("a.txt", b"x")
        os.utime(path, ns=(MTIME * 10**9 + 5, MTIME * 10**9 + 5))
        target = Target("file", path, "/a.txt", os.stat(path))
        if target.stat.st_mtime_ns % 10**9 == 0:
            self.skipTest("file system keeps whole seconds only")
        self.assertEqual(fields(self.serve(target))["etag"], f'"1-{MTIME * 10**9 + 5:x}"')

    def test_future_mtime_is_not_advertised(self) -> None:
        # RFC 9110 §8.8.2.1: Last-Modified never lies in the future.
        target = self.target("a.txt", b"x", mtime=4_000_000_000)
        self.assertNotIn("2096", fields(self.serve(target))["last-modified"])

    def test_unreadable_file_is_403(self) -> None:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            self.skipTest("root reads every file")
        target = self.target("secret.txt", b"x")
        os.chmod(target.fs_path, 0)
        self.addCleanup(os.chmod, target.fs_path, stat.S_IRUSR | stat.S_IWUSR)
        with self.assertRaises(HTTPError) as caught:
            self.serve(target)
        self.assertEqual(caught.exception.status, 403)

    def test_running_out_of_descriptors_is_503_not_a_permanent_403(self) -> None:
        target = self.target("a.txt", b"alpha")
        with mock.patch("nex.files.static.os.open",
                        side_effect=OSError(errno.EMFILE, "Too many open files")):
            with self.assertRaises(HTTPError) as caught:
                self.serve(target)
        self.assertEqual(caught.exception.status, 503)
        self.assertIn(("Retry-After", "5"), caught.exception.headers)

    def test_unexpected_open_failure_is_not_disguised_as_403(self) -> None:
        target = self.target("a.txt", b"alpha")
        with mock.patch("nex.files.static.os.open",
                        side_effect=OSError(errno.EIO, "Input/output error")):
            with self.assertRaises(OSError) as caught:
                self.serve(target)
        self.assertNotIsInstance(caught.exception, HTTPError)

    def test_permission_error_on_open_is_403(self) -> None:
        target = self.target("secret.txt", b"x")
        with mock.patch("nex.files.static.os.open", side_effect=PermissionError(13, "no")):
            with self.assertRaises(HTTPError) as caught:
                self.serve(target)
        self.assertEqual(caught.exception.status, 403)

    def test_vanished_file_is_404_without_the_path(self) -> None:
        target = self.target("gone.txt", b"x")
        os.remove(target.fs_path)
        with self.assertRaises(HTTPError) as caught:
            self.serve(target)
        self.assertEqual(caught.exception.status, 404)
        self.assertNotIn(self.folder, caught.exception.detail)

    def test_empty_cache_policy_sends_no_field(self) -> None:
        response = self.serve(self.target("a.html", b"<p>"), cache_control="")
        self.assertNotIn("cache-control", fields(response))

    def test_max_age_setting_reaches_the_response(self) -> None:
        response = self.serve(self.target("a.css", b"x"), max_age={".css": 600})
        self.assertEqual(fields(response)["cache-control"], "max-age=600")


class HeaderFuzzTest(TempFiles):
    """Arbitrary request field values give a response, a 412 or a 416, never a crash."""

    NAMES = ["Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since",
             "If-Unmodified-Since", "Accept-Encoding"]

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(NAMES), st.text(max_size=30)), max_size=5))
    def test_no_crash(self, request_fields) -> None:
        target = self.target("page.html", b"<p>" * 500)
        self.write("page.html.gz", b"GZ")
        try:
            response = self.serve(target, request_fields, gzip=True)
        except HTTPError as error:
            self.assertIn(error.status, (412, 416))
            return
        self.assertIn(response.status, (200, 206, 304))
        self.assertLessEqual(set(fields(response)), ALLOWED_FIELDS)
        body_bytes(response)
        close(response)


class AcceptEncodingTest(unittest.TestCase):
    """Which sidecar codings an Accept-Encoding value allows, best first."""

    CASES = [
        ("gzip, deflate, br, zstd", ["br", "gzip"]),
        ("gzip, br", ["br", "gzip"]),
        ("gzip;q=1.0, br;q=0.9", ["gzip", "br"]),
        ("br;q=0.5, gzip;q=0.8", ["gzip", "br"]),
        ("br;q=0, gzip", ["gzip"]),
        ("br;q=0.000, gzip;q=0.001", ["gzip"]),
        ("gzip", ["gzip"]),
        ("x-gzip", ["gzip"]),
        ("GZIP, BR", ["br", "gzip"]),
        ("br ; Q=1", ["br"]),
        ("*", ["br", "gzip"]),
        ("*;q=0.5, br;q=0", ["gzip"]),
        ("*;q=0", []),
        ("identity", []),
        ("identity;q=1, br;q=0.5", []),
        ("identity;q=0.5, br;q=0.5", ["br"]),
        ("gzip;q=1.0, identity; q=0.5, *;q=0", ["gzip"]),
        ("deflate", []),
        ("", []),
        (",, gzip ,", ["gzip"]),
        # Malformed values allow nothing: the file goes out unencoded.
        ("gzip;q=1.5", []),
        ("gzip;q=2", []),
        ("gzip;q=0.1234", []),
        ("gzip;q=-1", []),
        ("gzip;q= 1", []),
        ("gzip;level=9", []),
        ("gzip br", []),
        ("gz\u00efp", []),
    ]

    def test_table(self) -> None:
        for value, expected in self.CASES:
            with self.subTest(value=value):
                self.assertEqual(accepted_codings(value), tuple(expected))


class SidecarTest(TempFiles):
    """Precompressed .br/.gz files beside the original."""

    ORIGINAL = b"console.log('hello');\n" * 20

    def setUp(self) -> None:
        super().setUp()
        self.original = self.target("app.js", self.ORIGINAL)
        self.br = self.write("app.js.br", b"BROTLI-BYTES", MTIME + 10)
        self.gz = self.write("app.js.gz", gzip.compress(self.ORIGINAL, mtime=0), MTIME + 20)

    def test_selection_by_accept_encoding(self) -> None:
        cases = [
            (None, None),
            ("gzip, deflate, br", "br"),
            ("gzip", "gzip"),
            ("br", "br"),
            ("br;q=0.5, gzip", "gzip"),
            ("br;q=0, gzip;q=0", None),
            ("*", "br"),
            ("identity", None),
            ("identity, br;q=0.1", None),
            ("deflate", None),
            ("gzip;q=7", None),
        ]
        for accept, expected in cases:
            with self.subTest(accept=accept):
                request_fields = [] if accept is None else [("Accept-Encoding", accept)]
                response = self.serve(self.original, request_fields)
                got = fields(response)
                self.assertEqual(got.get("content-encoding"), expected)
                self.assertEqual(got["content-type"], "text/javascript; charset=utf-8")
                self.assertEqual(got["vary"], "Accept-Encoding")
                expected_body = {None: self.ORIGINAL, "br": b"BROTLI-BYTES",
                                 "gzip": gzip.compress(self.ORIGINAL, mtime=0)}[expected]
                self.assertEqual(body_bytes(response), expected_body)

    def test_sidecar_has_its_own_validators(self) -> None:
        plain = fields(self.serve(self.original))
        br = fields(self.serve(self.original, [("Accept-Encoding", "br")]))
        gz = fields(self.serve(self.original, [("Accept-Encoding", "gzip")]))
        self.assertEqual(len({plain["etag"], br["etag"], gz["etag"]}), 3)
        self.assertTrue(br["etag"].endswith('-br"'))
        self.assertTrue(gz["etag"].endswith('-gz"'))
        self.assertEqual(plain["last-modified"], MTIME_DATE)
        self.assertEqual(br["last-modified"], "Sun, 13 Sep 2020 12:26:50 GMT")

    def test_gzip_sidecar_only(self) -> None:
        os.remove(self.br)
        response = self.serve(self.original, [("Accept-Encoding", "br, gzip")])
        self.assertEqual(fields(response)["content-encoding"], "gzip")
        self.assertEqual(gzip.decompress(body_bytes(response)), self.ORIGINAL)

    def test_precompressed_off_ignores_sidecars(self) -> None:
        response = self.serve(self.original, [("Accept-Encoding", "br, gzip")],
                              precompressed=False)
        got = fields(response)
        self.assertNotIn("content-encoding", got)
        self.assertNotIn("vary", got)
        self.assertEqual(body_bytes(response), self.ORIGINAL)

    def test_no_sidecar_no_vary_when_probed(self) -> None:
        target = self.target("plain.js", b"x")
        self.assertNotIn("vary", fields(self.serve(target, [("Accept-Encoding", "br, gzip")])))

    def test_vary_kept_when_sidecars_were_not_probed(self) -> None:
        # A client that accepts no sidecar coding costs no stat, so whether a sidecar
        # exists is unknown: Vary stays, which is always safe for caches.
        target = self.target("plain.js", b"x")
        for request_fields in ([], [("Accept-Encoding", "identity")]):
            with self.subTest(request_fields=request_fields):
                response = self.serve(target, request_fields)
                self.assertEqual(fields(response)["vary"], "Accept-Encoding")

    def test_sidecar_that_is_a_directory_is_ignored(self) -> None:
        os.remove(self.br)
        os.mkdir(self.br)
        response = self.serve(self.original, [("Accept-Encoding", "br")])
        self.assertNotIn("content-encoding", fields(response))
        self.assertEqual(fields(response)["vary"], "Accept-Encoding")

    @unittest.skipUnless(hasattr(os, "symlink"), "needs symlinks")
    def test_symlinked_sidecar_cannot_leak_a_file_outside_the_root(self) -> None:
        outside = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, outside, True)
        secret = os.path.join(outside, "secret")
        with open(secret, "wb") as out:
            out.write(b"TOP SECRET")
        os.remove(self.br)
        os.symlink(secret, self.br)
        response = self.serve(self.original, [("Accept-Encoding", "br")])
        self.assertNotIn(b"SECRET", body_bytes(response))
        self.assertNotIn("content-encoding", fields(response))

    def test_vary_on_304_and_206(self) -> None:
        etag = fields(self.serve(self.original, [("Accept-Encoding", "br")]))["etag"]
        not_modified = self.serve(self.original, [("Accept-Encoding", "br"),
                                                  ("If-None-Match", etag)])
        self.assertEqual(not_modified.status, 304)
        self.assertEqual(fields(not_modified)["vary"], "Accept-Encoding")
        self.assertEqual(fields(not_modified)["etag"], etag)
        partial = self.serve(self.original, [("Range", "bytes=0-1")])
        self.assertEqual(partial.status, 206)
        self.assertEqual(fields(partial)["vary"], "Accept-Encoding")

    def test_identity_etag_does_not_revalidate_the_sidecar(self) -> None:
        plain_etag = fields(self.serve(self.original))["etag"]
        response = self.serve(self.original, [("Accept-Encoding", "br"),
                                              ("If-None-Match", plain_etag)])
        self.assertEqual(response.status, 200)
        self.assertEqual(body_bytes(response), b"BROTLI-BYTES")

    def test_range_applies_to_sidecar_bytes(self) -> None:
        response = self.serve(self.original, [("Accept-Encoding", "br"),
                                              ("Range", "bytes=0-5")])
        got = fields(response)
        self.assertEqual(response.status, 206)
        self.assertEqual(got["content-encoding"], "br")
        self.assertEqual(got["content-range"], "bytes 0-5/12")
        self.assertEqual(body_bytes(response), b"BROTLI")

    def test_several_ranges_of_a_sidecar_send_it_whole(self) -> None:
        response = self.serve(self.original, [("Accept-Encoding", "br"),
                                              ("Range", "bytes=0-1,5-6")])
        self.assertEqual(response.status, 200)
        self.assertEqual(body_bytes(response), b"BROTLI-BYTES")

    def test_unsatisfiable_range_of_sidecar_names_its_size(self) -> None:
        with self.assertRaises(HTTPError) as caught:
            self.serve(self.original, [("Accept-Encoding", "br"), ("Range", "bytes=12-")])
        self.assertEqual(caught.exception.status, 416)
        self.assertIn(("Content-Range", "bytes */12"), caught.exception.headers)
        self.assertIn(("Vary", "Accept-Encoding"), caught.exception.headers)


class SidecarAbsenceTest(TempFiles):
    """The remembered absence of sidecars: used while the folder is unchanged, dropped at
    once when an entry of the folder is added, removed or renamed."""

    ORIGINAL = b"<p>hello</p>\n" * 20
    BROWSER = [("Accept-Encoding", "gzip, deflate, br")]

    def setUp(self) -> None:
        super().setUp()
        self.path = self.write("page.html", self.ORIGINAL)
        # Every folder counts as settled, as one untouched for a while would.
        patcher = mock.patch("nex.files.filecache.SETTLED_NS", -(1 << 62))
        patcher.start()
        self.addCleanup(patcher.stop)
        patcher = mock.patch.object(static_module, "_NO_SIDECARS",
                                    static_module.AbsentSidecars())
        patcher.start()
        self.addCleanup(patcher.stop)

    def current(self) -> Target:
        """The file's Target as the resolver gives it now, with its folder's lstat."""
        return Target("file", self.path, "/page.html", os.stat(self.path),
                      os.lstat(self.folder))

    def serve_counting(self) -> Tuple[Response, int]:
        """The response to a browser's GET, and how many sidecars were looked for."""
        with mock.patch("nex.files.static._regular_file",
                        wraps=static_module._regular_file) as looked_for:
            response = self.serve(self.current(), self.BROWSER)
        return response, looked_for.call_count

    def test_absence_is_remembered_while_the_folder_is_unchanged(self) -> None:
        first, looks = self.serve_counting()
        self.assertEqual(looks, 2)
        second, looks = self.serve_counting()
        self.assertEqual(looks, 0)
        for response in (first, second):
            self.assertNotIn("content-encoding", fields(response))
            self.assertNotIn("vary", fields(response))
            self.assertEqual(body_bytes(response), self.ORIGINAL)

    def test_a_sidecar_created_is_served_at_once(self) -> None:
        self.serve_counting()
        for name, coding in (("page.html.gz", "gzip"), ("page.html.br", "br")):
            with self.subTest(sidecar=name):
                self.write(name, b"CODED-" + coding.encode("ascii"))
                response, _ = self.serve_counting()
                self.assertEqual(fields(response).get("content-encoding"), coding)
                self.assertEqual(fields(response)["vary"], "Accept-Encoding")
                self.assertEqual(body_bytes(response), b"CODED-" + coding.encode("ascii"))

    def test_a_sidecar_renamed_into_place_is_served_at_once(self) -> None:
        self.serve_counting()
        staged = self.write("staged.tmp", b"CODED-br")
        os.rename(staged, self.path + ".br")
        response, _ = self.serve_counting()
        self.assertEqual(fields(response).get("content-encoding"), "br")

    def test_a_sidecar_removed_is_no_longer_served(self) -> None:
        self.write("page.html.br", b"CODED-br")
        response, _ = self.serve_counting()
        self.assertEqual(fields(response).get("content-encoding"), "br")
        os.remove(self.path + ".br")
        response, looks = self.serve_counting()
        self.assertNotIn("content-encoding", fields(response))
        self.assertEqual(looks, 2)  # a sidecar that exists is never remembered
        response, looks = self.serve_counting()
        self.assertEqual(looks, 0)

    def test_another_entry_of_the_folder_makes_it_look_again(self) -> None:
        self.serve_counting()
        self.write("other.txt", b"x")
        _, looks = self.serve_counting()
        self.assertEqual(looks, 2)

    def test_a_folder_changed_lately_is_not_trusted(self) -> None:
        with mock.patch("nex.files.filecache.SETTLED_NS", 1 << 62):
            self.serve_counting()
            _, looks = self.serve_counting()
        self.assertEqual(looks, 2)

    def test_without_the_folder_from_the_resolver_it_is_stat_once(self) -> None:
        target = Target("file", self.path, "/page.html", os.stat(self.path))
        self.serve(target, self.BROWSER)
        with mock.patch("nex.files.static.os.stat", wraps=os.stat) as stat_call, \
                mock.patch("nex.files.static._regular_file") as looked_for:
            response = self.serve(target, self.BROWSER)
        stat_call.assert_called_once_with(self.folder)
        looked_for.assert_not_called()
        self.assertNotIn("content-encoding", fields(response))
        self.write("page.html.gz", b"CODED-gzip")
        self.assertEqual(fields(self.serve(target, self.BROWSER)).get("content-encoding"),
                         "gzip")


class GzipOnTheFlyTest(TempFiles):
    """Optional in-memory gzip for compressible files."""

    DATA = b"<p>" + b"compress me please " * 200 + b"</p>"

    def gzip_settings(self, **extra) -> dict:
        settings = {"gzip": True, "gzip_min_size": 100, "precompressed": False}
        settings.update(extra)
        return settings

    def test_round_trip(self) -> None:
        target = self.target("page.html", self.DATA)
        response = self.serve(target, [("Accept-Encoding", "gzip")], **self.gzip_settings())
        got = fields(response)
        self.assertEqual(response.status, 200)
        self.assertEqual(got["content-encoding"], "gzip")
        self.assertEqual(got["vary"], "Accept-Encoding")
        self.assertEqual(got["content-type"], "text/html; charset=utf-8")
        self.assertTrue(got["etag"].endswith('-gzip"'))
        self.assertIsNone(response.file)
        self.assertEqual(gzip.decompress(body_bytes(response)), self.DATA)
        self.assertLess(response.content_length, len(self.DATA))

    def test_output_is_deterministic(self) -> None:
        target = self.target("page.html", self.DATA)
        bodies = {body_bytes(self.serve(target, [("Accept-Encoding", "gzip")],
                                        **self.gzip_settings())) for _ in range(2)}
        self.assertEqual(len(bodies), 1)

    def test_not_applied(self) -> None:
        cases = [
            ("client does not accept gzip", "page.html", self.DATA, "br", {}),
            ("client refuses gzip", "page.html", self.DATA, "gzip;q=0", {}),
            ("no Accept-Encoding", "page.html", self.DATA, None, {}),
            ("gzip off", "page.html", self.DATA, "gzip", {"gzip": False}),
            ("too small", "page.html", b"<p>tiny</p>", "gzip", {}),
            ("not compressible", "photo.png", self.DATA, "gzip", {}),
        ]
        for label, name, data, accept, extra in cases:
            with self.subTest(label):
                target = self.target(name, data)
                request_fields = [] if accept is None else [("Accept-Encoding", accept)]
                response = self.serve(target, request_fields, **self.gzip_settings(**extra))
                self.assertNotIn("content-encoding", fields(response))
                self.assertEqual(body_bytes(response), data)

    def test_vary_whenever_eligible(self) -> None:
        target = self.target("page.html", self.DATA)
        response = self.serve(target, **self.gzip_settings())
        self.assertEqual(fields(response)["vary"], "Accept-Encoding")
        small = self.target("small.html", b"<p>")
        self.assertNotIn("vary", fields(self.serve(small, **self.gzip_settings())))

    def test_range_request_gets_identity_ranges(self) -> None:
        target = self.target("page.html", self.DATA)
        response = self.serve(target, [("Accept-Encoding", "gzip"), ("Range", "bytes=3-10")],
                              **self.gzip_settings())
        got = fields(response)
        self.assertEqual(response.status, 206)
        self.assertNotIn("content-encoding", got)
        self.assertEqual(got["vary"], "Accept-Encoding")
        self.assertEqual(body_bytes(response), self.DATA[3:11])

    def test_range_ignored_by_if_range_still_gets_identity(self) -> None:
        target = self.target("page.html", self.DATA)
        response = self.serve(target, [("Accept-Encoding", "gzip"), ("Range", "bytes=3-10"),
                                       ("If-Range", '"stale"')], **self.gzip_settings())
        self.assertEqual(response.status, 200)
        self.assertNotIn("content-encoding", fields(response))
        self.assertEqual(body_bytes(response), self.DATA)

    def test_revalidation_with_the_gzip_etag(self) -> None:
        target = self.target("page.html", self.DATA)
        accept = [("Accept-Encoding", "gzip")]
        etag = fields(self.serve(target, accept, **self.gzip_settings()))["etag"]
        response = self.serve(target, accept + [("If-None-Match", etag)],
                              **self.gzip_settings())
        self.assertEqual(response.status, 304)
        self.assertEqual(fields(response)["vary"], "Accept-Encoding")

    def test_precompressed_sidecar_wins_over_on_the_fly(self) -> None:
        target = self.target("page.html", self.DATA)
        self.write("page.html.gz", b"SIDECAR")
        response = self.serve(target, [("Accept-Encoding", "gzip")],
                              **self.gzip_settings(precompressed=True))
        self.assertEqual(body_bytes(response), b"SIDECAR")
        self.assertTrue(fields(response)["etag"].endswith('-gz"'))

    def test_on_the_fly_when_only_an_unaccepted_sidecar_exists(self) -> None:
        target = self.target("page.html", self.DATA)
        self.write("page.html.br", b"BR")
        response = self.serve(target, [("Accept-Encoding", "gzip")],
                              **self.gzip_settings(precompressed=True))
        self.assertEqual(gzip.decompress(body_bytes(response)), self.DATA)


if __name__ == "__main__":
    unittest.main()
