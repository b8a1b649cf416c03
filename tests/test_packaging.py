"""``pip install .`` gives a ``nex`` that works outside the checkout."""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest
import zipfile

from nex import SERVER_SOFTWARE, __version__
from tests.support import REPO, ResponseReader, wait_for_line


class WheelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="nex-wheel-")
        source = os.path.join(cls.work, "source")
        # Build from a copy: building in place would leave build/ and *.egg-info behind.
        for folder in ("nex", "error_pages", "other_templates"):
            shutil.copytree(os.path.join(REPO, folder), os.path.join(source, folder),
                            ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "setup.py", "README.md", "MANIFEST.in", "settings.conf"):
            shutil.copy2(os.path.join(REPO, name), source)
        out = os.path.join(cls.work, "dist")
        build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                                "--no-build-isolation", "--wheel-dir", out, source],
                               capture_output=True, text=True, timeout=300)
        if build.returncode != 0:
            raise AssertionError(f"building the wheel failed:\n{build.stdout}{build.stderr}")
        cls.wheel = glob.glob(os.path.join(out, "nex-*.whl"))[0]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def test_wheel_ships_templates_error_pages_and_the_console_script(self):
        with zipfile.ZipFile(self.wheel) as wheel:
            names = set(wheel.namelist())
            entry_points = next(wheel.read(name).decode() for name in names
                                if name.endswith(".dist-info/entry_points.txt"))
        for page in os.listdir(os.path.join(REPO, "error_pages")):
            self.assertIn(f"nex/error_pages/{page}", names)
        self.assertIn("nex/other_templates/dir.html", names)
        self.assertIn("nex/other_templates/upload.js", names)
        with zipfile.ZipFile(self.wheel) as wheel:
            shipped = wheel.read("nex/settings.conf")
        with open(os.path.join(REPO, "settings.conf"), "rb") as checkout:
            self.assertEqual(shipped, checkout.read())
        self.assertIn("nex = nex.process.cli:main", entry_points)

    def test_metadata_comes_from_pyproject(self):
        with zipfile.ZipFile(self.wheel) as wheel:
            metadata = next(wheel.read(name).decode() for name in wheel.namelist()
                            if name.endswith(".dist-info/METADATA"))
        self.assertIn(f"Version: {__version__}\n", metadata)
        self.assertIn("Requires-Python: >=3.9\n", metadata)
        self.assertIn("Provides-Extra: qr\n", metadata)
        self.assertRegex(metadata, r"Requires-Dist: segno[^\n]*; extra == .qr.")
        self.assertNotRegex(metadata, r"Requires-Dist: (?!segno)")

    def test_setup_py_is_only_a_shim(self):
        with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as source:
            text = source.read()
        self.assertIn("setup(cmdclass=", text)
        self.assertNotIn("name=", text)

    def test_installed_nex_serves_a_folder_outside_the_checkout(self):
        site = os.path.join(self.work, "site-packages")
        with zipfile.ZipFile(self.wheel) as wheel:
            wheel.extractall(site)
        served = os.path.join(self.work, "somewhere")
        os.makedirs(served)
        with open(os.path.join(served, "hello.txt"), "wb") as f:
            f.write(b"from anywhere")
        log = os.path.join(self.work, "nex.out")
        env = {**os.environ, "PYTHONPATH": site}
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c",
                 "import sys; from nex.process.cli import main; sys.exit(main())",
                 "--root", served, "--port", "0"],
                cwd=self.work, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        try:
            port = self.wait_for_port(log, process)
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                reader = ResponseReader(sock)
                sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")
                self.assertEqual(reader.read()[2], b"from anywhere")
                sock.sendall(b"GET /missing HTTP/1.1\r\nHost: localhost\r\n"
                             b"Accept: text/html\r\n\r\n")
                status, _, page = reader.read()
                self.assertEqual(status, 404)
                self.assertIn(f"{SERVER_SOFTWARE} Server at localhost Port".encode(), page)
        finally:
            process.terminate()
            self.assertEqual(process.wait(30), 0)

    def test_installed_nex_writes_the_shipped_settings_file(self):
        site = os.path.join(self.work, "site-packages-write")
        with zipfile.ZipFile(self.wheel) as wheel:
            wheel.extractall(site)
        written = os.path.join(self.work, "written.conf")
        result = subprocess.run(
            [sys.executable, "-c", "import sys; from nex.process.cli import main; sys.exit(main())",
             "--write-config", written],
            cwd=self.work, env={**os.environ, "PYTHONPATH": site}, capture_output=True,
            text=True, timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(written, "rb") as copy, \
                open(os.path.join(REPO, "settings.conf"), "rb") as shipped:
            self.assertEqual(copy.read(), shipped.read())

    @staticmethod
    def wait_for_port(log: str, process: subprocess.Popen) -> int:
        match = wait_for_line(log, process, re.compile(r"http://127\.0\.0\.1:(\d+)/"))
        if match:
            return int(match.group(1))
        with open(log, encoding="utf-8", errors="replace") as f:
            raise AssertionError(f"nex did not start: {f.read()}")


if __name__ == "__main__":
    unittest.main()
