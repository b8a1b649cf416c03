"""Folder listings: escaping, links, order, sizes, and entries that cannot be served."""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
import unittest
from unittest import mock

from nex import SERVER_SOFTWARE
from nex.errors import HTTPError
from nex.listing import human_size, media_type, read_folder, render_listing
from nex.request import Headers, Request
from nex.resolver import Target
from nex.templates import Template, TemplateSet

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGNATURE = "Nex/0.1 Server at localhost Port 8080"
ROW_LINK = re.compile(r'<td class="name"><a href="([^"]*)">([^<]*)</a></td>')


def request_for(path):
    return Request("GET", path, path, "", "HTTP/1.1", Headers([("Host", "localhost")]),
                   "localhost", True)


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

    def render(self, url_path="/sub/", show_dotfiles=False, templates=None):
        target = Target("directory", self.root, url_path, os.stat(self.root))
        response = render_listing(target, request_for(url_path), templates or self.templates,
                                  SIGNATURE, show_dotfiles=show_dotfiles)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers, [("Content-Type", "text/html; charset=utf-8")])
        self.assertEqual(len(response.body), 1)
        return response.body[0].decode("utf-8")

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

        with mock.patch("os.scandir", scandir):
            entries = read_folder(self.root)
        self.assertEqual([name for name, _, _ in entries], ["stays"])

    def test_unreadable_folder_is_403(self):
        with mock.patch("os.scandir", side_effect=PermissionError(13, "denied")):
            with self.assertRaises(HTTPError) as caught:
                self.render()
        self.assertEqual(caught.exception.status, 403)

    def test_vanished_folder_is_404(self):
        target = Target("directory", os.path.join(self.root, "gone"), "/gone/",
                        os.stat(self.root))
        with self.assertRaises(HTTPError) as caught:
            render_listing(target, request_for("/gone/"), self.templates, SIGNATURE)
        self.assertEqual(caught.exception.status, 404)


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
        self.assertEqual(media_type("a.html"), "text/html")
        self.assertEqual(media_type("A.PNG"), "image/png")
        self.assertEqual(media_type("x.tar.gz"), "application/gzip")
        self.assertEqual(media_type("README"), "file")
        self.assertEqual(media_type("data:,hello"), "file")
        self.folder("d")
        self.assertIn('<td class="type">folder</td>', self.render())


class ShippedTemplateTest(ListingTestCase):
    def test_shipped_listing_page(self):
        templates = TemplateSet.load(os.path.join(PROJECT, "error_pages"),
                                     os.path.join(PROJECT, "other_templates"))
        self.write("<a>.txt", size=10)
        page = self.render("/x & y/", templates=templates)
        self.assertTrue(page.startswith("<!DOCTYPE html>"))
        self.assertIn("<title>Index of /x &amp; y/</title>", page)
        self.assertIn('<a href="%3Ca%3E.txt">&lt;a&gt;.txt</a>', page)
        self.assertIn('<a href="../">../</a>', page)
        self.assertIn(SIGNATURE, page)
        self.assertNotIn("{{-", page)
        self.assertNotIn("<form", page)

    def test_shipped_listing_page_shows_the_upload_form_it_is_given(self):
        templates = TemplateSet.load(os.path.join(PROJECT, "error_pages"),
                                     os.path.join(PROJECT, "other_templates"))
        target = Target("directory", self.root, "/", os.stat(self.root))
        form = '<form method="post"><b>raw</b></form>'
        page = render_listing(target, request_for("/"), templates, SIGNATURE,
                              upload_form=form).body[0].decode("utf-8")
        self.assertIn("</table>" + form + "\n", page)


if __name__ == "__main__":
    unittest.main()
