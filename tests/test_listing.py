"""Folder listings: escaping, links, order, sizes, and entries that cannot be served."""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
import unittest
from unittest import mock
from urllib.parse import quote

from nex import SERVER_SOFTWARE
from nex.config import Config
from nex.errors import HTTPError
from nex.listing import human_size, media_type, read_folder, render_listing
from nex.request import Headers, Request
from nex.resolver import Target, resolve
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

    def target(self, url_path="/", fs_path=None, **settings):
        """A folder Target as resolve() gives it, for ``fs_path`` (the root by default)."""
        config = Config(document_root=self.root, **settings)
        return Target("directory", fs_path or self.root, url_path, os.stat(self.root), config)

    def render(self, url_path="/sub/", show_dotfiles=False, templates=None):
        response = render_listing(self.target(url_path), request_for(url_path),
                                  templates or self.templates, SIGNATURE,
                                  show_dotfiles=show_dotfiles)
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

        target = self.target()
        with mock.patch("os.scandir", scandir):
            entries = read_folder(target, target.config)
        self.assertEqual([name for name, _, _ in entries], ["stays"])

    def test_unreadable_folder_is_403(self):
        with mock.patch("os.scandir", side_effect=PermissionError(13, "denied")):
            with self.assertRaises(HTTPError) as caught:
                self.render()
        self.assertEqual(caught.exception.status, 403)

    def test_vanished_folder_is_404(self):
        target = self.target("/gone/", os.path.join(self.root, "gone"))
        with self.assertRaises(HTTPError) as caught:
            render_listing(target, request_for("/gone/"), self.templates, SIGNATURE)
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
        "link-inside-to-dotfile": (False, True, True),
    }
    POLICIES = ("never", "inside", "always")

    def setUp(self):
        super().setUp()
        self.outside = tempfile.mkdtemp(prefix="nex-outside-")
        self.addCleanup(shutil.rmtree, self.outside)
        with open(os.path.join(self.outside, "secret.txt"), "wb") as file:
            file.write(b"secret")
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
        target = resolve("/", "", Config(document_root=self.root, **settings))
        return {name.rstrip("/") for _, name in self.links(self.render_target(target))}

    def render_target(self, target):
        response = render_listing(target, request_for("/"), self.templates, SIGNATURE,
                                  show_dotfiles=target.config.dotfiles)
        return response.body[0].decode("utf-8")

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
        target = resolve("/", "", Config(document_root=self.root, symlinks="inside"))
        page = self.render_target(target)
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

    def test_a_folder_not_from_resolve_is_refused(self):
        target = Target("directory", self.root, "/", os.stat(self.root))
        with self.assertRaises(ValueError):
            render_listing(target, request_for("/"), self.templates, SIGNATURE)

    def test_show_dotfiles_replaces_the_rule_it_was_resolved_with(self):
        target = resolve("/", "", Config(document_root=self.root))
        with_dotfiles = render_listing(target, request_for("/"), self.templates, SIGNATURE,
                                       show_dotfiles=True).body[0].decode("utf-8")
        self.assertIn(".dotfile", with_dotfiles)
        self.assertNotIn(".dotfile", self.render_target(target))


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


if __name__ == "__main__":
    unittest.main()
