"""The HTTP grammar module, rule by rule, table-driven: what each rule accepts and refuses."""

from __future__ import annotations

import re
import unittest

from hypothesis import given, settings
from hypothesis import strategies as st

from nex.http import grammar
from nex.http.grammar import (ABSOLUTE_FORM, ASCTIME_DATE, CHUNK_LINE, CONTENT_LENGTH, DAY_NAMES,
                         ENTITY_TAG, FIELD_NAME, FIELD_SECTION, FIELD_VALUE, HOST, HOST_LABELS,
                         HOSTNAME, HTTP_DATE_FORMS, HTTP_VERSION, IMF_FIXDATE, LONG_DAY_NAMES,
                         MEDIA_RANGE, MEDIA_TYPE, METHOD, MONTHS, ORIGIN_FORM,
                         RANGE_SPEC, RANGES_SPECIFIER, REQUEST_TARGET, RFC850_DATE,
                         TCHAR_BYTES, TOKEN, TRANSFER_CODING, WEIGHTED_CODING, ipv6_address,
                         is_hostname, parse_host, parse_list, split_host)

TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# rule, values it matches whole, values it does not
RULES = [
    ("token", TOKEN, [TCHARS, "GET", "x-gzip", "M-SEARCH", "a"],
     ["", "a b", "a,b", "a;b", "a=b", "a/b", "(a)", "a:", "\"a\"", "caf\xe9", "a\x00",
      "a\t", "\u0130"]),
    # Only other rules use quoted-string, so it is tested from its text.
    ("quoted-string", re.compile(grammar._QUOTED_STRING),  # pylint: disable=protected-access
     ['""', '"a b"', '"a,b;c=d"', '"\\""', '"\\\\"', '"\t"', '"caf\xe9"', '"\\\xe9"'],
     ['"', 'a', '"a', 'a"', '"a"b', '"\\"', '"\x00"', '"\x7f"', '"a\nb"', '"\\\x00"']),
    ("field-name", FIELD_NAME, ["Host", "content-length", "X-A_b"],
     ["", "Host ", " Host", "X:Y", "X/Y", "X\xe9"]),
    ("field-value", FIELD_VALUE,
     ["", "a", "a b", "a\tb", "a  \t b", "caf\xe9", "\xff", "!~", "a,b;c=\"d\""],
     [" a", "a ", "\ta", "a\t", "a\x00b", "a\rb", "a\nb", "a\x7fb", "a\x0bb", " "]),
    ("method", METHOD, ["GET", "get", "M-SEARCH", "PRI"], ["", "GE T", "GE/T", "[GET]"]),
    ("HTTP-version", HTTP_VERSION, ["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/9.9", "HTTP/0.9"],
     ["HTTP/1", "HTTP/11", "HTTP/1.1.1", "http/1.1", "HTTP/1.\u0661", "HTTP /1.1", "HTTP/1.x",
      " HTTP/1.1"]),
    ("request-target", REQUEST_TARGET, ["/", "*", "/a?b", "http://h/", "h:1", '/"'],
     ["", "/a b", "/a#b", "/\x7f", "/caf\xe9", "/\x00"]),
    ("origin-form", ORIGIN_FORM, ["/", "/a/b", "/a?", "/a?b?c", "//x"], ["a", "*", "?a", ""]),
    ("absolute-form", ABSOLUTE_FORM,
     ["http://h", "http://h/", "HTTPS://h/x?y", "http://[::1]:80/", "http://h?q"],
     ["ftp://h/", "http:/h", "h/x", "/x", "httpx://h/"]),
    ("Host", HOST, ["", "h", "h:", "h:80", "a.b.c", "127.0.0.1:8080", "[::1]", "[::1]:80",
                    "a%41b", "a-b_c~d", "!$&'()*+,;="],
     ["h:8o", "h:1:2", "::1", "[::1", "u@h", "h/x", "h x", "a%4", "[::1]x", "[v1.x]"]),
    ("host labels", HOST_LABELS, ["a", "a.b", "a_b-c", "127.0.0.1", "A.B"],
     ["", ".", "a.", ".a", "a..b", "a%41", "a~b"]),
    ("RFC 1123 host name", HOSTNAME, ["a", "localhost", "example.com", "A-1.b", "x" * 63],
     ["", "-a", "a-", "a_b", "a..b", "a.", "x" * 64, "caf\xe9"]),
    ("Content-Length", CONTENT_LENGTH, ["0", "12", "007", "5,5", "5 , 5", "9" * 18],
     ["", "-1", "+5", "0x10", "1_0", "1 0", "5,", ",5", "9" * 19, "\u0665"]),
    ("transfer-coding", TRANSFER_CODING,
     ["chunked", "gzip", "x;a=b", "x ; a = \"b,c\"", "x;a=b;c=d"],
     ["", "chunked;x", "a b", "x;=b", "x;a=", "x;a=\"b"]),
    ("chunk line", CHUNK_LINE, ["0", "1a", "F" * 16, "1;a", "1 ; a = b", "1;a=\"x;y\";b"],
     ["", "g", "F" * 17, "1;", "1;a=", " 1", "1 ", "-1", "+1"]),
    ("media-type", MEDIA_TYPE, ["text/html", "a/b", "text/plain; charset=utf-8",
                                "a/b;x=\"y z\"", "a/b ;", "a/b;;x=y"],
     ["", "text", "text/", "/html", "text/html/x", "text/html; charset", "a b/c"]),
    ("qvalue", re.compile("a;q=" + grammar._QVALUE),  # pylint: disable=protected-access
     ["a;q=0", "a;q=0.", "a;q=0.5", "a;q=0.123", "a;q=1", "a;q=1.", "a;q=1.000"],
     ["a;q=", "a;q=2", "a;q=0.1234", "a;q=1.001", "a;q=1.5", "a;q=.5", "a;q=-0", "a;q= 1"]),
    ("Accept-Encoding element", WEIGHTED_CODING,
     ["gzip", "*", "br;q=0.5", "br ; Q=1", "identity;q=0"],
     ["gzip;q=2", "gzip;q= 1", "gzip;level=9", "gzip br", "gzip;q=0.1234"]),
    ("Accept element", MEDIA_RANGE,
     ["*/*", "text/*", "text/html", "text/html;q=0.5", "text/html ; Q=1.000",
      "text/html;level=1;q=0", 'a/b;x="y;q=1"', "a/b;", "a/b;;q=0.1", "*/html"],
     ["", "text", "text/", "text/html;q=2", "text/html;q=0.5;level=1", "text/html;q",
      "text/html; level", "a b/c", "text/html;q=.5"]),
    ("entity-tag", ENTITY_TAG, ['""', '"a"', 'W/"a"', '"a,b"', '"caf\xe9"'],
     ['a', 'W/a', 'w/"a"', '"a" ', '"a b"', '"a"b"', 'W/ "a"']),
    ("ranges-specifier", RANGES_SPECIFIER, ["bytes=0-1", "x=", "bytes=,", "bytes=0-1\r\n"],
     ["bytes", "=0-1", "bytes =0-1", " bytes=0-1"]),
    ("range-spec", RANGE_SPEC, ["0-", "0-1", "-5", "007-010", "10-9"],
     ["", "-", "1", "--1", "1-2-3", " 0-1", "+1-2", "0x1-2"]),
    ("IMF-fixdate", IMF_FIXDATE,
     ["Sun, 06 Nov 1994 08:49:37 GMT", "Mon, 00 Jan 0000 99:99:99 GMT"],
     ["Sun, 6 Nov 1994 08:49:37 GMT", "sun, 06 Nov 1994 08:49:37 GMT",
      "Sun, 06 nov 1994 08:49:37 GMT", "Sunday, 06 Nov 1994 08:49:37 GMT",
      "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Nov 94 08:49:37 GMT"]),
    ("rfc850-date", RFC850_DATE, ["Sunday, 06-Nov-94 08:49:37 GMT"],
     ["Sun, 06-Nov-94 08:49:37 GMT", "Sunday, 06-Nov-1994 08:49:37 GMT",
      "Sunday, 06 Nov 94 08:49:37 GMT"]),
    ("asctime-date", ASCTIME_DATE, ["Sun Nov  6 08:49:37 1994", "Wed Nov 16 08:49:37 1994"],
     ["Sun Nov 6 08:49:37 1994", "Sun Nov 06 08:49:37 94", "Sun Nov  6 08:49:37 1994 GMT"]),
]


class RuleTest(unittest.TestCase):
    """Every rule, matched against whole values."""

    def test_rules(self) -> None:
        for name, rule, valid, invalid in RULES:
            for value in valid:
                with self.subTest(rule=name, value=value):
                    self.assertIsNotNone(rule.fullmatch(value))
            for value in invalid:
                with self.subTest(rule=name, value=value):
                    self.assertIsNone(rule.fullmatch(value))

    def test_tchar_bytes_are_the_token_characters(self) -> None:
        self.assertEqual(TCHAR_BYTES, frozenset(TCHARS.encode("ascii")))
        self.assertEqual(TCHAR_BYTES, {byte for byte in range(256)
                                       if TOKEN.fullmatch(chr(byte))})

    def test_groups(self) -> None:
        self.assertEqual(HTTP_VERSION.fullmatch("HTTP/1.2").group("major", "minor"), ("1", "2"))
        self.assertEqual(ORIGIN_FORM.fullmatch("/a?b?c").group("path", "query"), ("/a", "b?c"))
        self.assertEqual(ORIGIN_FORM.fullmatch("/a").group("query"), None)
        absolute = ABSOLUTE_FORM.fullmatch("http://h:1?q")
        self.assertEqual(absolute.group("authority", "path", "query"), ("h:1", None, "q"))
        self.assertEqual(HOST.fullmatch("[::1]:80").group("host", "ipv6", "port"),
                         ("[::1]", "::1", "80"))
        self.assertEqual(TRANSFER_CODING.fullmatch("gzip;a=b").group("name", "params"),
                         ("gzip", ";a=b"))
        self.assertEqual(CHUNK_LINE.fullmatch("1f;x").group("size", "ext"), ("1f", ";x"))
        self.assertEqual(MEDIA_TYPE.fullmatch("a/b; c=d").group("type", "subtype", "parameters"),
                         ("a", "b", "; c=d"))
        self.assertEqual(WEIGHTED_CODING.fullmatch("br;q=0.5").group("coding", "qvalue"),
                         ("br", "0.5"))
        self.assertEqual(MEDIA_RANGE.fullmatch("a/b; c=d ;q=0.7").group("type", "subtype",
                                                                          "qvalue"),
                         ("a", "b", "0.7"))
        self.assertIsNone(MEDIA_RANGE.fullmatch("a/b;c=d").group("qvalue"))
        self.assertEqual(ENTITY_TAG.fullmatch('W/"x"').group("weak", "tag"), ("W/", '"x"'))
        self.assertEqual(RANGE_SPEC.fullmatch("-5").group("first", "last", "suffix"),
                         (None, None, "5"))
        self.assertEqual(RANGES_SPECIFIER.fullmatch("bytes=0-1").group("unit", "set"),
                         ("bytes", "0-1"))

    def test_date_groups_in_every_form(self) -> None:
        for value in ("Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                      "Sun Nov  6 08:49:37 1994"):
            with self.subTest(value=value):
                matches = [form.fullmatch(value) for form in HTTP_DATE_FORMS]
                self.assertEqual(sum(match is not None for match in matches), 1)
                match = next(match for match in matches if match is not None)
                self.assertEqual(match.group("month", "hour", "minute", "second"),
                                 ("Nov", "08", "49", "37"))
                self.assertEqual(match.group("day").lstrip(" ").zfill(2), "06")
                self.assertIn(match.group("year"), ("1994", "94"))

    def test_every_name_of_a_day_and_month(self) -> None:
        self.assertEqual(len(DAY_NAMES), 7)
        self.assertEqual(len(LONG_DAY_NAMES), 7)
        self.assertEqual(len(MONTHS), 12)
        for short, long in zip(DAY_NAMES, LONG_DAY_NAMES):
            self.assertTrue(long.startswith(short))
            for month in MONTHS:
                with self.subTest(day=short, month=month):
                    self.assertIsNotNone(IMF_FIXDATE.fullmatch(f"{short}, 01 {month} 2000 "
                                                               "00:00:00 GMT"))
                    self.assertIsNotNone(RFC850_DATE.fullmatch(f"{long}, 01-{month}-00 "
                                                               "00:00:00 GMT"))
                    self.assertIsNotNone(ASCTIME_DATE.fullmatch(f"{short} {month}  1 "
                                                                "00:00:00 2000"))

    def test_field_section(self) -> None:
        valid = ["", "Host: h\r\n", "A:1\r\nB: \t2 \t\r\n", "X:\r\n", "X: caf\xe9\r\n"]
        invalid = ["Host: h", "Host: h\n", " Host: h\r\n", "Host : h\r\n", "X: a\r\n b\r\n",
                   "X: a\x00\r\n", ": v\r\n", "X/Y: 1\r\n", "X: a\rb\r\n", "X: \u0100\r\n"]
        for value in valid:
            with self.subTest(value=value):
                self.assertIsNotNone(FIELD_SECTION.fullmatch(value))
        for value in invalid:
            with self.subTest(value=value):
                self.assertIsNone(FIELD_SECTION.fullmatch(value))

    @settings(max_examples=500, deadline=None)
    @given(st.lists(st.tuples(st.text("!#$%&'*+-.^_`|~aZ09 \t/", max_size=6),
                              st.binary(max_size=8).map(lambda raw: raw.replace(b"\r\n", b""))
                              | st.text(" \t\x00\x7fa~\xe9\r\n", max_size=8).map(
                                  lambda text: text.encode("latin-1"))), max_size=4))
    def test_field_section_is_field_line_after_field_line(self, lines) -> None:
        # The one-pass pattern accepts a section exactly when RFC 9112 §5's field-line rule,
        # written out by its parts, accepts each line.
        section = "".join(f"{name}:{value.decode('latin-1')}\r\n" for name, value in lines)
        expected = all(TOKEN.fullmatch(name) and FIELD_VALUE.fullmatch(
            value.decode("latin-1").strip(" \t")) for name, value in lines)
        self.assertEqual(FIELD_SECTION.fullmatch(section) is not None, bool(expected))


# value, element, the elements' text or None for "not such a list"
LISTS = [
    ("", TOKEN, []),
    ("a", TOKEN, ["a"]),
    ("a,b", TOKEN, ["a", "b"]),
    ("a , \tb", TOKEN, ["a", "b"]),
    (",a,,b,", TOKEN, ["a", "b"]),
    (", ,a , ,", TOKEN, ["a"]),
    (",", TOKEN, []),
    (" ,a", TOKEN, ["a"]),
    ("a b", TOKEN, None),
    (" a", TOKEN, None),  # OWS around a field value is the field's, already removed
    ("a ", TOKEN, None),
    ("a;b", TOKEN, None),
    ("a,(b)", TOKEN, None),
    ('"a,b", W/"c"', ENTITY_TAG, ['"a,b"', 'W/"c"']),
    ('"a""b"', ENTITY_TAG, None),
    ('"a" "b"', ENTITY_TAG, None),
    ('gzip;q=0.5, br', WEIGHTED_CODING, ["gzip;q=0.5", "br"]),
    ('gzip;q=0.55555', WEIGHTED_CODING, None),
    ('x;a="b,c", chunked', TRANSFER_CODING, ['x;a="b,c"', "chunked"]),
    ("0-1,-5, 7-", RANGE_SPEC, ["0-1", "-5", "7-"]),
    ("0-1x", RANGE_SPEC, None),
    ("1-2-3", RANGE_SPEC, None),
    ("text/html,application/xml;q=0.9,*/*;q=0.8", MEDIA_RANGE,
     ["text/html", "application/xml;q=0.9", "*/*;q=0.8"]),
    ('a/b;x="1,2";q=0.1 , c/d', MEDIA_RANGE, ['a/b;x="1,2";q=0.1', "c/d"]),
    ("a/b;q=0.5;x=y, c/d", MEDIA_RANGE, None),
]


class ParseListTest(unittest.TestCase):
    """RFC 9110 §5.6.1: #element lists, empty elements skipped, nothing else tolerated."""

    def test_lists(self) -> None:
        for value, element, expected in LISTS:
            with self.subTest(value=value):
                found = parse_list(value, element)
                self.assertEqual(None if found is None else [match.group(0) for match in found],
                                 expected)

    def test_matches_keep_their_groups(self) -> None:
        found = parse_list("gzip;q=0.5, br", WEIGHTED_CODING)
        self.assertEqual([match.group("coding", "qvalue") for match in found],
                         [("gzip", "0.5"), ("br", None)])

    def test_an_element_cut_at_a_separator_is_no_element(self) -> None:
        # RANGE_SPEC matches the "1-2" of "1-2-3", which is followed by neither a comma
        # nor the end: the list is malformed, not the element shortened.
        self.assertIsNone(parse_list("1-2-3, 4-5", RANGE_SPEC))

    def test_long_malformed_lists_end(self) -> None:
        for value in ("a" * 100_000 + " b", "a," * 50_000 + "(", '"' + "a" * 100_000,
                      "0" * 100_000 + "-" + "1" * 100_000 + " x",
                      "a/b" + ";  " * 30_000 + "x", "a/b" + "; x=y " * 20_000 + "!"):
            with self.subTest(length=len(value)):
                for element in (TOKEN, ENTITY_TAG, RANGE_SPEC, TRANSFER_CODING, MEDIA_RANGE):
                    self.assertIsNone(parse_list(value, element))


class HostTest(unittest.TestCase):
    """Host values: validity, the canonical (host, port) pair, and RFC 1123 names."""

    def test_parse_host_checks_ipv6(self) -> None:
        self.assertIsNotNone(parse_host("[2001:db8::1]:80"))
        self.assertIsNotNone(parse_host("[::ffff:1.2.3.4]"))
        for value in ("[::g]", "[1:2]", "[:::]", "[1::2::3]", "h:x"):
            with self.subTest(value=value):
                self.assertIsNone(parse_host(value))

    SPLIT = [
        ("localhost", ("localhost", None)),
        ("LocalHost:8080", ("localhost", 8080)),
        ("example.com.", ("example.com", None)),
        ("example.com.:80", ("example.com", 80)),
        ("a.b:", ("a.b", None)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]", ("::1", None)),
        ("[0:0:0:0:0:0:0:1]:443", ("::1", 443)),
        ("[2001:DB8::1]", ("2001:db8::1", None)),
        ("[::FFFF:7F00:1]:80", ("::ffff:127.0.0.1", 80)),
        ("[::ffff:127.0.0.1]", ("::ffff:127.0.0.1", None)),
        ("h:65535", ("h", 65535)),
        ("my_host", ("my_host", None)),
        ("h:65536", None),
        ("h:000080", None),
        ("", None),
        (".", None),
        ("a..b", None),
        ("a%41", None),
        ("a~b", None),
        ("[::1", None),
        ("[::1]x", None),
        ("[nonsense]", None),
        ("::1", None),
        ("h:1:2", None),
        ("[fe80::1%25eth0]", None),
    ]

    def test_split_host(self) -> None:
        for value, expected in self.SPLIT:
            with self.subTest(value=value):
                self.assertEqual(split_host(value), expected)

    def test_ipv6_address(self) -> None:
        self.assertEqual(ipv6_address("0:0::1"), "::1")
        for text in ("::FFFF:1.2.3.4", "::ffff:102:304", "0:0:0:0:0:ffff:0102:0304"):
            with self.subTest(text=text):
                self.assertEqual(ipv6_address(text), "::ffff:1.2.3.4")
        self.assertEqual(ipv6_address("::ffff:0:0"), "::ffff:0.0.0.0")
        self.assertEqual(ipv6_address("::FFFF:FFFF:FFFF"), "::ffff:255.255.255.255")
        # Only IPv4-mapped addresses are written dotted; the rest stay hexadecimal.
        for text, expected in (("::1.2.3.4", "::102:304"),
                               ("64:ff9b::1.2.3.4", "64:ff9b::102:304"),
                               ("::ffff:0:1.2.3.4", "::ffff:0:102:304"),
                               ("2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1")):
            with self.subTest(text=text):
                self.assertEqual(ipv6_address(text), expected)
        for text in ("", "1.2.3.4", "::g", "fe80::1%eth0", "[::1]", " ::1"):
            with self.subTest(text=text):
                self.assertIsNone(ipv6_address(text))

    def test_is_hostname(self) -> None:
        for text in ("localhost", "example.com", "a-b.example", "x1.y2", "1a"):
            with self.subTest(text=text):
                self.assertTrue(is_hostname(text))
        for text in ("", "1.2.3.4", "a.1", "999", "a..b", "-a.com", "a_b.com",
                     ".".join(["a" * 63] * 4) + ".a"):
            with self.subTest(text=text):
                self.assertFalse(is_hostname(text))
        self.assertTrue(is_hostname(".".join(["a" * 63] * 3) + "." + "a" * 61))


if __name__ == "__main__":
    unittest.main()
