"""The open-file cache: unit tests of the table, and the server never serving a stale file."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import tempfile
import unittest
import urllib.error
import urllib.request

from nex.files.opencache import FileReplacedError, OpenFileCache
from tests.support import NexServer, TempFolder, wait_until
from tests.support.threads import run_in_threads

POLL_SECONDS = 10.0


def _open_descriptors() -> set:
    return set(os.listdir("/proc/self/fd"))


class OpenFileCacheTest(TempFolder):
    def read(self, cache: OpenFileCache, path: str) -> bytes:
        handle = cache.open(path, os.stat(path))
        try:
            return os.pread(handle.fileno(), 100, 0)
        finally:
            handle.close()

    def test_a_second_use_reuses_the_descriptor(self):
        path = self.write("a.bin", b"alpha")
        cache = OpenFileCache(4, 60)
        self.addCleanup(cache.close)
        first = cache.open(path, os.stat(path))
        first.close()
        second = cache.open(path, os.stat(path))
        self.addCleanup(second.close)
        self.assertEqual(first.fileno(), second.fileno())

    def test_a_replaced_file_is_never_read_through_a_stale_descriptor(self):
        path = self.write("a.bin", b"alpha")
        cache = OpenFileCache(4, 60)
        self.addCleanup(cache.close)
        self.assertEqual(self.read(cache, path), b"alpha")
        os.replace(self.write("new.bin", b"omega"), path)  # same size, another inode
        self.assertEqual(self.read(cache, path), b"omega")

    def test_a_file_rewritten_in_place_is_read_anew(self):
        path = self.write("a.bin", b"alpha")
        cache = OpenFileCache(4, 60)
        self.addCleanup(cache.close)
        self.read(cache, path)
        status = os.stat(path)
        with open(path, "r+b") as f:
            f.write(b"alphabet")
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1))
        self.assertEqual(self.read(cache, path), b"alphabet")

    def test_a_file_changed_since_its_stat_is_not_kept(self):
        path = self.write("a.bin", b"alpha")
        old = os.stat(path)
        os.replace(self.write("new.bin", b"omega"), path)
        cache = OpenFileCache(4, 60)
        with self.assertRaises(FileReplacedError):
            cache.open(path, old)
        self.assertEqual(len(cache), 0)

    def test_descriptors_are_released_when_replaced_evicted_idle_and_closed(self):
        before = _open_descriptors()
        paths = [self.write(f"{n}.bin", bytes([n]) * 10) for n in range(5)]
        cache = OpenFileCache(2, 60)
        for path in paths:
            self.read(cache, path)
        self.assertEqual(len(cache), 2)
        self.assertEqual(len(_open_descriptors() - before), 2)
        os.replace(self.write("new.bin", b"x" * 10), paths[-1])
        self.read(cache, paths[-1])
        self.assertEqual(len(_open_descriptors() - before), 2)
        cache.close()
        self.assertEqual(_open_descriptors() - before, set())
        idle = OpenFileCache(4, 0.01)
        self.read(idle, paths[0])

        def swept() -> bool:
            if not len(idle):
                return True
            self.read(idle, paths[1])  # each use sweeps what was idle long enough
            idle._next_sweep = 0.0
            return False

        wait_until(swept, POLL_SECONDS, 0.05)
        self.assertNotIn(paths[0], idle._entries)
        idle.close()
        self.assertEqual(_open_descriptors() - before, set())

    def test_a_descriptor_in_use_stays_open_until_given_back(self):
        path = self.write("a.bin", b"alpha")
        cache = OpenFileCache(4, 60)
        handle = cache.open(path, os.stat(path))
        cache.close()
        self.assertEqual(os.pread(handle.fileno(), 5, 0), b"alpha")
        descriptor = handle.fileno()
        handle.close()
        handle.close()
        with self.assertRaises(OSError):
            os.fstat(descriptor)

    def test_hammered_from_many_threads_the_table_stays_consistent(self):
        before = _open_descriptors()
        paths = [self.write(f"{n}.bin", bytes([n]) * 10) for n in range(8)]
        cache = OpenFileCache(3, 60)
        failures = []

        def hammer(seed: int) -> None:
            for round_ in range(300):
                path = paths[(seed + round_) % len(paths)]
                expected = bytes([paths.index(path)]) * 10
                if self.read(cache, path) != expected:
                    failures.append(path)

        run_in_threads(hammer)
        self.assertEqual(failures, [])
        self.assertLessEqual(len(cache), 3)
        self.assertTrue(all(entry.readers == 0 for entry in cache._entries.values()))
        cache.close()
        self.assertEqual(_open_descriptors() - before, set())


class ServedThroughTheOpenFileCacheTest(unittest.TestCase):
    """Ranges of a large file over real sockets, with the file replaced and deleted."""

    SIZE = 256 * 1024

    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root)
        self.path = os.path.join(self.root, "big.bin")
        self.other = os.path.join(self.root, "other.bin")
        self.put(self.path, b"a")
        self.put(self.other, b"o")
        self.server = NexServer(self.root, {"files": {"open_file_cache": 4,
                                                      "open_file_cache_idle": 0.2}}).start()
        self.addCleanup(self.server.stop)

    def put(self, path: str, fill: bytes) -> None:
        temporary = path + ".new"
        with open(temporary, "wb") as f:
            f.write(fill * self.SIZE)
        os.replace(temporary, path)

    def get_range(self, name: str) -> bytes:
        request = urllib.request.Request(self.server.url + name, headers={"Range": "bytes=100-199"})
        with urllib.request.urlopen(request, timeout=10) as response:
            self.assertEqual(response.status, 206)
            return response.read()

    def held(self) -> list:
        folder = f"/proc/{self.server.pid}/fd"
        targets = []
        for name in os.listdir(folder):
            try:
                targets.append(os.readlink(os.path.join(folder, name)))
            except OSError:
                pass
        return [target for target in targets if target.startswith(self.path)]

    def test_a_replaced_file_is_never_served_from_a_stale_descriptor(self):
        self.assertEqual(self.get_range("big.bin"), b"a" * 100)
        self.assertEqual(self.get_range("big.bin"), b"a" * 100)
        self.put(self.path, b"b")
        self.assertEqual(self.get_range("big.bin"), b"b" * 100)
        # The stale descriptor is closed when the last response reading it gives it back,
        # which may come after that response's client has read its last byte.
        wait_until(lambda: self.held() == [self.path], POLL_SECONDS, 0.05,
                   what="only the new file's descriptor to be held")

    def test_a_reset_mid_response_gives_the_descriptor_back(self):
        for _ in range(3):
            with socket.create_connection((self.server.host, self.server.port)) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
                sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
                sock.recv(1000)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.put(self.path, b"b")  # the old descriptor closes once no response reads it

        def released() -> bool:
            self.assertEqual(self.get_range("big.bin"), b"b" * 100)
            return self.held() == [self.path]

        wait_until(released, POLL_SECONDS, 0.1)
        self.assertEqual(self.held(), [self.path])

    def test_a_deleted_file_is_not_served_and_its_descriptor_is_released(self):
        self.get_range("big.bin")
        os.remove(self.path)
        with self.assertRaises(urllib.error.HTTPError) as caught:
            self.get_range("big.bin")
        self.assertEqual(caught.exception.code, 404)

        def closed() -> bool:
            if not self.held():
                return True
            self.get_range("other.bin")  # a use of the cache closes what idled out
            return False

        wait_until(closed, POLL_SECONDS, 0.1)
        self.assertEqual(self.held(), [])


if __name__ == "__main__":
    unittest.main()
