"""Headless Chromium for the browser tests: what they need, and a fresh profile per test."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import unittest
from unittest import mock

from tests.support.server import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PUBLIC_HTML = os.path.join(REPO, "public_html")
SAMPLES = os.path.join(PUBLIC_HTML, "samples")
#: Seconds to wait for anything the browser does; generous for slow machines.
WAIT = 30
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
)

def missing_requirements() -> str:
    """Why the browser tests cannot run here, or an empty string when they can."""
    reasons = []
    if importlib.util.find_spec("selenium") is None:
        reasons.append("the selenium package is missing (pip install -r tests/requirements.txt)")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            reasons.append(f"{path} is missing (apt-get install {package})")
    return "; ".join(reasons)


class ChromiumTestCase(unittest.TestCase):
    """Skips the class without Chromium; starts a fresh headless browser profile per test.

    Subclasses start their servers in :meth:`start_servers` and stop them in
    :meth:`stop_servers`; ``self.driver`` is the browser.
    """

    @classmethod
    def setUpClass(cls):
        reason = missing_requirements()
        if reason:
            print(f"\nBROWSER TESTS SKIPPED: {reason}", file=sys.stderr, flush=True)
            raise unittest.SkipTest(reason)
        # Selenium Manager is never needed with an explicit driver path; should anything
        # still call it, it must neither report usage nor go to the network.
        cls.environment = mock.patch.dict(os.environ, {"SE_AVOID_STATS": "true",
                                                       "SE_OFFLINE": "true"})
        cls.environment.start()
        try:
            cls.start_servers()
        except BaseException:
            cls.environment.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.stop_servers()
        cls.environment.stop()

    @classmethod
    def start_servers(cls):
        """Start what the class's tests browse."""

    @classmethod
    def stop_servers(cls):
        """Stop what :meth:`start_servers` started."""

    def setUp(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="nex-chromium-")
        self.addCleanup(shutil.rmtree, self.profile, ignore_errors=True)
        options = Options()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER),
                                       options=options)
        self.addCleanup(self.driver.quit)
        self.driver.set_page_load_timeout(WAIT)
        self.driver.set_script_timeout(WAIT)
