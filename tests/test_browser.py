"""A real browser against the real server: media seeking through ranges, and the listing.

Headless Chromium driven by Selenium loads the shipped demo site from ``public_html``.
The tests need the ``selenium`` package and Debian's ``chromium`` and ``chromium-driver``
(``tests/run.sh`` installs them); without them they skip and say so on stderr.  Selenium is
given the driver's path, so it never looks for or downloads a driver itself.
"""

from __future__ import annotations

import os
import unittest
from urllib.parse import quote

from tests.support import PUBLIC_HTML, SAMPLES, WAIT, ChromiumTestCase, NexServer

# Waits for the media element's metadata, seeks to the middle and reports once 'seeked'
# fires; a failed load reports the media error instead of running into the time-out.
SEEK_TO_MIDDLE = """
const done = arguments[arguments.length - 1];
const media = document.getElementById(arguments[0]);
const fail = () => done({error: media.error ? media.error.code + ": " + media.error.message
                                            : "the media source failed to load"});
media.addEventListener("error", fail, {once: true});
for (const source of media.querySelectorAll("source")) {
  source.addEventListener("error", fail, {once: true});
}
const seek = () => {
  media.addEventListener("seeked", () => done({duration: media.duration,
                                               currentTime: media.currentTime}), {once: true});
  media.currentTime = media.duration / 2;
};
if (media.readyState >= 1) { seek(); } else { media.addEventListener("loadedmetadata", seek,
                                                                     {once: true}); }
"""

# Fetches each URL from the page's own origin and reports its status and body length.
FETCH_ALL = """
const done = arguments[arguments.length - 1];
Promise.all(arguments[0].map(async (url) => {
  const response = await fetch(url, {cache: "no-store"});
  const body = await response.arrayBuffer();
  return {url: url, status: response.status, length: body.byteLength};
})).then(done, (error) => done([{error: String(error)}]));
"""


class BrowserTest(ChromiumTestCase):
    """One server on the demo site per class; one fresh browser profile per test."""

    @classmethod
    def start_servers(cls):
        cls.server = NexServer(PUBLIC_HTML).start()

    @classmethod
    def stop_servers(cls):
        cls.server.stop()

    def setUp(self):
        self.log_start = len(self.server.access_log())
        super().setUp()

    def new_log_lines(self, wanted: str) -> str:
        """The access log written since this test began, once it contains ``wanted``."""
        start = self.log_start
        return self.server.wait_for_access_log(lambda text: wanted in text[start:])[start:]

    def wait_until(self, condition, message: str):
        """What ``condition(driver)`` returns once it is truthy, waiting up to WAIT seconds."""
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, WAIT).until(condition, message)

    def wait_for_media(self, element_id: str, predicate, message: str) -> dict:
        """The media element's readyState, currentTime and duration (None while not finite),
        once ``predicate`` holds for them."""
        script = ("const m = document.getElementById(arguments[0]);"
                  "return {readyState: m.readyState, currentTime: m.currentTime,"
                  "        duration: isFinite(m.duration) ? m.duration : null};")

        def ready(driver):
            state = driver.execute_script(script, element_id)
            return state if predicate(state) else None
        return self.wait_until(ready, message)

    def test_video_seeks_to_the_middle_through_range_requests(self):
        from selenium.webdriver.common.by import By

        self.driver.get(self.server.url)
        self.wait_until(lambda d: d.find_elements(By.ID, "demo-video"), "no #demo-video")
        result = self.driver.execute_async_script(SEEK_TO_MIDDLE, "demo-video")
        self.assertNotIn("error", result, result)
        duration = result["duration"]
        self.assertAlmostEqual(duration, 10.0, delta=0.5)
        state = self.wait_for_media("demo-video", lambda s: s["readyState"] >= 2,
                                    "the video never had data at the seek position")
        self.assertGreaterEqual(state["readyState"], 2)
        self.assertAlmostEqual(state["currentTime"], duration / 2, delta=0.5)
        ranged = '"GET /samples/clip.webm HTTP/1.1" 206 '
        self.assertIn(ranged, self.new_log_lines(ranged))

    def test_ogg_audio_reports_its_duration(self):
        from selenium.webdriver.common.by import By

        self.driver.get(self.server.url)
        self.wait_until(lambda d: d.find_elements(By.ID, "demo-audio"), "no #demo-audio")
        state = self.wait_for_media("demo-audio", lambda s: s["duration"],
                                    "the audio never reported a finite duration")
        self.assertAlmostEqual(state["duration"], 4.0, delta=0.5)
        ranged = '"GET /samples/tone.ogg HTTP/1.1" 206 '
        self.assertIn(ranged, self.new_log_lines(ranged))

    def test_listing_links_every_sample_to_its_url(self):
        from selenium.webdriver.common.by import By

        self.driver.get(self.server.url)
        self.wait_until(lambda d: d.find_elements(By.CSS_SELECTOR, 'a[href="samples/"]'),
                        "the landing page has no link to samples/")
        self.driver.find_element(By.CSS_SELECTOR, 'a[href="samples/"]').click()
        self.wait_until(lambda d: d.title == "Index of /samples/",
                        "the listing of /samples/ did not open")
        self.assertEqual(self.driver.current_url, self.server.url + "samples/")

        links = {link.text: link.get_attribute("href") for link in
                 self.driver.find_elements(By.CSS_SELECTOR, "tbody td.name a")}
        names = sorted(name for name in os.listdir(SAMPLES) if not name.startswith("."))
        expected = {name: self.server.url + "samples/" + quote(name) for name in names}
        expected["../"] = self.server.url
        self.assertEqual(links, expected)

        fetched = self.driver.execute_async_script(FETCH_ALL, [expected[name] for name in names])
        self.assertEqual([(item.get("url"), item.get("status"), item.get("length"))
                          for item in fetched],
                         [(expected[name], 200, os.path.getsize(os.path.join(SAMPLES, name)))
                          for name in names])

        # A text file opens in place, in the listing's viewer; its Open link leads to it.
        self.driver.find_element(By.LINK_TEXT, "readme.txt").click()
        with open(os.path.join(SAMPLES, "readme.txt"), encoding="utf-8") as f:
            text = f.read().split()
        self.wait_until(lambda d: d.find_element(By.CSS_SELECTOR, "#viewer pre").text.split()
                        == text, "readme.txt did not show in the viewer")
        self.assertEqual(self.driver.current_url, self.server.url + "samples/")
        self.driver.find_element(By.CSS_SELECTOR, "#viewer a.open").click()
        self.wait_until(lambda d: d.current_url == expected["readme.txt"],
                        "the viewer's Open link did not open readme.txt")
        shown = self.wait_until(lambda d: d.find_element(By.TAG_NAME, "body").text,
                                "readme.txt rendered empty")
        self.assertEqual(shown.split(), text)


if __name__ == "__main__":
    unittest.main()
