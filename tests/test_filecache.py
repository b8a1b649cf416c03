"""Unit tests of the small-file cache."""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import threading
import types
import unittest

from nex.files.filecache import MAX_FILE_SIZE, FileChangedError, SmallFileCache
from tests.support import TempFolder


class SmallFileCacheTest(TempFolder):
    def test_returns_the_files_bytes(self):
        path = self.write("a.txt", b"alpha")
        cache = SmallFileCache(1024)
        self.assertEqual(cache.read(path, os.stat(path)), b"alpha")
        self.assertEqual(cache.read(path, os.stat(path)), b"alpha")

    def test_stale_content_is_never_served_after_a_change(self):
        path = self.write("a.txt", b"alpha")
        cache = SmallFileCache(1024)
        cache.read(path, os.stat(path))
        self.write("a.txt", b"omega")
        status = os.stat(path)
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1))
        self.assertEqual(cache.read(path, os.stat(path)), b"omega")

    def test_large_files_are_not_cached(self):
        path = self.write("big.bin", b"x" * (MAX_FILE_SIZE + 1))
        self.assertIsNone(SmallFileCache(1 << 30).read(path, os.stat(path)))

    def test_a_file_larger_than_the_whole_cache_is_not_cached(self):
        path = self.write("a.txt", b"x" * 100)
        self.assertIsNone(SmallFileCache(10).read(path, os.stat(path)))

    def test_total_size_stays_bounded(self):
        cache = SmallFileCache(250)
        paths = [self.write(f"{n}.txt", bytes([n]) * 100) for n in range(5)]
        for path in paths:
            cache.read(path, os.stat(path))
            self.assertLessEqual(cache._bytes, 250)
        for n, path in enumerate(paths):
            self.assertEqual(cache.read(path, os.stat(path)), bytes([n]) * 100)

    def test_replacing_an_entry_frees_its_bytes(self):
        path = self.write("a.txt", b"x" * 100)
        cache = SmallFileCache(1024)
        cache.read(path, os.stat(path))
        self.write("a.txt", b"y" * 30)
        status = os.stat(path)
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1))
        self.assertEqual(cache.read(path, os.stat(path)), b"y" * 30)
        self.assertEqual(cache._bytes, 30)

    def test_a_file_that_shrank_since_its_stat_is_an_error(self):
        path = self.write("a.txt", b"alpha")
        status = os.stat(path)
        self.write("a.txt", b"al")
        with self.assertRaises(FileChangedError):
            SmallFileCache(1024).read(path, status)


class ConcurrentUseTest(unittest.TestCase):
    """Many workers replacing and reading entries at once keep the byte count exact."""

    THREADS = 16
    READS = 5000
    MAX_BYTES = 40_000

    def test_byte_count_is_the_sum_of_the_entries_and_stays_bounded(self):
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        contents = {}
        for number in range(24):
            path = os.path.join(folder, f"{number}.bin")
            data = bytes([number]) * (500 + 150 * number)  # 500 to 3950 bytes, 53,400 in all
            with open(path, "wb") as file:
                file.write(data)
            contents[path] = data
        paths = sorted(contents)
        cache = SmallFileCache(self.MAX_BYTES)
        previous_interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
        self.addCleanup(sys.setswitchinterval, previous_interval)
        start = threading.Barrier(self.THREADS)
        failures = []

        def work(seed):
            chooser = random.Random(seed)
            start.wait()
            for _ in range(self.READS):
                path = chooser.choice(paths)
                # Another modification time: the entry is stale and gets replaced.
                status = types.SimpleNamespace(st_size=len(contents[path]), st_ino=1,
                                               st_mtime_ns=chooser.randrange(3), st_ctime_ns=0)
                if cache.read(path, status) != contents[path]:
                    failures.append(f"wrong bytes for {path}")
                if cache._bytes > self.MAX_BYTES:
                    failures.append(f"{cache._bytes} bytes cached, over {self.MAX_BYTES}")

        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(self.THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
            self.assertFalse(thread.is_alive())
        self.assertEqual(failures[:3], [])
        self.assertEqual(cache._bytes, sum(len(data) for _, data in cache._entries.values()))
        self.assertLessEqual(cache._bytes, self.MAX_BYTES)


if __name__ == "__main__":
    unittest.main()
