"""Templates: variables, escaping, loading, error pages."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import unittest

from nex import SERVER_SOFTWARE
from nex.errors import HTTPError
from nex.templates import Template, TemplateError, TemplateSet

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ERROR_PAGES = os.path.join(PROJECT, "error_pages")
TEMPLATES = os.path.join(PROJECT, "other_templates")
#: Every status Nex sends with a page.
SENT_STATUSES = (301, 400, 403, 404, 405, 408, 412, 413, 414, 416, 429, 431, 500, 501, 503,
                 505)
HOSTILE = '<script>alert("x")</script> & \'quoted\''
SIGNATURE = "Nex/0.1 Server at localhost Port 8080"


class TemplateTest(unittest.TestCase):
    def test_variables_are_replaced(self):
        template = Template("<p>{{-A-}} and {{-B_2-}}</p>{{-A-}}", "t")
        self.assertEqual(template.render({"A": "x", "B_2": 7}), "<p>x and 7</p>x")
        self.assertEqual(template.variables, {"A", "B_2"})

    def test_values_are_html_escaped(self):
        template = Template('<a title="{{-V-}}">{{-V-}}</a>', "t")
        rendered = template.render({"V": HOSTILE})
        self.assertNotIn("<script>", rendered)
        escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;quoted&#x27;"
        self.assertEqual(rendered, f'<a title="{escaped}">{escaped}</a>')

    def test_raw_values_go_in_as_they_are(self):
        template = Template("<table>{{-ROWS-}}</table>", "t")
        self.assertEqual(template.render({}, raw={"ROWS": "<tr><td>&amp;</td></tr>"}),
                         "<table><tr><td>&amp;</td></tr></table>")

    def test_raw_wins_over_escaped(self):
        template = Template("{{-X-}}", "t")
        self.assertEqual(template.render({"X": "<b>"}, raw={"X": "<i>"}), "<i>")

    def test_unknown_variable_renders_empty(self):
        self.assertEqual(Template("a{{-MISSING-}}b", "t").render({}), "ab")

    def test_values_cannot_inject_variables(self):
        template = Template("{{-A-}}|{{-B-}}", "t")
        self.assertEqual(template.render({"A": "{{-B-}}", "B": "b"}), "{{-B-}}|b")

    def test_only_exact_syntax_is_a_variable(self):
        text = "{{A}} {{-a-}} {{- A -}} {{-A-B-}} {{-}} {{--}}"
        self.assertEqual(Template(text, "t").render({"A": "x", "a": "x"}), text)

    def test_text_without_variables(self):
        self.assertEqual(Template("", "t").render({}), "")
        self.assertEqual(Template("plain", "t").render({"A": "x"}), "plain")


class LoadTest(unittest.TestCase):
    def setUp(self):
        self.base = tempfile.mkdtemp(prefix="nex-templates-")
        self.addCleanup(shutil.rmtree, self.base)
        self.pages = os.path.join(self.base, "error_pages")
        self.templates = os.path.join(self.base, "other_templates")
        os.makedirs(self.pages)
        os.makedirs(self.templates)
        self.write(self.pages, "error.html", "generic {{-STATUS_CODE-}} {{-DETAIL-}}")
        self.write(self.pages, "404.html", "missing {{-DETAIL-}}")
        self.write(self.pages, "notes.txt", "ignored")
        self.write(self.pages, "4040.html", "ignored")
        self.write(self.templates, "dir.html", "listing {{-PATH-}}")

    def write(self, folder, name, text):
        with open(os.path.join(folder, name), "wb") as file:
            file.write(text.encode("utf-8") if isinstance(text, str) else text)

    def load(self):
        return TemplateSet.load(self.pages, self.templates)

    def test_load_reads_status_pages_fallback_and_listing(self):
        templates = self.load()
        self.assertEqual(set(templates.error_pages), {404})
        self.assertEqual(templates.listing.render({"PATH": "/x/"}), "listing /x/")

    def test_status_page_is_used_when_present(self):
        page = self.load().render_error(HTTPError(404, "no <such> file"), SIGNATURE)
        self.assertEqual(page, b"missing no &lt;such&gt; file")

    def test_fallback_is_used_otherwise(self):
        page = self.load().render_error(HTTPError(409, "teapot"), SIGNATURE)
        self.assertEqual(page, b"generic 409 teapot")

    def test_missing_fallback_is_an_error_naming_it(self):
        os.remove(os.path.join(self.pages, "error.html"))
        with self.assertRaisesRegex(TemplateError, re.escape("error.html")):
            self.load()

    def test_missing_listing_is_an_error_naming_it(self):
        os.remove(os.path.join(self.templates, "dir.html"))
        with self.assertRaisesRegex(TemplateError, re.escape("dir.html")):
            self.load()

    def test_missing_error_pages_folder_is_an_error_naming_it(self):
        shutil.rmtree(self.pages)
        with self.assertRaisesRegex(TemplateError, re.escape(self.pages)):
            self.load()

    def test_undecodable_template_is_an_error_naming_it(self):
        self.write(self.pages, "500.html", b"\xff\xfe broken")
        with self.assertRaisesRegex(TemplateError, re.escape("500.html")):
            self.load()

    def test_unreadable_template_is_an_error_naming_it(self):
        os.makedirs(os.path.join(self.pages, "403.html"))  # a folder cannot be read
        with self.assertRaisesRegex(TemplateError, re.escape("403.html")):
            self.load()

    def test_output_is_utf8(self):
        self.write(self.pages, "error.html", "ä {{-DETAIL-}}")
        self.assertEqual(self.load().render_error(HTTPError(500, "ü"), SIGNATURE),
                         "ä ü".encode("utf-8"))


class ErrorPagesTest(unittest.TestCase):
    """The shipped pages in error_pages/ and other_templates/."""

    @classmethod
    def setUpClass(cls):
        cls.templates = TemplateSet.load(ERROR_PAGES, TEMPLATES)

    def test_every_sent_status_has_its_own_page(self):
        self.assertEqual(set(self.templates.error_pages), set(SENT_STATUSES))

    def test_every_page_shows_status_reason_detail_and_signature(self):
        for status in SENT_STATUSES + (409,):
            with self.subTest(status=status):
                error = HTTPError(status, "the detail")
                page = self.templates.render_error(error, SIGNATURE).decode("utf-8")
                self.assertTrue(page.startswith("<!DOCTYPE html>"))
                self.assertIn(f"<title>{status} {error.reason}</title>", page)
                self.assertIn(error.reason, page)
                self.assertIn("the detail", page)
                self.assertIn(SIGNATURE, page)
                self.assertIn("prefers-color-scheme", page)
                self.assertNotIn("{{-", page)

    def test_every_variable_is_escaped_in_error_pages(self):
        for status in SENT_STATUSES + (409,):
            with self.subTest(status=status):
                error = HTTPError(status, HOSTILE, headers=[("Location", '/"><script>/')])
                page = self.templates.render_error(error, HOSTILE).decode("utf-8")
                self.assertNotIn("<script>", page)
                self.assertNotIn('"><', page)
                self.assertIn("&lt;script&gt;", page)

    def test_pages_load_nothing_from_elsewhere(self):
        for status in SENT_STATUSES:
            page = self.templates.render_error(HTTPError(status), SIGNATURE).decode("utf-8")
            for marker in ("<link", "<script", "src=", "@import", "url("):
                with self.subTest(status=status, marker=marker):
                    self.assertNotIn(marker, page)

    def test_redirect_page_links_to_location(self):
        error = HTTPError(301, headers=[("Location", "/a%20b/?q=1&r=2")])
        page = self.templates.render_error(error, SIGNATURE).decode("utf-8")
        self.assertIn('<a href="/a%20b/?q=1&amp;r=2">/a%20b/?q=1&amp;r=2</a>', page)

    def test_detail_equal_to_reason_is_not_repeated(self):
        page = self.templates.render_error(HTTPError(404), SIGNATURE).decode("utf-8")
        self.assertIn('<p class="detail"></p>', page)

    def test_server_software_is_available(self):
        template = Template("{{-SERVER_SOFTWARE-}}", "t")
        templates = TemplateSet({}, template, template)
        self.assertEqual(templates.render_error(HTTPError(500), SIGNATURE),
                         SERVER_SOFTWARE.encode("ascii"))

    def test_listing_template_uses_the_listing_variables(self):
        self.assertLessEqual({"PATH", "ROWS", "SIGNATURE"}, self.templates.listing.variables)


if __name__ == "__main__":
    unittest.main()
