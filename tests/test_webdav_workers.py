"""WebDAV with several workers: class 1 only, since locks live in one process's memory.

A lock taken through one worker would be unknown to the others, and a PUT through another
would pass it by; so with ``workers`` above 1 Nex does not offer locks at all (``DAV: 1``,
LOCK and UNLOCK ``405``, no lock properties) and the supervisor says so once at start-up.
With one process, WebDAV stays class 2.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import unittest
import xml.etree.ElementTree as ElementTree

from nex.files.webdav import WebDav, lock_warning, serves_locks
from nex.process.config import Config
from nex.site.hosts import HostValidator
from nex.site.routing import Dispatcher
from tests.support import NexServer, http_request
from tests.support.upload import UploadTestCase

LOCKINFO = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
            b'</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>tester</D:owner>'
            b'</D:lockinfo>')
XML = {"Content-Type": "application/xml"}
_WARNING = "WebDAV locks need workers = 1"


def property_names(body: bytes) -> set:
    """The local names of the properties a 207 body holds."""
    return {prop.tag.rpartition("}")[2] for prop in ElementTree.fromstring(body).iter()
            if prop.tag.startswith("{DAV:}") and prop.tag != "{DAV:}prop"}


class LockRuleTest(unittest.TestCase):
    """serves_locks() and lock_warning(): the one rule, read by WebDav and the supervisor."""

    def test_locks_only_with_write_in_one_process(self) -> None:
        for webdav, workers, locks in (("write", 1, True), ("write", 2, False),
                                       ("read", 1, False), ("no", 1, False)):
            with self.subTest(webdav=webdav, workers=workers):
                config = Config(webdav=webdav, workers=workers)
                self.assertEqual(serves_locks(config), locks)
                self.assertEqual(bool(lock_warning(config)), webdav == "write" and not locks)

    def test_the_warning_names_the_workers_and_what_is_left_out(self) -> None:
        self.assertEqual(lock_warning(Config(webdav="write", workers=3)),
                         "WebDAV locks need workers = 1: with 3 workers Nex serves WebDAV "
                         "class 1, and answers LOCK and UNLOCK with 405")


class ClassOneSiteTest(UploadTestCase):
    """The WebDAV methods through a real Dispatcher with ``workers = 2``."""

    settings = {"upload": True, "webdav": "write", "workers": 2}

    def site(self, file_cache=None, **settings) -> Dispatcher:
        config = dataclasses.replace(self.config, **settings)
        return Dispatcher(config, self.templates, HostValidator(["*"]), "sig", file_cache,
                          dav=WebDav.for_site(config))

    def test_options_says_class_1_and_leaves_lock_out_of_allow(self) -> None:
        fields = dict(self.request("OPTIONS", "/", length=0).headers)
        self.assertEqual(fields["DAV"], "1")
        self.assertNotIn("LOCK", fields["Allow"].split(", "))
        self.assertIn("PROPPATCH", fields["Allow"].split(", "))

    def test_lock_and_unlock_are_405_with_allow(self) -> None:
        for method, body, headers in (("LOCK", LOCKINFO, [("Content-Type", "application/xml")]),
                                      ("UNLOCK", b"", [("Lock-Token", "<urn:uuid:x>")])):
            with self.subTest(method=method):
                error = self.refusal(405, method, "/hello.txt", body, headers=headers)
                allow = dict(error.headers)["Allow"].split(", ")
                self.assertNotIn(method, allow)
                self.assertIn("PUT", allow)
        self.assertEqual(self.read("hello.txt"), b"hello, world\n")

    def test_propfind_has_no_lock_properties(self) -> None:
        response = self.request("PROPFIND", "/hello.txt", headers=[("Depth", "0")])
        names = property_names(b"".join(response.body))
        self.assertIn("getetag", names)
        self.assertFalse(names & {"lockdiscovery", "supportedlock"}, names)

    def test_one_process_keeps_class_2(self) -> None:
        dav = WebDav(dataclasses.replace(self.config, workers=1))
        self.assertEqual(dict(dav.options_headers())["DAV"], "1, 2")
        self.assertIn("LOCK", dav.methods)


class WorkersOnTheWireTest(unittest.TestCase):
    """The real server: class 1 with two workers, class 2 with one."""

    def start(self, workers: int) -> NexServer:
        root = tempfile.mkdtemp(prefix="nex-dav-workers-")
        self.addCleanup(shutil.rmtree, root, True)
        with open(os.path.join(root, "hello.txt"), "w") as out:
            out.write("hello\n")
        server = NexServer(root, settings={"server": {"workers": workers},
                                           "files": {"webdav": "write", "upload": "yes"}})
        server.start()
        self.addCleanup(server.stop)
        return server

    def test_two_workers_serve_class_1_and_warn_once(self) -> None:
        server = self.start(2)
        for _ in range(4):  # on whichever worker the kernel picks
            status, fields, _ = http_request(server, "OPTIONS", "/")
            self.assertEqual((status, fields["dav"]), (204, "1"))
            status, fields, _ = http_request(server, "LOCK", "/hello.txt", LOCKINFO, XML)
            self.assertEqual(status, 405)
            self.assertNotIn("LOCK", fields["allow"].split(", "))
            self.assertNotIn("lock-token", fields)
        status, _, body = http_request(server, "PROPFIND", "/hello.txt", None, {"Depth": "0"})
        self.assertEqual(status, 207)
        self.assertFalse(property_names(body) & {"lockdiscovery", "supportedlock"})
        self.assertEqual(len(re.findall(r"(?m)^\[[^]]+\] warning: " + _WARNING,
                                        server.error_log())), 1, server.error_log())

    def test_one_process_serves_class_2(self) -> None:
        server = self.start(1)
        status, fields, _ = http_request(server, "OPTIONS", "/")
        self.assertEqual((status, fields["dav"]), (204, "1, 2"))
        status, fields, _ = http_request(server, "LOCK", "/hello.txt", LOCKINFO, XML)
        self.assertEqual(status, 200)
        token = fields["lock-token"]
        status, _, _ = http_request(server, "PUT", "/hello.txt", b"changed\n")
        self.assertEqual(status, 423)
        status, _, _ = http_request(server, "UNLOCK", "/hello.txt", None, {"Lock-Token": token})
        self.assertEqual(status, 204)
        self.assertNotIn(_WARNING, server.error_log())


if __name__ == "__main__":
    unittest.main()
