"""A real browser uploads files through a listing's form: its multipart body, its Origin,
and the 303 back to the listing.  Skips like tests.test_browser without Chromium."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest

from tests.support import WAIT, ChromiumTestCase, NexServer


class UploadFormBrowserTest(ChromiumTestCase):
    """Headless Chromium posts the upload form of a listing served with uploads on."""

    @classmethod
    def start_servers(cls):
        cls.base = tempfile.mkdtemp(prefix="nex-upload-browser-")
        cls.root = os.path.join(cls.base, "root")
        os.makedirs(os.path.join(cls.root, "inbox"))
        cls.server = NexServer(cls.root, settings={"files": {"upload": "yes"}}).start()

    @classmethod
    def stop_servers(cls):
        cls.server.stop()
        shutil.rmtree(cls.base, ignore_errors=True)

    def test_form_uploads_files_and_returns_to_the_listing(self):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        local = tempfile.mkdtemp(prefix="nex-upload-source-")
        self.addCleanup(shutil.rmtree, local, ignore_errors=True)
        files = {"first note.txt": b"first\r\nfile\n", "data.bin": bytes(range(256)) * 300}
        for name, data in files.items():
            with open(os.path.join(local, name), "wb") as out:
                out.write(data)

        listing = self.server.url + "inbox/?sort=name"
        self.driver.get(listing)
        chooser = self.driver.find_element(By.CSS_SELECTOR, 'form.upload input[type="file"]')
        chooser.send_keys("\n".join(os.path.join(local, name) for name in files))
        self.driver.find_element(By.CSS_SELECTOR, 'form.upload button[type="submit"]').click()
        WebDriverWait(self.driver, WAIT).until(
            lambda d: d.find_elements(By.LINK_TEXT, "data.bin"),
            "the listing did not come back with the uploaded files")

        self.assertEqual(self.driver.current_url, listing)
        for name, data in files.items():
            with open(os.path.join(self.root, "inbox", name), "rb") as stored:
                self.assertEqual(stored.read(), data)
        log = self.server.wait_for_access_log(
            lambda text: '"POST /inbox/?sort=name HTTP/1.1" 303 ' in text)
        self.assertIn('"POST /inbox/?sort=name HTTP/1.1" 303 ', log)


if __name__ == "__main__":
    unittest.main()
