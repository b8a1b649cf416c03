"""A real browser reads a JSON listing from another origin with fetch(), as CORS allows it,
and is refused where CORS does not.  Skips like tests.test_browser without Chromium."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import unittest

from tests.support import ChromiumTestCase, NexServer

#: The script the app page runs: the status, body text and exposed fields of a fetch with
#: the given request fields, or the error a refused fetch gives.
FETCH_SCRIPT = """
const [url, fields, done] = arguments;
fetch(url, {headers: fields})
  .then(response => response.text().then(text => done({
      status: response.status, text: text,
      etag: response.headers.get("ETag"),
      contentRange: response.headers.get("Content-Range")})))
  .catch(error => done({error: String(error)}));
"""


class CrossOriginListingBrowserTest(ChromiumTestCase):
    """An app page on one Nex fetches a folder listing from another Nex (another port, so
    another origin); the files server allows exactly the app's origin."""

    @classmethod
    def start_servers(cls):
        cls.base = tempfile.mkdtemp(prefix="nex-cors-browser-")
        app_root = os.path.join(cls.base, "app")
        cls.files_root = os.path.join(cls.base, "files")
        os.makedirs(app_root)
        os.makedirs(os.path.join(cls.files_root, "shared", "sub"))
        with open(os.path.join(app_root, "index.html"), "w", encoding="utf-8") as page:
            page.write("<!DOCTYPE html><title>app</title><p>app</p>")
        for name, data in (("a.txt", b"alpha"), ("b.bin", b"\0" * 2048)):
            with open(os.path.join(cls.files_root, "shared", name), "wb") as out:
                out.write(data)
        cls.app = NexServer(app_root).start()
        cls.app_origin = cls.app.url.rstrip("/")
        cls.files = NexServer(cls.files_root, settings={
            "cors": {"allow_origins": cls.app_origin}}).start()
        cls.closed = NexServer(cls.files_root).start()

    @classmethod
    def stop_servers(cls):
        for server in (cls.app, cls.files, cls.closed):
            server.stop()
        shutil.rmtree(cls.base, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.driver.get(self.app.url)

    def fetch(self, url: str, **fields: str) -> dict:
        return self.driver.execute_async_script(FETCH_SCRIPT, url, fields)

    def test_an_allowed_origin_reads_the_json_listing(self):
        result = self.fetch(self.files.url + "shared/", Accept="application/json")
        self.assertEqual(result.get("status"), 200, result)
        entries = {entry["name"]: entry for entry in json.loads(result["text"])}
        self.assertEqual(set(entries), {"sub", "a.txt", "b.bin"})
        self.assertEqual(entries["sub"]["type"], "directory")
        self.assertEqual((entries["a.txt"]["size"], entries["a.txt"]["href"]), (5, "a.txt"))
        self.assertEqual(entries["b.bin"]["size"], 2048)

    def test_an_allowed_origin_makes_ranged_reads(self):
        # Range is not a CORS-safelisted request field, so this takes a preflight first.
        result = self.fetch(self.files.url + "shared/a.txt", Range="bytes=1-3")
        self.assertEqual((result.get("status"), result.get("text")), (206, "lph"), result)
        self.assertEqual(result["contentRange"], "bytes 1-3/5")
        self.assertTrue(result["etag"])

    def test_a_server_without_cors_is_unreadable_from_another_origin(self):
        result = self.fetch(self.closed.url + "shared/", Accept="application/json")
        self.assertIn("error", result)
        self.assertIn("Failed to fetch", result["error"])


if __name__ == "__main__":
    unittest.main()
