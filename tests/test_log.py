"""The logger with in-memory streams: the line format, escaping, colour, batching, threads."""

from __future__ import annotations

import datetime
import io
import re
import threading
import time
import unittest
from typing import Optional
from unittest import mock

import nex.log
from nex.log import Logger, escape_log_text

#: Text between the quotes of a log field: escaped quotes and backslashes, no control bytes.
_QUOTED = r'"(?:[^"\\\x00-\x1f\x7f-\x9f]|\\["\\]|\\x[0-9a-f]{2})*"'
#: One Combined Log Format line as Nex writes it, without colour.
ACCESS_LINE = re.compile(
    r"(?P<client>\S+) - - \[(?P<time>[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2}"
    rf" \+0000)\] (?P<request>{_QUOTED}) (?P<status>[0-9]{{3}}) (?P<size>[1-9][0-9]*|-) "
    rf"(?P<referer>{_QUOTED}) (?P<agent>{_QUOTED})\n")
#: 2021-01-05 09:03:07 UTC: a single-digit day and hour to check the zero padding.
FIXED_TIME = 1_609_837_387
FIXED_TEXT = "05/Jan/2021:09:03:07 +0000"


class KeptStream(io.StringIO):
    """A text stream whose contents stay readable after the logger closes it."""

    def __init__(self) -> None:
        super().__init__()
        self.was_closed = False

    def close(self) -> None:
        self.was_closed = True


class LoggerTestCase(unittest.TestCase):
    """Loggers whose periodic flush never fires on its own unless a test asks for it."""

    def logger(self, *, colour: bool = False, interval: float = 3600.0,
               errors: Optional[KeptStream] = None) -> Logger:
        self.access_stream = KeptStream()
        self.error_stream = errors if errors is not None else KeptStream()
        # The flusher reads the interval each time it waits: keep it patched till closed.
        patcher = mock.patch.object(nex.log, "FLUSH_INTERVAL", interval)
        patcher.start()
        self.addCleanup(patcher.stop)
        logger = Logger(self.access_stream, self.error_stream, colour=colour)
        self.addCleanup(logger.close)
        return logger

    def logged(self, logger: Logger) -> str:
        logger.flush()
        return self.access_stream.getvalue()


class AccessLineTest(LoggerTestCase):
    """The Combined Log Format line, field by field."""

    def test_combined_log_format(self) -> None:
        logger = self.logger()
        with mock.patch("nex.log.time.time", return_value=FIXED_TIME):
            logger.access("192.0.2.7", "GET /a.txt HTTP/1.1", 200, 1234,
                          "http://example.com/", "curl/8.0")
        self.assertEqual(self.logged(logger),
                         f'192.0.2.7 - - [{FIXED_TEXT}] "GET /a.txt HTTP/1.1" 200 1234 '
                         '"http://example.com/" "curl/8.0"\n')

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
        self.assertIn('"-" 400 321 "-" "-"\n', self.logged(logger))

    def test_user_is_the_third_field(self) -> None:
        logger = self.logger()
        with mock.patch("nex.log.time.time", return_value=FIXED_TIME):
            logger.access("192.0.2.7", "GET /private/ HTTP/1.1", 200, 5, None, None,
                          user="alice")
            logger.access("192.0.2.7", "GET / HTTP/1.1", 200, 5, None, None, user=None)
        self.assertEqual(self.logged(logger).splitlines(), [
            f'192.0.2.7 - alice [{FIXED_TEXT}] "GET /private/ HTTP/1.1" 200 5 "-" "-"',
            f'192.0.2.7 - - [{FIXED_TEXT}] "GET / HTTP/1.1" 200 5 "-" "-"'])

    def test_user_stays_one_escaped_field(self) -> None:
        logger = self.logger()
        for user, shown in (("j\u00fcrgen", "j\u00fcrgen"),
                            ("mary ann", "mary\\x20ann"),
                            ('a"b\\c', 'a\\"b\\\\c'),
                            ("x\x1b[31m\ny", "x\\x1b[31m\\x0ay")):
            with self.subTest(user=user):
                logger.access("192.0.2.7", "GET / HTTP/1.1", 200, 5, None, None, user=user)
                line = self.logged(logger).splitlines()[-1]
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
    """Access lines wait in memory; warnings and tracebacks are written at once."""

    LINE = ("127.0.0.1", "GET / HTTP/1.1", 200, 1, None, None)

    def test_line_appears_on_flush(self) -> None:
        logger = self.logger()
        logger.access(*self.LINE)
        self.assertEqual(self.access_stream.getvalue(), "")
        logger.flush()
        self.assertIsNotNone(ACCESS_LINE.fullmatch(self.access_stream.getvalue()))

    def test_line_appears_on_close_and_streams_are_closed(self) -> None:
        logger = self.logger()
        logger.access(*self.LINE)
        self.assertEqual(self.access_stream.getvalue(), "")
        logger.close()
        self.assertIsNotNone(ACCESS_LINE.fullmatch(self.access_stream.getvalue()))
        self.assertTrue(self.access_stream.was_closed)
        self.assertTrue(self.error_stream.was_closed)

    def test_line_appears_after_the_flush_interval(self) -> None:
        logger = self.logger(interval=0.01)
        logger.access(*self.LINE)
        deadline = time.monotonic() + 5
        while not self.access_stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.005)
        self.assertIsNotNone(ACCESS_LINE.fullmatch(self.access_stream.getvalue()))

    def test_a_full_batch_is_written_without_waiting(self) -> None:
        logger = self.logger()
        for _ in range(nex.log._BATCH_LINES):
            logger.access(*self.LINE)
        self.assertEqual(self.access_stream.getvalue().count("\n"), nex.log._BATCH_LINES)

    def test_warning_is_written_at_once(self) -> None:
        logger = self.logger()
        with mock.patch("nex.log.time.time", return_value=FIXED_TIME):
            logger.warning("could not start a worker thread")
        self.assertEqual(self.error_stream.getvalue(),
                         f"[{FIXED_TEXT}] warning: could not start a worker thread\n")
        self.assertEqual(self.access_stream.getvalue(), "")

    def test_exception_is_written_at_once_with_its_traceback(self) -> None:
        logger = self.logger()
        try:
            raise RuntimeError("disk on fire")
        except RuntimeError:
            logger.exception("fault while answering 'GET / HTTP/1.1'")
        text = self.error_stream.getvalue()
        first, _, trace = text.partition("\n")
        self.assertRegex(first, r"^\[[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9:]{8} \+0000\] "
                                r"error: fault while answering 'GET / HTTP/1.1'$")
        self.assertTrue(trace.startswith("Traceback (most recent call last):\n"), trace)
        self.assertIn("test_exception_is_written_at_once_with_its_traceback", trace)
        self.assertTrue(trace.endswith("RuntimeError: disk on fire\n"), trace)
        self.assertEqual(self.access_stream.getvalue(), "")

    def test_pending_access_lines_precede_a_message(self) -> None:
        logger = self.logger()
        logger.access(*self.LINE)
        logger.message("Nex stopped")
        lines = self.access_stream.getvalue().splitlines(keepends=True)
        self.assertEqual(len(lines), 2)
        self.assertIsNotNone(ACCESS_LINE.fullmatch(lines[0]))
        self.assertEqual(lines[1], "Nex stopped\n")


class SlowStream(KeptStream):
    """A stream that lets other threads run in the middle of each write, as a file might."""

    def write(self, text: str) -> int:
        half = len(text) // 2
        super().write(text[:half])
        time.sleep(0)
        super().write(text[half:])
        return len(text)


class ConcurrencyTest(LoggerTestCase):
    """Lines from many threads at once, on one shared stream, each whole."""

    THREADS = 20
    LINES = 150

    def test_lines_from_concurrent_threads_never_interleave(self) -> None:
        shared = SlowStream()
        with mock.patch.object(nex.log, "FLUSH_INTERVAL", 0.001):
            logger = Logger(shared, shared)
            self.addCleanup(logger.close)
        start = threading.Barrier(self.THREADS)

        def work(number: int) -> None:
            start.wait()
            for index in range(self.LINES):
                logger.access(f"10.0.0.{number}", f"GET /{number}/{index} HTTP/1.1", 200,
                              index + 1, f"http://r/{number}", f"agent {number}")
                if index % 50 == 0:
                    logger.warning(f"thread {number} at {index}")
                if index % 30 == 0:
                    logger.flush()

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
        for line in shared.getvalue().splitlines(keepends=True):
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
