"""Replay a corpus of raw requests against two Nex checkouts and print every difference.

Both checkouts are started side by side on ephemeral ports, with the same settings, over the
same folder.  Each request (its raw bytes, which may hold several pipelined requests or a
malformed one) goes to each server over a new connection, whose sending side is then shut so
that nothing waits for a time-out; the bytes that come back are split into responses.  A
response whose head (without ``Date``, with each server's port written as ``PORT`` and the
random multipart boundaries as ``BOUNDARY``) or body differs is printed, with the request
that drew it.

The corpus is the raw request bytes the test suite writes (every bytes or text literal in
``tests/`` that starts like a request, with module-level names and concatenations
resolved), a few hundred generated requests (methods, ranges, conditionals, bad framing,
encoded paths, listings, HEAD, keep-alive pipelines) and seeded mutations of both.

Usage: ``python3 bench/compare.py --base /tmp/base [--new .]``; exit status 1 when anything
differs.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterator, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
_URL = re.compile(rb"https?://[^:/\s]+:(\d+)/")
_DATE = re.compile(rb"\r\nDate: [^\r\n]*")
_BOUNDARY = re.compile(rb"multipart/byteranges; boundary=([0-9A-Za-z]+)")
_REQUEST_START = re.compile(rb"(?:\r?\n)*[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ \r\n]* HTTP/")
_MAX_REQUEST = 256 * 1024
_START_TIMEOUT = 30.0
_READ_TIMEOUT = 10.0


# --- the corpus -------------------------------------------------------------------------------

class _Evaluator:
    """Evaluates the literal expressions of one test module: constants, module-level names
    bound to constants, ``+``, ``*`` by a number, ``.encode()`` and f-strings of those."""

    def __init__(self, tree: ast.Module) -> None:
        self.names: Dict[str, object] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                    node.targets[0], ast.Name):
                value = self.value(node.value)
                if value is not None:
                    self.names[node.targets[0].id] = value

    def value(self, node: ast.AST) -> Optional[object]:
        if isinstance(node, ast.Constant) and isinstance(node.value, (bytes, str, int)):
            return node.value
        if isinstance(node, ast.Name):
            return self.names.get(node.id)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = self.value(node.left), self.value(node.right)
            try:
                if isinstance(node.op, ast.Add) and type(left) is type(right) and isinstance(
                        left, (bytes, str)):
                    return left + right  # type: ignore[operator]
                if isinstance(node.op, ast.Mult) and isinstance(left, (bytes, str)) and \
                        isinstance(right, int) and len(left) * right <= _MAX_REQUEST:
                    return left * right
            except TypeError:
                return None
        if isinstance(node, ast.JoinedStr):
            parts = []
            for part in node.values:
                value = (self.value(part.value) if isinstance(part, ast.FormattedValue)
                         else self.value(part))
                if not isinstance(value, (str, int)) or isinstance(value, bool):
                    return None
                parts.append(str(value))
            return "".join(parts)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "encode"):
            text = self.value(node.func.value)
            if isinstance(text, str):
                try:
                    return text.encode("latin-1")
                except UnicodeEncodeError:
                    return text.encode("utf-8")
        return None


def harvest(tests: str) -> List[bytes]:
    """The raw requests written in the test modules under ``tests``."""
    found: List[bytes] = []
    for name in sorted(os.listdir(tests)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(tests, name), encoding="utf-8") as source:
            tree = ast.parse(source.read())
        evaluator = _Evaluator(tree)
        for node in ast.walk(tree):
            value = evaluator.value(node)
            if isinstance(value, str):
                try:
                    value = value.encode("latin-1")
                except UnicodeEncodeError:
                    continue
            if (isinstance(value, bytes) and len(value) <= _MAX_REQUEST
                    and _REQUEST_START.match(value) and b"\n" in value):
                found.append(value)
    return found


_PATHS = ["/", "/hello.txt", "/page.html", "/sub/", "/sub", "/sub/deeper/", "/missing",
          "/.hidden", "/big.bin", "/caf%C3%A9.txt", "/a%20b.txt", "/%2e%2e/etc/passwd",
          "/sub/../hello.txt", "/sub/./index.html", "/%00", "/hello.txt%2f", "/%zz",
          "/style.css", "/empty.txt", "/sub/index.html", "/hello.txt?x=1", "//hello.txt",
          "/sub/%2e%2e/hello.txt", "/s%75b/", "*", "/\xe9"]
_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "FOO",
            "MKCOL", "PROPFIND"]


def _request(line: str, *fields: str, body: bytes = b"", host: str = "localhost") -> bytes:
    head = [line] + ([f"Host: {host}"] if host else []) + list(fields)
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def generated(etag: str, last_modified: str) -> List[bytes]:
    """A few hundred requests made to cover each stage of the request's path."""
    corpus = []
    for method in _METHODS:
        for path in _PATHS:
            corpus.append(_request(f"{method} {path} HTTP/1.1", "Connection: close"))
    for version in ("HTTP/1.0", "HTTP/1.1"):
        for path in ("/", "/hello.txt", "/sub/", "/missing"):
            corpus.append(_request(f"GET {path} {version}", host=""))
            corpus.append(_request(f"HEAD {path} {version}"))
    for spec in ("bytes=0-9", "bytes=-5", "bytes=5-", "bytes=0-0,2-3", "bytes=100000000-",
                 "bytes=x", "bytes=5-1", "bytes=0-1,0-1,0-1", "items=0-1", "bytes=-0",
                 "bytes= 0-1", "bytes=0-1, 4-5, 9-"):
        for path in ("/hello.txt", "/big.bin"):
            corpus.append(_request(f"GET {path} HTTP/1.1", f"Range: {spec}"))
        corpus.append(_request("GET /big.bin HTTP/1.1", f"Range: {spec}", f"If-Range: {etag}"))
        corpus.append(_request("GET /big.bin HTTP/1.1", f"Range: {spec}", 'If-Range: "x"'))
    for fields in ([f"If-None-Match: {etag}"], ["If-None-Match: *"], ['If-None-Match: "x"'],
                   [f"If-None-Match: W/{etag}"], [f"If-Match: {etag}"], ['If-Match: "x"'],
                   ["If-Match: *"], [f"If-Modified-Since: {last_modified}"],
                   ["If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT"],
                   ["If-Modified-Since: garbage"], [f"If-Unmodified-Since: {last_modified}"],
                   ["If-Unmodified-Since: Sat, 01 Jan 2000 00:00:00 GMT"],
                   [f"If-None-Match: {etag}", "If-Modified-Since: garbage"]):
        for method in ("GET", "HEAD"):
            corpus.append(_request(f"{method} /hello.txt HTTP/1.1", *fields))
    for fields, body in [
            (["Content-Length: 5", "Transfer-Encoding: chunked"], b"0\r\n\r\n"),
            (["Transfer-Encoding: gzip"], b""), (["Transfer-Encoding: gzip, chunked"], b""),
            (["Transfer-Encoding: chunked, gzip"], b""), (["Transfer-Encoding: chunked"],
                                                          b"5\r\nhello\r\n0\r\n\r\n"),
            (["Transfer-Encoding: chunked"], b"5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n"),
            (["Transfer-Encoding: chunked"], b"zz\r\nhello\r\n0\r\n\r\n"),
            (["Transfer-Encoding: chunked"], b"5\r\nhelloXX0\r\n\r\n"),
            (["Transfer-Encoding: chunked"], b"5\nhello\r\n0\r\n\r\n"),
            (["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], b"0\r\n\r\n"),
            (["Content-Length: 3, 3"], b"abc"), (["Content-Length: 3, 4"], b"abc"),
            (["Content-Length: 3", "Content-Length: 3"], b"abc"),
            (["Content-Length: 3", "Content-Length: 4"], b"abc"), (["Content-Length: -1"], b""),
            (["Content-Length: +3"], b"abc"), (["Content-Length: 0x3"], b"abc"),
            (["Content-Length: 1" + "0" * 20], b""), (["Content-Length: 10"], b"short"),
            (["Content-Length: 3"], b"abcGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            (["Connection: close, keep-alive"], b""), (["Connection: a b"], b""),
            (["Expect: 100-continue", "Content-Length: 3"], b"abc"),
            (["Expect: something"], b"")]:
        for method in ("POST", "GET", "PUT"):
            corpus.append(_request(f"{method} /hello.txt HTTP/1.1", *fields, body=body))
    corpus.append(_request("POST / HTTP/1.0", "Transfer-Encoding: chunked",
                           body=b"0\r\n\r\n"))
    for raw in [b"GET / HTTP/1.1\nHost: x\n\n", b"GET / HTTP/1.1\r\nHost: x\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\n X: folded\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
                b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/2.0\r\n\r\n",
                b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n",
                b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", b"GET / http/1.1\r\nHost: x\r\n\r\n",
                b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05hello",
                b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 120 + b"\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 70000 + b"\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
                b"GET http://localhost/hello.txt HTTP/1.1\r\nHost: other\r\n\r\n",
                b"GET http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\n\r\n",
                b"CONNECT example.invalid:443 HTTP/1.1\r\nHost: example.invalid:443\r\n\r\n",
                b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n"]:
        corpus.append(raw)
    for query, fields in [("?format=json", []), ("", ["Accept: application/json"]),
                          ("", ["Accept: application/json;q=0.5, text/html"]),
                          ("", ["Accept: */html"]), ("?sort=size&order=desc", []),
                          ("?sort=name&order=asc&format=html", []), ("?sort=bogus", []),
                          ("?format=json&sort=modified", [])]:
        for path in ("/", "/sub/", "/sub/deeper/"):
            corpus.append(_request(f"GET {path}{query} HTTP/1.1", *fields))
    for coding in ("gzip", "br", "gzip;q=0", "br;q=0.5, gzip", "*", "identity;q=0, *;q=0",
                   "gzip;q=2", "x-gzip"):
        corpus.append(_request("GET /style.css HTTP/1.1", f"Accept-Encoding: {coding}"))
    for origin in ("http://localhost", "https://evil.invalid", "null"):
        corpus.append(_request("GET /hello.txt HTTP/1.1", f"Origin: {origin}"))
        corpus.append(_request("OPTIONS /hello.txt HTTP/1.1", f"Origin: {origin}",
                               "Access-Control-Request-Method: PUT"))
    get = _request("GET /hello.txt HTTP/1.1")
    head = _request("HEAD /hello.txt HTTP/1.1")
    corpus += [get * 3, get + head + get, head * 2 + _request("GET /sub/ HTTP/1.1"),
               _request("GET / HTTP/1.0", "Connection: keep-alive") * 2,
               get + _request("GET /page.html HTTP/1.1", "Connection: close") + get,
               _request("POST /hello.txt HTTP/1.1", "Content-Length: 3", body=b"abc") + get,
               _request("POST /x HTTP/1.1", "Transfer-Encoding: chunked",
                        body=b"3\r\nabc\r\n0\r\n\r\n") + get,
               get + b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nab",
               _request("GET /missing HTTP/1.1") + get, _request("GET /big.bin HTTP/1.1",
                                                               "Range: bytes=0-3") + head]
    return corpus


def mutations(corpus: List[bytes], count: int, seed: int = 14) -> List[bytes]:
    """``count`` seeded mutations of requests in ``corpus``: bytes flipped, dropped,
    duplicated, CR and LF inserted, cut short (as the parser's fuzz test does)."""
    rng = random.Random(seed)
    made = []
    specials = [b"\r", b"\n", b"\r\n", b":", b" ", b"\t", b",", b"\x00", b"\x7f", b"\xff"]
    for _ in range(count):
        data = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(1, 3)):
            if not data:
                break
            at = rng.randrange(len(data))
            action = rng.randrange(5)
            if action == 0:
                data[at] = rng.randrange(256)
            elif action == 1:
                del data[at]
            elif action == 2:
                data[at:at] = rng.choice(specials)
            elif action == 3:
                data[at:at] = data[at:at + rng.randint(1, 16)]
            else:
                del data[at:]
        made.append(bytes(data))
    return made


# --- the site and the servers ---------------------------------------------------------------

def make_site() -> str:
    """A folder with files of every kind the corpus asks for."""
    root = tempfile.mkdtemp(prefix="nex-compare-")
    files = {"hello.txt": b"hello, world\n", "page.html": b"<!doctype html><p>page</p>\n",
             "empty.txt": b"", "big.bin": bytes(range(256)) * 1024,
             "caf\xe9.txt": b"accent\n", "a b.txt": b"space\n", ".hidden": b"secret\n",
             "style.css": b"body { color: black }\n" * 50,
             "sub/index.html": b"<!doctype html><p>index</p>\n", "sub/deeper/x.txt": b"x\n",
             "sub/deeper/y.json": b"{}\n"}
    for name, data in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(data)
    with open(os.path.join(root, "style.css.gz"), "wb") as out:
        out.write(b"\x1f\x8b" + b"gzipped css stand-in")
    stamp = 1_700_000_000
    for folder, names, filenames in os.walk(root):
        for name in names + filenames:
            os.utime(os.path.join(folder, name), (stamp, stamp))
    return root


class Server:
    """One checkout's ``server.py`` on an ephemeral port, serving ``root``."""

    def __init__(self, checkout: str, root: str) -> None:
        self.checkout = os.path.abspath(checkout)
        self.workdir = tempfile.mkdtemp(prefix="nex-compare-run-")
        settings = os.path.join(self.workdir, "settings.conf")
        with open(settings, "w", encoding="utf-8") as out:
            out.write(f"[server]\nerror_pages = {self.checkout}/error_pages\n"
                      f"templates = {self.checkout}/other_templates\n"
                      "[timeouts]\nrequest_head = 2\n"
                      f"[logging]\naccess_log = {self.workdir}/access.log\n"
                      f"error_log = {self.workdir}/error.log\nlog_colour = never\n")
        self.stdout = os.path.join(self.workdir, "stdout")
        with open(self.stdout, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "server.py", "--config", settings, "--port", "0", "--root",
                 root, "--bind", "127.0.0.1"], cwd=self.checkout, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            with open(self.stdout, "rb") as text:
                match = _URL.search(text.read())
            if match:
                return int(match.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        with open(self.stdout, "rb") as text:
            said = text.read()
        self.stop()
        raise RuntimeError(f"{self.checkout}: Nex did not start: {said!r}")

    def exchange(self, data: bytes) -> bytes:
        """Send ``data`` on a new connection, shut the sending side, read until the end."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=_READ_TIMEOUT) as sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server answered and closed before taking it all
            received = bytearray()
            try:
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    received += chunk
            except OSError:
                pass  # a reset after the answer: what arrived still counts
        return bytes(received)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its folder."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


# --- comparing --------------------------------------------------------------------------------

def head_methods(data: bytes) -> List[str]:
    """The method of each request in ``data`` that can be told apart, in order."""
    methods = []
    for line in re.split(rb"\r?\n", data):
        match = re.match(rb"([A-Z]+) \S+ HTTP/1\.\d$", line)
        if match:
            methods.append(match.group(1).decode())
    return methods


def split_responses(stream: bytes, methods: List[str]) -> Iterator[Tuple[bytes, bytes]]:
    """``(head, body)`` of each response in ``stream``; a HEAD request's has no body."""
    position, index = 0, 0
    while position < len(stream):
        end = stream.find(b"\r\n\r\n", position)
        if end == -1:
            yield stream[position:], b""
            return
        head = stream[position:end + 4]
        position = end + 4
        status = re.match(rb"HTTP/1\.\d (\d{3})", head)
        code = int(status.group(1)) if status else 0
        method = methods[index] if index < len(methods) else "GET"
        if code >= 200:
            index += 1
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        if method == "HEAD" or code < 200 or code in (204, 304):
            body = b""
        elif re.search(rb"(?i)\r\ntransfer-encoding: *chunked", head):
            start = position
            while True:
                line_end = stream.find(b"\r\n", position)
                if line_end == -1:
                    position = len(stream)
                    break
                size = int(stream[position:line_end].split(b";")[0] or b"0", 16)
                position = line_end + 2 + size + 2
                if size == 0:
                    position = stream.find(b"\r\n\r\n", line_end) + 4 or len(stream)
                    break
            body = stream[start:position]
        elif length:
            body = stream[position:position + int(length.group(1))]
            position += len(body)
        else:
            body, position = stream[position:], len(stream)
        yield head, body


def normalise(stream: bytes, port: int) -> bytes:
    """``stream`` without Date values, the random multipart boundaries written as BOUNDARY
    and the server's port as PORT."""
    stream = _DATE.sub(b"\r\nDate: -", stream)
    for boundary in set(_BOUNDARY.findall(stream)):
        stream = stream.replace(boundary, b"BOUNDARY")
    return stream.replace(b"Port %d" % port, b"Port PORT").replace(b":%d" % port, b":PORT")


def compare(base: Server, new: Server, corpus: List[bytes]) -> int:
    """Replay ``corpus`` against both servers; print each differing response; the count."""
    differences = 0
    for number, data in enumerate(corpus):
        old_stream = normalise(base.exchange(data), base.port)
        new_stream = normalise(new.exchange(data), new.port)
        if old_stream == new_stream:
            continue
        methods = head_methods(data)
        old = list(split_responses(old_stream, methods))
        new_ = list(split_responses(new_stream, methods))
        for index in range(max(len(old), len(new_))):
            before = old[index] if index < len(old) else (b"(none)", b"")
            after = new_[index] if index < len(new_) else (b"(none)", b"")
            if before != after:
                differences += 1
                print(f"--- request {number}, response {index + 1}: {data[:300]!r}")
                for label, (head, body) in (("base", before), ("new", after)):
                    print(f"  {label} head: {head[:600]!r}")
                    print(f"  {label} body: {body[:300]!r} ({len(body)} bytes)")
    return differences


def _fetch_validators(server: Server) -> Tuple[str, str]:
    reply = server.exchange(_request("HEAD /hello.txt HTTP/1.1"))
    etag = re.search(rb"\r\nETag: ([^\r\n]*)", reply)
    modified = re.search(rb"\r\nLast-Modified: ([^\r\n]*)", reply)
    return ((etag.group(1) if etag else b'"none"').decode("latin-1"),
            (modified.group(1) if modified else b"").decode("latin-1"))


def main() -> int:
    """Run the comparison; exit status 1 when a response differs."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the checkout to compare against")
    parser.add_argument("--new", default=os.path.dirname(HERE), help="the checkout to check")
    parser.add_argument("--mutations", type=int, default=400,
                        help="how many seeded mutations to add (default 400)")
    args = parser.parse_args()
    root = make_site()
    servers: List[Server] = []
    try:
        servers.append(Server(args.base, root))
        servers.append(Server(args.new, root))
        etag, modified = _fetch_validators(servers[1])
        harvested = harvest(os.path.join(args.new, "tests"))
        made = generated(etag, modified)
        corpus = list(dict.fromkeys(harvested + made))
        corpus += mutations(corpus, args.mutations)
        print(f"{len(corpus)} requests: {len(set(harvested))} from the tests, {len(made)} "
              f"generated, {args.mutations} mutations")
        differences = compare(servers[0], servers[1], corpus)
        print(f"{differences} differing response(s)")
        return 1 if differences else 0
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
