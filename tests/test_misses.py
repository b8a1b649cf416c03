"""Unit tests of the table of paths found missing: it never answers otherwise than the
resolver would without it."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from unittest import mock

from nex.files.misses import MissCache
from nex.files import paths as resolver_module
from nex.files.paths import resolve
from nex.http.errors import HTTPError
from nex.process.config import Config
from tests.support.threads import run_in_threads


class MissCacheTest(unittest.TestCase):
    def setUp(self):
        self.root = os.path.realpath(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.root)
        os.makedirs(os.path.join(self.root, "docs"))
        self.config = Config(document_root=self.root)
        # Every folder counts as settled, as one untouched for a while would.
        patcher = mock.patch("nex.files.filecache.SETTLED_NS", -(1 << 62))
        patcher.start()
        self.addCleanup(patcher.stop)

    def status(self, path: str, misses: MissCache) -> tuple:
        try:
            target = resolve(path, "", self.config, misses=misses)
        except HTTPError as error:
            return error.status, error.detail
        return 200, target.fs_path

    def assert_same_answer(self, path: str, misses: MissCache) -> tuple:
        """The answer with the table is the answer without it."""
        answer = self.status(path, misses)
        self.assertEqual(answer, self.status(path, None))
        return answer

    def write(self, relative: str, data: bytes = b"x") -> None:
        with open(os.path.join(self.root, relative), "wb") as file:
            file.write(data)

    def test_a_miss_is_remembered_and_answered_with_the_same_page(self):
        misses = MissCache()
        answer = self.assert_same_answer("/docs/n%20o.txt", misses)
        self.assertEqual(answer, (404, "The requested path /docs/n o.txt was not found."))
        self.assertEqual(len(misses), 1)
        with mock.patch("nex.files.paths._walk", side_effect=AssertionError("walked")):
            self.assertEqual(self.status("/docs/n%20o.txt", misses), answer)

    def test_a_file_made_after_the_miss_is_found(self):
        misses = MissCache()
        self.assert_same_answer("/docs/new.txt", misses)
        self.write("docs/new.txt")
        self.assertEqual(self.assert_same_answer("/docs/new.txt", misses)[0], 200)

    def test_a_missing_folder_made_after_the_miss_is_found(self):
        misses = MissCache()
        self.assert_same_answer("/docs/a/b/new.txt", misses)
        os.makedirs(os.path.join(self.root, "docs", "a", "b"))
        self.write("docs/a/b/new.txt")
        self.assertEqual(self.assert_same_answer("/docs/a/b/new.txt", misses)[0], 200)

    def test_a_folder_swapped_for_another_is_looked_at_again(self):
        misses = MissCache()
        self.assert_same_answer("/docs/new.txt", misses)
        os.makedirs(os.path.join(self.root, "other"))
        self.write("other/new.txt")
        os.rename(os.path.join(self.root, "docs"), os.path.join(self.root, "old"))
        os.rename(os.path.join(self.root, "other"), os.path.join(self.root, "docs"))
        self.assertEqual(self.assert_same_answer("/docs/new.txt", misses)[0], 200)

    def test_a_listed_folder_remembers_its_missing_index_files(self):
        misses = MissCache()
        self.assertEqual(self.assert_same_answer("/docs/", misses)[0], 200)
        self.assertEqual(len(misses), 2)  # index.html, index.htm
        with mock.patch("nex.files.paths._walk", wraps=resolver_module._walk) as walk:
            target = resolve("/docs/", "", self.config, misses=misses)
        self.assertEqual(target.kind, "directory")
        self.assertEqual(walk.call_count, 1)  # the folder alone
        self.write("docs/index.htm")
        answer = self.assert_same_answer("/docs/", misses)
        self.assertEqual(answer, (200, os.path.join(self.root, "docs", "index.htm")))
        self.assertEqual(self.assert_same_answer("/docs/index.html", misses)[0], 404)

    def test_a_dangling_index_link_is_never_remembered_as_missing(self):
        os.symlink(os.path.join(self.root, "later.html"),
                   os.path.join(self.root, "docs", "index.html"))
        misses = MissCache()
        for policy in ("always", "inside"):
            with self.subTest(policy=policy):
                self.config = Config(document_root=self.root, symlinks=policy)
                self.assert_same_answer("/docs/", misses)
        self.write("later.html")
        self.assertEqual(self.assert_same_answer("/docs/", misses),
                         (200, os.path.join(self.root, "later.html")))

    def test_a_dangling_link_is_never_remembered_as_missing(self):
        os.symlink(os.path.join(self.root, "later"), os.path.join(self.root, "docs", "link"))
        misses = MissCache()
        self.assert_same_answer("/docs/link/new.txt", misses)
        self.assertEqual(len(misses), 0)
        os.makedirs(os.path.join(self.root, "later"))
        self.write("later/new.txt")
        self.assertEqual(self.assert_same_answer("/docs/link/new.txt", misses)[0], 200)

    def test_refusals_other_than_a_miss_are_not_remembered(self):
        self.write("docs/file.txt")
        misses = MissCache()
        for path in ("/docs/.hidden", "/docs/file.txt/", "/docs/file.txt/x", "/docs/%zz"):
            self.assert_same_answer(path, misses)
        self.assertEqual(len(misses), 0)

    def test_an_unsettled_folder_is_not_trusted(self):
        misses = MissCache()
        with mock.patch("nex.files.filecache.SETTLED_NS", 1 << 62):
            self.assert_same_answer("/docs/new.txt", misses)
        self.assertEqual(len(misses), 0)

    def test_the_table_stays_bounded(self):
        misses = MissCache(max_entries=8)
        for n in range(40):
            self.assert_same_answer(f"/docs/{n}.txt", misses)
            self.assertLessEqual(len(misses), 8)

    def test_hammered_from_many_threads_it_answers_as_the_disk_does(self):
        misses = MissCache(max_entries=16)
        for n in range(0, 32, 2):
            self.write(f"docs/{n}.txt")
        failures = []

        def hammer(seed: int) -> None:
            for round_ in range(200):
                n = (seed * 7 + round_) % 32
                expected = 200 if n % 2 == 0 else 404
                if self.status(f"/docs/{n}.txt", misses)[0] != expected:
                    failures.append(n)

        run_in_threads(hammer)
        self.assertEqual(failures, [])
        self.assertLessEqual(len(misses), 16)


if __name__ == "__main__":
    unittest.main()
