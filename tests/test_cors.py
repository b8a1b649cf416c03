"""CORS: origins checked at start-up, the policy's answers table by table, and the fields on
the wire for files, errors and preflights; with CORS and downloads off, heads as before."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from typing import Dict, List, Optional, Sequence, Tuple

from nex.process.config import load_config
from nex.http.origin import normalise_origin
from nex.site.cors import EXPOSED_HEADERS, PREFLIGHT_MAX_AGE, CorsPolicy
from nex.site.routing import SERVED_METHODS, Dispatcher
from nex.http.errors import HTTPError
from nex.site.hosts import HostValidator
from nex.http.request import Headers, Request
from nex.files.templates import TemplateSet
from tests.support import REPO, NexServer, exchange
from tests.support import temp_root

APP = "https://app.example"
LOCAL = "http://localhost:3000"
ALLOW_METHODS = ", ".join(SERVED_METHODS)
ACAO = "Access-Control-Allow-Origin"
ACEH = "Access-Control-Expose-Headers"


def make_request(method: str = "GET", target: str = "/f.txt",
                 headers: Sequence[Tuple[str, str]] = ()) -> Request:
    path, _, query = target.partition("?")
    return Request(method, target, "" if target == "*" else path, query, "HTTP/1.1",
                   Headers([("Host", "localhost"), *headers]), "localhost", True)


class NormaliseOriginTest(unittest.TestCase):
    VALID = {
        "https://app.example": "https://app.example",
        "HTTPS://APP.Example": "https://app.example",
        "https://app.example:443": "https://app.example",
        "http://app.example:80": "http://app.example",
        "http://app.example:443": "http://app.example:443",
        "https://app.example:8443": "https://app.example:8443",
        "http://localhost:3000": "http://localhost:3000",
        "http://127.0.0.1:8000": "http://127.0.0.1:8000",
        "http://[::1]:8080": "http://[::1]:8080",
        "http://[0:0:0:0:0:0:0:1]": "http://[::1]",
        "http://[2001:DB8::1]": "http://[2001:db8::1]",
        "app-x+y://local.test": "app-x+y://local.test",
        "https://xn--bcher-kva.example": "https://xn--bcher-kva.example",
    }
    INVALID = ["", "*", "null", "app.example", "//app.example", "https://", "https:///",
               "https://app.example/", "https://app.example/x", "https://app.example?q",
               "https://app.example#f", "https://user@app.example", "https://app.example:",
               "https://app.example:0", "https://app.example:65536", "https://app.example:+80",
               "https://app_x.example", "https://-a.example", "https://a..example",
               "https://bücher.example", "https://1.2.3.999", "https://01.2.3.4",
               "http://[::1", "http://[::g]", "http://[1::2::3]", "1https://a.example",
               "https ://a.example", "https://a.example ", "https://a.example\n",
               "https://a.example, https://b.example"]

    def test_valid(self) -> None:
        for text, expected in self.VALID.items():
            with self.subTest(text=text):
                self.assertEqual(normalise_origin(text), expected)
                self.assertEqual(normalise_origin(expected), expected)

    def test_invalid(self) -> None:
        for text in self.INVALID:
            with self.subTest(text=text):
                with self.assertRaises(ValueError) as caught:
                    normalise_origin(text)
                self.assertIn(repr(text), str(caught.exception))

    def test_policy_needs_origins(self) -> None:
        for origins in ((), ("*", APP), ("https://app.example/",)):
            with self.subTest(origins=origins):
                with self.assertRaises(ValueError):
                    CorsPolicy(origins, SERVED_METHODS)


class PolicyTest(unittest.TestCase):
    """Each policy's answer to each kind of request, table by table."""

    ANY = CorsPolicy(("*",), SERVED_METHODS)
    LISTED = CorsPolicy((APP, LOCAL), SERVED_METHODS)

    def test_allowed_origin(self) -> None:
        cases = [
            (self.ANY, None, "*"), (self.ANY, APP, "*"), (self.ANY, "null", "*"),
            (self.LISTED, APP, APP), (self.LISTED, LOCAL, LOCAL),
            (self.LISTED, None, None), (self.LISTED, "null", None),
            (self.LISTED, "https://APP.example", None),  # browsers send the lower-case form
            (self.LISTED, "https://app.example:443", None),
            (self.LISTED, "http://app.example", None),
            (self.LISTED, "https://evil.example", None),
            (self.LISTED, "https://app.example.evil.example", None),
            (self.LISTED, f"{APP}, {LOCAL}", None),  # two Origin fields joined
        ]
        for policy, origin, expected in cases:
            with self.subTest(any=policy.any_origin, origin=origin):
                self.assertEqual(policy.allowed_origin(origin), expected)

    def test_add_headers(self) -> None:
        text = [("Content-Type", "text/plain")]
        exposed = [(ACAO, APP), (ACEH, EXPOSED_HEADERS)]
        cases = [
            (self.ANY, [], text, text + [(ACAO, "*"), (ACEH, EXPOSED_HEADERS)]),
            (self.ANY, [("Origin", APP)], text, text + [(ACAO, "*"), (ACEH, EXPOSED_HEADERS)]),
            (self.LISTED, [("Origin", APP)], text, text + exposed + [("Vary", "Origin")]),
            (self.LISTED, [], text, text + [("Vary", "Origin")]),
            (self.LISTED, [("Origin", "https://evil.example")], text,
             text + [("Vary", "Origin")]),
            # A Vary already there is extended, not repeated.
            (self.LISTED, [("Origin", APP)], [("Vary", "Accept-Encoding")],
             [("Vary", "Accept-Encoding, Origin")] + exposed),
            (self.LISTED, [], [("Vary", "Accept, origin")], [("Vary", "Accept, origin")]),
            (self.LISTED, [], [("Vary", "*")], [("Vary", "*")]),
            (self.ANY, [], [("Vary", "Accept")],
             [("Vary", "Accept"), (ACAO, "*"), (ACEH, EXPOSED_HEADERS)]),
        ]
        for policy, request_headers, headers, expected in cases:
            with self.subTest(any=policy.any_origin, request=request_headers, headers=headers):
                self.assertEqual(policy.add_headers(make_request(headers=request_headers),
                                                    headers), expected)

    def test_preflight(self) -> None:
        asks_get = [("Origin", APP), ("Access-Control-Request-Method", "GET")]
        common = [("Access-Control-Allow-Methods", ALLOW_METHODS)]
        max_age = [("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE))]
        listed = [(ACAO, APP), ("Vary", "Origin")]
        cases = [
            (self.LISTED, "OPTIONS", "/f.txt", asks_get, listed + common + max_age),
            (self.ANY, "OPTIONS", "/f.txt", asks_get, [(ACAO, "*")] + common + max_age),
            (self.LISTED, "OPTIONS", "/missing/", asks_get, listed + common + max_age),
            (self.LISTED, "OPTIONS", "/f.txt",
             asks_get + [("Access-Control-Request-Headers", "Range, If-None-Match,range")],
             listed + common + [("Access-Control-Allow-Headers", "range, if-none-match")]
             + max_age),
            (self.LISTED, "OPTIONS", "/f.txt",
             asks_get + [("Access-Control-Request-Headers", "")], listed + common + max_age),
            # Announcing a method Nex does not serve: the browser reads the list and refuses.
            (self.LISTED, "OPTIONS", "/f.txt",
             [("Origin", APP), ("Access-Control-Request-Method", "PUT")],
             listed + common + max_age),
            # Not preflights: an ordinary OPTIONS or a refused one.
            (self.LISTED, "OPTIONS", "/f.txt", [("Origin", APP)], None),
            (self.LISTED, "OPTIONS", "/f.txt", [("Access-Control-Request-Method", "GET")], None),
            (self.ANY, "OPTIONS", "/f.txt", [("Access-Control-Request-Method", "GET")], None),
            (self.LISTED, "OPTIONS", "*", asks_get, None),
            (self.LISTED, "GET", "/f.txt", asks_get, None),
            (self.LISTED, "OPTIONS", "/f.txt",
             [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "GET")],
             None),
            (self.LISTED, "OPTIONS", "/f.txt",
             [("Origin", APP), ("Access-Control-Request-Method", "G E T")], None),
            (self.LISTED, "OPTIONS", "/f.txt",
             [("Origin", APP), ("Access-Control-Request-Method", "")], None),
            (self.LISTED, "OPTIONS", "/f.txt",
             asks_get + [("Access-Control-Request-Headers", "x-a, <script>")], None),
            (self.LISTED, "OPTIONS", "/f.txt",
             asks_get + [("Access-Control-Request-Headers", "x-a x-b")], None),
        ]
        for policy, method, target, headers, expected in cases:
            with self.subTest(any=policy.any_origin, method=method, target=target,
                              headers=headers):
                self.assertEqual(policy.preflight(make_request(method, target, headers)),
                                 expected)

    def test_never_allows_credentials(self) -> None:
        for policy in (self.ANY, self.LISTED):
            request = make_request("OPTIONS", headers=[
                ("Origin", APP), ("Access-Control-Request-Method", "GET"),
                ("Cookie", "a=b"), ("Authorization", "Basic eDp5")])
            fields = policy.preflight(request) + policy.add_headers(request, [])
            self.assertNotIn("access-control-allow-credentials",
                             [name.lower() for name, _ in fields])


class DispatchedCorsTest(unittest.TestCase):
    """The dispatcher applies the policy to every answer, refusals included."""

    def setUp(self) -> None:
        self.root = temp_root(self, {"f.txt": b"text\n"})
        config = load_config(None, {"document_root": self.root,
                                    "error_pages": os.path.join(REPO, "error_pages"),
                                    "templates": os.path.join(REPO, "other_templates")})
        templates = TemplateSet.load(config.error_pages, config.templates)
        self.site = Dispatcher(config, templates, HostValidator(["localhost"]), "sig",
                               cors=CorsPolicy((APP,), SERVED_METHODS))
        self.plain = Dispatcher(config, templates, HostValidator(["localhost"]), "sig")

    def answer(self, site: Dispatcher, method: str, target: str,
               headers: Sequence[Tuple[str, str]] = ()) -> Tuple[int, Dict[str, str]]:
        request = make_request(method, target, headers)
        try:
            response = site.respond(request, None, "127.0.0.1")
        except HTTPError as error:
            return error.status, dict(error.headers)
        response.release()
        return response.status, dict(response.headers)

    def test_every_answer_carries_the_fields(self) -> None:
        origin = [("Origin", APP)]
        for method, target, status in [("GET", "/f.txt", 200), ("HEAD", "/f.txt", 200),
                                       ("GET", "/missing", 404), ("GET", "/.hidden", 404),
                                       ("DELETE", "/f.txt", 403), ("BREW", "/f.txt", 501),
                                       ("OPTIONS", "/f.txt", 204), ("GET", "/", 200),
                                       ("GET", "/?download=zip", 404)]:
            with self.subTest(method=method, target=target):
                got, fields = self.answer(self.site, method, target, origin)
                self.assertEqual(got, status)
                self.assertEqual((fields[ACAO], fields[ACEH]), (APP, EXPOSED_HEADERS))
                self.assertIn("Origin", fields["Vary"])
                plain_status, plain = self.answer(self.plain, method, target, origin)
                self.assertEqual(plain_status, status)
                self.assertFalse(any(name.startswith("Access-Control") for name in plain))

    def test_preflight_for_any_path_and_the_host_rule_first(self) -> None:
        preflight = [("Origin", APP), ("Access-Control-Request-Method", "GET")]
        self.assertEqual(self.answer(self.site, "OPTIONS", "/missing", preflight)[0], 204)
        self.assertEqual(self.answer(self.plain, "OPTIONS", "/missing", preflight)[0], 404)
        request = Request("OPTIONS", "/f.txt", "/f.txt", "", "HTTP/1.1",
                          Headers([("Host", "evil.example"), *preflight]), "evil.example",
                          True)
        with self.assertRaises(HTTPError) as caught:
            self.site.respond(request, None, "127.0.0.1")
        self.assertEqual(caught.exception.status, 403)


def head_of(server: NexServer, request: str) -> Tuple[str, List[Tuple[str, str]]]:
    """The status line and fields of the answer to ``request`` (sent with Connection: close)."""
    with server.connect() as sock:
        data = exchange(sock, request.encode("latin-1"))
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = [tuple(part.strip() for part in line.split(":", 1)) for line in head[1:]]
    return head[0], fields  # type: ignore[return-value]


def field(fields: List[Tuple[str, str]], name: str) -> Optional[str]:
    values = [value for key, value in fields if key.lower() == name.lower()]
    return ", ".join(values) if values else None


def comparable(fields: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """``fields`` without what differs between two servers: the date, and the length of a
    page whose footer names the server's port."""
    html = field(fields, "Content-Type") == "text/html; charset=utf-8"
    return [(key, value) for key, value in fields
            if key != "Date" and not (html and key == "Content-Length")]


def get(path: str, *extra: str, method: str = "GET", version: str = "HTTP/1.1") -> str:
    lines = [f"{method} {path} {version}", "Host: localhost", *extra, "Connection: close"]
    return "\r\n".join(lines) + "\r\n\r\n"


class SiteTestCase(unittest.TestCase):
    def make_root(self) -> str:
        root = tempfile.mkdtemp(prefix="nex-cors-site-")
        self.addCleanup(shutil.rmtree, root)
        with open(os.path.join(root, "data.txt"), "wb") as file:
            file.write(b"0123456789" * 100)
        os.mkdir(os.path.join(root, "folder"))
        return root

    def start(self, settings=None, flags: Sequence[str] = (),
              root: Optional[str] = None) -> NexServer:
        server = NexServer(root or self.make_root(), settings)
        server.args.extend(flags)
        server.start()
        self.addCleanup(server.stop)
        return server


class ListedOriginsOnTheWireTest(SiteTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.root = tempfile.mkdtemp(prefix="nex-cors-listed-")
        with open(os.path.join(cls.root, "data.txt"), "wb") as file:
            file.write(b"0123456789" * 100)
        cls.server = NexServer(cls.root, {"cors": {"allow_origins": f"{APP}, {LOCAL}"}}).start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def test_simple_get_from_an_allowed_origin(self) -> None:
        status, fields = head_of(self.server, get("/data.txt", f"Origin: {LOCAL}"))
        self.assertEqual(status, "HTTP/1.1 200 OK")
        self.assertEqual(field(fields, ACAO), LOCAL)
        self.assertEqual(field(fields, ACEH), EXPOSED_HEADERS)
        self.assertEqual(field(fields, "Vary"), "Accept-Encoding, Origin")
        self.assertIsNone(field(fields, "Access-Control-Allow-Credentials"))

    def test_ranged_read_from_an_allowed_origin(self) -> None:
        status, fields = head_of(self.server, get("/data.txt", f"Origin: {APP}",
                                                  "Range: bytes=10-19"))
        self.assertEqual(status, "HTTP/1.1 206 Partial Content")
        self.assertEqual(field(fields, ACAO), APP)
        self.assertEqual(field(fields, "Content-Range"), "bytes 10-19/1000")

    def test_other_origins_and_no_origin_get_only_vary(self) -> None:
        for extra in (("Origin: https://evil.example",), ("Origin: null",), ()):
            with self.subTest(extra=extra):
                status, fields = head_of(self.server, get("/data.txt", *extra))
                self.assertEqual(status, "HTTP/1.1 200 OK")
                self.assertIsNone(field(fields, ACAO))
                self.assertIsNone(field(fields, ACEH))
                self.assertEqual(field(fields, "Vary"), "Accept-Encoding, Origin")

    def test_a_404_is_readable(self) -> None:
        status, fields = head_of(self.server, get("/nothing-here", f"Origin: {APP}"))
        self.assertEqual(status, "HTTP/1.1 404 Not Found")
        self.assertEqual(field(fields, ACAO), APP)
        self.assertEqual(field(fields, "Vary"), "Origin, Accept")

    def test_preflight(self) -> None:
        status, fields = head_of(self.server, get(
            "/data.txt", f"Origin: {APP}", "Access-Control-Request-Method: GET",
            "Access-Control-Request-Headers: range, if-none-match", method="OPTIONS"))
        self.assertEqual(status, "HTTP/1.1 204 No Content")
        self.assertEqual(field(fields, ACAO), APP)
        self.assertEqual(field(fields, "Access-Control-Allow-Methods"), ALLOW_METHODS)
        self.assertEqual(field(fields, "Access-Control-Allow-Headers"), "range, if-none-match")
        self.assertEqual(field(fields, "Access-Control-Max-Age"), str(PREFLIGHT_MAX_AGE))
        self.assertEqual(field(fields, "Vary"), "Origin")
        self.assertIsNone(field(fields, "Content-Length"))

    def test_refused_preflight_is_an_ordinary_options(self) -> None:
        for extra in (("Origin: https://evil.example", "Access-Control-Request-Method: GET"),
                      (f"Origin: {APP}", "Access-Control-Request-Method: GET",
                       "Access-Control-Request-Headers: a b")):
            with self.subTest(extra=extra):
                status, fields = head_of(self.server, get("/data.txt", *extra,
                                                          method="OPTIONS"))
                self.assertEqual(status, "HTTP/1.1 204 No Content")
                self.assertEqual(field(fields, "Allow"), ALLOW_METHODS)
                self.assertIsNone(field(fields, "Access-Control-Allow-Methods"))


class AnyOriginOnTheWireTest(SiteTestCase):
    def test_star_for_everyone_with_the_flag(self) -> None:
        server = self.start(flags=["--cors"])
        for extra in ((f"Origin: {APP}",), ()):
            with self.subTest(extra=extra):
                status, fields = head_of(server, get("/data.txt", *extra))
                self.assertEqual(status, "HTTP/1.1 200 OK")
                self.assertEqual(field(fields, ACAO), "*")
                self.assertEqual(field(fields, "Vary"), "Accept-Encoding")
                self.assertIsNone(field(fields, "Access-Control-Allow-Credentials"))
        status, fields = head_of(server, get("/data.txt", "Origin: https://any.example",
                                             "Access-Control-Request-Method: GET",
                                             method="OPTIONS"))
        self.assertEqual((status, field(fields, ACAO)), ("HTTP/1.1 204 No Content", "*"))
        self.assertIsNone(field(fields, "Vary"))


class EverythingOffTest(SiteTestCase):
    """With CORS and folder downloads off, answers are what they were before either existed."""

    REQUESTS = [
        ("GET file", get("/data.txt", f"Origin: {APP}"),
         ["Date", "Server", "X-Content-Type-Options",
          "Content-Type", "Last-Modified", "ETag", "Accept-Ranges",
          "Cache-Control", "Vary", "Content-Length", "Connection"]),
        ("HEAD file", get("/data.txt", f"Origin: {APP}", method="HEAD"),
         ["Date", "Server", "X-Content-Type-Options",
          "Content-Type", "Last-Modified", "ETag", "Accept-Ranges",
          "Cache-Control", "Vary", "Content-Length", "Connection"]),
        ("range", get("/data.txt", "Origin: null", "Range: bytes=0-9"),
         ["Date", "Server", "X-Content-Type-Options",
          "Content-Range", "Content-Type", "Last-Modified", "ETag",
          "Accept-Ranges", "Cache-Control", "Vary", "Content-Length", "Connection"]),
        ("404", get("/missing", f"Origin: {APP}"),
         ["Date", "Server", "X-Content-Type-Options",
          "Content-Type", "Vary", "Content-Length", "Connection"]),
        ("301", get("/folder", f"Origin: {APP}"),
         ["Date", "Server", "X-Content-Type-Options",
          "Content-Type", "Vary", "Location", "Content-Length", "Connection"]),
        ("OPTIONS", get("/data.txt", f"Origin: {APP}", "Access-Control-Request-Method: GET",
                        method="OPTIONS"),
         ["Date", "Server", "X-Content-Type-Options", "Allow", "Connection"]),
        ("OPTIONS missing", get("/missing", f"Origin: {APP}",
                                "Access-Control-Request-Method: GET", method="OPTIONS"),
         ["Date", "Server", "X-Content-Type-Options",
          "Content-Type", "Vary", "Content-Length", "Connection"]),
        ("405", get("/data.txt", method="PUT"),
         ["Date", "Server", "X-Content-Type-Options",
          "Content-Type", "Vary", "Allow", "Content-Length", "Connection"]),
        ("HTTP/1.0", get("/data.txt", version="HTTP/1.0"),
         ["Date", "Server", "X-Content-Type-Options",
          "Content-Type", "Last-Modified", "ETag", "Accept-Ranges",
          "Cache-Control", "Vary", "Content-Length", "Connection"]),
    ]

    def test_heads_match_the_defaults(self) -> None:
        root = self.make_root()
        default = self.start(root=root)
        off = self.start({"cors": {"allow_origins": ""},
                          "files": {"zip_download": "no", "max_zip_size": "1G"}}, root=root)
        for name, request, expected_names in self.REQUESTS:
            with self.subTest(request=name):
                status, fields = head_of(default, request)
                off_status, off_fields = head_of(off, request)
                self.assertEqual([key for key, _ in fields], expected_names)
                self.assertEqual((off_status, comparable(off_fields)),
                                 (status, comparable(fields)))
                self.assertFalse(any(key.lower().startswith("access-control")
                                     for key, _ in fields))


if __name__ == "__main__":
    unittest.main()
