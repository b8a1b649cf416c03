"""Loggers on temporary files, and reading back what they wrote, for the log tests."""

from __future__ import annotations

import os
import tempfile
import unittest
from typing import Optional
from unittest import mock

import nex.process.log
from nex.process.log import Logger

#: 2021-01-05 09:03:07 UTC: a single-digit day and hour to check the zero padding.
FIXED_TIME = 1_609_837_387
FIXED_TEXT = "05/Jan/2021:09:03:07 +0000"


def read_all(fd: int) -> str:
    """Everything written so far to the file behind ``fd``."""
    chunks = []
    offset = 0
    while True:
        chunk = os.pread(fd, 65536, offset)
        if not chunk:
            return b"".join(chunks).decode("utf-8")
        chunks.append(chunk)
        offset += len(chunk)


class LoggerTestCase(unittest.TestCase):
    """Loggers on temporary files whose timed batches never fire unless a test asks."""

    def temporary_fd(self) -> int:
        file = tempfile.TemporaryFile()
        self.addCleanup(file.close)
        return file.fileno()

    def logger(self, *, colour: bool = False, interval: float = 3600.0,
               access: Optional[int] = None, errors: Optional[int] = None,
               **options) -> Logger:
        self.access_fd = self.temporary_fd() if access is None else access
        self.errors_fd = self.temporary_fd() if errors is None else errors
        # The writer reads the interval each time it waits: keep it patched till closed.
        patcher = mock.patch.object(nex.process.log, "FLUSH_INTERVAL", interval)
        patcher.start()
        self.addCleanup(patcher.stop)
        logger = Logger(self.access_fd, self.errors_fd, colour=colour, **options)
        self.addCleanup(logger.close)
        return logger

    def logged(self, logger: Logger) -> str:
        """The access log, once ``logger`` is closed and so has written everything."""
        logger.close()
        return read_all(self.access_fd)

    def errors(self) -> str:
        return read_all(self.errors_fd)
