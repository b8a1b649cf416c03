"""The one table from a failed system call to the reply."""

from __future__ import annotations

import errno
import unittest

from nex.files.oserrors import reply_for


class ReplyForTest(unittest.TestCase):
    CASES = [
        (errno.ENOENT, False, 404), (errno.ENOTDIR, False, 404), (errno.EISDIR, False, 404),
        (errno.ELOOP, False, 404), (errno.ENAMETOOLONG, False, 404),
        (errno.EACCES, False, 403), (errno.EPERM, True, 403), (errno.EROFS, True, 403),
        (errno.EMFILE, False, 503), (errno.ENFILE, True, 503), (errno.ENOMEM, False, 503),
        (errno.EAGAIN, False, 503),
        (errno.ENOSPC, True, 507), (errno.EDQUOT, True, 507), (errno.EFBIG, True, 413),
        (errno.EBUSY, True, 409),
    ]

    def test_table(self) -> None:
        for code, writing, status in self.CASES:
            with self.subTest(code=errno.errorcode[code], writing=writing):
                reply = reply_for(OSError(code, "x"), writing=writing)
                self.assertEqual(reply.status, status)

    def test_out_of_resources_asks_to_retry(self) -> None:
        self.assertEqual(dict(reply_for(OSError(errno.EMFILE, "x")).headers)["Retry-After"],
                         "5")

    def test_unknown_faults_go_up(self) -> None:
        for code, writing in ((errno.EIO, False), (errno.EIO, True), (errno.EROFS, False),
                              (errno.ENOSPC, False), (errno.EBUSY, False)):
            with self.subTest(code=errno.errorcode[code], writing=writing):
                self.assertIsNone(reply_for(OSError(code, "x"), writing=writing))


if __name__ == "__main__":
    unittest.main()
