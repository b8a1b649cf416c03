"""Nex on a free-threaded Python (3.13t and later): nothing it loads turns the GIL back on.

CPython's free-threaded build enables the GIL again, for the rest of the process, when it
loads a C extension that has not declared it can run without it, and says so in a
RuntimeWarning.  The tests here run the server and every module of Nex with ``PYTHON_GIL``
unset (``PYTHON_GIL=0``, which ``tests/run.sh`` sets, would keep the GIL off and hide the
warning) and fail on that warning; they skip on a build with the GIL.  The concurrency tests
that hammer Nex's shared tables from threads run on the free-threaded build through
``tests/run.sh`` (see docs/testing.md); the last class tests how it finds that build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import unittest
from unittest import mock

from tests.support import REPO, NexServer, http_request
from tests.support import interpreters
from tests.support.interpreters import free_threaded

FREE_THREADED = sysconfig.get_config_var("Py_GIL_DISABLED") == 1
NEEDS_FREE_THREADED = "needs a free-threaded Python (3.13t or later)"
#: What CPython's warning says when a module turns the GIL back on.
GIL_ENABLED = "global interpreter lock (GIL) has been enabled"

_IMPORT_EVERYTHING = """\
import pkgutil, sys
import nex
for module in pkgutil.walk_packages(nex.__path__, "nex."):
    __import__(module.name)
print(sys._is_gil_enabled())
"""


def _without_python_gil():
    """A patch of the environment that leaves ``PYTHON_GIL`` out, so the build's default
    (the GIL off, turned on by an extension that needs it) holds."""
    environment = {name: value for name, value in os.environ.items() if name != "PYTHON_GIL"}
    return mock.patch.dict(os.environ, environment, clear=True)


@unittest.skipUnless(FREE_THREADED, NEEDS_FREE_THREADED)
class NexKeepsTheGilOffTest(unittest.TestCase):
    def test_importing_every_module_of_nex_keeps_the_gil_off(self):
        with _without_python_gil():
            result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c",
                                     _IMPORT_EVERYTHING], capture_output=True, text=True,
                                    cwd=REPO, stdin=subprocess.DEVNULL, timeout=60)
        self.assertEqual((result.returncode, result.stdout), (0, "False\n"), result.stderr)

    def test_serving_files_listings_archives_and_errors_keeps_the_gil_off(self):
        base = tempfile.mkdtemp(prefix="nex-free-threaded-")
        self.addCleanup(shutil.rmtree, base)
        folder = os.path.join(base, "folder")
        os.mkdir(folder)
        with open(os.path.join(folder, "page.html"), "w") as page:
            page.write("<p>Nex</p>\n" * 200)
        server = NexServer(base, settings={"files": {"zip_download": "yes"}})
        with _without_python_gil():
            server.start()
        self.addCleanup(server.stop)
        requests = (("/folder/page.html", {"Accept-Encoding": "gzip"}, 200),
                    ("/folder/", {}, 200),
                    ("/folder/?format=json", {}, 200),
                    ("/folder/?download=zip", {}, 200),
                    ("/?search=page", {}, 200),
                    ("/missing.html", {}, 404))
        for target, headers, status in requests:
            with self.subTest(target=target):
                self.assertEqual(http_request(server, "GET", target, headers=headers)[0], status)
        server.signal()
        self.assertEqual(server.wait(), 0)
        self.assertNotIn(GIL_ENABLED, server.stderr() + server.error_log())


class FindingTheFreeThreadedPythonTest(unittest.TestCase):
    """:func:`tests.support.interpreters.free_threaded`, which ``tests/run.sh`` asks."""

    def test_none_is_found_without_one_on_path_or_named(self):
        empty = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, empty)
        with mock.patch.dict(os.environ, {"PATH": empty}):
            os.environ.pop("NEX_FREE_THREADED_PYTHON", None)
            self.assertIsNone(free_threaded())

    @unittest.skipIf(FREE_THREADED, "needs a Python with the GIL")
    def test_a_named_python_with_the_gil_is_refused_not_tested_as_free_threaded(self):
        with mock.patch.dict(os.environ, {"NEX_FREE_THREADED_PYTHON": sys.executable}):
            with self.assertRaisesRegex(ValueError, "is not a free-threaded Python"):
                free_threaded()

    @unittest.skipUnless(FREE_THREADED, NEEDS_FREE_THREADED)
    def test_a_named_free_threaded_python_is_the_one_used(self):
        with mock.patch.dict(os.environ, {"NEX_FREE_THREADED_PYTHON": sys.executable}):
            self.assertEqual(free_threaded(), sys.executable)

    def test_a_free_threaded_python_is_not_taken_for_a_version_of_the_suite_run(self):
        # The whole suite's runs on other versions need every test requirement, which a
        # free-threaded build lacks wheels for: pyenv's 3.14t must not stand in for 3.14.
        for free, expected in ((True, []), (False, [((3, 99), "/pyenv/3.99/bin/python3")])):
            with mock.patch.object(interpreters, "_candidates",
                                   return_value=["/pyenv/3.99/bin/python3"]), \
                    mock.patch.object(interpreters, "_version", return_value=(3, 99)), \
                    mock.patch.object(interpreters, "is_free_threaded", return_value=free):
                self.assertEqual(interpreters.other_interpreters(), expected)


if __name__ == "__main__":
    unittest.main()
