"""WatchedFile: a parsed file re-read when it changes, a bad new version never taking over."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from typing import List

from nex.watchedfile import WatchedFile, load
from tests.support.fakes import FakeClock, rewrite


def parse_numbers(data: bytes) -> List[int]:
    """One decimal number a line; ValueError naming the line."""
    numbers = []
    for number, line in enumerate(data.decode("ascii").splitlines(), 1):
        if not line.isdigit():
            raise ValueError(f"line {number}: {line!r} is not a number")
        numbers.append(int(line))
    return numbers






class WatchedFileTest(unittest.TestCase):
    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="nex-watched-")
        self.addCleanup(shutil.rmtree, self.folder)
        self.path = os.path.join(self.folder, "numbers")
        rewrite(self.path, "1\n2\n")
        self.errors: List[str] = []
        self.parsed = 0

    def counting_parse(self, data: bytes) -> List[int]:
        self.parsed += 1
        return parse_numbers(data)

    def watch(self, interval: float = 0.0, clock: FakeClock = None) -> WatchedFile[List[int]]:
        if clock is None:
            return WatchedFile(self.path, self.counting_parse, self.errors.append,
                               check_interval=interval)
        return WatchedFile(self.path, self.counting_parse, self.errors.append,
                           check_interval=interval, clock=clock)

    def test_first_read(self) -> None:
        self.assertEqual(self.watch().value, [1, 2])

    def test_bad_file_at_start_names_path_and_line(self) -> None:
        rewrite(self.path, "1\ntwo\n")
        with self.assertRaises(ValueError) as caught:
            self.watch()
        self.assertEqual(str(caught.exception), f"{self.path} line 2: 'two' is not a number")

    def test_missing_file_at_start(self) -> None:
        missing = os.path.join(self.folder, "missing")
        with self.assertRaises(ValueError) as caught:
            WatchedFile(missing, parse_numbers, self.errors.append)
        self.assertEqual(str(caught.exception), f"{missing} does not exist")

    def test_folder_is_not_a_file(self) -> None:
        with self.assertRaises(ValueError) as caught:
            WatchedFile(self.folder, parse_numbers, self.errors.append)
        self.assertEqual(str(caught.exception), f"{self.folder} is not a regular file")

    def test_fifo_is_refused_without_blocking(self) -> None:
        fifo = os.path.join(self.folder, "fifo")
        os.mkfifo(fifo)  # opening it for reading would block until a writer appears
        with self.assertRaises(ValueError) as caught:
            load(fifo, parse_numbers)
        self.assertEqual(str(caught.exception), f"{fifo} is not a regular file")

    def test_change_is_seen(self) -> None:
        watched = self.watch()
        rewrite(self.path, "3\n")
        self.assertEqual(watched.value, [3])
        self.assertEqual(self.errors, [])

    def test_unchanged_file_is_not_parsed_again(self) -> None:
        watched = self.watch()
        for _ in range(5):
            watched.value
        self.assertEqual(self.parsed, 1)

    def test_checks_at_most_once_per_interval(self) -> None:
        clock = FakeClock(1000.0)
        watched = self.watch(interval=1.0, clock=clock)
        rewrite(self.path, "3\n")
        self.assertEqual(watched.value, [1, 2])
        clock.now += 0.5
        self.assertEqual(watched.value, [1, 2])
        clock.now += 0.5
        self.assertEqual(watched.value, [3])

    def test_bad_new_version_keeps_the_old_and_is_reported_once(self) -> None:
        watched = self.watch()
        rewrite(self.path, "1\nx\n")
        self.assertEqual(watched.value, [1, 2])
        self.assertEqual(watched.value, [1, 2])
        self.assertEqual(self.errors, [f"{self.path} line 2: 'x' is not a number;"
                                       " keeping the previous version"])
        rewrite(self.path, "5\n")
        self.assertEqual(watched.value, [5])
        rewrite(self.path, "y\n")
        self.assertEqual(watched.value, [5])
        self.assertEqual(len(self.errors), 2)

    def test_removed_file_keeps_the_old_and_is_reported_once(self) -> None:
        watched = self.watch()
        os.remove(self.path)
        self.assertEqual(watched.value, [1, 2])
        self.assertEqual(watched.value, [1, 2])
        self.assertEqual(self.errors, [f"{self.path} does not exist;"
                                       " keeping the previous version"])
        rewrite(self.path, "7\n")
        self.assertEqual(watched.value, [7])

    def test_load_once(self) -> None:
        self.assertEqual(load(self.path, parse_numbers), [1, 2])


if __name__ == "__main__":
    unittest.main()
