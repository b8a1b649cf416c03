"""Screenshots of the listing (light and dark), the upload page and an error page, taken by
headless Chromium against the real server, each checked against what its DOM must hold.

The pictures go to a private folder; with ``NEX_SCREENSHOTS=FOLDER`` in the environment they
are kept there too (``NEX_SCREENSHOTS=docs/screenshots bash tests/run.sh
tests.test_screenshots`` refreshes the ones the README shows).  Their files have fixed
times, so the pictures change only when the pages do.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile

from tests.support import NexServer
from tests.support import SAMPLES, WAIT, ChromiumTestCase

#: 2026-11-24 10:00 UTC, the time every file of the pictured folder shows.
FIXED_TIME = 1795514400
WIDTH, HEIGHT = 1100, 760
#: (name in the folder, sample it copies or None for a folder, kind the row must show)
ENTRIES = (("Holiday photos", None, "folder"), ("Projects", None, "folder"),
           ("clip.webm", "clip.webm", "video"), ("logo.png", "logo.png", "image"),
           ("notes.md", "readme.txt", "text"), ("readme.txt", "readme.txt", "text"),
           ("tone.ogg", "tone.ogg", "audio"))


def png_size(path: str):
    """``(width, height)`` of the PNG at ``path``."""
    with open(path, "rb") as image:
        head = image.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError(f"not a PNG: {head[:8]!r}")
    return struct.unpack(">II", head[16:24])


class ScreenshotTest(ChromiumTestCase):
    """One server on a folder made for the pictures, uploads on; a fresh browser per test."""

    @classmethod
    def start_servers(cls):
        cls.root = tempfile.mkdtemp(prefix="nex-screens-")
        for name, sample, _ in ENTRIES:
            path = os.path.join(cls.root, name)
            if sample is None:
                os.mkdir(path)
            else:
                shutil.copyfile(os.path.join(SAMPLES, sample), path)
            os.utime(path, (FIXED_TIME, FIXED_TIME))
        cls.server = NexServer(cls.root, {"files": {"upload": "yes", "zip_download": "yes"}})
        cls.server.start()
        cls.pictures = tempfile.mkdtemp(prefix="nex-pictures-")

    @classmethod
    def stop_servers(cls):
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)
        shutil.rmtree(cls.pictures, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.driver.set_window_size(WIDTH, HEIGHT)

    def open(self, path: str, dark: bool = False):
        from selenium.webdriver.support.ui import WebDriverWait
        scheme = "dark" if dark else "light"
        self.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
            "features": [{"name": "prefers-color-scheme", "value": scheme}]})
        self.driver.get(self.server.url + path.lstrip("/"))
        WebDriverWait(self.driver, WAIT).until(
            lambda d: d.execute_script("return document.readyState") == "complete")

    def shoot(self, name: str) -> str:
        path = os.path.join(self.pictures, name)
        self.assertTrue(self.driver.save_screenshot(path))
        width, height = png_size(path)
        self.assertGreater(width, 0)
        self.assertGreater(height, 0)
        keep = os.environ.get("NEX_SCREENSHOTS")
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copyfile(path, os.path.join(keep, name))
        return path

    def background_is_dark(self) -> bool:
        rgb = self.driver.execute_script(
            "return getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number)")
        return sum(rgb[:3]) < 3 * 128

    def assert_listing_dom(self):
        from selenium.webdriver.common.by import By
        self.assertEqual(self.driver.title, "Index of /")
        rows = self.driver.find_elements(By.CSS_SELECTOR, "tbody tr")
        self.assertEqual([row.get_attribute("data-kind") for row in rows],
                         [kind for _, _, kind in ENTRIES])
        for row, (name, sample, kind) in zip(rows, ENTRIES):
            link = row.find_element(By.CSS_SELECTOR, "td.name a")
            self.assertEqual(link.text, name + ("/" if sample is None else ""))
            icon = row.find_element(By.CSS_SELECTOR, "td.name svg.icon use")
            self.assertEqual(icon.get_attribute("href"), f"#i-{kind}")
            if sample is not None:
                size = row.find_element(By.CSS_SELECTOR, "td.size")
                exact = os.path.getsize(os.path.join(SAMPLES, sample))
                self.assertEqual(size.get_attribute("title"), f"{exact} bytes")
        for selector in ("#filter", "form.search input[name=search]", "#qr-button",
                         "a.download", "h1 a[aria-current=page]"):
            self.assertTrue(self.driver.find_element(By.CSS_SELECTOR, selector).is_displayed(),
                            selector)

    def test_listing_light(self):
        self.open("/")
        self.assert_listing_dom()
        self.assertFalse(self.background_is_dark())
        self.shoot("listing-light.png")

    def test_listing_dark(self):
        self.open("/", dark=True)
        self.assert_listing_dom()
        self.assertTrue(self.background_is_dark())
        self.shoot("listing-dark.png")

    def test_filter_narrows_without_a_request(self):
        from selenium.webdriver.common.by import By
        self.open("/")
        fetched = "return performance.getEntriesByType('resource').length"
        before = self.driver.execute_script(fetched)
        self.driver.find_element(By.ID, "filter").send_keys("OG")
        visible = [row.find_element(By.CSS_SELECTOR, "td.name a").text for row in
                   self.driver.find_elements(By.CSS_SELECTOR, "tbody tr") if row.is_displayed()]
        self.assertEqual(visible, ["logo.png", "tone.ogg"])
        self.assertEqual(self.driver.execute_script(fetched), before)

    def test_image_opens_in_the_lightbox(self):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
        self.open("/")
        self.driver.find_element(By.LINK_TEXT, "logo.png").click()
        image = WebDriverWait(self.driver, WAIT).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "#viewer[open] .stage img"))
        WebDriverWait(self.driver, WAIT).until(
            lambda d: d.execute_script("return arguments[0].naturalWidth", image) > 0)
        self.assertEqual(self.driver.current_url, self.server.url)
        self.shoot("lightbox.png")

    def test_upload_page(self):
        from selenium.webdriver.common.by import By
        self.open("/Projects/")
        form = self.driver.find_element(By.CSS_SELECTOR, "form.upload")
        self.assertEqual(form.get_attribute("enctype"), "multipart/form-data")
        field = form.find_element(By.CSS_SELECTOR, "input[type=file]")
        self.assertTrue(field.get_attribute("multiple"))
        self.assertEqual(form.find_element(By.CSS_SELECTOR, "button").text, "Upload")
        self.shoot("upload.png")

    def test_error_page(self):
        from selenium.webdriver.common.by import By
        self.open("/no-such-file.txt")
        self.assertEqual(self.driver.title, "404 Not Found")
        self.assertEqual(self.driver.find_element(By.TAG_NAME, "h1").text, "Not Found")
        self.assertEqual(self.driver.find_element(By.CSS_SELECTOR, ".code").text, "Error 404")
        self.assertIn("/no-such-file.txt", self.driver.find_element(By.CSS_SELECTOR,
                                                                     ".detail").text)
        self.assertIn(f"Server at 127.0.0.1 Port {self.server.port}",
                      self.driver.find_element(By.TAG_NAME, "address").text)
        self.shoot("error.png")


if __name__ == "__main__":
    import unittest
    unittest.main()
