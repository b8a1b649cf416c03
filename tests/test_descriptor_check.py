"""The suite's descriptor check: a test module that leaves a socket open fails.

Each test runs nose2 with the checkout's ``nose2.cfg`` on a throwaway module in a temporary
folder, as ``tests/run.sh`` runs the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

from tests.support import REPO, START_TIMEOUT

LEAKY = '''
import socket
import unittest

KEPT = []


class LeakTest(unittest.TestCase):
    def test_keeps_a_socket(self):
        KEPT.append(socket.socket())

    def test_drops_a_socket_unclosed(self):
        socket.socket()
'''

CLEAN = '''
import socket
import unittest


class ClassFixtureTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sock = socket.socket()

    @classmethod
    def tearDownClass(cls):
        cls.sock.close()

    def test_uses_the_class_socket(self):
        self.assertGreater(self.sock.fileno(), 2)

    def test_closes_its_own(self):
        with socket.socket() as sock:
            self.assertGreater(sock.fileno(), 2)
'''


@unittest.skipUnless(os.path.isdir("/proc/self/fd"), "the check reads /proc/self/fd")
class DescriptorCheckTest(unittest.TestCase):
    def run_module(self, source: str) -> subprocess.CompletedProcess:
        folder = tempfile.mkdtemp(prefix="nex-fd-check-")
        self.addCleanup(shutil.rmtree, folder)
        with open(os.path.join(folder, "test_module.py"), "w", encoding="utf-8") as out:
            out.write(textwrap.dedent(source))
        shutil.copy(os.path.join(REPO, "nose2.cfg"), folder)
        environment = {**os.environ, "PYTHONPATH": REPO}
        return subprocess.run([sys.executable, "-m", "nose2", "-v", "test_module"], cwd=folder,
                              env=environment, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=4 * START_TIMEOUT)

    def test_a_module_that_leaves_sockets_open_fails(self) -> None:
        result = self.run_module(LEAKY)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("test_keeps_a_socket (test_module.LeakTest", result.stderr)
        self.assertIn("FAIL: test_module_left_nothing_open (test_module.DescriptorCheck",
                      result.stderr)
        self.assertRegex(result.stderr, r"descriptor [0-9]+ left open: socket:\[[0-9]+\]")
        self.assertRegex(result.stderr, r"collected unclosed: unclosed <socket\.socket .*"
                                        r"test_module\.py:[0-9]+\)")

    def test_a_module_that_closes_everything_passes(self) -> None:
        result = self.run_module(CLEAN)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("test_module_left_nothing_open (test_module.DescriptorCheck", result.stderr)
        self.assertIn("Ran 3 tests", result.stderr)


if __name__ == "__main__":
    unittest.main()
