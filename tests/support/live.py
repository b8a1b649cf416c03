"""A live server per test class, seen from outside: raw replies, its process's threads and
descriptors, and a document root with secrets beside it."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
import unittest
import uuid
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from tests.support.server import (COMBINED_LOG_LINE, SOCKET_TIMEOUT, NexServer, ResponseReader,
                                  read_all, wait_until)
from tests.support.threads import run_in_threads

REQUEST = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"
HELLO = b"hello, world\n"
#: The size of ``large.bin``: far more than the sockets' buffers hold.
LARGE = 64 * 1024 * 1024
#: How long a client of :func:`reload_under_traffic` waits between its handshake and its request.
_LATENCY_SECONDS = 0.05


# --- Reading what the server sends -----------------------------------------------------------

class Reply(NamedTuple):
    """One response as received: status, headers (lower-case names; repeats joined), body."""

    status: int
    headers: Dict[str, str]
    body: bytes
    head: bytes


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; a reset ends the reading too."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def parse_replies(data: bytes, head_only: bool = False) -> List[Reply]:
    """Split a byte stream into the responses it holds; fail on anything malformed."""
    replies = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            raise AssertionError(f"truncated response head: {data[:200]!r}")
        head, data = data[:end], data[end + 4:]
        lines = head.decode("latin-1").split("\r\n")
        match = re.fullmatch(r"HTTP/1\.1 ([1-5][0-9][0-9]) [^\r\n]*", lines[0])
        if match is None:
            raise AssertionError(f"malformed status line: {lines[0]!r}")
        headers: Dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(": ")
            if not colon or not re.fullmatch(r"[A-Za-z0-9-]+", name):
                raise AssertionError(f"malformed header line: {line!r}")
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        status = int(match.group(1))
        length = 0 if head_only or status in (204, 304) else int(headers["content-length"])
        if len(data) < length:
            raise AssertionError(f"truncated body: {len(data)} of {length} bytes")
        replies.append(Reply(status, headers, data[:length], head))
        data = data[length:]
    return replies


def send_and_read(server: NexServer, data: bytes, *, half_close: bool = False,
                  source: Optional[str] = None) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    sock = connect(server, source)
    with sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking every byte
        return read_until_closed(sock)


def connect(server: NexServer, source: Optional[str] = None,
            timeout: float = SOCKET_TIMEOUT) -> socket.socket:
    """A client socket connected to ``server``, from the address ``source`` if given."""
    if source is None:
        return server.connect(timeout)
    return socket.create_connection((server.host, server.port), timeout=timeout,
                                    source_address=(source, 0))


# --- The server's process, seen from outside --------------------------------------------------

def process_status(pid: int, field: str) -> int:
    """A numeric field of /proc/PID/status (``Threads``, ``VmRSS`` in KiB)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0])
    raise KeyError(field)


def open_descriptors(pid: int) -> int:
    """How many file descriptors the process holds."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def resources(pid: int) -> Dict[str, int]:
    """The server's thread and descriptor counts."""
    return {"threads": process_status(pid, "Threads"), "descriptors": open_descriptors(pid)}


def wait_for_resources(pid: int, baseline: Dict[str, int]) -> Dict[str, int]:
    """Poll until the counts fall back to ``baseline`` (or the deadline passes); the last read."""
    last: Dict[str, int] = {}

    def settled() -> bool:
        last.update(resources(pid))
        return all(last[key] <= baseline[key] for key in baseline)
    wait_until(settled, interval=0.1)
    return last


# --- A document root with things worth stealing beside it ------------------------------------

def make_site(base: str) -> str:
    """Build ``base/root`` (served) next to ``base/secret.txt`` and ``base/outside/``."""
    root = os.path.join(base, "root")
    outside = os.path.join(base, "outside")
    os.makedirs(os.path.join(root, "docs"))
    os.makedirs(outside)
    secret = f"NEX-SECRET-{uuid.uuid4().hex}\n".encode()
    files = {
        os.path.join(base, "secret.txt"): secret,
        os.path.join(outside, "secret.txt"): secret,
        os.path.join(root, "hello.txt"): HELLO,
        os.path.join(root, "docs", "a.html"): b"<p>a</p>",
        os.path.join(root, "docs", ".env"): b"PASSWORD=dotfile\n",
        os.path.join(root, ".hidden"): b"hidden dotfile\n",
        os.path.join(root, "big.bin"): random.Random(7).randbytes(3 * 1024 * 1024 + 17),
    }
    for path, data in files.items():
        with open(path, "wb") as out:
            out.write(data)
    os.symlink(os.path.join(base, "secret.txt"), os.path.join(root, "out-link.txt"))
    os.symlink(outside, os.path.join(root, "outdir"))
    os.symlink("hello.txt", os.path.join(root, "in-link.txt"))
    os.symlink("/etc/passwd", os.path.join(root, "passwd-link"))
    os.symlink(os.path.join(root, "missing"), os.path.join(root, "broken-link"))
    os.makedirs(os.path.join(root, "evil.com"))
    os.makedirs(os.path.join(root, "a\r\nSet-Cookie: injected=1"))
    return root


def stop_and_check_error_log(server: NexServer, base: str) -> None:
    """Stop ``server`` gracefully (so every worker has finished and flushed its lines),
    remove the folder ``base``, and fail if the error log holds a traceback."""
    server.signal()
    try:
        server.wait()
    finally:
        errors = server.error_log()
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    if "Traceback" in errors:
        raise AssertionError(f"the error log holds a traceback:\n{errors}")


class LiveServerTest(unittest.TestCase):
    """One server per class, started with ``settings``; its error log must stay clean."""

    settings: Dict[str, Dict[str, str]] = {}

    @classmethod
    def setUpClass(cls):
        cls.base = tempfile.mkdtemp(prefix="nex-hostile-")
        cls.root = make_site(cls.base)
        with open(os.path.join(cls.base, "secret.txt"), "rb") as secret:
            cls.secret = secret.read().strip()
        cls.server = NexServer(cls.root, settings=cls.settings).start()
        #: Threads and descriptors of the server before any client connected.
        cls.baseline = resources(cls.server.pid)

    @classmethod
    def tearDownClass(cls):
        # Stop first so that every worker has finished and flushed its log lines.
        stop_and_check_error_log(cls.server, cls.base)

    def tearDown(self):
        self.assertNotIn("Traceback", self.server.error_log())

    def assertErrorPage(self, reply: Reply, status: int) -> None:
        """``reply`` is the rendered error reply for ``status`` with an exact Content-Length:
        the page for a request read as a browser's (or not read at all), else the one line
        of text that a client without ``Accept: text/html`` gets."""
        self.assertEqual(reply.status, status, reply.head)
        self.assertEqual(int(reply.headers["content-length"]), len(reply.body))
        if reply.headers.get("content-type", "").startswith("text/plain"):
            self.assertTrue(reply.body.startswith(f"{status} ".encode()), reply.body)
            self.assertEqual(reply.body.count(b"\n"), 1, reply.body)
            return
        self.assertTrue(reply.headers.get("content-type", "").startswith("text/html"),
                        reply.head)
        self.assertIn(f"<title>{status} ".encode(), reply.body)

    def assertOneClosingError(self, data: bytes, status: int) -> Reply:
        """``data`` (all the server sent before closing) is one error page, then the end."""
        replies = parse_replies(data)
        self.assertEqual(len(replies), 1, [reply.head for reply in replies])
        self.assertErrorPage(replies[0], status)
        self.assertEqual(replies[0].headers["connection"], "close")
        return replies[0]

    def assertNoSecret(self, data: bytes) -> None:
        self.assertNotIn(self.secret, data)


def head(*fields: bytes, line: bytes = b"GET /hello.txt HTTP/1.1") -> bytes:
    """A request head: ``line``, ``Host: localhost`` unless a Host is given, ``fields``."""
    if not any(field.lower().startswith(b"host:") for field in fields):
        fields = (b"Host: localhost",) + fields
    return b"\r\n".join((line,) + fields) + b"\r\n\r\n"


def fetch_all_at_once(test: unittest.TestCase, server: NexServer, files: Dict[str, bytes],
                      clients: int = 200) -> None:
    """``clients`` connections to ``server`` at once, each asking in turn for three of ``files``
    (path to bytes) with its number in ``User-Agent``; fails ``test`` unless each answer is a
    200 with the file's bytes, and the access log then holds one whole line per request, a 200
    with the file's size, and the error log no traceback."""
    paths = sorted(files)
    failures: List[object] = []
    start = threading.Barrier(clients)

    def client(number: int) -> None:
        with server.connect() as sock:
            start.wait(60)
            reader = ResponseReader(sock)
            for k in range(3):
                path = paths[(number + k) % len(paths)]
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n"
                             f"User-Agent: client-{number}\r\n\r\n".encode())
                status, _, body = reader.read()
                if status != 200 or body != files[path]:
                    failures.append((number, path, status, len(body)))

    run_in_threads(client, clients)
    test.assertEqual(failures, [])
    expected = clients * 3
    log = server.wait_for_access_log(lambda text: text.count("\n") >= expected)
    lines = log.splitlines()
    test.assertEqual(len(lines), expected)
    for line in lines:
        match = COMBINED_LOG_LINE.fullmatch(line)
        test.assertIsNotNone(match, line)
        test.assertEqual(match.group("status"), "200")
        path = match.group("request").split(" ")[1]
        test.assertEqual(int(match.group("size")), len(files[path]))
    test.assertNotIn("Traceback", server.error_log())


def temp_root(test: unittest.TestCase, files: Dict[str, bytes]) -> str:
    """A temporary document root holding ``files`` (name to bytes), removed when ``test``
    ends."""
    root = tempfile.mkdtemp(prefix="nex-root-")
    test.addCleanup(shutil.rmtree, root, True)
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as out:
            out.write(data)
    return root


def alpha_root(test: unittest.TestCase) -> str:
    """A temporary document root holding ``a.txt`` (``alpha``, which :func:`get` asks for by
    default), removed when ``test`` ends."""
    return temp_root(test, {"a.txt": b"alpha"})


def large_root(test: unittest.TestCase) -> str:
    """A temporary document root holding ``large.bin`` (``LARGE`` zero bytes), removed when
    ``test`` ends."""
    root = temp_root(test, {})
    with open(os.path.join(root, "large.bin"), "wb") as out:
        out.truncate(LARGE)
    return root


def stalled_download(test: unittest.TestCase, root: str,
                     settings: Dict[str, Dict[str, object]]
                     ) -> Tuple[NexServer, socket.socket]:
    """A Nex started over ``root`` (see :func:`large_root`) with ``settings``, sending
    ``large.bin`` to a client that reads its first piece and then nothing more; the server
    and the client's socket."""
    server = NexServer(root, settings=settings)
    test.addCleanup(server.stop)
    server.start()
    sock = server.connect()
    test.addCleanup(sock.close)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(b"GET /large.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    test.assertTrue(sock.recv(65536).startswith(b"HTTP/1.1 200 "))
    return server, sock


def hold_a_request(kept: socket.socket) -> ResponseReader:
    """On ``kept``, a connection to a Nex serving ``a.txt`` with ``cache_control = no-cache``:
    one answer read, then all of a second request's head but its last CRLF sent; the reader
    of the connection."""
    reader = ResponseReader(kept)
    kept.sendall(b"GET /a.txt HTTP/1.1\r\nHost: a\r\n\r\n")
    cache_control = reader.read()[1]["cache-control"]
    if cache_control != "no-cache":
        raise AssertionError(f"Cache-Control: {cache_control}, not no-cache")
    kept.sendall(b"GET /a.txt HTTP/1.1\r\nHost: a\r\n")
    return reader


def check_reloaded(test: unittest.TestCase, server: NexServer, kept: socket.socket,
                   reader: ResponseReader, fresh: int) -> None:
    """Once ``cache_control = max-age=60`` has replaced ``no-cache`` by a reload: ``fresh``
    new connections get the new settings, and the request held on ``kept`` (see
    :func:`hold_a_request`) is answered with the settings it started under, then closed."""
    for _ in range(fresh):
        status, headers, body = get(server)
        test.assertEqual((status, headers["cache-control"], body), (200, "max-age=60", b"alpha"))
    kept.sendall(b"\r\n")
    status, headers, body = reader.read()
    test.assertEqual((status, headers["cache-control"], headers["connection"], body),
                     (200, "no-cache", "close", b"alpha"))
    test.assertEqual(read_all(kept), b"")


def reload_under_traffic(test: unittest.TestCase, server: NexServer,
                         reloads_done: Callable[[], int], reloads: int = 10,
                         clients: int = 4) -> None:
    """Send ``server`` (serving ``a.txt``, see :func:`alpha_root`) ``reloads`` SIGHUPs, one
    after another, while ``clients`` threads keep opening new connections, each sending one
    GET and reading the whole response; fail ``test`` unless every one of them was a 200 with
    the file.  ``reloads_done()`` counts the reloads the server has reported so far.

    A reload replaces a server that has just accepted connections whose requests it has not
    read yet; each reload waits for requests answered after the one before, so that every
    replaced server has such connections in hand.  Each client pauses between its handshake
    and its request, as a network's latency makes it pause: the server then often holds
    connections whose requests have not arrived.
    """
    failures: List[str] = []
    answered = [0]
    done = threading.Event()

    def client(number: int) -> None:
        while not done.is_set():
            try:
                with server.connect() as sock:
                    time.sleep(_LATENCY_SECONDS)
                    sock.sendall(b"GET /a.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                    outcome = ResponseReader(sock).read()
            except OSError as error:
                failures.append(f"client {number}: {error!r}")
                continue
            if outcome[0] != 200 or outcome[2] != b"alpha":
                failures.append(f"client {number}: {outcome[0]} {outcome[2]!r}")
            answered[0] += 1

    threads = [threading.Thread(target=client, args=(number,), daemon=True)
               for number in range(clients)]
    for thread in threads:
        thread.start()
    try:
        already = reloads_done()
        for reload in range(1, reloads + 1):
            before = answered[0]
            wait_until(lambda: answered[0] >= before + 2 * clients,
                       what="requests answered between reloads")
            server.signal(signal.SIGHUP)
            wait_until(lambda: reloads_done() >= already + reload, what=f"reload {reload}")
        before = answered[0]
        wait_until(lambda: answered[0] >= before + 2 * clients,
                   what="requests answered after the last reload")
    finally:
        done.set()
        for thread in threads:
            thread.join(SOCKET_TIMEOUT)
    test.assertEqual(failures, [])


def get(server: NexServer, path: str = "/a.txt") -> Tuple[int, Dict[str, str], bytes]:
    """One request on a new connection."""
    with server.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
        return ResponseReader(sock).read()
