"""WebDAV locks shared by every worker: a lock taken through one worker binds the others.

Unit tests run two tables over one shared file, as two workers do, without processes; the
functional ones take a lock through the real server with ``workers = 2`` and send each
following request on a new connection, which the kernel gives to either worker.
"""

from __future__ import annotations

import fcntl
import http.client
import os
import resource
import shutil
import signal
import tempfile
import unittest
import warnings
from typing import Dict, List, Tuple
from unittest import mock

from nex.files import davlocks, davxml
from nex.files.davlocks import Lock, LockTable, Path, Where
from nex.http.errors import HTTPError
from tests.support import SOCKET_TIMEOUT, NexServer, children, http_request, wait_until

LOCKINFO = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
            b'</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>tester</D:owner>'
            b'</D:lockinfo>')
XML = {"Content-Type": "application/xml"}
CLIENT = "127.0.0.1"
OTHER_CLIENT = "127.0.0.2"
#: New connections per check: with two workers, the chance that all of them reach the
#: same one is 2 ** -(TRIES - 1).
TRIES = 16


def at(path: Path) -> Where:
    """``path`` as the locks know it, under a document root ``/srv``, with no links."""
    return Where(path, (("srv",) + path,))


def locks_on(table: LockTable, where: Where, below: bool = False) -> List[Lock]:
    """The live locks of ``table`` covering ``where``, with ``below`` those taken under it."""
    return [lock for lock in table.live()
            if lock.covers(where) or (below and lock.taken_below(where))]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SharedTableTest(unittest.TestCase):
    """Two LockTable objects over one shared file: what one does, the other sees."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.first = LockTable.shared(self.clock)
        self.addCleanup(os.close, self.first._file)
        # A worker's copy: the same descriptor, its own memory (as after fork).
        self.second = LockTable(self.clock, self.first._file)

    def test_a_hold_keeps_every_other_process_from_changing_the_locks(self) -> None:
        # An upload checks the locks again and takes its name in the hold: a LOCK through
        # another worker must wait for it.  That worker's exclusive lock on the file fails.
        with self.first.held_still():
            with warnings.catch_warnings():  # the child makes one call and exits
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:
                try:
                    fcntl.lockf(self.first._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    os._exit(1)
                except OSError:
                    os._exit(0)
            self.assertEqual(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), 0)

    def test_a_lock_taken_through_one_binds_the_other(self) -> None:
        lock = self.first.take(at(("dir",)), True, True, "<D:href>me</D:href>", 60, CLIENT)
        self.assertEqual(
            [found.token for found in locks_on(self.second, at(("dir", "a.txt")))], [lock.token])
        with self.assertRaises(HTTPError) as caught:
            self.second.take(at(("dir", "a.txt")), False, False, "", 60, CLIENT)
        self.assertEqual(caught.exception.status, 423)
        with self.assertRaises(HTTPError) as caught:
            self.second.check(None, at(("dir", "a.txt")), [(at(("dir", "a.txt")), False)],
                              lambda path: None)
        self.assertEqual(caught.exception.status, 423)
        self.second.check(f"(<{lock.token}>)", at(("dir", "a.txt")),
                          [(at(("dir", "a.txt")), False)], lambda path: None)
        self.assertEqual(locks_on(self.second, at(("dir",)))[0].owner, "<D:href>me</D:href>")

    def test_a_lock_binds_another_url_of_the_same_place_in_the_other(self) -> None:
        self.first.take(Where(("pub", "a.txt"), (("srv", "pub", "a.txt"),)), False, True, "",
                        60, CLIENT)
        alias = Where(("alias", "a.txt"), (("srv", "pub", "a.txt"),))
        with self.assertRaises(HTTPError) as caught:
            self.second.check(None, alias, [(alias, False)], lambda path: None)
        self.assertEqual(caught.exception.status, 423)

    def test_refresh_release_and_forget_reach_the_other(self) -> None:
        lock = self.first.take(at(("a.txt",)), False, True, "", 60, CLIENT)
        self.clock.now += 50
        self.second.refresh(lock.token, at(("a.txt",)), 60)
        self.clock.now += 50  # past the first time-out, within the refreshed one
        self.assertEqual(len(locks_on(self.first, at(("a.txt",)))), 1)
        self.second.release(lock.token, at(("a.txt",)))
        self.assertEqual(locks_on(self.first, at(("a.txt",))), [])
        self.first.take(at(("dir", "b.txt")), False, False, "", 60, CLIENT)
        self.second.forget(at(("dir",)))
        self.assertEqual(locks_on(self.first, at(("dir",)), below=True), [])

    def test_expired_locks_are_gone_for_both(self) -> None:
        self.first.take(at(("a.txt",)), False, True, "", 60, CLIENT)
        self.clock.now += 60
        self.assertEqual(locks_on(self.second, at(("a.txt",))), [])
        self.second.take(at(("a.txt",)), False, True, "", 60, CLIENT)

    def test_a_lock_past_the_files_size_is_503_and_taken_nowhere(self) -> None:
        self.first.take(at(("a.txt",)), False, True, "small", 60, CLIENT)
        with mock.patch.object(davlocks, "MAX_SHARED_BYTES", 1000):
            with self.assertRaises(HTTPError) as caught:
                self.first.take(at(("b.txt",)), False, True, "x" * 1000, 60, CLIENT)
        self.assertEqual(caught.exception.status, 503)
        for table in (self.first, self.second):
            self.assertEqual(locks_on(table, at(("b.txt",))), [])
            self.assertEqual(len(locks_on(table, at(("a.txt",)))), 1)

    def test_a_writer_killed_mid_write_does_not_drop_the_locks(self) -> None:
        lock = self.first.take(at(("a.txt",)), False, True, "", 60, CLIENT)
        real_pwrite = os.pwrite

        def killed(file: int, data: bytes, offset: int) -> int:
            real_pwrite(file, data[:len(data) // 2], offset)
            raise KeyboardInterrupt("killed while writing")

        with mock.patch("os.pwrite", killed), self.assertRaises(KeyboardInterrupt):
            self.first.take(at(("b.txt",)), False, True, "x" * 1000, 60, CLIENT)
        self.assertEqual([found.token for found in locks_on(self.second, at(("a.txt",)))],
                         [lock.token])
        self.assertEqual(locks_on(self.second, at(("b.txt",))), [])
        self.second.take(at(("b.txt",)), False, True, "", 60, CLIENT)
        self.assertEqual(len(locks_on(self.first, at(("a.txt",)))), 1)
        self.assertEqual(len(locks_on(self.first, at(("b.txt",)))), 1)

    def test_a_short_write_is_503_and_the_file_keeps_the_previous_table(self) -> None:
        self.first.take(at(("a.txt",)), False, True, "", 60, CLIENT)
        with mock.patch("os.pwrite", lambda file, data, offset: len(data) - 1):
            with self.assertRaises(HTTPError) as caught:
                self.first.take(at(("b.txt",)), False, True, "", 60, CLIENT)
        self.assertEqual(caught.exception.status, 503)
        for table in (self.first, self.second):
            self.assertEqual(locks_on(table, at(("b.txt",))), [])
            self.assertEqual(len(locks_on(table, at(("a.txt",)))), 1)


class ClientShareTest(unittest.TestCase):
    """No one client address fills a table, in memory (a lone Nex) or shared."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.table = LockTable(self.clock)

    def refusal(self, path: str, owner: str, client: str) -> int:
        with self.assertRaises(HTTPError) as caught:
            self.table.take(at((path,)), False, True, owner, 60, client)
        return caught.exception.status

    def test_one_client_cannot_take_every_lock_of_the_table(self) -> None:
        with mock.patch.object(davlocks, "MAX_LOCKS", 4 * davlocks.CLIENT_SHARE):
            for number in range(4):
                self.table.take(at((f"{number}.txt",)), False, True, "", 60, CLIENT)
            self.assertEqual(self.refusal("more.txt", "", CLIENT), 429)
            self.table.take(at(("other.txt",)), False, True, "", 60, OTHER_CLIENT)

    def test_a_lone_table_does_not_grow_past_its_bytes(self) -> None:
        owner = "x" * (davlocks.MAX_SHARED_BYTES // davlocks.CLIENT_SHARE - 1024)
        for number in range(davlocks.CLIENT_SHARE):
            self.table.take(at((f"{number}.txt",)), False, True, owner, 60, f"10.0.0.{number}")
        self.assertEqual(self.refusal("more.txt", owner, "10.0.1.1"), 503)
        self.table.take(at(("small.txt",)), False, True, "", 60, "10.0.1.1")

    def test_a_clients_share_comes_back_as_its_locks_expire(self) -> None:
        owner = "x" * (davlocks.MAX_SHARED_BYTES // davlocks.CLIENT_SHARE // 2)
        self.table.take(at(("a.txt",)), False, True, owner, 60, CLIENT)
        self.assertEqual(self.refusal("b.txt", owner, CLIENT), 429)
        self.clock.now += 60
        self.table.take(at(("b.txt",)), False, True, owner, 60, CLIENT)


def request_from(source: str, server: NexServer, method: str, target: str,
                 body: bytes) -> Tuple[int, Dict[str, str], bytes]:
    """One request with an XML ``body`` to ``server`` from the address ``source``."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=SOCKET_TIMEOUT,
                                            source_address=(source, 0))
    try:
        connection.request(method, target, body=body, headers=XML)
        response = connection.getresponse()
        return (response.status, {name.lower(): value for name, value in response.getheaders()},
                response.read())
    finally:
        connection.close()


class WorkersShareLocksTest(unittest.TestCase):
    """The real server with two workers: one lock for all of them, class 2 as with one."""

    def setUp(self) -> None:
        root = tempfile.mkdtemp(prefix="nex-dav-workers-")
        self.addCleanup(shutil.rmtree, root, True)
        with open(os.path.join(root, "a.txt"), "w") as out:
            out.write("hello\n")
        self.server = NexServer(root, settings={
            "server": {"workers": 2},
            "files": {"webdav": "write", "upload": "yes", "upload_overwrite": "yes"}}).start()
        self.addCleanup(self.server.stop)
        self.root = root

    def test_put_through_another_worker_cannot_bypass_a_lock(self) -> None:
        status, fields, _ = http_request(self.server, "OPTIONS", "/")
        self.assertEqual((status, fields["dav"]), (204, "1, 2"))
        status, fields, _ = http_request(self.server, "LOCK", "/a.txt", LOCKINFO, XML)
        self.assertEqual(status, 200)
        token = fields["lock-token"]
        for _ in range(TRIES):
            status, _, _ = http_request(self.server, "PUT", "/a.txt", b"overwritten\n")
            self.assertEqual(status, 423)
        with open(os.path.join(self.root, "a.txt"), "rb") as source:
            self.assertEqual(source.read(), b"hello\n")
        for _ in range(TRIES):
            status, _, _ = http_request(self.server, "PUT", "/a.txt", b"mine\n",
                                        {"If": f"({token})"})
            self.assertEqual(status, 204)
        status, _, _ = http_request(self.server, "UNLOCK", "/a.txt", None,
                                    {"Lock-Token": token})
        self.assertEqual(status, 204)
        for _ in range(TRIES):
            status, _, _ = http_request(self.server, "PUT", "/a.txt", b"free\n")
            self.assertEqual(status, 204)

    def test_a_second_exclusive_lock_through_another_worker_is_refused(self) -> None:
        status, _, _ = http_request(self.server, "LOCK", "/a.txt", LOCKINFO, XML)
        self.assertEqual(status, 200)
        for _ in range(TRIES):
            status, _, _ = http_request(self.server, "LOCK", "/a.txt", LOCKINFO, XML)
            self.assertEqual(status, 423)

    def test_a_table_that_cannot_be_written_does_not_drop_its_locks(self) -> None:
        # The table's file stops growing, as on a full disk: each write that fails must
        # leave the locks already taken in force, not a torn file read as no locks at all.
        workers = wait_until(lambda: len(children(self.server.pid)) == 2
                             and children(self.server.pid), what="two workers")
        limits = resource.getrlimit(resource.RLIMIT_FSIZE)
        for pid in workers:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (1024 * 1024, limits[1]))
        status, fields, _ = http_request(self.server, "LOCK", "/a.txt", LOCKINFO, XML)
        self.assertEqual(status, 200)
        token = fields["lock-token"]
        owner = b"x" * 100 * 1024
        for number in range(16):
            refused, _, _ = http_request(self.server, "LOCK", f"/big{number}.txt",
                                         LOCKINFO.replace(b"tester", owner), XML)
            if refused != 201:
                break
        for _ in range(TRIES):
            status, _, _ = http_request(self.server, "PUT", "/a.txt", b"overwritten\n")
            self.assertEqual(status, 423)
        self.assertEqual(refused, 503)
        for pid in workers:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, limits)
        status, _, _ = http_request(self.server, "UNLOCK", "/a.txt", None,
                                    {"Lock-Token": token})
        self.assertEqual(status, 204)

    def test_one_client_cannot_fill_the_table_and_deny_locks_to_everyone(self) -> None:
        # As an attacker would: owners as big as a LOCK allows, then ever smaller ones to
        # fill what is left, until the table (or the client's share of it) refuses.
        size, number = davxml.MAX_XML_BYTES - 1024, 0
        while size > 64:
            number += 1
            refused, _, _ = http_request(self.server, "LOCK", f"/big{number}.txt",
                                         LOCKINFO.replace(b"tester", b"x" * size), XML)
            if refused == 503:
                size //= 2
            elif refused != 201:
                break
        status, _, _ = request_from(OTHER_CLIENT, self.server, "LOCK", "/a.txt", LOCKINFO)
        self.assertEqual(status, 200)
        self.assertEqual(refused, 429)

    def test_a_lock_outlives_the_worker_it_was_taken_through(self) -> None:
        status, _, _ = http_request(self.server, "LOCK", "/a.txt", LOCKINFO, XML)
        self.assertEqual(status, 200)
        workers = wait_until(lambda: len(children(self.server.pid)) == 2
                             and children(self.server.pid), what="two workers")
        for victim in workers:
            os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(children(self.server.pid) - workers) == 2,
                   what="two new workers")
        for _ in range(TRIES):
            status, _, _ = http_request(self.server, "PUT", "/a.txt", b"overwritten\n")
            self.assertEqual(status, 423)


if __name__ == "__main__":
    unittest.main()
