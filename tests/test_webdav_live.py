"""WebDAV against the real server on port 0, driven by real clients from Debian: rclone (its
WebDAV backend) and cadaver.  Without them those tests skip and say which package is missing.
Then the access policy and the write guard over plain requests, for WebDAV and resumable
uploads alike."""

from __future__ import annotations

import fcntl
import filecmp
import os
import select
import shutil
import subprocess
import sys
import unittest
import xml.etree.ElementTree as ElementTree
from typing import Dict, List, Tuple

from nex.files.davwrite import MAX_FOLDER_DEPTH
from tests.support.access import ANONYMOUS, RIGHT, ServerTestCase, make_chain, remove_chain
from tests.support import read_all, wait_until
from tests.support.upload import LiveUploadCase, reply

RCLONE = shutil.which("rclone")
CADAVER = shutil.which("cadaver")
CLIENT_TIMEOUT = 120


class DavServerCase(LiveUploadCase):
    """The live upload tests' server and root, with WebDAV write, deleting, renaming and
    overwriting on; its error log must hold no traceback when the class ends."""

    settings = {"files": {"upload": "yes", "webdav": "write", "allow_delete": "yes",
                          "allow_rename": "yes", "upload_overwrite": "yes"}}


class LockDuringUploadTest(DavServerCase):
    """A lock taken while a PUT's body comes in, through another connection, stops the PUT
    (423) and leaves the file as it was."""

    LOCKINFO = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
                b'</D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>')

    def test_the_put_gets_423(self) -> None:
        with open(os.path.join(self.folder, "page.html"), "wb") as out:
            out.write(b"old")
        with self.server.connect() as uploading:
            uploading.sendall(f"PUT {self.path('page.html')} HTTP/1.1\r\nHost: localhost\r\n"
                              "Content-Length: 6\r\nConnection: close\r\n\r\nne".encode())
            status, headers, body = self.send(
                f"LOCK {self.path('page.html')} HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                f"application/xml\r\nContent-Length: {len(self.LOCKINFO)}\r\n"
                f"Connection: close\r\n\r\n".encode() + self.LOCKINFO)
            self.assertEqual(status, 200, body)
            self.assertIn("lock-token", headers)
            uploading.sendall(b"w page")
            self.assertEqual(reply(read_all(uploading))[0], 423)
        self.assertEqual(self.read("page.html"), b"old")


class LockThroughLinkLiveTest(DavServerCase):
    """A lock taken on a file binds it through a link to its folder too: a PUT, a COPY and a
    DELETE through the alias get 423 and leave the file as it was."""

    def test_the_alias_meets_the_lock(self) -> None:
        os.makedirs(os.path.join(self.folder, "pub"))
        for name, data in (("pub/page.html", b"old"), ("other.txt", b"other")):
            with open(os.path.join(self.folder, name), "wb") as out:
                out.write(data)
        os.symlink("pub", os.path.join(self.folder, "alias"))
        lockinfo = LockDuringUploadTest.LOCKINFO
        status, _, body = self.send(
            f"LOCK {self.path('pub/page.html')} HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
            f"application/xml\r\nContent-Length: {len(lockinfo)}\r\n"
            "Connection: close\r\n\r\n".encode() + lockinfo)
        self.assertEqual(status, 200, body)
        for request in (f"PUT {self.path('alias/page.html')} HTTP/1.1\r\nContent-Length: 3\r\n",
                        f"COPY {self.path('other.txt')} HTTP/1.1\r\nContent-Length: 0\r\n"
                        f"Destination: {self.path('alias/page.html')}\r\n",
                        f"DELETE {self.path('alias/page.html')} HTTP/1.1\r\n"):
            with self.subTest(request=request.split(" ")[0]):
                status, _, body = self.send(
                    f"{request}Host: localhost\r\nConnection: close\r\n\r\nnew".encode())
                self.assertEqual(status, 423, body)
        self.assertEqual(self.read("pub/page.html"), b"old")


class FolderHoldLiveTest(DavServerCase):
    """An upload waiting for its folder's hold (:meth:`UploadFolder.held`, a ``flock`` that
    another program may keep too) keeps no request about another folder waiting."""

    def test_uploads_elsewhere_and_webdav_go_on(self) -> None:
        held = os.path.join(self.folder, "held")
        os.mkdir(held)
        descriptor = os.open(held, os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, descriptor)
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # as a script run by flock(1) on the folder
        with self.server.connect() as waiting:
            waiting.sendall(f"PUT {self.path('held/a.txt')} HTTP/1.1\r\nHost: localhost\r\n"
                            "Content-Length: 3\r\nConnection: close\r\n\r\nnew".encode())
            # Its body in (the temporary file whole and closed), it waits for the folder.
            wait_until(lambda: _upload_waiting(self.server.pid, held, 3),
                       what="the PUT to wait for its folder")
            for request, body, expected in (
                    (f"PUT {self.path('free.txt')} HTTP/1.1\r\nContent-Length: 3", "new", 201),
                    (f"PROPFIND {self.path()} HTTP/1.1\r\nDepth: 1", "", 207)):
                with self.subTest(request=request.split(" ")[0]):
                    with self.server.connect(timeout=10) as other:
                        other.sendall(f"{request}\r\nHost: localhost\r\nConnection: close\r\n"
                                      f"\r\n{body}".encode())
                        self.assertEqual(reply(read_all(other))[0], expected)
            # The others were answered while it waited (it gives up only after 10 s).
            self.assertFalse(select.select([waiting], [], [], 0)[0])
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            self.assertEqual(reply(read_all(waiting))[0], 201)
        self.assertEqual(self.read("held/a.txt"), b"new")


    def test_a_delete_and_a_move_wait_for_the_folder_as_uploads_do(self) -> None:
        # WebDAV's changes of names take the same hold: they wait for the folder while
        # requests about other folders are answered, and go through once it is free.
        held = os.path.join(self.folder, "held")
        os.mkdir(held)
        for name in ("held/gone.txt", "moved.txt"):
            with open(os.path.join(self.folder, name), "wb") as out:
                out.write(name.encode())
        descriptor = os.open(held, os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, descriptor)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        with self.server.connect() as deleting, self.server.connect() as moving:
            deleting.sendall(f"DELETE {self.path('held/gone.txt')} HTTP/1.1\r\nHost: "
                             "localhost\r\nConnection: close\r\n\r\n".encode())
            moving.sendall(f"MOVE {self.path('moved.txt')} HTTP/1.1\r\nHost: localhost\r\n"
                           f"Destination: {self.path('held/moved.txt')}\r\n"
                           "Connection: close\r\n\r\n".encode())
            # Each has opened the folder it changes, and waits for its hold.
            wait_until(lambda: _opened(self.server.pid, held) >= 2,
                       what="the DELETE and the MOVE to open the folder")
            status, _, body = self.send(f"PROPFIND {self.path()} HTTP/1.1\r\nHost: localhost"
                                        "\r\nDepth: 1\r\nConnection: close\r\n\r\n".encode())
            self.assertEqual(status, 207, body)
            self.assertFalse(select.select([deleting, moving], [], [], 0)[0])
            self.assertEqual(sorted(os.listdir(held)), ["gone.txt"])
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            self.assertEqual(reply(read_all(deleting))[0], 204)
            self.assertEqual(reply(read_all(moving))[0], 201)
        self.assertEqual(os.listdir(held), ["moved.txt"])


def _opened(pid: int, folder: str) -> int:
    """How many descriptors process ``pid`` holds on ``folder``."""
    wanted = os.stat(folder)
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found = os.stat(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed meanwhile
            continue
        count += (found.st_dev, found.st_ino) == (wanted.st_dev, wanted.st_ino)
    return count


def _upload_waiting(pid: int, folder: str, size: int) -> bool:
    """Whether ``folder`` holds an upload's temporary file of ``size`` bytes that process
    ``pid`` no longer has open: its body is in, and its naming comes next."""
    names = [name for name in os.listdir(folder) if name.startswith(".nex-upload-")]
    try:
        files = [os.stat(os.path.join(folder, name)) for name in names]
        opened = {os.stat(f"/proc/{pid}/fd/{fd}").st_ino for fd in os.listdir(f"/proc/{pid}/fd")}
    except FileNotFoundError:  # an upload or a descriptor went meanwhile: look again
        return False
    return any(file.st_size == size and file.st_ino not in opened for file in files)


class TreeCopyLiveTest(LiveUploadCase):
    """A COPY of a folder whose members do not all fit under ``max_upload_size`` names the
    member that passed it in a 207 (RFC 4918 §9.8.3), keeping what was copied before."""

    settings = {"files": {"upload": "yes", "webdav": "write", "max_upload_size": "4"}}

    def test_the_member_too_large_is_named_and_what_came_before_copied(self) -> None:
        os.makedirs(os.path.join(self.folder, "tree", "sub"))
        for name, data in (("tree/big.bin", b"x" * 5), ("tree/sub/small.txt", b"ok")):
            with open(os.path.join(self.folder, name), "wb") as out:
                out.write(data)
        status, headers, body = self.send(
            f"COPY {self.path('tree/')} HTTP/1.1\r\nHost: localhost\r\nDestination: "
            f"{self.path('copy')}\r\nConnection: close\r\n\r\n".encode())
        self.assertEqual(status, 207, body)
        self.assertTrue(headers["content-type"].startswith("application/xml"))
        responses = ElementTree.fromstring(body).findall("{DAV:}response")
        self.assertEqual([(item.findtext("{DAV:}href"), item.findtext("{DAV:}status"))
                          for item in responses],
                         [(self.path("copy/big.bin"), "HTTP/1.1 413 Content Too Large")])
        self.assertEqual(self.read("copy/sub/small.txt"), b"ok")
        self.assertFalse(os.path.exists(os.path.join(self.folder, "copy", "big.bin")))


class DeepTreeLiveTest(DavServerCase):
    """A tree nested past the interpreter's recursion limit (a thousand MKCOLs, or made on
    disk) gets answers, never a 500 or a traceback in the error log."""

    def test_delete_copy_move_and_mkcol_answer(self) -> None:
        deepest = make_chain(self.folder, sys.getrecursionlimit() + 100)
        self.addCleanup(remove_chain, self.folder, deepest)
        tree, copy = self.path("d/"), self.path("copy")
        for method, target, extra, expected in (
                ("DELETE", tree, "", 207), ("COPY", tree, f"Destination: {copy}\r\n", 207),
                ("MOVE", tree, f"Destination: {self.path('moved')}\r\n", 403),
                ("MKCOL", self.path("d/" * MAX_FOLDER_DEPTH + "new"), "", 403)):
            with self.subTest(method=method):
                status, _, body = self.send(f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n"
                                            f"{extra}Connection: close\r\n\r\n".encode())
                self.assertEqual(status, expected, body)
        self.assertTrue(os.path.isdir(deepest))
        copied = os.path.join(self.folder, "copy", *["d"] * (MAX_FOLDER_DEPTH - 3))
        self.assertTrue(os.path.isdir(copied))  # /dir/<test>/copy/d/... down to the cap
        remove_chain(self.folder, copied)


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


def hrefs(body: bytes) -> List[str]:
    """The hrefs of a 207 body, in order."""
    return [href.text for href in ElementTree.fromstring(body).iter("{DAV:}href")]


class ProtectedBelowDestinationLiveTest(ServerTestCase):
    """``/public/made/private/`` is protected before it exists: a folder COPY or MOVE to
    ``/public/made`` cannot make it without the login."""

    settings = {"files": {"webdav": "write", "allow_rename": "yes"},
                "auth": {"protect": "/private/, /public/made/private/"}}

    def test_copy_and_move_write_nothing_there_without_the_login(self) -> None:
        tree = os.path.join(self.root, "public", "tree")
        os.makedirs(os.path.join(tree, "private"))
        for name in ("private/evil.txt", "ok.txt"):
            with open(os.path.join(tree, name), "wb") as out:
                out.write(b"x")
        made = os.path.join(self.root, "public", "made")
        self.addCleanup(shutil.rmtree, made, True)
        self.addCleanup(shutil.rmtree, tree, True)
        status, _, _ = self.request("MOVE", "/public/tree/", {"Destination": "/public/made"})
        self.assertEqual(status, 403)
        self.assertFalse(os.path.exists(made))
        status, _, body = self.request("COPY", "/public/tree/", {"Destination": "/public/made"})
        self.assertEqual(status, 207)
        self.assertEqual(hrefs(body), ["/public/made/private/"])
        self.assertEqual(os.listdir(made), ["ok.txt"])
        shutil.rmtree(made)
        status, _, _ = self.request("COPY", "/public/tree/", {"Destination": "/public/made",
                                                             **RIGHT})
        self.assertEqual(status, 201)
        self.assertTrue(os.path.exists(os.path.join(made, "private", "evil.txt")))


class DavAccessLiveTest(ServerTestCase):
    """WebDAV and resumable uploads on the wire ask the one access policy and pass the
    write guard: ``/private/`` is protected, ``/public/link`` leads into it."""

    settings = {"files": {"webdav": "write", "allow_delete": "yes", "allow_rename": "yes"}}

    def propfind(self, target: str, headers: Dict[str, str]) -> Tuple[int, List[str]]:
        status, _, body = self.request("PROPFIND", target, {"Depth": "1", **headers})
        return status, hrefs(body) if status == 207 else []

    def test_propfind_leaves_out_what_the_listing_leaves_out(self) -> None:
        status, anonymous = self.propfind("/public/", ANONYMOUS)
        self.assertEqual(status, 207)
        for hidden in ("/public/link/", "/public/doc.txt.gz"):
            self.assertNotIn(hidden, anonymous)
        self.assertIn("/public/plain.txt", anonymous)
        self.assertNotIn("/private/", self.propfind("/", ANONYMOUS)[1])
        status, alice = self.propfind("/public/", RIGHT)
        self.assertIn("/public/link/", alice)
        self.assertIn("/public/doc.txt.gz", alice)
        self.assertIn("/private/", self.propfind("/", RIGHT)[1])
        for target in ("/private/", "/public/link/"):
            with self.subTest(target=target):
                self.assertEqual(self.propfind(target, ANONYMOUS)[0], 401)

    def test_writes_through_a_link_into_a_protected_folder_need_a_login(self) -> None:
        for method, target, headers in (
                ("MKCOL", "/public/link/made", {}),
                ("DELETE", "/public/link/secret.txt", {}),
                ("COPY", "/public/plain.txt", {"Destination": "/public/link/copy.txt"}),
                ("MOVE", "/public/link/secret.txt", {"Destination": "/public/moved.txt"}),
                ("PUT", "/public/link/a.bin", {"Upload-Complete": "?1"})):
            with self.subTest(method=method, target=target):
                status, _, _ = self.request(method, target, headers, b"x" if method == "PUT"
                                            else None)
                self.assertEqual(status, 401)
        self.assertEqual(sorted(os.listdir(os.path.join(self.root, "private"))),
                         ["secret.txt", "secret.txt.gz", "site"])
        status, _, _ = self.request("MKCOL", "/public/link/made", RIGHT)
        self.assertEqual(status, 201)
        os.rmdir(os.path.join(self.root, "private", "made"))

    def test_dns_rebinding_host_cannot_write_over_webdav(self) -> None:
        rebound = {"Host": f"rebound.example:{self.server.port}"}
        cross_site = {"Origin": "http://evil.example"}
        for method, headers in (("MKCOL", {}), ("DELETE", {}), ("PROPPATCH", {}),
                                ("LOCK", {}), ("MOVE", {"Destination": "/public/moved"})):
            for refused in (rebound, cross_site):
                with self.subTest(method=method, refused=refused):
                    status, _, _ = self.request(method, "/public/made", {**headers, **refused})
                    self.assertEqual(status, 403)
        self.assertFalse(os.path.exists(os.path.join(self.root, "public", "made")))
        # Reading is not a write: PROPFIND is answered for any allowed Host.
        self.assertEqual(self.propfind("/public/", rebound)[0], 207)
