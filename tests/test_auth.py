"""Basic authentication: password hashes, the users file, credentials, failure limits."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tempfile
import types
import unittest
from typing import List
from unittest import mock

from nex.site.login import (FailureLimiter, ProtectedPaths, SiteAuth, UsersFile, cleartext_warning,
                            parse_path_prefix)
from nex.site.passwords import (DEFAULT_N, DEFAULT_P, DEFAULT_R, basic_credentials, challenge,
                                check_user_name, hash_password, parse_hash, parse_users)
from nex.process.config import Config
from nex.http.errors import HTTPError
from nex.files.paths import split_path
from tests.support.access import basic
from tests.support.fakes import FakeClock, rewrite
from tests.support.threads import run_in_threads

# Cheap scrypt parameters, so the tests do not spend seconds deriving keys.
FAST = {"n": 1024, "r": 1, "p": 1}






class HashTest(unittest.TestCase):
    def test_format(self) -> None:
        stored = hash_password("secret")
        algorithm, n, r, p, salt, key = stored.split("$")
        self.assertEqual((algorithm, int(n), int(r), int(p)),
                         ("scrypt", DEFAULT_N, DEFAULT_R, DEFAULT_P))
        self.assertEqual(len(base64.b64decode(salt)), 16)
        self.assertEqual(len(base64.b64decode(key)), 32)

    def test_round_trip_and_verify(self) -> None:
        stored = hash_password("secret", **FAST)
        parsed = parse_hash(stored)
        self.assertEqual(str(parsed), stored)
        self.assertTrue(parsed.verify("secret"))
        self.assertFalse(parsed.verify("Secret"))
        self.assertFalse(parsed.verify(""))

    def test_key_is_scrypt_of_the_utf8_password(self) -> None:
        parsed = parse_hash(hash_password("pässword", **FAST))
        expected = hashlib.scrypt("pässword".encode("utf-8"), salt=parsed.salt, n=1024, r=1,
                                  p=1, dklen=32)
        self.assertEqual(parsed.key, expected)

    def test_salt_is_fresh_each_time(self) -> None:
        self.assertNotEqual(hash_password("same", **FAST), hash_password("same", **FAST))

    def test_password_is_compared_in_nfc(self) -> None:
        decomposed, composed = "cafe\u0301", "caf\u00e9"
        self.assertTrue(parse_hash(hash_password(decomposed, **FAST)).verify(composed))

    def test_control_characters_are_refused(self) -> None:
        with self.assertRaises(ValueError):
            hash_password("a\nb", **FAST)

    def test_parameters_out_of_bounds(self) -> None:
        for parameters in ({"n": 1000, "r": 1, "p": 1}, {"n": 512, "r": 1, "p": 1},
                           {"n": 2 ** 21, "r": 1, "p": 1}, {"n": 1024, "r": 0, "p": 1},
                           {"n": 1024, "r": 1, "p": 17}, {"n": 2 ** 20, "r": 2, "p": 1}):
            with self.subTest(**parameters), self.assertRaises(ValueError):
                hash_password("x", **parameters)

    def test_malformed_hashes(self) -> None:
        good = hash_password("x", **FAST)
        salt, key = good.split("$")[4:]
        for text in ("", "plain", "bcrypt$1024$1$1$" + salt + "$" + key,
                     f"scrypt$1024$1$1${salt}", f"scrypt$1024$1$1${salt}${key}$",
                     f"scrypt$1000$1$1${salt}${key}", f"scrypt$+1024$1$1${salt}${key}",
                     f"scrypt$1024$1$1${salt.rstrip('=')}${key}",
                     f"scrypt$1024$1$1${salt}${key[:-2]}",
                     f"scrypt$1024$1$1$AAAA${key}",
                     f"scrypt$1024$1$1${salt}$AAAAAAAA",
                     f"scrypt$1024$1$1${salt} ${key}"):
            with self.subTest(text=text), self.assertRaises(ValueError):
                parse_hash(text)


class UserNameTest(unittest.TestCase):
    def test_good_names(self) -> None:
        for name in ("alice", "Bob Smith", "j\u00fcrgen", "a@b.example", "x#y"):
            self.assertEqual(check_user_name(name), name)

    def test_names_are_taken_in_nfc(self) -> None:
        self.assertEqual(check_user_name("Jose\u0301"), "Jos\u00e9")

    def test_bad_names(self) -> None:
        for name, reason in (("", "a user name cannot be empty"),
                             ("a:b", "a user name cannot hold ':'"),
                             ("a\tb", "a user name cannot hold control characters"),
                             ("a\x85b", "a user name cannot hold control characters"),
                             (" alice", "a user name cannot start or end with a blank"),
                             ("alice ", "a user name cannot start or end with a blank"),
                             ("#alice", "a user name cannot start with '#'"),
                             ("a" * 257, "a user name has at most 256 characters")):
            with self.subTest(name=name), self.assertRaises(ValueError) as caught:
                check_user_name(name)
            self.assertEqual(str(caught.exception), reason)


class UsersFileFormatTest(unittest.TestCase):
    def setUp(self) -> None:
        self.alice = hash_password("wonderland", **FAST)
        self.bob = hash_password("builder", **FAST)

    def test_comments_blank_lines_and_line_endings(self) -> None:
        data = (f"# users\n\nalice:{self.alice}\r\n   \n  # bob below\nbob:{self.bob}  \n"
                .encode("utf-8"))
        self.assertEqual(sorted(parse_users(data)), ["alice", "bob"])

    def test_byte_order_mark(self) -> None:
        self.assertEqual(list(parse_users(f"\ufeffalice:{self.alice}\n".encode("utf-8"))),
                         ["alice"])

    def test_errors_name_the_line(self) -> None:
        for text, message in (
                (f"alice:{self.alice}\nbob\n", "line 2: expected user:hash"),
                (f"alice:{self.alice}\nalice:{self.bob}\n",
                 "line 2: user 'alice' is already on line 1"),
                (f"Jos\u00e9:{self.alice}\nJose\u0301:{self.bob}\n",
                 "line 2: user 'Jos\u00e9' is already on line 1"),
                (f"\n\n:{self.alice}\n", "line 3: a user name cannot be empty"),
                (f" alice:{self.alice}\n", "line 1: a user name cannot start or end with a"
                                           " blank"),
                ("alice:secret\n", "line 1: the hash is not scrypt$<n>$<r>$<p>$<salt>$<key>"
                                   " (use nex --hash-password USER)")):
            with self.subTest(text=text), self.assertRaises(ValueError) as caught:
                parse_users(text.encode("utf-8"))
            self.assertEqual(str(caught.exception), message)

    def test_not_utf8(self) -> None:
        with self.assertRaises(ValueError) as caught:
            parse_users(f"alice:{self.alice}\n\xff:{self.bob}\n".encode("latin-1"))
        self.assertEqual(str(caught.exception), "line 2: not UTF-8 text")


class BasicCredentialsTest(unittest.TestCase):
    def test_table(self) -> None:
        for value, expected in (
                (None, None),
                (basic("alice:wonderland"), ("alice", "wonderland")),
                ("basic " + basic("a:b")[6:], ("a", "b")),
                ("BASIC   " + basic("a:b")[6:], ("a", "b")),
                (basic("a:b:c"), ("a", "b:c")),
                (basic("a:"), ("a", "")),
                (basic(":pw"), ("", "pw")),
                (basic("j\u00fcrgen:p\u00e4ss"), ("j\u00fcrgen", "p\u00e4ss")),
                (basic("Jose\u0301:x"), ("Jos\u00e9", "x")),
                ("Basic", None),
                ("Basic ", None),
                (basic("nocolon"), None),
                (basic("a:b\x00"), None),
                (basic("a\x7f:b"), None),
                (basic("a:b\nc"), None),
                ("Basic " + base64.b64encode(b"a:\xff").decode(), None),  # not UTF-8
                ("Basic YTpi", ("a", "b")),  # three bytes need no padding
                ("Basic YTpiYw", None),  # "a:bc" without its padding
                ("Basic YTpiZ", None),  # impossible length
                ("Basic YTpj=", None),
                ("Basic YTpi==", None),
                ("Basic YTpi\t", None),
                ("Basic YT pi", None),
                ("Basic YTp-", None),  # base64url is not base64
                ("Basic YTpjZA=x", None),
                ("Bearer " + basic("a:b")[6:], None),
                ("Basic realm=x", None),
                ("Digest username=\"a\"", None),
                (" Basic " + basic("a:b")[6:], None),
                ("Basic\t" + basic("a:b")[6:], None)):
            with self.subTest(value=value):
                self.assertEqual(basic_credentials(value), expected)

    def test_non_canonical_trailing_bits_are_refused(self) -> None:
        # "YQ==" is "a"; "YR==" decodes to "a" too, with bits that must be zero set.
        self.assertEqual(basic_credentials("Basic " + base64.b64encode(b"a:a").decode()),
                         ("a", "a"))
        self.assertIsNone(basic_credentials("Basic YTpi" + "YR=="))


class ChallengeTest(unittest.TestCase):
    def test_quoting(self) -> None:
        self.assertEqual(challenge("Nex proxy"), 'Basic realm="Nex proxy", charset="UTF-8"')
        self.assertEqual(challenge('a "b" \\c'),
                         'Basic realm="a \\"b\\" \\\\c", charset="UTF-8"')

    def test_unsafe_realms(self) -> None:
        for realm in ("a\r\nX-Injected: 1", "caf\u00e9"):
            with self.subTest(realm=realm), self.assertRaises(ValueError):
                challenge(realm)


class UsersFileTest(unittest.TestCase):
    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="nex-users-")
        self.addCleanup(shutil.rmtree, self.folder)
        self.path = os.path.join(self.folder, "users")
        self.errors: List[str] = []
        alice, jurgen = hash_password("wonderland", **FAST), hash_password("gr\u00fcn", **FAST)
        rewrite(self.path, f"alice:{alice}\nj\u00fcrgen:{jurgen}\n")
        self.users = UsersFile.load(self.path, on_error=self.errors.append, check_interval=0)

    def test_right_password(self) -> None:
        self.assertEqual(self.users.check(basic("alice:wonderland")), "alice")
        self.assertEqual(self.users.check(basic("j\u00fcrgen:gr\u00fcn")), "j\u00fcrgen")

    def test_unicode_in_another_normal_form(self) -> None:
        self.assertEqual(self.users.check(basic("ju\u0308rgen:gru\u0308n")), "j\u00fcrgen")

    def test_refusals(self) -> None:
        for value in (None, "", basic("alice:Wonderland"), basic("Alice:wonderland"),
                      basic("alice:wonderland "), basic("mallory:wonderland"),
                      basic("alice"), "Bearer abc"):
            with self.subTest(value=value):
                self.assertIsNone(self.users.check(value))

    def test_unknown_user_costs_a_key_derivation_too(self) -> None:
        # Without it, a quick refusal would tell which names exist.
        with mock.patch("hashlib.scrypt", wraps=hashlib.scrypt) as scrypt:
            self.assertIsNone(self.users.check(basic("mallory:x")))
        self.assertEqual(scrypt.call_count, 1)

    def test_unknown_user_costs_the_users_key_derivation(self) -> None:
        # With the default cost for unknown names and another in the file, the time a
        # refusal takes would still tell which names exist.
        with mock.patch("hashlib.scrypt", wraps=hashlib.scrypt) as scrypt:
            self.assertIsNone(self.users.check(basic("alice:guess")))
            self.assertIsNone(self.users.check(basic("mallory:x")))
        known, unknown = (call.kwargs for call in scrypt.call_args_list)
        for parameter in ("n", "r", "p", "dklen"):
            with self.subTest(parameter=parameter):
                self.assertEqual(unknown[parameter], known[parameter])

    def test_repeated_credentials_are_derived_once(self) -> None:
        with mock.patch("hashlib.scrypt", wraps=hashlib.scrypt) as scrypt:
            for _ in range(3):
                self.assertEqual(self.users.check(basic("alice:wonderland")), "alice")
        self.assertEqual(scrypt.call_count, 1)

    def test_wrong_passwords_are_derived_every_time(self) -> None:
        with mock.patch("hashlib.scrypt", wraps=hashlib.scrypt) as scrypt:
            for _ in range(3):
                self.assertIsNone(self.users.check(basic("alice:guess")))
        self.assertEqual(scrypt.call_count, 3)

    def test_changed_file_replaces_users_and_forgets_passed_credentials(self) -> None:
        self.assertEqual(self.users.check(basic("alice:wonderland")), "alice")
        rewrite(self.path, f"alice:{hash_password('looking-glass', **FAST)}\n")
        self.assertIsNone(self.users.check(basic("alice:wonderland")))
        self.assertEqual(self.users.check(basic("alice:looking-glass")), "alice")
        self.assertIsNone(self.users.check(basic("j\u00fcrgen:gr\u00fcn")))

    def test_bad_new_file_keeps_the_users_and_logs(self) -> None:
        rewrite(self.path, "alice:oops\n")
        self.assertEqual(self.users.check(basic("alice:wonderland")), "alice")
        self.assertEqual(len(self.errors), 1)
        self.assertTrue(self.errors[0].startswith(f"{self.path} line 1: the hash is not"))

    def test_bad_file_at_start_names_the_line(self) -> None:
        rewrite(self.path, "# users\nalice\n")
        with self.assertRaises(ValueError) as caught:
            UsersFile.load(self.path)
        self.assertEqual(str(caught.exception), f"{self.path} line 2: expected user:hash")




class FailureLimiterTest(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = FakeClock(50.0)
        self.limiter = FailureLimiter(3, clock=self.clock)

    def fail(self, client: str, times: int, user: str = "alice") -> None:
        for _ in range(times):
            self.limiter.record_failure(client, user)

    def wait(self, client: str, user: str = "alice") -> int:
        return self.limiter.retry_after(client, user)

    def test_burst_then_wait(self) -> None:
        self.assertEqual(self.wait("192.0.2.1"), 0)
        self.fail("192.0.2.1", 2)
        self.assertEqual(self.wait("192.0.2.1"), 0)
        self.fail("192.0.2.1", 1)
        self.assertEqual(self.wait("192.0.2.1"), 20)  # 60 s / 3 failures
        self.clock.now += 19.5
        self.assertEqual(self.wait("192.0.2.1"), 1)
        self.clock.now += 0.5
        self.assertEqual(self.wait("192.0.2.1"), 0)

    def test_clients_count_apart(self) -> None:
        self.fail("192.0.2.1", 3)
        self.assertEqual(self.wait("192.0.2.2"), 0)

    def test_lockout_of_one_user_leaves_other_users_on_the_address_alone(self) -> None:
        # Issue: failures counted per address let one user (or a guesser) behind a NAT or
        # on a loopback proxy lock every other user of that address out.
        self.fail("192.0.2.1", 3, "alice")
        self.assertGreater(self.wait("192.0.2.1", "alice"), 0)
        self.assertEqual(self.wait("192.0.2.1", "bob"), 0)

    def test_address_ceiling_holds_back_names_that_failed(self) -> None:
        # 3 per name, 30 per address: ten names failing twice each, then five more...
        for number in range(15):
            self.fail("192.0.2.1", 2, f"user{number}")
        self.assertGreater(self.wait("192.0.2.1", "user0"), 0)  # failed, address spent
        self.assertEqual(self.wait("192.0.2.1", "carol"), 0)  # never failed: still tried
        self.assertEqual(self.wait("192.0.2.2", "user0"), 0)

    def test_ipv6_clients_count_per_64(self) -> None:
        self.fail("2001:db8:1:2::1", 2)
        self.fail("2001:db8:1:2:ffff::9", 1)
        self.assertGreater(self.wait("2001:db8:1:2::77"), 0)
        self.assertEqual(self.wait("2001:db8:1:3::1"), 0)

    def test_ipv4_mapped_counts_as_ipv4(self) -> None:
        self.fail("::ffff:192.0.2.1", 3)
        self.assertGreater(self.wait("192.0.2.1"), 0)

    def test_full_recovery_after_a_minute(self) -> None:
        self.fail("192.0.2.1", 10)
        self.clock.now += 60
        self.fail("192.0.2.1", 2)
        self.assertEqual(self.wait("192.0.2.1"), 0)

    def test_table_is_bounded(self) -> None:
        limiter = FailureLimiter(1, max_clients=2, clock=self.clock)
        for client in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
            limiter.record_failure(client, "alice")
        # The least recently failing client was forgotten; the others are still held.
        self.assertEqual(limiter.retry_after("192.0.2.1", "alice"), 0)
        self.assertGreater(limiter.retry_after("192.0.2.2", "alice"), 0)
        self.assertGreater(limiter.retry_after("192.0.2.3", "alice"), 0)

    def test_at_least_one_per_minute(self) -> None:
        with self.assertRaises(ValueError):
            FailureLimiter(0)


class FailureLimiterThreadsTest(unittest.TestCase):
    def test_failures_from_many_threads_at_once_are_each_counted(self) -> None:
        # Counting one is a read, a subtraction and a store: without the limiter's lock,
        # threads (running at once on a free-threaded Python) would lose failures, and a
        # guesser spreading its guesses over many connections would get more than its share.
        limiter = FailureLimiter(800, clock=FakeClock(50.0))

        def fail(_: int) -> None:
            for _ in range(100):
                limiter.record_failure("192.0.2.1", "alice")
        run_in_threads(fail)  # 8 threads: 800 failures, the whole budget
        self.assertGreater(limiter.retry_after("192.0.2.1", "alice"), 0)


class PathPrefixTest(unittest.TestCase):
    def test_prefixes_read_like_request_paths(self) -> None:
        for text, segments in (("/", ()),
                               ("/private/", ("private",)),
                               ("/private", ("private",)),
                               ("//private//", ("private",)),
                               ("/docs/internal/", ("docs", "internal")),
                               ("/%70rivate/", ("private",)),
                               ("/a/../private/./", ("private",)),
                               ("/Private/", ("private",)),
                               ("/my files/", ("my files",)),
                               ("/caf\u00e9/", ("cafe\u0301",)),
                               ("/caf%C3%A9/", ("cafe\u0301",))):
            with self.subTest(text=text):
                self.assertEqual(parse_path_prefix(text), segments)

    def test_refused_prefixes(self) -> None:
        for text in ("private/", "", "*", "http://example.com/", "/a%2Fb/", "/a%5cb/",
                     "/a\\b/", "/a%00/", "/a%zz/", "/%C0%AE/"):
            with self.subTest(text=text), self.assertRaises(ValueError) as caught:
                parse_path_prefix(text)
            self.assertEqual(str(caught.exception), f"{text!r} is not a URL path such as /private/")


class ProtectedPathsTest(unittest.TestCase):
    """Whole segments after the resolver's decoding and normalisation; no spelling escapes."""

    def test_table(self) -> None:
        for prefixes, path, covered in (
                (["/private/"], "/private", True),
                (["/private/"], "/private/", True),
                (["/private/"], "/private/x", True),
                (["/private/"], "/private/x/y.txt", True),
                (["/private"], "/private/x", True),
                (["/private/"], "/privateer", False),
                (["/private/"], "/privateer/x", False),
                (["/private/"], "/", False),
                (["/private/"], "/public/private/x", False),
                (["/private/"], "/priv", False),
                (["/"], "/", True),
                (["/"], "/anything/at/all", True),
                (["/private/", "/admin/"], "/admin/users", True),
                (["/private/", "/admin/"], "/administrator", False),
                (["/docs/internal/"], "/docs/internal/a", True),
                (["/docs/internal/"], "/docs/a", False),
                (["/docs/internal/"], "/docs/", False),
                (["/docs/internal/"], "/docs/internalx/a", False),
                # Spellings that reach the same file must meet the same prefix.
                (["/private/"], "/%70rivate/x", True),
                (["/private/"], "/%70%72%69%76%61%74%65/x", True),
                (["/private/"], "/private/../private/x", True),
                (["/private/"], "/x/../private/x", True),
                (["/private/"], "/./private/x", True),
                (["/private/"], "//private//x", True),
                (["/private/"], "/../../private/x", True),
                (["/private/"], "/PRIVATE/x", True),
                (["/private/"], "/Private/x", True),
                (["/private/"], "/private/x/..", True),
                (["/private/"], "/private/..", False),
                (["/private/"], "/%252e%252e/private/x", False),  # a folder named "%2e%2e"
                (["/caf\u00e9/"], "/caf%C3%A9/x", True),
                (["/caf\u00e9/"], "/cafe%CC%81/x", True),  # the decomposed spelling
                (["/caf\u00e9/"], "/CAF%C3%89/x", True),
                (["/caf\u00e9/"], "/cafe/x", False)):
            with self.subTest(prefixes=prefixes, path=path):
                segments, _ = split_path(path)
                self.assertIs(ProtectedPaths(prefixes).covers(segments), covered)

    def test_bad_prefix(self) -> None:
        with self.assertRaises(ValueError):
            ProtectedPaths(["/ok/", "not-a-path"])


class SiteAuthTest(unittest.TestCase):
    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="nex-site-auth-")
        self.addCleanup(shutil.rmtree, self.folder)
        self.path = os.path.join(self.folder, "users")
        rewrite(self.path, f"alice:{hash_password('wonderland', **FAST)}\n")
        self.users = UsersFile.load(self.path)
        self.clock = FakeClock(50.0)

    def site_auth(self, per_minute: int = 3, realm: str = "Nex") -> SiteAuth:
        failures = FailureLimiter(per_minute, clock=self.clock) if per_minute else None
        return SiteAuth(self.users, ProtectedPaths(["/private/"]), realm, failures)

    def refusal(self, auth: SiteAuth, value, client: str = "192.0.2.1") -> HTTPError:
        with self.assertRaises(HTTPError) as caught:
            auth.login(value, client)
        return caught.exception

    def test_protects_splits_like_the_resolver(self) -> None:
        auth = self.site_auth()
        self.assertTrue(auth.protects("/%70rivate/x"))
        self.assertFalse(auth.protects("/privateer"))
        with self.assertRaises(HTTPError) as caught:
            auth.protects("/private%2Fx")
        self.assertEqual(caught.exception.status, 400)

    def test_right_credentials_name_the_user(self) -> None:
        self.assertEqual(self.site_auth().login(basic("alice:wonderland"), "192.0.2.1"), "alice")

    def test_missing_credentials_are_challenged_and_not_counted(self) -> None:
        auth = self.site_auth(per_minute=1)
        for _ in range(3):
            error = self.refusal(auth, None)
            self.assertEqual(error.status, 401)
            self.assertEqual(error.headers,
                             (("WWW-Authenticate", 'Basic realm="Nex", charset="UTF-8"'),))
        self.assertEqual(auth.login(basic("alice:wonderland"), "192.0.2.1"), "alice")

    def test_wrong_credentials_are_challenged(self) -> None:
        auth = self.site_auth(per_minute=100, realm='Staff "only"')
        for value in (basic("alice:guess"), basic("mallory:wonderland"), "Bearer abc", "",
                      basic("alice:wonderland") + ", " + basic("alice:wonderland")):
            with self.subTest(value=value):
                error = self.refusal(auth, value)
                self.assertEqual(error.status, 401)
                self.assertEqual(dict(error.headers)["WWW-Authenticate"],
                                 'Basic realm="Staff \\"only\\"", charset="UTF-8"')

    def test_too_many_failures_get_429_without_a_password_check(self) -> None:
        auth = self.site_auth(per_minute=3)
        for _ in range(3):
            self.assertEqual(self.refusal(auth, basic("alice:guess")).status, 401)
        with mock.patch.object(UsersFile, "check") as check:
            error = self.refusal(auth, basic("alice:wonderland"))
        check.assert_not_called()
        self.assertEqual(error.status, 429)
        self.assertEqual(error.headers, (("Retry-After", "20"),))  # 60 s / 3 failures
        self.assertIn("20 s", error.detail)
        # Another client is not held up; the first may try again once the wait is over.
        self.assertEqual(auth.login(basic("alice:wonderland"), "192.0.2.2"), "alice")
        self.clock.now += 20
        self.assertEqual(auth.login(basic("alice:wonderland"), "192.0.2.1"), "alice")

    def test_no_limit(self) -> None:
        auth = self.site_auth(per_minute=0)
        for _ in range(5):
            self.assertEqual(self.refusal(auth, basic("alice:guess")).status, 401)
        self.assertEqual(auth.login(basic("alice:wonderland"), "192.0.2.1"), "alice")

    def test_from_config(self) -> None:
        self.assertIsNone(SiteAuth.from_config(Config(), on_error=self.fail))
        config = Config(auth_users_file=self.path, auth_protect=("/a/", "/b/"),
                        auth_realm="Team", auth_max_failures_per_minute=1)
        auth = SiteAuth.from_config(config, on_error=self.fail)
        self.assertTrue(auth.protects("/b/x"))
        self.assertFalse(auth.protects("/c/x"))
        self.assertEqual(auth.login(basic("alice:wonderland"), "192.0.2.1"), "alice")
        error = self.refusal(auth, basic("alice:guess"))
        self.assertEqual(dict(error.headers)["WWW-Authenticate"],
                         'Basic realm="Team", charset="UTF-8"')
        self.assertEqual(self.refusal(auth, basic("alice:guess")).status, 429)

    def test_from_config_with_a_file_turned_bad(self) -> None:
        rewrite(self.path, "alice\n")
        with self.assertRaises(ValueError) as caught:
            SiteAuth.from_config(Config(auth_users_file=self.path), on_error=self.fail)
        self.assertEqual(str(caught.exception), f"{self.path} line 1: expected user:hash")


class CleartextWarningTest(unittest.TestCase):
    def test_table(self) -> None:
        for users_file, bind, certificate, warned in (
                ("", "0.0.0.0", "", False),
                ("/users", "127.0.0.1", "", False),
                ("/users", "127.0.0.2", "", False),
                ("/users", "::1", "", False),
                ("/users", "localhost", "", False),
                ("/users", "0.0.0.0", "", True),
                ("/users", "::", "", True),
                ("/users", "192.0.2.7", "", True),
                ("/users", "0.0.0.0", "/etc/nex/cert.pem", False)):
            with self.subTest(users_file=users_file, bind=bind, certificate=certificate):
                config = types.SimpleNamespace(auth_users_file=users_file, bind=bind,
                                               tls_certificate=certificate)
                warning = cleartext_warning(config)
                self.assertIs(warning is not None, warned)
                if warned:
                    self.assertIn(f"without TLS while listening on {bind}", warning)
                    self.assertNotIn("\n", warning)

    def test_settings_without_tls(self) -> None:
        self.assertIsNone(cleartext_warning(Config(auth_users_file="/users")))
        self.assertIsNotNone(cleartext_warning(Config(auth_users_file="/users", bind="::")))


if __name__ == "__main__":
    unittest.main()
