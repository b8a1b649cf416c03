"""The logger with in-memory streams: the line format, escaping, colour, batching, threads."""

from __future__ import annotations

import datetime
import os
import re
import select
import tempfile
import threading
import time
import unittest
from typing import List
from unittest import mock

import nex.process.log
from nex.process.log import Logger, escape_log_text
from tests.support import wait_until
from tests.support.logs import FIXED_TEXT, FIXED_TIME, LoggerTestCase, read_all

#: Text between the quotes of a log field: escaped quotes and backslashes, no control bytes.
_QUOTED = r'"(?:[^"\\\x00-\x1f\x7f-\x9f]|\\["\\]|\\x[0-9a-f]{2})*"'
#: One Combined Log Format line as Nex writes it, without colour, then the duration.
ACCESS_LINE = re.compile(
    r"(?P<client>\S+) - - \[(?P<time>[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2}"
    rf" \+0000)\] (?P<request>{_QUOTED}) (?P<status>[0-9]{{3}}) (?P<size>[1-9][0-9]*|-) "
    rf"(?P<referer>{_QUOTED}) (?P<agent>{_QUOTED}) (?P<duration>0|[1-9][0-9]*)\n")
#: Generous bound on waits for the writer thread; never reached unless something is stuck.
DEADLINE = 30.0


class PipeReader(threading.Thread):
    """Reads a pipe to its end in the background, once started."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.chunks: List[bytes] = []

    def run(self) -> None:
        while True:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return
            self.chunks.append(chunk)

    def text(self) -> str:
        self.join(DEADLINE)
        if self.is_alive():
            raise AssertionError("the pipe never reached its end")
        return b"".join(self.chunks).decode("utf-8")


class AccessLineTest(LoggerTestCase):
    """The Combined Log Format line, field by field."""

    def test_combined_log_format(self) -> None:
        logger = self.logger()
        with mock.patch("nex.process.log.time.time", return_value=FIXED_TIME):
            logger.access("192.0.2.7", "GET /a.txt HTTP/1.1", 200, 1234,
                          "http://example.com/", "curl/8.0", duration_us=1500)
        self.assertEqual(self.logged(logger),
                         f'192.0.2.7 - - [{FIXED_TEXT}] "GET /a.txt HTTP/1.1" 200 1234 '
                         '"http://example.com/" "curl/8.0" 1500\n')

    def test_every_line_parses(self) -> None:
        logger = self.logger()
        logger.access("::1", "HEAD / HTTP/1.0", 304, 0, None, None)
        logger.access("10.0.0.1", "GET /x HTTP/1.1", 404, 99, "", "")
        lines = self.logged(logger).splitlines(keepends=True)
        self.assertEqual(len(lines), 2)
        for line in lines:
            self.assertIsNotNone(ACCESS_LINE.fullmatch(line), line)

    def test_time_is_now_in_utc(self) -> None:
        logger = self.logger()
        before = int(time.time())
        logger.access("127.0.0.1", "GET / HTTP/1.1", 200, 1, None, None)
        after = time.time()
        match = ACCESS_LINE.fullmatch(self.logged(logger))
        when = datetime.datetime.strptime(match["time"], "%d/%b/%Y:%H:%M:%S %z").timestamp()
        self.assertLessEqual(before, when)
        self.assertLessEqual(when, after)

    def test_size_zero_is_a_dash(self) -> None:
        logger = self.logger()
        logger.access("127.0.0.1", "HEAD / HTTP/1.1", 200, 0, None, None)
        logger.access("127.0.0.1", "GET / HTTP/1.1", 200, 1, None, None)
        sizes = [match["size"] for match in ACCESS_LINE.finditer(self.logged(logger))]
        self.assertEqual(sizes, ["-", "1"])

    def test_missing_referer_and_agent_are_dashes(self) -> None:
        logger = self.logger()
        for referer, agent in [(None, None), ("", ""), ("r", None), (None, "a")]:
            logger.access("127.0.0.1", "GET / HTTP/1.1", 200, 5, referer, agent)
        pairs = [(match["referer"], match["agent"])
                 for match in ACCESS_LINE.finditer(self.logged(logger))]
        self.assertEqual(pairs, [('"-"', '"-"'), ('"-"', '"-"'), ('"r"', '"-"'),
                                 ('"-"', '"a"')])

    def test_unparsed_request_is_logged_as_a_dash(self) -> None:
        logger = self.logger()
        logger.access("127.0.0.1", "-", 400, 321, None, None)
        self.assertIn('"-" 400 321 "-" "-" 0\n', self.logged(logger))

    def test_user_is_the_third_field(self) -> None:
        logger = self.logger()
        with mock.patch("nex.process.log.time.time", return_value=FIXED_TIME):
            logger.access("192.0.2.7", "GET /private/ HTTP/1.1", 200, 5, None, None,
                          user="alice")
            logger.access("192.0.2.7", "GET / HTTP/1.1", 200, 5, None, None, user=None)
        self.assertEqual(self.logged(logger).splitlines(), [
            f'192.0.2.7 - alice [{FIXED_TEXT}] "GET /private/ HTTP/1.1" 200 5 "-" "-" 0',
            f'192.0.2.7 - - [{FIXED_TEXT}] "GET / HTTP/1.1" 200 5 "-" "-" 0'])

    def test_a_tunnel_line_ends_with_its_byte_counts(self) -> None:
        logger = self.logger()
        with mock.patch("nex.process.log.time.time", return_value=FIXED_TIME):
            logger.access("127.0.0.1", "CONNECT example.org:443 HTTP/1.1", 200, 5120, None,
                          "curl/8.5.0", user="alice", suffix=" up=817 down=5120",
                          duration_us=2000000)
        self.assertEqual(self.logged(logger),
                         f'127.0.0.1 - alice [{FIXED_TEXT}] "CONNECT example.org:443 HTTP/1.1" '
                         '200 5120 "-" "curl/8.5.0" 2000000 up=817 down=5120\n')

    def test_user_stays_one_escaped_field(self) -> None:
        logger = self.logger()
        cases = (("j\u00fcrgen", "j\u00fcrgen"), ("mary ann", "mary\\x20ann"),
                 ('a"b\\c', 'a\\"b\\\\c'), ("x\x1b[31m\ny", "x\\x1b[31m\\x0ay"))
        for user, _ in cases:
            logger.access("192.0.2.7", "GET / HTTP/1.1", 200, 5, None, None, user=user)
        lines = self.logged(logger).splitlines()
        self.assertEqual(len(lines), len(cases))
        for (user, shown), line in zip(cases, lines):
            with self.subTest(user=user):
                self.assertEqual(line.split(" ")[:3], ["192.0.2.7", "-", shown])


class EscapeTest(LoggerTestCase):
    """Client text in the log: control characters as \\xHH, quotes and backslashes escaped."""

    CASES = [
        ("GET / HTTP/1.1", "GET / HTTP/1.1"),
        ("", ""),
        ("caf\xe9 \xa0\xff", "caf\xe9 \xa0\xff"),
        ("a\nb", "a\\x0ab"),
        ("a\r\nb", "a\\x0d\\x0ab"),
        ("\x00\x01\x1f", "\\x00\\x01\\x1f"),
        ("\t", "\\x09"),
        ("\x1b[2J", "\\x1b[2J"),
        ("\x7f\x80\x85\x9f", "\\x7f\\x80\\x85\\x9f"),
        ('say "hi"', 'say \\"hi\\"'),
        ("back\\slash", "back\\\\slash"),
        ("\\x41", "\\\\x41"),
    ]

    def test_table(self) -> None:
        for text, expected in self.CASES:
            with self.subTest(text=text):
                self.assertEqual(escape_log_text(text), expected)

    def test_a_request_cannot_forge_a_second_log_line(self) -> None:
        forged = ('127.0.0.1 - - [01/Jan/2000:00:00:00 +0000] "GET /admin HTTP/1.1" 200 5 '
                  '"-" "-"')
        logger = self.logger()
        logger.access("192.0.2.1", f"GET /x HTTP/1.1\n{forged}", 404, 10,
                      f'r"\r\n{forged}', f"agent\x85{forged}")
        text = self.logged(logger)
        self.assertEqual(text.count("\n"), 1)
        self.assertEqual(len(text.splitlines()), 1)
        match = ACCESS_LINE.fullmatch(text)
        self.assertIsNotNone(match, text)
        self.assertEqual(match["client"], "192.0.2.1")
        self.assertEqual(match["status"], "404")

    def test_a_request_cannot_close_a_quoted_field_early(self) -> None:
        # A quote in the user agent must not end the field and let the rest pose as another.
        logger = self.logger()
        logger.access("192.0.2.1", "GET / HTTP/1.1", 200, 1, "-", 'x" "injected')
        match = ACCESS_LINE.fullmatch(self.logged(logger))
        self.assertIsNotNone(match)
        self.assertEqual(match["agent"], '"x\\" \\"injected"')

    def test_escape_sequences_never_reach_a_terminal(self) -> None:
        logger = self.logger()
        logger.access("192.0.2.1", "GET /\x1b]0;pwned\x07 HTTP/1.1", 200, 1, "\x1b[31m",
                      "\x9b2J")
        text = self.logged(logger)
        self.assertNotIn("\x1b", text)
        self.assertNotIn("\x07", text)
        self.assertNotIn("\x9b", text)


class ColourTest(LoggerTestCase):
    """ANSI colour on the status, and only when asked for."""

    def test_status_is_coloured_by_class(self) -> None:
        logger = self.logger(colour=True)
        for status in (200, 301, 404, 500):
            logger.access("127.0.0.1", "GET / HTTP/1.1", status, 1, None, None)
        text = self.logged(logger)
        for status, code in [(200, "32"), (301, "36"), (404, "33"), (500, "31")]:
            with self.subTest(status=status):
                self.assertIn(f'"GET / HTTP/1.1" \x1b[{code}m{status}\x1b[0m 1 ', text)

    def test_no_colour_codes_without_colour(self) -> None:
        logger = self.logger(colour=False)
        for status in (200, 301, 404, 500):
            logger.access("127.0.0.1", "GET / HTTP/1.1", status, 1, None, None)
        text = self.logged(logger)
        self.assertNotIn("\x1b", text)
        self.assertEqual(len(list(ACCESS_LINE.finditer(text))), 4)


class BatchingTest(LoggerTestCase):
    """Access lines wait in memory; warnings, tracebacks and messages are written at once."""

    LINE = ("127.0.0.1", "GET / HTTP/1.1", 200, 1, None, None)

    def test_line_waits_in_memory_until_close(self) -> None:
        logger = self.logger()
        logger.access(*self.LINE)
        self.assertEqual(read_all(self.access_fd), "")
        logger.close()
        self.assertIsNotNone(ACCESS_LINE.fullmatch(read_all(self.access_fd)))

    def test_close_writes_everything_and_closes_the_owned_descriptors(self) -> None:
        folder = tempfile.mkdtemp()
        self.addCleanup(lambda: [os.remove(os.path.join(folder, name))
                                 for name in os.listdir(folder)] and os.rmdir(folder))
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        access = os.open(os.path.join(folder, "access.log"), flags)
        errors = os.open(os.path.join(folder, "error.log"), flags)
        logger = Logger(access, errors, owned=(access, errors))
        logger.access(*self.LINE)
        logger.warning("last words")
        logger.close()
        for fd in (access, errors):
            with self.assertRaises(OSError):
                os.fstat(fd)
        with open(os.path.join(folder, "access.log"), encoding="utf-8") as log:
            self.assertIsNotNone(ACCESS_LINE.fullmatch(log.read()))
        with open(os.path.join(folder, "error.log"), encoding="utf-8") as log:
            self.assertTrue(log.read().endswith("warning: last words\n"))

    def test_line_appears_after_the_flush_interval(self) -> None:
        logger = self.logger(interval=0.01)
        logger.access(*self.LINE)
        wait_until(lambda: read_all(self.access_fd))
        self.assertIsNotNone(ACCESS_LINE.fullmatch(read_all(self.access_fd)))

    def test_a_full_batch_is_written_without_waiting(self) -> None:
        logger = self.logger()
        count = nex.process.log._BATCH_BYTES // 40
        for _ in range(count):
            logger.access(*self.LINE)
        wait_until(lambda: read_all(self.access_fd))
        self.assertTrue(read_all(self.access_fd), "a full batch waited for the interval")

    def test_warning_is_written_at_once(self) -> None:
        logger = self.logger()
        with mock.patch("nex.process.log.time.time", return_value=FIXED_TIME):
            logger.warning("could not start a worker thread")
        wait_until(self.errors)
        self.assertEqual(self.errors(),
                         f"[{FIXED_TEXT}] warning: could not start a worker thread\n")
        self.assertEqual(read_all(self.access_fd), "")

    def test_exception_is_written_at_once_with_its_traceback(self) -> None:
        logger = self.logger()
        try:
            raise RuntimeError("disk on fire")
        except RuntimeError:
            logger.exception("fault while answering 'GET / HTTP/1.1'")
        wait_until(self.errors)
        text = self.errors()
        first, _, trace = text.partition("\n")
        self.assertRegex(first, r"^\[[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9:]{8} \+0000\] "
                                r"error: fault while answering 'GET / HTTP/1.1'$")
        self.assertTrue(trace.startswith("Traceback (most recent call last):\n"), trace)
        self.assertIn("test_exception_is_written_at_once_with_its_traceback", trace)
        self.assertTrue(trace.endswith("RuntimeError: disk on fire\n"), trace)
        self.assertEqual(read_all(self.access_fd), "")

    def test_pending_access_lines_precede_a_message(self) -> None:
        logger = self.logger()
        logger.access(*self.LINE)
        logger.message("Nex stopped")
        wait_until(lambda: "Nex stopped" in read_all(self.access_fd))
        lines = read_all(self.access_fd).splitlines(keepends=True)
        self.assertEqual(len(lines), 2)
        self.assertIsNotNone(ACCESS_LINE.fullmatch(lines[0]))
        self.assertEqual(lines[1], "Nex stopped\n")


#: The warning the writer adds once it catches up after dropping lines.
DROPPED = re.compile(r"\[[^]]+\] warning: (?P<count>[0-9]+) log lines? dropped: the log was"
                     r" not written as fast as lines came\n")


class StalledDestinationTest(LoggerTestCase):
    """A destination that stops draining never holds up a worker."""

    CALLS = 10_000

    def log_from_a_worker(self, logger: Logger, calls: int, read_end: int) -> None:
        """``calls`` access lines from one worker thread, which must finish while nobody
        reads ``read_end``."""
        def work() -> None:
            for index in range(calls):
                logger.access("192.0.2.1", f"GET /{index} HTTP/1.1", 200, index + 1, None,
                              "a user agent of a typical length, Mozilla/5.0 (X11; Linux)")

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        worker.join(120)  # generous: 10,000 calls take well under a second when nothing blocks
        if worker.is_alive():
            PipeReader(read_end).start()  # unblock it, so that the test can end
            self.fail("access() blocked on a stalled log")

    def test_pipe_nobody_reads_lets_every_call_return_and_counts_the_drops(self) -> None:
        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        logger = self.logger(access=write_end, errors=write_end, interval=0.01,
                             buffer_bytes=64 * 1024, owned=(write_end,))
        self.log_from_a_worker(logger, self.CALLS, read_end)
        reader = PipeReader(read_end)
        reader.start()
        logger.close()
        text = reader.text()
        access_lines = 0
        dropped = 0
        for line in text.splitlines(keepends=True):
            if ACCESS_LINE.fullmatch(line):
                access_lines += 1
            else:
                match = DROPPED.fullmatch(line)
                self.assertIsNotNone(match, line)
                dropped += int(match["count"])
        self.assertGreater(dropped, 0)
        self.assertEqual(access_lines + dropped, self.CALLS)

    def test_drop_count_goes_to_the_error_log(self) -> None:
        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        logger = self.logger(access=write_end, interval=0.01, buffer_bytes=16 * 1024,
                             owned=(write_end,))
        self.log_from_a_worker(logger, 2000, read_end)
        reader = PipeReader(read_end)
        reader.start()
        logger.close()
        written = len(reader.text().splitlines())
        notices = [DROPPED.fullmatch(line) for line in self.errors().splitlines(keepends=True)]
        self.assertTrue(notices and all(notices), self.errors())
        self.assertEqual(written + sum(int(match["count"]) for match in notices), 2000)

    def test_a_worker_never_waits_while_the_writer_is_blocked(self) -> None:
        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        logger = self.logger(access=write_end, interval=0.01, owned=(write_end,))
        blocked, release = threading.Event(), threading.Event()
        self.addCleanup(release.set)  # runs before the logger's close
        real_write = os.write

        def stalled_write(fd: int, data) -> int:
            if fd == write_end:
                blocked.set()
                release.wait()  # the destination takes nothing until the test is done
            return real_write(fd, data)

        with mock.patch("nex.process.log.os.write", stalled_write):
            logger.access(*BatchingTest.LINE)
            self.assertTrue(blocked.wait(DEADLINE))
            self.log_from_a_worker(logger, 100, read_end)
            logger.warning("still answering")
            release.set()
            logger.close()
        self.assertEqual(len(read_all_pipe(read_end).splitlines()), 101)


def read_all_pipe(fd: int) -> str:
    """What a pipe holds, once every writer has closed it."""
    reader = PipeReader(fd)
    reader.start()
    return reader.text()


class WholeLinesTest(LoggerTestCase):
    """Each write(2) holds whole lines; to a pipe, at most PIPE_BUF bytes."""

    def record_writes(self, recorded_fd: int) -> List[bytes]:
        """Record what each os.write to ``recorded_fd`` carries."""
        writes: List[bytes] = []
        real_write = os.write

        def recording_write(fd: int, data) -> int:
            if fd == recorded_fd:
                writes.append(bytes(data))
            return real_write(fd, data)

        patcher = mock.patch("nex.process.log.os.write", recording_write)
        patcher.start()
        self.addCleanup(patcher.stop)
        return writes

    def test_writes_to_a_pipe_are_whole_lines_of_at_most_pipe_buf(self) -> None:
        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        reader = PipeReader(read_end)
        reader.start()
        writes = self.record_writes(write_end)
        logger = self.logger(access=write_end, owned=(write_end,))
        sizes = [10, 700, 1500, 3000, select.PIPE_BUF - 120, select.PIPE_BUF + 500, 40]
        for index in range(300):
            size = sizes[index % len(sizes)]
            logger.access("10.0.0.1", f"GET /{index}/{'x' * size} HTTP/1.1", 200, 1, None, None)
        logger.close()
        self.assertEqual(len(reader.text().splitlines()), 300)
        self.assertGreater(len(writes), 1)
        for data in writes:
            self.assertTrue(data.endswith(b"\n"))
            if len(data) > select.PIPE_BUF:  # only a single line longer than PIPE_BUF
                self.assertEqual(data.count(b"\n"), 1, len(data))

    def test_a_long_traceback_is_cut_between_its_lines(self) -> None:
        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        reader = PipeReader(read_end)
        reader.start()
        writes = self.record_writes(write_end)
        logger = self.logger(errors=write_end, owned=(write_end,))
        try:
            raise RuntimeError("\n".join("detail " * 20 for _ in range(100)))
        except RuntimeError:
            logger.exception("fault")
        logger.close()
        self.assertIn("RuntimeError: detail", reader.text())
        self.assertGreater(len(writes), 1)
        for data in writes:
            self.assertTrue(data.endswith(b"\n"))
            self.assertLessEqual(len(data), select.PIPE_BUF)

    def test_two_writers_on_one_pipe_never_interleave_within_a_line(self) -> None:
        # Two loggers stand for two worker processes sharing one log pipe.
        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        reader = PipeReader(read_end)
        reader.start()
        other_end = os.dup(write_end)
        loggers = [self.logger(access=fd, interval=0.001, buffer_bytes=16 * 1024 * 1024,
                               owned=(fd,)) for fd in (write_end, other_end)]

        def work(number: int) -> None:
            for index in range(1500):
                loggers[number].access(f"10.0.0.{number}", f"GET /{number}/{index}/"
                                       f"{str(number) * 900} HTTP/1.1", 200, 1, None, None)

        threads = [threading.Thread(target=work, args=(number,)) for number in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
            self.assertFalse(thread.is_alive())
        for logger in loggers:
            logger.close()
        seen = set()
        for line in reader.text().splitlines(keepends=True):
            match = ACCESS_LINE.fullmatch(line)
            self.assertIsNotNone(match, line[:120])
            number, index, filler = re.fullmatch(r'"GET /([01])/([0-9]+)/([01]+) HTTP/1.1"',
                                                 match["request"]).groups()
            self.assertEqual(filler, number * 900)
            seen.add((number, index))
        self.assertEqual(len(seen), 3000)


class ConcurrencyTest(LoggerTestCase):
    """Lines from many threads at once, on one shared file, each whole."""

    THREADS = 20
    LINES = 150

    def test_lines_from_concurrent_threads_never_interleave(self) -> None:
        shared = self.temporary_fd()
        logger = self.logger(access=shared, errors=shared, interval=0.001)
        start = threading.Barrier(self.THREADS)

        def work(number: int) -> None:
            start.wait()
            for index in range(self.LINES):
                logger.access(f"10.0.0.{number}", f"GET /{number}/{index} HTTP/1.1", 200,
                              index + 1, f"http://r/{number}", f"agent {number}")
                if index % 50 == 0:
                    logger.warning(f"thread {number} at {index}")

        threads = [threading.Thread(target=work, args=(number,))
                   for number in range(self.THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
            self.assertFalse(thread.is_alive())
        logger.close()
        seen = set()
        warnings = 0
        for line in read_all(shared).splitlines(keepends=True):
            match = ACCESS_LINE.fullmatch(line)
            if match is None:
                self.assertRegex(line, r"^\[[^]]+\] warning: thread [0-9]+ at [0-9]+\n$")
                warnings += 1
                continue
            number, index = re.fullmatch(r'"GET /([0-9]+)/([0-9]+) HTTP/1.1"',
                                         match["request"]).groups()
            self.assertEqual(match["client"], f"10.0.0.{number}")
            self.assertEqual(match["size"], str(int(index) + 1))
            seen.add(match["request"])
        self.assertEqual(len(seen), self.THREADS * self.LINES)
        self.assertEqual(warnings, self.THREADS * len(range(0, self.LINES, 50)))


if __name__ == "__main__":
    unittest.main()
