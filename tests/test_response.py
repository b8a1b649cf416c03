"""The writer without a server: the head it serializes and the bytes it puts on a socket.

Heads are checked as bytes; bodies go over ``socket.socketpair()`` with the far end read by a
thread, so a body larger than the socket's buffer never blocks the writer.
"""

from __future__ import annotations

import email.utils
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import unittest
from typing import List, Optional, Tuple
from unittest import mock

from nex import SERVER_SOFTWARE
from nex.process.connection import timeval
from nex.http import response as response_module
from nex.http.response import FileSlice, Response, field_lines, serialize_head, write_response

#: RFC 9110 §5.6.7: IMF-fixdate = day-name "," SP date1 SP time-of-day SP GMT.
IMF_FIXDATE = re.compile(r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
                         r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
                         r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT")
#: More than the writer sends with its head in one write, so the ``os.sendfile`` path runs.
LARGE = 200 * 1024


def head_lines(head: bytes) -> List[str]:
    """The lines of a serialized head, checking it ends in exactly one blank line."""
    if not head.endswith(b"\r\n\r\n"):
        raise AssertionError(head)
    text = head.decode("latin-1")
    if text.count("\r\n\r\n") != 1:
        raise AssertionError(text)
    return text[:-4].split("\r\n")


def head_fields(head: bytes) -> List[Tuple[str, str]]:
    """The ``(name, value)`` field lines of a head, in order, without the status line."""
    pairs = []
    for line in head_lines(head)[1:]:
        name, colon, value = line.partition(": ")
        if not colon:
            raise AssertionError(line)
        pairs.append((name, value))
    return pairs


def without_date(head: bytes) -> bytes:
    """``head`` with its Date value blanked, for comparing heads made a moment apart."""
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: -\r\n", head, count=1)


def split_message(data: bytes) -> Tuple[bytes, bytes]:
    """A received response as ``(head, body)``; the head keeps its blank line."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise AssertionError(data[:200])
    return data[:end + 4], data[end + 4:]


class Peer:
    """The far end of a socket pair, read to end of stream by a thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.chunks: List[bytes] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            self.chunks.append(chunk)

    def received(self) -> bytes:
        self.thread.join(10)
        if self.thread.is_alive():
            raise AssertionError("the writer never finished")
        return b"".join(self.chunks)


class RecordingSocket:
    """A socket that records every ``send`` and passes it on."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.writes: List[bytes] = []

    def send(self, data: bytes, flags: int = 0) -> int:
        self.writes.append(bytes(data))
        return self.sock.send(data, flags)

    def fileno(self) -> int:
        return self.sock.fileno()


class SerializeHeadTest(unittest.TestCase):
    """The status line and header section, byte for byte where it matters."""

    def test_status_line_carries_the_rfc9110_reason(self) -> None:
        cases = [
            (200, "OK"),
            (206, "Partial Content"),
            (301, "Moved Permanently"),
            (304, "Not Modified"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (413, "Content Too Large"),
            (416, "Range Not Satisfiable"),
            (501, "Not Implemented"),
        ]
        for status, reason in cases:
            with self.subTest(status=status):
                head = serialize_head(Response(status), keep_alive=True)
                self.assertEqual(head_lines(head)[0], f"HTTP/1.1 {status} {reason}")

    def test_date_and_server_come_first(self) -> None:
        before = time.time()
        head = serialize_head(Response(200, [("Content-Type", "text/plain")], [b"x"]),
                              keep_alive=True)
        after = time.time()
        fields = head_fields(head)
        self.assertEqual(fields[0][0], "Date")
        self.assertRegex(fields[0][1], "^" + IMF_FIXDATE.pattern + "$")
        sent = email.utils.parsedate_to_datetime(fields[0][1]).timestamp()
        self.assertLessEqual(int(before), sent)
        self.assertLessEqual(sent, after)
        self.assertEqual(fields[1], ("Server", SERVER_SOFTWARE))

    def test_handler_headers_keep_their_order(self) -> None:
        own = [("Content-Type", "text/html; charset=utf-8"), ("ETag", '"1-2"'),
               ("Cache-Control", "no-cache"), ("Vary", "Accept-Encoding"),
               ("X-Repeated", "one"), ("X-Repeated", "two")]
        head = serialize_head(Response(200, own, [b"hello"]), keep_alive=False)
        self.assertEqual(head_fields(head)[2:], [("X-Content-Type-Options", "nosniff")] + own
                         + [("Content-Length", "5"), ("Connection", "close")])

    def test_content_length_counts_bytes_and_file_slices(self) -> None:
        cases = [
            ((), 0),
            ([b""], 0),
            ([b"hello"], 5),
            ([FileSlice(0, 10)], 10),
            ([FileSlice(1000, 70000)], 70000),
            ([b"--b\r\n", FileSlice(5, 3), b"\r\n--b--\r\n", FileSlice(0, 1)], 5 + 3 + 9 + 1),
        ]
        for body, length in cases:
            with self.subTest(body=body):
                head = serialize_head(Response(200, [], body), keep_alive=True)
                self.assertIn(("Content-Length", str(length)), head_fields(head))

    def test_given_content_length_is_used_as_is(self) -> None:
        head = serialize_head(Response(200, [], [b"abc"]), keep_alive=True, content_length=3)
        self.assertIn(("Content-Length", "3"), head_fields(head))

    def test_no_content_length_on_204_and_304(self) -> None:
        for status in (204, 304):
            with self.subTest(status=status):
                head = serialize_head(Response(status, [("ETag", '"x"')], [b"ignored"]),
                                      keep_alive=True)
                names = [name.lower() for name, _ in head_fields(head)]
                self.assertNotIn("content-length", names)
                self.assertEqual(head_fields(head)[-1], ("Connection", "keep-alive"))

    def test_connection_field_follows_keep_alive(self) -> None:
        kept = serialize_head(Response(200), keep_alive=True)
        closed = serialize_head(Response(200), keep_alive=False)
        self.assertTrue(kept.endswith(b"\r\nConnection: keep-alive\r\n\r\n"))
        self.assertTrue(closed.endswith(b"\r\nConnection: close\r\n\r\n"))
        self.assertEqual(sum(name == "Connection" for name, _ in head_fields(kept)), 1)

    def test_response_splitting_by_control_characters_in_a_header_is_refused(self) -> None:
        # A Location or Content-Disposition built from a request must never be able to end
        # the head early and start a second, forged response.
        forged = "x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
        cases = [
            ("Location", forged),
            ("Location", "/a\r\nSet-Cookie: id=stolen"),
            ("Location", "/a\nSet-Cookie: id=stolen"),
            ("Location", "/a\rSet-Cookie: id=stolen"),
            ("Location", "/a\0b"),
            ("Location", "/a\r\n"),
            ("X-Split\r\nSet-Cookie", "id=stolen"),
            ("X-Split\n", "v"),
            ("X-Split\r", "v"),
            ("X-Split\0", "v"),
        ]
        for name, value in cases:
            for kind in (list, tuple):  # a tuple's lines are remembered: never unchecked ones
                with self.subTest(name=name, value=value, kind=kind):
                    headers = kind([("Content-Type", "text/plain"), (name, value)])
                    for _ in range(2):
                        with self.assertRaises(ValueError):
                            serialize_head(Response(302, headers), keep_alive=True)

    def test_the_lines_of_a_header_tuple_are_made_once_and_kept_bounded(self) -> None:
        headers = (("Content-Type", "text/plain"), ("ETag", '"1"'))
        self.assertIs(field_lines(headers), field_lines(headers))
        self.assertEqual(field_lines(list(headers)), field_lines(headers))
        self.assertEqual(field_lines(headers), 'Content-Type: text/plain\r\nETag: "1"\r\n')
        with mock.patch.dict(response_module._FIELD_LINES, clear=True):
            for number in range(response_module._FIELD_LINES_LIMIT * 2):
                field_lines((("ETag", f'"{number}"'),))
                self.assertLessEqual(len(response_module._FIELD_LINES),
                                     response_module._FIELD_LINES_LIMIT)

    def test_tabs_and_latin1_text_are_not_mistaken_for_splitting(self) -> None:
        head = serialize_head(Response(200, [("X-Note", "a\tb caf\xe9")]), keep_alive=True)
        self.assertIn(("X-Note", "a\tb caf\xe9"), head_fields(head))


class WriterTestCase(unittest.TestCase):
    """A socket pair per test and a temporary folder for file bodies."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.new_pair()

    def new_pair(self) -> None:
        """A fresh connected pair: ``writer`` for the response, ``reader`` for the peer."""
        self.writer, self.reader = socket.socketpair()
        self.addCleanup(self.writer.close)
        self.addCleanup(self.reader.close)

    def data_file(self, size: int, name: str = "data.bin") -> Tuple[str, bytes]:
        """A file of ``size`` bytes with no repeating pattern a wrong offset could match."""
        data = os.urandom(size)
        path = os.path.join(self.folder, name)
        with open(path, "wb") as out:
            out.write(data)
        return path, data

    def send(self, response: Response, *, head_only: bool = False, keep_alive: bool = True,
             sock: Optional[object] = None) -> Tuple[int, bytes]:
        """Write ``response``, end the stream, and return the count and the bytes received."""
        peer = Peer(self.reader)
        try:
            sent = write_response(sock or self.writer, response, head_only=head_only,
                                  keep_alive=keep_alive)
        finally:
            self.writer.shutdown(socket.SHUT_WR)
        return sent, peer.received()


class WriteResponseTest(WriterTestCase):
    """What arrives at the far end, and the file closed after every write."""

    def test_small_bytes_body_goes_out_with_the_head_in_one_write(self) -> None:
        recording = RecordingSocket(self.writer)
        response = Response(200, [("Content-Type", "text/plain")], [b"hello"])
        sent, data = self.send(response, sock=recording)
        self.assertEqual(sent, 5)
        self.assertEqual(len(recording.writes), 1)
        self.assertEqual(recording.writes[0], data)
        head, body = split_message(data)
        self.assertEqual(body, b"hello")
        self.assertIn(("Content-Length", "5"), head_fields(head))

    def test_small_file_slices(self) -> None:
        path, data = self.data_file(5000)
        for offset, count in [(0, 5000), (0, 1), (4999, 1), (123, 4000)]:
            with self.subTest(offset=offset, count=count):
                self.new_pair()
                file = open(path, "rb")
                sent, received = self.send(Response(206, [], [FileSlice(offset, count)], file))
                self.assertEqual(sent, count)
                head, body = split_message(received)
                self.assertEqual(body, data[offset:offset + count])
                self.assertIn(("Content-Length", str(count)), head_fields(head))
                self.assertTrue(file.closed)

    def test_large_file_slice_goes_through_sendfile(self) -> None:
        path, data = self.data_file(LARGE + 1000)
        for offset, count in [(0, LARGE + 1000), (777, LARGE), (1000, 64 * 1024 + 1)]:
            with self.subTest(offset=offset, count=count):
                self.new_pair()
                file = open(path, "rb")
                with mock.patch("nex.http.response.os.sendfile", wraps=os.sendfile) as sendfile:
                    sent, received = self.send(Response(200, [], [FileSlice(offset, count)],
                                                        file))
                self.assertTrue(sendfile.called)
                self.assertEqual(sent, count)
                head, body = split_message(received)
                self.assertEqual(len(body), count)
                self.assertEqual(body, data[offset:offset + count])
                self.assertTrue(file.closed)

    def test_mixed_pieces_in_order(self) -> None:
        path, data = self.data_file(LARGE)
        for count in (100, LARGE - 500):  # the one-write path, then the sendfile path
            with self.subTest(count=count):
                self.new_pair()
                file = open(path, "rb")
                body = [b"--sep\r\nContent-Range: bytes\r\n\r\n", FileSlice(500, count),
                        b"\r\n--sep--\r\n"]
                sent, received = self.send(Response(206, [], body, file))
                expected = body[0] + data[500:500 + count] + body[2]
                self.assertEqual(sent, len(expected))
                head, got = split_message(received)
                self.assertEqual(got, expected)
                self.assertIn(("Content-Length", str(len(expected))), head_fields(head))
                self.assertTrue(file.closed)

    def test_several_slices_of_one_file(self) -> None:
        path, data = self.data_file(LARGE)
        file = open(path, "rb")
        body = [b"a", FileSlice(0, 10), b"b", FileSlice(LARGE - 70000, 70000), b"c",
                FileSlice(5, 5)]
        sent, received = self.send(Response(206, [], body, file))
        expected = b"a" + data[:10] + b"b" + data[-70000:] + b"c" + data[5:10]
        self.assertEqual(sent, len(expected))
        self.assertEqual(split_message(received)[1], expected)
        self.assertTrue(file.closed)

    def test_head_only_sends_exactly_the_head(self) -> None:
        path, _ = self.data_file(LARGE)
        for body_size in (10, LARGE):
            with self.subTest(body_size=body_size):
                self.new_pair()
                file = open(path, "rb")
                response = Response(200, [("Content-Type", "application/octet-stream")],
                                    [FileSlice(0, body_size)], file)
                expected_head = serialize_head(response, keep_alive=True)
                sent, received = self.send(response, head_only=True)
                self.assertEqual(sent, 0)
                self.assertTrue(received.endswith(b"\r\n\r\n"))
                # The same head as serialize_head gives, up to the Date, which may have ticked.
                self.assertEqual(without_date(received), without_date(expected_head))
                self.assertIn(("Content-Length", str(body_size)), head_fields(received))
                self.assertTrue(file.closed)

    def test_no_body_for_204_and_304(self) -> None:
        for status in (204, 304):
            with self.subTest(status=status):
                self.new_pair()
                sent, received = self.send(Response(status, [], [b"never sent"]))
                self.assertEqual(sent, 0)
                self.assertTrue(received.endswith(b"\r\n\r\n"))
                self.assertNotIn(b"never sent", received)

    def test_empty_body(self) -> None:
        sent, received = self.send(Response(200, [], []), keep_alive=False)
        self.assertEqual(sent, 0)
        self.assertIn(("Content-Length", "0"), head_fields(received))
        self.assertEqual(head_fields(received)[-1], ("Connection", "close"))

    def test_file_closed_when_the_peer_has_gone(self) -> None:
        path, _ = self.data_file(LARGE)
        cases = [
            ("small slice", [FileSlice(0, 100)]),
            ("large slice", [FileSlice(0, LARGE)]),
            ("mixed", [b"a", FileSlice(0, LARGE), b"b"]),
        ]
        self.reader.close()
        for label, body in cases:
            with self.subTest(body=label):
                file = open(path, "rb")
                with self.assertRaises(OSError):
                    write_response(self.writer, Response(200, [], body, file),
                                   head_only=False, keep_alive=True)
                self.assertTrue(file.closed)

    def test_file_closed_when_a_header_is_refused(self) -> None:
        path, _ = self.data_file(10)
        file = open(path, "rb")
        with self.assertRaises(ValueError):
            write_response(self.writer, Response(200, [("X", "a\r\nb")], [FileSlice(0, 10)],
                                                 file), head_only=False, keep_alive=True)
        self.assertTrue(file.closed)

    def test_file_that_shrank_since_its_stat_is_an_error_not_a_short_body(self) -> None:
        # Sending fewer bytes than Content-Length promised would leave the client waiting, or
        # on a kept-alive connection read the next response as the rest of this one.
        for size in (1000, LARGE):
            with self.subTest(size=size):
                self.new_pair()
                path, _ = self.data_file(size, f"{size}.bin")
                file = open(path, "rb")
                os.truncate(path, size // 2)
                peer = Peer(self.reader)
                with self.assertRaises(OSError):
                    write_response(self.writer, Response(200, [], [FileSlice(0, size)], file),
                                   head_only=False, keep_alive=True)
                self.assertTrue(file.closed)
                self.writer.shutdown(socket.SHUT_WR)
                received = peer.received()
                if size <= 64 * 1024:
                    # The small path reads before it writes: nothing at all goes out.
                    self.assertEqual(received, b"")


if __name__ == "__main__":
    unittest.main()


class SlowReaderTest(WriterTestCase):
    """The minimum send rate: trickling reads cannot hold a worker for ever."""

    def trickle(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if not self.reader.recv(1024):
                    return
            except OSError:
                return
            time.sleep(0.05)

    def test_a_client_trickling_reads_is_dropped_below_the_minimum_rate(self) -> None:
        self.writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(0.2))
        self.writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        path, _ = self.data_file(8 * 1024 * 1024)
        stop = threading.Event()
        reader = threading.Thread(target=self.trickle, args=(stop,))
        reader.start()
        self.addCleanup(reader.join, 30)
        self.addCleanup(stop.set)
        response = Response(200, [], [FileSlice(0, 8 * 1024 * 1024)], open(path, "rb"))
        with self.assertRaises(TimeoutError):
            write_response(self.writer, response, head_only=False, keep_alive=True,
                           min_rate=1024 * 1024, grace=0.5)
        self.assertTrue(response.file.closed)

    def test_a_reader_keeping_up_is_served_whole_with_the_check_on(self) -> None:
        path, data = self.data_file(3 * 1024 * 1024)
        response = Response(200, [], [FileSlice(0, len(data))], open(path, "rb"))
        peer = Peer(self.reader)
        try:
            write_response(self.writer, response, head_only=False, keep_alive=True,
                           min_rate=1024, grace=30.0)
        finally:
            self.writer.shutdown(socket.SHUT_WR)
        self.assertEqual(split_message(peer.received())[1], data)
