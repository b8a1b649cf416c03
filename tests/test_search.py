"""FOLDER/?search=TERM: names below a folder, bounded in entries and time, each hit checked."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import tempfile
import unittest
from typing import List
from unittest import mock

from nex.files.paths import resolve
from nex.files.search import find, search_folder, search_term
from nex.files.templates import TemplateSet
from nex.process.config import load_config
from tests.support import REPO, NexServer, ResponseReader
from tests.support import make_request


class SearchTermTest(unittest.TestCase):
    def test_cases(self) -> None:
        for query, term in (("", None), ("search=", None), ("search=a%20b", "a b"),
                            ("sort=size&search=x", "x"), ("research=x", None),
                            ("search=%C3%A9t%C3%A9", "\u00e9t\u00e9")):
            with self.subTest(query=query):
                self.assertEqual(search_term(query), term)


class FindTest(unittest.TestCase):
    """The walk, on a tree made for it."""

    def setUp(self) -> None:
        self.root = os.path.realpath(tempfile.mkdtemp(prefix="nex-search-"))
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.outside = tempfile.mkdtemp(prefix="nex-search-outside-")
        self.addCleanup(shutil.rmtree, self.outside, ignore_errors=True)
        for path in ("Report.txt", "a/report-2.md", "a/b/old REPORT.pdf", "a/b/other.txt",
                     ".hidden/report.txt", "a/.report", "private/report.key"):
            full = os.path.join(self.root, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as out:
                out.write(b"x")
        with open(os.path.join(self.outside, "report-outside.txt"), "wb") as out:
            out.write(b"x")
        os.symlink(self.outside, os.path.join(self.root, "out"))
        os.symlink(os.path.join(self.root, "a"), os.path.join(self.root, "a", "b", "loop"))
        self.config = load_config(None, {"document_root": self.root,
                                         "error_pages": os.path.join(REPO, "error_pages"),
                                         "templates": os.path.join(REPO, "other_templates")})

    def paths(self, found) -> List[str]:
        return [hit.prefix + hit.entry[0] + ("/" if hit.entry[1] else "")
                for hit in found.hits]

    def test_names_below_without_regard_to_case_nearest_first(self) -> None:
        found = find(resolve("/", "", self.config), "report", self.config)
        self.assertTrue(found.complete)
        self.assertEqual(self.paths(found), ["Report.txt", "a/report-2.md",
                                             "private/report.key", "a/b/old REPORT.pdf"])

    def test_from_a_folder_below(self) -> None:
        found = find(resolve("/a/", "", self.config), "REPORT", self.config)
        self.assertEqual(self.paths(found), ["report-2.md", "b/old REPORT.pdf"])

    def test_search_never_shows_dotfiles_or_links_out_of_the_root(self) -> None:
        found = find(resolve("/", "", self.config), "report", self.config)
        for path in self.paths(found):
            self.assertNotIn(".hidden", path)
            self.assertNotIn(".report", path)
            self.assertNotIn("outside", path)

    def test_a_loop_of_links_is_walked_once(self) -> None:
        found = find(resolve("/", "", self.config), "other", self.config)
        self.assertEqual(self.paths(found), ["a/b/other.txt"])

    def test_search_never_shows_what_the_checker_refuses(self) -> None:
        asked = []

        def may(action: str, url_path: str, real_path: str) -> bool:
            asked.append((action, url_path, real_path))
            return not url_path.startswith("/private/")

        found = find(resolve("/", "", self.config), "report", self.config, may)
        self.assertNotIn("private/report.key", self.paths(found))
        self.assertIn(("read", "/private/", os.path.join(self.root, "private")), asked)
        self.assertFalse(any(url.startswith("/private/report") for _, url, _ in asked))
        self.assertTrue(all(action == "read" for action, _, _ in asked))

    def test_bounded_in_entries(self) -> None:
        config = dataclasses.replace(self.config, max_search_entries=2)
        found = find(resolve("/", "", config), "report", config)
        self.assertFalse(found.complete)
        self.assertLessEqual(len(found.hits), 2)

    def test_bounded_in_time(self) -> None:
        ticks = itertools.count(step=1.0)
        with mock.patch("nex.files.search.time.monotonic", side_effect=lambda: next(ticks)):
            found = find(resolve("/", "", self.config), "report", self.config)
        self.assertFalse(found.complete)
        self.assertLessEqual(len(found.hits), 2)

    def test_html_and_json(self) -> None:
        templates = TemplateSet.load(self.config.error_pages, self.config.templates)
        folder = resolve("/", "", self.config)
        page = search_folder(folder, make_request("GET", "/?search=report"), "report",
                             templates, "sig", self.config).body[0].decode()
        self.assertIn('<a href="a/b/old%20REPORT.pdf">a/b/old REPORT.pdf</a>', page)
        self.assertIn("4 matches for \u201creport\u201d below", page)
        self.assertIn('name="search" value="report"', page)
        response = search_folder(folder, make_request("GET", "/?search=report&format=json"),
                                 "report", templates, "sig", self.config)
        answer = json.loads(response.body[0])
        self.assertEqual(answer["search"], "report")
        self.assertTrue(answer["complete"])
        self.assertEqual([hit["href"] for hit in answer["hits"]],
                         ["Report.txt", "a/report-2.md", "private/report.key",
                          "a/b/old%20REPORT.pdf"])
        self.assertEqual(answer["hits"][3]["path"], "a/b/old REPORT.pdf")

    def test_a_term_is_shown_escaped(self) -> None:
        templates = TemplateSet.load(self.config.error_pages, self.config.templates)
        page = search_folder(resolve("/", "", self.config),
                             make_request("GET", "/?search=x"), '<b>"x', templates, "sig",
                             self.config).body[0].decode()
        self.assertNotIn('<b>"x', page)
        self.assertIn("&lt;b&gt;&quot;x", page)


class LiveSearchTest(unittest.TestCase):
    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="nex-search-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        os.makedirs(os.path.join(self.root, "music", "live"))
        with open(os.path.join(self.root, "music", "live", "Song.ogg"), "wb") as out:
            out.write(b"ogg")

    def get(self, server: NexServer, target: str, accept: str = "text/html"):
        with server.connect() as sock:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\n"
                         "Connection: close\r\n\r\n".encode("ascii"))
            return ResponseReader(sock).read()

    def test_search_over_http(self) -> None:
        with NexServer(self.root) as server:
            status, headers, page = self.get(server, "/?search=song")
            self.assertEqual((status, headers["content-type"]),
                             (200, "text/html; charset=utf-8"))
            self.assertIn(b'<a href="music/live/Song.ogg">music/live/Song.ogg</a>', page)
            status, headers, body = self.get(server, "/music/?search=SONG",
                                             "application/json")
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["hits"][0]["href"], "live/Song.ogg")

    def test_search_off(self) -> None:
        with NexServer(self.root, {"files": {"max_search_entries": "0"}}) as server:
            status, _, _ = self.get(server, "/?search=song")
        self.assertEqual(status, 404)


if __name__ == "__main__":
    unittest.main()
