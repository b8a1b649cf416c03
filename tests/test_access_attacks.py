"""Attacks on the access policy from outside, over real sockets: each test is named after
the hole it keeps closed.

The server is :class:`tests.test_access.ServerTestCase`'s: ``/private/`` is protected and
``public/link`` leads into it.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
import unittest
from typing import Dict, List, Optional

from nex.files.archive import plan_archive
from nex.files.paths import (MAX_LINKS, Refused, disguised, hidden, not_found, passes_through,
                             refuse_along, resolve)
from nex.files.search import find
from nex.files.templates import TemplateSet
from nex.files.upload import UploadFolder
from nex.http.errors import HTTPError
from nex.process.config import Config
from nex.site.access import AccessPolicy
from nex.site.login import ProtectedPaths
from tests.support import REPO, NexServer, http_request
from tests.support.access import (ANONYMOUS, RIGHT, SECRET, ServerTestCase, make_users, write,
                                  zip_names)


class RefuseMissingTest(unittest.TestCase):
    """A missing path is judged by where it would lie, links on the way resolved."""

    def setUp(self) -> None:
        self.root = os.path.realpath(tempfile.mkdtemp(prefix="nex-refuse-missing-"))
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        os.makedirs(os.path.join(self.root, "private"))
        os.makedirs(os.path.join(self.root, "public"))
        os.symlink("../private", os.path.join(self.root, "public", "link"))
        policy = AccessPolicy(ProtectedPaths(["/private/"]), self.root, upload=True)
        self.anonymous = policy.checker(None)
        self.alice = policy.checker("alice")

    def test_protected_names_existence_leaks_through_symlink_404(self) -> None:
        config = Config(document_root=self.root, symlinks="inside")
        with self.assertRaises(Refused):
            refuse_along(["public", "link", "gone.txt"], "/public/link/gone.txt", config,
                         self.anonymous, "read")
        refuse_along(["public", "link", "gone.txt"], "/public/link/gone.txt", config,
                     self.alice, "read")
        refuse_along(["public", "gone.txt"], "/public/gone.txt", config, self.anonymous,
                     "write")

    def test_links_not_followed_leave_nothing_to_judge(self) -> None:
        refuse_along(["public", "link", "gone.txt"], "/public/link/gone.txt",
                     Config(document_root=self.root, symlinks="never"), self.anonymous,
                     "read")

    def test_a_path_through_more_links_than_the_kernel_follows_is_refused(self) -> None:
        # Each link costs a realpath: the walk stops at MAX_LINKS, as the kernel does.
        os.symlink(".", os.path.join(self.root, "here"))
        config = Config(document_root=self.root, symlinks="inside")
        links, end = passes_through(["here"] * MAX_LINKS + ["public"], config)
        self.assertEqual((len(links), end), (MAX_LINKS, os.path.join(self.root, "public")))
        self.assertEqual(passes_through(["here"] * (MAX_LINKS + 1) + ["public"], config)[1],
                         None)
        with self.assertRaises(Refused):
            refuse_along(["here"] * (MAX_LINKS + 1) + ["public"], "/public", config,
                         self.anonymous, "read")


class ExistenceOracleTest(ServerTestCase):
    """An anonymous client learns nothing about which names exist in a protected folder by
    going through a link into it: a name that exists and one that does not get the same
    answer, the login challenge, whatever the method or the spelling."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        write(cls.root, "private/folder/inner.txt", SECRET)
        os.symlink("../private/secret.txt", os.path.join(cls.root, "public", "file-link"))

    def assert_same_answer(self, method: str, present: str, absent: str,
                           body: bytes = None, headers: Dict[str, str] = None) -> None:
        answers = [self.request(method, target, {**ANONYMOUS, **(headers or {})}, body)[0]
                   for target in (present, absent)]
        self.assertEqual(answers, [401, 401], (present, absent))

    def test_protected_names_existence_leaks_through_symlink_404(self) -> None:
        self.assert_same_answer("GET", "/public/link/secret.txt", "/public/link/nothing.txt")
        self.assert_same_answer("HEAD", "/public/link/secret.txt", "/public/link/nothing.txt")
        self.assert_same_answer("GET", "/public/link/folder/", "/public/link/nothing/")
        self.assert_same_answer("GET", "/public/file-link", "/public/file-link/nothing")

    def test_protected_folder_existence_leaks_through_symlink_redirect(self) -> None:
        self.assert_same_answer("GET", "/public/link/folder", "/public/link/nothing")

    def test_protected_names_existence_leaks_through_symlink_options(self) -> None:
        self.assert_same_answer("OPTIONS", "/public/link/secret.txt",
                                "/public/link/nothing.txt")

    def test_protected_folder_existence_leaks_through_symlink_upload(self) -> None:
        self.assert_same_answer("PUT", "/public/link/folder/new.txt",
                                "/public/link/nothing/new.txt", b"x")
        self.assertFalse(os.path.exists(os.path.join(self.root, "private", "folder",
                                                     "new.txt")))

    def test_login_still_answers_what_exists(self) -> None:
        self.assertEqual(self.request("GET", "/public/link/nothing.txt", RIGHT)[0], 404)
        self.assertEqual(self.request("GET", "/public/link/folder", RIGHT)[0], 301)
        self.assertEqual(self.request("GET", "/public/nothing.txt", ANONYMOUS)[0], 404)


class LinkOutOfProtectedFolderTest(ServerTestCase):
    """``private/way-out`` leads to a public file and ``private/door`` to the public
    folder.  Reached through ``public/link`` (a link to ``/private``), they need the login
    as they do by their own addresses: a public target would otherwise answer 200 where a
    missing name answers 401, and tell a stranger which names the protected folder holds."""

    settings = {"files": {"webdav": "write", "allow_delete": "yes", "allow_rename": "yes"}}

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        os.symlink("../public/plain.txt", os.path.join(cls.root, "private", "way-out"))
        os.symlink("../public", os.path.join(cls.root, "private", "door"))
        os.symlink("../public/missing", os.path.join(cls.root, "private", "dangling"))
        os.symlink(cls.outside, os.path.join(cls.root, "private", "outlink"))

    def assert_same_answer(self, method: str, present: str, absent: str,
                           headers: Optional[Dict[str, str]] = None, body: bytes = None) -> None:
        answers = [self.request(method, target, {**ANONYMOUS, **(headers or {})}, body)[0]
                   for target in (present, absent)]
        self.assertEqual(answers, [401, 401], (method, present, absent))

    def test_missing_names_behind_a_link_leading_out_answer_as_absent_ones(self) -> None:
        for method in ("GET", "HEAD", "OPTIONS"):
            self.assert_same_answer(method, "/public/link/door/zzz", "/public/link/zzz/zzz")
            self.assert_same_answer(method, "/public/link/dangling", "/public/link/zzz")
        self.assert_same_answer("PROPFIND", "/public/link/door/zzz", "/public/link/zzz/zzz",
                                {"Depth": "0"})
        # A link leading out of the root, which symlinks = inside does not follow.
        self.assert_same_answer("GET", "/public/link/outlink/x.txt", "/public/link/zzz/x.txt")
        self.assert_same_answer("GET", "/public/link/outlink/", "/public/link/zzz/")

    def test_every_answer_of_a_writing_method_through_the_link_is_the_login(self) -> None:
        # A file used as a folder, a lock, a precondition: each would have told what is there.
        etag = self.request("HEAD", "/public/plain.txt", ANONYMOUS)[1]["etag"]
        for method, present, absent, headers, body in (
                ("PUT", "/public/link/secret.txt/x", "/public/link/zzz/x", {}, b"x"),
                ("POST", "/public/link/secret.txt/", "/public/link/zzz/",
                 {"Content-Type": "multipart/form-data; boundary=b"}, b"--b--\r\n"),
                ("HEAD", "/public/link/secret.txt/x?upload=" + "0" * 32 + "r",
                 "/public/link/zzz/x?upload=" + "0" * 32 + "r", {}, None),
                ("MKCOL", "/public/link/secret.txt/x", "/public/link/zzz/x", {}, None),
                ("UNLOCK", "/public/link/secret.txt", "/public/link/zzz",
                 {"Lock-Token": "<urn:uuid:0>"}, None),
                ("PUT", "/public/link/door/plain.txt", "/public/link/zzz/plain.txt",
                 {"If": f"([{etag}])"}, b"x"),
                ("COPY", "/public/plain.txt", "/public/plain.txt",
                 {"Destination": "/public/link/way-out", "Overwrite": "F"}, None),
                ("COPY", "/public/plain.txt", "/public/plain.txt",
                 {"Destination": "/public/link/zzz", "Overwrite": "F"}, None)):
            with self.subTest(method=method, present=present, headers=headers):
                self.assert_same_answer(method, present, absent, {**headers}, body)

    def test_writes_through_a_link_leading_out_need_the_login(self) -> None:
        xml = {"Content-Type": "application/xml"}
        lockinfo = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope>'
                    b'<D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>'
                    b'</D:lockinfo>')
        write(self.root, "public/victim.txt", b"victim\n")
        for method, suffix, headers, body in (
                ("PUT", "new.txt", {}, b"x"),
                ("PUT", "res.txt", {"Upload-Complete": "?0"}, b"x"),
                ("MKCOL", "newdir", {}, None),
                ("DELETE", "victim.txt", {}, None),
                ("PROPPATCH", "victim.txt", xml, b'<D:propertyupdate xmlns:D="DAV:"/>'),
                ("LOCK", "lock.txt", xml, lockinfo)):
            with self.subTest(method=method):
                self.assert_same_answer(method, f"/public/link/door/{suffix}",
                                        f"/public/link/zzz/{suffix}", headers, body)
        self.assertEqual(self.request("COPY", "/public/plain.txt", {
            **ANONYMOUS, "Destination": "/public/link/door/copied.txt"})[0], 401)
        self.assertEqual(sorted(os.listdir(os.path.join(self.root, "public"))),
                         ["doc.txt", "doc.txt.gz", "link", "out", "plain.txt", "site",
                          "victim.txt"])

    def test_names_in_a_protected_folder_leak_through_a_link_leading_out_of_it(self) -> None:
        for target in ("/public/link/way-out", "/public/link/door/",
                       "/public/link/door/plain.txt", "/private/way-out",
                       "/private/door/plain.txt", "/public/link/nothing"):
            with self.subTest(target=target):
                self.assertEqual(self.request("GET", target, ANONYMOUS)[0], 401)
                self.assertEqual(self.request("GET", target, RIGHT)[0],
                                 404 if target.endswith("nothing") else 200)
        for target in ("/public/link/door/?download=zip",
                       "/public/link/door/?search=plain&format=json"):
            with self.subTest(target=target):
                self.assertEqual(self.request("GET", target, ANONYMOUS)[0], 401)
                self.assertEqual(self.request("GET", target, RIGHT)[0], 200)
        status, _, _ = self.request("PROPFIND", "/public/link/way-out",
                                    {**ANONYMOUS, "Depth": "0"})
        self.assertEqual(status, 401)
        self.assertEqual(self.request("GET", "/public/plain.txt", ANONYMOUS)[0], 200)


class PrePlacedUploadTest(ServerTestCase):
    """With ``upload_overwrite = no``, an upload cannot decide what a later upload's address,
    or an existing folder's address, serves."""

    def put(self, target: str, body: bytes) -> int:
        return self.request("PUT", target, ANONYMOUS, body)[0]

    def test_pre_placed_sidecar_hijacks_a_later_upload(self) -> None:
        self.assertEqual(self.put("/public/report.txt.gz", gzip.compress(b"ATTACKER\n")), 201)
        self.assertEqual(self.put("/public/report.txt", b"victim\n"), 409)
        self.assertFalse(os.path.exists(os.path.join(self.root, "public", "report.txt")))

    def test_uploaded_index_file_replaces_a_folder_listing(self) -> None:
        for name in ("index.html", "index.htm"):
            with self.subTest(name=name):
                self.assertEqual(self.put(f"/public/{name}", b"<h1>defaced</h1>"), 409)
        status, _, page = self.request("GET", "/public/", ANONYMOUS)
        self.assertEqual(status, 200)
        self.assertIn(b"plain.txt", page)


class DisguisedNamesTest(ServerTestCase):
    """A name holding control or format characters never reaches a page raw."""

    def test_error_page_shows_disguising_characters_of_the_asked_path_raw(self) -> None:
        for target, shown in (("/invoice%E2%80%AEtxt.exe", "invoice\\u202Etxt.exe"),
                              ("/a%1B%5B31mred", "a\\u001B[31mred"),
                              ("/c%C2%85d", "c\\u0085d")):
            with self.subTest(target=target):
                status, _, page = self.request("GET", target, ANONYMOUS)
                self.assertEqual(status, 404)
                text = page.decode("utf-8")
                self.assertIn(shown, text)
                self.assertFalse(disguised(text.replace("\n", "")), text)

    def test_error_page_detail_is_rendered_with_escapes(self) -> None:
        templates = TemplateSet.load(os.path.join(REPO, "error_pages"),
                                     os.path.join(REPO, "other_templates"))
        page = templates.render_error(not_found("/a\u202etxt.exe"), "sig").decode("utf-8")
        self.assertIn("/a\\u202Etxt.exe", page)
        self.assertNotIn("\u202e", page)


class LinkToParentTest(ServerTestCase):
    """A link to a folder above a protected one, inside a zipped folder."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        write(cls.root, "zipped/plain.txt", b"plain\n")
        os.symlink("..", os.path.join(cls.root, "zipped", "up"))

    def test_zip_through_link_to_parent_ships_protected_folder(self) -> None:
        status, _, data = self.request("GET", "/zipped/?download=zip", ANONYMOUS)
        self.assertEqual(status, 200)
        names = zip_names(data)
        self.assertIn("zipped/plain.txt", names)
        self.assertIn("zipped/up/public/plain.txt", names)
        self.assertFalse([name for name in names if "private" in name or "secret" in name],
                         names)
        self.assertIn("zipped/up/private/secret.txt",
                      zip_names(self.request("GET", "/zipped/?download=zip", RIGHT)[2]))

    def test_search_through_link_to_parent_shows_protected_hits(self) -> None:
        status, _, data = self.request("GET", "/zipped/?search=secret&format=json", ANONYMOUS)
        self.assertEqual(status, 200)
        paths = [hit["path"] for hit in json.loads(data)["hits"]]
        self.assertFalse([path for path in paths if "private" in path], paths)
        status, _, data = self.request("GET", "/zipped/?search=secret&format=json", RIGHT)
        self.assertIn("up/private/secret.txt",
                      [hit["path"] for hit in json.loads(data)["hits"]])


class CopyThroughLinkTest(ServerTestCase):
    """A WebDAV COPY of a folder holding a link to a folder above a protected one."""

    settings = {"files": {"webdav": "write"}}

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        write(cls.root, "zipped/plain.txt", b"plain\n")
        os.symlink("..", os.path.join(cls.root, "zipped", "up"))

    def copied(self, headers: Dict[str, str], destination: str) -> List[str]:
        """COPY /zipped/ to ``destination`` with ``headers``: the files the copy holds."""
        origin = {"Origin": f"http://127.0.0.1:{self.server.port}"}
        status, _, _ = self.request("COPY", "/zipped/",
                                    {**headers, **origin, "Destination": destination})
        self.assertEqual(status, 201)
        top = os.path.join(self.root, destination.strip("/"))
        return sorted(os.path.relpath(os.path.join(folder, name), top)
                      for folder, _, names in os.walk(top) for name in names)

    def test_copy_through_link_to_parent_copies_protected_folder(self) -> None:
        files = self.copied(ANONYMOUS, "/copied/")
        self.assertIn("up/public/plain.txt", files)
        self.assertFalse([name for name in files if name.startswith("up/private/")], files)
        self.assertNotIn("up/public/doc.txt.gz", files)
        self.assertIn("up/private/secret.txt", self.copied(RIGHT, "/copied-by-alice/"))

    def test_copy_into_itself_through_link_to_parent_never_ends(self) -> None:
        self.assertIn("up/public/plain.txt", self.copied(RIGHT, "/looped/"))
        self.assertTrue(os.path.isdir(os.path.join(self.root, "looped", "up", "looped")))
        self.assertEqual(os.listdir(os.path.join(self.root, "looped", "up", "looped")), [])


class PlanThroughLinkTest(unittest.TestCase):
    """The archive's plan, without sockets, through a link to a parent folder."""

    def test_zip_through_link_to_parent_ships_protected_folder(self) -> None:
        root = os.path.realpath(tempfile.mkdtemp(prefix="nex-plan-link-"))
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        write(root, "private/secret.txt", SECRET)
        write(root, "zipped/plain.txt", b"plain\n")
        os.symlink("..", os.path.join(root, "zipped", "up"))
        config = Config(document_root=root, symlinks="inside")
        policy = AccessPolicy(ProtectedPaths(["/private/"]), root, upload=False)
        folder = resolve("/zipped/", "", config)
        names = [member.name for member in plan_archive(folder, config, "zipped",
                                                         policy.checker(None))]
        self.assertNotIn("zipped/up/private/secret.txt", names)
        names = [member.name for member in plan_archive(folder, config, "zipped",
                                                         policy.checker("alice"))]
        self.assertIn("zipped/up/private/secret.txt", names)

    def test_search_through_link_to_parent_shows_protected_hits(self) -> None:
        root = os.path.realpath(tempfile.mkdtemp(prefix="nex-find-link-"))
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        write(root, "private/secret.txt", SECRET)
        os.makedirs(os.path.join(root, "zipped"))
        os.symlink("..", os.path.join(root, "zipped", "up"))
        config = Config(document_root=root, symlinks="inside")
        policy = AccessPolicy(ProtectedPaths(["/private/"]), root, upload=False)
        folder = resolve("/zipped/", "", config)
        hits = find(folder, "secret", config, policy.checker(None)).hits
        self.assertEqual([hit.prefix + hit.entry[0] for hit in hits], [])
        hits = find(folder, "secret", config, policy.checker("alice")).hits
        self.assertEqual([hit.prefix + hit.entry[0] for hit in hits], ["up/private/secret.txt"])


class ProtectedFileSidecarTest(ServerTestCase):
    """A file protected by name has its precompressed sidecars protected too."""

    settings = {"auth": {"protect": "/private/, /public/report.txt"}}

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        write(cls.root, "public/report.txt", SECRET)
        write(cls.root, "public/report.txt.gz", gzip.compress(SECRET))
        write(cls.root, "public/report.txt.br", SECRET)

    def test_protected_file_leaks_through_its_sidecar_address(self) -> None:
        for target in ("/public/report.txt", "/public/report.txt.gz", "/public/report.txt.br",
                       "/public/REPORT.TXT.GZ"):
            with self.subTest(target=target):
                self.assertEqual(self.request("GET", target, ANONYMOUS)[0], 401)
        self.assertEqual(self.request("GET", "/public/report.txt.gz", RIGHT)[0], 200)
        names = zip_names(self.request("GET", "/public/?download=zip", ANONYMOUS)[2])
        self.assertFalse([name for name in names if "report" in name], names)

    def test_sidecar_of_protected_file_is_judged_as_the_file(self) -> None:
        policy = AccessPolicy(ProtectedPaths(["/a/report.txt"]), "/srv", upload=True)
        for path in ("/a/report.txt.gz", "/a/report.txt.br", "/a/report.txt.GZ"):
            with self.subTest(path=path):
                self.assertFalse(policy.may(None, "read", path, "/srv" + path))
        self.assertFalse(policy.may(None, "read", "/b/alias.gz", "/srv/a/report.txt.gz"))
        self.assertTrue(policy.may(None, "read", "/a/report.txt.zip", "/srv/a/report.txt.zip"))
        self.assertTrue(policy.may(None, "read", "/a/.gz", "/srv/a/.gz"))
        paths = ProtectedPaths(["/a/report.txt", "/deep/er/folder/"])
        self.assertTrue(paths.covers(["a", "report.txt.gz"]))
        self.assertFalse(paths.covers(["a", "report.txt.gz", "x"]))
        self.assertFalse(paths.covers(["a", "b", "c", "d", "report.txt.gz"]))


class SidecarThroughLinkTest(ServerTestCase):
    """With ``symlinks = always``, a public file asked for through a folder link."""

    settings = {"files": {"symlinks": "always"}}

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        os.symlink("public", os.path.join(cls.root, "alias"))

    def test_protected_sidecar_sent_for_a_file_asked_for_through_a_link(self) -> None:
        for target in ("/public/doc.txt", "/alias/doc.txt"):
            with self.subTest(target=target):
                status, headers, body = self.request("GET", target, {"Accept-Encoding": "gzip"})
                self.assertEqual((status, body), (200, b"doc\n"))
                self.assertNotIn("content-encoding", headers)
        status, headers, _ = self.request("GET", "/alias/doc.txt",
                                          {"Accept-Encoding": "gzip", **RIGHT})
        self.assertEqual((status, headers.get("content-encoding")), (200, "gzip"))


class LookalikeUploadTest(ServerTestCase):
    """With ``upload_overwrite = no``, an upload cannot pass for an existing file."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        write(cls.root, "public/caf\u00e9.txt", b"original\n")

    def test_other_normal_form_of_existing_name_passes_for_it(self) -> None:
        self.assertEqual(self.request("PUT", "/public/cafe%CC%81.txt", ANONYMOUS, b"fake")[0],
                         409)
        self.assertFalse(os.path.exists(os.path.join(self.root, "public", "cafe\u0301.txt")))
        self.assertEqual(self.request("PUT", "/public/na%C3%AFve.txt", ANONYMOUS, b"new")[0],
                         201)

    def test_folder_check_refuses_the_other_normal_form(self) -> None:
        root = os.path.realpath(tempfile.mkdtemp(prefix="nex-lookalike-"))
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        write(root, "cafe\u0301.txt", b"decomposed\n")
        folder = UploadFolder([], Config(document_root=root, upload=True), "/")
        self.addCleanup(folder.close)
        with self.assertRaises(HTTPError) as caught:
            folder.check("caf\u00e9.txt")
        self.assertEqual(caught.exception.status, 409)
        self.assertIsNone(folder.check("other.txt"))


class UploadTempNameTest(unittest.TestCase):
    """An upload's temporary file stays hidden however its name is spelt."""

    def test_case_variant_of_upload_temp_name_is_served_on_case_insensitive_disks(self) -> None:
        for name in (".nex-upload-0123", ".NEX-UPLOAD-0123", ".Nex-Upload-0123"):
            with self.subTest(name=name):
                self.assertTrue(hidden(name, dotfiles=True))
        self.assertFalse(hidden(".nex-uploads", dotfiles=True))
        self.assertTrue(hidden(".anything", dotfiles=False))



class ProtectedLinkTest(unittest.TestCase):
    """A protected prefix that is a link protects the folder it leads to."""

    def test_protected_link_leaves_its_target_folder_open(self) -> None:
        root = tempfile.mkdtemp(prefix="nex-protected-link-")
        users = tempfile.mkdtemp(prefix="nex-protected-link-users-")
        for folder in (root, users):
            self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
        write(root, "papers/report.txt", SECRET)
        os.symlink("papers", os.path.join(root, "docs"))
        settings = {"auth": {"users_file": make_users(users), "protect": "/docs/"}}
        with NexServer(root, settings) as server:
            def get(target: str, headers: Dict[str, str]):
                return http_request(server, "GET", target, None,
                                    {"Host": f"127.0.0.1:{server.port}", **headers})
            for target in ("/docs/report.txt", "/papers/report.txt", "/papers/nothing.txt",
                           "/papers/?format=json", "/papers/?download=zip"):
                with self.subTest(target=target):
                    status, _, data = get(target, ANONYMOUS)
                    self.assertEqual(status, 401)
                    self.assertNotIn(SECRET, data)
            self.assertNotIn(b"papers", get("/?format=json", ANONYMOUS)[2])
            self.assertEqual(get("/papers/report.txt", RIGHT)[0], 200)

    def test_linked_prefixes_are_where_the_links_lead(self) -> None:
        root = os.path.realpath(tempfile.mkdtemp(prefix="nex-linked-prefixes-"))
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        os.makedirs(os.path.join(root, "a", "Real"))
        os.symlink("a/Real", os.path.join(root, "alias"))
        os.symlink("/", os.path.join(root, "out"))
        linked = ProtectedPaths(["/alias/", "/out/", "/a/", "/missing/"]).linked(root)
        self.assertTrue(linked.covers(["a", "real", "x.txt"]))
        self.assertFalse(linked.covers(["a", "other"]))
        self.assertFalse(linked.covers(["alias"]))


class DotfileBehindLinkTest(unittest.TestCase):
    """A served checkout holding links to its ``.git`` folder or to a dotfile: nothing the
    dotfile rule hides is read, listed, zipped, found by WebDAV or written through them."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.root = os.path.realpath(tempfile.mkdtemp(prefix="nex-dotlink-"))
        write(cls.root, ".git/config", SECRET)
        write(cls.root, ".git/hooks/README", b"hooks")
        write(cls.root, ".env", SECRET)
        write(cls.root, "readme.txt", b"hello")
        os.symlink(".git", os.path.join(cls.root, "repository"))
        os.symlink(".env", os.path.join(cls.root, "env.txt"))
        cls.server = NexServer(cls.root, settings={"files": {
            "zip_download": "yes", "upload": "yes", "webdav": "write"}}).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def test_dotfile_served_under_a_link_name(self) -> None:
        for target in ("/env.txt", "/repository/config", "/repository/", "/repository"):
            with self.subTest(target=target):
                self.assertEqual(http_request(self.server, "GET", target)[0], 404)

    def test_dotfile_link_in_listing_zip_and_propfind(self) -> None:
        status, _, body = http_request(self.server, "GET", "/",
                                       headers={"Accept": "application/json"})
        self.assertEqual(status, 200)
        self.assertIn(b"readme.txt", body)
        self.assertNotIn(b"repository", body)
        self.assertNotIn(b"env.txt", body)
        status, _, body = http_request(self.server, "GET", "/?download=zip")
        self.assertEqual(status, 200)
        self.assertEqual([name.split("/", 1)[1] for name in zip_names(body)], ["", "readme.txt"])
        status, _, body = http_request(self.server, "PROPFIND", "/", headers={"Depth": "1"})
        self.assertEqual(status, 207)
        self.assertIn(b"readme.txt", body)
        self.assertNotIn(b"repository", body)
        self.assertNotIn(b"env.txt", body)

    def test_upload_through_a_link_into_the_git_folder(self) -> None:
        # A hook planted in .git/hooks would run on the owner's next commit.
        for method, target in (("PUT", "/repository/hooks/pre-commit"),
                               ("PUT", "/repository/description"), ("PUT", "/env.txt")):
            with self.subTest(target=target):
                status = http_request(self.server, method, target, body=b"#!/bin/sh\n")[0]
                self.assertIn(status, (404, 409), target)
        self.assertEqual(os.listdir(os.path.join(self.root, ".git", "hooks")), ["README"])
        self.assertFalse(os.path.exists(os.path.join(self.root, ".git", "description")))
        with open(os.path.join(self.root, ".env"), "rb") as kept:
            self.assertEqual(kept.read(), SECRET)
