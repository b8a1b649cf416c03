"""Upload fixtures: a site answering requests without sockets, whose bodies arrive in scripted
pieces, and a live server per class over a root with a folder per test."""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
import tempfile
import threading
import unittest
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple
from unittest import mock

from nex.files.filecache import SmallFileCache
from nex.files.pending import PendingFile
from nex.files.templates import TemplateSet
from nex.http.body import BodyReader
from nex.http.errors import HTTPError
from nex.http.framing import HeadLimits
from nex.http.request import Headers, Request
from nex.http.response import Response
from nex.process.config import load_config
from nex.site.hosts import HostValidator
from nex.site.login import FailureLimiter, ProtectedPaths, SiteAuth, UsersFile
from nex.site.routing import Dispatcher
from tests.support.access import make_users
from tests.support.live import stop_and_check_error_log
from tests.support.server import REPO, NexServer, read_all

#: The Authorization field of the user :meth:`UploadTestCase.protect` makes.
ALICE = ("Authorization", "Basic " + base64.b64encode(b"alice:wonderland").decode("ascii"))


class BodyExchange:
    """One request's body as a BodyReader sees it: pieces from the client, then its close.

    ``before_piece(index)`` runs before each piece is handed over, to change the disk while
    the body is on its way.
    """

    def __init__(self, pieces: Sequence[bytes],
                 before_piece: Optional[Callable[[int], None]] = None) -> None:
        self.pieces = list(pieces)
        self.received = 0
        self.continues = 0
        self.interims: List[Tuple[int, List[Tuple[str, str]]]] = []
        self.before_piece = before_piece

    def receive(self, deadline: float) -> bytes:
        if self.received >= len(self.pieces):
            return b""  # the client closed
        if self.before_piece is not None:
            self.before_piece(self.received)
        self.received += 1
        return self.pieces[self.received - 1]

    def send_continue(self) -> None:
        self.continues += 1

    def send_interim(self, status: int, headers: Sequence[Tuple[str, str]]) -> None:
        self.interims.append((status, list(headers)))


def chunked(data: bytes, size: int = 5) -> bytes:
    """``data`` in the chunked transfer coding."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(data[at:at + size]), data[at:at + size])
                   for at in range(0, len(data), size))
    return out + b"0\r\n\r\n"


class UploadTestCase(unittest.TestCase):
    """A document root with a folder, a file and an ``outside`` folder beside it."""

    settings: dict = {"upload": True}

    def setUp(self) -> None:
        self.base = os.path.realpath(tempfile.mkdtemp(prefix="nex-upload-"))
        self.addCleanup(shutil.rmtree, self.base, True)
        self.root = os.path.join(self.base, "root")
        self.outside = os.path.join(self.base, "outside")
        os.makedirs(os.path.join(self.root, "dir"))
        os.makedirs(self.outside)
        self.write("hello.txt", b"hello, world\n")
        self.write(os.path.join(self.outside, "secret.txt"), b"secret\n")
        self.config = dataclasses.replace(load_config(None, {
            "document_root": self.root,
            "error_pages": os.path.join(REPO, "error_pages"),
            "templates": os.path.join(REPO, "other_templates"),
        }), **self.settings)
        self.templates = TemplateSet.load(self.config.error_pages, self.config.templates)
        self.exchange: Optional[BodyExchange] = None
        self.auth: Optional[SiteAuth] = None

    def protect(self, *prefixes: str) -> None:
        """From now on, the sites made ask for a login under ``prefixes``; the one user is
        alice, password wonderland (:data:`ALICE`)."""
        self.auth = SiteAuth(UsersFile.load(make_users(self.base)), ProtectedPaths(list(prefixes)),
                             "Nex", FailureLimiter(100))

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.root, name)
        with open(path, "wb") as out:
            out.write(data)
        return path

    def read(self, name: str) -> bytes:
        with open(os.path.join(self.root, name), "rb") as source:
            return source.read()

    def site(self, file_cache: Optional[SmallFileCache] = None, **settings) -> Dispatcher:
        config = dataclasses.replace(self.config, **settings)
        return Dispatcher(config, self.templates, HostValidator(["*"]), "sig", file_cache,
                          auth=self.auth)

    def request(self, method: str, target: str, body: bytes = b"",
                headers: Iterable[Tuple[str, str]] = (), pieces: Optional[List[bytes]] = None,
                framing: str = "length", length: Optional[int] = None,
                before_piece: Optional[Callable[[int], None]] = None,
                site: Optional[Dispatcher] = None, host: str = "localhost",
                **settings) -> Response:
        """Answer ``method target`` for ``host`` whose body arrives as ``pieces`` (default:
        ``body`` in one piece, chunked when ``framing`` says so); raises the HTTPError it
        gets."""
        fields_sent = [("Host", host), *headers]
        if framing == "chunked":
            body = chunked(body)
            fields_sent.append(("Transfer-Encoding", "chunked"))
        else:
            length = len(body) if length is None else length
            fields_sent.append(("Content-Length", str(length)))
        request = Request(method, target, target.partition("?")[0], target.partition("?")[2],
                          "HTTP/1.1", Headers(fields_sent), host, True,
                          body_length=length or 0, chunked=framing == "chunked")
        self.exchange = BodyExchange(pieces if pieces is not None else [body], before_piece)
        reader = None
        if request.has_body:
            expects = any(name == "Expect" for name, _ in fields_sent)
            reader = BodyReader(request, bytearray(), self.exchange.receive, 30.0,
                                self.config.max_request_body, HeadLimits(),
                                self.exchange.send_continue if expects else None,
                                self.exchange.send_interim)
        site = site or self.site(**settings)
        return site.respond(request, reader, "127.0.0.1")

    def refusal(self, status: int, method: str, target: str, body: bytes = b"",
                **options) -> HTTPError:
        with self.assertRaises(HTTPError) as caught:
            self.request(method, target, body, **options)
        self.assertEqual(caught.exception.status, status, caught.exception)
        return caught.exception

    def names(self, folder: str = "") -> List[str]:
        """Every name in ``folder`` of the root, temporary files included."""
        return sorted(os.listdir(os.path.join(self.root, folder)))

    def assertNoTemporaryFiles(self) -> None:
        for folder, _, files in os.walk(self.base):
            self.assertEqual([name for name in files if name.startswith(".nex-upload-")], [],
                             folder)


def race(first: Callable[[], None], second: Callable[[], None]) -> None:
    """Run ``first`` until its upload is about to take its name (its conditions judged, its
    folder held), then ``second`` beside it, which unhindered is done within half a second;
    then let ``first`` go on, and wait for both."""
    waiting, let_go = threading.Event(), threading.Event()
    commit = PendingFile.commit

    def held_commit(pending: PendingFile, replace: bool) -> None:
        if not waiting.is_set():
            waiting.set()
            let_go.wait(30)
        commit(pending, replace)

    with mock.patch.object(PendingFile, "commit", held_commit):
        one = threading.Thread(target=first)
        one.start()
        if not waiting.wait(30):
            raise AssertionError("the first upload never came to its naming")
        two = threading.Thread(target=second)
        two.start()
        two.join(0.5)
        let_go.set()
        one.join(30)
        two.join(30)


def reply(data: bytes) -> Tuple[int, Dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of the one response in ``data``."""
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return int(lines[0].split(" ")[1]), headers, body


class LiveUploadCase(unittest.TestCase):
    """One server per class over a root with ``dir/``, ``hello.txt`` and a link ``out`` to a
    folder outside it; the error log must hold no traceback when the class ends."""

    settings: Mapping[str, Mapping[str, object]] = {}

    @classmethod
    def setUpClass(cls) -> None:
        cls.base = os.path.realpath(tempfile.mkdtemp(prefix="nex-upload-live-"))
        cls.root = os.path.join(cls.base, "root")
        cls.outside = os.path.join(cls.base, "outside")
        os.makedirs(os.path.join(cls.root, "dir"))
        os.makedirs(cls.outside)
        with open(os.path.join(cls.root, "hello.txt"), "wb") as out:
            out.write(b"hello, world\n")
        os.symlink(cls.outside, os.path.join(cls.root, "out"))
        cls.server = NexServer(cls.root, settings=cls.settings).start()

    @classmethod
    def tearDownClass(cls) -> None:
        stop_and_check_error_log(cls.server, cls.base)

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(dir=os.path.join(self.root, "dir"))
        self.name = os.path.basename(self.folder)
        self.addCleanup(shutil.rmtree, self.folder, True)

    def path(self, name: str = "") -> str:
        """The URL path of ``name`` in this test's own folder."""
        return f"/dir/{self.name}/{name}"

    def names(self) -> List[str]:
        """Every name in this test's folder, temporary files included."""
        return sorted(os.listdir(self.folder))

    def read(self, name: str) -> bytes:
        with open(os.path.join(self.folder, name), "rb") as source:
            return source.read()

    def send(self, data: bytes) -> Tuple[int, Dict[str, str], bytes]:
        """Send ``data`` on a new connection that then asks to close; the one reply."""
        with self.server.connect() as sock:
            sock.sendall(data)
            return reply(read_all(sock))

    def wait_for_line(self, text: str) -> None:
        """Wait until the access log holds ``text`` (the server has finished that request)."""
        log = self.server.wait_for_access_log(lambda lines: text in lines)
        self.assertIn(text, log)
