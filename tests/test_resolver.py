"""The resolver against a real temporary document root."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import unittest
from dataclasses import replace
from unittest import mock
from urllib.parse import quote

from hypothesis import given, settings, strategies as st

from nex.process.config import Config
from nex.http.errors import HTTPError
from nex.files import paths as resolver_module
from nex.files.misses import MissCache
from nex.files.paths import (UPLOAD_TEMP_PREFIX, encode_path, find_target, hidden,
                             redirect_location, resolve, servable_entry, split_path)
from tests.support.threads import run_in_threads


class ResolverTestCase(unittest.TestCase):
    """A document root next to an ``outside`` folder that must never be served."""

    def setUp(self):
        self.base = os.path.realpath(tempfile.mkdtemp(prefix="nex-resolver-"))
        self.addCleanup(shutil.rmtree, self.base)
        self.root = os.path.join(self.base, "root")
        self.outside = os.path.join(self.base, "outside")
        os.makedirs(os.path.join(self.outside, "dir"))
        self.write(self.outside, "secret.txt")
        self.write(self.root, "file.txt")
        self.write(self.root, "docs/a.txt")
        self.write(self.root, "site/index.html")
        self.write(self.root, "site/index.htm")
        self.write(self.root, "both/index.htm")
        self.write(self.root, "a b/c d.txt")
        self.write(self.root, "é/ü.txt")
        self.write(self.root, ".secret")
        self.write(self.root, ".git/config")
        self.write(self.root, "docs/.hidden/x.txt")
        self.write(self.root, "%2e%2e")
        os.makedirs(os.path.join(self.root, "evil.example"))
        os.makedirs(os.path.join(self.root, "a\r\nb"))
        os.makedirs(os.path.join(self.root, "empty"))
        self.config = Config(document_root=self.root)

    def write(self, folder, relative, data=b"data"):
        path = os.path.join(folder, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as file:
            file.write(data)
        return path

    def link(self, target, name):
        os.symlink(target, os.path.join(self.root, name))

    def resolve(self, path, query="", **settings):
        return resolve(path, query, replace(self.config, **settings))

    def assertStatus(self, status, path, query="", **settings):
        with self.assertRaises(HTTPError) as caught:
            self.resolve(path, query, **settings)
        self.assertEqual(caught.exception.status, status, path)
        return caught.exception

    def location(self, path, query="", **settings):
        error = self.assertStatus(301, path, query, **settings)
        locations = [value for name, value in error.headers if name == "Location"]
        self.assertEqual(len(locations), 1)
        return locations[0]


class PathDecodingTest(ResolverTestCase):
    def test_plain_file(self):
        target = self.resolve("/file.txt")
        self.assertEqual(target.kind, "file")
        self.assertEqual(target.fs_path, os.path.join(self.root, "file.txt"))
        self.assertEqual(target.url_path, "/file.txt")
        self.assertEqual(target.stat.st_size, 4)

    def test_escaped_names_are_decoded_once(self):
        target = self.resolve("/a%20b/c%20d.txt")
        self.assertEqual(target.url_path, "/a b/c d.txt")
        self.assertEqual(target.fs_path, os.path.join(self.root, "a b", "c d.txt"))

    def test_utf8_names(self):
        target = self.resolve("/%C3%A9/%C3%BC.txt")
        self.assertEqual(target.fs_path, os.path.join(self.root, "é", "ü.txt"))

    def test_double_encoding_is_just_a_name(self):
        target = self.resolve("/%252e%252e")
        self.assertEqual(target.fs_path, os.path.join(self.root, "%2e%2e"))
        self.assertEqual(target.url_path, "/%2e%2e")
        self.assertStatus(404, "/%252e%252e/etc/passwd")

    def test_dot_dot_cannot_climb_above_root(self):
        for path in ["/../outside/secret.txt", "/../../../../outside/secret.txt",
                     "/docs/../../outside/secret.txt", "/%2e%2e/outside/secret.txt",
                     "/%2E%2E/%2e%2e/outside/secret.txt", "/./.././outside/secret.txt",
                     "/../etc/passwd"]:
            with self.subTest(path=path):
                self.assertStatus(404, path)

    def test_dot_dot_inside_root_is_resolved_on_the_text(self):
        self.assertEqual(self.resolve("/docs/../file.txt").url_path, "/file.txt")
        self.assertEqual(self.resolve("/../file.txt").url_path, "/file.txt")
        self.assertEqual(self.resolve("/docs/%2e%2e/file.txt").url_path, "/file.txt")

    def test_repeated_slashes_collapse(self):
        self.assertEqual(self.resolve("//docs///a.txt").url_path, "/docs/a.txt")
        self.assertStatus(404, "//etc/passwd")

    def test_encoded_slash_is_refused(self):
        for path in ["/docs%2fa.txt", "/docs%2Fa.txt", "/%2e%2e%2foutside/secret.txt",
                     "/..%2f..%2foutside"]:
            with self.subTest(path=path):
                self.assertStatus(400, path)

    def test_encoded_backslash_is_refused(self):
        for path in ["/docs%5ca.txt", "/%2e%2e%5Coutside%5Csecret.txt"]:
            with self.subTest(path=path):
                self.assertStatus(400, path)

    def test_literal_backslash_is_refused(self):
        self.assertStatus(400, "/..\\outside\\secret.txt")
        self.assertStatus(400, "/docs\\a.txt")

    def test_nul_byte_is_refused(self):
        self.assertStatus(400, "/file.txt%00.html")
        self.assertStatus(400, "/file.txt\x00")

    def test_overlong_utf8_dot_is_refused(self):
        self.assertStatus(400, "/%c0%ae%c0%ae/outside/secret.txt")
        self.assertStatus(400, "/%C0%AE%C0%AE%C0%AF")
        self.assertStatus(400, "/%e0%80%ae")

    def test_invalid_utf8_is_refused(self):
        self.assertStatus(400, "/%ff")
        self.assertStatus(400, "/%ed%a0%80")  # an encoded surrogate

    def test_malformed_escape_is_refused(self):
        for path in ["/%", "/%2", "/%zz", "/file.txt%", "/%%32%65"]:
            with self.subTest(path=path):
                self.assertStatus(400, path)

    def test_raw_control_and_non_ascii_characters_are_refused(self):
        for path in ["/a\r\nb", "/a b", "/\x7f", "/é"]:
            with self.subTest(path=path):
                self.assertStatus(400, path)

    def test_path_must_be_origin_form(self):
        self.assertStatus(400, "file.txt")
        self.assertStatus(400, "")
        self.assertStatus(400, "*")

    def test_split_path_trailing_dot_segments_name_a_folder(self):
        self.assertEqual(split_path("/a/b/.."), (["a"], True))
        self.assertEqual(split_path("/a/."), (["a"], True))
        self.assertEqual(split_path("/a/b"), (["a", "b"], False))
        self.assertEqual(split_path("/"), ([], True))


class DecodedPathsTest(unittest.TestCase):
    """split_path remembers what it decoded; nothing remembered can change an answer."""

    def setUp(self):
        resolver_module._decoded.cache_clear()
        self.addCleanup(resolver_module._decoded.cache_clear)

    def test_each_caller_gets_a_list_of_its_own(self):
        segments, _ = split_path("/a/b")
        segments.append("c")
        self.assertEqual(split_path("/a/b"), (["a", "b"], False))
        self.assertEqual(resolver_module._decoded.cache_info().hits, 1)

    def test_a_path_asked_for_again_gets_the_same_answer(self):
        for path in ("/a%20b/c", "/a/../b/", "/%C3%A9/.", "//x//y", "/"):
            with self.subTest(path=path):
                first = split_path(path)
                self.assertEqual(split_path(path), first)
                self.assertEqual(first, (list(resolver_module._decode(path)[0]),
                                         resolver_module._decode(path)[1]))

    def test_refusals_are_never_remembered(self):
        for path in ("/a%2fb", "/a%00", "/%C0%AE", "/a\\b", "/%zz"):
            with self.subTest(path=path):
                for _ in range(2):
                    with self.assertRaises(HTTPError):
                        split_path(path)
        self.assertEqual(resolver_module._decoded.cache_info().currsize, 0)

    def test_hammered_from_many_threads_each_answer_is_right(self):
        failures = []

        def hammer(seed):
            for round_ in range(400):
                number = (seed * 37 + round_) % (resolver_module.DECODED_PATHS + 50)
                segments, folder = split_path(f"/d{number}/./f%20{number}")
                if (segments, folder) != ([f"d{number}", f"f {number}"], False):
                    failures.append(number)
                segments.append("changed")

        run_in_threads(hammer)
        self.assertEqual(failures, [])

    def test_the_table_is_bounded(self):
        for number in range(resolver_module.DECODED_PATHS + 10):
            split_path(f"/{number}")
        self.assertEqual(resolver_module._decoded.cache_info().currsize,
                         resolver_module.DECODED_PATHS)
        self.assertEqual(split_path("/0"), (["0"], False))


class DotfileTest(ResolverTestCase):
    def test_dotfiles_are_hidden_as_missing(self):
        for path in ["/.secret", "/.git/config", "/.git/", "/.git", "/docs/.hidden/x.txt",
                     "/%2esecret", "/docs/%2Ehidden/x.txt"]:
            with self.subTest(path=path):
                self.assertStatus(404, path)

    def test_dotfiles_served_when_allowed(self):
        self.assertEqual(self.resolve("/.secret", dotfiles=True).kind, "file")
        self.assertEqual(self.resolve("/docs/.hidden/x.txt", dotfiles=True).kind, "file")

    def test_upload_temporary_files_are_hidden_even_with_dotfiles_allowed(self):
        name = UPLOAD_TEMP_PREFIX + "0123456789abcdef"
        self.write(self.root, name, b"half an upload")
        self.write(self.root, "docs/" + name, b"half an upload")
        for path in ["/" + name, "/docs/" + name, "/docs/%2enex-upload-0123456789abcdef"]:
            with self.subTest(path=path):
                self.assertStatus(404, path, dotfiles=True)
                self.assertStatus(404, path)

    def test_hidden_names(self):
        for name, dotfiles, expected in [
                (".env", False, True), (".env", True, False), ("a.txt", False, False),
                (UPLOAD_TEMP_PREFIX + "x", True, True), (UPLOAD_TEMP_PREFIX + "x", False, True),
                ("nex-upload-x", False, False), ("..", False, True)]:
            with self.subTest(name=name, dotfiles=dotfiles):
                self.assertIs(hidden(name, dotfiles), expected)

    def test_a_link_does_not_serve_a_dotfile_under_another_name(self):
        # A served checkout holding "docs -> ../.git" (or "env.txt -> .secret") must not
        # hand out what the dotfile rule hides.
        self.link(".secret", "env.txt")
        self.link(".git", "repository")
        self.link("docs/.hidden", "shown")
        self.write(self.root, "site/.env", b"password")
        self.link(".env", "site/index.html.link")
        os.replace(os.path.join(self.root, "site/index.html.link"),
                   os.path.join(self.root, "site/index.html"))
        for path in ["/env.txt", "/repository/config", "/repository/", "/shown/x.txt"]:
            with self.subTest(path=path):
                self.assertStatus(404, path)
                self.assertEqual(self.resolve(path, dotfiles=True).kind,
                                 "directory" if path.endswith("/") else "file")
        # An index file that is a link to a dotfile is not the folder's page either.
        self.assertEqual(self.resolve("/site/").fs_path,
                         os.path.join(self.root, "site/index.htm"))
        self.assertEqual(self.resolve("/site/", dotfiles=True).fs_path,
                         os.path.join(self.root, "site/.env"))

    def test_dotfile_check_does_not_touch_the_disk(self):
        with mock.patch("os.lstat") as lstat, mock.patch("os.stat") as stat:
            self.assertStatus(404, "/.missing-anyway")
        lstat.assert_not_called()
        stat.assert_not_called()


class SymlinkTest(ResolverTestCase):
    def setUp(self):
        super().setUp()
        self.link(os.path.join(self.outside, "secret.txt"), "out.txt")
        self.link(os.path.join(self.outside, "dir"), "outdir")
        self.link(os.path.join(self.root, "file.txt"), "in.txt")
        self.link("docs", "indocs")
        self.link("missing", "broken")
        self.link("loop", "loop")
        self.write(self.outside, "dir/inner.txt")

    def test_symlink_out_of_root_is_refused_by_default(self):
        self.assertStatus(404, "/out.txt")
        self.assertStatus(404, "/outdir/inner.txt")
        self.assertStatus(404, "/outdir/")

    def test_symlink_inside_root_is_followed_by_default(self):
        target = self.resolve("/in.txt")
        self.assertEqual(target.kind, "file")
        self.assertEqual(target.fs_path, os.path.join(self.root, "file.txt"))
        target = self.resolve("/indocs/a.txt")
        self.assertEqual(target.fs_path, os.path.join(self.root, "docs", "a.txt"))
        self.assertEqual(target.url_path, "/indocs/a.txt")

    def test_root_prefix_sibling_is_not_inside(self):
        # /base/root-evil starts with /base/root but is not under it.
        self.write(self.base, "root-evil/x.txt")
        self.link(os.path.join(self.base, "root-evil"), "sibling")
        self.assertStatus(404, "/sibling/x.txt")

    def test_never_policy_refuses_every_link(self):
        for path in ["/in.txt", "/indocs/a.txt", "/out.txt", "/outdir/inner.txt"]:
            with self.subTest(path=path):
                self.assertStatus(404, path, symlinks="never")
        self.assertEqual(self.resolve("/docs/a.txt", symlinks="never").kind, "file")

    def test_always_policy_follows_out_of_root(self):
        target = self.resolve("/out.txt", symlinks="always")
        self.assertEqual(target.kind, "file")
        self.assertEqual(self.resolve("/outdir/inner.txt", symlinks="always").kind, "file")

    def test_broken_and_looping_links_are_missing(self):
        for policy in ["never", "inside", "always"]:
            for path in ["/broken", "/loop", "/loop/x"]:
                with self.subTest(policy=policy, path=path):
                    self.assertStatus(404, path, symlinks=policy)

    def test_root_may_itself_be_a_symlink(self):
        root_link = os.path.join(self.base, "root-link")
        os.symlink(self.root, root_link)
        for policy in ["never", "inside", "always"]:
            with self.subTest(policy=policy):
                target = self.resolve("/file.txt", document_root=root_link, symlinks=policy)
                self.assertEqual(target.kind, "file")
                self.assertEqual(self.resolve("/", document_root=root_link,
                                              symlinks=policy).kind, "directory")
        self.assertStatus(404, "/out.txt", document_root=root_link)

    def test_index_file_symlinked_out_of_root_is_not_served(self):
        os.symlink(os.path.join(self.outside, "secret.txt"),
                   os.path.join(self.root, "empty", "index.html"))
        self.assertEqual(self.resolve("/empty/").kind, "directory")
        self.assertStatus(403, "/empty/", listing=False)
        target = self.resolve("/empty/", symlinks="always")
        self.assertEqual(target.kind, "file")


class FolderStatTest(ResolverTestCase):
    """The lstat of a file's folder, taken on the way to the file, travels with its Target."""

    def assertSameStat(self, got, path):
        expected = os.lstat(path)
        self.assertIsNotNone(got)
        self.assertEqual((got.st_ino, got.st_mtime_ns, got.st_ctime_ns),
                         (expected.st_ino, expected.st_mtime_ns, expected.st_ctime_ns))

    def test_a_nested_file_carries_its_folder(self):
        self.assertSameStat(self.resolve("/docs/a.txt").folder, os.path.join(self.root, "docs"))
        self.assertSameStat(self.resolve("/a%20b/c%20d.txt").folder,
                            os.path.join(self.root, "a b"))

    def test_an_index_file_carries_the_folder_asked_for(self):
        self.assertSameStat(self.resolve("/site/").folder, os.path.join(self.root, "site"))

    def test_no_folder_where_none_was_looked_at(self):
        self.assertIsNone(self.resolve("/file.txt").folder)  # the root is never looked at
        self.assertIsNone(self.resolve("/docs/a.txt", symlinks="always").folder)
        self.link("docs", "docs-link")
        self.assertIsNone(self.resolve("/docs-link/a.txt").folder)  # resolved through a link

    def test_the_root_is_resolved_once_however_many_links_are_met(self):
        self.link("docs", "docs-link")
        resolver_module._real_root.cache_clear()
        with mock.patch("nex.files.paths.os.path.realpath",
                        wraps=os.path.realpath) as realpath:
            for _ in range(3):
                self.assertEqual(self.resolve("/docs-link/a.txt").fs_path,
                                 os.path.join(self.root, "docs", "a.txt"))
        self.assertEqual([call.args[0] for call in realpath.call_args_list].count(self.root), 1)


class ServableEntryTest(ResolverTestCase):
    """One entry of a listed folder is servable exactly when GET of its link is served."""

    def test_entries_agree_with_resolve(self):
        self.link(os.path.join(self.outside, "secret.txt"), "out.txt")
        self.link(os.path.join(self.outside, "dir"), "outdir")
        self.link("file.txt", "in.txt")
        self.link("docs", "indocs")
        self.link("missing", "broken")
        self.write(self.root, "back\\slash")
        if hasattr(os, "mkfifo"):
            os.mkfifo(os.path.join(self.root, "pipe"))
        names = sorted(os.listdir(self.root))
        for policy in ("never", "inside", "always"):
            for dotfiles in (False, True):
                settings = {"symlinks": policy, "dotfiles": dotfiles}
                config = replace(self.config, **settings)
                folder = resolve("/", "", config)
                for name in names:
                    with self.subTest(name=name, **settings):
                        entry = servable_entry(folder, name, config)
                        link = "/" + quote(name, safe="") + (
                            "/" if os.path.isdir(os.path.join(self.root, name)) else "")
                        try:
                            served = resolve(link, "", config)
                        except HTTPError:
                            served = None
                        self.assertEqual(entry is not None, served is not None)
                        if entry is not None and not os.path.isdir(
                                os.path.join(self.root, name)):  # a folder may serve its index
                            self.assertEqual(entry.st_ino, served.stat.st_ino)

    def test_listed_names_do_not_push_out_the_paths_asked_for(self):
        resolver_module._decoded.cache_clear()
        self.addCleanup(resolver_module._decoded.cache_clear)
        folder = resolve("/", "", self.config)
        for name in os.listdir(self.root):
            servable_entry(folder, name, self.config)
        self.assertEqual(resolver_module._decoded.cache_info().currsize, 1)  # the "/"


class DirectoryTest(ResolverTestCase):
    def test_root_is_a_listing(self):
        target = self.resolve("/")
        self.assertEqual(target.kind, "directory")
        self.assertEqual(target.url_path, "/")
        self.assertEqual(target.fs_path, self.root)

    def test_folder_with_slash_is_listed(self):
        target = self.resolve("/docs/")
        self.assertEqual(target.kind, "directory")
        self.assertEqual(target.url_path, "/docs/")
        self.assertEqual(target.fs_path, os.path.join(self.root, "docs"))

    def test_listing_off_is_403(self):
        self.assertStatus(403, "/docs/", listing=False)
        self.assertStatus(403, "/", listing=False)

    def test_index_file_is_served(self):
        target = self.resolve("/site/")
        self.assertEqual(target.kind, "file")
        self.assertEqual(target.fs_path, os.path.join(self.root, "site", "index.html"))
        self.assertEqual(target.url_path, "/site/")
        self.assertEqual(self.resolve("/site/", listing=False).kind, "file")

    def test_index_files_are_tried_in_order(self):
        target = self.resolve("/both/")
        self.assertEqual(target.fs_path, os.path.join(self.root, "both", "index.htm"))
        target = self.resolve("/site/", index_files=("index.htm", "index.html"))
        self.assertEqual(target.fs_path, os.path.join(self.root, "site", "index.htm"))
        self.assertEqual(self.resolve("/site/", index_files=()).kind, "directory")

    def test_index_that_is_a_folder_is_skipped(self):
        os.makedirs(os.path.join(self.root, "empty", "index.html"))
        self.assertEqual(self.resolve("/empty/").kind, "directory")

    def test_an_index_file_that_cannot_be_looked_at_is_skipped_and_a_fault_goes_up(self):
        real_lstat = os.lstat

        def failing(error):
            def lstat(path, *args, **kwargs):
                if path.endswith("/index.html"):
                    raise error
                return real_lstat(path, *args, **kwargs)
            return lstat

        for error in (PermissionError(errno.EACCES, "denied"), OSError(errno.EMFILE, "full")):
            with self.subTest(error=error), mock.patch("os.lstat", failing(error)):
                target = self.resolve("/site/")
                self.assertEqual(target.fs_path, os.path.join(self.root, "site", "index.htm"))
        with mock.patch("os.lstat", failing(OSError(errno.EIO, "I/O error"))):
            with self.assertRaises(OSError):
                self.resolve("/site/")

    def test_file_with_trailing_slash_is_missing(self):
        self.assertStatus(404, "/file.txt/")
        self.assertStatus(404, "/file.txt/x")

    def test_missing_is_404(self):
        self.assertStatus(404, "/nope")
        self.assertStatus(404, "/nope/")
        self.assertStatus(404, "/" + "x" * 5000)

    def test_special_file_is_not_served(self):
        if not hasattr(os, "mkfifo"):
            self.skipTest("no FIFOs here")
        os.mkfifo(os.path.join(self.root, "pipe"))
        self.assertStatus(404, "/pipe")

    def test_permission_denied_is_403(self):
        denied = PermissionError(errno.EACCES, "Permission denied")
        for policy in ["never", "inside", "always"]:
            with self.subTest(policy=policy), \
                    mock.patch("os.lstat", side_effect=denied), \
                    mock.patch("os.stat", side_effect=denied):
                self.assertStatus(403, "/docs/a.txt", symlinks=policy)

    def test_unexpected_os_error_is_not_disguised(self):
        with mock.patch("os.stat", side_effect=OSError(errno.EIO, "I/O error")):
            with self.assertRaises(OSError):
                self.resolve("/file.txt", symlinks="always")


class NotFoundDetailTest(ResolverTestCase):
    """Every 404 names the decoded path asked for, in one shape whatever the reason."""

    def setUp(self):
        super().setUp()
        self.link(os.path.join(self.outside, "secret.txt"), "out.txt")
        self.link("missing", "broken")

    def assertNotFound(self, path, named, **settings):
        error = self.assertStatus(404, path, **settings)
        self.assertEqual(error.detail, f"The requested path {named} was not found.")

    def test_missing_paths_are_named_decoded_and_normalised(self):
        for path, named in (("/nope", "/nope"), ("/nope/", "/nope/"),
                            ("/a%20b/n%C3%A9", "/a b/né"), ("/docs/../nope/./x", "/nope/x"),
                            ("/%3Cscript%3E%22%27", "/<script>\"'")):
            with self.subTest(path=path):
                self.assertNotFound(path, named)

    def test_refusals_look_like_missing_files(self):
        for path, named in (("/.secret", "/.secret"), ("/.git/config", "/.git/config"),
                            ("/%2esecret", "/.secret"), ("/out.txt", "/out.txt"),
                            ("/broken", "/broken"), ("/file.txt/", "/file.txt/")):
            with self.subTest(path=path):
                self.assertNotFound(path, named)

    def test_symlink_refused_by_never_looks_like_a_missing_file(self):
        self.link("file.txt", "in.txt")
        self.assertNotFound("/in.txt", "/in.txt", symlinks="never")


class RedirectTest(ResolverTestCase):
    def test_folder_without_slash_redirects(self):
        self.assertEqual(self.location("/docs"), "/docs/")

    def test_redirect_keeps_the_query(self):
        self.assertEqual(self.location("/docs", "sort=name&x=%20"), "/docs/?sort=name&x=%20")

    def test_redirect_location_is_reencoded(self):
        self.assertEqual(self.location("/a%20b"), "/a%20b/")
        self.assertEqual(self.location("/%C3%A9"), "/%C3%A9/")

    def test_redirect_location_cannot_carry_crlf(self):
        location = self.location("/a%0d%0ab")
        self.assertEqual(location, "/a%0D%0Ab/")
        location = self.location("/docs", "x=\r\nSet-Cookie: a=b")
        self.assertNotIn("\r", location)
        self.assertNotIn("\n", location)
        self.assertNotIn(" ", location)

    def test_redirect_location_cannot_become_protocol_relative(self):
        for path in ["//evil.example", "///evil.example", "/.//evil.example",
                     "/..//evil.example", "/%2e%2e//evil.example", "/./evil.example"]:
            with self.subTest(path=path):
                self.assertEqual(self.location(path), "/evil.example/")

    def test_redirect_location_is_normalised(self):
        self.assertEqual(self.location("/docs/../docs"), "/docs/")
        self.assertEqual(self.location("/site"), "/site/")

    def test_redirect_location_escapes_everything_outside_pchar(self):
        location = redirect_location(["<x>", '"q"', "50%", "a?b#c", "\\"], "")
        self.assertEqual(location, "/%3Cx%3E/%22q%22/50%25/a%3Fb%23c/%5C/")

    def test_encode_path_of_files_folders_and_the_root(self):
        self.assertEqual(encode_path([]), "/")
        self.assertEqual(encode_path([], folder=True), "/")
        self.assertEqual(encode_path(["a b", "c\r\nd.txt"]), "/a%20b/c%0D%0Ad.txt")
        self.assertEqual(encode_path(["a b"], folder=True), "/a%20b/")
        self.assertEqual(redirect_location([], "x=1"), "/?x=1")

    def test_no_redirect_without_a_folder(self):
        self.assertStatus(404, "/nope")

    def test_dotfolder_is_not_revealed_by_a_redirect(self):
        self.assertStatus(404, "/.git")


class ResolverPropertyTest(unittest.TestCase):
    """Whatever the path, nothing outside the root is named and no header is forged."""

    @classmethod
    def setUpClass(cls):
        cls.base = os.path.realpath(tempfile.mkdtemp(prefix="nex-resolver-prop-"))
        cls.root = os.path.join(cls.base, "root")
        os.makedirs(os.path.join(cls.root, "d", "e"))
        with open(os.path.join(cls.base, "secret"), "wb"):
            pass
        with open(os.path.join(cls.root, "d", "f"), "wb"):
            pass
        cls.config = Config(document_root=cls.root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.base)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.sampled_from(["", ".", "..", "d", "e", "f", "secret", "root", "%2e",
                                     "%2E%2e", "%252e", "%0d%0a", "%20", "%", "%c0%ae",
                                     "%2f", "\\", "%00", "é", "%C3%A9", ".x"]),
                    max_size=8),
           st.booleans(), st.text(max_size=10))
    def test_resolve_stays_in_root_and_redirects_safely(self, parts, slash, query):
        path = "/" + "/".join(parts) + ("/" if slash else "")
        try:
            target = resolve(path, query, self.config)
        except HTTPError as error:
            self.assertIn(error.status, (301, 400, 403, 404))
            for name, value in error.headers:
                self.assertEqual(name, "Location")
                self.assertTrue(value.startswith("/"))
                self.assertFalse(value.startswith("//"))
                self.assertTrue(value.isascii())
                self.assertFalse(any(ch in value for ch in "\r\n\0 "))
            return
        self.assertTrue(target.fs_path == self.root
                        or target.fs_path.startswith(self.root + os.sep))
        self.assertTrue(target.url_path.startswith("/"))
        self.assertNotIn("//", target.url_path)


if __name__ == "__main__":
    unittest.main()


class ReturnedNotFoundTest(ResolverTestCase):
    """``find_target`` gives its 404 as a value, the same one ``resolve_segments`` raises;
    other answers are raised by both."""

    def find(self, path, misses=None):
        segments, trailing_slash = split_path(path)
        return find_target(segments, trailing_slash, "", self.config, None, misses)

    def test_every_404_is_returned_as_resolve_raises_it(self):
        misses = MissCache()
        with mock.patch("nex.files.filecache.SETTLED_NS", -(1 << 62)):  # folders settled
            for path in ("/missing.txt", "/docs/missing/", "/.secret", "/docs/.hidden/x.txt",
                         "/file.txt/", "/missing.txt", "/docs/gone.txt", "/docs/gone.txt"):
                with self.subTest(path):
                    found = self.find(path, misses)
                    self.assertIsInstance(found, HTTPError)
                    raised = self.assertStatus(404, path)
                    self.assertEqual((found.status, found.detail, found.headers),
                                     (raised.status, raised.detail, raised.headers))
                    self.assertIsNone(found.__traceback__)  # never raised on its way
        self.assertGreater(len(misses), 0)

    def test_other_answers_are_raised(self):
        self.assertEqual(self.find("/file.txt").fs_path, os.path.join(self.root, "file.txt"))
        with self.assertRaises(HTTPError) as caught:
            self.find("/docs")
        self.assertEqual(caught.exception.status, 301)
        with self.assertRaises(HTTPError) as caught:
            find_target(["empty"], True, "", replace(self.config, listing=False))
        self.assertEqual(caught.exception.status, 403)
