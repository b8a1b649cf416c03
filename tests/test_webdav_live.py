"""WebDAV against the real server on port 0, driven by real clients from Debian: rclone (its
WebDAV backend) and cadaver.  Without them the tests skip and say which package is missing."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import tempfile
import unittest

from tests.support import NexServer

RCLONE = shutil.which("rclone")
CADAVER = shutil.which("cadaver")
CLIENT_TIMEOUT = 120


class DavServerCase(unittest.TestCase):
    """One server per class with WebDAV write, deleting and renaming on, over a fresh root;
    its error log must hold no traceback when the class ends."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.base = os.path.realpath(tempfile.mkdtemp(prefix="nex-dav-live-"))
        cls.root = os.path.join(cls.base, "root")
        os.makedirs(cls.root)
        cls.server = NexServer(cls.root, settings={"files": {
            "upload": "yes", "webdav": "write", "allow_delete": "yes", "allow_rename": "yes",
            "upload_overwrite": "yes"}}).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.signal()
        try:
            cls.server.wait()
        finally:
            errors = cls.server.error_log()
            cls.server.stop()
            shutil.rmtree(cls.base, ignore_errors=True)
        if "Traceback" in errors:
            raise AssertionError(f"the error log holds a traceback:\n{errors}")


@unittest.skipUnless(RCLONE, "rclone is missing (apt-get install rclone)")
class RcloneTest(DavServerCase):

    def rclone(self, *args: str) -> str:
        remote = f":webdav,url='{self.server.url}':"
        arguments = [arg.replace("REMOTE:", remote) for arg in args]
        done = subprocess.run([RCLONE, "--config", os.devnull, "--retries", "1",
                               "--low-level-retries", "1", *arguments],
                              capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
        self.assertEqual(done.returncode, 0, done.stderr)
        return done.stdout

    def test_copy_up_check_move_delete_and_copy_down(self) -> None:
        tree = os.path.join(self.base, "tree")
        os.makedirs(os.path.join(tree, "photos", "2026"))
        with open(os.path.join(tree, "photos", "2026", "big.bin"), "wb") as out:
            out.write(os.urandom(3 * 1024 * 1024 + 17))
        for name, data in (("notes.txt", b"notes\n"), ("photos/a b.txt", b"spaced\n"),
                           ("photos/2026/\u00e9t\u00e9.txt", b"summer\n")):
            with open(os.path.join(tree, name), "wb") as out:
                out.write(data)
        self.rclone("copy", tree, "REMOTE:share")
        self.rclone("check", tree, "REMOTE:share")
        self.assertTrue(filecmp.cmp(os.path.join(tree, "photos", "2026", "big.bin"),
                                    os.path.join(self.root, "share", "photos", "2026",
                                                 "big.bin"), shallow=False))
        self.rclone("moveto", "REMOTE:share/notes.txt", "REMOTE:share/photos/notes.txt")
        self.rclone("purge", "REMOTE:share/photos/2026")
        self.assertEqual(sorted(self.rclone("lsf", "-R", "REMOTE:share").splitlines()),
                         ["photos/", "photos/a b.txt", "photos/notes.txt"])
        self.assertFalse(os.path.exists(os.path.join(self.root, "share", "photos", "2026")))
        down = os.path.join(self.base, "down")
        self.rclone("copy", "REMOTE:share", down)
        self.assertEqual(sorted(os.listdir(os.path.join(down, "photos"))),
                         ["a b.txt", "notes.txt"])
        with open(os.path.join(down, "photos", "notes.txt"), "rb") as moved:
            self.assertEqual(moved.read(), b"notes\n")


@unittest.skipUnless(CADAVER, "cadaver is missing (apt-get install cadaver)")
class CadaverTest(DavServerCase):

    def cadaver(self, script: str) -> str:
        done = subprocess.run([CADAVER, self.server.url], input=script, capture_output=True,
                              text=True, timeout=CLIENT_TIMEOUT, cwd=self.base)
        return done.stdout + done.stderr

    def test_a_scripted_session(self) -> None:
        local = os.path.join(self.base, "local.txt")
        with open(local, "w") as out:
            out.write("from cadaver\n")
        output = self.cadaver(
            "mkcol docs\n"
            "put local.txt docs/a.txt\n"
            "lock docs/a.txt\n"
            "put local.txt docs/a.txt\n"
            "unlock docs/a.txt\n"
            "copy docs/a.txt docs/b.txt\n"
            "move docs/b.txt docs/c.txt\n"
            "propset docs/a.txt colour red\n"
            "ls docs\n"
            "delete docs/a.txt\n"
            "quit\n")
        self.assertNotIn("failed:\nCould not", output)
        for step in ("Creating `docs': succeeded", "Locking `docs/a.txt': succeeded",
                     "Unlocking `docs/a.txt': succeeded",
                     "Copying `/docs/a.txt' to `/docs/b.txt':  succeeded",
                     "Moving `/docs/b.txt' to `/docs/c.txt':  succeeded",
                     "Deleting `docs/a.txt': succeeded"):
            self.assertIn(step, output)
        self.assertEqual(output.count("Uploading local.txt to `/docs/a.txt': [.. succeeded"), 2,
                         output)
        self.assertIn("403 Forbidden", output)  # dead properties are refused, not kept
        self.assertEqual(sorted(os.listdir(os.path.join(self.root, "docs"))), ["c.txt"])
        with open(os.path.join(self.root, "docs", "c.txt")) as copied:
            self.assertEqual(copied.read(), "from cadaver\n")
