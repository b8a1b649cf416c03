"""Forwarding: hop-by-hop removal, the origin request head, the client response fields."""

from __future__ import annotations

import unittest
from typing import List, Tuple

from nex.http.errors import HTTPError
from nex.proxy.forwarding import (CHUNKED, HOP_BY_HOP, RequestHeads, added_response_fields,
                                  answers_locally, asks_for_websocket, connection_options,
                                  end_to_end_lines, forwarded_for, new_pseudonym,
                                  origin_request_head, parse_absolute_target, relayed_fields,
                                  split_authority, via_carries, via_element)
from nex.http.framing import HeadLimits
from nex.http.request import Request, parse_fields, parse_head

Fields = List[Tuple[str, str]]

# (case, fields received, fields passed on)
HOP_BY_HOP_CASES: Tuple[Tuple[str, Fields, Fields], ...] = (
    ("nothing to remove", [("Accept", "*/*"), ("X-A", "1")], [("Accept", "*/*"), ("X-A", "1")]),
    ("the fixed list", [(name.title(), "x") for name in sorted(HOP_BY_HOP)] + [("A", "1")],
     [("A", "1")]),
    ("names compare in any case", [("CONNECTION", "x-a"), ("x-A", "1"), ("KEEP-ALIVE", "5"),
                                   ("te", "trailers"), ("B", "2")], [("B", "2")]),
    ("Connection names a field", [("Connection", "X-Secret"), ("X-Secret", "1"), ("A", "2")],
     [("A", "2")]),
    ("every field of that name goes", [("Connection", "x-a"), ("X-A", "1"), ("X-A", "2")], []),
    ("several Connection fields", [("Connection", "x-a"), ("Connection", "x-b, close"),
                                   ("X-A", "1"), ("X-B", "2"), ("X-C", "3")], [("X-C", "3")]),
    ("list gaps and blanks", [("Connection", " , x-a ,,\tx-b , "), ("X-A", "1"), ("X-B", "2"),
                              ("X-C", "3")], [("X-C", "3")]),
    ("Connection naming Connection (CVE-2023-49606)",
     [("Connection", "Connection"), ("Connection", "connection, Connection"), ("A", "1")],
     [("A", "1")]),
    ("Connection naming Host", [("Host", "a.example"), ("Connection", "Host"), ("A", "1")],
     [("A", "1")]),
    ("Connection naming Content-Length",
     [("Content-Length", "5"), ("Connection", "Content-Length"), ("A", "1")], [("A", "1")]),
    ("Connection naming Transfer-Encoding",
     [("Transfer-Encoding", "chunked"), ("Connection", "transfer-encoding")], []),
    ("options that are not tokens name nothing",
     [("Connection", "x a, \"x-b\", x-c"), ("X A", "1"), ("\"x-b\"", "2"), ("X-C", "3"),
      ("X-B", "4")], [("X A", "1"), ("\"x-b\"", "2"), ("X-B", "4")]),
    ("an empty Connection", [("Connection", ""), ("A", "1")], [("A", "1")]),
    ("Proxy-Authorization never reaches the origin",
     [("Proxy-Authorization", "Basic YTpi"), ("Authorization", "Basic YzpkZA==")],
     [("Authorization", "Basic YzpkZA==")]),
)


def parse_sent_head(head: bytes):
    """The request Nex would send, parsed by Nex's own strict request parser."""
    return parse_head(head, HeadLimits())


def lines_of(fields) -> list:
    """``fields`` as the field lines Nex writes for pairs it did not parse."""
    return [f"{name}: {value}" for name, value in fields]


class EndToEndTest(unittest.TestCase):
    def test_table(self) -> None:
        for case, fields, expected in HOP_BY_HOP_CASES:
            with self.subTest(case=case):
                self.assertEqual(end_to_end_lines(fields), lines_of(expected))

    def test_accepts_any_iterable_once(self) -> None:
        fields = iter([("Connection", "x-a"), ("X-A", "1"), ("B", "2")])
        self.assertEqual(end_to_end_lines(fields), lines_of([("B", "2")]))

    def test_connection_options(self) -> None:
        self.assertEqual(connection_options([("connection", "Keep-Alive, X-A"),
                                             ("Connection", "close")]),
                         frozenset({"keep-alive", "x-a", "close"}))

    def test_many_connection_options_stay_linear(self) -> None:
        names = [f"x-{index}" for index in range(5000)]
        fields = [("Connection", ", ".join(names))] + [(name, "v") for name in names]
        self.assertEqual(end_to_end_lines(fields + [("Kept", "1")]), lines_of([("Kept", "1")]))


class TargetTest(unittest.TestCase):
    def test_absolute_targets(self) -> None:
        for method, target, expected in (
                ("GET", "http://example.com/a/b?c=d", ("http", "example.com", "example.com", 80,
                                                       "/a/b?c=d")),
                ("GET", "HTTP://Example.COM:8080", ("http", "Example.COM:8080", "Example.COM",
                                                    8080, "/")),
                ("GET", "http://example.com:/x", ("http", "example.com:", "example.com", 80,
                                                  "/x")),
                ("GET", "http://example.com?q", ("http", "example.com", "example.com", 80,
                                                 "/?q")),
                ("GET", "http://example.com/?", ("http", "example.com", "example.com", 80,
                                                 "/?")),
                ("GET", "https://example.com/", ("https", "example.com", "example.com", 443,
                                                 "/")),
                ("GET", "http://[::1]:81/", ("http", "[::1]:81", "::1", 81, "/")),
                ("OPTIONS", "http://example.com", ("http", "example.com", "example.com", 80,
                                                   "*")),
                ("OPTIONS", "http://example.com/", ("http", "example.com", "example.com", 80,
                                                    "/")),
                ("OPTIONS", "http://example.com?x", ("http", "example.com", "example.com", 80,
                                                     "/?x"))):
            with self.subTest(target=target, method=method):
                self.assertEqual(tuple(parse_absolute_target(method, target)), expected)

    def test_bad_targets(self) -> None:
        for target in ("/path", "ftp://example.com/", "http://example.com:0/",
                       "http://example.com:65536/", "http://example.com:123456/",
                       "http://example.com:8o/", "http:///path", "http://[::1/"):
            with self.subTest(target=target), self.assertRaises(HTTPError) as caught:
                parse_absolute_target("GET", target)
            self.assertEqual(caught.exception.status, 400)

    def test_split_authority(self) -> None:
        self.assertEqual(split_authority("example.com:443", None), ("example.com", 443))
        self.assertEqual(split_authority("[2001:db8::1]:8443", None), ("2001:db8::1", 8443))
        self.assertEqual(split_authority("example.com", 80), ("example.com", 80))
        for authority in ("example.com", "example.com:", "[::1]", ":443", "[::1]x:443"):
            with self.subTest(authority=authority), self.assertRaises(HTTPError):
                split_authority(authority, None)


class MaxForwardsTest(unittest.TestCase):
    def test_answered_locally(self) -> None:
        for method, fields, expected in (
                ("OPTIONS", [("Max-Forwards", "0")], True),
                ("TRACE", [("max-forwards", "0")], True),
                ("TRACE", [("Max-Forwards", "00")], True),
                ("OPTIONS", [("Max-Forwards", "1")], False),
                ("OPTIONS", [], False),
                ("GET", [("Max-Forwards", "0")], False),
                ("GET", [("Max-Forwards", "junk")], False)):
            with self.subTest(method=method, fields=fields):
                self.assertIs(answers_locally(method, fields), expected)

    def test_malformed_on_options_and_trace(self) -> None:
        for value in ("-1", "+1", "1.0", " ", "1, 2", "0x1", "9" * 19, "\u0661"):
            with self.subTest(value=value), self.assertRaises(HTTPError) as caught:
                answers_locally("TRACE", [("Max-Forwards", value)])
            self.assertEqual(caught.exception.status, 400)
        with self.assertRaises(HTTPError):
            answers_locally("OPTIONS", [("Max-Forwards", "1"), ("Max-Forwards", "1")])


class OriginRequestHeadTest(unittest.TestCase):
    def test_whole_head(self) -> None:
        head = origin_request_head(
            "POST", "/submit?x=1", "example.com:8080",
            [("Host", "evil.example"), ("User-Agent", "t"), ("Connection", "keep-alive, X-Hop"),
             ("X-Hop", "1"), ("Proxy-Authorization", "Basic YTpi"), ("Content-Length", "5"),
             ("Via", "1.0 upstream"), ("Accept", "*/*")],
            5, "1.1 nex-0123456789abcdef")
        self.assertEqual(head, b"POST /submit?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n"
                               b"User-Agent: t\r\nVia: 1.0 upstream\r\nAccept: */*\r\n"
                               b"Via: 1.1 nex-0123456789abcdef\r\nContent-Length: 5\r\n\r\n")

    def test_framing_comes_from_the_caller_only(self) -> None:
        fields = [("Content-Length", "99"), ("Transfer-Encoding", "chunked"),
                  ("Connection", "Content-Length, Transfer-Encoding, Host, Connection")]
        for framing, expected in ((None, b""), (0, b"Content-Length: 0\r\n"),
                                  (12, b"Content-Length: 12\r\n"),
                                  (CHUNKED, b"Transfer-Encoding: chunked\r\n")):
            with self.subTest(framing=framing):
                head = origin_request_head("PUT", "/", "a.example", fields, framing, None)
                self.assertEqual(head, b"PUT / HTTP/1.1\r\nHost: a.example\r\n" + expected
                                 + b"\r\n")

    def test_request_smuggling_content_length_and_chunked_never_both_sent(self) -> None:
        # tinyproxy forwarded both framing fields, letting the origin and the proxy disagree
        # on where a request ends.
        fields = [("Content-Length", "4"), ("Transfer-Encoding", "chunked"), ("X", "1")]
        for framing in (CHUNKED, 4, None):
            with self.subTest(framing=framing):
                head = origin_request_head("POST", "/", "a", fields, framing, None)
                framing_lines = [line for line in head.split(b"\r\n")
                                 if line.lower().startswith((b"content-length:",
                                                             b"transfer-encoding:"))]
                self.assertLessEqual(len(framing_lines), 1)
                self.assertEqual(len(framing_lines), 0 if framing is None else 1)

    def test_only_the_expectation_of_100_continue_is_dropped(self) -> None:
        # Nex streams the body at once; another expectation is the origin's to judge.
        request = received("PUT http://a/x HTTP/1.1", "Host: a", "Content-Length: 1",
                           "expect:\t100-CONTINUE ", "Expect: x-other", "X: 1")
        head = origin_request_head("PUT", "/x", "a", request.headers, 1, None)
        self.assertEqual(head, b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: x-other\r\nX: 1\r\n"
                               b"Content-Length: 1\r\n\r\n")

    def test_connection_naming_host_does_not_lose_host(self) -> None:
        head = origin_request_head("GET", "/", "a.example", [("Connection", "Host"),
                                                             ("Host", "b.example")], None, None)
        request = parse_sent_head(head)
        self.assertEqual(request.host, "a.example")

    def test_sent_head_passes_nex_own_parser(self) -> None:
        head = origin_request_head("GET", "/p?q", "[::1]:8080", [("Accept", "text/html"),
                                                                 ("X-Latin", "caf\xe9")],
                                   CHUNKED, "1.0 nex-x")
        request = parse_sent_head(head)
        self.assertEqual((request.method, request.target, request.host, request.chunked),
                         ("GET", "/p?q", "[::1]:8080", True))
        self.assertEqual(request.headers.get("X-Latin"), "caf\xe9")
        self.assertEqual(request.headers.get("Via"), "1.0 nex-x")

    def test_max_forwards_is_decremented_for_options_and_trace(self) -> None:
        for method, sent, expected in (("OPTIONS", "3", b"Max-Forwards: 2\r\n"),
                                       ("TRACE", "1", b"Max-Forwards: 0\r\n"),
                                       ("GET", "3", b"Max-Forwards: 3\r\n")):
            with self.subTest(method=method):
                head = origin_request_head(method, "/", "a", [("Max-Forwards", sent)], None,
                                           None)
                self.assertIn(expected, head)
                self.assertEqual(head.count(b"Max-Forwards"), 1)

    def test_max_forwards_zero_is_never_forwarded(self) -> None:
        with self.assertRaises(ValueError):
            origin_request_head("TRACE", "/", "a", [("Max-Forwards", "0")], None, None)

    def test_expect_100_continue_is_dropped(self) -> None:
        head = origin_request_head("PUT", "/", "a", [("Expect", "100-Continue"),
                                                     ("X", "1")], 3, None)
        self.assertNotIn(b"Expect", head)
        head = origin_request_head("PUT", "/", "a", [("Expect", "something-else")], 3, None)
        self.assertIn(b"Expect: something-else\r\n", head)

    def test_options_asterisk(self) -> None:
        head = origin_request_head("OPTIONS", "*", "a", [], None, None)
        self.assertTrue(head.startswith(b"OPTIONS * HTTP/1.1\r\n"))

    def test_unsendable_values_are_refused(self) -> None:
        for args in (("GET", "/", "a\r\nX: 1", [], None, None),
                     ("GET", "/", "", [], None, None),
                     ("GET", "/", "a", [], None, "1.1 x\r\nX: 1"),
                     ("GET", "/a b", "a", [], None, None),
                     ("GET", "http://a/", "a", [], None, None),
                     ("G T", "/", "a", [], None, None),
                     ("GET", "/", "a", [], -1, None),
                     ("GET", "/", "a", [], "gzip", None)):
            with self.subTest(args=args), self.assertRaises(ValueError):
                origin_request_head(*args)


class WebSocketUpgradeTest(unittest.TestCase):
    CASES = [
        ("GET", "HTTP/1.1", [("Upgrade", "websocket"), ("Connection", "Upgrade")], True),
        ("GET", "HTTP/1.1", [("Upgrade", "h2c, WebSocket/13"),
                             ("Connection", "keep-alive, upgrade")], True),
        ("GET", "HTTP/1.1", [("Upgrade", "websocket")], False),  # Connection must name it
        ("GET", "HTTP/1.1", [("Upgrade", "h2c"), ("Connection", "Upgrade")], False),
        ("GET", "HTTP/1.1", [("Upgrade", "web socket"), ("Connection", "Upgrade")], False),
        ("POST", "HTTP/1.1", [("Upgrade", "websocket"), ("Connection", "Upgrade")], False),
        ("GET", "HTTP/1.0", [("Upgrade", "websocket"), ("Connection", "Upgrade")], False),
    ]

    def test_which_requests_ask_for_websocket(self) -> None:
        for method, version, fields, expected in self.CASES:
            with self.subTest(method=method, version=version, fields=fields):
                self.assertIs(asks_for_websocket(method, version, fields), expected)

    def test_the_origin_head_asks_to_switch_and_drops_other_tokens(self) -> None:
        head = origin_request_head("GET", "/chat", "a.example",
                                   [("Upgrade", "h2c, websocket"), ("Connection", "Upgrade"),
                                    ("Sec-WebSocket-Key", "abc")], None, None, True)
        self.assertEqual(head, b"GET /chat HTTP/1.1\r\nHost: a.example\r\n"
                               b"Sec-WebSocket-Key: abc\r\nConnection: Upgrade\r\n"
                               b"Upgrade: websocket\r\n\r\n")


class ParentHeadTest(unittest.TestCase):
    def test_absolute_form_with_the_parent_login_and_not_the_client_one(self) -> None:
        head = origin_request_head("GET", "http://a.example:8080/x?y", "a.example:8080",
                                   [("Proxy-Authorization", "Basic Y2xpZW50OnB3")], None, None,
                                   to_parent=True, parent_authorization="Basic bmV4OnB3")
        self.assertEqual(head, b"GET http://a.example:8080/x?y HTTP/1.1\r\n"
                               b"Host: a.example:8080\r\n"
                               b"Proxy-Authorization: Basic bmV4OnB3\r\n\r\n")


class ForwardedForTest(unittest.TestCase):
    FIELDS = [("Accept", "*/*"), ("X-Forwarded-For", "10.0.0.1"),
              ("forwarded", "for=10.0.0.1")]

    def test_no_passes_the_fields_as_they_are(self) -> None:
        self.assertEqual(forwarded_for(self.FIELDS, "no", "192.0.2.7"), self.FIELDS)

    def test_yes_appends_the_client(self) -> None:
        self.assertEqual(forwarded_for(self.FIELDS, "yes", "192.0.2.7"), self.FIELDS + [
            ("X-Forwarded-For", "192.0.2.7"), ("Forwarded", "for=192.0.2.7")])
        self.assertEqual(forwarded_for([], "yes", "2001:db8::7"), [
            ("X-Forwarded-For", "2001:db8::7"), ("Forwarded", 'for="[2001:db8::7]"')])

    def test_delete_removes_what_the_client_sent(self) -> None:
        self.assertEqual(forwarded_for(self.FIELDS, "delete", "192.0.2.7"), [("Accept", "*/*")])


def received(*lines: str) -> Request:
    """The request the parser hands out for a head of ``lines``."""
    return parse_head(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), HeadLimits())


class RequestHeadsTest(unittest.TestCase):
    GET = ("GET http://a.example/x?y HTTP/1.1", "Host: a.example", "Accept: */*")

    def test_the_head_of_a_request(self) -> None:
        heads = RequestHeads("nex-ab", "no")
        head, websocket = heads.head(received(*self.GET, "Connection: keep-alive"), "192.0.2.7")
        self.assertEqual(head, b"GET /x?y HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n"
                               b"Via: 1.1 nex-ab\r\n\r\n")
        self.assertFalse(websocket)

    def test_body_framing_websocket_and_version_come_from_the_request(self) -> None:
        heads = RequestHeads(None, "no")
        self.assertIn(b"\r\nContent-Length: 3\r\n", heads.head(
            received("PUT http://a/ HTTP/1.1", "Host: a", "Content-Length: 3"), "c")[0])
        self.assertIn(b"\r\nTransfer-Encoding: chunked\r\n", heads.head(
            received("PUT http://a/ HTTP/1.1", "Host: a", "Transfer-Encoding: chunked"), "c")[0])
        self.assertTrue(heads.head(received("GET http://a/ HTTP/1.1", "Host: a",
                                            "Connection: Upgrade", "Upgrade: websocket"),
                                   "c")[1])
        self.assertIn(b"Via: 1.0 nex-ab\r\n", RequestHeads("nex-ab", "no").head(
            received("GET http://a/ HTTP/1.0"), "c")[0])

    def test_the_same_request_is_built_once(self) -> None:
        heads = RequestHeads("nex-ab", "no")
        first = heads.head(received(*self.GET), "192.0.2.7")
        self.assertIs(heads.head(received(*self.GET), "192.0.2.8"), first)

    def test_forwarded_for_never_gives_one_client_another_clients_address(self) -> None:
        heads = RequestHeads("nex-ab", "yes")
        for client in ("192.0.2.7", "192.0.2.8", "192.0.2.7"):
            with self.subTest(client=client):
                head = heads.head(received(*self.GET), client)[0]
                self.assertIn(f"X-Forwarded-For: {client}\r\n".encode(), head)

    def test_parent_and_its_login_are_part_of_the_key(self) -> None:
        heads = RequestHeads(None, "no")
        request = received(*self.GET)
        self.assertTrue(heads.head(request, "c")[0].startswith(b"GET /x?y "))
        to_parent = heads.head(request, "c", True, "Basic YTpi")[0]
        self.assertTrue(to_parent.startswith(b"GET http://a.example/x?y "))
        self.assertIn(b"Proxy-Authorization: Basic YTpi\r\n", to_parent)
        other = heads.head(request, "c", True, "Basic Yjpj")[0]
        self.assertIn(b"Proxy-Authorization: Basic Yjpj\r\n", other)
        self.assertNotIn(b"Proxy-Authorization", heads.head(request, "c", True)[0])

    def test_requests_differing_in_a_field_get_their_own_heads(self) -> None:
        heads = RequestHeads(None, "no")
        self.assertIn(b"X-A: 1\r\n", heads.head(received(*self.GET, "X-A: 1"), "c")[0])
        self.assertIn(b"X-A: 2\r\n", heads.head(received(*self.GET, "X-A: 2"), "c")[0])

    def test_at_most_size_heads_and_none_over_2_kib_are_kept(self) -> None:
        heads = RequestHeads(None, "no", size=2)
        first = received(*self.GET, "X-N: 1")
        kept = heads.head(first, "c")
        for number in (2, 3):
            heads.head(received(*self.GET, f"X-N: {number}"), "c")
        self.assertIsNot(heads.head(first, "c"), kept)
        self.assertEqual(heads.head(first, "c"), kept)
        large = received(*self.GET, "X-Large: " + "a" * 2048)
        self.assertIsNot(heads.head(large, "c"), heads.head(large, "c"))
        dropped = received(*self.GET, "Proxy-Authorization: Basic " + "a" * 2048)
        self.assertLess(len(heads.head(dropped, "c")[0]), 100)
        self.assertIsNot(heads.head(dropped, "c"), heads.head(dropped, "c"))

    def test_refusals_are_raised_each_time(self) -> None:
        heads = RequestHeads(None, "no")
        request = received("TRACE http://a/ HTTP/1.1", "Host: a", "Max-Forwards: 0")
        for _ in range(2):
            with self.assertRaises(ValueError):
                heads.head(request, "c")


NOW = "Tue, 02 Jan 2024 00:00:00 GMT"


def clock() -> str:
    return NOW


def no_clock() -> str:
    raise AssertionError("the clock is read only for a response without Date")


class ResponseFieldsTest(unittest.TestCase):
    def test_hop_by_hop_and_length_removed_via_added(self) -> None:
        fields = [("Date", "Mon, 01 Jan 2024 00:00:00 GMT"), ("Server", "origin"),
                  ("Connection", "close, X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "timeout=5"),
                  ("Transfer-Encoding", "chunked"), ("Content-Length", "10"),
                  ("Proxy-Authenticate", "Basic realm=\"x\""), ("Via", "1.1 cache"),
                  ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
        relayed = relayed_fields(fields)
        self.assertEqual(relayed.text, "Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
                         "Server: origin\r\nVia: 1.1 cache\r\nSet-Cookie: a=1\r\n"
                         "Set-Cookie: b=2\r\n")
        self.assertEqual(added_response_fields(relayed, "1.1 nex-abc", no_clock),
                         [("Via", "1.1 nex-abc")])

    def test_a_parsed_head_s_lines_go_on_as_received(self) -> None:
        # Nothing is formatted again: spacing the grammar allows stays, and of equal lines
        # only the ones named go.
        section = ("Server:origin\r\nX-Spaced:  a  b \t\r\nConnection: X-Hop\r\n"
                   "X-Hop: 1\r\nX-Same: 1\r\nX-Hop: 1\r\nX-Same: 1\r\n")
        relayed = relayed_fields(parse_fields(section, request=False))
        self.assertEqual(relayed.text, "Server:origin\r\nX-Spaced:  a  b \t\r\n"
                                       "X-Same: 1\r\nX-Same: 1\r\n")

    def test_without_via(self) -> None:
        relayed = relayed_fields([("A", "1"), ("date", "x")])
        self.assertEqual(relayed.text, "A: 1\r\ndate: x\r\n")
        self.assertEqual(added_response_fields(relayed, None, no_clock), [])

    def test_a_response_without_date_gets_the_time_it_was_received(self) -> None:
        # RFC 9110 §6.6.1: a recipient with a clock forwarding a response without Date
        # appends one.
        self.assertEqual(added_response_fields(relayed_fields([("A", "1")]), "1.1 nex-abc",
                                               clock),
                         [("Date", NOW), ("Via", "1.1 nex-abc")])

    def test_response_splitting_through_relayed_fields_is_refused(self) -> None:
        # The relayed text goes out as it is: a CR, LF or NUL must never get into it.
        for field in [("X-A", "1\r\nSet-Cookie: evil=1"), ("X-A", "1\n"), ("X-\rA", "1"),
                      ("X-A", "1\0")]:
            with self.subTest(field=field):
                with self.assertRaises(ValueError):
                    relayed_fields([field])


class ViaTest(unittest.TestCase):
    def test_element(self) -> None:
        self.assertEqual(via_element("HTTP/1.1", "nex-ab"), "1.1 nex-ab")
        self.assertEqual(via_element("HTTP/1.0", "nex-ab"), "1.0 nex-ab")

    def test_pseudonyms_differ_and_are_tokens(self) -> None:
        first, second = new_pseudonym(), new_pseudonym()
        self.assertNotEqual(first, second)
        self.assertRegex(first, r"\Anex-[0-9a-f]{16}\Z")

    def test_carries(self) -> None:
        for via, expected in (
                (None, False), ("", False), ("1.1 nex-ab", True), ("1.0 a, 1.1 nex-ab", True),
                ("1.1 NEX-AB", True), ("1.1 nex-ab (Nex/0.1)", True),
                ("1.1 nex-ab,1.1 b", True), ("HTTP/1.1 nex-ab", True),
                ("1.1 nex-abc", False), ("1.1 xnex-ab", False), ("1.1 nex-a", False)):
            with self.subTest(via=via):
                self.assertIs(via_carries(via, "nex-ab"), expected)


if __name__ == "__main__":
    unittest.main()
