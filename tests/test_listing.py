"""Folder listings: escaping, links, order, sizes, entries that cannot be served, JSON,
content negotiation, sorting and breadcrumbs."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import tempfile
import unittest
from unittest import mock
from urllib.parse import quote

from nex import SERVER_SOFTWARE
from nex.process.config import Config
from nex.http.errors import HTTPError
from nex.files.listing import (ListingCache, breadcrumbs, human_size, listing_view, prefers_json,
                         read_folder, render_listing)
from nex.http.request import Headers, Request
from nex.files.paths import Target, resolve
from nex.files.templates import Template, TemplateSet
from tests.support import NexServer, ResponseReader
from tests.support.fakes import FakeClock

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGNATURE = "Nex/0.1 Server at localhost Port 8080"
ICON = r'<svg class="icon" aria-hidden="true"><use href="#i-[a-z]+"></use></svg>'
ROW_LINK = re.compile(r'<td class="name">' + ICON + r'<a href="([^"]*)">([^<]*)</a></td>')
ROW_TYPE = re.compile(r'<a href="[^"]*">([^<]*)</a></td>.*?<td class="type">([^<]*)</td>')
#: A whole row of the shipped page: link, shown name, size cell, time, type.
ROW = re.compile(r'<tr data-kind="[a-z]+"><td class="name">' + ICON +
                 r'<a href="([^"]*)">([^<]*)</a></td>'
                 r'<td class="size"(?: title="(\d+) bytes")?>[^<]*</td>'
                 r'<td class="mtime">(?:<time datetime="([^"]*)">[^<]*</time>)?</td>'
                 r'<td class="type">([^<]*)</td></tr>')
HTML_HEADERS = [("Content-Type", "text/html; charset=utf-8"), ("Vary", "Accept")]
JSON_HEADERS = [("Content-Type", "application/json"), ("Vary", "Accept")]


def request_for(path, query="", accept=None):
    headers = [("Host", "localhost")] + ([("Accept", accept)] if accept is not None else [])
    target = path + ("?" + query if query else "")
    return Request("GET", target, path, query, "HTTP/1.1", Headers(headers), "localhost", True)


def shipped_templates():
    return TemplateSet.load(os.path.join(PROJECT, "error_pages"),
                            os.path.join(PROJECT, "other_templates"))


class ListingTestCase(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="nex-listing-")
        self.addCleanup(shutil.rmtree, self.root)
        page = Template("{{-PATH-}}|{{-SUMMARY-}}|{{-SIGNATURE-}}|{{-SERVER_SOFTWARE-}}\n"
                        "{{-ROWS-}}", "dir.html")
        self.templates = TemplateSet({}, Template("", "error.html"), page)

    def write(self, name, size=0):
        path = os.path.join(self.root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as file:
            file.write(b"x" * size)
        return path

    def folder(self, name):
        os.makedirs(os.path.join(self.root, name))

    def outside_folder(self):
        """A temporary folder outside the root holding ``secret.txt``, for links to point at."""
        outside = tempfile.mkdtemp(prefix="nex-outside-")
        self.addCleanup(shutil.rmtree, outside)
        with open(os.path.join(outside, "secret.txt"), "wb") as file:
            file.write(b"secret")
        return outside

    def config(self, **settings):
        return Config(document_root=self.root, **settings)

    def target(self, url_path="/", fs_path=None):
        """A folder Target as resolve() gives it, for ``fs_path`` (the root by default)."""
        return Target("directory", fs_path or self.root, url_path, os.stat(self.root))

    def respond(self, url_path="/sub/", query="", accept=None, templates=None, **settings):
        target = self.target(url_path)
        response = render_listing(target, request_for(url_path, query, accept),
                                  templates or self.templates, SIGNATURE,
                                  self.config(**settings))
        self.assertEqual(response.status, 200)
        self.assertEqual(len(response.body), 1)
        return response

    def render(self, url_path="/sub/", show_dotfiles=False, templates=None, mime_types=None,
               query="", **settings):
        response = self.respond(url_path, query, None, templates, dotfiles=show_dotfiles,
                                mime_types=mime_types or {}, **settings)
        self.assertEqual(response.headers, HTML_HEADERS)
        return response.body[0].decode("utf-8")

    def json_entries(self, url_path="/sub/", query="format=json", accept=None, **settings):
        response = self.respond(url_path, query, accept, **settings)
        self.assertEqual(response.headers, JSON_HEADERS)
        return json.loads(response.body[0].decode("utf-8"))

    def links(self, page):
        """``(href, shown name)`` of each row, parent link included, names unescaped."""
        return [(href, html.unescape(name)) for href, name in ROW_LINK.findall(page)]


class EscapingTest(ListingTestCase):
    def test_hostile_names_are_html_escaped(self):
        for name in ["<script>alert(1)", 'a"b', "a&b", "'single'", "<b>&amp;"]:
            self.write(name)
        page = self.render()
        self.assertNotIn("<script>", page)
        self.assertNotIn('a"b', page)
        self.assertIn("&lt;script&gt;alert(1)", page)
        self.assertIn("a&quot;b", page)
        self.assertIn("a&amp;b", page)
        self.assertIn("&lt;b&gt;&amp;amp;", page)

    def test_hrefs_are_percent_encoded(self):
        cases = {"a#b": "a%23b", "a?b": "a%3Fb", "50%": "50%25", "a b": "a%20b",
                 "ü.txt": "%C3%BC.txt", "x:y": "x%3Ay", 'q"q': "q%22q", "<t>": "%3Ct%3E",
                 "a&b": "a%26b", "semi;colon": "semi%3Bcolon"}
        for name in cases:
            self.write(name)
        hrefs = dict((name, href) for href, name in self.links(self.render()))
        for name, href in cases.items():
            with self.subTest(name=name):
                self.assertEqual(hrefs[name], href)

    def test_name_cannot_become_a_scheme_link(self):
        self.write("javascript:alert(1)")
        href, _ = self.links(self.render())[1]
        self.assertEqual(href, "javascript%3Aalert%281%29")

    def test_folder_links_end_in_slash(self):
        self.folder("my folder")
        self.assertEqual(self.links(self.render())[1], ("my%20folder/", "my folder/"))

    def test_path_and_signature_are_escaped(self):
        page = self.render(url_path="/<x> & \"y\"/")
        self.assertTrue(page.startswith("/&lt;x&gt; &amp; &quot;y&quot;/|"))
        self.assertIn(f"|{SIGNATURE}|{SERVER_SOFTWARE}\n", page)


class OrderTest(ListingTestCase):
    def test_folders_first_then_files_case_insensitively(self):
        for name in ["b.txt", "A.txt", "c.txt", "Zeta.txt"]:
            self.write(name)
        for name in ["zdir", "Bdir", "adir"]:
            self.folder(name)
        names = [name for _, name in self.links(self.render())]
        self.assertEqual(names, ["../", "adir/", "Bdir/", "zdir/",
                                 "A.txt", "b.txt", "c.txt", "Zeta.txt"])

    def test_parent_link_except_at_root(self):
        self.write("f")
        self.assertEqual(self.links(self.render("/sub/"))[0], ("../", "../"))
        self.assertEqual(self.links(self.render("/"))[0], ("f", "f"))

    def test_summary_counts(self):
        self.write("one")
        self.folder("d")
        self.assertIn("|1 folder, 1 file|", self.render())
        self.write("two")
        self.assertIn("|1 folder, 2 files|", self.render())

    def test_empty_folder(self):
        page = self.render("/")
        self.assertIn("|0 folders, 0 files|", page)
        self.assertEqual(self.links(page), [])


class EntriesTest(ListingTestCase):
    def test_dotfiles_hidden_unless_shown(self):
        self.write(".env")
        self.folder(".git")
        self.write("visible")
        self.assertEqual([n for _, n in self.links(self.render("/"))], ["visible"])
        self.assertEqual([n for _, n in self.links(self.render("/", show_dotfiles=True))],
                         [".git/", ".env", "visible"])

    def test_upload_temporary_files_are_never_listed(self):
        self.write(".nex-upload-0123456789abcdef")
        self.write(".env")
        self.assertEqual([n for _, n in self.links(self.render("/", show_dotfiles=True))],
                         [".env"])

    def test_broken_symlink_is_skipped(self):
        os.symlink(os.path.join(self.root, "missing"), os.path.join(self.root, "broken"))
        self.write("real")
        self.assertEqual([n for _, n in self.links(self.render("/"))], ["real"])

    def test_symlinked_folder_is_listed_as_folder(self):
        self.folder("real")
        os.symlink("real", os.path.join(self.root, "alias"))
        self.assertEqual([n for _, n in self.links(self.render("/"))], ["alias/", "real/"])

    def test_name_with_a_backslash_is_skipped(self):
        # Its link would be %5C, which the resolver refuses: GET could never serve it.
        self.write("back\\slash.txt")
        self.write("plain.txt")
        self.assertEqual([n for _, n in self.links(self.render("/"))], ["plain.txt"])

    def test_special_files_are_skipped(self):
        if not hasattr(os, "mkfifo"):
            self.skipTest("no FIFOs here")
        os.mkfifo(os.path.join(self.root, "pipe"))
        self.assertEqual(self.links(self.render("/")), [])

    def test_undecodable_name_is_skipped(self):
        try:
            with open(os.path.join(os.fsencode(self.root), b"bad\xff"), "wb"):
                pass
        except OSError:
            self.skipTest("the file system refuses non-UTF-8 names")
        self.write("good")
        self.assertEqual([n for _, n in self.links(self.render("/"))], ["good"])

    def test_entry_vanishing_during_scan_is_skipped(self):
        self.write("stays")
        self.write("goes")
        real_scandir = os.scandir

        def scandir(path):
            iterator = real_scandir(path)
            os.remove(os.path.join(self.root, "goes"))
            return iterator

        folder = Target("directory", self.root, "/", os.stat(self.root))
        with mock.patch("os.scandir", scandir):
            entries = read_folder(folder, self.config())
        self.assertEqual([name for name, _, _ in entries], ["stays"])

    def test_unreadable_folder_is_403(self):
        with mock.patch("os.scandir", side_effect=PermissionError(13, "denied")):
            with self.assertRaises(HTTPError) as caught:
                self.render()
        self.assertEqual(caught.exception.status, 403)

    def test_vanished_folder_is_404(self):
        target = self.target("/gone/", os.path.join(self.root, "gone"))
        with self.assertRaises(HTTPError) as caught:
            render_listing(target, request_for("/gone/"), self.templates, SIGNATURE,
                           self.config())
        self.assertEqual(caught.exception.status, 404)


class ServableEntriesTest(ListingTestCase):
    """A listing shows exactly the entries GET would serve, under every symlink policy."""

    # name: listed under (never, inside, always), with dotfiles off.
    EXPECTED = {
        "plain.txt": (True, True, True),
        "folder": (True, True, True),
        "link-inside.txt": (False, True, True),
        "link-to-folder-inside": (False, True, True),
        "link-outside.txt": (False, False, True),
        "link-to-folder-outside": (False, False, True),
        "link-to-etc-passwd": (False, False, True),
        "broken-link": (False, False, False),
        "looping-link": (False, False, False),
        ".dotfile": (False, False, False),
        # A link judged at its real path (under "inside") hides a dotfile too.
        "link-inside-to-dotfile": (False, False, True),
    }
    POLICIES = ("never", "inside", "always")

    def setUp(self):
        super().setUp()
        self.outside = self.outside_folder()
        os.makedirs(os.path.join(self.outside, "dir"))
        self.write("plain.txt", size=3)
        self.folder("folder")
        self.write(".dotfile")
        links = {"link-inside.txt": "plain.txt", "link-to-folder-inside": "folder",
                 "link-outside.txt": os.path.join(self.outside, "secret.txt"),
                 "link-to-folder-outside": os.path.join(self.outside, "dir"),
                 "link-to-etc-passwd": "/etc/passwd",
                 "broken-link": os.path.join(self.root, "missing"),
                 "looping-link": "looping-link", "link-inside-to-dotfile": ".dotfile"}
        for name, target in links.items():
            os.symlink(target, os.path.join(self.root, name))

    def listed(self, **settings):
        config = Config(document_root=self.root, **settings)
        target = resolve("/", "", config)
        response = render_listing(target, request_for("/"), self.templates, SIGNATURE, config)
        page = response.body[0].decode("utf-8")
        return {name.rstrip("/") for _, name in self.links(page)}

    def served_by_get(self, name, **settings):
        """True when GET of the entry's link answers with the file or a folder redirect."""
        try:
            resolve("/" + quote(name, safe=""), "", Config(document_root=self.root, **settings))
        except HTTPError as error:
            return error.status == 301
        return True

    def test_table_of_entries_by_policy(self):
        if not os.path.exists("/etc/passwd"):
            self.skipTest("no /etc/passwd to link to")
        for index, policy in enumerate(self.POLICIES):
            with self.subTest(policy=policy):
                expected = {name for name, listed in self.EXPECTED.items() if listed[index]}
                self.assertEqual(self.listed(symlinks=policy), expected)

    def test_listed_exactly_when_get_serves(self):
        for policy in self.POLICIES:
            for dotfiles in (False, True):
                listed = self.listed(symlinks=policy, dotfiles=dotfiles)
                for name in os.listdir(self.root):
                    with self.subTest(policy=policy, dotfiles=dotfiles, name=name):
                        self.assertEqual(name in listed,
                                         self.served_by_get(name, symlinks=policy,
                                                            dotfiles=dotfiles))

    def test_dotfiles_listed_when_allowed(self):
        self.assertIn(".dotfile", self.listed(dotfiles=True))

    def test_link_row_shows_what_the_link_leads_to(self):
        config = Config(document_root=self.root, symlinks="inside")
        page = render_listing(resolve("/", "", config), request_for("/"), self.templates,
                              SIGNATURE, config).body[0].decode("utf-8")
        self.assertIn('<a href="link-to-folder-inside/">link-to-folder-inside/</a>', page)
        self.assertRegex(page, r'<a href="link-inside.txt">link-inside.txt</a></td>'
                               r'<td class="size" title="3 bytes">')

    def test_entries_of_a_folder_reached_through_a_link(self):
        # Under "inside" the folder's Target holds its real path; entries are judged from it.
        os.symlink(os.path.join(self.outside, "secret.txt"),
                   os.path.join(self.root, "folder", "escape.txt"))
        self.write("folder/kept.txt")
        for path in ("/folder/", "/link-to-folder-inside/"):
            with self.subTest(path=path):
                config = Config(document_root=self.root, symlinks="inside")
                target = resolve(path, "", config)
                names = [name for name, _, _ in read_folder(target, config)]
                self.assertEqual(names, ["kept.txt"])


class CellTest(ListingTestCase):
    def test_human_sizes(self):
        cases = [(0, "0 B"), (1, "1 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                 (1536, "1.5 KiB"), (1024 * 1024, "1.0 MiB"), (5 * 1024 ** 3, "5.0 GiB"),
                 (3 * 1024 ** 4, "3.0 TiB"), (2048 * 1024 ** 5, "2048.0 PiB")]
        for size, text in cases:
            with self.subTest(size=size):
                self.assertEqual(human_size(size), text)

    def test_size_cell_has_exact_bytes(self):
        self.write("f", size=1536)
        self.assertIn('<td class="size" title="1536 bytes">1.5 KiB</td>', self.render())

    def test_modification_time_is_utc(self):
        path = self.write("f")
        os.utime(path, (0, 1795483800))  # 2026-11-24 01:30:00 UTC
        self.assertIn('<time datetime="2026-11-24T01:30:00Z">2026-11-24 01:30</time>',
                      self.render())

    def test_types(self):
        # The type a GET sends, without the charset Nex adds to text.
        expected = {"a.html": "text/html", "A.PNG": "image/png", "x.tar.gz": "application/gzip",
                    "README": "application/octet-stream",
                    "data:,hello": "application/octet-stream"}
        for name in expected:
            self.write(name)
        self.folder("d")
        shown = dict(ROW_TYPE.findall(self.render()))
        self.assertEqual(shown, {**expected, "../": "parent folder", "d/": "folder"})

    def test_types_follow_mime_settings(self):
        self.write("a.html")
        self.write("b.data")
        page = self.render(mime_types={".html": "text/plain", ".data": "text/csv"})
        shown = dict(ROW_TYPE.findall(page))
        self.assertEqual((shown["a.html"], shown["b.data"]), ("text/plain", "text/csv"))


class ShippedTemplateTest(ListingTestCase):
    def test_shipped_listing_page(self):
        templates = shipped_templates()
        self.write("<a>.txt", size=10)
        page = self.render("/x & y/", templates=templates)
        self.assertTrue(page.startswith("<!DOCTYPE html>"))
        self.assertIn("<title>Index of /x &amp; y/</title>", page)
        self.assertIn('<a href="%3Ca%3E.txt">&lt;a&gt;.txt</a>', page)
        self.assertIn('<a href="../">../</a>', page)
        self.assertIn(SIGNATURE, page)
        self.assertNotIn("{{-", page)
        self.assertNotIn('enctype="multipart/form-data"', page)

    def test_shipped_listing_page_shows_the_upload_form_it_is_given(self):
        templates = TemplateSet.load(os.path.join(PROJECT, "error_pages"),
                                     os.path.join(PROJECT, "other_templates"))
        target = Target("directory", self.root, "/", os.stat(self.root))
        form = '<form method="post"><b>raw</b></form>'
        page = render_listing(target, request_for("/"), templates, SIGNATURE, self.config(),
                              upload_form=form).body[0].decode("utf-8")
        self.assertIn("</table>" + form + "\n", page)


class SymlinkPolicyTest(ListingTestCase):
    """A listing shows a link exactly when a GET of it would be served."""

    def setUp(self):
        super().setUp()
        self.outside = self.outside_folder()
        self.write("inside.txt")
        self.folder("real")
        os.symlink(os.path.join(self.outside, "secret.txt"), os.path.join(self.root, "out.txt"))
        os.symlink(self.outside, os.path.join(self.root, "outdir"))
        os.symlink("inside.txt", os.path.join(self.root, "alias.txt"))
        os.symlink("real", os.path.join(self.root, "realalias"))

    def names(self, policy):
        return [name for _, name in self.links(self.render("/", symlinks=policy))]

    def test_each_policy(self):
        cases = {
            "never": ["real/", "inside.txt"],
            "inside": ["real/", "realalias/", "alias.txt", "inside.txt"],
            "always": ["outdir/", "real/", "realalias/", "alias.txt", "inside.txt", "out.txt"],
        }
        for policy, expected in cases.items():
            with self.subTest(policy=policy):
                self.assertEqual(self.names(policy), expected)

    def test_name_with_a_backslash_cannot_be_asked_for(self):
        self.write("a\\b")
        self.assertNotIn("a\\b", self.names("inside"))


class JsonTest(ListingTestCase):
    HOSTILE = ["<script>alert(1)", 'a"b', "a&b", "50%", "ü.txt", "x:y", "#1", "sp ace.html"]

    def populate(self):
        for index, name in enumerate(self.HOSTILE):
            os.utime(self.write(name, size=index * 700), (0, 1795483800 + index * 60))
        self.folder("<dir> & co")
        os.utime(os.path.join(self.root, "<dir> & co"), (0, 1795483800))

    def test_json_and_html_show_the_same_entries(self):
        self.populate()
        for query in ("", "sort=size&order=desc", "sort=time"):
            with self.subTest(query=query):
                page = self.render(templates=shipped_templates(), query=query)
                rows = [(href, html.unescape(shown).rstrip("/"),
                         int(size) if size else None, stamp or None, html.unescape(kind))
                        for href, shown, size, stamp, kind in ROW.findall(page)]
                entries = self.json_entries(query="format=json&" + query)
                as_rows = [(entry["href"], entry["name"], entry["size"], entry["mtime"],
                            "folder" if entry["type"] == "directory" else entry["type"])
                           for entry in entries]
                self.assertEqual(as_rows, rows)
                self.assertEqual(len(rows), len(self.HOSTILE) + 1)

    def test_fields(self):
        os.utime(self.write("notes.txt", size=12), (0, 1795483800))
        self.folder("d")
        os.utime(os.path.join(self.root, "d"), (0, 1795483860))
        self.assertEqual(self.json_entries(), [
            {"name": "d", "type": "directory", "size": None, "mtime": "2026-11-24T01:31:00Z",
             "href": "d/"},
            {"name": "notes.txt", "type": "text/plain", "size": 12,
             "mtime": "2026-11-24T01:30:00Z", "href": "notes.txt"}])

    def test_names_and_links_are_exact(self):
        self.write("a b?#%.txt")
        self.folder("ü")
        self.assertEqual([(entry["name"], entry["href"]) for entry in self.json_entries()],
                         [("ü", "%C3%BC/"), ("a b?#%.txt", "a%20b%3F%23%25.txt")])

    def test_empty_folder_is_an_empty_array(self):
        self.assertEqual(self.json_entries(), [])

    def test_dotfiles_follow_the_setting(self):
        self.write(".env")
        self.write("visible")
        self.assertEqual([entry["name"] for entry in self.json_entries()], ["visible"])
        self.assertEqual([entry["name"] for entry in self.json_entries(dotfiles=True)],
                         [".env", "visible"])

    def test_accept_json_gets_json(self):
        self.write("f")
        self.assertEqual(len(self.json_entries(query="", accept="application/json")), 1)

    def test_format_wins_over_accept(self):
        self.write("f")
        response = self.respond(query="format=html", accept="application/json")
        self.assertEqual(response.headers, HTML_HEADERS)
        self.assertEqual(len(self.json_entries(query="format=json", accept="text/html")), 1)

    def test_unknown_format_falls_back_to_negotiation(self):
        self.assertEqual(self.respond(query="format=xml").headers, HTML_HEADERS)
        self.assertEqual(self.respond(query="format=xml", accept="application/json").headers,
                         JSON_HEADERS)


class NegotiationTest(unittest.TestCase):
    """Accept against text/html and application/json (RFC 9110 §12.5.1)."""

    CASES = [
        (None, False),
        ("", False),
        ("application/json", True),
        ("text/html", False),
        ("*/*", False),
        ("application/*", True),
        ("text/*", False),
        # A browser's Accept.
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
        # Script clients that name JSON and take anything else as a fallback.
        ("application/json, text/plain, */*", True),
        ("application/json;q=0.9, */*;q=0.8", True),
        ("application/json;q=0.5, text/html;q=0.6", False),
        ("application/json;q=0.6, text/html;q=0.5", True),
        ("application/json, text/html", False),  # a tie: the page
        ("text/html;q=0, application/json;q=0.1", True),
        ("application/json;q=0", False),
        ("application/json;q=0, */*", False),
        ("text/html;q=0, application/json;q=0", False),
        ("application/json;q=0.000, text/html;q=0.001", False),
        ("*/*;q=0.5, application/json", True),
        ("Application/JSON", True),
        ("application/json; charset=utf-8; q=1.0", True),
        ('application/json;profile="a,b";q=0.9, text/html;q=0.8', True),
        ("application/json;Q=0.7, text/html;q=0.6", True),
        ("text/html;level=1;q=0.2, application/json;q=0.3", True),
        # Malformed fields are ignored: the page.
        ("application/json;q=2", False),
        ("application/json;q=0.5;level=1", False),
        ("application/json garbage", False),
        ("*/json", False),
        ("application", False),
    ]

    def test_table(self):
        for accept, expected in self.CASES:
            with self.subTest(accept=accept):
                self.assertIs(prefers_json(accept), expected)


class SortTest(ListingTestCase):
    def populate(self):
        # name, size, modification time: three orders that all differ.
        for name, size, mtime in [("b.txt", 300, 1795483800), ("A.txt", 100, 1795483900),
                                  ("c.txt", 200, 1795483700), ("d.txt", 200, 1795483600)]:
            os.utime(self.write(name, size), (0, mtime))
        for name, mtime in [("zdir", 1795483500), ("Bdir", 1795483950)]:
            self.folder(name)
            os.utime(os.path.join(self.root, name), (0, mtime))

    def names(self, query):
        return [name for _, name in self.links(self.render("/", query=query))]

    def test_orders(self):
        self.populate()
        cases = {
            "": ["Bdir/", "zdir/", "A.txt", "b.txt", "c.txt", "d.txt"],
            "sort=name": ["Bdir/", "zdir/", "A.txt", "b.txt", "c.txt", "d.txt"],
            "sort=name&order=asc": ["Bdir/", "zdir/", "A.txt", "b.txt", "c.txt", "d.txt"],
            "sort=name&order=desc": ["zdir/", "Bdir/", "d.txt", "c.txt", "b.txt", "A.txt"],
            # Folders have no size: they keep name order; equal sizes keep name order too.
            "sort=size": ["Bdir/", "zdir/", "A.txt", "c.txt", "d.txt", "b.txt"],
            "sort=size&order=desc": ["Bdir/", "zdir/", "b.txt", "c.txt", "d.txt", "A.txt"],
            "sort=time": ["zdir/", "Bdir/", "d.txt", "c.txt", "b.txt", "A.txt"],
            "sort=time&order=desc": ["Bdir/", "zdir/", "A.txt", "b.txt", "c.txt", "d.txt"],
        }
        for query, expected in cases.items():
            with self.subTest(query=query):
                self.assertEqual(self.names(query), expected)
                json_names = [entry["name"] + ("/" if entry["type"] == "directory" else "")
                              for entry in self.json_entries("/", "format=json&" + query)]
                self.assertEqual(json_names, expected)

    def test_unknown_values_fall_back_to_the_default(self):
        self.populate()
        default = self.names("")
        for query in ("sort=owner", "sort=", "order=sideways", "sort=SIZE", "sort=size%00",
                      "sort=name&order=", "sort", "&&=&", "sort=%ZZ"):
            with self.subTest(query=query):
                self.assertEqual(self.names(query), default)
        self.assertEqual(self.names("sort=owner&order=desc"), self.names("order=desc"))
        self.assertEqual(self.names("sort=size&sort=time"), self.names("sort=size"))

    def test_view_of_a_request(self):
        cases = {"": ("name", False), "sort=size&order=desc": ("size", True),
                 "order=desc&sort=time": ("time", True), "sort=bogus&order=asc": ("name", False)}
        for query, expected in cases.items():
            with self.subTest(query=query):
                view = listing_view(request_for("/", query))
                self.assertEqual((view.sort, view.descending, view.json), expected + (False,))
        for query in ("", "order=asc"):
            for accept, wants_json in (("application/json", True), ("text/html", False),
                                       (None, False)):
                with self.subTest(query=query, accept=accept):
                    self.assertEqual(listing_view(request_for("/", query, accept)),
                                     ("name", False, wants_json))

    def test_column_links(self):
        templates = TemplateSet({}, Template("", "error.html"),
                                Template("{{-SORT-}} {{-ORDER-}}|{{-COLUMNS-}}", "dir.html"))
        page = self.render(templates=templates)
        self.assertEqual(page, (
            'name asc|<th class="name" aria-sort="ascending">'
            '<a href="?sort=name&amp;order=desc" rel="nofollow">Name</a> <span aria-hidden="true">'
            '&#9650;</span></th><th class="size"><a href="?sort=size&amp;order=desc"'
            ' rel="nofollow">Size</a></th><th class="mtime"><a href="?sort=time&amp;order=desc"'
            ' rel="nofollow">Modified (UTC)</a></th>'
            '<th class="type">Type</th>'))
        page = self.render(templates=templates, query="sort=size&order=desc")
        self.assertTrue(page.startswith("size desc|"))
        self.assertIn('<a href="?sort=name&amp;order=asc" rel="nofollow">Name</a></th>', page)
        self.assertIn('<th class="size" aria-sort="descending"><a href="?sort=size&amp;'
                      'order=asc" rel="nofollow">Size</a> <span aria-hidden="true">&#9660;'
                      '</span></th>', page)


class BreadcrumbTest(ListingTestCase):
    def test_each_segment_links_to_its_folder(self):
        self.assertEqual(breadcrumbs("/"), '<a href="./" aria-current="page">/</a>')
        self.assertEqual(breadcrumbs("/a/b c/"),
                         '<a href="../../">/</a><a href="../">a/</a>'
                         '<a href="./" aria-current="page">b c/</a>')

    def test_hostile_folder_name_is_escaped(self):
        crumbs = breadcrumbs('/<b>&"/x/')
        self.assertEqual(crumbs, '<a href="../../">/</a><a href="../">&lt;b&gt;&amp;&quot;/</a>'
                                 '<a href="./" aria-current="page">x/</a>')

    def test_shipped_page_with_a_hostile_folder_name(self):
        self.write("<i>.txt")
        page = self.render('/<b>&"/', templates=shipped_templates())
        self.assertNotIn("<b>", page)
        self.assertNotIn("<i>", page)
        self.assertIn("<title>Index of /&lt;b&gt;&amp;&quot;/</title>", page)
        self.assertIn('<h1>Index of <a href="../">/</a><a href="./" aria-current="page">'
                      '&lt;b&gt;&amp;&quot;/</a></h1>', page)
        assert_well_formed(self, page)


class TemplateVariablesTest(ListingTestCase):
    #: dir.html as shipped before breadcrumbs, sorting and downloads: it must keep working.
    OLD_TEMPLATE = ("<h1>Index of {{-PATH-}}</h1><p>{{-SUMMARY-}}</p><table><thead><tr>"
                    '<th class="name">Name</th></tr></thead><tbody>\n{{-ROWS-}}\n</tbody>'
                    "</table><address>{{-SIGNATURE-}}</address>")

    def test_a_template_written_before_the_new_variables(self):
        self.write("f.txt")
        templates = TemplateSet({}, Template("", "error.html"),
                                Template(self.OLD_TEMPLATE, "dir.html"))
        page = self.render("/d/", templates=templates, zip_download=True)
        self.assertTrue(page.startswith("<h1>Index of /d/</h1><p>0 folders, 1 file</p>"))
        self.assertIn('<a href="f.txt">f.txt</a>', page)
        self.assertNotIn("download", page)
        self.assertNotIn("{{-", page)

    def test_download_link_only_when_downloads_are_on(self):
        templates = TemplateSet({}, Template("", "error.html"),
                                Template("[{{-DOWNLOAD-}}]", "dir.html"))
        self.assertEqual(self.render(templates=templates), "[]")
        self.assertEqual(self.render(templates=templates, zip_download=True),
                         '[<a class="download" href="?download=zip" rel="nofollow" download>'
                         "Download as zip</a>]")

    def test_shipped_page_is_well_formed(self):
        self.write("a.txt")
        self.folder("d")
        page = self.render("/x/", templates=shipped_templates(), zip_download=True,
                           query="sort=time&order=desc")
        assert_well_formed(self, page)
        self.assertIn('href="?download=zip"', page)
        self.assertIn('aria-sort="descending"', page)




class ListingCacheTest(ListingTestCase):
    """Rendered listings are reused while the folder is unchanged and younger than their
    maximum age; an entry added, removed or renamed shows at once, a file changed in place
    once the listing has expired."""

    def setUp(self):
        super().setUp()
        self.clock = FakeClock(1000.0)
        self.cache = ListingCache(max_age=1.0, clock=self.clock)
        self.config_used = self.config()
        # Every folder counts as settled, as one untouched for a while would.
        patcher = mock.patch("nex.files.filecache.SETTLED_NS", -(1 << 62))
        patcher.start()
        self.addCleanup(patcher.stop)
        self.write("a.txt", 1)

    def names(self, query="", cache=None):
        """The names the root's listing shows now, the root's stat taken afresh."""
        target = Target("directory", self.root, "/", os.stat(self.root))
        response = render_listing(target, request_for("/", query), self.templates, SIGNATURE,
                                  self.config_used, cache=cache or self.cache)
        self.assertEqual(response.headers, HTML_HEADERS)
        return [name for _, name in self.links(response.body[0].decode("utf-8"))]

    def sizes(self):
        """``{name: size}`` from the root's JSON listing."""
        target = Target("directory", self.root, "/", os.stat(self.root))
        response = render_listing(target, request_for("/", "format=json"), self.templates,
                                  SIGNATURE, self.config_used, cache=self.cache)
        return {entry["name"]: entry["size"] for entry in json.loads(response.body[0])}

    def test_a_listing_asked_for_again_is_not_read_again(self):
        self.assertEqual(self.names(), ["a.txt"])
        with mock.patch("nex.files.listing.read_folder") as read:
            self.assertEqual(self.names(), ["a.txt"])
        read.assert_not_called()

    def test_an_entry_added_shows_at_once(self):
        self.names()
        self.write("b.txt")
        self.assertEqual(self.names(), ["a.txt", "b.txt"])

    def test_an_entry_removed_shows_at_once(self):
        self.write("b.txt")
        self.names()
        os.remove(os.path.join(self.root, "a.txt"))
        self.assertEqual(self.names(), ["b.txt"])

    def test_an_entry_renamed_shows_at_once(self):
        self.names()
        os.rename(os.path.join(self.root, "a.txt"), os.path.join(self.root, "c.txt"))
        self.assertEqual(self.names(), ["c.txt"])

    def test_a_file_changed_in_place_shows_once_the_listing_expired(self):
        self.assertEqual(self.sizes(), {"a.txt": 1})
        with open(os.path.join(self.root, "a.txt"), "ab") as file:
            file.write(b"more")
        self.clock.now += 0.5
        self.assertEqual(self.sizes(), {"a.txt": 1})  # the folder itself did not change
        self.clock.now += 0.5
        self.assertEqual(self.sizes(), {"a.txt": 5})

    def test_a_folder_changed_lately_is_read_every_time(self):
        with mock.patch("nex.files.filecache.SETTLED_NS", 1 << 62):
            self.names()
            with mock.patch("nex.files.listing.read_folder", wraps=read_folder) as read:
                self.names()
        read.assert_called_once()

    def test_each_view_is_kept_apart(self):
        self.write("b.txt", 5)
        self.assertEqual(self.names(), ["a.txt", "b.txt"])
        self.assertEqual(self.names("sort=size&order=desc"), ["b.txt", "a.txt"])
        self.assertEqual(self.names("order=desc"), ["b.txt", "a.txt"])
        self.assertEqual(self.sizes(), {"a.txt": 1, "b.txt": 5})
        self.assertEqual(self.names(), ["a.txt", "b.txt"])

    def test_other_settings_render_anew(self):
        self.write(".hidden")
        self.assertEqual(self.names(), ["a.txt"])
        self.config_used = self.config(dotfiles=True)
        self.assertEqual(self.names(), [".hidden", "a.txt"])

    def test_pages_past_the_byte_bound_are_not_kept(self):
        small = ListingCache(max_bytes=10, clock=self.clock)
        self.names(cache=small)
        with mock.patch("nex.files.listing.read_folder", wraps=read_folder) as read:
            self.names(cache=small)
        read.assert_called_once()

    def test_the_cache_starts_over_when_full(self):
        page = len(render_listing(Target("directory", self.root, "/", os.stat(self.root)),
                                  request_for("/"), self.templates, SIGNATURE,
                                  self.config_used, cache=None).body[0])
        cache = ListingCache(max_bytes=page + page // 2, clock=self.clock)
        self.names(cache=cache)
        self.names("order=desc", cache=cache)  # replaces the first: both do not fit
        with mock.patch("nex.files.listing.read_folder", wraps=read_folder) as read:
            self.names("order=desc", cache=cache)
            read.assert_not_called()
            self.names(cache=cache)
            read.assert_called_once()

    def test_without_a_cache_every_listing_is_read(self):
        target = Target("directory", self.root, "/", os.stat(self.root))
        with mock.patch("nex.files.listing.read_folder", wraps=read_folder) as read:
            for _ in range(2):
                render_listing(target, request_for("/"), self.templates, SIGNATURE,
                               self.config_used, cache=None)
        self.assertEqual(read.call_count, 2)


class ListingOnTheWireTest(unittest.TestCase):
    """The real server: one folder as a page and as JSON, negotiated, over one connection."""

    def test_html_and_json(self):
        root = tempfile.mkdtemp(prefix="nex-listing-wire-")
        self.addCleanup(shutil.rmtree, root)
        os.makedirs(os.path.join(root, '<b>&"'))
        with open(os.path.join(root, '<b>&"', "a b.txt"), "wb") as file:
            file.write(b"12345")
        folder = "/%3Cb%3E%26%22/"
        with NexServer(root) as server, server.connect() as sock:
            requests = [("GET", "", ""), ("GET", "Accept: application/json\r\n", ""),
                        ("HEAD", "Accept: application/json\r\n", ""),
                        ("GET", "Accept: application/json\r\n", "?format=html&sort=size")]
            sock.sendall(b"".join(
                f"{method} {folder}{query} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n"
                .encode("ascii") for method, extra, query in requests))
            reader = ResponseReader(sock)
            status, fields, page = reader.read()
            self.assertEqual((status, fields["content-type"], fields["vary"]),
                             (200, "text/html; charset=utf-8", "Accept"))
            text = page.decode("utf-8")
            self.assertIn('<a href="./" aria-current="page">&lt;b&gt;&amp;&quot;/</a>', text)
            self.assertIn('<a href="a%20b.txt">a b.txt</a>', text)
            assert_well_formed(self, text)
            status, fields, body = reader.read()
            self.assertEqual((status, fields["content-type"], fields["vary"]),
                             (200, "application/json", "Accept"))
            entries = json.loads(body)
            self.assertEqual([(entry["name"], entry["href"], entry["size"], entry["type"])
                              for entry in entries], [("a b.txt", "a%20b.txt", 5, "text/plain")])
            status, head_fields, body = reader.read(head_only=True)
            self.assertEqual((status, body), (200, b""))
            self.assertEqual(head_fields["content-length"], fields["content-length"])
            status, fields, page = reader.read()
            self.assertEqual(fields["content-type"], "text/html; charset=utf-8")
            self.assertIn(b'aria-sort="ascending"><a href="?sort=size&amp;order=desc"'
                          b' rel="nofollow">', page)


_VOID_ELEMENTS = frozenset({"meta", "link", "br", "img", "input", "hr"})


def assert_well_formed(test, page):
    """Every element ``page`` opens is closed, in order; no stray text outside <html>."""
    from html.parser import HTMLParser

    class Checker(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.open = []

        def handle_starttag(self, tag, attrs):
            if tag not in _VOID_ELEMENTS:
                self.open.append(tag)

        def handle_endtag(self, tag):
            test.assertTrue(self.open, f"</{tag}> closes nothing")
            test.assertEqual(self.open.pop(), tag)

    checker = Checker()
    checker.feed(page)
    checker.close()
    test.assertEqual(checker.open, [])
    test.assertTrue(page.startswith("<!DOCTYPE html>"))


if __name__ == "__main__":
    unittest.main()
