"""A seeded stream of mangled requests over many real connections against one live server.

Thousands of requests, valid ones taken apart (truncated, bit-flipped, oversized, with
repeated or spliced-in fields, pipelined in mixes, or replaced by random bytes), go out over
many connections from a few client threads at once.  Whatever arrives, the server must
answer with well-formed responses or close, never serve a byte from outside its root, never
fault (no 500, no traceback), and afterwards still serve files exactly with the threads and
descriptors it started with.  The cases come from a fixed seed, so a failure repeats.
"""

from __future__ import annotations

import collections
import os
import random
import re
import socket
import struct
import threading
import time
import unittest
from typing import Counter, List, NamedTuple, Optional, Tuple

from tests.support import (LiveServerTest, head, parse_replies, send_and_read,
                           wait_for_resources)

SEED = 0x4E6578
CONNECTIONS = 3000
CLIENT_THREADS = 6
#: A client that does not half-close gives up reading once the server is quiet this long.
QUIET_SECONDS = 0.25
_STATUS_LINE = re.compile(rb"HTTP/1\.1 [1-5][0-9][0-9] [^\r\n]*\r\n")

VALID_REQUESTS = (
    head(),
    head(line=b"HEAD /big.bin HTTP/1.1"),
    head(line=b"GET /docs/ HTTP/1.1"),
    head(line=b"GET /docs HTTP/1.1"),
    head(b"Accept: */*", line=b"GET /docs/a.html?x=1&y=%20 HTTP/1.1"),
    head(b"Range: bytes=0-99,200-299", line=b"GET /big.bin HTTP/1.1"),
    head(b"Range: bytes=-500", b"If-Range: \"x\"", line=b"GET /big.bin HTTP/1.1"),
    head(b"If-None-Match: *", line=b"GET /docs/a.html HTTP/1.1"),
    head(b"If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT"),
    head(b"Accept-Encoding: gzip, br;q=0.5"),
    head(line=b"OPTIONS * HTTP/1.1"),
    head(line=b"GET http://localhost/hello.txt HTTP/1.1"),
    b"GET /hello.txt HTTP/1.0\r\n\r\n",
    b"GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    head(b"Connection: close"),
    head(b"Content-Length: 5") + b"hello",
    head(b"Transfer-Encoding: chunked") + b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
    head(line=b"GET /../secret.txt HTTP/1.1"),
    head(line=b"GET /%2e%2e/%2e%2e/secret.txt HTTP/1.1"),
    head(line=b"GET /outdir/secret.txt HTTP/1.1"),
    head(b"Content-Length: 3", line=b"POST /hello.txt HTTP/1.1") + b"abc",
)

SPLICES = (
    b"Transfer-Encoding: chunked\r\n", b"Content-Length: 10\r\n", b"Content-Length: -1\r\n",
    b"Host: evil.example\r\n", b"Connection: close\r\n", b"Expect: 100-continue\r\n",
    b"Range: bytes=0-0,-1,5-\r\n", b"Range: bytes=99999999999999999999-\r\n",
    b"If-Match: \"\"\r\n", b"%2e%2e/", b"%00", b"%c0%ae", b"/../", b"\r\n", b"\n", b"\r",
    b"\x00", b" ", b"\t", b":", b"0\r\n\r\n", b"ffffffff\r\n", b"HTTP/1.1\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "é".encode(), b"\xff\xfe",
)


class Case(NamedTuple):
    """One connection's worth of fuzzing: what to send, in which pieces, how to end."""

    pieces: Tuple[bytes, ...]
    pause: float  # seconds between pieces
    ending: str  # "half-close", "wait" or "reset"
    requests: int


def mutate(data: bytes, rng: random.Random) -> bytes:
    """``data`` with one random mutation applied.

    In order of ``kind``: truncated, bits flipped, random bytes inserted, a stretch deleted,
    a line repeated, an oversized stretch inserted, line ends broken, a fragment spliced in,
    letter case changed, replaced by random bytes, Content-Length changed, a tail repeated.
    """
    kind = rng.randrange(12)
    at = rng.randrange(len(data) + 1)
    if kind == 0:
        return data[:at]
    if kind == 1:
        mutable = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            if mutable:
                mutable[rng.randrange(len(mutable))] ^= 1 << rng.randrange(8)
        return bytes(mutable)
    if kind == 2:
        return data[:at] + rng.randbytes(rng.randint(1, 20)) + data[at:]
    if kind == 3:
        return data[:at] + data[at + rng.randint(1, 30):]
    if kind == 4:
        lines = data.split(b"\r\n")
        line = rng.choice(lines)
        return b"\r\n".join(lines[:1] + [line] * rng.randint(2, 150) + lines[1:])
    if kind == 5:
        return data[:at] + b"x" * rng.choice((100, 9000, 70000)) + data[at:]
    if kind == 6:
        return data.replace(b"\r\n", rng.choice((b"\n", b"\r", b"\r\r\n", b"\n\r")),
                            rng.randint(1, 4))
    if kind == 7:
        return data[:at] + rng.choice(SPLICES) + data[at:]
    if kind == 8:
        return data.swapcase() if rng.random() < 0.3 else data[:3].lower() + data[3:]
    if kind == 9:
        return rng.randbytes(rng.randint(1, 2000))
    if kind == 10:
        return re.sub(rb"Content-Length: [0-9]+",
                      b"Content-Length: " + str(rng.choice((0, 1, 4, 6, 10**6, 10**18))).encode(),
                      data)
    return data + data[:at]


def make_cases(rng: random.Random) -> List[Case]:
    """The whole fuzzing run, decided up front from ``rng``."""
    cases = []
    for _ in range(CONNECTIONS):
        requests = []
        for _ in range(rng.choice((1, 1, 2, 3, 4))):
            request = rng.choice(VALID_REQUESTS)
            for _ in range(rng.choice((0, 1, 1, 1, 2, 3))):
                request = mutate(request, rng)
            requests.append(request)
        stream = b"".join(requests)
        cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream), rng.randint(0, 2))))
        bounds = [0, *cuts, len(stream)]
        pieces = tuple(stream[start:end] for start, end in zip(bounds, bounds[1:]))
        pause = rng.uniform(0.2, 1.2) if rng.random() < 0.02 else 0.0
        ending = rng.choices(("half-close", "wait", "reset"), weights=(60, 25, 15))[0]
        cases.append(Case(pieces, pause, ending, len(requests)))
    return cases


def run_case(case: Case, address: Tuple[str, int]) -> Optional[bytes]:
    """Play one case; return what the server sent (None when the connection was reset)."""
    sock = socket.create_connection(address, timeout=30)
    try:
        try:
            for index, piece in enumerate(case.pieces):
                if index and case.pause:
                    time.sleep(case.pause)
                sock.sendall(piece)
            if case.ending == "half-close":
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered early and closed (or reset) the connection
        if case.ending == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return None
        if case.ending == "wait":
            sock.settimeout(QUIET_SECONDS)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                return None
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        sock.close()


class SocketFuzzTest(LiveServerTest):
    settings = {"timeouts": {"request_head": "1", "keep_alive": "1"},
                "limits": {"max_request_body": "64K"},
                # Every descriptor a request opened must be closed again: none kept.
                "files": {"open_file_cache": "0"}}

    def test_mangled_request_stream_leaves_the_server_whole(self):
        cases = make_cases(random.Random(SEED))
        results: List[Optional[bytes]] = [None] * len(cases)
        failures: List[BaseException] = []
        address = (self.server.host, self.server.port)

        def client(index: int) -> None:
            try:
                for number in range(index, len(cases), CLIENT_THREADS):
                    results[number] = run_case(cases[number], address)
            except BaseException as error:  # reported by the main thread
                failures.append(error)

        start = time.monotonic()
        clients = [threading.Thread(target=client, args=(index,))
                   for index in range(CLIENT_THREADS)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        elapsed = time.monotonic() - start
        self.assertEqual(failures, [])

        statuses: Counter[bytes] = collections.Counter()
        for case, data in zip(cases, results):
            if not data:
                continue
            self.assertNotIn(self.secret, data)
            self.assertIsNotNone(_STATUS_LINE.match(data), (case, data[:200]))
            statuses.update(re.findall(rb"HTTP/1\.1 ([1-5][0-9][0-9]) ", data))
        self.assertNotIn(b"500", statuses)
        requests = sum(case.requests for case in cases)
        print(f"{len(cases)} connections, {requests} requests in {elapsed:.1f} s; "
              f"statuses seen: {dict(sorted((k.decode(), v) for k, v in statuses.items()))}")

        now = wait_for_resources(self.server.pid, self.baseline)
        self.assertEqual(now, self.baseline)
        data = send_and_read(self.server, head(b"Connection: close",
                                               line=b"GET /big.bin?after-fuzz HTTP/1.1"))
        with open(os.path.join(self.root, "big.bin"), "rb") as original:
            self.assertEqual(parse_replies(data)[0].body, original.read())
        log = self.server.wait_for_access_log(lambda text: "after-fuzz" in text)
        self.assertIn("after-fuzz", log)
        self.assertNotRegex(log, r'" 500 ')


if __name__ == "__main__":
    unittest.main()
