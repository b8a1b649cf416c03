"""What Nex remembers between requests never hides a change, against the real server.

Nex keeps small files' contents, the absence of precompressed sidecars, paths found missing
(index files among them) and rendered listings in memory.  Each folder here has settled (its
last change is older than :data:`nex.files.filecache.SETTLED_NS`) before the first request, so
the server does remember; then a test changes the folder or a file in it and asks again on the
same connection.  An entry added, removed or renamed, a sidecar made or deleted and a file
rewritten show at once; a file changed in place shows in its folder's listing once the listing
has expired (within :data:`nex.files.listing.LISTING_MAX_AGE`, polled for here with a generous
deadline).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import unittest
from typing import Dict, List, Tuple

from nex.files.filecache import SETTLED_NS
from tests.support import NexServer, ResponseReader, wait_until

#: The folders each test works in, all made (and settled) before the server starts.
FOLDERS = ("added", "removed", "renamed", "in-place", "sidecar-made", "sidecar-gone",
           "rewritten", "missing-made", "missing-folder", "missing-moved-in", "missing-linked",
           "missing-elsewhere", "index-made")
BROWSER = "Accept-Encoding: gzip, deflate, br\r\n"
DEADLINE_SECONDS = 30.0


class CacheInvalidationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="nex-caches-")
        for folder in FOLDERS:
            os.makedirs(os.path.join(cls.root, folder))
            cls.write(folder, "a.txt", b"a")
            cls.write(folder, "page.html", b"<p>plain</p>")
        cls.write("sidecar-gone", "page.html.br", b"BROTLI")
        paths = [cls.root] + [os.path.join(cls.root, folder) for folder in FOLDERS]
        if not wait_until(lambda: max(os.stat(path).st_ctime_ns for path in paths)
                          + SETTLED_NS + 100_000_000 <= time.time_ns(),
                          DEADLINE_SECONDS, 0.1):
            raise AssertionError("the folders did not settle")
        cls.server = NexServer(cls.root).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    @classmethod
    def write(cls, folder: str, name: str, data: bytes) -> str:
        path = os.path.join(cls.root, folder, name)
        with open(path, "wb") as file:
            file.write(data)
        return path

    def setUp(self):
        self.sock = self.server.connect()
        self.addCleanup(self.sock.close)
        self.reader = ResponseReader(self.sock)

    def get(self, path: str, extra: str = "") -> Tuple[int, Dict[str, str], bytes]:
        """One GET on the test's keep-alive connection."""
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n"
                          .encode("ascii"))
        return self.reader.read()

    def names(self, folder: str) -> List[str]:
        status, fields, body = self.get(f"/{folder}/?format=json")
        self.assertEqual((status, fields["content-type"]), (200, "application/json"))
        return [entry["name"] for entry in json.loads(body)]

    def test_an_entry_added_is_listed_at_once(self):
        self.assertEqual(self.names("added"), ["a.txt", "page.html"])
        self.assertEqual(self.names("added"), ["a.txt", "page.html"])
        self.write("added", "b.txt", b"b")
        self.assertEqual(self.names("added"), ["a.txt", "b.txt", "page.html"])

    def test_an_entry_removed_is_gone_at_once(self):
        self.assertEqual(self.names("removed"), ["a.txt", "page.html"])
        os.remove(os.path.join(self.root, "removed", "a.txt"))
        self.assertEqual(self.names("removed"), ["page.html"])

    def test_an_entry_renamed_is_listed_under_its_new_name_at_once(self):
        self.assertEqual(self.names("renamed"), ["a.txt", "page.html"])
        os.rename(os.path.join(self.root, "renamed", "a.txt"),
                  os.path.join(self.root, "renamed", "c.txt"))
        self.assertEqual(self.names("renamed"), ["c.txt", "page.html"])

    def test_a_file_changed_in_place_is_listed_with_its_new_size_once_expired(self):
        def size() -> int:
            _, _, body = self.get("/in-place/?format=json")
            return {entry["name"]: entry["size"] for entry in json.loads(body)}["a.txt"]

        self.assertEqual(size(), 1)
        with open(os.path.join(self.root, "in-place", "a.txt"), "ab") as file:
            file.write(b"bcd")
        self.assertTrue(wait_until(lambda: size() == 4, DEADLINE_SECONDS, 0.05),
                        "the new size never showed")

    def test_a_sidecar_made_is_served_at_once(self):
        for _ in range(2):
            status, fields, body = self.get("/sidecar-made/page.html", BROWSER)
            self.assertEqual((status, body), (200, b"<p>plain</p>"))
            self.assertNotIn("content-encoding", fields)
        self.write("sidecar-made", "page.html.br", b"BROTLI")
        status, fields, body = self.get("/sidecar-made/page.html", BROWSER)
        self.assertEqual((status, fields.get("content-encoding"), body), (200, "br", b"BROTLI"))

    def test_a_sidecar_deleted_is_no_longer_served(self):
        status, fields, body = self.get("/sidecar-gone/page.html", BROWSER)
        self.assertEqual((fields.get("content-encoding"), body), ("br", b"BROTLI"))
        os.remove(os.path.join(self.root, "sidecar-gone", "page.html.br"))
        status, fields, body = self.get("/sidecar-gone/page.html", BROWSER)
        self.assertEqual((status, body), (200, b"<p>plain</p>"))
        self.assertNotIn("content-encoding", fields)

    def test_a_file_rewritten_is_served_new_at_once(self):
        self.assertEqual(self.get("/rewritten/a.txt")[2], b"a")
        self.write("rewritten", "a.txt", b"z")  # same size, same second, new contents
        self.assertEqual(self.get("/rewritten/a.txt")[2], b"z")

    def test_an_index_file_made_in_a_listed_folder_is_served_at_once(self):
        for _ in range(2):
            self.assertEqual(self.names("index-made"), ["a.txt", "page.html"])
        self.write("index-made", "index.html", b"<p>index</p>")
        self.assertEqual(self.get("/index-made/")[::2], (200, b"<p>index</p>"))

    def assert_missing_twice(self, path: str) -> None:
        for _ in range(2):
            self.assertEqual(self.get(path)[0], 404)

    def test_a_file_made_where_a_404_was_is_served_at_once(self):
        self.assert_missing_twice("/missing-made/new.txt")
        self.write("missing-made", "new.txt", b"new")
        self.assertEqual(self.get("/missing-made/new.txt")[::2], (200, b"new"))

    def test_a_folder_made_where_a_404_was_serves_its_file_at_once(self):
        self.assert_missing_twice("/missing-folder/sub/deeper/new.txt")
        os.makedirs(os.path.join(self.root, "missing-folder", "sub", "deeper"))
        self.write("missing-folder/sub/deeper", "new.txt", b"deep")
        self.assertEqual(self.get("/missing-folder/sub/deeper/new.txt")[::2], (200, b"deep"))

    def test_a_file_moved_in_where_a_404_was_is_served_at_once(self):
        self.assert_missing_twice("/missing-moved-in/new.txt")
        os.rename(os.path.join(self.root, "missing-elsewhere", "a.txt"),
                  os.path.join(self.root, "missing-moved-in", "new.txt"))
        self.assertEqual(self.get("/missing-moved-in/new.txt")[::2], (200, b"a"))

    def test_a_folder_replaced_by_a_link_where_a_404_was_is_followed_at_once(self):
        self.assert_missing_twice("/missing-linked/b/page.html")
        os.makedirs(os.path.join(self.root, "missing-linked-target"))
        with open(os.path.join(self.root, "missing-linked-target", "page.html"), "wb") as file:
            file.write(b"linked")
        os.symlink(os.path.join(self.root, "missing-linked-target"),
                   os.path.join(self.root, "missing-linked", "b"))
        self.assertEqual(self.get("/missing-linked/b/page.html")[::2], (200, b"linked"))


if __name__ == "__main__":
    unittest.main()
