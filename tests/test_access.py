"""The access policy: one decision every handler asks, and uploads that cannot hurt.

Unit tests of :class:`AccessPolicy` and :class:`WriteGuard` without sockets, then the real
server: the matrix of every action (read, list, archive, write) × kind of path (plain,
dot-segment, encoded, symlink in, symlink out, sidecar, index) × kind of user (anonymous,
wrong user, right user), and a test per hole the policy closes, named after the bug.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
import unittest
import unicodedata
from typing import Dict, List, Optional
from unittest import mock

from nex.files import static as static_module
from nex.files.filecache import folder_identity
from nex.files.leftovers import Removed, remove_stale_uploads, stale_after
from nex.files.listing import ListingCache
from nex.files.paths import UPLOAD_TEMP_PREFIX, disguised, shown_name, split_path
from nex.files.templates import TemplateSet
from nex.http.errors import HTTPError
from nex.http.request import Headers, Request
from nex.process.config import Config
from nex.site.access import AccessPolicy
from nex.site.hosts import HostValidator
from nex.site.login import ProtectedPaths, SiteAuth
from nex.site.routing import Dispatcher
from nex.site.sameorigin import WriteGuard
from tests.support import REPO, START_TIMEOUT, NexServer, http_request, wait_until
from tests.support.access import (ANONYMOUS, RIGHT, SECRET, WRONG, ServerTestCase,
                                  make_chain, make_users, remove_chain, write, zip_names)
from tests.support.threads import run_in_threads









def make_request(method: str, target: str, headers: Dict[str, str],
                 host: str = "localhost") -> Request:
    path, _, query = target.partition("?")
    return Request(method, target, path, query, "HTTP/1.1",
                   Headers([("Host", host), *headers.items()]), host, True)


class AccessPolicyTest(unittest.TestCase):
    """The decision alone: URL path and real path, per action and user."""

    def setUp(self) -> None:
        self.policy = AccessPolicy(ProtectedPaths(["/private/"]), "/srv/root", upload=True)

    def test_anonymous_readers_are_kept_out_of_protected_url_paths(self) -> None:
        for action in ("read", "list", "archive", "write"):
            with self.subTest(action=action):
                self.assertFalse(self.policy.may(None, action, "/private/a.txt",
                                                 "/srv/root/private/a.txt"))
                self.assertTrue(self.policy.may("alice", action, "/private/a.txt",
                                                "/srv/root/private/a.txt"))
                self.assertTrue(self.policy.may(None, action, "/public/a.txt",
                                                "/srv/root/public/a.txt"))

    def test_symlink_into_a_protected_folder_is_judged_by_its_real_path(self) -> None:
        self.assertFalse(self.policy.may(None, "read", "/public/link/secret.txt",
                                         "/srv/root/private/secret.txt"))
        self.assertFalse(self.policy.may(None, "write", "/public/link/new.txt",
                                         "/srv/root/private/new.txt"))
        self.assertTrue(self.policy.may("alice", "read", "/public/link/secret.txt",
                                        "/srv/root/private/secret.txt"))

    def test_real_path_outside_the_root_is_judged_by_its_url_path(self) -> None:
        self.assertTrue(self.policy.may(None, "read", "/public/out/x", "/elsewhere/private/x"))
        self.assertFalse(self.policy.may(None, "read", "/private/x", "/elsewhere/x"))

    def test_a_name_beginning_like_the_root_is_not_inside_it(self) -> None:
        self.assertTrue(self.policy.may(None, "read", "/a", "/srv/rootprivate/a"))

    def test_case_and_normal_form_do_not_open_a_prefix(self) -> None:
        self.assertFalse(self.policy.may(None, "read", "/PRIVATE/a", "/srv/root/PRIVATE/a"))
        self.assertFalse(self.policy.may(None, "read", "/x/a", "/srv/root/Private/a"))

    def test_writes_need_uploads_on(self) -> None:
        policy = AccessPolicy(None, "/srv/root", upload=False)
        self.assertFalse(policy.may("alice", "write", "/a", "/srv/root/a"))
        self.assertTrue(policy.may(None, "read", "/private/a", "/srv/root/private/a"))

    def test_everything_is_open_to_a_user_or_with_nothing_protected(self) -> None:
        # The resolver skips real paths only when this holds, so it must never hold for an
        # anonymous client of a site with a protected path.
        self.assertFalse(self.policy.opens_everything_to(None))
        self.assertTrue(self.policy.opens_everything_to("alice"))
        self.assertTrue(AccessPolicy(None, "/srv/root", upload=False).opens_everything_to(None))

    def test_unknown_action_is_an_error(self) -> None:
        with self.assertRaises(ValueError):
            self.policy.may(None, "delete", "/a", "/srv/root/a")

    def test_checker_binds_the_user(self) -> None:
        may = self.policy.checker("alice")
        self.assertTrue(may("read", "/private/a", "/srv/root/private/a"))
        self.assertFalse(self.policy.checker(None)("read", "/private/a",
                                                   "/srv/root/private/a"))


class WriteGuardTest(unittest.TestCase):
    """Same-origin and Host checks of requests that write, without sockets."""

    def setUp(self) -> None:
        self.guard = WriteGuard("http", ["files.example", "*.wild.example"])

    def check(self, headers: Dict[str, str], host: str = "localhost:8080") -> Optional[int]:
        try:
            self.guard.check(make_request("PUT", "/a.txt", headers, host))
        except HTTPError as error:
            return error.status
        return None

    def test_dns_rebinding_host_cannot_write(self) -> None:
        for host in ("attacker.example", "attacker.example:8080", "x.wild.example", ""):
            with self.subTest(host=host):
                self.assertEqual(self.check({}, host), 403)
        for host in ("127.0.0.1:8080", "[::1]:8080", "localhost", "LOCALHOST.",
                     "files.example:8080", "10.0.0.7"):
            with self.subTest(host=host):
                self.assertIsNone(self.check({}, host))

    def test_rebinding_refusal_names_the_setting(self) -> None:
        with self.assertRaises(HTTPError) as caught:
            self.guard.check(make_request("PUT", "/a", {}, "attacker.example"))
        self.assertIn("allowed_hosts", caught.exception.detail)

    def test_https_origin_on_a_plain_server_is_cross_site(self) -> None:
        self.assertEqual(self.check({"Origin": "https://localhost:8080"}), 403)
        self.assertIsNone(self.check({"Origin": "http://localhost:8080"}))
        self.assertEqual(self.check({"Origin": "null"}), 403)

    def test_null_origin_cannot_write_through_a_host_that_makes_no_origin(self) -> None:
        # "127.0.0.1:" and port 0 are IP literals, but no origin: one that failed to parse
        # must not equal a null Origin or a Referer that is no URL.
        for host in ("127.0.0.1:", "127.0.0.1:0"):
            with self.subTest(host=host):
                self.assertEqual(self.check({"Origin": "null"}, host), 403)
                self.assertEqual(self.check({"Referer": "about:blank"}, host), 403)
                self.assertIsNone(self.check({}, host))

    def test_cross_site_referer_without_origin_is_refused(self) -> None:
        self.assertEqual(self.check({"Referer": "http://evil.example/form.html"}), 403)
        self.assertEqual(self.check({"Referer": "https://localhost:8080/"}), 403)
        self.assertIsNone(self.check({"Referer": "http://localhost:8080/dir/?x=1"}))
        self.assertIsNone(self.check({}))

    def test_sec_fetch_site_cross_site_is_refused(self) -> None:
        self.assertEqual(self.check({"Sec-Fetch-Site": "cross-site"}), 403)
        self.assertIsNone(self.check({"Sec-Fetch-Site": "same-origin"}))

    def test_from_config_takes_server_name_and_exact_allowed_hosts(self) -> None:
        guard = WriteGuard.from_config(Config(server_name="nex.example",
                                              allowed_hosts=("a.example:8080", "*.b.example")))
        guard.check(make_request("PUT", "/a", {}, "nex.example"))
        guard.check(make_request("PUT", "/a", {}, "a.example:8080"))
        with self.assertRaises(HTTPError):
            guard.check(make_request("PUT", "/a", {}, "c.b.example"))


class DecodeOnceTest(unittest.TestCase):
    """The request path is decoded once, by routing, and the result carried to the login,
    the policy, the resolver and the handlers."""

    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="nex-decode-once-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        write(self.root, "private/a.txt", b"a")
        write(self.root, "open/b.txt", b"b")
        users_folder = tempfile.mkdtemp(prefix="nex-decode-once-users-")
        self.addCleanup(shutil.rmtree, users_folder, ignore_errors=True)
        users = make_users(users_folder)
        config = Config(document_root=self.root, upload=True, auth_users_file=users,
                        auth_protect=("/private/",),
                        error_pages=os.path.join(REPO, "error_pages"),
                        templates=os.path.join(REPO, "other_templates"))
        self.site = Dispatcher(config, TemplateSet.load(config.error_pages, config.templates),
                               HostValidator(("*",)), "sig",
                               auth=SiteAuth.from_config(config, on_error=print))

    def test_each_request_decodes_its_path_once(self) -> None:
        for method, target, credentials in (("GET", "/private/a.txt", RIGHT),
                                            ("GET", "/open/", ANONYMOUS),
                                            ("PUT", "/open/c.txt", ANONYMOUS),
                                            ("OPTIONS", "/open/b.txt", ANONYMOUS)):
            with self.subTest(method=method, target=target), \
                    mock.patch("nex.site.routing.split_path", wraps=split_path) as decode, \
                    mock.patch("nex.files.paths.split_path", wraps=split_path) as paths, \
                    mock.patch("nex.files.upload.split_path", wraps=split_path) as upload, \
                    mock.patch("nex.site.login.split_path", wraps=split_path) as login:
                response = self.site.respond(make_request(method, target, credentials),
                                             None, "127.0.0.1")
                response.release()
                self.assertLess(response.status, 300)
                decode.assert_called_once_with(target)
                for other in (paths, upload, login):  # (listings decode entry names)
                    self.assertNotIn(mock.call(target), other.call_args_list)


class NamesTest(unittest.TestCase):
    def test_every_control_and_format_character_disguises_a_name(self) -> None:
        missed = [hex(code) for code in range(0x110000)
                  if unicodedata.category(chr(code)) in ("Cc", "Cf") and not disguised(chr(code))]
        self.assertEqual(missed, [])
        self.assertFalse(disguised("caf\u00e9 \u65e5\u672c.txt"))

    def test_shown_name_escapes_them(self) -> None:
        self.assertEqual(shown_name("invoice\u202etxt.exe"), "invoice\\u202Etxt.exe")
        self.assertEqual(shown_name("a\x85b"), "a\\u0085b")


class SharedCachesTest(unittest.TestCase):
    """The caches all worker threads share stay consistent when hammered at once."""

    def hammer(self, work) -> None:
        def run(thread: int) -> None:
            for step in range(2000):
                work(thread, step)

        run_in_threads(run)

    def test_absent_sidecars_table_under_threads(self) -> None:
        table = static_module.AbsentSidecars(limit=64)
        identity = folder_identity(os.stat("."))

        def work(thread: int, step: int) -> None:
            path = f"/f{thread}-{step % 100}"
            table.remember(path, identity)
            table.known(path, identity)

        self.hammer(work)
        table.remember("/last", identity)
        self.assertTrue(table.known("/last", identity))

    def test_listing_cache_under_threads(self) -> None:
        cache = ListingCache(max_age=60, max_bytes=4096)
        settled = (1, 2, 3, 0)  # a folder identity whose last change is long past
        config, templates = Config(), object()

        def work(thread: int, step: int) -> None:
            key = (thread, step % 50)
            cache.store(key, settled, cache.now(), config, templates, "text/html", b"x" * 100)
            entry = cache.get(key, settled, config, templates)
            if entry is not None:
                self.assertEqual(entry.body, b"x" * 100)

        self.hammer(work)
        cache.store("last", settled, cache.now(), config, templates, "text/html", b"y")
        self.assertEqual(cache.get("last", settled, config, templates).body, b"y")


class LeftoversTest(unittest.TestCase):
    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="nex-leftovers-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)

    def test_crash_leftovers_are_removed_and_live_uploads_kept(self) -> None:
        config = Config(document_root=self.root, upload=True)
        old = write(self.root, f"a/{UPLOAD_TEMP_PREFIX}0123", b"half")
        live = write(self.root, f"a/{UPLOAD_TEMP_PREFIX}4567", b"going")
        kept = write(self.root, "a/file.txt", b"keep")
        past = time.time() - stale_after(config) - 10
        os.utime(old, (past, past))
        os.utime(kept, (past, past))
        self.assertEqual(remove_stale_uploads(config), (1, 0))
        self.assertFalse(os.path.exists(old))
        self.assertTrue(os.path.exists(live))
        self.assertTrue(os.path.exists(kept))

    def test_a_tree_deeper_than_the_recursion_limit_is_walked(self) -> None:
        # Anyone allowed MKCOL can nest folders a thousand deep: start-up must still walk
        # them, not stop with a RecursionError.
        deep = make_chain(self.root, sys.getrecursionlimit() + 100)
        self.addCleanup(remove_chain, self.root, deep)
        config = Config(document_root=self.root, upload=True)
        old = write(deep, f"{UPLOAD_TEMP_PREFIX}0123", b"half")
        past = time.time() - stale_after(config) - 10
        os.utime(old, (past, past))
        self.assertEqual(remove_stale_uploads(config), (1, 0))
        self.assertFalse(os.path.exists(old))

    def test_links_are_not_followed_nor_removed(self) -> None:
        config = Config(document_root=self.root, upload=True)
        outside = tempfile.mkdtemp(prefix="nex-leftovers-outside-")
        self.addCleanup(shutil.rmtree, outside, ignore_errors=True)
        target = write(outside, f"{UPLOAD_TEMP_PREFIX}0123", b"not ours")
        past = time.time() - stale_after(config) - 10
        os.utime(target, (past, past))
        os.symlink(outside, os.path.join(self.root, "out"))
        os.symlink(target, os.path.join(self.root, f"{UPLOAD_TEMP_PREFIX}link"))
        self.assertEqual(remove_stale_uploads(config), (0, 0))
        self.assertTrue(os.path.exists(target))
        self.assertTrue(os.path.islink(os.path.join(self.root, f"{UPLOAD_TEMP_PREFIX}link")))

    def test_a_folder_webdav_was_removing_is_removed_whole(self) -> None:
        # A DELETE takes a folder from its name first and removes it after: a crash between
        # leaves it hidden, and no one else would ever remove it.
        config = Config(document_root=self.root, upload=True)
        gone = os.path.join(self.root, "a", f"{UPLOAD_TEMP_PREFIX}{'0' * 32}.gone")
        write(gone, "sub/file.txt", b"half removed")
        other = write(self.root, f"a/{UPLOAD_TEMP_PREFIX}folder/file.txt", b"not ours")
        # Just taken from its name, it may be another Nex's, removing it now: spared.
        self.assertEqual(remove_stale_uploads(config), (0, 0))
        self.assertTrue(os.path.isdir(gone))
        later = time.time() + stale_after(config) + 10
        with mock.patch("time.time", return_value=later):
            self.assertEqual(remove_stale_uploads(config), (0, 1))
        self.assertFalse(os.path.lexists(gone))
        self.assertTrue(os.path.exists(other))

    def test_a_removed_folder_deeper_than_the_recursion_limit_does_not_stop_the_start(self
                                                                                      ) -> None:
        # Made deeper by another program while WebDAV removed it: passed over, not walked
        # down to a RecursionError.
        config = Config(document_root=self.root, upload=True)
        gone = os.path.join(self.root, f"{UPLOAD_TEMP_PREFIX}{'0' * 32}.gone")
        os.mkdir(gone)
        level = os.open(gone, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _ in range(sys.getrecursionlimit() + 10):
                os.mkdir("d", dir_fd=level)
                below = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=level)
                os.close(level)
                level = below
        finally:
            os.close(level)
        later = time.time() + stale_after(config) + 10
        with mock.patch("time.time", return_value=later):
            self.assertEqual(remove_stale_uploads(config), (0, 0))
        self.assertTrue(os.path.isdir(gone))
        top, second = os.path.join(gone, "d"), os.path.join(gone, "d", "d")
        while os.path.isdir(second):  # one level at a time: rmtree would recurse as deep
            os.rename(second, os.path.join(gone, "next"))
            os.rmdir(top)
            os.rename(os.path.join(gone, "next"), top)








def listed(body: bytes) -> List[str]:
    return [entry["name"] for entry in json.loads(body)]


# (kind, action, method, target, extra headers, statuses for anonymous, wrong, right user)
MATRIX = [
    ("plain", "read", "GET", "/private/secret.txt", {}, (401, 401, 200)),
    ("plain", "list", "GET", "/private/?format=json", {}, (401, 401, 200)),
    ("plain", "archive", "GET", "/private/?download=zip", {}, (401, 401, 200)),
    ("plain", "write", "PUT", "/private/plain-new.txt", {}, (401, 401, 201)),
    ("dot-segment", "read", "GET", "/public/../private/secret.txt", {}, (401, 401, 200)),
    ("dot-segment", "list", "GET", "/public/./../private/?format=json", {}, (401, 401, 200)),
    ("dot-segment", "archive", "GET", "/public/../private/?download=zip", {},
     (401, 401, 200)),
    ("dot-segment", "write", "PUT", "/public/../private/dot-new.txt", {}, (401, 401, 201)),
    ("encoded", "read", "GET", "/%70rivate/secret.txt", {}, (401, 401, 200)),
    ("encoded", "list", "GET", "/priv%61te/?format=json", {}, (401, 401, 200)),
    ("encoded", "archive", "GET", "/%70rivate/?download=zip", {}, (401, 401, 200)),
    ("encoded", "write", "PUT", "/%70rivate/encoded-new.txt", {}, (401, 401, 201)),
    ("symlink in", "read", "GET", "/public/link/secret.txt", {}, (401, 401, 200)),
    ("symlink in", "list", "GET", "/public/link/?format=json", {}, (401, 401, 200)),
    ("symlink in", "archive", "GET", "/public/link/?download=zip", {}, (401, 401, 200)),
    ("symlink in", "write", "PUT", "/public/link/link-new.txt", {}, (401, 401, 201)),
    ("symlink out", "read", "GET", "/public/out/x.txt", {}, (404, 404, 404)),
    ("symlink out", "list", "GET", "/public/out/", {}, (404, 404, 404)),
    ("symlink out", "archive", "GET", "/public/out/?download=zip", {}, (404, 404, 404)),
    ("symlink out", "write", "PUT", "/public/out/out-new.txt", {}, (404, 404, 404)),
    ("sidecar", "read", "GET", "/public/doc.txt", {"Accept-Encoding": "gzip"},
     (200, 200, 200)),
    ("sidecar", "list", "GET", "/public/?format=json", {}, (200, 200, 200)),
    ("sidecar", "archive", "GET", "/public/?download=zip", {}, (200, 200, 200)),
    ("sidecar", "write", "PUT", "/public/doc.txt.gz", {}, (401, 401, 409)),
    ("index", "read", "GET", "/public/site/", {}, (401, 401, 200)),
    ("index", "list", "GET", "/public/site/?format=json", {}, (401, 401, 200)),
    ("index", "archive", "GET", "/public/site/?download=zip", {}, (401, 401, 200)),
    ("index", "write", "PUT", "/public/site/index.htm", {}, (409, 409, 409)),
]


class AccessMatrixTest(ServerTestCase):
    """Every action × kind of path × kind of user, over real sockets."""

    def test_matrix(self) -> None:
        users = (("anonymous", ANONYMOUS), ("wrong user", WRONG), ("right user", RIGHT))
        for kind, action, method, target, extra, statuses in MATRIX:
            for (user, credentials), expected in zip(users, statuses):
                with self.subTest(kind=kind, action=action, user=user):
                    body = b"uploaded\n" if method == "PUT" else None
                    status, headers, data = self.request(method, target,
                                                         {**extra, **credentials}, body)
                    self.assertEqual(status, expected)
                    self.assert_shows_only_what_may_be_read(kind, action, user, headers, data)

    def assert_shows_only_what_may_be_read(self, kind: str, action: str, user: str,
                                           headers: Dict[str, str], data: bytes) -> None:
        allowed = user == "right user"
        if action == "read" and kind == "sidecar":
            self.assertEqual(headers.get("content-encoding") == "gzip", allowed)
        elif action == "list" and kind == "sidecar":
            self.assertEqual("doc.txt.gz" in listed(data), allowed)
            self.assertEqual("private" in data.decode("utf-8"), False)
        elif action == "archive" and kind == "sidecar":
            self.assertEqual("public/doc.txt.gz" in zip_names(data), allowed)
        elif not allowed:
            self.assertNotIn(SECRET, data)
            self.assertNotIn(b"secret.txt", data)
        elif action == "archive" and kind not in ("index", "symlink out"):
            self.assertIn("secret.txt", "".join(zip_names(data)))


class ParentFolderTest(ServerTestCase):
    """What a folder above a protected one shows to whom."""

    def test_zip_of_parent_folder_leaves_out_protected_files(self) -> None:
        status, _, data = self.request("GET", "/?download=zip", ANONYMOUS)
        self.assertEqual(status, 200)
        names = zip_names(data)
        self.assertIn("localhost/public/plain.txt", names)
        self.assertFalse([name for name in names if "secret" in name or "private" in name
                          or name.endswith("index.html")], names)
        status, _, data = self.request("GET", "/?download=zip", RIGHT)
        self.assertIn("localhost/private/secret.txt", zip_names(data))

    def test_listing_of_parent_folder_leaves_out_protected_entries(self) -> None:
        status, _, page = self.request("GET", "/", ANONYMOUS)
        self.assertEqual(status, 200)
        self.assertNotIn(b"private/", page)
        self.assertIn(b"public/", page)
        self.assertNotIn("private", listed(self.request("GET", "/?format=json", ANONYMOUS)[2]))
        self.assertIn("private", listed(self.request("GET", "/?format=json", RIGHT)[2]))

    def test_listing_is_not_shared_between_users(self) -> None:
        # The cached listing for one user is never shown to another.
        self.assertIn("private", listed(self.request("GET", "/?format=json", RIGHT)[2]))
        self.assertNotIn("private",
                         listed(self.request("GET", "/?format=json", ANONYMOUS)[2]))

    def test_symlink_into_protected_folder_hides_its_listing_entry(self) -> None:
        self.assertNotIn("link", listed(self.request("GET", "/public/?format=json",
                                                     ANONYMOUS)[2]))
        self.assertIn("link", listed(self.request("GET", "/public/?format=json", RIGHT)[2]))


class UploadSafetyTest(ServerTestCase):
    """Uploads that would hurt: shadowing, disguised names, active content, partial PUT."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        write(cls.root, "page.html", b"<p>original</p>")
        write(cls.root, "served/index.htm", b"<p>index</p>")

    def put(self, target: str, body: bytes = b"<script>evil()</script>",
            headers: Optional[Dict[str, str]] = None) -> int:
        return self.request("PUT", target, headers or {}, body)[0]

    def test_overwrite_bypass_via_sidecar_is_409(self) -> None:
        for name in ("page.html.gz", "page.html.br"):
            with self.subTest(name=name):
                self.assertEqual(self.put("/" + name), 409)
                self.assertFalse(os.path.exists(os.path.join(self.root, name)))
        status, headers, data = self.request("GET", "/page.html", {"Accept-Encoding": "gzip"})
        self.assertEqual((status, data), (200, b"<p>original</p>"))

    def test_overwrite_bypass_via_index_file_is_409(self) -> None:
        self.assertEqual(self.put("/served/index.html"), 409)
        self.assertEqual(self.request("GET", "/served/", {})[2], b"<p>index</p>")

    def test_disguised_upload_names_are_400(self) -> None:
        for target in ("/invoice%E2%80%AEtxt.exe", "/a%C2%85b.txt", "/zero%E2%80%8Bwidth.txt",
                       "/isolate%E2%81%A6.txt"):
            with self.subTest(target=target):
                self.assertEqual(self.put(target), 400)
        self.assertEqual(self.put("/caf%C3%A9.txt", b"fine"), 201)

    def test_disguised_names_on_disk_are_shown_escaped(self) -> None:
        write(self.root, "shown/invoice\u202etxt.exe", b"x")
        write(self.root, "shown/folder\u2067gpj/a.txt", b"x")
        page = self.request("GET", "/shown/", {})[2].decode("utf-8")
        self.assertIn("invoice\\u202Etxt.exe", page)
        self.assertNotIn("\u202e", page)
        page = self.request("GET", "/shown/folder%E2%81%A7gpj/", {})[2].decode("utf-8")
        self.assertIn("folder\\u2067gpj", page)
        self.assertNotIn("\u2067", page)

    def test_uploaded_active_content_is_sandboxed(self) -> None:
        self.assertEqual(self.put("/evil.svg", b"<svg xmlns='http://www.w3.org/2000/svg'>"
                                               b"<script>alert(1)</script></svg>"), 201)
        for target in ("/evil.svg", "/page.html"):
            # Whole, one range, and several ranges in a multipart body: every response that
            # carries the page's bytes carries the sandbox.
            for ranges in ({}, {"Range": "bytes=0-1"}, {"Range": "bytes=0-0,2-3"}):
                with self.subTest(target=target, ranges=ranges):
                    status, headers, _ = self.request("GET", target, ranges)
                    self.assertEqual(status, 206 if ranges else 200)
                    self.assertEqual(headers.get("content-security-policy"), "sandbox")
        _, headers, _ = self.request("GET", "/public/plain.txt", {})
        self.assertNotIn("content-security-policy", headers)

    def test_every_response_is_nosniff(self) -> None:
        for method, target in (("GET", "/public/plain.txt"), ("GET", "/missing"),
                               ("GET", "/"), ("GET", "/private/secret.txt")):
            with self.subTest(target=target):
                headers = self.request(method, target, {})[1]
                self.assertEqual(headers.get("x-content-type-options"), "nosniff")

    def test_partial_put_is_400_and_stores_nothing(self) -> None:
        status = self.put("/partial.txt", b"01234", {"Content-Range": "bytes 0-4/10"})
        self.assertEqual(status, 400)
        self.assertFalse(os.path.exists(os.path.join(self.root, "partial.txt")))


class CrossSiteWriteTest(ServerTestCase):
    """Writes a page elsewhere could make a visitor's browser send."""

    FORM_TYPE = "multipart/form-data; boundary=XyZ"

    def form(self) -> bytes:
        return (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\""
                b"\r\nContent-Type: text/plain\r\n\r\nforged\r\n--XyZ--\r\n")

    def post(self, headers: Dict[str, str]) -> int:
        return self.request("POST", "/public/", {"Content-Type": self.FORM_TYPE, **headers},
                            self.form())[0]

    def test_form_with_cross_site_referer_and_no_origin_is_refused(self) -> None:
        self.assertEqual(self.post({"Referer": "http://evil.example/page.html"}), 403)
        self.assertFalse(os.path.exists(os.path.join(self.root, "public", "f.txt")))

    def test_https_origin_on_plain_http_server_is_refused(self) -> None:
        own = f"127.0.0.1:{self.server.port}"
        self.assertEqual(self.post({"Origin": f"https://{own}"}), 403)
        self.assertEqual(self.post({"Sec-Fetch-Site": "cross-site"}), 403)
        self.assertFalse(os.path.exists(os.path.join(self.root, "public", "f.txt")))
        self.assertIn(self.post({"Origin": f"http://{own}", "Accept": "text/plain"}),
                      (200, 201))

    def test_dns_rebinding_host_cannot_write(self) -> None:
        status, _, page = self.request("PUT", "/public/rebound.txt",
                                       {"Host": "attacker.example"}, b"x")
        self.assertEqual(status, 403)
        self.assertIn(b"allowed_hosts", page)
        self.assertFalse(os.path.exists(os.path.join(self.root, "public", "rebound.txt")))
        self.assertEqual(self.request("GET", "/public/plain.txt",
                                      {"Host": "attacker.example"})[0], 200)


class CrashLeftoverTest(unittest.TestCase):
    def test_the_start_up_line_tells_files_from_folders(self) -> None:
        self.assertEqual(Removed(0, 0).message(), "")
        self.assertEqual(Removed(1, 0).message(),
                         "removed 1 unfinished upload left by an earlier run")
        self.assertEqual(Removed(0, 1).message(),
                         "removed 1 folder being deleted left by an earlier run")
        self.assertEqual(Removed(2, 3).message(), "removed 2 unfinished uploads and 3 folders"
                         " being deleted left by an earlier run")

    def test_a_site_that_cannot_write_leaves_the_disk_alone_at_start_up(self) -> None:
        # With uploads off, WebDAV "write" writes nothing (PUT is no WebDAV method; the
        # others need the "write" action, granted only with upload = yes), so no leftover
        # can be its own: start-up removes none.
        root = tempfile.mkdtemp(prefix="nex-access-leftover-")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        stale = write(root, f"docs/{UPLOAD_TEMP_PREFIX}00112233", b"not this server's")
        past = time.time() - 3600
        os.utime(stale, (past, past))
        with NexServer(root, {"files": {"upload": "no", "webdav": "write"}}) as server:
            host = {"Host": f"127.0.0.1:{server.port}"}
            self.assertEqual(http_request(server, "PUT", "/docs/new.txt", b"x", host)[0], 405)
            self.assertEqual(http_request(server, "MKCOL", "/made/", None, host)[0], 403)
            self.assertFalse(os.path.exists(os.path.join(root, "docs", "new.txt")))
            self.assertFalse(os.path.exists(os.path.join(root, "made")))
            self.assertTrue(os.path.exists(stale))
            self.assertNotIn("removed", server.stdout())

    def test_crash_leftovers_are_removed_at_start_and_never_served(self) -> None:
        root = tempfile.mkdtemp(prefix="nex-access-leftover-")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        stale = write(root, f"{UPLOAD_TEMP_PREFIX}00112233", b"half an upload")
        fresh = write(root, f"{UPLOAD_TEMP_PREFIX}44556677", b"in progress")
        past = time.time() - 3600
        os.utime(stale, (past, past))
        with NexServer(root, {"files": {"upload": "yes"}}) as server:
            self.assertFalse(os.path.exists(stale))
            self.assertIn("removed 1 unfinished upload", server.stdout())
            status, _, _ = http_request(server, "GET", "/" + os.path.basename(fresh))
            self.assertEqual(status, 404)
            listing = http_request(server, "GET", "/?format=json")[2]
            self.assertEqual(listed(listing), [])


class ZipSlotsTest(unittest.TestCase):
    def test_concurrent_zips_past_the_limit_are_503(self) -> None:
        root = tempfile.mkdtemp(prefix="nex-access-zips-")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        write(root, "big/data.bin", os.urandom(16 * 1024 * 1024))
        settings = {"files": {"zip_download": "yes", "max_concurrent_zips": 1}}
        with NexServer(root, settings) as server:
            with server.connect() as sock:
                # Read nothing: the first archive stays in progress, holding the slot.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(b"GET /big/?download=zip HTTP/1.1\r\nHost: localhost\r\n\r\n")
                first = sock.recv(64)
                self.assertTrue(first.startswith(b"HTTP/1.1 200 "), first)
                status, headers, _ = http_request(server, "GET", "/big/?download=zip")
                self.assertEqual(status, 503)
                self.assertTrue(headers["retry-after"].isdigit())
            self.assertTrue(wait_until(
                lambda: http_request(server, "GET", "/big/?download=zip")[0] == 200,
                START_TIMEOUT, 0.05))


if __name__ == "__main__":
    unittest.main()
