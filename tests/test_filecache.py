"""Unit tests of the small-file cache."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest

from nex.filecache import MAX_FILE_SIZE, FileChangedError, SmallFileCache


class SmallFileCacheTest(unittest.TestCase):
    def setUp(self):
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder)

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.folder, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

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

    def test_a_file_that_shrank_since_its_stat_is_an_error(self):
        path = self.write("a.txt", b"alpha")
        status = os.stat(path)
        self.write("a.txt", b"al")
        with self.assertRaises(FileChangedError):
            SmallFileCache(1024).read(path, status)


if __name__ == "__main__":
    unittest.main()
