"""Many connections against the real server: caps, slow-loris, abandoned responses, memory.

The server must refuse what it cannot take quickly and cheaply, keep serving everyone else,
and give back every thread and descriptor once the crowd leaves.  Measured figures (latency
under a slow-loris crowd, memory with many idle connections) are printed.
"""

from __future__ import annotations

import email.utils
import os
import resource
import select
import socket
import threading
import time
import unittest
from typing import List

from tests.support import (HELLO, REQUEST, LiveServerTest, ResponseReader,
                           connect, head, parse_replies, process_status, read_until_closed,
                           reset, resources, send_and_read, wait_for_resources, wait_until)

#: A second loopback address, so that a test client is not counted with the crowd.
OTHER_SOURCE = "127.0.0.2"


def held_connections(test: LiveServerTest, count: int) -> List[socket.socket]:
    """``count`` keep-alive connections that each had one request answered (so: accepted)."""
    held: List[socket.socket] = []
    test.addCleanup(close_all, held)
    for _ in range(count):
        sock = test.server.connect()
        held.append(sock)
        sock.sendall(REQUEST)
        status, _, body = ResponseReader(sock).read()
        test.assertEqual((status, body), (200, HELLO))
    return held


def close_all(sockets: List[socket.socket]) -> None:
    """Close every socket (closing one twice is harmless)."""
    for sock in sockets:
        sock.close()


def wait_until_served(test: LiveServerTest) -> None:
    """Poll until a new connection gets its file (the server has released old slots)."""
    replies = []

    def served() -> bool:
        replies[:] = parse_replies(send_and_read(test.server, head(b"Connection: close")))
        return replies[0].status == 200
    wait_until(served, interval=0.1)
    test.assertEqual([(reply.status, reply.body) for reply in replies], [(200, HELLO)])


class ConnectionCapTest(LiveServerTest):
    settings = {"server": {"max_connections": "20"}}

    def assertBusy(self, data: bytes) -> None:
        replies = parse_replies(data)
        self.assertEqual(len(replies), 1)
        self.assertErrorPage(replies[0], 503)
        self.assertEqual(replies[0].headers["connection"], "close")
        self.assertRegex(replies[0].headers["retry-after"], r"\A[0-9]+\Z")

    def test_connection_past_the_cap_gets_a_quick_503_and_the_rest_keep_working(self):
        held = held_connections(self, 20)
        with self.subTest("client that waits for the server"):
            start = time.monotonic()
            with self.server.connect() as sock:
                data = read_until_closed(sock)
            print(f"21st connection refused in {(time.monotonic() - start) * 1000:.1f} ms")
            self.assertBusy(data)
        with self.subTest("client that sends its request first"):
            self.assertBusy(send_and_read(self.server, REQUEST))
        for sock in held:
            sock.sendall(REQUEST)
            self.assertEqual(ResponseReader(sock).read()[2], HELLO)
        close_all(held)
        wait_until_served(self)
        self.assertIn('"-" 503 ', self.server.wait_for_access_log(lambda text: '"-" 503 ' in text))
        self.assertEqual(wait_for_resources(self.server.pid, self.baseline), self.baseline)

    def test_refusal_carries_the_date_it_was_sent_not_the_start_up_date(self):
        held = held_connections(self, 20)
        self.addCleanup(close_all, held)

        def refusal_date() -> float:
            with self.server.connect() as sock:
                reply = parse_replies(read_until_closed(sock))[0]
            self.assertEqual(reply.status, 503)
            return email.utils.parsedate_to_datetime(reply.headers["date"]).timestamp()

        # Refusals keep coming until one carries a later second than the first: a Date
        # rendered once (at start-up, or with the first refusal) never would.
        first = refusal_date()
        times = []

        def later() -> bool:
            times[:] = [int(time.time()), refusal_date()]
            return times[1] > first
        wait_until(later, interval=0.1)
        before, sent = times
        self.assertGreater(sent, first)
        self.assertGreaterEqual(sent, before)

    def test_flood_past_the_cap_starts_no_threads(self):
        held = held_connections(self, 20)
        crowded = resources(self.server.pid)
        extra = [self.server.connect() for _ in range(60)]
        self.addCleanup(close_all, extra)
        for sock in extra:
            self.assertBusy(read_until_closed(sock))
        self.assertLessEqual(resources(self.server.pid)["threads"], crowded["threads"])
        close_all(extra)
        close_all(held)
        wait_until_served(self)
        self.assertEqual(wait_for_resources(self.server.pid, self.baseline), self.baseline)


class PerClientLimitTest(LiveServerTest):
    settings = {"server": {"max_connections_per_client": "5"}}

    def test_sixth_connection_from_one_address_gets_429_and_the_five_stay_usable(self):
        held = held_connections(self, 5)
        for sent in (b"", REQUEST):
            with self.subTest(sent=sent):
                start = time.monotonic()
                replies = parse_replies(send_and_read(self.server, sent))
                print(f"6th connection refused in {(time.monotonic() - start) * 1000:.1f} ms")
                self.assertEqual(len(replies), 1)
                self.assertErrorPage(replies[0], 429)
                self.assertEqual(replies[0].headers["connection"], "close")
                self.assertRegex(replies[0].headers["retry-after"], r"\A[0-9]+\Z")
        with self.subTest("another address is not limited"):
            replies = parse_replies(send_and_read(self.server, head(b"Connection: close"),
                                                  source=OTHER_SOURCE))
            self.assertEqual([reply.status for reply in replies], [200])
        for sock in held:
            sock.sendall(REQUEST)
            self.assertEqual(ResponseReader(sock).read()[2], HELLO)
        held.pop().close()
        wait_until_served(self)


class SlowLorisTest(LiveServerTest):
    # The head time-out is long enough that no slow connection is dropped while we measure.
    settings = {"server": {"max_connections_per_client": "1000"},
                "timeouts": {"request_head": "60"}}

    def test_normal_client_is_served_while_100_slow_loris_connections_dribble(self):
        baseline = self.baseline
        crowd = [self.server.connect() for _ in range(100)]
        self.addCleanup(close_all, crowd)
        for sock in crowd:
            sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        stop = threading.Event()

        def keep_dribbling():
            while not stop.wait(0.5):
                for sock in crowd:
                    sock.send(b"a")

        dribbler = threading.Thread(target=keep_dribbling)
        dribbler.start()
        try:
            wait_until(lambda: resources(self.server.pid)["threads"]
                       >= baseline["threads"] + 100, interval=0.05)
            start = time.monotonic()
            with connect(self.server, OTHER_SOURCE) as sock:
                sock.sendall(REQUEST)
                status, _, body = ResponseReader(sock).read()
            elapsed = time.monotonic() - start
        finally:
            stop.set()
            dribbler.join()
        print(f"normal client served in {elapsed * 1000:.1f} ms "
              f"with 100 slow-loris connections open")
        self.assertEqual((status, body), (200, HELLO))
        self.assertLess(elapsed, 5.0)
        # The crowd was still connected and unanswered while we measured.
        self.assertEqual(select.select(crowd, [], [], 0)[0], [])
        close_all(crowd)
        self.assertEqual(wait_for_resources(self.server.pid, baseline), baseline)


class AbandonedResponseTest(LiveServerTest):
    """Clients that reset the connection in the middle of a response."""

    # Every descriptor a response opened must be closed again: none is kept for later use
    # (tests.test_opencache shows that kept ones are given back after a reset too).
    settings = {"files": {"open_file_cache": "0"}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        with open(os.path.join(cls.root, "huge.bin"), "wb") as out:
            out.write(os.urandom(8 * 1024 * 1024))

    def test_reset_mid_response_ends_quietly_and_frees_everything(self):
        baseline = self.baseline
        requests = (head(line=b"GET /huge.bin HTTP/1.1"),
                    head(b"Range: bytes=100-7000000", line=b"GET /huge.bin HTTP/1.1"),
                    head(b"Range: bytes=0-99,1000-5000000,6000000-",
                         line=b"GET /huge.bin HTTP/1.1"),
                    head(line=b"GET /huge.bin HTTP/1.1") * 5,
                    head(line=b"HEAD /huge.bin HTTP/1.1") + head(line=b"GET /huge.bin HTTP/1.1"),
                    head(line=b"GET /big.bin HTTP/1.0"))
        for round_ in range(5):
            for index, request in enumerate(requests):
                sock = self.server.connect()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
                sock.sendall(request)
                if (round_ + index) % 3:
                    sock.recv(1000 * (index + 1))
                reset(sock)
        now = wait_for_resources(self.server.pid, baseline)
        print(f"after 30 reset responses: {now} (baseline {baseline})")
        self.assertEqual(now, baseline)
        data = send_and_read(self.server, head(b"Connection: close",
                                               line=b"GET /huge.bin HTTP/1.1"))
        with open(os.path.join(self.root, "huge.bin"), "rb") as original:
            self.assertEqual(parse_replies(data)[0].body, original.read())

    def test_close_while_the_server_still_reads_the_body_ends_quietly(self):
        baseline = self.baseline
        for _ in range(10):
            sock = self.server.connect()
            sock.sendall(head(b"Content-Length: 100000") + b"x" * 5000)
            reset(sock)
            sock = self.server.connect()
            sock.sendall(head(b"Transfer-Encoding: chunked") + b"100\r\n" + b"x" * 50)
            reset(sock)
        self.assertEqual(wait_for_resources(self.server.pid, baseline), baseline)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class DescriptorExhaustionTest(LiveServerTest):
    """More clients than the server has file descriptors for (a low ``ulimit -n``)."""

    descriptor_limit = 48
    settings = {"timeouts": {"request_head": "60", "keep_alive": "60"}}

    @classmethod
    def setUpClass(cls):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if len(os.listdir("/proc/self/fd")) > cls.descriptor_limit // 2:
            raise unittest.SkipTest("this process holds too many descriptors to lend a low limit")
        # The server inherits the limit; this process gets its own back at once.
        resource.setrlimit(resource.RLIMIT_NOFILE, (cls.descriptor_limit, hard))
        try:
            super().setUpClass()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    def test_accept_loop_does_not_spin_while_descriptors_run_out(self):
        first = held_connections(self, 1)[0]
        crowd = []
        self.addCleanup(close_all, crowd)
        for _ in range(self.descriptor_limit + 20):
            crowd.append(self.server.connect())
        wait_until(lambda: resources(self.server.pid)["descriptors"] >= self.descriptor_limit,
                   interval=0.05)
        self.assertEqual(resources(self.server.pid)["descriptors"], self.descriptor_limit)
        # Watch the server's CPU time for 2 s, giving up early once it is plainly spinning:
        # retrying accept() without a pause burns a whole core (about 2 s here).
        start, before = time.monotonic(), cpu_seconds(self.server.pid)
        used = 0.0
        while time.monotonic() - start < 2.0 and used < 0.5:
            # The held connection must stay quiet meanwhile.
            self.assertEqual(select.select([first], [], [], 0.1)[0], [])
            used = cpu_seconds(self.server.pid) - before
        print(f"server used {used:.2f} s of CPU in {time.monotonic() - start:.1f} s with no"
              " descriptor left")
        self.assertLess(used, 0.5)
        first.sendall(REQUEST)
        self.assertEqual(ResponseReader(first).read()[2], HELLO)
        close_all(crowd)
        wait_until_served(self)
        close_all([first])
        self.assertEqual(wait_for_resources(self.server.pid, self.baseline), self.baseline)


class IdleConnectionMemoryTest(LiveServerTest):
    settings = {"server": {"max_connections_per_client": "1000"},
                "timeouts": {"request_head": "60", "keep_alive": "60"}}

    def test_200_idle_connections_keep_the_server_small(self):
        baseline = self.baseline
        rss_before = process_status(self.server.pid, "VmRSS")
        idle = []
        self.addCleanup(close_all, idle)
        for index in range(200):
            sock = self.server.connect()
            idle.append(sock)
            if index % 2:
                sock.sendall(b"GET /hello.txt HTTP/1.1\r\n")  # waiting for the rest of a head
            else:
                sock.sendall(REQUEST)  # waiting for the next request
                self.assertEqual(ResponseReader(sock).read()[2], HELLO)
        wait_until(lambda: resources(self.server.pid)["threads"] >= baseline["threads"] + 200,
                   interval=0.05)
        self.assertGreaterEqual(resources(self.server.pid)["threads"], baseline["threads"] + 200)
        rss = process_status(self.server.pid, "VmRSS")
        print(f"server VmRSS {rss / 1024:.1f} MiB with 200 idle connections "
              f"({rss_before / 1024:.1f} MiB before; "
              f"{(rss - rss_before) / 200:.0f} KiB per connection)")
        self.assertLess(rss, 200 * 1024)
        close_all(idle)
        self.assertEqual(wait_for_resources(self.server.pid, baseline), baseline)


if __name__ == "__main__":
    unittest.main()
