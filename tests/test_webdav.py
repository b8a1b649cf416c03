"""WebDAV without sockets (RFC 4918): each method's statuses through a real Dispatcher, the
access rules of PROPFIND, locks and the If header, and the safe XML parser."""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import xml.etree.ElementTree as ElementTree
from typing import Callable, Dict, List, Optional, Tuple
from unittest import mock

from nex.files import davnames, davwrite, upload
from nex.files.davlocks import LockConflict, LockTable, Where, parse_if, parse_timeout
from nex.files.davxml import MAX_DEPTH, parse_xml
from nex.files.filecache import SmallFileCache
from nex.files.paths import split_path
from nex.files.pending import PendingFile
from nex.files.webdav import WebDav
from nex.http.dates import parse_http_date
from nex.http.errors import HTTPError
from nex.http.response import Response
from nex.site.hosts import HostValidator
from nex.site.routing import Dispatcher
from tests.support import FORM_TYPE, file_part, form_body, wait_until
from tests.support.access import make_chain, remove_chain
from tests.support.threads import run_in_threads
from tests.support.upload import ALICE, UploadTestCase, race

XML = ("Content-Type", "application/xml")
PROPNAME = b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>'
LOCKINFO = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
            b'</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>tester</D:owner>'
            b'</D:lockinfo>')
SHARED = LOCKINFO.replace(b"exclusive", b"shared")


def multistatus(response: Response) -> List[Tuple[str, Dict[str, str]]]:
    """``(href, {property local name: status})`` per response of a 207 body; a response
    without propstat maps ``"status"`` to its status code."""
    if response.status != 207:
        raise AssertionError(f"expected a 207 multistatus, got {response.status}")
    tree = ElementTree.fromstring(b"".join(response.body))
    result = []
    for item in tree.findall("{DAV:}response"):
        href = item.findtext("{DAV:}href")
        statuses = {}
        for propstat in item.findall("{DAV:}propstat"):
            code = propstat.findtext("{DAV:}status").split(" ")[1]
            for prop in propstat.find("{DAV:}prop"):
                statuses[prop.tag.rpartition("}")[2]] = code
        if item.findtext("{DAV:}status"):
            statuses["status"] = item.findtext("{DAV:}status").split(" ")[1]
        result.append((href, statuses))
    return result


class DavCase(UploadTestCase):
    """A root with ``dir/``, ``hello.txt`` and ``outside/secret.txt`` beside it; WebDAV
    write on, deleting and renaming allowed, one lock table for the whole test."""

    settings = {"upload": True, "webdav": "write", "allow_delete": True, "allow_rename": True}

    def setUp(self) -> None:
        super().setUp()
        self.locks = LockTable()

    def site(self, file_cache: Optional[SmallFileCache] = None, **settings) -> Dispatcher:
        config = dataclasses.replace(self.config, **settings)
        dav = WebDav.for_site(config)
        if dav is not None:
            dav.locks = self.locks
        return Dispatcher(config, self.templates, HostValidator(["*"]), "sig", file_cache,
                          auth=self.auth, dav=dav)

    def dav(self, method: str, target: str, body: bytes = b"", *headers: Tuple[str, str],
            **settings) -> Response:
        return self.request(method, target, body, headers=headers, **settings)

    def propfind(self, target: str, depth: str = "1", body: bytes = b"", **settings):
        return multistatus(self.dav("PROPFIND", target, body, ("Depth", depth), **settings))

    def lock(self, target: str, *headers: Tuple[str, str], body: bytes = LOCKINFO) -> str:
        response = self.dav("LOCK", target, body, XML, *headers)
        self.assertIn(response.status, (200, 201))
        return dict(response.headers)["Lock-Token"]


class PropfindTest(DavCase):

    def test_depth_0_is_207_with_the_live_properties(self) -> None:
        [(href, props)] = self.propfind("/hello.txt", "0")
        self.assertEqual(href, "/hello.txt")
        for name in ("resourcetype", "getcontentlength", "getlastmodified", "getetag",
                     "getcontenttype", "creationdate", "supportedlock", "lockdiscovery"):
            self.assertEqual(props.get(name), "200", name)

    def test_depth_1_lists_the_members_in_the_listings_order(self) -> None:
        os.mkdir(os.path.join(self.root, "dir", "sub"))
        self.write("dir/a b.txt", b"x")
        self.write("dir/B.txt", b"x")
        hrefs = [href for href, _ in self.propfind("/dir/")]
        self.assertEqual(hrefs, ["/dir/", "/dir/sub/", "/dir/a%20b.txt", "/dir/B.txt"])

    def test_a_folder_without_its_slash_is_answered_too(self) -> None:
        [(href, props)] = self.propfind("/dir", "0")
        self.assertEqual(href, "/dir/")

    def test_etag_is_the_one_get_gives(self) -> None:
        get = self.request("GET", "/hello.txt", length=0)
        body = b"".join(self.dav("PROPFIND", "/hello.txt", b"", ("Depth", "0")).body)
        self.assertIn(dict(get.headers)["ETag"].encode(), body)
        get.release()

    def test_a_time_in_the_future_is_the_present_as_for_get(self) -> None:
        ahead = time.time() + 86_400
        os.utime(os.path.join(self.root, "hello.txt"), (ahead, ahead))
        get = self.request("HEAD", "/hello.txt", length=0)
        get.release()
        body = b"".join(self.dav("PROPFIND", "/hello.txt", b"", ("Depth", "0")).body)
        found = ElementTree.fromstring(body).find(".//{DAV:}getlastmodified").text
        self.assertEqual(found, dict(get.headers)["Last-Modified"])
        self.assertLessEqual(parse_http_date(found), time.time())

    def test_propname_and_unknown_properties(self) -> None:
        [(_, props)] = self.propfind("/hello.txt", "0", PROPNAME)
        self.assertEqual(props["getetag"], "200")
        body = (b'<D:propfind xmlns:D="DAV:" xmlns:z="urn:z"><D:prop><D:getetag/><z:colour/>'
                b'</D:prop></D:propfind>')
        [(_, props)] = self.propfind("/hello.txt", "0", body)
        self.assertEqual(props, {"getetag": "200", "colour": "404"})

    def test_depth_infinity_and_no_depth_are_403(self) -> None:
        for headers in ([("Depth", "infinity")], []):
            with self.subTest(headers=headers):
                self.refusal(403, "PROPFIND", "/", headers=headers)
        self.refusal(400, "PROPFIND", "/", headers=[("Depth", "2")])

    def test_missing_is_404(self) -> None:
        self.refusal(404, "PROPFIND", "/nothing", headers=[("Depth", "0")])

    def test_read_mode_serves_propfind_and_refuses_writes_with_405(self) -> None:
        self.assertEqual(len(self.propfind("/", "1", webdav="read")), 3)
        for method in ("MKCOL", "DELETE", "LOCK", "PROPPATCH", "COPY", "MOVE", "UNLOCK"):
            with self.subTest(method=method):
                self.refusal(405, method, "/dir/new", webdav="read", upload=False)

    def test_without_webdav_uploads_bring_the_listings_file_management(self) -> None:
        self.assertEqual(self.dav("MKCOL", "/dir/made", webdav="no").status, 201)
        self.assertEqual(self.dav("DELETE", "/dir/made", webdav="no").status, 204)
        self.refusal(405, "DELETE", "/hello.txt", webdav="no", allow_delete=False)
        for method in ("PROPFIND", "LOCK", "COPY", "MOVE"):
            with self.subTest(method=method):
                self.refusal(501, method, "/hello.txt", webdav="no", allow_rename=False,
                             headers=[("Destination", "/x.txt")])
        self.assertNotIn("DAV", dict(self.request("OPTIONS", "/", length=0,
                                                  webdav="no").headers))

    def test_webdav_off_is_501(self) -> None:
        self.refusal(501, "PROPFIND", "/", headers=[("Depth", "0")], webdav="no")

    def test_options_names_the_dav_classes(self) -> None:
        headers = dict(self.request("OPTIONS", "/", length=0).headers)
        self.assertEqual(headers["DAV"], "1, 2")
        self.assertIn("PROPFIND", headers["Allow"])
        self.assertEqual(dict(self.request("OPTIONS", "/", length=0, webdav="read")
                              .headers)["DAV"], "1")


class PropfindSecurityTest(DavCase):
    """PROPFIND shows exactly what GET serves."""

    def test_propfind_lists_no_dotfiles_or_upload_temporary_files(self) -> None:
        self.write("dir/.secret", b"x")
        self.write("dir/.nex-upload-0123456789abcdef", b"half")
        self.assertEqual([href for href, _ in self.propfind("/dir/")], ["/dir/"])
        self.refusal(404, "PROPFIND", "/dir/.secret", headers=[("Depth", "0")])

    def test_propfind_does_not_follow_a_link_out_of_the_root(self) -> None:
        os.symlink(self.outside, os.path.join(self.root, "dir", "out"))
        self.assertEqual([href for href, _ in self.propfind("/dir/")], ["/dir/"])
        self.refusal(404, "PROPFIND", "/dir/out/", headers=[("Depth", "1")])

    def test_propfind_shows_no_protected_folder(self) -> None:
        os.mkdir(os.path.join(self.root, "dir", "private"))
        self.protect("/dir/private/")
        self.assertEqual([href for href, _ in self.propfind("/dir/")], ["/dir/"])
        self.refusal(401, "PROPFIND", "/dir/private/", headers=[("Depth", "0")])
        response = self.dav("PROPFIND", "/dir/", b"", ("Depth", "1"), ALICE)
        self.assertEqual([href for href, _ in multistatus(response)],
                         ["/dir/", "/dir/private/"])

    def test_propfind_hides_a_link_into_a_protected_folder(self) -> None:
        os.mkdir(os.path.join(self.root, "private"))
        self.write("private/secret.txt", b"s")
        os.symlink("../private", os.path.join(self.root, "dir", "door"))
        os.symlink("../private/secret.txt", os.path.join(self.root, "dir", "key.txt"))
        self.protect("/private/")
        self.assertEqual([href for href, _ in self.propfind("/dir/")], ["/dir/"])
        for target in ("/dir/door/", "/dir/key.txt", "/dir/door/none.txt"):
            with self.subTest(target=target):
                self.refusal(401, "PROPFIND", target, headers=[("Depth", "0")])
        response = self.dav("PROPFIND", "/dir/", b"", ("Depth", "1"), ALICE)
        self.assertEqual([href for href, _ in multistatus(response)],
                         ["/dir/", "/dir/door/", "/dir/key.txt"])

    def test_propfind_depth_1_needs_listings(self) -> None:
        self.refusal(403, "PROPFIND", "/dir/", headers=[("Depth", "1")], listing=False)


class XmlSafetyTest(DavCase):

    def test_billion_laughs_is_refused(self) -> None:
        bomb = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
                b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
                b'<D:propfind xmlns:D="DAV:"><D:prop>&b;</D:prop></D:propfind>')
        self.refusal(400, "PROPFIND", "/", bomb, headers=[("Depth", "0")])

    def test_external_entities_are_refused(self) -> None:
        xxe = (b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file://'
               + os.path.join(self.outside, "secret.txt").encode() + b'">]>'
               b'<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
               b'<D:locktype><D:write/></D:locktype><D:owner>&x;</D:owner></D:lockinfo>')
        self.refusal(400, "LOCK", "/hello.txt", xxe)
        with self.assertRaises(HTTPError):
            parse_xml(b'<!DOCTYPE a SYSTEM "http://example.invalid/a.dtd"><a/>')

    def test_deep_and_large_bodies_are_refused(self) -> None:
        deep = b"<a>" * (MAX_DEPTH + 1) + b"</a>" * (MAX_DEPTH + 1)
        self.refusal(400, "PROPFIND", "/", deep, headers=[("Depth", "0")])
        error = self.refusal(413, "PROPPATCH", "/hello.txt", b" " * (1024 * 1024 + 1))
        self.assertIn("(max_request_body = 1M)", error.detail)
        self.config = dataclasses.replace(self.config, max_request_body=4 * 1024 * 1024)
        error = self.refusal(413, "PROPPATCH", "/hello.txt", b" " * (1024 * 1024 + 1))
        self.assertEqual(error.detail, "A WebDAV request's XML body is at most 1024 KiB.")

    def test_malformed_xml_is_400(self) -> None:
        self.refusal(400, "PROPFIND", "/", b"<D:propfind xmlns:D='DAV:'>", headers=[
            ("Depth", "0")])


class WriteMethodsTest(DavCase):

    def test_mkcol_201_405_409_415(self) -> None:
        self.assertEqual(self.dav("MKCOL", "/dir/new").status, 201)
        self.assertTrue(os.path.isdir(os.path.join(self.root, "dir", "new")))
        self.refusal(405, "MKCOL", "/dir/new")
        self.refusal(409, "MKCOL", "/missing/new")
        self.refusal(415, "MKCOL", "/dir/other", b"<x/>")

    def test_mkcol_of_a_hidden_name_is_404(self) -> None:
        self.refusal(404, "MKCOL", "/dir/.hidden")
        self.refusal(404, "MKCOL", "/dir/.nex-upload-x")

    def test_copy_201_then_204_with_overwrite_and_412_without(self) -> None:
        destination = ("Destination", "http://localhost/dir/copy.txt")
        self.assertEqual(self.dav("COPY", "/hello.txt", b"", destination).status, 201)
        self.assertEqual(self.read("dir/copy.txt"), b"hello, world\n")
        self.refusal(412, "COPY", "/hello.txt", headers=[destination, ("Overwrite", "F")])
        self.refusal(409, "COPY", "/hello.txt", headers=[destination])  # upload_overwrite off
        response = self.dav("COPY", "/hello.txt", b"", destination, upload_overwrite=True)
        self.assertEqual(response.status, 204)

    def test_copy_of_a_folder_copies_what_get_serves(self) -> None:
        os.makedirs(os.path.join(self.root, "dir", "tree", "deeper"))
        self.write("dir/tree/deeper/f.txt", b"f")
        self.write("dir/tree/.hidden", b"h")
        os.symlink(self.outside, os.path.join(self.root, "dir", "tree", "out"))
        self.assertEqual(self.dav("COPY", "/dir/tree/", b"",
                                  ("Destination", "/tree2")).status, 201)
        self.assertEqual(sorted(os.listdir(os.path.join(self.root, "tree2"))), ["deeper"])
        self.assertEqual(self.read("tree2/deeper/f.txt"), b"f")

    def test_copy_depth_0_makes_the_folder_alone(self) -> None:
        self.write("dir/f.txt", b"f")
        self.dav("COPY", "/dir/", b"", ("Destination", "/empty"), ("Depth", "0"))
        self.assertEqual(os.listdir(os.path.join(self.root, "empty")), [])

    def test_copy_into_itself_is_403_and_to_a_missing_folder_409(self) -> None:
        self.refusal(403, "COPY", "/dir/", headers=[("Destination", "/dir/inner")])
        self.refusal(409, "COPY", "/hello.txt", headers=[("Destination", "/no/where.txt")])

    def test_copy_to_another_server_is_502(self) -> None:
        self.refusal(502, "COPY", "/hello.txt",
                     headers=[("Destination", "http://elsewhere.example/x.txt")])

    def test_a_folder_copy_names_the_member_that_passed_max_upload_size_in_a_207(self) -> None:
        # RFC 4918 §9.8.3: a member that fails is named with its error.  The size bound
        # used up, later members would fail too: the copy ends there, keeping what it made.
        os.makedirs(os.path.join(self.root, "dir", "tree"))
        self.write("dir/tree/a.txt", b"a")
        self.write("dir/tree/big.bin", b"x" * 10)
        self.write("dir/tree/c.txt", b"c")
        response = self.dav("COPY", "/dir/tree/", b"", ("Destination", "/copy"),
                            max_upload_size=4)
        self.assertEqual(multistatus(response), [("/copy/big.bin", {"status": "413"})])
        self.assertEqual(self.names("copy"), ["a.txt"])
        self.assertNoTemporaryFiles()

    def test_below_a_member_folder_that_fails_nothing_is_copied_and_the_rest_is(self) -> None:
        # RFC 4918 §9.8.3: the server must skip the subtree of a collection it could not
        # copy, and should go on with the rest.
        self.assertEqual(self.copy_with_a_folder_failing(errno.EACCES),
                         [("/copy/full/", {"status": "403"})])
        self.assertEqual(self.names("copy"), ["kept.txt"])

    def test_a_full_disk_ends_a_folder_copy_at_the_member_it_stopped(self) -> None:
        self.assertEqual(self.copy_with_a_folder_failing(errno.ENOSPC),
                         [("/copy/full/", {"status": "507"})])
        self.assertEqual(self.names("copy"), [])

    def test_a_member_folder_that_cannot_be_read_leaves_no_empty_copy(self) -> None:
        os.makedirs(os.path.join(self.root, "dir", "tree", "closed"))
        self.write("dir/tree/closed/f.txt", b"f")
        self.write("dir/tree/kept.txt", b"k")
        listed = davwrite.members

        def closed_to_reading(folder, *args, **kwargs):  # type: ignore[no-untyped-def]
            if folder.segments[-1] == "closed":
                raise HTTPError(403, "Access to the requested resource is denied.")
            return listed(folder, *args, **kwargs)

        with mock.patch.object(davwrite, "members", closed_to_reading):
            response = self.dav("COPY", "/dir/tree/", b"", ("Destination", "/copy"))
        self.assertEqual(multistatus(response), [("/copy/closed/", {"status": "403"})])
        self.assertEqual(self.names("copy"), ["kept.txt"])  # no empty "closed" named as failed

    def test_a_source_that_cannot_be_read_leaves_the_destination_as_it_was(self) -> None:
        os.makedirs(os.path.join(self.root, "src"))
        os.makedirs(os.path.join(self.root, "dst", "old"))
        self.write("dst/old/keep.txt", b"k")
        listed = davwrite.members

        def closed_to_reading(folder, *args, **kwargs):  # type: ignore[no-untyped-def]
            if folder.segments == ["src"]:
                raise HTTPError(403, "Access to the requested resource is denied.")
            return listed(folder, *args, **kwargs)

        with mock.patch.object(davwrite, "members", closed_to_reading):
            self.refusal(403, "COPY", "/src/", headers=[("Destination", "/dst")],
                         upload_overwrite=True)
        self.assertEqual(self.read("dst/old/keep.txt"), b"k")

    def test_a_folder_holding_the_source_is_never_replaced_by_it(self) -> None:
        # Replacing /a would delete /a/b, the very source, on the way.
        os.makedirs(os.path.join(self.root, "a", "b"))
        self.write("a/b/f.txt", b"f")
        for method in ("COPY", "MOVE"):
            for destination in ("/a", "/a/"):
                with self.subTest(method=method, destination=destination):
                    self.refusal(403, method, "/a/b/", headers=[("Destination", destination)],
                                 upload_overwrite=True)
                    self.assertEqual(self.read("a/b/f.txt"), b"f")

    def test_nothing_goes_into_the_source_through_a_link(self) -> None:
        # /lnA/b is /a/b: replacing it, or copying into it, would eat the source.
        os.makedirs(os.path.join(self.root, "a", "b", "c"))
        self.write("a/b/c/f.txt", b"f")
        self.write("a/x.txt", b"x")
        os.symlink("a", os.path.join(self.root, "lnA"))
        for method in ("COPY", "MOVE"):
            for destination in ("/lnA/b", "/lnA/new"):
                with self.subTest(method=method, destination=destination):
                    self.refusal(403, method, "/a/", headers=[("Destination", destination)],
                                 upload_overwrite=True)
                    self.assertEqual(self.read("a/b/c/f.txt"), b"f")
                    self.assertEqual(sorted(os.listdir(os.path.join(self.root, "a"))),
                                     ["b", "x.txt"])

    def test_a_link_at_the_destination_is_replaced_not_what_it_leads_to(self) -> None:
        os.makedirs(os.path.join(self.root, "a", "b"))
        self.write("a/b/f.txt", b"f")
        os.symlink("a", os.path.join(self.root, "link"))
        response = self.dav("COPY", "/a/b/", b"", ("Destination", "/link"),
                            upload_overwrite=True)
        self.assertEqual(response.status, 204)
        self.assertFalse(os.path.islink(os.path.join(self.root, "link")))
        self.assertEqual(self.read("link/f.txt"), b"f")
        self.assertEqual(self.read("a/b/f.txt"), b"f")

    def test_a_folder_replaces_a_file_with_overwrite(self) -> None:
        os.makedirs(os.path.join(self.root, "src"))
        self.write("src/f.txt", b"f")
        for method in ("COPY", "MOVE"):
            with self.subTest(method=method):
                self.write("dst", b"old file")
                response = self.dav(method, "/src/", b"", ("Destination", "/dst"),
                                    upload_overwrite=True)
                self.assertEqual(response.status, 204)
                self.assertEqual(self.read("dst/f.txt"), b"f")
                shutil.rmtree(os.path.join(self.root, "dst"))

    def test_a_link_moves_as_a_link(self) -> None:
        # The link itself is renamed, wherever it leads: into the folder it leads to, too.
        os.makedirs(os.path.join(self.root, "docs"))
        self.write("docs/f.txt", b"f")
        os.symlink("docs", os.path.join(self.root, "short"))
        self.assertEqual(self.dav("MOVE", "/short", b"", ("Destination", "/docs/short")).status,
                         201)
        self.assertTrue(os.path.islink(os.path.join(self.root, "docs", "short")))
        self.assertEqual(self.read("docs/f.txt"), b"f")

    def test_a_folder_holding_a_source_link_is_not_replaced_by_it(self) -> None:
        # /aliasD/l is the link d/l: replacing /d would delete it (and a COPY's source).
        os.makedirs(os.path.join(self.root, "d", "keep"))
        os.makedirs(os.path.join(self.root, "elsewhere"))
        self.write("d/keep/data.txt", b"d")
        self.write("elsewhere/file.txt", b"e")
        os.symlink("../elsewhere/file.txt", os.path.join(self.root, "d", "l"))
        os.symlink("d", os.path.join(self.root, "aliasD"))
        for method in ("COPY", "MOVE"):
            with self.subTest(method=method):
                self.refusal(403, method, "/aliasD/l", headers=[("Destination", "/d")],
                             upload_overwrite=True)
                self.assertEqual(self.read("d/keep/data.txt"), b"d")
                self.assertTrue(os.path.islink(os.path.join(self.root, "d", "l")))

    def test_a_link_to_a_folder_goes_alone(self) -> None:
        # What the link leads to (here a folder holding a dotfile) is not walked: it stays.
        os.makedirs(os.path.join(self.root, "hid"))
        os.makedirs(os.path.join(self.root, "src"))
        self.write("hid/.dot", b"h")
        for method, headers in (("COPY", [("Destination", "/lnH")]), ("DELETE", [])):
            with self.subTest(method=method):
                os.symlink("hid", os.path.join(self.root, "lnH"))
                target = "/lnH" if method == "DELETE" else "/src/"
                response = self.dav(method, target, b"", *headers, upload_overwrite=True)
                self.assertEqual(response.status, 204)
                self.assertFalse(os.path.islink(os.path.join(self.root, "lnH")))
                self.assertEqual(self.read("hid/.dot"), b"h")
                if method == "COPY":
                    os.rmdir(os.path.join(self.root, "lnH"))

    def test_a_file_too_large_to_copy_leaves_the_folder_it_would_replace(self) -> None:
        os.makedirs(os.path.join(self.root, "dst", "keep"))
        self.write("dst/keep/data.txt", b"d")
        self.refusal(413, "COPY", "/hello.txt", headers=[("Destination", "/dst")],
                     max_upload_size=4, upload_overwrite=True)
        self.assertEqual(self.read("dst/keep/data.txt"), b"d")

    @unittest.skipUnless(os.path.isdir("/dev/shm"), "no /dev/shm to stand for another disk")
    def test_a_move_to_another_file_system_is_refused_before_anything_goes(self) -> None:
        other = tempfile.mkdtemp(dir="/dev/shm")
        self.addCleanup(shutil.rmtree, other, True)
        if os.stat(other).st_dev == os.stat(self.root).st_dev:
            self.skipTest("/dev/shm is on the same file system here")
        os.makedirs(os.path.join(other, "dst", "keep"))
        os.symlink(other, os.path.join(self.root, "ext"))
        os.makedirs(os.path.join(self.root, "src"))
        for source in ("/src/", "/hello.txt"):
            with self.subTest(source=source):
                error = self.refusal(403, "MOVE", source, headers=[("Destination", "/ext/dst")],
                                     upload_overwrite=True, symlinks="always")
                self.assertIn("one file system", error.detail)
                self.assertTrue(os.path.isdir(os.path.join(other, "dst", "keep")))

    def test_a_folder_made_meanwhile_is_named_409_in_the_207(self) -> None:
        os.makedirs(os.path.join(self.root, "dir", "tree", "sub"))
        self.write("dir/tree/kept.txt", b"k")
        make_folder = os.mkdir

        def made_meanwhile(name, *args, **kwargs):  # type: ignore[no-untyped-def]
            if name == "sub":  # another request's MKCOL got there first
                make_folder(name, *args, **kwargs)
            return make_folder(name, *args, **kwargs)

        with mock.patch.object(os, "mkdir", made_meanwhile):
            response = self.dav("COPY", "/dir/tree/", b"", ("Destination", "/copy"))
        self.assertEqual(multistatus(response), [("/copy/sub/", {"status": "409"})])
        self.assertEqual(self.names("copy"), ["kept.txt", "sub"])

    def copy_with_a_folder_failing(self, code: int) -> List[Tuple[str, Dict[str, str]]]:
        """COPY ``/dir/tree/`` (``full/`` with files below it, then ``kept.txt``) to
        ``/copy``, making the folder ``full`` fail with ``code``; the 207's responses."""
        os.makedirs(os.path.join(self.root, "dir", "tree", "full", "deeper"))
        self.write("dir/tree/full/deeper/f.txt", b"f")
        self.write("dir/tree/full/g.txt", b"g")
        self.write("dir/tree/kept.txt", b"k")
        make_folder = os.mkdir

        def failing_for_full(name, *args, **kwargs):  # type: ignore[no-untyped-def]
            if name == "full":
                raise OSError(code, os.strerror(code))
            return make_folder(name, *args, **kwargs)

        with mock.patch.object(os, "mkdir", failing_for_full):
            return multistatus(self.dav("COPY", "/dir/tree/", b"", ("Destination", "/copy")))

    def test_copy_larger_than_max_upload_size_is_413(self) -> None:
        error = self.refusal(413, "COPY", "/hello.txt", headers=[("Destination", "/big.txt")],
                             max_upload_size=4)
        self.assertIn("(max_upload_size = 4)", error.detail)
        self.assertNoTemporaryFiles()

    def test_destination_cannot_climb_out_of_the_root(self) -> None:
        self.dav("COPY", "/hello.txt", b"", ("Destination", "/../../escaped.txt"))
        self.assertFalse(os.path.exists(os.path.join(self.base, "escaped.txt")))
        self.assertEqual(self.read("escaped.txt"), b"hello, world\n")

    def test_a_destination_with_a_blank_or_control_character_is_400(self) -> None:
        # urlsplit drops a tab: "/a\tb.txt" would have named /ab.txt.
        for destination in ("/a\tb.txt", "/a b.txt", "http://localhost/a\tb.txt"):
            with self.subTest(destination=destination):
                self.refusal(400, "COPY", "/hello.txt", headers=[("Destination", destination)])
        self.assertFalse(os.path.exists(os.path.join(self.root, "ab.txt")))

    def test_move_201_and_204(self) -> None:
        self.write("dir/a.txt", b"a")
        self.assertEqual(self.dav("MOVE", "/dir/a.txt", b"", ("Destination", "/b.txt")).status,
                         201)
        self.assertFalse(os.path.exists(os.path.join(self.root, "dir", "a.txt")))
        self.write("dir/c.txt", b"c")
        self.assertEqual(self.dav("MOVE", "/dir/c.txt", b"", ("Destination", "/b.txt"),
                                  upload_overwrite=True).status, 204)
        self.assertEqual(self.read("b.txt"), b"c")

    def test_moving_a_folder_checks_every_entry_with_the_policy(self) -> None:
        os.makedirs(os.path.join(self.root, "dir", "m", "keep"))
        self.protect("/dir/m/keep/")
        self.refusal(403, "MOVE", "/dir/m/", headers=[("Destination", "/moved/")])
        self.assertTrue(os.path.isdir(os.path.join(self.root, "dir", "m", "keep")))

    def test_replacing_a_folder_needs_deleting_allowed(self) -> None:
        os.makedirs(os.path.join(self.root, "dir", "full"))
        self.write("dir/full/f.txt", b"f")
        self.refusal(403, "COPY", "/hello.txt", headers=[("Destination", "/dir/full")],
                     upload_overwrite=True, allow_delete=False)
        self.assertEqual(self.read("dir/full/f.txt"), b"f")
        self.assertEqual(self.dav("COPY", "/hello.txt", b"", ("Destination", "/dir/full"),
                                  upload_overwrite=True).status, 204)
        self.assertEqual(self.read("dir/full"), b"hello, world\n")

    def test_move_of_a_folder(self) -> None:
        os.makedirs(os.path.join(self.root, "dir", "m"))
        self.write("dir/m/f.txt", b"f")
        self.dav("MOVE", "/dir/m/", b"", ("Destination", "/moved/"))
        self.assertEqual(self.read("moved/f.txt"), b"f")

    def test_move_and_delete_are_off_unless_allowed(self) -> None:
        self.refusal(403, "MOVE", "/hello.txt", headers=[("Destination", "/x.txt")],
                     allow_rename=False)
        self.refusal(403, "DELETE", "/hello.txt", allow_delete=False)
        self.assertEqual(self.read("hello.txt"), b"hello, world\n")

    def test_delete_204_and_404(self) -> None:
        self.assertEqual(self.dav("DELETE", "/hello.txt").status, 204)
        self.refusal(404, "DELETE", "/hello.txt")

    def test_delete_of_a_folder_is_recursive(self) -> None:
        os.makedirs(os.path.join(self.root, "dir", "t", "u"))
        self.write("dir/t/u/f.txt", b"f")
        self.assertEqual(self.dav("DELETE", "/dir/t/").status, 204)
        self.assertFalse(os.path.exists(os.path.join(self.root, "dir", "t")))

    def test_removing_a_tree_never_follows_a_link_inside_it(self) -> None:
        # The removal walks by descriptor on every Python (rmtree takes dir_fd from 3.11).
        os.makedirs(os.path.join(self.root, "dir", "t", "u"))
        self.write("dir/t/u/f.txt", b"f")
        os.symlink(self.outside, os.path.join(self.root, "dir", "t", "u", "out"))
        folder = os.open(os.path.join(self.root, "dir"), os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, folder)
        davnames.remove_entry(folder, "t")
        self.assertFalse(os.path.lexists(os.path.join(self.root, "dir", "t")))
        self.assertEqual(os.listdir(self.outside), ["secret.txt"])

    def test_delete_does_not_remove_what_a_client_cannot_see(self) -> None:
        os.makedirs(os.path.join(self.root, "dir", "t"))
        self.write("dir/t/.hidden", b"h")
        [(href, props)] = multistatus(self.dav("DELETE", "/dir/t/"))
        self.assertEqual((href, props), ("/dir/t/", {"status": "403"}))
        self.assertEqual(self.read("dir/t/.hidden"), b"h")

    def test_what_nex_left_in_a_folder_goes_with_it(self) -> None:
        # An upload left unfinished there by any client (its data kept for upload_expiry),
        # or a folder whose removal another program held up: counted as a client's hidden
        # files, either would keep the folder, and every one above it, from going.
        for method, headers in (("DELETE", ()), ("MOVE", (("Destination", "/moved/"),))):
            with self.subTest(method=method):
                os.makedirs(os.path.join(self.root, "dir", "t", "u", ".nex-upload-" + "0" * 32
                                         + ".gone", "v"))
                self.write("dir/t/u/.nex-upload-" + "1" * 32, b"half")
                self.write("dir/t/u/f.txt", b"f")
                self.assertIn(self.dav(method, "/dir/t/", b"", *headers).status, (201, 204))
                self.assertFalse(os.path.lexists(os.path.join(self.root, "dir", "t")))
                shutil.rmtree(os.path.join(self.root, "moved"), ignore_errors=True)

    def test_a_link_with_the_name_of_an_upload_is_not_nex_own(self) -> None:
        os.makedirs(os.path.join(self.root, "dir", "t"))
        os.symlink(self.outside, os.path.join(self.root, "dir", "t", ".nex-upload-" + "1" * 32))
        [(href, props)] = multistatus(self.dav("DELETE", "/dir/t/"))
        self.assertEqual((href, props), ("/dir/t/", {"status": "403"}))

    def test_delete_checks_every_entry_with_the_policy(self) -> None:
        os.makedirs(os.path.join(self.root, "dir", "t", "keep"))
        self.write("dir/t/keep/f.txt", b"f")
        self.write("dir/t/other.txt", b"o")
        self.protect("/dir/t/keep/")
        self.assertEqual(multistatus(self.dav("DELETE", "/dir/t/")),
                         [("/dir/t/keep/", {"status": "403"})])
        self.assertEqual(self.read("dir/t/other.txt"), b"o")

    def test_delete_of_a_link_removes_the_link_alone(self) -> None:
        os.makedirs(os.path.join(self.root, "dir", "target"))
        self.write("dir/target/f.txt", b"f")
        os.symlink("target", os.path.join(self.root, "dir", "link"))
        self.dav("DELETE", "/dir/link")
        self.assertEqual(self.read("dir/target/f.txt"), b"f")
        self.assertFalse(os.path.lexists(os.path.join(self.root, "dir", "link")))

    def test_the_root_cannot_be_deleted_or_moved(self) -> None:
        self.refusal(403, "DELETE", "/")
        self.refusal(403, "MOVE", "/", headers=[("Destination", "/x/")])

    def test_a_delete_of_the_root_walks_nothing(self) -> None:
        # Its answer is 403 whatever the root holds: walking it first would cost a request
        # of a few bytes a look at every entry, and answer 207 for a hidden one.
        self.write("dir/.hidden", b"x")
        with mock.patch.object(davwrite, "_refused_below",
                               side_effect=AssertionError("walked")):
            self.refusal(403, "DELETE", "/")

    def test_writes_from_another_site_are_403(self) -> None:
        for refused in (("Origin", "http://evil.example"), ("Sec-Fetch-Site", "cross-site"),
                        ("Referer", "http://evil.example/page.html")):
            with self.subTest(refused=refused):
                self.refusal(403, "DELETE", "/hello.txt", headers=[refused])
                self.refusal(403, "MKCOL", "/dir/x", headers=[refused])
        self.assertEqual(self.read("hello.txt"), b"hello, world\n")
        self.assertEqual(self.names("dir"), [])

    def test_dns_rebinding_host_cannot_write_over_webdav(self) -> None:
        for method, target, headers in (
                ("MKCOL", "/dir/x", []), ("DELETE", "/hello.txt", []),
                ("PROPPATCH", "/hello.txt", []), ("LOCK", "/hello.txt", []),
                ("UNLOCK", "/hello.txt", [("Lock-Token", "<urn:uuid:x>")]),
                ("COPY", "/hello.txt", [("Destination", "/dir/x.txt")]),
                ("MOVE", "/hello.txt", [("Destination", "/dir/x.txt")])):
            with self.subTest(method=method):
                self.refusal(403, method, target, headers=headers, host="rebound.example")
        self.assertEqual(self.read("hello.txt"), b"hello, world\n")
        self.assertEqual(self.names("dir"), [])
        self.assertEqual(len(self.propfind("/", host="rebound.example")), 3)

    def test_each_request_decodes_its_path_once(self) -> None:
        os.mkdir(os.path.join(self.root, "dir", "a b"))
        for method, target, headers in (
                ("PROPFIND", "/dir/a%20b/", [("Depth", "1")]), ("MKCOL", "/dir/a%20b/c", []),
                ("COPY", "/hello.txt", [("Destination", "/dir/a%20b/h.txt")]),
                ("DELETE", "/dir/a%20b/h.txt", [])):
            with self.subTest(method=method), \
                    mock.patch("nex.site.routing.split_path", wraps=split_path) as decode, \
                    mock.patch("nex.files.davwrite.split_path", wraps=split_path) as other:
                self.assertLess(self.dav(method, target, b"", *headers).status, 300)
                decode.assert_called_once_with(target)
                self.assertNotIn(mock.call(target), other.call_args_list)

    def test_writes_need_uploads_on(self) -> None:
        for method, target, headers in (
                ("MKCOL", "/dir/x", []), ("DELETE", "/hello.txt", []),
                ("PROPPATCH", "/hello.txt", []), ("LOCK", "/dir/x.txt", []),
                ("COPY", "/hello.txt", [("Destination", "/dir/x.txt")]),
                ("MOVE", "/hello.txt", [("Destination", "/dir/x.txt")])):
            with self.subTest(method=method):
                self.refusal(403, method, target, LOCKINFO if method == "LOCK" else b"",
                             headers=headers, upload=False)
        self.assertEqual(self.read("hello.txt"), b"hello, world\n")
        self.assertEqual(self.names("dir"), [])

    def test_a_link_into_a_protected_folder_takes_no_anonymous_write(self) -> None:
        os.mkdir(os.path.join(self.root, "private"))
        self.write("private/secret.txt", b"s")
        os.symlink("../private", os.path.join(self.root, "dir", "door"))
        self.protect("/private/")
        for method, target, headers in (
                ("MKCOL", "/dir/door/new", []), ("DELETE", "/dir/door/secret.txt", []),
                # Missing or present, a name behind the link says nothing without the login.
                ("MKCOL", "/dir/door/secret.txt", []), ("MKCOL", "/dir/door/none/new", []),
                ("DELETE", "/dir/door/none.txt", []), ("PROPPATCH", "/dir/door/none.txt", []),
                ("COPY", "/dir/door/none.txt", [("Destination", "/leak.txt")]),
                ("COPY", "/hello.txt", [("Destination", "/dir/door/none/x.txt")]),
                ("COPY", "/hello.txt", [("Destination", "/dir/door/copy.txt")]),
                ("MOVE", "/dir/door/secret.txt", [("Destination", "/moved.txt")]),
                ("COPY", "/dir/door/secret.txt", [("Destination", "/leak.txt")])):
            with self.subTest(method=method, target=target):
                self.refusal(401, method, target, headers=headers)
        self.assertEqual(self.names("private"), ["secret.txt"])
        self.assertFalse(os.path.exists(os.path.join(self.root, "leak.txt")))

    def test_proppatch_is_207_refusing_each_property(self) -> None:
        body = (b'<D:propertyupdate xmlns:D="DAV:" xmlns:z="urn:z"><D:set><D:prop>'
                b'<z:colour>red</z:colour></D:prop></D:set><D:remove><D:prop><z:size/>'
                b'</D:prop></D:remove></D:propertyupdate>')
        self.assertEqual(multistatus(self.dav("PROPPATCH", "/hello.txt", body, XML)),
                         [("/hello.txt", {"colour": "403", "size": "403"})])
        self.refusal(400, "PROPPATCH", "/hello.txt", b"<a/>")
        self.refusal(404, "PROPPATCH", "/none.txt", body)


def mount_or_skip(test: unittest.TestCase, arguments: List[str], point: str, root: str) -> None:
    """``mount`` with ``arguments`` at ``point``, unmounted with all else below ``root`` when
    ``test`` ends; the test is skipped where mounting is not allowed."""
    mounted = subprocess.run(["mount", *arguments, point], capture_output=True, text=True)
    if mounted.returncode:
        test.skipTest(f"cannot mount here: {mounted.stderr.strip()}")
    test.addCleanup(unmount_below, root)


def unmount_below(root: str) -> None:
    """Unmount everything mounted below ``root``, wherever a failing removal left it."""
    with open("/proc/self/mountinfo", "rb") as table:
        points = [os.fsdecode(line.split(b" ")[4]) for line in table.read().split(b"\n")
                  if line]
    for point in sorted(points, key=len, reverse=True):
        if point.startswith(root + "/"):
            subprocess.run(["umount", "-l", point])


class RemovalsStopAtMounts:
    """What every kind of mount inside the tree gets: a DELETE or a replacing COPY of the
    folder ``/dir/t/`` above it, at ``mount_href``, is refused whole.  Mixed into a
    :class:`DavCase` whose ``assert_untouched`` checks the mount and what lies beside it."""

    mount_href = ""

    def test_delete_names_the_mount_point_and_removes_nothing(self) -> None:
        self.assertEqual(multistatus(self.dav("DELETE", "/dir/t/")),
                         [(self.mount_href, {"status": "403"})])
        self.assert_untouched()

    def test_a_replacing_copy_is_refused(self) -> None:
        os.makedirs(os.path.join(self.root, "source"))
        self.write("source/a.txt", b"a")
        self.refusal(403, "COPY", "/source/", headers=[("Destination", "/dir/t/")],
                     upload_overwrite=True)
        self.assert_untouched()
        self.assertEqual(sorted(os.listdir(os.path.join(self.root, "dir"))), ["t"])


class MountedInsideTest(RemovalsStopAtMounts, DavCase):
    """A file system mounted inside the tree is never emptied by a DELETE or a replacing
    COPY of a folder above it, as ``rm --one-file-system`` would not; a MOVE, a rename,
    carries it along."""

    mount_href = "/dir/t/usb/"

    def setUp(self) -> None:
        super().setUp()
        self.mount_point = os.path.join(self.root, "dir", "t", "usb")
        os.makedirs(self.mount_point)
        mount_or_skip(self, self.mount_arguments(), self.mount_point, self.root)
        self.write("dir/t/usb/photo.jpg", b"the only copy")
        self.write("dir/t/note.txt", b"n")

    def mount_arguments(self) -> List[str]:
        """What ``mount`` is given before the mount point: a small tmpfs."""
        return ["-t", "tmpfs", "-o", "size=1m", "nex-test"]

    def assert_untouched(self) -> None:
        self.assertEqual(self.read("dir/t/usb/photo.jpg"), b"the only copy")
        self.assertEqual(self.read("dir/t/note.txt"), b"n")

    def test_a_move_carries_the_mount(self) -> None:
        self.assertEqual(self.dav("MOVE", "/dir/t/", b"", ("Destination", "/moved/")).status,
                         201)
        self.assertEqual(self.read("moved/usb/photo.jpg"), b"the only copy")

    def test_the_mount_point_itself_and_a_move_into_it_get_clear_answers(self) -> None:
        self.refusal(409, "DELETE", "/dir/t/usb/")
        self.refusal(409, "MOVE", "/dir/t/usb/", headers=[("Destination", "/elsewhere/")])
        self.refusal(403, "MOVE", "/dir/t/note.txt",
                     headers=[("Destination", "/dir/t/usb/note.txt")])
        self.assert_untouched()

    def test_the_removal_itself_stops_at_the_mount(self) -> None:
        # Whatever judged the tree before, the removal never goes into another file system:
        # it fails, and the mounted files stay.
        folder = os.open(os.path.join(self.root, "dir"), os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, folder)
        with self.assertRaises(HTTPError) as caught:
            davnames.remove_entry(folder, "t")
        self.assertEqual(caught.exception.status, 409)
        self.assertEqual(self.read("dir/t/usb/photo.jpg"), b"the only copy")


class MountOfTest(unittest.TestCase):
    """Where a folder lies, by descriptor and by path, without mounting anything."""

    def test_folders_of_one_mount_lie_on_it_and_a_link_is_not_followed(self) -> None:
        with tempfile.TemporaryDirectory() as root:
            os.mkdir(os.path.join(root, "inner"))
            os.symlink("inner", os.path.join(root, "link"))
            here = davnames.mount_at(root)
            self.assertEqual(davnames.mount_at(os.path.join(root, "inner")), here)
            self.assertEqual(here[0], os.stat(root).st_dev)
            if os.path.exists("/proc/self/fdinfo"):
                self.assertIsInstance(here[1], int)
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
            self.addCleanup(os.close, fd)
            self.assertEqual(davnames.mount_of(fd), here)
            with self.assertRaises(OSError):
                davnames.mount_at(os.path.join(root, "link"))
            self.assertEqual(davnames.mounts_below(["a"], root), frozenset())

    def test_mount_points_are_read_with_their_escapes_and_named_by_segments(self) -> None:
        table = (b"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
                 b"40 22 8:1 /x /srv/site/a\\040b/usb rw - ext4 /dev/sda1 rw\n"
                 b"41 22 0:5 / /srv/site/f.txt rw - tmpfs t rw\n"
                 b"42 22 0:6 / /srv/sitemap rw - tmpfs t rw\n"
                 b"43 22 8:1 /x\ry /srv/site/c\rr.txt rw - ext4 /dev/sda1 rw\n")
        with mock.patch("builtins.open", mock.mock_open(read_data=table)):
            self.assertEqual(davnames.mounts_below(["dir"], "/srv/site"),
                             {("dir", "a b", "usb"), ("dir", "f.txt"), ("dir", "c\rr.txt")})
        with mock.patch("builtins.open", side_effect=FileNotFoundError()):
            self.assertEqual(davnames.mounts_below(["dir"], "/srv/site"), frozenset())


class BindMountedInsideTest(MountedInsideTest):
    """The same for a folder of the same file system bind-mounted inside the tree (a way to
    share a folder from elsewhere, and what a container's volume is): its device is the
    tree's, its mount is not."""

    def mount_arguments(self) -> List[str]:
        self.shared = tempfile.mkdtemp(prefix="nex-shared-")
        self.addCleanup(shutil.rmtree, self.shared, ignore_errors=True)
        return ["--bind", self.shared]

    def test_the_mount_has_the_trees_device(self) -> None:
        # What makes this case its own: a device check alone lets the removal in.
        self.assertEqual(os.stat(self.mount_point).st_dev, os.stat(self.root).st_dev)
        self.assertNotEqual(davnames.mount_at(self.mount_point), davnames.mount_at(self.root))

    def test_a_move_out_of_the_mount_is_refused_not_a_fault(self) -> None:
        # rename(2) never crosses mounts, even of one file system (EXDEV).
        self.refusal(403, "MOVE", "/dir/t/usb/photo.jpg",
                     headers=[("Destination", "/photo.jpg")])
        self.assertEqual(self.read("dir/t/usb/photo.jpg"), b"the only copy")

    def test_a_mount_in_a_folder_left_to_remove_keeps_its_folder(self) -> None:
        # A folder taken from its name to be removed is Nex's own and goes unnamed with the
        # folder holding it, but not with a mount inside.
        hidden = os.path.join(self.root, "dir", "t", "sub", ".nex-upload-" + "ab" * 16 + ".gone")
        os.makedirs(os.path.join(hidden, "m"))
        self.bind(os.path.join(hidden, "m"))
        subprocess.run(["umount", self.mount_point], check=True)
        self.assertEqual(multistatus(self.dav("DELETE", "/dir/t/")),
                         [("/dir/t/sub/", {"status": "403"})])
        self.assertEqual(self.read("dir/t/note.txt"), b"n")
        self.assertEqual(os.listdir(self.shared), ["photo.jpg"])

    def test_a_folder_left_to_remove_that_is_a_mount_point_is_not_emptied(self) -> None:
        hidden = ".nex-upload-" + "cd" * 16 + ".gone"
        os.makedirs(os.path.join(self.root, "dir", hidden))
        self.bind(os.path.join(self.root, "dir", hidden))
        folder = os.open(os.path.join(self.root, "dir"), os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, folder)
        with self.assertRaises(HTTPError) as caught:
            davnames.remove_entry(folder, hidden)
        self.assertEqual(caught.exception.status, 409)
        self.assertEqual(os.listdir(self.shared), ["photo.jpg"])

    def bind(self, point: str) -> None:
        """Mount the shared folder a second time, at ``point``."""
        subprocess.run(["mount", "--bind", self.shared, point], check=True)


class FileMountedInsideTest(RemovalsStopAtMounts, DavCase):
    """A file bind-mounted inside the tree stays, with what lies beside it: a folder holding
    it is neither deleted nor replaced, and the file itself can be neither replaced nor
    moved."""

    mount_href = "/dir/t/m.txt"

    def setUp(self) -> None:
        super().setUp()
        shared = tempfile.mkdtemp(prefix="nex-shared-")
        self.addCleanup(shutil.rmtree, shared, ignore_errors=True)
        self.precious = os.path.join(shared, "precious.txt")
        with open(self.precious, "wb") as file:
            file.write(b"the only copy")
        os.makedirs(os.path.join(self.root, "dir", "t", "sub"))
        self.write("dir/t/sub/keep.txt", b"k")
        self.write("dir/t/m.txt", b"")
        mount_or_skip(self, ["--bind", self.precious],
                      os.path.join(self.root, "dir", "t", "m.txt"), self.root)

    def assert_untouched(self) -> None:
        self.assertEqual(self.read("dir/t/sub/keep.txt"), b"k")
        self.assertEqual(self.read("dir/t/m.txt"), b"the only copy")

    def test_a_carriage_return_in_a_mounts_path_hides_nothing(self) -> None:
        # The kernel's table leaves a CR in a path as it is: it must not end the line.
        self.write("dir/t/c\rr.txt", b"")
        mount_or_skip(self, ["--bind", self.precious],
                      os.path.join(self.root, "dir", "t", "c\rr.txt"), self.root)
        self.assertEqual(multistatus(self.dav("DELETE", "/dir/t/")),
                         [("/dir/t/c%0Dr.txt", {"status": "403"}),
                          ("/dir/t/m.txt", {"status": "403"})])
        self.assert_untouched()

    def test_the_file_itself_is_neither_replaced_nor_moved(self) -> None:
        self.refusal(409, "PUT", "/dir/t/m.txt", b"new", upload_overwrite=True)
        self.refusal(409, "MOVE", "/dir/t/m.txt", headers=[("Destination", "/dir/t/n.txt")])
        self.refusal(409, "DELETE", "/dir/t/m.txt")
        self.assert_untouched()


class FolderDepthTest(DavCase):
    """WebDAV makes folders at most MAX_FOLDER_DEPTH levels below the root, and walks no tree
    past that depth, however deep it was made by other means."""

    def chain(self, levels: int, top: str = "") -> Tuple[str, str]:
        """``levels`` folders named ``d`` in ``top`` (a folder below the root), made on
        disk; the deepest's URL path (ending in ``/``) and file system path."""
        start = os.path.join(self.root, top) if top else self.root
        deepest = make_chain(start, levels)
        self.addCleanup(remove_chain, start, deepest)
        return "/" + os.path.relpath(deepest, self.root) + "/", deepest

    def test_mkcol_makes_folders_down_to_the_cap_and_no_deeper(self) -> None:
        above, _ = self.chain(davwrite.MAX_FOLDER_DEPTH - 1)
        self.assertEqual(self.dav("MKCOL", above + "e").status, 201)
        error = self.refusal(403, "MKCOL", above + "e/f")
        self.assertIn(f"at most {davwrite.MAX_FOLDER_DEPTH} levels", error.detail)
        os.rmdir(os.path.join(self.root, above.strip("/"), "e"))

    def test_a_copy_goes_no_deeper_than_the_cap_and_names_where_it_stopped(self) -> None:
        os.makedirs(os.path.join(self.root, "src", "a", "b"))
        for name in ("src/f.txt", "src/a/g.txt", "src/a/b/h.txt"):
            self.write(name, b"x")
        above, deepest = self.chain(davwrite.MAX_FOLDER_DEPTH - 2)
        response = self.dav("COPY", "/src/", b"", ("Destination", above + "copy"))
        self.assertEqual(multistatus(response), [(above + "copy/a/b/", {"status": "403"})])
        self.assertEqual(self.names(os.path.join(deepest, "copy")), ["a", "f.txt"])
        self.assertEqual(self.names(os.path.join(deepest, "copy", "a")), ["g.txt"])
        self.dav("DELETE", above + "copy/")

    def test_nothing_is_replaced_by_a_folder_past_the_cap(self) -> None:
        os.makedirs(os.path.join(self.root, "src"))
        above, deepest = self.chain(davwrite.MAX_FOLDER_DEPTH)
        os.mkdir(os.path.join(deepest, "x"))
        kept = self.write(os.path.join(deepest, "x", "kept.txt"), b"k")
        for method in ("COPY", "MOVE"):
            with self.subTest(method=method):
                self.refusal(403, method, "/src/", headers=[("Destination", above + "x")],
                             upload_overwrite=True)
                self.assertTrue(os.path.exists(kept))
        os.unlink(kept)
        os.rmdir(os.path.join(deepest, "x"))

    def test_a_move_that_would_nest_past_the_cap_is_refused(self) -> None:
        os.makedirs(os.path.join(self.root, "src", "a"))
        above, deepest = self.chain(davwrite.MAX_FOLDER_DEPTH - 1)
        error = self.refusal(403, "MOVE", "/src/", headers=[("Destination", above + "src")])
        self.assertIn(f"deeper than {davwrite.MAX_FOLDER_DEPTH} levels", error.detail)
        self.assertTrue(os.path.isdir(os.path.join(self.root, "src", "a")))
        self.assertEqual(os.listdir(deepest), [])

    def test_a_file_in_the_deepest_folder_moves_with_its_tree(self) -> None:
        # The cap is on folders: a file may lie in a folder at the cap, and a MOVE that keeps
        # the tree as deep as it is goes through.
        deepest = make_chain(self.root, davwrite.MAX_FOLDER_DEPTH)  # moved, then removed
        self.write(os.path.join(deepest, "f.txt"), b"f")
        self.assertEqual(self.dav("MOVE", "/d/", b"", ("Destination", "/e")).status, 201)
        moved = os.path.join(self.root, "e", *["d"] * (davwrite.MAX_FOLDER_DEPTH - 1))
        self.assertEqual(self.read(os.path.join(moved, "f.txt")), b"f")
        os.unlink(os.path.join(moved, "f.txt"))
        self.addCleanup(remove_chain, self.root, moved)

    def test_a_tree_deeper_than_the_recursion_limit_is_refused_part_by_part(self) -> None:
        # A tree made on disk far past the cap: DELETE names the first folder past it, and
        # deletes nothing, instead of failing with a RecursionError.  So does COPY.
        _, deepest = self.chain(sys.getrecursionlimit() + 100, "dir")
        past = "/dir/" + "d/" * davwrite.MAX_FOLDER_DEPTH  # one segment more than the cap
        self.assertEqual(multistatus(self.dav("DELETE", "/dir/d/")), [(past, {"status": "403"})])
        self.assertTrue(os.path.isdir(deepest))
        response = self.dav("COPY", "/dir/d/", b"", ("Destination", "/copy"))
        self.assertEqual(multistatus(response),
                         [("/copy/" + "d/" * davwrite.MAX_FOLDER_DEPTH, {"status": "403"})])
        self.addCleanup(remove_chain, self.root, make_chain_path(self.root, "copy",
                                                                davwrite.MAX_FOLDER_DEPTH - 1))


def make_chain_path(root: str, top: str, levels: int) -> str:
    """The path of the deepest of ``levels`` folders named ``d`` in ``root/top``."""
    return os.path.join(root, top, *["d"] * levels)


class LockTest(DavCase):

    def test_a_locked_file_takes_no_put_or_delete_without_its_token(self) -> None:
        token = self.lock("/hello.txt")
        self.refusal(423, "PUT", "/hello.txt", b"new", upload_overwrite=True)
        self.refusal(423, "DELETE", "/hello.txt")
        self.refusal(423, "MOVE", "/hello.txt", headers=[("Destination", "/x.txt")])
        response = self.request("PUT", "/hello.txt", b"new", upload_overwrite=True,
                                headers=[("If", f"({token})")])
        self.assertEqual(response.status, 204)
        self.assertEqual(self.read("hello.txt"), b"new")

    def test_a_locked_file_takes_no_resumable_upload_without_its_token(self) -> None:
        token = self.lock("/hello.txt")
        self.refusal(423, "PUT", "/hello.txt", b"new", upload_overwrite=True,
                     headers=[("Upload-Complete", "?1")])
        response = self.request("PUT", "/hello.txt", b"new", upload_overwrite=True,
                                headers=[("Upload-Complete", "?1"), ("If", f"({token})")])
        self.assertEqual(response.status, 204)

    def test_a_locked_folder_takes_a_form_upload_without_its_token(self) -> None:
        token = self.lock("/dir/")
        form = form_body(file_part("form.txt", b"form"))
        self.refusal(423, "POST", "/dir/", form, headers=[FORM_TYPE])
        self.assertEqual(self.names("dir"), [])
        response = self.request("POST", "/dir/", form, headers=[FORM_TYPE, ("If", f"({token})")])
        self.assertEqual(response.status, 201)
        self.assertEqual(self.read("dir/form.txt"), b"form")

    def test_a_locked_file_is_replaced_by_a_form_upload_without_its_token(self) -> None:
        self.lock("/hello.txt")
        self.refusal(423, "POST", "/", form_body(file_part("hello.txt", b"new")),
                     headers=[FORM_TYPE], upload_overwrite=True)
        self.assertNotEqual(self.read("hello.txt"), b"new")
        self.assertFalse([name for name in self.names() if name.startswith(".nex-upload")])

    def test_a_lock_taken_while_a_put_body_comes_in_stops_the_put(self) -> None:
        # The locks are checked as the head comes, and again as the file takes its name.
        self.refusal(423, "PUT", "/hello.txt", b"new", pieces=[b"ne", b"w"],
                     before_piece=self.lock_at_second_piece("/hello.txt"),
                     upload_overwrite=True)
        self.assertEqual(self.read("hello.txt"), b"hello, world\n")
        self.assertNoTemporaryFiles()

    def test_a_lock_taken_while_a_resumable_upload_comes_in_stops_it(self) -> None:
        self.refusal(423, "PUT", "/hello.txt", b"new", pieces=[b"ne", b"w"],
                     before_piece=self.lock_at_second_piece("/hello.txt"),
                     headers=[("Upload-Complete", "?1")], upload_overwrite=True)
        self.assertEqual(self.read("hello.txt"), b"hello, world\n")

    def test_a_lock_taken_while_a_form_comes_in_stops_every_file_of_it(self) -> None:
        form = form_body(file_part("a.txt", b"a"), file_part("b.txt", b"b"))
        # Both parts have begun before the lock: only the form's closing boundary is left.
        self.refusal(423, "POST", "/dir/", form, pieces=[form[:-8], form[-8:]],
                     before_piece=self.lock_at_second_piece("/dir/"), headers=[FORM_TYPE])
        self.assertEqual(self.names("dir"), [])

    def test_a_lock_taken_while_a_resumable_upload_is_appended_to_stops_its_end(self) -> None:
        response = self.request("PUT", "/hello.txt", b"ab", upload_overwrite=True,
                                headers=[("Upload-Complete", "?0")])
        location = dict(response.headers)["Location"]
        self.refusal(423, "PATCH", location, b"cd", pieces=[b"c", b"d"],
                     before_piece=self.lock_at_second_piece("/hello.txt"),
                     headers=[("Content-Type", "application/partial-upload"),
                              ("Upload-Offset", "2"), ("Upload-Complete", "?1")],
                     upload_overwrite=True)
        self.assertEqual(self.read("hello.txt"), b"hello, world\n")

    def test_a_lock_taken_while_a_copy_runs_stops_the_copy(self) -> None:
        self.write("big.bin", b"x" * 100)
        self.write("dir/big.bin", b"x" * 100)
        write = PendingFile.write
        for source in ("/big.bin", "/dir/"):
            with self.subTest(source=source):
                locked: List[str] = []

                def write_after_a_lock(pending: PendingFile, data: bytes) -> None:
                    if not locked:  # another client locks the destination meanwhile
                        locked.append(self.lock("/copy"))
                    write(pending, data)

                destination = ("Destination", "http://localhost/copy")
                with mock.patch.object(PendingFile, "write", write_after_a_lock):
                    if source == "/big.bin":
                        self.refusal(423, "COPY", source, headers=[destination])
                    else:  # a member of a folder: named in a 207 (RFC 4918 §9.8.3)
                        self.assertEqual(multistatus(self.dav("COPY", source, b"", destination)),
                                         [("/copy/big.bin", {"status": "423"})])
                self.assertTrue(locked)
                copy = os.path.join(self.root, "copy")
                if os.path.isdir(copy):  # the folder the tree copy began with, left empty
                    self.assertEqual(os.listdir(copy), [])
                else:
                    self.assertEqual(os.path.getsize(copy), 0)  # the file LOCK made
                self.assertNoTemporaryFiles()
                self.unlock("/copy", locked[0])
                self.assertEqual(self.dav("DELETE", "/copy").status, 204)

    def unlock(self, target: str, token: str) -> None:
        self.assertEqual(self.dav("UNLOCK", target, b"", ("Lock-Token", token)).status, 204)

    def lock_at_second_piece(self, target: str) -> Callable[[int], None]:
        """A ``before_piece`` that locks ``target`` before the body's second piece comes."""
        def before_piece(index: int) -> None:
            if index == 1:
                self.lock(target)
        return before_piece

    def test_a_folder_lock_covers_what_is_below(self) -> None:
        token = self.lock("/dir/")
        self.refusal(423, "PUT", "/dir/new.txt", b"x")
        self.refusal(423, "MKCOL", "/dir/sub")
        self.assertEqual(self.dav("MKCOL", "/dir/sub", b"", ("If", f"({token})")).status, 201)

    def test_a_second_exclusive_lock_is_423_and_shared_locks_share(self) -> None:
        self.lock("/hello.txt")
        self.refusal(423, "LOCK", "/hello.txt", LOCKINFO)
        self.write("dir/s.txt", b"s")
        self.lock("/dir/s.txt", body=SHARED)
        self.lock("/dir/s.txt", body=SHARED)
        self.refusal(423, "LOCK", "/dir/s.txt", LOCKINFO)

    def test_a_lock_below_stops_a_folder_lock_with_207_423_and_424(self) -> None:
        self.write("dir/f.txt", b"f")
        self.lock("/dir/f.txt")
        self.assertEqual(multistatus(self.dav("LOCK", "/dir/", LOCKINFO, XML)),
                         [("/dir/f.txt", {"status": "423"}), ("/dir/", {"status": "424"})])

    def test_lock_on_an_unmapped_url_makes_an_empty_file_201(self) -> None:
        response = self.dav("LOCK", "/dir/new.txt", LOCKINFO, XML)
        self.assertEqual(response.status, 201)
        self.assertEqual(self.read("dir/new.txt"), b"")
        self.refusal(409, "LOCK", "/none/new.txt", LOCKINFO)

    def test_unlock_204_and_409(self) -> None:
        token = self.lock("/hello.txt")
        self.refusal(409, "UNLOCK", "/dir/", headers=[("Lock-Token", token)])
        self.assertEqual(self.dav("UNLOCK", "/hello.txt", b"", ("Lock-Token", token)).status,
                         204)
        self.refusal(409, "UNLOCK", "/hello.txt", headers=[("Lock-Token", token)])
        self.refusal(400, "UNLOCK", "/hello.txt", headers=[("Lock-Token", "nobrackets")])

    def test_refresh_needs_the_token_in_if(self) -> None:
        token = self.lock("/hello.txt")
        response = self.dav("LOCK", "/hello.txt", b"", ("If", f"({token})"),
                            ("Timeout", "Second-100"))
        self.assertEqual(response.status, 200)
        self.assertIn(b"Second-100", b"".join(response.body))
        self.refusal(412, "LOCK", "/hello.txt", headers=[("If", "(<urn:uuid:other>)")])
        self.refusal(400, "LOCK", "/hello.txt")

    def test_lockdiscovery_shows_the_lock(self) -> None:
        self.lock("/hello.txt")
        body = b"".join(self.dav("PROPFIND", "/hello.txt", b"", ("Depth", "0")).body)
        self.assertIn(b"<D:owner>tester</D:owner>", body)

    def test_a_false_if_header_is_412(self) -> None:
        get = self.request("GET", "/hello.txt", length=0)
        etag = dict(get.headers)["ETag"]
        get.release()
        self.refusal(412, "PUT", "/hello.txt", b"x", upload_overwrite=True,
                     headers=[("If", '(["other"])')])
        response = self.request("PUT", "/hello.txt", b"x", upload_overwrite=True,
                                headers=[("If", f"([{etag}])")])
        self.assertEqual(response.status, 204)
        self.refusal(412, "DELETE", "/hello.txt", headers=[("If", f"(Not [\"{'x'}\"] [{etag}])")])

    def test_an_expired_lock_is_gone(self) -> None:
        now = [1000.0]
        self.locks = LockTable(clock=lambda: now[0])
        self.lock("/hello.txt", ("Timeout", "Second-60"))
        self.refusal(423, "DELETE", "/hello.txt")
        now[0] += 61
        self.assertEqual(self.dav("DELETE", "/hello.txt").status, 204)


class LockThroughLinkTest(DavCase):
    """``/alias`` is a link to ``/pub``: a lock binds the entry whatever URL reaches it, so
    the alias neither gets past a lock nor needs another one."""

    def setUp(self) -> None:
        super().setUp()
        os.makedirs(os.path.join(self.root, "pub", "src"))
        self.write("pub/dst.txt", b"kept")
        self.write("pub/src/f.txt", b"f")
        os.symlink("pub", os.path.join(self.root, "alias"))

    def test_writes_through_the_alias_meet_the_lock(self) -> None:
        self.lock("/pub/dst.txt")
        self.lock("/pub/src/", ("Depth", "infinity"))
        for method, target, body, headers in (
                ("COPY", "/hello.txt", b"", [("Destination", "/alias/dst.txt")]),
                ("MOVE", "/hello.txt", b"", [("Destination", "/alias/dst.txt")]),
                ("PUT", "/alias/dst.txt", b"replaced", []),
                ("DELETE", "/alias/dst.txt", b"", []),
                ("MOVE", "/alias/src/", b"", [("Destination", "/moved")]),
                ("DELETE", "/alias/src/f.txt", b"", []),
                ("MKCOL", "/alias/src/sub", b"", []),
                ("PUT", "/alias/src/new.txt", b"new", []),
                ("LOCK", "/alias/dst.txt", LOCKINFO, [("Content-Type", "application/xml")])):
            with self.subTest(method=method, target=target):
                self.refusal(423, method, target, body, headers=headers, upload_overwrite=True)
        self.assertEqual(self.read("pub/dst.txt"), b"kept")
        self.assertEqual(self.read("pub/src/f.txt"), b"f")
        self.assertEqual(self.read("hello.txt"), b"hello, world\n")
        self.assertEqual(sorted(os.listdir(os.path.join(self.root, "pub", "src"))), ["f.txt"])

    def test_the_token_is_honoured_through_the_alias(self) -> None:
        token = self.lock("/pub/dst.txt")
        response = self.dav("PUT", "/alias/dst.txt", b"mine", ("If", f"({token})"),
                            upload_overwrite=True)
        self.assertEqual(response.status, 204)
        self.assertEqual(self.read("pub/dst.txt"), b"mine")
        self.assertEqual(self.dav("UNLOCK", "/alias/dst.txt", b"", ("Lock-Token", token)).status,
                         204)
        self.assertEqual(self.dav("DELETE", "/pub/dst.txt").status, 204)

    def test_a_lock_taken_through_the_alias_binds_the_real_url(self) -> None:
        self.lock("/alias/dst.txt")
        self.refusal(423, "DELETE", "/pub/dst.txt")
        body = b"".join(self.dav("PROPFIND", "/pub/dst.txt", b"", ("Depth", "0")).body)
        self.assertIn(b"<D:owner>tester</D:owner>", body)

    def test_a_lock_on_the_link_itself_binds_what_it_leads_to(self) -> None:
        self.lock("/alias/", ("Depth", "infinity"))
        self.refusal(423, "PUT", "/pub/new.txt", b"x")
        self.refusal(423, "DELETE", "/pub/dst.txt")

    def test_a_folder_lock_binds_its_members_through_the_alias(self) -> None:
        self.lock("/pub/", ("Depth", "0"))
        self.refusal(423, "PUT", "/alias/new.txt", b"x")
        self.refusal(423, "MKCOL", "/alias/newdir")

    def test_a_link_goes_or_is_replaced_whatever_lock_its_target_has(self) -> None:
        # Only the link changes: the locked file it leads to stays as it is.
        os.symlink("dst.txt", os.path.join(self.root, "pub", "link.txt"))
        self.lock("/pub/dst.txt")
        self.assertEqual(self.dav("PUT", "/pub/link.txt", b"own", upload_overwrite=True).status,
                         204)
        self.assertFalse(os.path.islink(os.path.join(self.root, "pub", "link.txt")))
        self.assertEqual(self.dav("MOVE", "/alias", b"", ("Destination", "/renamed")).status,
                         201)
        self.assertEqual(self.dav("DELETE", "/renamed").status, 204)
        self.assertEqual(self.read("pub/dst.txt"), b"kept")
        self.refusal(423, "DELETE", "/pub/dst.txt")

    def test_deleting_the_alias_keeps_the_locks_taken_through_it(self) -> None:
        token = self.lock("/alias/dst.txt")
        self.assertEqual(self.dav("DELETE", "/alias", b"", ("If", f"</alias/dst.txt> ({token})")
                                  ).status, 204)
        self.refusal(423, "PUT", "/pub/dst.txt", b"x", upload_overwrite=True)
        self.assertEqual(self.dav("UNLOCK", "/pub/dst.txt", b"", ("Lock-Token", token)).status,
                         204)

    def test_deleting_through_the_alias_forgets_the_lock(self) -> None:
        token = self.lock("/pub/dst.txt")
        self.assertEqual(self.dav("DELETE", "/alias/dst.txt", b"", ("If", f"({token})")).status,
                         204)
        self.assertEqual(self.dav("PUT", "/pub/dst.txt", b"new").status, 201)


class OrderedNamesTest(DavCase):
    """MKCOL, DELETE, COPY and MOVE change names in the folder's hold, as uploads name their
    files: one that comes while a conditional PUT holds the folder for its naming waits,
    then acts on what the PUT stored, so neither undoes the other unseen.

    The PUT and the request beside it go through two workers: two lock tables over one
    shared file, as two worker processes have them.  (Within one table, its mutex, which the
    PUT holds around its naming, would keep a request of the same worker waiting anyway.)"""

    def setUp(self) -> None:
        super().setUp()
        self.locks = LockTable.shared()
        self.addCleanup(os.close, self.locks._file)
        self.other_locks = LockTable(file=self.locks._file)  # the other worker's copy
        self.outcomes: Dict[str, int] = {}

    def other_worker(self, **settings) -> Dispatcher:
        site = self.site(**settings)
        site.dav.locks = self.other_locks
        return site

    def known(self, name: str) -> List[Tuple[str, str]]:
        """An ``If-Match`` naming the ETag of the file ``name``, written now."""
        self.write(name, b"known")
        response = self.request("HEAD", "/" + name, length=0)
        response.release()
        return [("If-Match", dict(response.headers)["ETag"])]

    def answer(self, who: str, method: str, target: str, body: bytes = b"",
               *headers: Tuple[str, str], site: Optional[Dispatcher] = None) -> Callable[[], None]:
        """What sends the request and keeps its status in :attr:`outcomes` under ``who``."""
        def send() -> None:
            try:
                self.outcomes[who] = self.request(method, target, body, headers=headers,
                                                  site=site or self.site()).status
            except HTTPError as error:
                self.outcomes[who] = error.status
        return send

    def put_beside(self, second: Callable[[], None], target: str = "/dir/r.txt") -> None:
        """Race a PUT of ``put!`` to ``target``, with an If-Match on its file, held just
        before its naming, and ``second`` through the other worker."""
        known = self.known(target[1:])
        race(self.answer("put", "PUT", target, b"put!", *known), second)

    def setting(self, **settings: object) -> None:
        self.config = dataclasses.replace(self.config, **settings)

    def test_a_move_onto_the_name_comes_after_the_put(self) -> None:
        self.setting(upload_overwrite=True)
        self.write("dir/moved.txt", b"moved along")
        self.put_beside(self.answer("move", "MOVE", "/dir/moved.txt", b"",
                                    ("Destination", "/dir/r.txt"), site=self.other_worker()))
        # Unordered, the MOVE lands between the PUT's second look and its rename, and the
        # PUT then replaces the moved file unseen.
        self.assertEqual(self.outcomes, {"put": 204, "move": 204})
        self.assertEqual(self.read("dir/r.txt"), b"moved along")
        self.assertEqual(self.names("dir"), ["r.txt"])

    def test_a_move_of_the_file_away_takes_what_the_put_stored(self) -> None:
        self.setting(upload_overwrite=True)
        os.mkdir(os.path.join(self.root, "away"))
        self.put_beside(self.answer("move", "MOVE", "/dir/r.txt", b"",
                                    ("Destination", "/away/r.txt"), site=self.other_worker()))
        # Unordered, the known file moves away and the PUT makes a new one in its place.
        self.assertEqual(self.outcomes, {"put": 204, "move": 201})
        self.assertEqual(self.read("away/r.txt"), b"put!")
        self.assertEqual(self.names("dir"), [])

    def test_a_delete_of_the_name_comes_after_the_put(self) -> None:
        self.setting(upload_overwrite=True)
        self.put_beside(self.answer("delete", "DELETE", "/dir/r.txt",
                                    site=self.other_worker()))
        # Unordered, the PUT gives the deleted name a file again, judged on the one gone.
        self.assertEqual(self.outcomes, {"put": 204, "delete": 204})
        self.assertEqual(self.names("dir"), [])

    def test_the_removal_of_a_folder_waits_for_a_hold_inside_it(self) -> None:
        # The folder leaves its name at once; each folder in it is then emptied in its own
        # hold, so a naming that holds one (here a flock standing in for an upload that
        # opened the folder before the DELETE) is waited for, and what it named goes too.
        os.makedirs(os.path.join(self.root, "dir", "t", "u"))
        self.write("dir/t/u/f.txt", b"f")
        inside = os.open(os.path.join(self.root, "dir", "t", "u"), os.O_RDONLY)
        self.addCleanup(os.close, inside)
        fcntl.flock(inside, fcntl.LOCK_EX)
        delete = threading.Thread(target=self.answer("delete", "DELETE", "/dir/t/"))
        delete.start()
        wait_until(lambda: self.names("dir")[0].startswith(".nex-upload-"),
                   what="the folder to leave its name")
        self.assertTrue(delete.is_alive())  # its removal waits for the hold inside
        os.close(os.open("late.txt", os.O_CREAT | os.O_WRONLY, dir_fd=inside))
        fcntl.flock(inside, fcntl.LOCK_UN)
        delete.join(30)
        self.assertEqual(self.outcomes, {"delete": 204})
        self.assertEqual(self.names("dir"), [])

    def test_a_copy_onto_the_name_comes_after_the_put(self) -> None:
        self.setting(upload_overwrite=True)
        self.write("copied.txt", b"copied over")
        self.put_beside(self.answer("copy", "COPY", "/copied.txt", b"",
                                    ("Destination", "/dir/r.txt"), site=self.other_worker()))
        self.assertEqual(self.outcomes, {"put": 204, "copy": 204})
        self.assertEqual(self.read("dir/r.txt"), b"copied over")

    def test_two_opposite_moves_between_two_folders_both_go_through(self) -> None:
        # Each MOVE holds both folders.  Each lingers after its first hold so that the
        # other may take one: taken in one order, the second MOVE waits for the first
        # folder rather than taking the other one and waiting for it in turn.
        for folder, name in (("a", "x.txt"), ("b", "y.txt")):
            os.mkdir(os.path.join(self.root, folder))
            self.write(f"{folder}/{name}", name.encode())
        first_holds: List[threading.Thread] = []
        both_hold = threading.Event()
        lock_folder = upload._lock_folder

        def lingering(fd: int) -> bool:
            taken = lock_folder(fd)
            if taken and threading.current_thread() not in first_holds:
                first_holds.append(threading.current_thread())
                if len(first_holds) == 2:
                    both_hold.set()
                both_hold.wait(0.5)
            return taken

        moves = [threading.Thread(target=self.answer(
                     source, "MOVE", source, b"", ("Destination", destination),
                     site=site))
                 for source, destination, site in (
                     ("/a/x.txt", "/b/x.txt", self.site()),
                     ("/b/y.txt", "/a/y.txt", self.other_worker()))]
        with mock.patch.object(upload, "_lock_folder", lingering), \
                mock.patch.object(upload, "FOLDER_WAIT_SECONDS", 5.0):
            for move in moves:
                move.start()
            for move in moves:
                move.join(30)
        self.assertEqual(self.outcomes, {"/a/x.txt": 201, "/b/y.txt": 201})
        self.assertEqual((self.names("a"), self.names("b")), (["y.txt"], ["x.txt"]))

    def test_a_move_within_a_folder_reached_by_two_paths_holds_it_once(self) -> None:
        # /alias leads to /pub: one folder, opened twice.  A second hold of it would wait
        # for the first, held by the same request, until the 503.
        os.makedirs(os.path.join(self.root, "pub"))
        self.write("pub/a.txt", b"a")
        os.symlink("pub", os.path.join(self.root, "alias"))
        with mock.patch.object(upload, "FOLDER_WAIT_SECONDS", 0.2):
            self.assertEqual(self.dav("MOVE", "/alias/a.txt", b"",
                                      ("Destination", "/pub/b.txt")).status, 201)
        self.assertEqual(self.names("pub"), ["b.txt"])

    def test_every_change_in_a_folder_another_program_keeps_locked_is_503(self) -> None:
        # flock(1) around a backup of /dir: each request waits a bounded time, then is
        # refused with a retry, changing nothing.
        os.makedirs(os.path.join(self.root, "dir", "t"))
        self.write("dir/f.txt", b"f")
        self.write("free.txt", b"free")
        other = os.open(os.path.join(self.root, "dir"), os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, other)
        fcntl.flock(other, fcntl.LOCK_EX)
        before = self.names("dir")
        with mock.patch.object(upload, "FOLDER_WAIT_SECONDS", 0.05):
            for method, target, headers in (
                    ("MKCOL", "/dir/new", []), ("DELETE", "/dir/f.txt", []),
                    ("DELETE", "/dir/t/", []),
                    ("MOVE", "/dir/f.txt", [("Destination", "/g.txt")]),
                    ("MOVE", "/free.txt", [("Destination", "/dir/free.txt")]),
                    ("COPY", "/free.txt", [("Destination", "/dir/free.txt")]),
                    ("COPY", "/dir/t/", [("Destination", "/dir/u/")])):
                with self.subTest(method=method, target=target):
                    error = self.refusal(503, method, target, headers=headers)
                    self.assertEqual(dict(error.headers)["Retry-After"], "5")
        self.assertEqual(self.names("dir"), before)
        self.assertEqual(self.read("free.txt"), b"free")
        self.assertNoTemporaryFiles()

    def test_a_folder_leaves_its_name_before_it_is_removed(self) -> None:
        # The hold lasts the rename that takes the folder from its name, not the walk that
        # removes it: the name may be taken again while that walk runs.
        os.makedirs(os.path.join(self.root, "dir", "t", "u"))
        self.write("dir/t/u/f.txt", b"f")
        remove = davnames.remove_entry
        made: List[int] = []

        def make_the_name_first(dir_fd: int, name: str) -> None:
            made.append(self.dav("MKCOL", "/dir/t").status)
            remove(dir_fd, name)

        with mock.patch.object(davnames, "remove_entry", make_the_name_first), \
                mock.patch.object(upload, "FOLDER_WAIT_SECONDS", 0.2):
            self.assertEqual(self.dav("DELETE", "/dir/t/").status, 204)
        self.assertEqual(made, [201])
        self.assertEqual(self.names("dir"), ["t"])
        self.assertEqual(self.names("dir/t"), [])

    def test_a_delete_whose_removal_fails_gives_what_is_left_its_name_back(self) -> None:
        os.makedirs(os.path.join(self.root, "dir", "t", "u"))
        self.write("dir/t/u/kept.txt", b"k")
        self.write("dir/t/gone.txt", b"g")
        unlink = os.unlink

        def refusing(name: str, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            if name == "kept.txt":
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            unlink(name, *args, **kwargs)

        with mock.patch("os.unlink", refusing):
            self.refusal(403, "DELETE", "/dir/t/")
        # As a removal in place would leave it: partly deleted, under its own name.
        self.assertEqual(self.names("dir"), ["t"])
        self.assertEqual(self.read("dir/t/u/kept.txt"), b"k")

    def test_a_folder_a_copy_would_replace_stays_when_a_lock_stops_the_copy(self) -> None:
        # The folder leaves its name in the hold the copy takes its name in; the lock
        # taken while the data was copied stops the naming, and the folder is put back.
        os.makedirs(os.path.join(self.root, "dir", "full"))
        self.write("dir/full/f.txt", b"f")
        write = PendingFile.write
        locked: List[str] = []

        def write_after_a_lock(pending: PendingFile, data: bytes) -> None:
            if not locked:
                locked.append(self.lock("/dir/full"))
            write(pending, data)

        with mock.patch.object(PendingFile, "write", write_after_a_lock):
            self.refusal(423, "COPY", "/hello.txt", headers=[("Destination", "/dir/full")],
                         upload_overwrite=True)
        self.assertEqual(self.names("dir"), ["full"])
        self.assertEqual(self.read("dir/full/f.txt"), b"f")
        self.assertNoTemporaryFiles()

    def test_a_copy_with_overwrite_f_replaces_no_file_made_while_it_ran(self) -> None:
        write = PendingFile.write

        def made_meanwhile(pending: PendingFile, data: bytes) -> None:
            self.write("dir/c.txt", b"theirs")
            write(pending, data)

        with mock.patch.object(PendingFile, "write", made_meanwhile):
            self.refusal(412, "COPY", "/hello.txt", headers=[
                ("Destination", "/dir/c.txt"), ("Overwrite", "F")], upload_overwrite=True)
        self.assertEqual(self.read("dir/c.txt"), b"theirs")


class LockTableThreadsTest(unittest.TestCase):
    def test_threads_locking_the_same_files_at_once_get_one_exclusive_lock_each(self) -> None:
        # The look for a conflicting lock and the storing of the new one happen under one
        # mutex: without it, two clients locking a file at once (on a free-threaded Python
        # truly at once) could both be told they hold it exclusively.
        table = LockTable()
        taken: List[int] = []

        def lock_every_file(index: int) -> None:
            for number in range(100):
                try:
                    path = (f"file-{number}.txt",)
                    table.take(Where(path, (("srv",) + path,)), False, True, f"owner {index}",
                               60, f"192.0.2.{index}")
                except LockConflict:
                    continue
                taken.append(number)
        run_in_threads(lock_every_file)
        self.assertEqual(sorted(taken), list(range(100)))


class IfHeaderTest(DavCase):

    def test_grammar(self) -> None:
        lists = parse_if('<http://h/a> (<urn:uuid:1> ["e"]) (Not <urn:uuid:2>)')
        self.assertEqual([entry.resource for entry in lists], [("a",), ("a",)])
        self.assertEqual(lists[1].conditions[0].negated, True)
        for bad in ["", "()", "(<a>", "<a>", "(Not)", "(Not Not <a>)", "([e])", "x"]:
            with self.subTest(value=bad), self.assertRaises(HTTPError):
                parse_if(bad)

    def test_timeouts(self) -> None:
        self.assertEqual(parse_timeout("Second-100"), 100)
        self.assertEqual(parse_timeout("Infinite, Second-4100000000"), 3600)
        self.assertEqual(parse_timeout("Second-99999999"), 3600)
        self.assertEqual(parse_timeout(None), 600)
        self.assertEqual(parse_timeout("soon"), 600)


class ProtectedBelowDestinationTest(DavCase):
    """A login protects ``/pub/private/``, which does not exist yet: a folder COPY or MOVE
    to ``/pub`` cannot make it, or write into it, without the login."""

    def setUp(self) -> None:
        super().setUp()
        self.protect("/pub/private/")
        os.makedirs(os.path.join(self.root, "mk", "private"))
        self.write("mk/private/evil.txt", b"e")
        self.write("mk/ok.txt", b"o")

    def test_a_copy_names_the_protected_folder_and_makes_nothing_there(self) -> None:
        response = self.dav("COPY", "/mk/", b"", ("Destination", "/pub"))
        self.assertEqual(multistatus(response), [("/pub/private/", {"status": "403"})])
        self.assertEqual(self.names("pub"), ["ok.txt"])

    def test_a_move_is_refused_and_nothing_moves(self) -> None:
        error = self.refusal(403, "MOVE", "/mk/", headers=[("Destination", "/pub")])
        self.assertIn("may not be moved there", error.detail)
        self.assertEqual(self.read("mk/private/evil.txt"), b"e")
        self.assertFalse(os.path.exists(os.path.join(self.root, "pub")))

    def test_a_copy_writes_no_protected_file_either(self) -> None:
        self.protect("/pub/private/", "/pub/secret.txt")
        self.write("mk/secret.txt", b"s")
        response = self.dav("COPY", "/mk/", b"", ("Destination", "/pub"))
        self.assertEqual(multistatus(response), [("/pub/private/", {"status": "403"}),
                                                 ("/pub/secret.txt", {"status": "403"})])
        self.assertEqual(self.names("pub"), ["ok.txt"])

    def test_with_the_login_both_go_through(self) -> None:
        response = self.request("COPY", "/mk/", headers=[("Destination", "/pub"), ALICE])
        self.assertEqual(response.status, 201)
        self.assertEqual(self.read("pub/private/evil.txt"), b"e")
        self.assertEqual(self.dav("DELETE", "/pub/", b"", ALICE).status, 204)
        response = self.request("MOVE", "/mk/", headers=[("Destination", "/pub"), ALICE])
        self.assertEqual(response.status, 201)
        self.assertEqual(self.read("pub/private/evil.txt"), b"e")


class ProtectedLinkEntryTest(DavCase):
    """``/secret/`` is protected and holds a link ``lnk`` to an open folder; ``/x`` is a link
    to ``/secret``.  The link itself lies in the protected folder: replacing or removing it
    through ``/x/lnk`` needs the login, wherever it leads."""

    def setUp(self) -> None:
        super().setUp()
        self.protect("/secret/")
        os.makedirs(os.path.join(self.root, "secret"))
        os.makedirs(os.path.join(self.root, "pub", "open"))
        os.symlink("../pub/open", os.path.join(self.root, "secret", "lnk"))
        os.symlink("secret", os.path.join(self.root, "x"))
        self.link = os.path.join(self.root, "secret", "lnk")

    def test_copy_move_and_delete_through_the_link_need_the_login(self) -> None:
        for method, target, headers in (
                ("COPY", "/hello.txt", [("Destination", "/x/lnk")]),
                ("MOVE", "/hello.txt", [("Destination", "/x/lnk")]), ("DELETE", "/x/lnk", []),
                ("MOVE", "/x/lnk", [("Destination", "/pub/taken")])):
            with self.subTest(method=method, target=target):
                self.refusal(401, method, target, headers=headers, upload_overwrite=True)
                self.assertTrue(os.path.islink(self.link))
        self.assertEqual(self.read("hello.txt"), b"hello, world\n")


class ProtectedDestinationTest(DavCase):
    """A login protects ``/dir/``: writing there by COPY or MOVE needs it too."""

    def setUp(self) -> None:
        super().setUp()
        self.protect("/dir/")

    def test_copy_or_move_into_a_protected_folder_needs_a_login(self) -> None:
        for method in ("COPY", "MOVE"):
            for destination in ("/dir/stolen.txt", "http://localhost/dir/stolen.txt",
                                "/other/../dir/stolen.txt", "/%64ir/stolen.txt"):
                with self.subTest(method=method, destination=destination):
                    self.refusal(401, method, "/hello.txt",
                                 headers=[("Destination", destination)])
        self.assertEqual(os.listdir(os.path.join(self.root, "dir")), [])
        response = self.request("COPY", "/hello.txt", headers=[
            ("Destination", "/dir/copied.txt"), ALICE])
        self.assertEqual((response.status, response.user), (201, "alice"))

    def test_copy_out_of_the_protected_folder_needs_a_login_as_ever(self) -> None:
        self.write("dir/secret.txt", b"s")
        self.refusal(401, "COPY", "/dir/secret.txt", headers=[("Destination", "/leak.txt")])

    def test_a_protected_destination_does_not_say_whether_it_exists(self) -> None:
        self.write("dir/secret.txt", b"s")
        for destination, overwrite in (("/dir/secret.txt", "F"), ("/dir/missing/x.txt", "T"),
                                       ("/dir/secret.txt", "T")):
            for method in ("COPY", "MOVE"):
                with self.subTest(method=method, destination=destination):
                    self.refusal(401, method, "/hello.txt", headers=[
                        ("Destination", destination), ("Overwrite", overwrite)])
        self.assertEqual(self.read("dir/secret.txt"), b"s")
        self.assertEqual(self.read("hello.txt"), b"hello, world\n")
