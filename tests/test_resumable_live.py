"""Resumable uploads against the real server on port 0, with a client written to
draft-ietf-httpbis-resumable-upload-15 over raw sockets."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import socket
import struct
import tempfile
import threading
import time
import unittest
from typing import Dict, Optional, Tuple

from tests.support import NexServer, ResponseReader, reset, wait_until
from tests.support.upload import LiveUploadCase

SIZE = 50 * 1024 * 1024
PIECE = 256 * 1024


class DraftClient:
    """Uploads ``data`` to ``path`` as the draft describes: creation, and after each lost
    connection offset retrieval (HEAD) and an append (PATCH) from the server's offset.
    ``cut_at`` lists absolute offsets at which the client drops its connection."""

    def __init__(self, server, path: str, data: bytes, cut_at=()) -> None:
        self.server = server
        self.path = path
        self.data = data
        self.cuts = sorted(cut_at)
        self.resource: Optional[str] = None
        self.interrupts = 0

    def request(self, head: str, start: int, complete: bool = True
                ) -> Optional[Tuple[int, Dict[str, str]]]:
        """Send ``head`` and ``data[start:]``; the final response, or None after a cut."""
        sock = self.server.connect()
        try:
            sock.sendall(head.encode("latin-1"))
            stop = next((cut for cut in self.cuts if cut > start), None)
            reader = ResponseReader(sock)
            if head.startswith("PUT"):
                status, headers, _ = reader.read()
                if status != 104:
                    raise AssertionError(f"expected 104, got {status}")
                self.resource = headers["location"]
            at = start
            while at < len(self.data):
                end = min(at + PIECE, len(self.data))
                if stop is not None and end >= stop:
                    try:
                        sock.sendall(self.data[at:stop])
                    except OSError:
                        break  # answered early (409 while the last try's lock is held)
                    self.cuts.remove(stop)
                    self.interrupts += 1
                    # Reset rather than close: the way a dropped network looks to Nex.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
                    return None
                try:
                    sock.sendall(self.data[at:end])
                except OSError:
                    break  # the server answered early (409) and closed: read its answer
                at = end
            try:
                status, headers, _ = reader.read()
            except OSError:
                return None
            return status, headers
        finally:
            sock.close()

    def offset(self) -> int:
        sock = self.server.connect()
        try:
            sock.sendall(f"HEAD {self.resource} HTTP/1.1\r\nHost: localhost\r\n"
                         "Connection: close\r\n\r\n".encode())
            status, headers, _ = ResponseReader(sock).read(head_only=True)
        finally:
            sock.close()
        if status != 204:
            raise AssertionError(f"expected 204 to an offset request, got {status}")
        return int(headers["upload-offset"])

    def upload(self) -> Tuple[int, Dict[str, str]]:
        """Upload until the server answers the completing request."""
        result = self.request(f"PUT {self.path} HTTP/1.1\r\nHost: localhost\r\n"
                              f"Upload-Complete: ?1\r\nContent-Length: {len(self.data)}\r\n"
                              "\r\n", 0)
        deadline = time.monotonic() + 120
        while result is None or result[0] == 409:
            if time.monotonic() >= deadline:
                raise AssertionError("the upload did not finish")
            offset = self.offset()
            result = self.request(
                f"PATCH {self.resource} HTTP/1.1\r\nHost: localhost\r\n"
                f"Content-Type: application/partial-upload\r\nUpload-Offset: {offset}\r\n"
                f"Upload-Complete: ?1\r\nContent-Length: {len(self.data) - offset}\r\n\r\n",
                offset)
        return result


class ResumableLiveTest(LiveUploadCase):
    """The draft's flows on the wire, uploads on."""

    settings = {"files": {"upload": "yes"}}

    def send(self, data: bytes) -> Tuple[int, Dict[str, str], bytes]:
        """Send ``data`` on a new connection; the final reply, after any 1xx ones."""
        with self.server.connect() as sock:
            sock.sendall(data)
            reader = ResponseReader(sock)
            while True:
                status, headers, body = reader.read(head_only=data.startswith(b"HEAD"))
                if status >= 200:
                    return status, headers, body

    def test_fifty_megabytes_cut_five_times_at_random_offsets_arrive_byte_exact(self) -> None:
        chooser = random.Random(16)
        data = chooser.randbytes(SIZE)
        cuts = sorted(chooser.sample(range(1, SIZE), 5))
        client = DraftClient(self.server, self.path("big.bin"), data, cuts)
        status, headers = client.upload()
        self.assertEqual(status, 201)
        self.assertEqual(client.interrupts, 5)
        with open(os.path.join(self.folder, "big.bin"), "rb") as stored:
            self.assertEqual(hashlib.sha256(stored.read()).digest(),
                             hashlib.sha256(data).digest())
        self.assertTrue(wait_until(lambda: self.names() == ["big.bin"]), self.names())

    def test_two_parallel_uploads_both_arrive(self) -> None:
        chooser = random.Random(2)
        uploads = {name: chooser.randbytes(3 * 1024 * 1024) for name in ("a.bin", "b.bin")}
        results = {}

        def run(name: str) -> None:
            cut = chooser.randrange(1, len(uploads[name]))
            results[name] = DraftClient(self.server, self.path(name), uploads[name],
                                        [cut]).upload()[0]
        threads = [threading.Thread(target=run, args=(name,)) for name in uploads]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        self.assertEqual(results, {"a.bin": 201, "b.bin": 201})
        for name, data in uploads.items():
            self.assertEqual(self.read(name), data)

    def test_a_wrong_offset_is_409_with_the_offset_to_resume_from(self) -> None:
        status, headers, _ = self.send(
            f"PUT {self.path('w.bin')} HTTP/1.1\r\nHost: localhost\r\nUpload-Complete: ?0\r\n"
            "Content-Length: 5\r\nConnection: close\r\n\r\n12345".encode())
        self.assertEqual((status, headers["upload-offset"]), (201, "5"))
        status, headers, _ = self.send(
            f"PATCH {headers['location']} HTTP/1.1\r\nHost: localhost\r\n"
            "Content-Type: application/partial-upload\r\nUpload-Offset: 2\r\n"
            "Upload-Complete: ?1\r\nContent-Length: 3\r\nConnection: close\r\n\r\n345".encode())
        self.assertEqual((status, headers["upload-offset"]), (409, "5"))

    def test_an_expired_upload_is_gone(self) -> None:
        status, headers, _ = self.send(
            f"PUT {self.path('old.bin')} HTTP/1.1\r\nHost: localhost\r\nUpload-Complete: ?0\r\n"
            "Content-Length: 2\r\nConnection: close\r\n\r\nab".encode())
        self.assertEqual(status, 201)
        [partial] = self.names()
        old = time.time() - 25 * 3600
        os.utime(os.path.join(self.folder, partial), (old, old))
        status, _, _ = self.send(f"HEAD {headers['location']} HTTP/1.1\r\nHost: localhost\r\n"
                                 "Connection: close\r\n\r\n".encode())
        self.assertEqual(status, 404)
        self.assertEqual(self.names(), [])

    def test_a_client_gone_during_the_104_is_no_fault(self) -> None:
        for _ in range(5):
            sock = self.server.connect()
            sock.sendall(f"PUT {self.path('gone.bin')} HTTP/1.1\r\nHost: localhost\r\n"
                         "Upload-Complete: ?1\r\nContent-Length: 1000\r\n\r\n".encode())
            reset(sock)
        self.wait_for_line(f"PUT {self.path('gone.bin')}")
        status, _, _ = self.send(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n"
                                 b"Connection: close\r\n\r\n")
        self.assertEqual(status, 200)
        self.assertNotIn("gone.bin", self.names())


class RestartTest(unittest.TestCase):
    """A resumable upload outlives a restart of Nex: the start-up clean-up of crash
    leftovers spares its partial data."""

    def setUp(self) -> None:
        self.root = os.path.realpath(tempfile.mkdtemp(prefix="nex-resume-restart-"))
        self.addCleanup(shutil.rmtree, self.root, True)

    def start(self) -> NexServer:
        server = NexServer(self.root, settings={"files": {"upload": "yes"}}).start()
        self.addCleanup(server.stop)
        return server

    def send(self, server: NexServer, data: bytes) -> Tuple[int, Dict[str, str]]:
        """Send ``data`` on a new connection; the final reply's status and fields."""
        with server.connect() as sock:
            sock.sendall(data)
            reader = ResponseReader(sock)
            while True:
                status, headers, _ = reader.read(head_only=data.startswith(b"HEAD"))
                if status >= 200:
                    return status, headers

    def test_an_upload_resumes_after_a_restart(self) -> None:
        server = self.start()
        status, headers = self.send(server, b"PUT /big.bin HTTP/1.1\r\nHost: localhost\r\n"
                                            b"Upload-Complete: ?0\r\nContent-Length: 5\r\n"
                                            b"Connection: close\r\n\r\nfirst")
        self.assertEqual(status, 201)
        resource = headers["location"]
        [partial] = [name for name in os.listdir(self.root) if name.startswith(".nex-upload-")]
        crash = os.path.join(self.root, f".nex-upload-{'0' * 32}")
        with open(crash, "wb") as out:
            out.write(b"left by a crash")
        server.signal()
        self.assertEqual(server.wait(), 0)
        # Both left alone long past what an upload in progress may be.
        past = time.time() - 2 * 3600
        for path in (os.path.join(self.root, partial), crash):
            os.utime(path, (past, past))
        server = self.start()
        self.assertIn("removed 1 unfinished upload left by an earlier run", server.stdout())
        self.assertFalse(os.path.exists(crash))
        status, headers = self.send(server, f"HEAD {resource} HTTP/1.1\r\nHost: localhost\r\n"
                                            "Connection: close\r\n\r\n".encode())
        self.assertEqual((status, headers["upload-offset"]), (204, "5"))
        status, _ = self.send(server, f"PATCH {resource} HTTP/1.1\r\nHost: localhost\r\n"
                                      "Content-Type: application/partial-upload\r\n"
                                      "Upload-Offset: 5\r\nUpload-Complete: ?1\r\n"
                                      "Content-Length: 9\r\nConnection: close\r\n\r\n"
                                      " and last".encode())
        self.assertEqual(status, 201)
        with open(os.path.join(self.root, "big.bin"), "rb") as stored:
            self.assertEqual(stored.read(), b"first and last")
