"""HTTP Basic authentication on the wire: the real server, a users file, protected paths."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from typing import Dict, Iterable, NamedTuple, Optional, Tuple

from nex.site.passwords import hash_password
from tests.support import (REPO, START_TIMEOUT, NexServer, ResponseReader, merge_settings,
                           wait_until, write_settings)
from tests.support.access import FAST, basic, write_users

# Cheap scrypt parameters, so that starting and checking take no noticeable time.
SECRET = b"the secret\n"
CHALLENGE = 'Basic realm="Nex", charset="UTF-8"'


class Reply(NamedTuple):
    status: int
    headers: Dict[str, str]
    body: bytes




def head_bytes(target: str, headers: Iterable[Tuple[str, str]] = (), method: str = "GET",
               close: bool = True) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost",
             *(f"{name}: {value}" for name, value in headers)]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def fetch(server: NexServer, target: str, authorization: Optional[str] = None,
          headers: Iterable[Tuple[str, str]] = (), method: str = "GET") -> Reply:
    """One request on a fresh connection, and its reply."""
    sent = [*headers] + ([("Authorization", authorization)] if authorization else [])
    with server.connect() as sock:
        sock.sendall(head_bytes(target, sent, method))
        return Reply(*ResponseReader(sock).read(head_only=method == "HEAD"))


class AuthServerTestCase(unittest.TestCase):
    """One server per class over a root with open files and a protected folder."""

    settings: Dict[str, Dict[str, object]] = {}

    @classmethod
    def setUpClass(cls) -> None:
        cls.root = tempfile.mkdtemp(prefix="nex-auth-root-")
        cls.private = tempfile.mkdtemp(prefix="nex-auth-users-")
        for name, data in (("public.txt", b"public\n"), ("private/secret.txt", SECRET),
                           ("private/inner/deep.txt", b"deep\n"),
                           ("privateer/open.txt", b"open\n")):
            path = os.path.join(cls.root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as out:
                out.write(data)
        cls.users = os.path.join(cls.private, "users")
        write_users(cls.users, {"alice": "wonderland", "j\u00fcrgen": "gr\u00fcn"})
        settings = merge_settings({"auth": {"users_file": cls.users, "protect": "/private/"}},
                                  cls.settings)
        cls.server = NexServer(cls.root, settings).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)
        shutil.rmtree(cls.private, ignore_errors=True)

    def fetch(self, target: str, authorization: Optional[str] = None,
              headers: Iterable[Tuple[str, str]] = (), method: str = "GET") -> Reply:
        return fetch(self.server, target, authorization, headers, method)

    def assert_challenged(self, reply: Reply) -> None:
        self.assertEqual(reply.status, 401)
        self.assertEqual(reply.headers["www-authenticate"], CHALLENGE)
        self.assertNotIn(SECRET, reply.body)


class ProtectedPathsTest(AuthServerTestCase):
    """``protect = /private/``: a login there, none elsewhere, however the path is spelt."""

    settings = {"auth": {"max_failures_per_minute": 0}}

    def test_no_credentials_get_401_with_the_challenge_and_its_page(self) -> None:
        reply = self.fetch("/private/secret.txt", headers=[("Accept", "text/html")])
        self.assert_challenged(reply)
        self.assertTrue(reply.headers["content-type"].startswith("text/html"))
        page = reply.body.decode("utf-8")
        self.assertIn("<title>401 Unauthorized</title>", page)
        self.assertIn("needs a user name and password", page)

    def test_wrong_credentials_get_401(self) -> None:
        for value in (basic("alice:Wonderland"), basic("mallory:wonderland"),
                      basic("alice"), "Bearer abc", "Basic !!!"):
            with self.subTest(value=value):
                self.assert_challenged(self.fetch("/private/secret.txt", value))

    def test_right_credentials_get_the_file_and_the_user_is_logged(self) -> None:
        reply = self.fetch("/private/secret.txt", basic("alice:wonderland"),
                           headers=[("User-Agent", "auth-test-right")])
        self.assertEqual((reply.status, reply.body), (200, SECRET))
        self.assertEqual(reply.headers["cache-control"], "private, no-cache")
        log = self.server.wait_for_access_log(lambda text: "auth-test-right" in text)
        line = next(line for line in log.splitlines() if "auth-test-right" in line)
        self.assertTrue(line.startswith("127.0.0.1 - alice ["), line)
        self.assertIn('"GET /private/secret.txt HTTP/1.1" 200 11 ', line)

    def test_unicode_user(self) -> None:
        reply = self.fetch("/private/inner/deep.txt", basic("ju\u0308rgen:gr\u00fcn"),
                           headers=[("User-Agent", "auth-test-unicode")])
        self.assertEqual((reply.status, reply.body), (200, b"deep\n"))
        log = self.server.wait_for_access_log(lambda text: "auth-test-unicode" in text)
        self.assertIn("127.0.0.1 - j\u00fcrgen [", log)

    def test_refusals_are_logged_without_a_user(self) -> None:
        self.fetch("/private/secret.txt", basic("alice:guess"),
                   headers=[("User-Agent", "auth-test-refused")])
        log = self.server.wait_for_access_log(lambda text: "auth-test-refused" in text)
        line = next(line for line in log.splitlines() if "auth-test-refused" in line)
        self.assertTrue(line.startswith("127.0.0.1 - - ["), line)
        self.assertIn('" 401 ', line)

    def test_open_paths_need_no_login(self) -> None:
        for target, body in (("/public.txt", b"public\n"), ("/privateer/open.txt", b"open\n")):
            with self.subTest(target=target):
                reply = self.fetch(target)
                self.assertEqual((reply.status, reply.body), (200, body))
                self.assertNotIn("private", reply.headers.get("cache-control", ""))
        listing = self.fetch("/")
        self.assertEqual(listing.status, 200)
        self.assertNotIn("secret.txt", listing.body.decode("utf-8"))

    def test_spellings_of_a_protected_path_are_challenged(self) -> None:
        # Each of these reaches private/ on disk, or would on a case-insensitive file system.
        for target in ("/private", "/private/", "/private/missing.txt", "/%70rivate/secret.txt",
                       "/%70%72%69%76%61%74%65/secret.txt", "/private/../private/secret.txt",
                       "/x/../private/secret.txt", "/../private/secret.txt",
                       "//private/secret.txt", "/./private/secret.txt",
                       "/private/./secret.txt", "/PRIVATE/secret.txt", "/%50rivate/secret.txt",
                       "/private/inner/../secret.txt", "/private/secret.txt?x=1",
                       "http://localhost/private/secret.txt"):
            with self.subTest(target=target):
                self.assert_challenged(self.fetch(target))
                self.assert_challenged(self.fetch(target, method="HEAD"))

    def test_spellings_the_resolver_refuses_stay_refused(self) -> None:
        for target in ("/private%2Fsecret.txt", "/private%5Csecret.txt", "/%C0%AEprivate/",
                       "/private/secret.txt%00"):
            with self.subTest(target=target):
                reply = self.fetch(target)
                self.assertEqual(reply.status, 400)
                self.assertNotIn(SECRET, reply.body)

    def test_the_same_spellings_with_credentials_reach_the_file(self) -> None:
        for target in ("/%70rivate/secret.txt", "/x/../private/secret.txt",
                       "//private/secret.txt"):
            with self.subTest(target=target):
                reply = self.fetch(target, basic("alice:wonderland"))
                self.assertEqual((reply.status, reply.body), (200, SECRET))

    def test_login_on_the_same_connection_after_the_challenge(self) -> None:
        with self.server.connect() as sock:
            reader = ResponseReader(sock)
            sock.sendall(head_bytes("/private/secret.txt", close=False))
            status, headers, _ = reader.read()
            self.assertEqual((status, headers["connection"]), (401, "keep-alive"))
            sock.sendall(head_bytes("/private/secret.txt",
                                    [("Authorization", basic("alice:wonderland"))]))
            status, _, body = reader.read()
            self.assertEqual((status, body), (200, SECRET))

    def test_options_preflight_needs_no_login_and_tells_nothing(self) -> None:
        for target in ("/private/secret.txt", "/private/missing.txt"):
            with self.subTest(target=target):
                reply = self.fetch(target, method="OPTIONS",
                                   headers=[("Origin", "http://example.test"),
                                            ("Access-Control-Request-Method", "GET")])
                self.assertEqual(reply.status, 204)
                self.assertEqual(reply.headers["allow"], "GET, HEAD, OPTIONS")

    def test_loopback_without_tls_gets_no_warning(self) -> None:
        self.assertNotIn("without TLS", self.server.error_log())


class FailureLimitTest(AuthServerTestCase):
    """``max_failures_per_minute = 3``, clients told apart by a trusted proxy's header."""

    settings = {"auth": {"max_failures_per_minute": 3},
                "logging": {"trusted_proxies": "127.0.0.1"}}

    def fetch_as(self, client: str, authorization: str) -> Reply:
        return self.fetch("/private/secret.txt", authorization,
                          headers=[("X-Forwarded-For", client)])

    def test_too_many_failures_get_429_and_even_the_right_password_waits(self) -> None:
        for _ in range(3):
            self.assert_challenged(self.fetch_as("192.0.2.1", basic("alice:guess")))
        for value in (basic("alice:guess"), basic("alice:wonderland")):
            with self.subTest(value=value):
                reply = self.fetch_as("192.0.2.1", value)
                self.assertEqual(reply.status, 429)
                self.assertRegex(reply.headers["retry-after"], r"\A[1-9][0-9]*\Z")
                self.assertNotIn(SECRET, reply.body)
                self.assertTrue(reply.body.startswith(b"429 Too Many Requests: "), reply.body)
                self.assertIn(b"failed logins", reply.body)
        # Another user on the same address, who has not failed, still logs in; so does
        # another client; open paths stay open to the one that is held up.
        reply = self.fetch_as("192.0.2.1", basic("j\u00fcrgen:gr\u00fcn"))
        self.assertEqual((reply.status, reply.body), (200, SECRET))
        reply = self.fetch_as("192.0.2.2", basic("alice:wonderland"))
        self.assertEqual((reply.status, reply.body), (200, SECRET))
        reply = self.fetch("/public.txt", headers=[("X-Forwarded-For", "192.0.2.1")])
        self.assertEqual(reply.status, 200)

    def test_missing_credentials_are_no_failure(self) -> None:
        for _ in range(5):
            self.assert_challenged(self.fetch_as("192.0.2.3", None))
        reply = self.fetch_as("192.0.2.3", basic("alice:wonderland"))
        self.assertEqual((reply.status, reply.body), (200, SECRET))


class ReloadTest(AuthServerTestCase):
    """The users file edited while Nex runs: new passwords count, a bad version does not."""

    settings = {"auth": {"max_failures_per_minute": 0}}

    def wait_for_status(self, authorization: str, status: int) -> Reply:
        replies = []

        def answered() -> bool:
            replies[:] = [self.fetch("/private/secret.txt", authorization)]
            return replies[0].status == status
        wait_until(answered, START_TIMEOUT, 0.1)
        return replies[0]

    def test_edits_take_effect_and_a_bad_edit_keeps_the_last_good_users(self) -> None:
        self.assertEqual(self.fetch("/private/secret.txt", basic("alice:wonderland")).status,
                         200)
        write_users(self.users, {"alice": "looking-glass", "bob": "builder"})
        self.assertEqual(self.wait_for_status(basic("bob:builder"), 200).status, 200)
        self.assert_challenged(self.fetch("/private/secret.txt", basic("alice:wonderland")))
        self.assertEqual(self.fetch("/private/secret.txt", basic("alice:looking-glass")).status,
                         200)

        with open(self.users, "a", encoding="utf-8") as out:
            out.write("carol\n")

        def reported() -> bool:
            self.fetch("/private/secret.txt", basic("bob:builder"))
            return "expected user:hash" in self.server.error_log()
        self.assertTrue(wait_until(reported, START_TIMEOUT, 0.1),
                        "the bad version was never reported")
        errors = [line for line in self.server.error_log().splitlines()
                  if "expected user:hash" in line]
        self.assertEqual(len(errors), 1, errors)
        self.assertIn(f"{self.users} line 4: expected user:hash; keeping the previous version",
                      errors[0])
        self.assertEqual(self.fetch("/private/secret.txt", basic("bob:builder")).status, 200)


class StartUpTest(unittest.TestCase):
    """--auth-file and --hash-password from the command line of server.py."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="nex-auth-start-")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.root = os.path.join(self.folder, "root")
        os.mkdir(self.root)
        with open(os.path.join(self.root, "index.html"), "wb") as out:
            out.write(b"<p>home</p>\n")
        self.settings = os.path.join(self.folder, "settings.conf")
        write_settings(self.settings, {"server": {
            "error_pages": os.path.join(REPO, "error_pages"),
            "templates": os.path.join(REPO, "other_templates")}})

    def test_a_bad_users_file_stops_start_up_with_one_line(self) -> None:
        users = os.path.join(self.folder, "users")
        with open(users, "w", encoding="utf-8") as out:
            out.write(f"alice:{hash_password('x', **FAST)}\n\nbob\n")
        result = subprocess.run(
            [sys.executable, os.path.join(REPO, "server.py"), "--config", self.settings,
             "--root", self.root, "--port", "0", "--auth-file", users],
            capture_output=True, text=True, timeout=START_TIMEOUT, stdin=subprocess.DEVNULL)
        self.assertEqual((result.returncode, result.stdout), (2, ""))
        self.assertEqual(result.stderr,
                         f"nex: --auth-file {users}: {users} line 3: expected user:hash\n")

    def test_a_hash_password_line_is_a_users_file(self) -> None:
        result = subprocess.run([sys.executable, os.path.join(REPO, "server.py"),
                                 "--hash-password", "alice"], input="s3cret\n",
                                capture_output=True, text=True, timeout=START_TIMEOUT)
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertRegex(result.stdout, r"\Aalice:scrypt\$[^\n]*\n\Z")
        users = os.path.join(self.folder, "users")
        with open(users, "w", encoding="utf-8") as out:
            out.write(result.stdout)
        server = NexServer(self.root)
        server.args += ["--auth-file", users]
        with server:
            # --auth-file alone protects the whole site.
            self.assert_status(fetch(server, "/"), 401)
            self.assert_status(fetch(server, "/", basic("alice:s3cret!")), 401)
            reply = fetch(server, "/", basic("alice:s3cret"))
            self.assertEqual((reply.status, reply.body), (200, b"<p>home</p>\n"))
            self.assertTrue(re.search(r"^127\.0\.0\.1 - alice \[",
                                      server.wait_for_access_log(lambda text: " alice " in text),
                                      re.MULTILINE))

    def assert_status(self, reply: Reply, status: int) -> None:
        self.assertEqual(reply.status, status)


if __name__ == "__main__":
    unittest.main()
