"""The parser: HeadScanner and parse_head against RFC 9112 and RFC 9110, table-driven."""

from __future__ import annotations

import unittest

from nex.process.config import Config
from nex.http.errors import HTTPError
from nex.http.framing import HeadLimits
from nex.http.request import HeadScanner, Headers, _parse_head, parse_head

LIMITS = HeadLimits(request_line=64, header_block=256, header_count=4)
HOST = b"Host: example.com\r\n"

# name, head, expected Request attributes
VALID = [
    ("origin-form", b"GET /a/b.txt HTTP/1.1\r\n" + HOST + b"\r\n",
     dict(method="GET", target="/a/b.txt", path="/a/b.txt", query="", version="HTTP/1.1",
          host="example.com", keep_alive=True, body_length=0, chunked=False)),
    ("query split at the first ?", b"GET /s?q=a?b&c=%20 HTTP/1.1\r\n" + HOST + b"\r\n",
     dict(path="/s", query="q=a?b&c=%20")),
    ("empty query", b"GET /s? HTTP/1.1\r\n" + HOST + b"\r\n", dict(path="/s", query="")),
    ("percent-encoding kept", b"GET /a%2Fb%00 HTTP/1.1\r\n" + HOST + b"\r\n",
     dict(path="/a%2Fb%00")),
    ("lower-case method is a different method", b"get / HTTP/1.1\r\n" + HOST + b"\r\n",
     dict(method="get")),
    ("extension method", b"M-SEARCH / HTTP/1.1\r\n" + HOST + b"\r\n", dict(method="M-SEARCH")),
    ("absolute-form sets host", b"GET http://Other.example:81/x?y HTTP/1.1\r\n" + HOST + b"\r\n",
     dict(target="http://Other.example:81/x?y", path="/x", query="y", host="Other.example:81")),
    ("absolute-form https, upper-case scheme", b"GET HTTPS://h/ HTTP/1.1\r\n" + HOST + b"\r\n",
     dict(path="/", host="h")),
    ("absolute-form without path", b"GET http://h HTTP/1.1\r\n" + HOST + b"\r\n",
     dict(path="/", query="", host="h")),
    ("absolute-form query without path", b"GET http://h?a/b HTTP/1.1\r\n" + HOST + b"\r\n",
     dict(path="/", query="a/b", host="h")),
    ("absolute-form IPv6", b"GET http://[::1]:8080/ HTTP/1.1\r\n" + HOST + b"\r\n",
     dict(host="[::1]:8080")),
    ("asterisk-form", b"OPTIONS * HTTP/1.1\r\n" + HOST + b"\r\n",
     dict(method="OPTIONS", target="*", path="", query="")),
    ("authority-form", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
     dict(method="CONNECT", target="example.com:443", path="", host="example.com:443")),
    ("HTTP/1.0 without Host", b"GET / HTTP/1.0\r\n\r\n",
     dict(version="HTTP/1.0", host="", keep_alive=False)),
    ("HTTP/1.0 keep-alive", b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
     dict(keep_alive=True)),
    ("HTTP/1.0 keep-alive and close", b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
     dict(keep_alive=False)),
    ("HTTP/1.1 close", b"GET / HTTP/1.1\r\n" + HOST + b"Connection: upgrade,  CLOSE\r\n\r\n",
     dict(keep_alive=False)),
    ("HTTP/1.1 close in a second field",
     b"GET / HTTP/1.1\r\n" + HOST + b"Connection: te\r\nConnection: close\r\n\r\n",
     dict(keep_alive=False)),
    ("HTTP/1.1 empty Connection list elements", b"GET / HTTP/1.1\r\n" + HOST
     + b"Connection: , ,keep-alive,\r\n\r\n", dict(keep_alive=True)),
    ("Host with port", b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
     dict(host="127.0.0.1:8080")),
    ("Host with empty port", b"GET / HTTP/1.1\r\nHost: a.b:\r\n\r\n", dict(host="a.b:")),
    ("Host IPv6 literal", b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n",
     dict(host="[2001:db8::1]:80")),
    ("Host empty (allowed by RFC 9112 3.2)", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", dict(host="")),
    ("Host is case-insensitive", b"GET / HTTP/1.1\r\nhOST: x\r\n\r\n", dict(host="x")),
    ("Host percent-encoded reg-name", b"GET / HTTP/1.1\r\nHost: a%41b\r\n\r\n",
     dict(host="a%41b")),
    ("HTTP/1.0 with Host", b"GET / HTTP/1.0\r\n" + HOST + b"\r\n",
     dict(version="HTTP/1.0", host="example.com")),
    # RFC 9112 §2.3, RFC 9110 §6.2: a later HTTP/1.x is handled as HTTP/1.1.
    ("HTTP/1.2 is handled as HTTP/1.1", b"GET / HTTP/1.2\r\n" + HOST + b"\r\n",
     dict(version="HTTP/1.1", keep_alive=True, host="example.com")),
    ("HTTP/1.9 is handled as HTTP/1.1", b"GET / HTTP/1.9\r\n" + HOST + b"\r\n",
     dict(version="HTTP/1.1", keep_alive=True)),
    ("HTTP/1.2 with close", b"GET / HTTP/1.2\r\n" + HOST + b"Connection: close\r\n\r\n",
     dict(version="HTTP/1.1", keep_alive=False)),
    ("HTTP/1.2 keeps the target as sent", b"GET /a?b HTTP/1.2\r\n" + HOST + b"\r\n",
     dict(target="/a?b", path="/a", query="b")),
    ("HTTP/1.2 may send a chunked body", b"POST / HTTP/1.2\r\n" + HOST
     + b"Transfer-Encoding: chunked\r\n\r\n", dict(chunked=True)),
    ("Content-Length", b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 12\r\n\r\n",
     dict(body_length=12, chunked=False)),
    ("Content-Length zero", b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 0\r\n\r\n",
     dict(body_length=0)),
    ("Content-Length leading zeros", b"POST / HTTP/1.1\r\n" + HOST
     + b"Content-Length: 007\r\n\r\n", dict(body_length=7)),
    ("Content-Length identical list", b"POST / HTTP/1.1\r\n" + HOST
     + b"Content-Length: 5 ,5\r\n\r\n", dict(body_length=5)),
    ("Content-Length identical repeats", b"POST / HTTP/1.1\r\n" + HOST
     + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n", dict(body_length=5)),
    ("Content-Length 18 digits", b"POST / HTTP/1.1\r\n" + HOST
     + b"Content-Length: 999999999999999999\r\n\r\n", dict(body_length=999999999999999999)),
    ("chunked", b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n",
     dict(body_length=0, chunked=True)),
    ("chunked case-insensitive with OWS", b"POST / HTTP/1.1\r\n" + HOST
     + b"Transfer-Encoding: \t ChUnKeD \t\r\n\r\n", dict(chunked=True)),
    ("chunked with empty list elements", b"POST / HTTP/1.1\r\n" + HOST
     + b"Transfer-Encoding: ,chunked,\r\n\r\n", dict(chunked=True)),
    ("OWS around values is dropped", b"GET / HTTP/1.1\r\nHost:\t example.com \t\r\n\r\n",
     dict(host="example.com")),
    ("obs-text and inner whitespace in a value", b"GET / HTTP/1.1\r\n" + HOST
     + b"X-Name: caf\xe9  au\tlait\r\n\r\n", dict(method="GET")),
]

# name, head, status; every one of them must also ask the connection to close
MALFORMED = [
    # request line
    ("empty request line", b"\r\n\r\n", 400),
    ("HTTP/0.9 request", b"GET /\r\n\r\n", 400),
    ("double space", b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("trailing space", b"GET / HTTP/1.1 \r\n" + HOST + b"\r\n", 400),
    ("leading space", b" GET / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("tab as separator", b"GET\t/ HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("method with a slash", b"GE/T / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("method with a colon", b"GET: / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("method with NUL", b"G\x00T / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("method with obs-text", b"G\xc9T / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("method with a bracket", b"[GET] / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("version HTTP/1", b"GET / HTTP/1\r\n" + HOST + b"\r\n", 400),
    ("version lower case", b"GET / http/1.1\r\n" + HOST + b"\r\n", 400),
    ("version HTTP/1.1.1", b"GET / HTTP/1.1.1\r\n" + HOST + b"\r\n", 400),
    ("version HTTP/11", b"GET / HTTP/11\r\n" + HOST + b"\r\n", 400),
    ("version with non-ASCII digit", "GET / HTTP/1.\u0661\r\n".encode("utf-8") + HOST + b"\r\n",
     400),
    ("version HTTP/2.0", b"GET / HTTP/2.0\r\n" + HOST + b"\r\n", 505),
    ("version HTTP/0.9", b"GET / HTTP/0.9\r\n\r\n", 505),
    ("version HTTP/2.1", b"GET / HTTP/2.1\r\n" + HOST + b"\r\n", 505),
    ("version HTTP/3.0", b"GET / HTTP/3.0\r\n" + HOST + b"\r\n", 505),
    ("version HTTP/9.9", b"GET / HTTP/9.9\r\n" + HOST + b"\r\n", 505),
    ("version HTTP/0.0", b"GET / HTTP/0.0\r\n" + HOST + b"\r\n", 505),
    ("HTTP/1.2 without Host", b"GET / HTTP/1.2\r\n\r\n", 400),
    ("Transfer-Encoding in HTTP/1.2 still needs chunked last", b"POST / HTTP/1.2\r\n" + HOST
     + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    # request-target
    ("target with NUL", b"GET /a\x00b HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("target with DEL", b"GET /a\x7fb HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("target with obs-text", b"GET /caf\xe9 HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("target with fragment", b"GET /a#b HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("relative target", b"GET a/b HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("asterisk for GET", b"GET * HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("authority-form for GET", b"GET example.com:80 HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("origin-form for CONNECT", b"CONNECT / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("CONNECT without port", b"CONNECT example.com HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("CONNECT without host", b"CONNECT :443 HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("absolute-form other scheme", b"GET ftp://h/ HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("absolute-form empty host", b"GET http:///x HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("absolute-form userinfo", b"GET http://u:p@h/ HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    ("absolute-form bad port", b"GET http://h:8x/ HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    # line endings
    ("bare LF ending the head", b"GET / HTTP/1.1\r\n" + HOST + b"\n", 400),
    ("bare LF after the request line", b"GET / HTTP/1.1\n" + HOST + b"\r\n", 400),
    ("bare LF inside a value", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\nb\r\n\r\n", 400),
    ("bare CR inside a value", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\rb\r\n\r\n", 400),
    ("bare CR ending a line", b"GET / HTTP/1.1\r" + HOST + b"\r\n", 400),
    ("head without blank line", b"GET / HTTP/1.1\r\n" + HOST, 400),
    # field lines
    ("NUL in a value", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\x00b\r\n\r\n", 400),
    ("vertical tab in a value", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\x0bb\r\n\r\n", 400),
    ("DEL in a value", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\x7f\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\r\n b\r\n\r\n", 400),
    ("obs-fold with tab", b"GET / HTTP/1.1\r\n" + HOST + b"X: a\r\n\tb\r\n\r\n", 400),
    ("whitespace before the first field", b"GET / HTTP/1.1\r\n " + HOST + b"\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : example.com\r\n\r\n", 400),
    ("tab before colon", b"GET / HTTP/1.1\r\n" + HOST + b"X\t: 1\r\n\r\n", 400),
    ("line without colon", b"GET / HTTP/1.1\r\n" + HOST + b"garbage\r\n\r\n", 400),
    ("empty field name", b"GET / HTTP/1.1\r\n" + HOST + b": value\r\n\r\n", 400),
    ("field name with obs-text", b"GET / HTTP/1.1\r\n" + HOST + b"X\xe9: 1\r\n\r\n", 400),
    ("field name with a slash", b"GET / HTTP/1.1\r\n" + HOST + b"X/Y: 1\r\n\r\n", 400),
    # Host
    ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("absolute-form without Host", b"GET http://h/ HTTP/1.1\r\n\r\n", 400),
    ("two Host fields", b"GET / HTTP/1.1\r\n" + HOST + HOST + b"\r\n", 400),
    ("two Host fields in HTTP/1.0", b"GET / HTTP/1.0\r\n" + HOST + HOST + b"\r\n", 400),
    ("Host list", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400),
    ("Host with userinfo", b"GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", 400),
    ("Host with path", b"GET / HTTP/1.1\r\nHost: h/x\r\n\r\n", 400),
    ("Host with space", b"GET / HTTP/1.1\r\nHost: h x\r\n\r\n", 400),
    ("Host port not digits", b"GET / HTTP/1.1\r\nHost: h:8o\r\n\r\n", 400),
    ("Host two ports", b"GET / HTTP/1.1\r\nHost: h:1:2\r\n\r\n", 400),
    ("Host bad IPv6", b"GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", 400),
    ("Host unbracketed IPv6", b"GET / HTTP/1.1\r\nHost: ::1\r\n\r\n", 400),
    ("Host bad percent-encoding", b"GET / HTTP/1.1\r\nHost: a%4\r\n\r\n", 400),
    # framing
    ("Content-Length and Transfer-Encoding", b"POST / HTTP/1.1\r\n" + HOST
     + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("Transfer-Encoding and Content-Length", b"POST / HTTP/1.1\r\n" + HOST
     + b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", 400),
    ("chunked, identity", b"POST / HTTP/1.1\r\n" + HOST
     + b"Transfer-Encoding: chunked, identity\r\n\r\n", 400),
    ("chunked then gzip fields", b"POST / HTTP/1.1\r\n" + HOST
     + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ("chunked twice", b"POST / HTTP/1.1\r\n" + HOST
     + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    ("empty Transfer-Encoding", b"POST / HTTP/1.1\r\n" + HOST
     + b"Transfer-Encoding: \r\n\r\n", 400),
    ("Transfer-Encoding separated by space", b"POST / HTTP/1.1\r\n" + HOST
     + b"Transfer-Encoding: gzip chunked\r\n\r\n", 400),
    ("Transfer-Encoding with a bare parameter", b"POST / HTTP/1.1\r\n" + HOST
     + b"Transfer-Encoding: chunked;x\r\n\r\n", 400),
    ("space before the Transfer-Encoding name", b"POST / HTTP/1.1\r\n" + HOST
     + b" Transfer-Encoding: chunked\r\n\r\n", 400),
    ("space before the Transfer-Encoding colon", b"POST / HTTP/1.1\r\n" + HOST
     + b"Transfer-Encoding : chunked\r\n\r\n", 400),
    ("vertical tab in Transfer-Encoding", b"POST / HTTP/1.1\r\n" + HOST
     + b"Transfer-Encoding: \x0bchunked\r\n\r\n", 400),
    ("Transfer-Encoding in HTTP/1.0", b"POST / HTTP/1.0\r\n"
     + b"Transfer-Encoding: chunked\r\n\r\n", 400),
    # RFC 9112 §6.3: without chunked as the final coding the body cannot be framed: 400.
    ("gzip", b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    ("identity", b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: identity\r\n\r\n", 400),
    ("unknown coding", b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: x-foo\r\n\r\n", 400),
    ("xchunked", b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: xchunked\r\n\r\n", 400),
    ("deflate, chunked", b"POST / HTTP/1.1\r\n" + HOST
     + b"Transfer-Encoding: deflate, chunked\r\n\r\n", 501),
    ("gzip, chunked", b"POST / HTTP/1.1\r\n" + HOST
     + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ("chunked with a parameter", b"POST / HTTP/1.1\r\n" + HOST
     + b"Transfer-Encoding: chunked;q=\"1\"\r\n\r\n", 501),
    ("Content-Length: 1, 2", b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 1, 2\r\n\r\n",
     400),
    ("differing Content-Length fields", b"POST / HTTP/1.1\r\n" + HOST
     + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    ("negative Content-Length", b"POST / HTTP/1.1\r\n" + HOST
     + b"Content-Length: -1\r\n\r\n", 400),
    ("empty Content-Length", b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length:\r\n\r\n", 400),
    ("Content-Length +5", b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: +5\r\n\r\n", 400),
    ("Content-Length 0x10", b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 0x10\r\n\r\n",
     400),
    ("Content-Length with underscore", b"POST / HTTP/1.1\r\n" + HOST
     + b"Content-Length: 1_0\r\n\r\n", 400),
    ("Content-Length with inner space", b"POST / HTTP/1.1\r\n" + HOST
     + b"Content-Length: 1 0\r\n\r\n", 400),
    ("Content-Length trailing comma", b"POST / HTTP/1.1\r\n" + HOST
     + b"Content-Length: 5,\r\n\r\n", 400),
    ("Content-Length non-ASCII digits", b"POST / HTTP/1.1\r\n" + HOST
     + "Content-Length: \u0665\r\n\r\n".encode("utf-8"), 400),
    ("Content-Length 19 digits", b"POST / HTTP/1.1\r\n" + HOST
     + b"Content-Length: 1000000000000000000\r\n\r\n", 400),
    ("malformed Connection", b"GET / HTTP/1.1\r\n" + HOST + b"Connection: a b\r\n\r\n", 400),
    # limits
    ("request line too long", b"GET /" + b"a" * 60 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414),
    ("head too large", b"GET / HTTP/1.1\r\n" + HOST + b"X: " + b"a" * 250 + b"\r\n\r\n", 431),
    ("too many fields", b"GET / HTTP/1.1\r\n" + HOST + b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
     431),
]


class ParseHeadTest(unittest.TestCase):
    """parse_head on whole heads, valid and malformed."""

    def test_valid_requests(self) -> None:
        for name, head, expected in VALID:
            with self.subTest(name):
                request = parse_head(head, LIMITS)
                for attribute, value in expected.items():
                    self.assertEqual(getattr(request, attribute), value, attribute)

    def test_malformed_requests(self) -> None:
        self.assertGreaterEqual(len(MALFORMED), 40)
        for name, head, status in MALFORMED:
            with self.subTest(name):
                with self.assertRaises(HTTPError) as caught:
                    parse_head(head, LIMITS)
                self.assertEqual(caught.exception.status, status)
                self.assertTrue(caught.exception.close)

    def test_a_bare_cr_or_lf_is_the_reason_whatever_else_is_wrong(self) -> None:
        for name, head in [
                ("in a malformed request line", b"GET /\r HTTP/1.1\r\n" + HOST + b"\r\n"),
                ("after a malformed method", b"G(T / HTTP/1.1\r\n" + HOST + b"X: \n\r\n\r\n"),
                ("in a bad field name", b"GET / HTTP/1.1\r\n" + HOST + b"X\r: 1\r\n\r\n"),
                ("before a bad field line", b"GET / HTTP/1.1\r\n" + HOST
                 + b"X: a\rb\r\nBad Name: 1\r\n\r\n"),
                ("in a folded line", b"GET / HTTP/1.1\r\n" + HOST + b"X: 1\r\n \n\r\n\r\n")]:
            with self.subTest(name), self.assertRaises(HTTPError) as caught:
                parse_head(head, LIMITS)
            self.assertEqual((caught.exception.status, caught.exception.detail),
                             (400, "bare CR or LF in request head"))

    def test_headers_keep_names_and_order(self) -> None:
        request = parse_head(b"GET / HTTP/1.1\r\nhost: h\r\nAccept:  */* \r\nX-A: 1\r\n"
                             b"x-a: 2\r\n\r\n", LIMITS)
        self.assertIsInstance(request.headers, Headers)
        self.assertEqual(request.headers.items(),
                         [("host", "h"), ("Accept", "*/*"), ("X-A", "1"), ("x-a", "2")])
        self.assertEqual(request.headers.get("X-a"), "1, 2")
        self.assertEqual(request.request_line, "GET / HTTP/1.1")

    def test_value_decoded_as_latin1(self) -> None:
        request = parse_head(b"GET / HTTP/1.1\r\nHost: h\r\nX: \xe9\xff\r\n\r\n", LIMITS)
        self.assertEqual(request.headers.get("x"), "\xe9\xff")

    def test_has_body(self) -> None:
        def has_body(fields: bytes) -> bool:
            return parse_head(b"POST / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n",
                              LIMITS).has_body
        self.assertFalse(has_body(b""))
        self.assertFalse(has_body(b"Content-Length: 0\r\n"))
        self.assertTrue(has_body(b"Content-Length: 1\r\n"))
        self.assertTrue(has_body(b"Transfer-Encoding: chunked\r\n"))

    def test_limits_are_inclusive(self) -> None:
        line = b"GET /" + b"a" * (64 - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
        self.assertEqual(len(line), 64)
        parse_head(line + b"\r\nHost: h\r\n\r\n", LIMITS)
        head = b"GET / HTTP/1.1\r\nHost: h\r\nX: "
        head += b"a" * (256 - len(head) - 4) + b"\r\n\r\n"
        self.assertEqual(len(head), 256)
        parse_head(head, LIMITS)
        parse_head(b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", LIMITS)

    def test_absolute_form_host_wins_over_host_field(self) -> None:
        # RFC 9112 §3.2.2: the target's authority is the request's host.
        request = parse_head(b"GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n",
                             LIMITS)
        self.assertEqual(request.host, "a.example")
        self.assertEqual(request.headers.get("Host"), "b.example")

    def test_request_smuggling_cl_te_refused(self) -> None:
        for fields in (b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                       b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                       b"Content-Length: 4\r\nTransfer-Encoding: gzip\r\n"):
            with self.subTest(fields), self.assertRaises(HTTPError) as caught:
                parse_head(b"POST / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n", LIMITS)
            self.assertEqual((caught.exception.status, caught.exception.close), (400, True))

    def test_request_smuggling_hidden_transfer_encoding_refused(self) -> None:
        # A field some parsers would read as Transfer-Encoding and others would not.
        for field in (b" Transfer-Encoding: chunked", b"Transfer-Encoding : chunked",
                      b"Transfer-Encoding:\x0bchunked", b"X: y\r\n Transfer-Encoding: chunked",
                      b"Transfer-Encoding: chunked, identity"):
            with self.subTest(field), self.assertRaises(HTTPError) as caught:
                parse_head(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n" + field
                           + b"\r\n\r\n", LIMITS)
            self.assertEqual(caught.exception.status, 400)

    def test_header_injection_through_bare_lf_refused(self) -> None:
        with self.assertRaises(HTTPError):
            parse_head(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\nContent-Length: 5\r\n\r\n", LIMITS)

    def test_bytearray_head(self) -> None:
        request = parse_head(bytearray(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"), LIMITS)
        self.assertEqual(request.host, "h")


# name, buffer, expected (start, end) or None for "need more bytes"
FIND = [
    ("empty buffer", b"", None),
    ("partial request line", b"GET / HT", None),
    ("request line ending in CR", b"GET / HTTP/1.1\r", None),
    ("no blank line yet", b"GET / HTTP/1.1\r\nHost: h\r\n", None),
    ("blank line half there", b"GET / HTTP/1.1\r\nHost: h\r\n\r", None),
    ("only empty lines", b"\r\n\r\n\r\n", None),
    ("only empty lines and a CR", b"\r\n\r", None),
    ("a lone CR", b"\r", None),
    ("whole head", b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", (0, 27)),
    ("head without fields", b"GET / HTTP/1.0\r\n\r\n", (0, 18)),
    ("leading empty lines", b"\r\n\r\nGET / HTTP/1.0\r\n\r\n", (4, 22)),
    ("pipelined heads", b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
     (0, 28)),
    ("head followed by a body", b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n\r\n\r\n",
     (0, 38)),
    ("bare-LF blank line", b"GET / HTTP/1.1\nHost: h\n\nrest", (0, 24)),
    ("bare-LF blank line after CRLF", b"GET / HTTP/1.1\r\nHost: h\r\n\nrest", (0, 26)),
    ("CRLF blank line after bare LF", b"GET / HTTP/1.1\nHost: h\n\r\nrest", (0, 25)),
    ("bare LF right after the request line", b"GET / HTTP/1.1\n\n", (0, 16)),
    ("LF CR and more is no blank line", b"GET / HTTP/1.1\n\rX: 1\r\n\r\n", (0, 24)),
    ("request line at the limit", b"GET /" + b"a" * 50 + b" HTTP/1.1\r\n\r\n", (0, 68)),
    ("unfinished request line at the limit", b"G" * 64, None),
    ("unfinished request line at the limit and CR", b"G" * 64 + b"\r", None),
    ("any tchar may start a method", b"~", None),
]

# name, buffer, status
FIND_ERRORS = [
    ("request line too long", b"GET /" + b"a" * 60 + b" HTTP/1.1\r\n\r\n", 414),
    ("unfinished request line too long", b"G" * 65, 414),
    ("unfinished request line too long and CR", b"G" * 65 + b"\r", 414),
    ("request line too long after empty lines", b"\r\n" * 3 + b"G" * 65, 414),
    ("head too large", b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 50, 431),
    ("head too large with its blank line", b"GET / HTTP/1.1\r\nX: " + b"a" * 235 + b"\r\n\r\n",
     431),
    ("endless empty lines", b"\r\n" * 40, 400),
    # RFC 9112 §3: a request line starts with a method, a token; nothing else is waited on.
    ("TLS ClientHello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    ("TLS record type alone", b"\x16", 400),
    ("leading bare LF", b"\n\nGET", 400),
    ("leading space", b" GET / HTTP/1.1\r\n", 400),
    ("leading tab", b"\tGET", 400),
    ("CR not followed by LF", b"\r\r\n", 400),
    ("CR then a letter", b"\rGET", 400),
    ("junk after empty lines", b"\r\n\r\n\x00", 400),
    ("NUL", b"\x00", 400),
    ("obs-text", b"\xffGET", 400),
    ("separator", b"(GET) / HTTP/1.1\r\n", 400),
]


def scan(buffer: bytes):
    """A fresh scanner's answer for ``buffer``."""
    return HeadScanner(LIMITS).scan(buffer)


def scan_growing(buffer: bytes):
    """One scanner's answer after ``buffer`` arrived a byte at a time (or its first error)."""
    scanner = HeadScanner(LIMITS)
    grown = bytearray()
    found = scanner.scan(grown)
    for byte in buffer:
        if found is not None:
            break
        grown.append(byte)
        found = scanner.scan(grown)
    return found


class HeadScannerTest(unittest.TestCase):
    """HeadScanner on buffers as the connection loop holds them, whole or growing."""

    def test_cases(self) -> None:
        for name, buffer, expected in FIND:
            with self.subTest(name):
                self.assertEqual(scan(buffer), expected)
                self.assertEqual(scan(bytearray(buffer)), expected)
                self.assertEqual(scan_growing(buffer), expected)

    def test_errors(self) -> None:
        for name, buffer, status in FIND_ERRORS:
            for scanning in (scan, scan_growing):
                with self.subTest(name, scanning=scanning.__name__):
                    with self.assertRaises(HTTPError) as caught:
                        scanning(buffer)
                    self.assertEqual((caught.exception.status, caught.exception.close),
                                     (status, True))

    def test_a_first_byte_that_starts_no_method_is_refused_at_once(self) -> None:
        for first in range(256):
            scanner = HeadScanner(LIMITS)
            with self.subTest(first=first):
                if bytes([first]) in b"!#$%&'*+-.^_`|~" or bytes([first]).isalnum():
                    self.assertIsNone(scanner.scan(bytes([first])))
                elif first == 13:
                    self.assertIsNone(scanner.scan(b"\r"))  # it may start an empty line
                else:
                    with self.assertRaises(HTTPError) as caught:
                        scanner.scan(bytes([first]))
                    self.assertEqual(caught.exception.status, 400)

    def test_the_http2_preface_reaches_the_parser(self) -> None:
        # PRI is a token: the head is delimited, and parse_head answers 505.
        buffer = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        start, end = scan(buffer)
        with self.assertRaises(HTTPError) as caught:
            parse_head(buffer[start:end], LIMITS)
        self.assertEqual(caught.exception.status, 505)

    def test_every_prefix_agrees_with_a_fresh_scan(self) -> None:
        # However a stream is cut, the scanner that saw every piece answers as a new one
        # would for all the bytes at once.
        streams = [buffer for _, buffer, _ in FIND] + [
            b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\r\nrest",
            b"GET / HTTP/1.1\nA: 1\n\r\n", b"GET / HTTP/1.1\r\n\n"]
        for stream in streams:
            for step in (1, 2, 3, 7):
                with self.subTest(stream=stream, step=step):
                    scanner = HeadScanner(LIMITS)
                    for cut in range(0, len(stream) + 1, step):
                        try:
                            expected = scan(stream[:cut])
                        except HTTPError as error:
                            with self.assertRaises(HTTPError) as caught:
                                scanner.scan(stream[:cut])
                            self.assertEqual(caught.exception.status, error.status)
                            break
                        self.assertEqual(scanner.scan(stream[:cut]), expected)
                        if expected is not None:
                            break

    def test_scan_again_gives_the_same_head(self) -> None:
        scanner = HeadScanner(LIMITS)
        buffer = b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET"
        self.assertEqual(scanner.scan(buffer), (0, 27))
        self.assertEqual(scanner.scan(buffer), (0, 27))

    def test_head_at_the_block_limit(self) -> None:
        head = b"GET / HTTP/1.1\r\nX: " + b"a" * 233 + b"\r\n\r\n"
        self.assertEqual(len(head), 256)
        self.assertEqual(scan(head + b"GET"), (0, 256))
        self.assertIsNone(scan(head[:-1]))
        self.assertEqual(scan_growing(head + b"GET"), (0, 256))

    def test_pipelined_heads_one_after_another(self) -> None:
        # As the connection does it: delete each head from the buffer's front, then reset.
        buffer = bytearray(b"\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                           b"GET /b HTTP/1.1\r\nHost: h\r\n\r\nGET")
        scanner = HeadScanner(LIMITS)
        paths = []
        while True:
            found = scanner.scan(buffer)
            if found is None:
                break
            start, end = found
            paths.append(parse_head(buffer[start:end], LIMITS).path)
            del buffer[:end]
            scanner.reset()
        self.assertEqual(paths, ["/a", "/b"])
        self.assertEqual(buffer, b"GET")
        buffer += b" /c HTTP/1.1\r\nHost: h\r\n\r\n"
        self.assertEqual(scanner.scan(buffer), (0, len(buffer)))

    def test_head_fed_byte_by_byte(self) -> None:
        stream = b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\nnext"
        buffer = bytearray()
        scanner = HeadScanner(LIMITS)
        for index, byte in enumerate(stream):
            buffer.append(byte)
            found = scanner.scan(buffer)
            if found is not None:
                self.assertEqual(found, (2, 29))
                self.assertEqual(index, 28)
                return
        self.fail("head never found")

    def test_slowloris_head_refused_at_the_limit(self) -> None:
        # A head that never ends must be refused once it crosses the limit, not buffered on.
        buffer = bytearray(b"GET / HTTP/1.1\r\n")
        scanner = HeadScanner(LIMITS)
        with self.assertRaises(HTTPError) as caught:
            while True:
                buffer += b"X-A: b\r\n"
                scanner.scan(buffer)
        self.assertEqual(caught.exception.status, 431)
        self.assertLessEqual(len(buffer), LIMITS.header_block + 8)

    def test_find_and_parse_agree_on_limits(self) -> None:
        for name, buffer, status in FIND_ERRORS[:2]:
            with self.subTest(name), self.assertRaises(HTTPError) as caught:
                parse_head(buffer + b"\r\n\r\n", LIMITS)
            self.assertEqual(caught.exception.status, status)


class RememberedPartsTest(unittest.TestCase):
    """Request lines, Host and Connection values are remembered once parsed; refusals never
    are, and long values are parsed each time with the same outcome."""

    def test_a_refused_request_line_is_refused_every_time(self) -> None:
        for head, status in ((b"GET /a HTTP/2.0\r\nHost: h\r\n\r\n", 505),
                             (b"GET  /a HTTP/1.1\r\nHost: h\r\n\r\n", 400),
                             (b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400)):
            for _ in range(3):
                with self.subTest(head=head), self.assertRaises(HTTPError) as caught:
                    parse_head(head, LIMITS)
                self.assertEqual(caught.exception.status, status)

    def test_a_refused_host_or_connection_is_refused_every_time(self) -> None:
        for head in (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
                     b"GET / HTTP/1.1\r\nHost: h\r\nConnection: a b\r\n\r\n"):
            for _ in range(3):
                with self.subTest(head=head), self.assertRaises(HTTPError) as caught:
                    parse_head(head, LIMITS)
                self.assertEqual(caught.exception.status, 400)

    def test_the_same_line_gives_the_same_request_each_time(self) -> None:
        head = b"GET /a%20b?x=1 HTTP/1.0\r\nHost: h:1\r\nConnection: Keep-Alive\r\n\r\n"
        requests = [parse_head(head, LIMITS) for _ in range(3)]
        self.assertEqual(requests[0][:5], ("GET", "/a%20b?x=1", "/a%20b", "x=1", "HTTP/1.0"))
        self.assertTrue(requests[0].keep_alive)
        for request in requests[1:]:
            self.assertEqual(request[:5], requests[0][:5])
            self.assertEqual((request.host, request.keep_alive), ("h:1", True))

    def test_long_values_are_parsed_alike(self) -> None:
        path = "/" + "a" * 2000
        host = "h" * 600
        head = (f"GET {path}?q HTTP/1.1\r\nHost: {host}\r\n"
                f"Connection: {'x, ' * 200}close\r\n\r\n").encode("ascii")
        for _ in range(2):
            request = parse_head(head, HeadLimits())
            self.assertEqual((request.path, request.query, request.host, request.keep_alive),
                             (path, "q", host, False))
        with self.assertRaises(HTTPError):
            parse_head(f"GET {path} HTTP/3.0\r\nHost: h\r\n\r\n".encode("ascii"), HeadLimits())


class LimitsTest(unittest.TestCase):
    """Limits built from the configuration."""

    def test_from_config(self) -> None:
        config = Config(max_request_line=100, max_header_block=2000, max_header_count=7)
        self.assertEqual(HeadLimits.from_config(config), HeadLimits(100, 2000, 7))

    def test_defaults_match_config(self) -> None:
        self.assertEqual(HeadLimits.from_config(Config()), HeadLimits())


if __name__ == "__main__":
    unittest.main()


class HeadersTest(unittest.TestCase):
    """The multimap of field lines, as parsed and as built from pairs."""

    PAIRS = [("Host", "a"), ("X-Twice", "1"), ("Accept", "*/*"), ("x-twice", "2"),
             ("X-Twice", "1")]

    def both(self):
        parsed = parse_head(b"GET / HTTP/1.1\r\n" + b"".join(
            b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in self.PAIRS)
            + b"\r\n", HeadLimits(header_count=10)).headers
        return [("parsed", parsed), ("built", Headers(list(self.PAIRS)))]

    def test_lookups_ignore_case_and_join_repeats(self) -> None:
        for how, headers in self.both():
            with self.subTest(how):
                self.assertEqual(headers.get("x-TWICE"), "1, 2, 1")
                self.assertEqual(headers.get_all("X-Twice"), ["1", "2", "1"])
                self.assertEqual(headers.get("accept"), "*/*")
                self.assertIsNone(headers.get("Absent"))
                self.assertEqual(headers.get_all("Absent"), [])
                self.assertIn("HOST", headers)
                self.assertEqual(list(headers), self.PAIRS)
                self.assertEqual(headers.items(), self.PAIRS)

    def test_a_head_without_repeats_is_indexed_alike(self) -> None:
        headers = parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nX-One:\t 1 \t\r\nX-Empty: \t \r\n"
                             b"X-Inner: a  b\r\n\r\n", HeadLimits()).headers
        pairs = [("Host", "a"), ("X-One", "1"), ("X-Empty", ""), ("X-Inner", "a  b")]
        self.assertEqual(headers.items(), pairs)
        for name, value in pairs:
            with self.subTest(name):
                self.assertEqual(headers.get_all(name.upper()), [value])
        self.assertEqual(headers.lines_without(frozenset({"x-one"})),
                         ["Host: a", "X-Empty: \t ", "X-Inner: a  b"])

    def test_lines_without_drops_the_names_lines_and_keeps_the_rest_as_received(self) -> None:
        for how, headers in self.both():
            with self.subTest(how):
                self.assertEqual(headers.lines_without(frozenset({"x-twice", "absent"})),
                                 ["Host: a", "Accept: */*"])
                self.assertEqual(headers.lines_without(frozenset({"host"})),
                                 ["X-Twice: 1", "Accept: */*", "x-twice: 2", "X-Twice: 1"])
                self.assertEqual(headers.lines_without(frozenset({"x-twice"})),
                                 ["Host: a", "Accept: */*"])  # and again: nothing was changed
                self.assertEqual(headers.lines_without(frozenset()),
                                 [f"{name}: {value}" for name, value in self.PAIRS])
        spaced = parse_head(b"GET / HTTP/1.1\r\nHost:a\r\nX-One:\t 1 \t\r\nX-Gone: 1\r\n\r\n",
                            HeadLimits()).headers
        self.assertEqual(spaced.lines_without(frozenset({"x-gone"})),
                         ["Host:a", "X-One:\t 1 \t"])


class RememberedHeadsTest(unittest.TestCase):
    """The last heads parsed are remembered, and their field sections apart from the
    request line: never across limits or versions, never a refusal."""

    HEAD = b"GET /same HTTP/1.1\r\nHost: a\r\nX-Filler: " + b"x" * 40 + b"\r\n\r\n"

    def test_the_same_head_gives_the_same_request(self) -> None:
        first = parse_head(self.HEAD, HeadLimits())
        self.assertIs(parse_head(bytearray(self.HEAD), HeadLimits()), first)
        self.assertEqual(first.headers.get("x-filler"), "x" * 40)

    def test_limits_are_part_of_what_is_remembered(self) -> None:
        parse_head(self.HEAD, HeadLimits())
        with self.assertRaises(HTTPError) as caught:
            parse_head(self.HEAD, HeadLimits(header_block=32))
        self.assertEqual(caught.exception.status, 431)

    def test_a_refusal_is_raised_every_time(self) -> None:
        for _ in range(2):
            with self.assertRaises(HTTPError) as caught:
                parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: 1\r\n\r\n", HeadLimits())
            self.assertEqual(caught.exception.status, 400)

    def test_the_same_fields_under_another_request_line_are_parsed_once(self) -> None:
        fields = b"Host: a\r\nConnection: close\r\nContent-Length: 3\r\nX-Same: 1\r\n\r\n"
        first = parse_head(b"POST /one?1 HTTP/1.1\r\n" + fields, HeadLimits())
        second = parse_head(b"PUT /two?2 HTTP/1.1\r\n" + fields, HeadLimits())
        self.assertIs(second.headers, first.headers)
        self.assertEqual((second.method, second.path, second.query), ("PUT", "/two", "2"))
        self.assertEqual((second.host, second.keep_alive, second.body_length), ("a", False, 3))

    def test_what_the_fields_mean_depends_on_the_version(self) -> None:
        # Without Host an HTTP/1.0 request is fine and an HTTP/1.1 one is not; HTTP/1.0
        # persists only when asked to.
        fields = b"X-Only: 1\r\n\r\n"
        old = parse_head(b"GET /a HTTP/1.0\r\n" + fields, HeadLimits())
        self.assertEqual((old.host, old.keep_alive), ("", False))
        for _ in range(2):
            with self.assertRaises(HTTPError) as caught:
                parse_head(b"GET /b HTTP/1.1\r\n" + fields, HeadLimits())
            self.assertEqual(caught.exception.status, 400)
        self.assertTrue(parse_head(b"GET /c HTTP/1.1\r\nHost: a\r\n" + fields,
                                   HeadLimits()).keep_alive)

    def test_a_long_head_is_parsed_each_time(self) -> None:
        head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + b"y" * 3000 + b"\r\n\r\n"
        first, second = (parse_head(head, HeadLimits()) for _ in range(2))
        self.assertIsNot(first, second)
        self.assertEqual(first._replace(headers=None), second._replace(headers=None))
        self.assertEqual(first.headers.items(), second.headers.items())


def parsed_afresh(head: bytes, limits: HeadLimits) -> object:
    """What a head parses to with nothing remembered: its request's parts and field lines,
    or the refusal's status."""
    try:
        request = _parse_head(head, limits)
    except HTTPError as error:
        return error.status
    return outcome(request)


def outcome(request: object) -> object:
    """A request's parts, its field pairs, its field lines as received and its Range values."""
    return (request._replace(headers=None), request.headers.items(),
            request.headers.lines_without(frozenset()), request.headers.get_all("range"))


def parsed(head: bytes, limits: HeadLimits) -> object:
    """What :func:`parse_head` gives for ``head``: as :func:`outcome`, or the status."""
    try:
        return outcome(parse_head(head, limits))
    except HTTPError as error:
        return error.status


class RangedHeadsTest(unittest.TestCase):
    """Heads that differ in their Range value alone are parsed once, and each request
    still carries its own value, line and place among the fields."""

    def head(self, value: bytes, before: bytes = b"Host: a\r\n",
             after: bytes = b"User-Agent: t\r\n") -> bytes:
        return b"GET /big HTTP/1.1\r\n" + before + b"Range: " + value + b"\r\n" + after + b"\r\n"

    def test_each_request_has_its_own_range(self) -> None:
        first = parse_head(self.head(b"bytes=0-99"), HeadLimits())
        second = parse_head(self.head(b"bytes=100-"), HeadLimits())
        self.assertEqual(first.headers.get("range"), "bytes=0-99")
        self.assertEqual(second.headers.get("Range"), "bytes=100-")
        self.assertEqual(second.headers.items(),
                         [("Host", "a"), ("Range", "bytes=100-"), ("User-Agent", "t")])
        self.assertEqual(second.headers.lines_without(frozenset({"host"})),
                         ["Range: bytes=100-", "User-Agent: t"])
        self.assertEqual(second.headers.get_all("RANGE"), ["bytes=100-"])
        self.assertEqual(first.headers.get("Range"), "bytes=0-99")  # not changed by the second

    def test_the_rest_of_the_head_is_parsed_once(self) -> None:
        after = b"X-Once: parsed once\r\n"
        first = parse_head(self.head(b"bytes=5-6", after=after), HeadLimits())
        second = parse_head(self.head(b"bytes=8-9", after=after), HeadLimits())
        self.assertIs(second.headers.get_all("x-once")[0], first.headers.get_all("x-once")[0])

    def test_every_head_parses_as_it_would_with_nothing_remembered(self) -> None:
        limits = HeadLimits(header_count=4)
        heads = [
            self.head(b"bytes=1-2"),
            self.head(b"bytes=-"),  # not a valid range set, but a valid field value
            self.head(b"bytes=-500", before=b""),  # no Host: refused
            self.head(b"bytes=0-1,5-6"),  # not set apart: parsed as it is
            self.head(b"bytes=7-8", after=b"Range: bytes=9-\r\n"),  # twice
            self.head(b"bytes=7-8", after=b"range: bytes=9-\r\n"),
            self.head(b"bytes=7-8 "),  # whitespace after the value
            self.head(b"bytes=1-2", after=b"Bad Name: 1\r\n"),
            self.head(b"bytes=1-2", after=b"X: 1\r\nY: 2\r\nZ: 3\r\n"),  # one field too many
            self.head(b"bytes=1-2", after=b"X-Obs: 1\r\n fold\r\n"),
            self.head(b"bytes=1" + b"0" * 18 + b"-"),  # 19 digits: parsed as it is
            b"GET /a HTTP/1.1\r\nHost: a\r\nRange: bytes=3-4\r\nContent-Length: 2\r\n\r\n",
            b"GET /a HTTP/1.0\r\nRange: bytes=3-4\r\nConnection: keep-alive\r\n\r\n",
        ]
        for head in heads:
            with self.subTest(head):
                self.assertEqual(parsed(head, limits), parsed_afresh(head, limits))
                self.assertEqual(parsed(head, limits), parsed_afresh(head, limits))

    def test_the_size_limit_counts_the_range_value(self) -> None:
        # The head without its value fits the limit and is remembered; with the value it
        # does not fit, and is refused.
        head = self.head(b"bytes=123456789-987654321")
        parse_head(self.head(b"bytes=1-2"), HeadLimits(header_block=len(head) - 1))
        with self.assertRaises(HTTPError) as caught:
            parse_head(head, HeadLimits(header_block=len(head) - 1))
        self.assertEqual(caught.exception.status, 431)
        self.assertEqual(parse_head(head, HeadLimits(header_block=len(head))).headers.get(
            "Range"), "bytes=123456789-987654321")


class HeadersWithValueTest(unittest.TestCase):
    """``Headers.with_value``: one field's value replaced in a copy."""

    def test_a_field_sent_once_is_replaced_in_place(self) -> None:
        for how, lines in (("parsed", ["A: 1", "B:2", "C: 3"]), ("built", None)):
            with self.subTest(how):
                headers = Headers([("A", "1"), ("B", "2"), ("C", "3")], lines=lines)
                changed = headers.with_value("b", "9")
                self.assertEqual(changed.items(), [("A", "1"), ("B", "9"), ("C", "3")])
                self.assertEqual(changed.lines_without(frozenset({"a"})), ["B: 9", "C: 3"])
                self.assertEqual(headers.get("B"), "2")
                self.assertEqual(headers.items(), [("A", "1"), ("B", "2"), ("C", "3")])

    def test_a_field_absent_or_repeated_is_not_replaced(self) -> None:
        headers = Headers([("A", "1"), ("a", "2")])
        self.assertIsNone(headers.with_value("a", "3"))
        self.assertIsNone(headers.with_value("b", "3"))
