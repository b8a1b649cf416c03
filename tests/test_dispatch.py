"""Routing without sockets: a Request through a real Dispatcher to a Response or an HTTPError."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import unittest
from typing import Iterable, Optional, Tuple
from unittest import mock

from nex import SERVER_SOFTWARE
from nex.site.login import FailureLimiter, ProtectedPaths, SiteAuth, UsersFile
from nex.process.config import load_config
from nex.site.routing import SERVED_METHODS, Dispatcher, private_cache_control
from nex.http.errors import HTTPError
from nex.files.filecache import SmallFileCache
from nex.files.misses import MissCache
from nex.site.hosts import HostValidator
from nex.http.response import FileSlice, Response
from nex.files.templates import TemplateSet
from tests.support import body_bytes, fields
from tests.support import make_request
from tests.support.access import basic, make_users

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGNATURE = "Nex test signature"
CLIENT = "192.0.2.10"
ALLOW = "GET, HEAD, OPTIONS"
#: Methods RFC 9110 defines that a file server does not serve: 405, not 501.
KNOWN_UNSERVED = ("POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT")




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
        response = (site or self.site()).respond(make_request(method, target, host), None,
                                                 CLIENT)
        if response.file is not None:
            self.addCleanup(response.file.close)
        return response

    def refusal(self, method: str, target: str, host: str = "localhost",
                site: Optional[Dispatcher] = None) -> HTTPError:
        with self.assertRaises(HTTPError) as caught:
            self.respond(method, target, host, site)
        return caught.exception


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
                self.assertIn(f"{SERVER_SOFTWARE} Server at localhost Port 8080", page)
        self.assertIn('href="hello.txt"', body_bytes(self.respond("GET", "/")).decode())
        self.assertIn('href="guide.html"', body_bytes(self.respond("GET", "/docs/")).decode())

    def test_folder_without_its_slash_is_redirected(self) -> None:
        error = self.refusal("GET", "/docs")
        self.assertEqual(error.status, 301)
        self.assertIn(("Location", "/docs/"), error.headers)

    def test_missing_file_is_404(self) -> None:
        # Returned, not raised: the error's response, as the connection would make it.
        site = self.site()
        response = self.respond("GET", "/nothing.txt", site=site)
        self.assertEqual(response.status, 404)
        made = site.error_response(HTTPError(404, "The requested path /nothing.txt was not found."),
                                   make_request("GET", "/nothing.txt", "localhost"))
        self.assertEqual((response.headers, body_bytes(response)),
                         (made.headers, body_bytes(made)))

    def test_a_missing_path_is_answered_without_an_exception(self) -> None:
        # On some interpreters (CPython before 3.11.7, gh-109181) an exception raised through
        # the calls between the resolver and the connection costs more than the rest of the
        # 404; a path remembered missing is answered with nothing raised.
        site = dataclasses.replace(self.site(), misses=MissCache())
        raised = []

        def trace(frame, event, arg):
            if event == "exception":
                raised.append((frame.f_code.co_name, arg[0].__name__))
            return trace

        with mock.patch("nex.files.filecache.SETTLED_NS", -(1 << 62)):  # the root settled
            for attempt in ("first", "remembered", "hidden"):
                raised.clear()
                target = "/.hidden" if attempt == "hidden" else "/nothing.txt"
                sys.settrace(trace)
                try:
                    response = self.respond("GET", target, site=site)
                finally:
                    sys.settrace(None)
                self.assertEqual(response.status, 404)
                if attempt != "first":  # the first look at the disk raises FileNotFoundError
                    self.assertEqual(raised, [], attempt)
        self.assertEqual(len(site.misses), 1)

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
        with mock.patch("nex.site.routing.resolve_segments") as resolve:
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
        with mock.patch("nex.site.routing.resolve_segments") as resolve, \
                mock.patch("nex.site.routing.serve_file") as serve_file, \
                mock.patch("nex.site.routing.render_listing") as render_listing:
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
        response = site.respond(request, None, CLIENT)
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




ALICE = basic("alice:wonderland")


class AuthTest(DispatchTestCase):
    """Host check, then the login for protected paths, then the files."""

    def setUp(self) -> None:
        super().setUp()
        os.mkdir(os.path.join(self.root, "private"))
        self.write("private/secret.txt", b"the secret\n")
        os.mkdir(os.path.join(self.root, "privateer"))
        self.write("privateer/open.txt", b"open\n")
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        self.auth = SiteAuth(UsersFile.load(make_users(folder)), ProtectedPaths(["/private/"]),
                             "Nex", FailureLimiter(3))

    def auth_site(self, **settings: object) -> Dispatcher:
        config = dataclasses.replace(self.config, **settings)
        return Dispatcher(config, self.templates, HostValidator(("localhost",)), SIGNATURE,
                          auth=self.auth)

    def get(self, target: str, authorization: Optional[str] = None, method: str = "GET",
            site: Optional[Dispatcher] = None, client: str = CLIENT,
            headers: Iterable[Tuple[str, str]] = ()) -> Response:
        sent = [*headers] + ([("Authorization", authorization)] if authorization else [])
        response = (site or self.auth_site()).respond(
            make_request(method, target, headers=sent), None, client)
        if response.file is not None:
            self.addCleanup(response.file.close)
        return response

    def refused(self, target: str, authorization: Optional[str] = None, method: str = "GET",
                site: Optional[Dispatcher] = None, client: str = CLIENT,
                host: str = "localhost") -> HTTPError:
        sent = [("Authorization", authorization)] if authorization else []
        with self.assertRaises(HTTPError) as caught:
            (site or self.auth_site()).respond(make_request(method, target, host, sent), None,
                                               client)
        return caught.exception

    def test_unprotected_paths_need_no_login(self) -> None:
        for target in ("/hello.txt", "/", "/privateer/open.txt", "/privateer/"):
            with self.subTest(target=target):
                response = self.get(target)
                self.assertEqual(response.status, 200)
                self.assertIsNone(response.user)

    def test_protected_paths_are_challenged_before_the_disk_is_looked_at(self) -> None:
        # A 404, 301 or listing for a stranger would tell what the protected folder holds.
        with mock.patch("nex.site.routing.resolve_segments") as resolve:
            for target in ("/private/secret.txt", "/private/missing.txt", "/private",
                           "/private/", "/%70rivate/secret.txt", "/x/../private/secret.txt",
                           "/PRIVATE/secret.txt"):
                with self.subTest(target=target):
                    error = self.refused(target)
                    self.assertEqual(error.status, 401)
                    self.assertEqual(error.headers, (
                        ("WWW-Authenticate", 'Basic realm="Nex", charset="UTF-8"'),))
                    self.assertIsNone(error.user)
        resolve.assert_not_called()

    def test_right_credentials_serve_and_name_the_user(self) -> None:
        response = self.get("/private/secret.txt", ALICE)
        self.assertEqual((response.status, response.user), (200, "alice"))
        self.assertEqual(body_bytes(response), b"the secret\n")
        listing = self.get("/private/", ALICE)
        self.assertEqual((listing.status, listing.user), (200, "alice"))
        self.assertIn("secret.txt", body_bytes(listing).decode("utf-8"))

    def test_wrong_credentials_for_an_open_path_serve_it_anonymously(self) -> None:
        response = self.get("/hello.txt", basic("alice:guess"))
        self.assertEqual((response.status, response.user), (200, None))
        self.assertNotIn("private", fields(response).get("cache-control", ""))

    def test_right_credentials_for_an_open_path_name_the_user(self) -> None:
        # They decide what a listing of an open folder shows (its protected entries).
        response = self.get("/hello.txt", ALICE)
        self.assertEqual((response.status, response.user), (200, "alice"))
        self.assertIn("private", fields(response)["cache-control"])

    def test_refusal_after_login_names_the_user(self) -> None:
        # A GET's 404 comes back as the error's response, made as for one raised.
        missing = self.get("/private/missing.txt", ALICE)
        self.assertEqual((missing.status, missing.user), (404, "alice"))
        self.assertNotIn("cache-control", fields(missing))
        redirect = self.refused("/private", ALICE)
        self.assertEqual((redirect.status, redirect.user), (301, "alice"))

    def test_wrong_credentials_are_401(self) -> None:
        for value in (basic("alice:guess"), basic("bob:wonderland"), "Bearer token"):
            with self.subTest(value=value):
                self.assertEqual(self.refused("/private/secret.txt", value).status, 401)

    def test_host_is_checked_before_the_login(self) -> None:
        error = self.refused("/private/secret.txt", host="attacker.example")
        self.assertEqual(error.status, 403)

    def test_login_comes_before_the_method(self) -> None:
        self.assertEqual(self.refused("/private/secret.txt", method="POST").status, 401)
        self.assertEqual(self.refused("/private/secret.txt", ALICE, method="POST").status, 405)
        self.assertEqual(self.refused("/hello.txt", method="POST").status, 405)

    def test_options_needs_no_login_and_tells_nothing(self) -> None:
        with mock.patch("nex.site.routing.resolve_segments") as resolve:
            for target in ("/private/secret.txt", "/private/missing.txt"):
                with self.subTest(target=target):
                    response = self.get(target, method="OPTIONS")
                    self.assertEqual((response.status, response.user), (204, None))
                    self.assertEqual(response.headers, [("Allow", ALLOW)])
        resolve.assert_not_called()
        self.assertEqual(self.refused("/missing.txt", method="OPTIONS").status, 404)
        self.assertEqual(self.get("*", method="OPTIONS").status, 204)

    def test_failures_past_the_limit_get_429_even_with_the_right_password(self) -> None:
        for _ in range(3):
            self.assertEqual(self.refused("/private/secret.txt", basic("alice:guess")).status,
                             401)
        error = self.refused("/private/secret.txt", ALICE)
        self.assertEqual(error.status, 429)
        self.assertTrue(dict(error.headers)["Retry-After"].isdigit())
        self.assertEqual(self.get("/hello.txt").status, 200)  # open paths stay open
        self.assertEqual(self.get("/private/secret.txt", ALICE, client="192.0.2.99").user,
                         "alice")

    def test_authenticated_responses_are_private(self) -> None:
        for settings, expected in (({}, "private, no-cache"),
                                   ({"cache_control": ""}, "private"),
                                   ({"cache_control": "public, max-age=600"},
                                    "private, max-age=600"),
                                   ({"cache_control": "no-store"}, "no-store"),
                                   ({"max_age": {".txt": 60}}, "private, max-age=60")):
            with self.subTest(settings=settings):
                response = self.get("/private/secret.txt", ALICE, site=self.auth_site(**settings))
                self.assertEqual([value for name, value in response.headers
                                  if name == "Cache-Control"], [expected])

    def test_not_modified_and_listings_are_private_too(self) -> None:
        etag = fields(self.get("/private/secret.txt", ALICE))["etag"]
        not_modified = self.get("/private/secret.txt", ALICE, headers=[("If-None-Match", etag)])
        self.assertEqual(not_modified.status, 304)
        self.assertEqual(fields(not_modified)["cache-control"], "private, no-cache")
        self.assertEqual(fields(self.get("/private/", ALICE))["cache-control"], "private")


class PrivateCacheControlTest(unittest.TestCase):
    """What a response for a logged-in user may tell caches (RFC 9111 §3.5, §5.2.2.7)."""

    def test_table(self) -> None:
        for value, expected in (
                (None, "private"),
                ("", "private"),
                ("no-cache", "private, no-cache"),
                ("max-age=3600", "private, max-age=3600"),
                ("public, max-age=60", "private, max-age=60"),
                ("Public, S-MaxAge=60, max-age=5", "private, max-age=5"),
                ("must-revalidate, public, max-age=0", "private, must-revalidate, max-age=0"),
                ("no-store", "no-store"),
                ("no-store, public", "no-store"),
                ("private", "private"),
                ("PRIVATE, max-age=5", "PRIVATE, max-age=5"),
                # A private naming fields restricts only those: the whole must be private.
                ('private="Set-Cookie", max-age=5', 'private, private="Set-Cookie", max-age=5'),
                ('no-cache="a, public", public', 'private, no-cache="a, public"'),
                ('x="a\\"b", public', 'private, x="a\\"b"'),
                (" max-age=1 ,\tno-cache ", "private, max-age=1, no-cache"),
                ("max-age=60;public", "private, no-cache"),
                # RFC 9110 §5.6.1: empty list elements are ignored.
                ("public,", "private"),
                (", max-age=5,,", "private, max-age=5"),
                ('x="open', "private, no-cache")):
            with self.subTest(value=value):
                self.assertEqual(private_cache_control(value), expected)


if __name__ == "__main__":
    unittest.main()
