"""Routing without sockets: a Request through a real Dispatcher to a Response or an HTTPError."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from typing import Iterable, Optional, Tuple
from unittest import mock

from nex.config import load_config
from nex.dispatch import SERVED_METHODS, Dispatcher
from nex.errors import HTTPError
from nex.filecache import SmallFileCache
from nex.hosts import HostValidator
from nex.request import Headers, Request
from nex.response import FileSlice, Response
from nex.templates import TemplateSet

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGNATURE = "Nex test signature"
ALLOW = "GET, HEAD, OPTIONS"
#: Methods RFC 9110 defines that a file server does not serve: 405, not 501.
KNOWN_UNSERVED = ("POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT")


def make_request(method: str, target: str, host: str = "localhost",
                 headers: Iterable[Tuple[str, str]] = ()) -> Request:
    """A parsed HTTP/1.1 request as the parser would build it."""
    path, _, query = target.partition("?")
    return Request(method, target, path if target != "*" else "", query, "HTTP/1.1",
                   Headers([("Host", host), *headers]), host, True)


def fields(response: Response) -> dict:
    return {name.lower(): value for name, value in response.headers}


class DispatchTestCase(unittest.TestCase):
    """A document root with a file and a folder, and a Dispatcher serving it."""

    def setUp(self) -> None:
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root, True)
        self.write("hello.txt", b"hello, world\n")
        os.mkdir(os.path.join(self.root, "docs"))
        self.write("docs/guide.html", b"<h1>guide</h1>")
        self.config = load_config(None, {
            "document_root": self.root,
            "error_pages": os.path.join(PROJECT, "error_pages"),
            "templates": os.path.join(PROJECT, "other_templates"),
        })
        self.templates = TemplateSet.load(self.config.error_pages, self.config.templates)

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.root, name)
        with open(path, "wb") as out:
            out.write(data)
        return path

    def site(self, hosts: Iterable[str] = ("localhost", "127.0.0.1"),
             file_cache: Optional[SmallFileCache] = None) -> Dispatcher:
        return Dispatcher(self.config, self.templates, HostValidator(hosts), SIGNATURE,
                          file_cache)

    def respond(self, method: str, target: str, host: str = "localhost",
                site: Optional[Dispatcher] = None) -> Response:
        response = (site or self.site()).respond(make_request(method, target, host), None)
        if response.file is not None:
            self.addCleanup(response.file.close)
        return response

    def refusal(self, method: str, target: str, host: str = "localhost",
                site: Optional[Dispatcher] = None) -> HTTPError:
        with self.assertRaises(HTTPError) as caught:
            self.respond(method, target, host, site)
        return caught.exception


def body_bytes(response: Response) -> bytes:
    out = []
    for piece in response.body:
        if isinstance(piece, FileSlice):
            out.append(os.pread(response.file.fileno(), piece.count, piece.offset))
        else:
            out.append(bytes(piece))
    return b"".join(out)


class ServedMethodsTest(DispatchTestCase):
    """GET, HEAD and OPTIONS reach the file, the listing or the Allow answer."""

    def test_get_a_file(self) -> None:
        response = self.respond("GET", "/hello.txt")
        self.assertEqual(response.status, 200)
        self.assertEqual(body_bytes(response), b"hello, world\n")
        self.assertEqual(fields(response)["content-type"], "text/plain; charset=utf-8")

    def test_head_gets_the_get_response(self) -> None:
        get, head = self.respond("GET", "/hello.txt"), self.respond("HEAD", "/hello.txt")
        self.assertEqual((head.status, head.headers, head.content_length),
                         (get.status, get.headers, get.content_length))

    def test_query_does_not_change_the_file(self) -> None:
        response = self.respond("GET", "/hello.txt?v=2")
        self.assertEqual(body_bytes(response), b"hello, world\n")

    def test_folder_gets_a_listing(self) -> None:
        for target in ("/", "/docs/"):
            with self.subTest(target=target):
                response = self.respond("GET", target)
                self.assertEqual(response.status, 200)
                self.assertEqual(fields(response)["content-type"], "text/html; charset=utf-8")
                page = body_bytes(response).decode("utf-8")
                self.assertIn(f"<title>Index of {target}</title>", page)
                self.assertIn(SIGNATURE, page)
        self.assertIn('href="hello.txt"', body_bytes(self.respond("GET", "/")).decode())
        self.assertIn('href="guide.html"', body_bytes(self.respond("GET", "/docs/")).decode())

    def test_folder_without_its_slash_is_redirected(self) -> None:
        error = self.refusal("GET", "/docs")
        self.assertEqual(error.status, 301)
        self.assertIn(("Location", "/docs/"), error.headers)

    def test_missing_file_is_404(self) -> None:
        self.assertEqual(self.refusal("GET", "/nothing.txt").status, 404)

    def test_options_asterisk_is_204_with_allow(self) -> None:
        response = self.respond("OPTIONS", "*")
        self.assertEqual(response.status, 204)
        self.assertEqual(response.headers, [("Allow", ALLOW)])
        self.assertEqual(list(response.body), [])

    def test_options_for_a_path_is_204_with_allow(self) -> None:
        for target in ("/hello.txt", "/", "/docs/"):
            with self.subTest(target=target):
                response = self.respond("OPTIONS", target)
                self.assertEqual(response.status, 204)
                self.assertEqual(response.headers, [("Allow", ALLOW)])
                self.assertIsNone(response.file)

    def test_options_for_a_missing_path_is_404(self) -> None:
        self.assertEqual(self.refusal("OPTIONS", "/nothing.txt").status, 404)

    def test_allow_lists_the_served_methods(self) -> None:
        self.assertEqual(", ".join(SERVED_METHODS), ALLOW)


class RefusedMethodsTest(DispatchTestCase):
    """Methods a file server knows but does not serve, and methods it does not know."""

    def test_known_methods_are_405_with_allow(self) -> None:
        for method in KNOWN_UNSERVED:
            for target in ("/hello.txt", "/", "/nothing.txt"):
                with self.subTest(method=method, target=target):
                    error = self.refusal(method, target)
                    self.assertEqual(error.status, 405)
                    self.assertEqual(error.headers, (("Allow", ALLOW),))

    def test_unknown_methods_are_501(self) -> None:
        # Methods are case-sensitive (RFC 9110 §9.1): "get" is not GET.
        for method in ("BREW", "PROPFIND", "get", "Get", "head", "options", "post"):
            with self.subTest(method=method):
                error = self.refusal(method, "/hello.txt")
                self.assertEqual(error.status, 501)
                self.assertNotIn("Allow", dict(error.headers))

    def test_refused_methods_never_touch_the_file_system(self) -> None:
        with mock.patch("nex.dispatch.resolve") as resolve:
            for method in ("POST", "BREW"):
                with self.subTest(method=method):
                    self.refusal(method, "/hello.txt")
        resolve.assert_not_called()


class HostTest(DispatchTestCase):
    """A Host outside allowed_hosts is refused before anything else is looked at."""

    def test_refused_host_is_403(self) -> None:
        for host in ("evil.example", "localhost.evil.example", "", "127.0.0.2"):
            with self.subTest(host=host):
                self.assertEqual(self.refusal("GET", "/hello.txt", host).status, 403)

    def test_allowed_hosts_are_served(self) -> None:
        for host in ("localhost", "LOCALHOST:8080", "127.0.0.1:80", "localhost."):
            with self.subTest(host=host):
                self.assertEqual(self.respond("GET", "/hello.txt", host).status, 200)

    def test_dns_rebinding_host_is_refused_before_anything_is_resolved(self) -> None:
        # The 403 must come first: a 404, 405 or listing would tell a rebinding page about
        # the server's files.
        cases = [("GET", "/hello.txt"), ("GET", "/"), ("GET", "/nothing.txt"),
                 ("GET", "/../../etc/passwd"), ("OPTIONS", "*"), ("OPTIONS", "/"),
                 ("POST", "/hello.txt"), ("BREW", "/")]
        with mock.patch("nex.dispatch.resolve") as resolve, \
                mock.patch("nex.dispatch.serve_file") as serve_file, \
                mock.patch("nex.dispatch.render_listing") as render_listing:
            for method, target in cases:
                with self.subTest(method=method, target=target):
                    self.assertEqual(self.refusal(method, target, "attacker.example").status,
                                     403)
        resolve.assert_not_called()
        serve_file.assert_not_called()
        render_listing.assert_not_called()

    def test_any_host_with_asterisk(self) -> None:
        site = self.site(hosts=("*",))
        for host in ("anything.example", ""):
            with self.subTest(host=host):
                self.assertEqual(self.respond("GET", "/hello.txt", host, site).status, 200)


class FileCacheTest(DispatchTestCase):
    """With a small-file cache in the Dispatcher, small files come back as bytes, never stale."""

    def test_small_files_come_back_as_bytes(self) -> None:
        site = self.site(file_cache=SmallFileCache(1 << 20))
        for _ in range(2):
            response = self.respond("GET", "/hello.txt", site=site)
            self.assertEqual(response.status, 200)
            self.assertIsNone(response.file)
            self.assertEqual(list(response.body), [b"hello, world\n"])
            self.assertEqual(response.content_length, 13)

    def test_rewritten_file_is_served_fresh(self) -> None:
        site = self.site(file_cache=SmallFileCache(1 << 20))
        first = self.respond("GET", "/hello.txt", site=site)
        self.assertEqual(body_bytes(first), b"hello, world\n")
        path = self.write("hello.txt", b"goodbye, world\n")
        status = os.stat(path)
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))
        second = self.respond("GET", "/hello.txt", site=site)
        self.assertIsNone(second.file)
        self.assertEqual(body_bytes(second), b"goodbye, world\n")
        self.assertNotEqual(fields(first)["etag"], fields(second)["etag"])

    def test_same_size_rewrite_with_a_new_mtime_is_served_fresh(self) -> None:
        site = self.site(file_cache=SmallFileCache(1 << 20))
        self.respond("GET", "/hello.txt", site=site)
        path = self.write("hello.txt", b"HELLO, WORLD\n")
        status = os.stat(path)
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))
        self.assertEqual(body_bytes(self.respond("GET", "/hello.txt", site=site)),
                         b"HELLO, WORLD\n")

    def test_range_of_a_cached_file(self) -> None:
        site = self.site(file_cache=SmallFileCache(1 << 20))
        request = make_request("GET", "/hello.txt", headers=[("Range", "bytes=0-4")])
        response = site.respond(request, None)
        self.assertEqual(response.status, 206)
        self.assertIsNone(response.file)
        self.assertEqual(body_bytes(response), b"hello")

    def test_files_too_large_for_the_cache_stay_files(self) -> None:
        site = self.site(file_cache=SmallFileCache(4))
        response = self.respond("GET", "/hello.txt", site=site)
        self.assertIsNotNone(response.file)
        self.assertEqual(body_bytes(response), b"hello, world\n")

    def test_without_a_cache_the_file_is_handed_to_the_writer(self) -> None:
        response = self.respond("GET", "/hello.txt")
        self.assertIsNotNone(response.file)
        self.assertEqual(response.body, [FileSlice(0, 13)])


if __name__ == "__main__":
    unittest.main()
