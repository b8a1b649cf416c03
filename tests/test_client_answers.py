"""Answers that suit the client: error replies as a page, JSON or one line of text; refusals
that name the setting behind them; and a footer naming the host the client used."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import unittest
from typing import Dict, Tuple

from nex import SERVER_SOFTWARE
from nex.files.templates import TemplateSet
from nex.http.errors import HTTPError, size_limit
from nex.http.negotiation import error_form
from nex.process.config import load_config
from nex.site.hosts import HostValidator
from nex.site.routing import ROBOTS_TXT, Dispatcher
from tests.support import REPO, NexServer, ResponseReader
from tests.support import make_request

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


class ErrorFormTest(unittest.TestCase):
    """Which form an error reply takes, from Accept and ?format=."""

    CASES = [
        (None, "", "text"),
        ("*/*", "", "text"),  # curl
        ("text/*", "", "text"),
        (BROWSER, "", "html"),
        ("text/html", "", "html"),
        ("text/plain, text/html;q=0.5", "", "text"),
        ("application/json", "", "json"),
        ("application/json, */*", "", "json"),
        ("text/html, application/json", "", "html"),
        ("*/*", "format=json", "json"),
        (BROWSER, "format=json", "json"),
        ("application/json", "format=html", "html"),
        ("*/*", "a=1&format=json", "json"),
        ("*/*", "format=xml", "text"),
        ("*/*", "xformat=json", "text"),
        ("not a media range", "", "text"),
    ]

    def test_cases(self) -> None:
        for accept, query, form in self.CASES:
            with self.subTest(accept=accept, query=query):
                self.assertEqual(error_form(accept, query), form)


class RenderErrorAsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.templates = TemplateSet.load(os.path.join(REPO, "error_pages"),
                                         os.path.join(REPO, "other_templates"))

    def test_text_is_one_line(self) -> None:
        error = HTTPError(409, "/inbox/a.txt exists; uploads do not replace files here"
                               " (upload_overwrite = no).")
        self.assertEqual(self.templates.render_error_as("text", error, "sig"),
                         b"409 Conflict: /inbox/a.txt exists; uploads do not replace files"
                         b" here (upload_overwrite = no).\n")

    def test_text_without_detail(self) -> None:
        self.assertEqual(self.templates.render_error_as("text", HTTPError(500), "sig"),
                         b"500 Internal Server Error\n")

    def test_text_redirect_names_its_target(self) -> None:
        error = HTTPError(301, "The folder's address ends with a slash.",
                          headers=[("Location", "/docs/")])
        self.assertEqual(self.templates.render_error_as("text", error, "sig"),
                         b"301 Moved Permanently: /docs/\n")

    def test_json(self) -> None:
        error = HTTPError(404, "The requested path /a\"b was not found.")
        self.assertEqual(json.loads(self.templates.render_error_as("json", error, "sig")),
                         {"status": 404, "reason": "Not Found",
                          "detail": "The requested path /a\"b was not found."})
        redirect = HTTPError(308, headers=[("Location", "/up/")])
        self.assertEqual(json.loads(self.templates.render_error_as("json", redirect, "sig")),
                         {"status": 308, "reason": "Permanent Redirect", "detail": "",
                          "location": "/up/"})

    def test_html_is_the_page(self) -> None:
        page = self.templates.render_error_as("html", HTTPError(404), "the signature")
        self.assertIn(b"<title>404 Not Found</title>", page)
        self.assertIn(b"the signature", page)


class HTTPErrorTest(unittest.TestCase):
    def test_its_text_names_status_reason_and_detail(self) -> None:
        self.assertEqual(str(HTTPError(404, "gone")), "404 Not Found: gone")
        self.assertEqual(str(HTTPError(416)), "416 Range Not Satisfiable: Range Not Satisfiable")
        self.assertEqual(HTTPError(413).reason, "Content Too Large")


class SizeLimitTest(unittest.TestCase):
    def test_spelt_as_settings_conf_spells_it(self) -> None:
        for size, text in ((100 * 1024 ** 2, "100M"), (1024 ** 3, "1G"), (1536, "1536"),
                           (3072, "3K"), (1000, "1000"), (0, "0"), (64 * 1024, "64K")):
            with self.subTest(size=size):
                self.assertEqual(size_limit("max_upload_size", size),
                                 f"max_upload_size = {text}")


class DispatcherErrorResponseTest(unittest.TestCase):
    def setUp(self) -> None:
        root = tempfile.mkdtemp(prefix="nex-answers-")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        config = load_config(None, {"document_root": root,
                                    "error_pages": os.path.join(REPO, "error_pages"),
                                    "templates": os.path.join(REPO, "other_templates")})
        templates = TemplateSet.load(config.error_pages, config.templates)
        self.site = Dispatcher(config, templates, HostValidator(["localhost", "[::1]"]),
                               "configured signature", port=8123)

    def fields(self, response) -> Dict[str, str]:
        return {name.lower(): value for name, value in response.headers}

    def test_forms_and_vary(self) -> None:
        error = HTTPError(404, "gone")
        for accept, content_type in ((None, "text/plain; charset=utf-8"),
                                     (BROWSER, "text/html; charset=utf-8"),
                                     ("application/json", "application/json")):
            with self.subTest(accept=accept):
                headers = [("Accept", accept)] if accept else []
                response = self.site.error_response(
                    error, make_request("GET", "/x", headers=headers))
                self.assertEqual(self.fields(response)["content-type"], content_type)
                self.assertEqual(self.fields(response)["vary"], "Accept")

    def test_accept_joins_a_vary_already_there(self) -> None:
        error = HTTPError(412, headers=[("Vary", "Accept-Encoding, Origin")])
        response = self.site.error_response(error, make_request("GET", "/x"))
        self.assertEqual([value for name, value in response.headers if name == "Vary"],
                         ["Accept-Encoding, Origin, Accept"])

    def test_unread_request_gets_the_page(self) -> None:
        response = self.site.error_response(HTTPError(400))
        self.assertEqual(self.fields(response)["content-type"], "text/html; charset=utf-8")
        self.assertIn(b"configured signature", b"".join(response.body))

    def test_footer_names_the_host_the_client_used(self) -> None:
        for host, shown in (("localhost:9000", "localhost Port 9000"),
                            ("LocalHost", "localhost Port 8123"),
                            ("[::1]:8443", "[::1] Port 8443")):
            with self.subTest(host=host):
                self.assertEqual(self.site.signature_for(make_request("GET", "/", host)),
                                 f"{SERVER_SOFTWARE} Server at {shown}")

    def test_refused_host_is_not_echoed_in_the_footer(self) -> None:
        request = make_request("GET", "/", "evil.example")
        self.assertEqual(self.site.signature_for(request), "configured signature")
        page = b"".join(self.site.error_response(
            HTTPError(403), make_request("GET", "/", "evil.example",
                                         [("Accept", "text/html")])).body)
        self.assertNotIn(b"evil.example", page)

    def test_remembered_footers_follow_each_host_and_each_site(self) -> None:
        other = Dispatcher(self.site.config, self.site.templates, HostValidator(["[::1]"]),
                           "other signature", port=9000)
        for _ in range(2):  # the second time from what each remembers
            for site, host, shown in ((self.site, "localhost", "localhost Port 8123"),
                                      (other, "localhost", None),
                                      (self.site, "LOCALHOST:80", "localhost Port 80"),
                                      (other, "[::1]", "[::1] Port 9000"),
                                      (self.site, "evil.example", None)):
                with self.subTest(site=site.signature, host=host):
                    expected = site.signature if shown is None else \
                        f"{SERVER_SOFTWARE} Server at {shown}"
                    self.assertEqual(site.signature_for(make_request("GET", "/", host)),
                                     expected)

    def test_proxy_targets_keep_the_configured_footer(self) -> None:
        request = make_request("GET", "http://localhost:9000/", "localhost:9000")
        self.assertEqual(self.site.signature_for(request), "configured signature")


def exchange(server: NexServer, request: str, body: bytes = b"") -> Tuple[int, dict, bytes]:
    with server.connect() as sock:
        sock.sendall(request.encode("utf-8") + body)
        return ResponseReader(sock).read()


class LiveAnswersTest(unittest.TestCase):
    """Over real sockets: each client gets its form, and refusals name their setting."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.root = tempfile.mkdtemp(prefix="nex-answers-")
        with open(os.path.join(cls.root, "kept.txt"), "wb") as out:
            out.write(b"kept")
        os.mkdir(os.path.join(cls.root, "big"))
        with open(os.path.join(cls.root, "big", "data.bin"), "wb") as out:
            out.write(b"x" * 4096)
        cls.server = NexServer(cls.root, {"files": {"upload": "yes", "max_upload_size": "1K",
                                                     "zip_download": "yes",
                                                     "max_zip_size": "2K"},
                                          "server": {"allowed_hosts": "127.0.0.1, localhost"}})
        cls.server.start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def get(self, target: str, *fields: str, host: str = "127.0.0.1") -> Tuple[int, dict, bytes]:
        extra = "".join(f"{field}\r\n" for field in fields)
        return exchange(self.server, f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}"
                                     "Connection: close\r\n\r\n")

    def test_curl_gets_one_line(self) -> None:
        status, headers, body = self.get("/missing.txt", "Accept: */*")
        self.assertEqual(status, 404)
        self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")
        self.assertEqual(body, b"404 Not Found: The requested path /missing.txt was not found.\n")

    def test_json_when_asked(self) -> None:
        for target, fields in (("/missing.txt", ("Accept: application/json",)),
                               ("/missing.txt?format=json", ())):
            with self.subTest(target=target):
                status, headers, body = self.get(target, *fields)
                self.assertEqual((status, headers["content-type"]), (404, "application/json"))
                self.assertEqual(json.loads(body)["detail"],
                                 "The requested path /missing.txt was not found.")

    def test_browser_gets_the_page_with_the_host_it_used(self) -> None:
        status, headers, body = self.get("/missing.txt", f"Accept: {BROWSER}")
        self.assertEqual((status, headers["content-type"]), (404, "text/html; charset=utf-8"))
        self.assertIn(f"{SERVER_SOFTWARE} Server at 127.0.0.1 Port {self.server.port}".encode(),
                      body)

    def test_remembered_replies_keep_each_form_and_host_apart(self) -> None:
        port = self.server.port
        for _ in range(2):  # the second round from what the server remembers
            for fields, host, content_type, shown in (
                    (("Accept: */*",), "127.0.0.1", "text/plain; charset=utf-8", None),
                    (("Accept: application/json",), "127.0.0.1", "application/json", None),
                    ((f"Accept: {BROWSER}",), "127.0.0.1", "text/html; charset=utf-8",
                     f"Server at 127.0.0.1 Port {port}"),
                    ((f"Accept: {BROWSER}",), f"localhost:{port}",
                     "text/html; charset=utf-8", f"Server at localhost Port {port}")):
                with self.subTest(fields=fields, host=host):
                    status, headers, body = self.get("/gone.txt", *fields, host=host)
                    self.assertEqual((status, headers["content-type"]), (404, content_type))
                    self.assertIn(b"/gone.txt", body)
                    if shown is not None:
                        self.assertIn(shown.encode(), body)

    def test_listing_footer_names_the_host_used(self) -> None:
        status, _, body = self.get("/", host=f"localhost:{self.server.port}")
        self.assertEqual(status, 200)
        self.assertIn(f"Server at localhost Port {self.server.port}".encode(), body)

    def test_overwrite_refusal_names_the_setting(self) -> None:
        status, _, body = exchange(self.server, "PUT /kept.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                "Content-Length: 3\r\nConnection: close\r\n\r\n",
                                   b"new")
        self.assertEqual((status, body), (409, b"409 Conflict: /kept.txt exists; uploads do not"
                                               b" replace files here (upload_overwrite = no).\n"))

    def test_upload_too_large_names_the_limit(self) -> None:
        status, _, body = exchange(self.server, "PUT /new.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                "Content-Length: 2048\r\nConnection: close\r\n\r\n")
        self.assertEqual((status, body), (413, b"413 Content Too Large: The request body is"
                                               b" larger than this server accepts"
                                               b" (max_upload_size = 1K).\n"))

    def test_zip_too_large_names_the_limit(self) -> None:
        status, _, body = self.get("/big/?download=zip")
        self.assertEqual(status, 413)
        self.assertIn(b"(max_zip_size = 2K)", body)



class RobotsTest(unittest.TestCase):
    """``wget -r`` and crawlers: a default robots.txt keeps them off ``?`` URLs, a site's own
    wins, and the listing's sort and zip links say ``rel="nofollow"``."""

    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="nex-robots-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)

    def test_default_robots_txt_disallows_queries(self) -> None:
        with NexServer(self.root) as server:
            status, headers, body = exchange(server, "GET /robots.txt HTTP/1.1\r\n"
                                                     "Host: 127.0.0.1\r\nConnection: close"
                                                     "\r\n\r\n")
        self.assertEqual((status, body), (200, ROBOTS_TXT))
        self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")
        self.assertEqual(ROBOTS_TXT, b"User-agent: *\nDisallow: /*?\n")

    def test_the_sites_own_robots_txt_wins(self) -> None:
        with open(os.path.join(self.root, "robots.txt"), "wb") as out:
            out.write(b"User-agent: *\nDisallow: /\n")
        with NexServer(self.root) as server:
            status, _, body = exchange(server, "GET /robots.txt HTTP/1.1\r\nHost: 127.0.0.1"
                                               "\r\nConnection: close\r\n\r\n")
        self.assertEqual((status, body), (200, b"User-agent: *\nDisallow: /\n"))

    def test_only_the_top_robots_txt_has_a_default(self) -> None:
        os.mkdir(os.path.join(self.root, "sub"))
        with NexServer(self.root) as server:
            status, _, _ = exchange(server, "GET /sub/robots.txt HTTP/1.1\r\nHost: 127.0.0.1"
                                            "\r\nConnection: close\r\n\r\n")
        self.assertEqual(status, 404)

    def test_sort_and_zip_links_are_nofollow(self) -> None:
        with open(os.path.join(self.root, "a.txt"), "wb") as out:
            out.write(b"a")
        with NexServer(self.root, {"files": {"zip_download": "yes"}}) as server:
            status, _, page = exchange(server, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                               "Connection: close\r\n\r\n")
        self.assertEqual(status, 200)
        links = re.findall(rb'<a [^>]*href="\?[^"]*"[^>]*>', page)
        self.assertEqual(len(links), 4, links)  # three sort columns and the zip
        for link in links:
            self.assertIn(b'rel="nofollow"', link)


if __name__ == "__main__":
    unittest.main()
