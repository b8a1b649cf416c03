"""The upload panel in headless Chromium: files and a folder dropped on a listing arrive
whole through the resumable protocol although Nex is killed and restarted mid-way; New
folder, Rename and Delete from the listing.  Skips like tests.test_browser without Chromium."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from typing import Dict

from tests.support import NexServer, wait_until
from tests.support import WAIT, ChromiumTestCase

SETTINGS = {"files": {"upload": "yes", "allow_delete": "yes", "allow_rename": "yes"}}
#: What the page drops: relative path -> (size, seed); the bytes are (i * 31 + seed) % 256.
DROPPED = {"first.bin": (3 * 1024 * 1024 + 5, 1), "second.txt": (700 * 1024, 2),
           "album/one.bin": (2 * 1024 * 1024, 3), "album/deeper/two.bin": (1024 * 1024 + 1, 4)}
UPLOAD_TIMEOUT = 180

# Builds the files in the page and drops them on the listing as a drag from a file manager
# delivers them: File objects, a folder's files carrying their relative path.
DROP_SCRIPT = """
const files = Object.entries(arguments[0]).map(([path, [size, seed]]) => {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + seed) & 255;
  const file = new File([bytes], path.split("/").pop());
  Object.defineProperty(file, "webkitRelativePath", {value: path.includes("/") ? path : ""});
  return file;
});
const drop = new Event("drop", {bubbles: true, cancelable: true});
Object.defineProperty(drop, "dataTransfer", {value: {types: ["Files"], items: [], files}});
document.body.dispatchEvent(drop);
"""


def expected(size: int, seed: int) -> bytes:
    pattern = bytes((i * 31 + seed) & 255 for i in range(256))
    return (pattern * (size // 256 + 1))[:size]


class UploadPanelBrowserTest(ChromiumTestCase):
    """A fresh server over a fresh root per test, on a port kept across its restart."""

    def setUp(self):
        self.base = tempfile.mkdtemp(prefix="nex-upload-page-")
        self.addCleanup(shutil.rmtree, self.base, ignore_errors=True)
        self.root = os.path.join(self.base, "root")
        os.makedirs(os.path.join(self.root, "inbox"))
        self.server = NexServer(self.root, settings=SETTINGS).start()
        self.addCleanup(lambda: self.server.stop())
        super().setUp()

    def kill_and_restart_on_the_same_port(self) -> None:
        """Kill Nex as a crash or a pulled cable would stop it, and start it again."""
        port = self.server.port
        self.server.process.kill()
        self.server.process.wait()
        errors = self.server.error_log()
        self.server.stop()
        self.assertNotIn("Traceback", errors)
        server = NexServer(self.root, settings=SETTINGS)
        server.args[server.args.index("--port") + 1] = str(port)
        self.server = server.start()

    def partials(self) -> Dict[str, int]:
        found = {}
        for folder, _, names in os.walk(self.root):
            for name in names:
                if name.startswith(".nex-upload-"):
                    found[name] = os.path.getsize(os.path.join(folder, name))
        return found

    def arrived(self) -> bool:
        for path, (size, _) in DROPPED.items():
            full = os.path.join(self.root, "inbox", path)
            if not os.path.isfile(full) or os.path.getsize(full) != size:
                return False
        return True

    def wait_for(self, condition, message: str, timeout: float = UPLOAD_TIMEOUT) -> None:
        """Poll ``condition`` until it holds; fails with ``message`` after ``timeout``."""
        if not wait_until(condition, timeout, 0.05):
            self.fail(message)

    def test_dropped_files_and_folder_arrive_whole_across_a_restart(self):
        from selenium.webdriver.common.by import By

        self.driver.get(self.server.url + "inbox/")
        self.wait_for(lambda: self.driver.find_elements(By.CSS_SELECTOR, ".nex-uploads"),
                      "the upload panel did not appear", WAIT)
        # Slow the browser's uploads down so that the restart lands in the middle.
        self.driver.set_network_conditions(offline=False, latency=5,
                                           download_throughput=50 * 1024 * 1024,
                                           upload_throughput=1024 * 1024)
        self.driver.execute_script(DROP_SCRIPT, {path: list(value)
                                                 for path, value in DROPPED.items()})
        self.wait_for(lambda: any(size > 0 for size in self.partials().values()),
                      "no upload began")
        self.assertFalse(self.arrived(), "the uploads finished before the restart")
        self.kill_and_restart_on_the_same_port()
        self.wait_for(self.arrived, "the uploads did not finish after the restart")
        for path, (size, seed) in DROPPED.items():
            with open(os.path.join(self.root, "inbox", path), "rb") as stored:
                self.assertEqual(stored.read(), expected(size, seed), path)
        self.wait_for(lambda: not self.partials(), "temporary files were left behind")
        states = [row.get_attribute("data-state") for row in
                  self.driver.find_elements(By.CSS_SELECTOR, ".nex-uploads li")]
        self.assertTrue(states and all(state == "done" for state in states), states)

    def test_a_conflict_offers_to_keep_both(self):
        from selenium.webdriver.common.by import By

        with open(os.path.join(self.root, "inbox", "second.txt"), "wb") as out:
            out.write(b"already here")
        self.driver.get(self.server.url + "inbox/")
        self.driver.execute_script(DROP_SCRIPT, {"second.txt": [1000, 9]})
        self.wait_for(lambda: self.driver.find_elements(
            By.XPATH, "//button[text()='Keep both']"), "no Keep both offered", WAIT)
        self.driver.find_element(By.XPATH, "//button[text()='Keep both']").click()
        kept = os.path.join(self.root, "inbox", "second (1).txt")
        self.wait_for(lambda: os.path.isfile(kept) and os.path.getsize(kept) == 1000,
                      "the second copy did not arrive", WAIT)
        with open(os.path.join(self.root, "inbox", "second.txt"), "rb") as original:
            self.assertEqual(original.read(), b"already here")

    def answer_prompt(self, button, text: str, done, what: str, link: str) -> None:
        """Click ``button``, type ``text`` into the prompt it opens, and wait until ``done()``
        holds and the reloaded listing links ``link``."""
        from selenium.webdriver.common.by import By

        button.click()
        prompt = self.driver.switch_to.alert
        prompt.send_keys(text)
        prompt.accept()
        self.wait_for(done, f"the {what} did not happen", WAIT)
        self.wait_for(lambda: self.driver.find_elements(By.LINK_TEXT, link),
                      "the listing did not reload", WAIT)

    def test_new_folder_rename_and_delete_after_confirming(self):
        from selenium.webdriver.common.by import By

        inbox = os.path.join(self.root, "inbox")
        with open(os.path.join(inbox, "old.txt"), "wb") as out:
            out.write(b"old")
        self.driver.get(self.server.url + "inbox/")
        self.answer_prompt(self.driver.find_element(By.CSS_SELECTOR, "button.new-folder"),
                           "made here", lambda: os.path.isdir(os.path.join(inbox, "made here")),
                           "new folder", "made here/")
        row = self.driver.find_element(By.XPATH, "//a[text()='old.txt']/..")
        self.answer_prompt(row.find_element(By.XPATH, "button[text()='Rename']"), "new.txt",
                           lambda: os.path.isfile(os.path.join(inbox, "new.txt")), "rename",
                           "new.txt")
        row = self.driver.find_element(By.XPATH, "//a[text()='new.txt']/..")
        row.find_element(By.XPATH, "button[text()='Delete']").click()
        self.driver.switch_to.alert.dismiss()  # changed their mind: nothing goes
        self.assertTrue(os.path.isfile(os.path.join(inbox, "new.txt")))
        row.find_element(By.XPATH, "button[text()='Delete']").click()
        self.driver.switch_to.alert.accept()
        self.wait_for(lambda: not os.path.exists(os.path.join(inbox, "new.txt")),
                      "the file was not deleted", WAIT)

if __name__ == "__main__":
    unittest.main()
