"""Uploads against the real server on port 0: raw sockets, urllib.request and http.client."""

from __future__ import annotations

import http.client
import os
import unittest
import urllib.error
import urllib.request

from tests.support import (BOUNDARY, FORM_TYPE, HTML, SOCKET_TIMEOUT, ResponseReader,
                           file_part, form_body, read_all, wait_until)
from tests.support.upload import LiveUploadCase, reply

MAX_UPLOAD = 64 * 1024
HOST = b"Host: localhost\r\n"


def head(line: str, *fields: str) -> bytes:
    """A request head: ``line``, a Host field, ``fields``, and the blank line."""
    return (line + "\r\n").encode() + HOST + b"".join(f"{f}\r\n".encode() for f in fields) \
        + b"\r\n"






class PutLiveTest(LiveUploadCase):
    """PUT on the wire, uploads on and overwriting off."""

    settings = {"files": {"upload": "yes", "max_upload_size": MAX_UPLOAD}}

    def test_new_file_then_get_on_one_connection(self) -> None:
        with self.server.connect() as sock:
            reader = ResponseReader(sock)
            sock.sendall(head(f"PUT {self.path('new.txt')} HTTP/1.1", "Content-Length: 5")
                         + b"abcde" + head(f"GET {self.path('new.txt')} HTTP/1.1"))
            status, headers, body = reader.read()
            self.assertEqual((status, headers["location"], body),
                             (201, self.path("new.txt"), f"{self.path('new.txt')}\n".encode()))
            status, got, body = reader.read()
            self.assertEqual((status, body), (200, b"abcde"))
            self.assertEqual(got["etag"], headers["etag"])

    def test_overwrite_is_refused_with_409_and_its_page(self) -> None:
        with open(os.path.join(self.folder, "kept.txt"), "wb") as out:
            out.write(b"original")
        status, headers, body = self.send(
            head(f"PUT {self.path('kept.txt')} HTTP/1.1", "Content-Length: 3", "Connection: close",
                 "Accept: text/html")
            + b"new")
        self.assertEqual(status, 409)
        self.assertEqual(headers["content-type"], "text/html; charset=utf-8")
        self.assertIn(b"<title>409 Conflict</title>", body)
        self.assertIn(f"{self.path('kept.txt')} exists; uploads do not replace files here"
                      " (upload_overwrite = no).".encode(), body)
        self.assertEqual(self.read("kept.txt"), b"original")

    def test_dot_segments_never_leave_the_root(self) -> None:
        for target in ("/../outside-1.txt", "/%2e%2e/outside-2.txt", "/dir/../../../outside-3.txt"):
            with self.subTest(target=target):
                status, _, _ = self.send(head(f"PUT {target} HTTP/1.1", "Content-Length: 1",
                                              "Connection: close") + b"x")
                self.assertEqual(status, 201)
        self.assertEqual(sorted(name for name in os.listdir(self.base)), ["outside", "root"])
        for number in (1, 2, 3):
            os.remove(os.path.join(self.root, f"outside-{number}.txt"))

    def test_symlink_to_a_folder_outside_is_404(self) -> None:
        status, _, body = self.send(head("PUT /out/x.txt HTTP/1.1", "Content-Length: 1",
                                         "Connection: close") + b"x")
        self.assertEqual(status, 404)
        self.assertIn(b"The requested path /out/x.txt was not found.", body)
        self.assertEqual(os.listdir(self.outside), [])

    def test_dotfile_is_404(self) -> None:
        status, _, _ = self.send(head(f"PUT {self.path('.env')} HTTP/1.1", "Content-Length: 1",
                                      "Connection: close") + b"x")
        self.assertEqual(status, 404)
        self.assertEqual(self.names(), [])

    def test_over_the_cap_is_413_before_the_body_is_sent(self) -> None:
        status, headers, body = self.send(head(f"PUT {self.path('big')} HTTP/1.1",
                                               f"Content-Length: {MAX_UPLOAD + 1}"))
        self.assertEqual(status, 413)
        self.assertEqual(headers["connection"], "close")
        self.assertEqual(self.names(), [])

    def test_chunked_over_the_cap_is_413_as_soon_as_it_passes(self) -> None:
        with self.server.connect() as sock:
            sock.sendall(head(f"PUT {self.path('big')} HTTP/1.1", "Transfer-Encoding: chunked"))
            sock.sendall(b"8000\r\n" + b"a" * 0x8000 + b"\r\n")
            sock.sendall(b"8001\r\n")  # 32K + 32K + 1 passes the cap
            status, _, _ = reply(read_all(sock))
        self.assertEqual(status, 413)
        self.assertEqual(self.names(), [])

    def test_chunked_put(self) -> None:
        data = os.urandom(10000)
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(data[at:at + 999]), data[at:at + 999])
                          for at in range(0, len(data), 999))
        status, _, _ = self.send(head(f"PUT {self.path('c.bin')} HTTP/1.1",
                                      "Transfer-Encoding: chunked", "Connection: close")
                                 + chunks + b"0\r\n\r\n")
        self.assertEqual(status, 201)
        self.assertEqual(self.read("c.bin"), data)

    def test_client_leaving_mid_body_leaves_no_file_and_no_temporary_file(self) -> None:
        target = self.path("cut.bin")
        with self.server.connect() as sock:
            sock.sendall(head(f"PUT {target} HTTP/1.1", "Content-Length: 50000") + b"x" * 20000)
            # The first bytes are on disk, in a temporary file, before the client leaves.
            self.assertTrue(wait_until(lambda: any(
                name.startswith(".nex-upload-") and os.path.getsize(
                    os.path.join(self.folder, name)) == 20000 for name in self.names())))
        self.wait_for_line(f'"PUT {target} HTTP/1.1" 400')
        self.assertEqual(self.names(), [])

    def test_expect_100_continue_gets_100_then_201(self) -> None:
        with self.server.connect() as sock:
            sock.sendall(head(f"PUT {self.path('e.txt')} HTTP/1.1", "Content-Length: 4",
                              "Expect: 100-continue", "Connection: close"))
            interim = b""
            while b"\r\n\r\n" not in interim:
                chunk = sock.recv(1)
                self.assertTrue(chunk, "closed before 100 Continue")
                interim += chunk
            self.assertEqual(interim, b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(b"body")
            status, _, _ = reply(read_all(sock))
        self.assertEqual(status, 201)
        self.assertEqual(self.read("e.txt"), b"body")

    def test_refused_expect_100_continue_gets_no_100(self) -> None:
        with open(os.path.join(self.folder, "kept.txt"), "wb") as out:
            out.write(b"original")
        data = self.send(head(f"PUT {self.path('kept.txt')} HTTP/1.1", "Content-Length: 4",
                              "Expect: 100-continue"))
        self.assertEqual(data[0], 409)


class FormLiveTest(LiveUploadCase):
    """Form POSTs on the wire from urllib.request, http.client and a browser-like client."""

    settings = {"files": {"upload": "yes", "max_upload_size": MAX_UPLOAD}}

    def url(self, path: str) -> str:
        return self.server.url.rstrip("/") + path

    def test_urllib_request_with_a_hand_built_body(self) -> None:
        body = form_body(file_part("from urllib.txt", b"sent by urllib\r\n"))
        request = urllib.request.Request(self.url(self.path()), data=body, method="POST",
                                         headers=dict([FORM_TYPE]))
        with urllib.request.urlopen(request, timeout=SOCKET_TIMEOUT) as answer:
            self.assertEqual(answer.status, 201)
            self.assertEqual(answer.headers["Location"], self.path("from%20urllib.txt"))
            self.assertEqual(answer.read(), f"{self.path('from%20urllib.txt')}\n".encode())
        self.assertEqual(self.read("from urllib.txt"), b"sent by urllib\r\n")

    def test_http_client_with_several_files(self) -> None:
        files = {"a.txt": b"first", "b.bin": bytes(range(256)) * 40, "c d.txt": b""}
        body = form_body(*[file_part(name, data) for name, data in files.items()])
        connection = http.client.HTTPConnection(self.server.host, self.server.port,
                                                timeout=SOCKET_TIMEOUT)
        self.addCleanup(connection.close)
        connection.request("POST", self.path(), body=body, headers=dict([FORM_TYPE]))
        answer = connection.getresponse()
        self.assertEqual(answer.status, 201)
        self.assertEqual(answer.read().decode().splitlines(),
                         [self.path("a.txt"), self.path("b.bin"), self.path("c%20d.txt")])
        for name, data in files.items():
            self.assertEqual(self.read(name), data)
        # The connection stays usable.
        connection.request("GET", self.path("a.txt"))
        self.assertEqual(connection.getresponse().read(), b"first")

    def test_browser_form_is_sent_back_to_the_listing(self) -> None:
        body = form_body(file_part("page.txt", b"from a browser"))
        origin = f"http://{self.server.host}:{self.server.port}"
        connection = http.client.HTTPConnection(self.server.host, self.server.port,
                                                timeout=SOCKET_TIMEOUT)
        self.addCleanup(connection.close)
        connection.request("POST", self.path() + "?sort=name", body=body,
                           headers=dict([FORM_TYPE, HTML, ("Origin", origin)]))
        answer = connection.getresponse()
        answer.read()
        self.assertEqual(answer.status, 303)
        self.assertEqual(answer.headers["Location"], self.path() + "?sort=name")
        connection.request("GET", answer.headers["Location"])
        listing = connection.getresponse().read().decode()
        self.assertIn('href="page.txt"', listing)
        self.assertIn('<form class="upload" method="post" enctype="multipart/form-data">',
                      listing)

    def test_form_from_another_site_is_403(self) -> None:
        body = form_body(file_part("csrf.txt", b"x"))
        request = urllib.request.Request(self.url(self.path()), data=body, method="POST",
                                         headers=dict([FORM_TYPE, HTML,
                                                       ("Origin", "http://evil.example")]))
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=SOCKET_TIMEOUT)
        caught.exception.close()
        self.assertEqual(caught.exception.code, 403)
        self.assertEqual(self.names(), [])

    def test_truncated_form_leaves_nothing(self) -> None:
        body = form_body(file_part("one.txt", b"1" * 5000), file_part("two.txt", b"2" * 5000))
        with self.server.connect() as sock:
            sock.sendall(head(f"POST {self.path()} HTTP/1.1", f"{FORM_TYPE[0]}: {FORM_TYPE[1]}",
                              f"Content-Length: {len(body)}") + body[:-100])
        self.wait_for_line(f'"POST {self.path()} HTTP/1.1" 400')
        self.assertEqual(self.names(), [])

    def test_malformed_form_is_400_and_leaves_nothing(self) -> None:
        body = form_body(file_part("one.txt", b"1")).replace(BOUNDARY.encode() + b"--", b"x")
        status, _, _ = self.send(head(f"POST {self.path()} HTTP/1.1",
                                      f"{FORM_TYPE[0]}: {FORM_TYPE[1]}",
                                      f"Content-Length: {len(body)}") + body)
        self.assertEqual(status, 400)
        self.assertEqual(self.names(), [])


class OverwriteLiveTest(LiveUploadCase):
    """With upload_overwrite on, a PUT that replaces a file answers 204."""

    settings = {"files": {"upload": "yes", "upload_overwrite": "yes"}}

    def test_replacing_put_is_204(self) -> None:
        with open(os.path.join(self.folder, "r.txt"), "wb") as out:
            out.write(b"old")
        status, headers, body = self.send(head(f"PUT {self.path('r.txt')} HTTP/1.1",
                                               "Content-Length: 3", "Connection: close")
                                          + b"new")
        self.assertEqual((status, body), (204, b""))
        self.assertNotIn("content-length", headers)
        self.assertEqual(self.read("r.txt"), b"new")


class UploadOffLiveTest(LiveUploadCase):
    """With uploads off (the default) PUT and POST are 405 exactly as before."""

    def test_put_and_post_are_405_with_allow(self) -> None:
        for method, target in (("PUT", self.path("a.txt")), ("POST", self.path())):
            with self.subTest(method=method):
                status, headers, body = self.send(
                    head(f"{method} {target} HTTP/1.1", "Content-Length: 3",
                         f"{FORM_TYPE[0]}: {FORM_TYPE[1]}") + b"abc")
                self.assertEqual(status, 405)
                self.assertEqual(headers["allow"], "GET, HEAD, OPTIONS")
                self.assertIn(f"{method} is not supported here.".encode(), body)
        self.assertEqual(self.names(), [])

    def test_options_and_listing_are_unchanged(self) -> None:
        status, headers, _ = self.send(head("OPTIONS * HTTP/1.1", "Connection: close"))
        self.assertEqual((status, headers["allow"]), (204, "GET, HEAD, OPTIONS"))
        status, _, body = self.send(head(f"GET {self.path()} HTTP/1.1", "Connection: close"))
        self.assertEqual(status, 200)
        self.assertNotIn(b'enctype="multipart/form-data"', body)


if __name__ == "__main__":
    unittest.main()
