"""The same answers on every supported Python: Nex's response heads (Date aside) under the
oldest and the newest other interpreters on this machine equal this interpreter's.

The requests (tests/support/heads.py) fetch a file of every extension in the media-type
table and name IPv6 hosts every way, IPv4-mapped ones included.  Without another Python
3.9 or newer the comparison skips and says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from tests.support import REPO, START_TIMEOUT
from tests.support.heads import collect, make_root
from tests.support.interpreters import OLDEST_SUPPORTED, oldest_and_newest, other_interpreters


class InterpretersTest(unittest.TestCase):
    def test_only_other_supported_versions_each_once(self) -> None:
        found = other_interpreters()
        versions = [version for version, _ in found]
        self.assertEqual(versions, sorted(set(versions)))
        for version, path in found:
            with self.subTest(path=path):
                self.assertGreaterEqual(version, OLDEST_SUPPORTED)
                self.assertNotEqual(version, sys.version_info[:2])
                self.assertTrue(os.access(path, os.X_OK))
        self.assertEqual(oldest_and_newest(),
                         list(dict.fromkeys([path for _, path in found[:1] + found[-1:]])))


class SameHeadsTest(unittest.TestCase):
    def test_heads_are_the_same_on_the_oldest_and_newest_other_pythons(self) -> None:
        others = oldest_and_newest()
        if not others:
            self.skipTest("no other Python 3.9 or newer is installed")
        root = tempfile.mkdtemp(prefix="nex-versions-")
        self.addCleanup(shutil.rmtree, root)
        make_root(root)
        expected = collect(root)
        for path in others:
            with self.subTest(python=path):
                result = subprocess.run(
                    [path, "-m", "tests.support.heads", root], cwd=REPO,
                    env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True,
                    stdin=subprocess.DEVNULL, timeout=4 * START_TIMEOUT)
                self.assertEqual(result.returncode, 0, result.stderr)
                heads = result.stdout.splitlines()
                self.assertEqual(len(heads), len(expected))
                for mine, theirs in zip(expected, heads):
                    self.assertEqual(theirs, mine)


if __name__ == "__main__":
    unittest.main()
