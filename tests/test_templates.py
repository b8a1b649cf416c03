"""Templates: variables, escaping, loading, error pages."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

from nex import SERVER_SOFTWARE
from nex.http.errors import HTTPError
from nex.files.templates import RENDERED_PAGES_LIMIT, Template, TemplateError, TemplateSet
from tests.support import REPO, NexServer, ResponseReader, write_settings
from tests.support.threads import run_in_threads

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ERROR_PAGES = os.path.join(PROJECT, "error_pages")
TEMPLATES = os.path.join(PROJECT, "other_templates")
#: Every status Nex sends with a page.
SENT_STATUSES = (301, 303, 308, 400, 401, 403, 404, 405, 407, 408, 409, 412, 413, 414, 415, 416,
                 429, 431, 500, 501, 502, 503, 504, 505, 507, 508)
#: A status Nex never sends: its page is the fallback, error.html.
UNSENT_STATUS = 422
HOSTILE = '<script>alert("x")</script> & \'quoted\''
SIGNATURE = "Nex/0.1 Server at localhost Port 8080"
ICON_LINK = ('<link rel="icon" href="data:image/svg+xml,'
             "%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'%3E"
             "%3Crect width='32' height='32' rx='7' fill='%232563eb'/%3E"
             "%3Cpath d='M9 24V8h3l8 11V8h3v16h-3l-8-11v11z' fill='%23fff'/%3E%3C/svg%3E\">")


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

    def test_a_rendered_error_page_is_remembered_per_values(self):
        self.write(self.pages, "301.html", "moved to {{-LOCATION-}}")
        templates = self.load()
        first = templates.render_error(HTTPError(404, "no file"), SIGNATURE)
        self.assertIs(templates.render_error(HTTPError(404, "no file"), SIGNATURE), first)
        self.assertEqual(templates.render_error(HTTPError(404, "other"), SIGNATURE),
                         b"missing other")
        redirect = HTTPError(301, headers=[("Location", "/a/")])
        self.assertEqual(templates.render_error(redirect, SIGNATURE), b"moved to /a/")
        moved = HTTPError(301, headers=[("Location", "/b/")])
        self.assertEqual(templates.render_error(moved, SIGNATURE), b"moved to /b/")

    def test_each_form_of_a_reply_is_remembered_apart(self):
        templates = self.load()
        error = HTTPError(404, "no file")
        replies = {form: templates.render_error_as(form, error, SIGNATURE)
                   for form in ("html", "text", "json")}
        self.assertEqual(replies["html"], b"missing no file")
        self.assertEqual(replies["text"], b"404 Not Found: no file\n")
        self.assertEqual(json.loads(replies["json"])["detail"], "no file")
        for form, reply in replies.items():
            with self.subTest(form=form):
                self.assertIs(templates.render_error_as(form, HTTPError(404, "no file"),
                                                        SIGNATURE), reply)
        self.assertEqual(templates.render_error_as("text", HTTPError(404, "other"), SIGNATURE),
                         b"404 Not Found: other\n")
        redirect = HTTPError(301, headers=[("Location", "/a/")])
        self.assertEqual(templates.render_error_as("text", redirect, SIGNATURE),
                         b"301 Moved Permanently: /a/\n")
        moved = HTTPError(301, headers=[("Location", "/b/")])
        self.assertEqual(templates.render_error_as("text", moved, SIGNATURE),
                         b"301 Moved Permanently: /b/\n")

    def test_remembered_error_pages_stay_bounded(self):
        templates = self.load()
        for n in range(RENDERED_PAGES_LIMIT * 2):
            self.assertEqual(templates.render_error(HTTPError(404, f"n{n}"), SIGNATURE),
                             f"missing n{n}".encode())
            self.assertLessEqual(len(templates._rendered), RENDERED_PAGES_LIMIT)

    def test_hammered_from_many_threads_each_page_is_right_and_the_table_bounded(self):
        templates = self.load()
        failures = []

        def hammer(seed):
            for round_ in range(300):
                n = (seed * 11 + round_) % (RENDERED_PAGES_LIMIT + 50)
                if templates.render_error(HTTPError(404, f"n{n}"), SIGNATURE) != \
                        f"missing n{n}".encode():
                    failures.append(n)

        run_in_threads(hammer)
        self.assertEqual(failures, [])
        self.assertLessEqual(len(templates._rendered), RENDERED_PAGES_LIMIT)

    def test_changed_templates_loaded_again_give_the_new_page(self):
        self.assertEqual(self.load().render_error(HTTPError(404, "x"), SIGNATURE), b"missing x")
        self.write(self.pages, "404.html", "gone {{-DETAIL-}}")
        self.assertEqual(self.load().render_error(HTTPError(404, "x"), SIGNATURE), b"gone x")

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


class LayoutTest(unittest.TestCase):
    """EXTENDS and BLOCK: pages that fill in a layout, resolved when they are loaded."""

    LAYOUT = ("<head>{{-BLOCK TITLE-}}{{-STATUS_CODE-}}{{-END TITLE-}}</head>\n"
              "{{-BLOCK MAIN-}}\n"
              "<h1>{{-REASON-}}</h1>\n"
              "{{-BLOCK MESSAGE-}}\n"
              "<p>default</p>\n"
              "{{-END MESSAGE-}}\n"
              "{{-END MAIN-}}\n"
              "<address>{{-SIGNATURE-}}</address>\n")

    def setUp(self):
        self.base = tempfile.mkdtemp(prefix="nex-layouts-")
        self.addCleanup(shutil.rmtree, self.base)
        self.pages = os.path.join(self.base, "error_pages")
        self.templates = os.path.join(self.base, "other_templates")
        os.makedirs(self.pages)
        os.makedirs(self.templates)
        self.write(self.pages, "layout.html", self.LAYOUT)
        self.write(self.pages, "error.html", "{{-EXTENDS layout.html-}}\n")
        self.write(self.templates, "dir.html",
                   "{{-EXTENDS layout.html-}}\n"
                   "{{-BLOCK TITLE-}}Index of {{-PATH-}}{{-END TITLE-}}\n"
                   "{{-BLOCK MAIN-}}<table>{{-ROWS-}}</table>\n{{-END MAIN-}}\n")

    def write(self, folder, name, text):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as file:
            file.write(text)

    def load(self):
        return TemplateSet.load(self.pages, self.templates)

    def render(self, status=404, detail="", signature="sig"):
        error = HTTPError(status, detail)
        return self.load().render_error(error, signature).decode("utf-8")

    def assertLoadFails(self, *fragments):
        """Loading fails with one line that holds every fragment."""
        with self.assertRaises(TemplateError) as caught:
            self.load()
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def test_page_without_blocks_gets_the_layout_and_its_defaults(self):
        self.assertEqual(self.render(409),
                         "<head>409</head>\n<h1>Conflict</h1>\n<p>default</p>\n"
                         "<address>sig</address>\n")

    def test_page_block_replaces_the_layout_block(self):
        self.write(self.pages, "404.html", "{{-EXTENDS layout.html-}}\n"
                                           "{{-BLOCK MESSAGE-}}\n"
                                           "<p>gone: {{-DETAIL-}}</p>\n"
                                           "{{-END MESSAGE-}}\n")
        self.assertEqual(self.render(404, "/x"),
                         "<head>404</head>\n<h1>Not Found</h1>\n<p>gone: /x</p>\n"
                         "<address>sig</address>\n")

    def test_outer_block_replaces_the_blocks_nested_in_it(self):
        self.write(self.pages, "404.html", "{{-EXTENDS layout.html-}}\n"
                                           "{{-BLOCK MESSAGE-}}lost{{-END MESSAGE-}}\n"
                                           "{{-BLOCK MAIN-}}<p>whole</p>\n{{-END MAIN-}}\n")
        with self.assertRaisesRegex(TemplateError, "block MESSAGE is not shown"):
            self.load()
        self.write(self.pages, "404.html", "{{-EXTENDS layout.html-}}\n"
                                           "{{-BLOCK MAIN-}}<p>whole</p>\n{{-END MAIN-}}\n")
        self.assertEqual(self.render(404),
                         "<head>404</head>\n<p>whole</p>\n<address>sig</address>\n")

    def test_layout_may_extend_a_layout_and_add_blocks(self):
        self.write(self.pages, "framed.html",
                   "{{-EXTENDS layout.html-}}\n"
                   "{{-BLOCK MESSAGE-}}<div>{{-BLOCK INNER-}}framed{{-END INNER-}}</div>\n"
                   "{{-END MESSAGE-}}\n")
        self.write(self.pages, "404.html", "{{-EXTENDS framed.html-}}\n"
                                           "{{-BLOCK INNER-}}inner{{-END INNER-}}\n")
        self.write(self.pages, "500.html", "{{-EXTENDS framed.html-}}\n")
        templates = self.load()
        self.assertIn("<h1>Not Found</h1>\n<div>inner</div>\n",
                      templates.render_error(HTTPError(404), "sig").decode())
        self.assertIn("<div>framed</div>\n",
                      templates.render_error(HTTPError(500), "sig").decode())

    def test_every_variable_is_still_escaped(self):
        self.write(self.pages, "404.html", "{{-EXTENDS layout.html-}}\n"
                                           '{{-BLOCK MESSAGE-}}<a title="{{-DETAIL-}}">'
                                           "{{-DETAIL-}}</a>{{-END MESSAGE-}}\n")
        page = self.render(404, HOSTILE, HOSTILE)
        self.assertNotIn("<script>", page)
        escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;quoted&#x27;"
        self.assertIn(f'<a title="{escaped}">{escaped}</a>', page)
        self.assertIn(f"<address>{escaped}</address>", page)

    def test_values_cannot_inject_directives(self):
        self.write(self.pages, "404.html", "{{-EXTENDS layout.html-}}\n"
                                           "{{-BLOCK MESSAGE-}}{{-DETAIL-}}{{-END MESSAGE-}}\n")
        detail = "{{-END MESSAGE-}}{{-BLOCK TITLE-}}{{-EXTENDS error.html-}}{{-SIGNATURE-}}"
        self.assertEqual(self.render(404, detail),
                         f"<head>404</head>\n<h1>Not Found</h1>\n{detail}<address>sig</address>\n")

    def test_listing_uses_the_error_pages_layout(self):
        listing = self.load().listing
        self.assertEqual(listing.render({"PATH": "/a&b/", "SIGNATURE": "sig"},
                                        raw={"ROWS": "<tr></tr>"}),
                         "<head>Index of /a&amp;b/</head>\n<table><tr></tr></table>\n"
                         "<address>sig</address>\n")

    def test_layout_beside_the_page_wins(self):
        self.write(self.templates, "layout.html", "own {{-BLOCK MAIN-}}{{-END MAIN-}}"
                                                  "{{-BLOCK TITLE-}}{{-END TITLE-}}")
        self.assertEqual(self.load().listing.render({"PATH": "/"}, raw={"ROWS": "r"}),
                         "own <table>r</table>\nIndex of /")

    def test_blocks_without_extends_render_their_text(self):
        self.write(self.pages, "404.html", "a{{-BLOCK X-}}b{{-BLOCK Y-}}c{{-END Y-}}{{-END X-}}d")
        self.assertEqual(self.render(404), "abcd")

    def test_newline_after_a_directive_is_dropped(self):
        self.write(self.pages, "404.html", "{{-BLOCK X-}}\r\nline\n{{-END X-}}\n\nend")
        self.assertEqual(self.render(404), "line\n\nend")

    def test_keywords_without_an_argument_are_still_variables(self):
        template = Template("{{-BLOCK-}} {{-END-}} {{-EXTENDS-}}", "t")
        self.assertEqual(template.variables, {"BLOCK", "END", "EXTENDS"})
        self.write(self.pages, "404.html", "{{-EXTENDS layout.html-}}\n"
                                           "{{-BLOCK MESSAGE-}}{{-END-}}{{-END MESSAGE-}}\n")
        self.assertIn("<h1>Not Found</h1>\n<address>", self.render(404))

    def test_layout_is_resolved_once_at_load_time(self):
        templates = self.load()
        os.remove(os.path.join(self.pages, "layout.html"))
        self.assertIn("<h1>Conflict</h1>",
                      templates.render_error(HTTPError(409), "sig").decode())

    def test_missing_layout_is_an_error_naming_page_and_layout(self):
        self.write(self.pages, "404.html", "{{-EXTENDS base.html-}}\n")
        self.assertLoadFails(os.path.join(self.pages, "404.html"), "base.html",
                             "is not in")

    def test_listing_layout_missing_from_both_folders_names_both(self):
        self.write(self.templates, "dir.html", "{{-EXTENDS base.html-}}\n")
        self.assertLoadFails("dir.html", "base.html", self.templates, self.pages)

    def test_layout_that_extends_itself_is_an_error(self):
        self.write(self.pages, "layout.html", "{{-EXTENDS layout.html-}}\n")
        layout = os.path.join(self.pages, "layout.html")
        self.assertLoadFails("loop", f"{layout} -> {layout}")

    def test_layouts_that_extend_each_other_are_an_error_naming_the_files(self):
        self.write(self.pages, "a.html", "{{-EXTENDS b.html-}}\n")
        self.write(self.pages, "b.html", "{{-EXTENDS a.html-}}\n")
        self.write(self.pages, "404.html", "{{-EXTENDS a.html-}}\n")
        a, b = (os.path.join(self.pages, name) for name in ("a.html", "b.html"))
        self.assertLoadFails("loop", f"{os.path.join(self.pages, '404.html')} -> {a} -> {b} -> {a}")

    def test_page_that_extends_itself_is_an_error(self):
        self.write(self.pages, "500.html", "{{-EXTENDS 500.html-}}\n")
        self.assertLoadFails("loop", "500.html -> ")

    def test_layout_names_cannot_leave_the_folder(self):
        secret = os.path.join(self.base, "secret.html")
        self.write(self.base, "secret.html", "SECRET")
        for name in ("../secret.html", secret, ".hidden.html", "..", "sub/layout.html",
                     "..\\secret.html"):
            with self.subTest(name=name):
                self.write(self.pages, "404.html", f"{{{{-EXTENDS {name}-}}}}\n")
                self.assertLoadFails("404.html", "line 1", "not a file name in this folder")

    def test_extends_must_come_first(self):
        self.write(self.pages, "404.html", "\n{{-EXTENDS layout.html-}}\n")
        self.assertLoadFails("404.html", "line 2", "EXTENDS must come first")

    def test_text_outside_blocks_of_a_page_is_an_error(self):
        self.write(self.pages, "404.html", "{{-EXTENDS layout.html-}}\n"
                                           "{{-BLOCK MESSAGE-}}x{{-END MESSAGE-}}\n"
                                           "\n  stray {{-DETAIL-}}\n")
        self.assertLoadFails("404.html", "line 4", "text outside a block")

    def test_block_the_layout_does_not_show_is_an_error(self):
        self.write(self.pages, "404.html", "{{-EXTENDS layout.html-}}\n"
                                           "{{-BLOCK MESAGE-}}typo{{-END MESAGE-}}\n")
        self.assertLoadFails("404.html", "block MESAGE", "not shown",
                             os.path.join(self.pages, "layout.html"))

    def test_malformed_blocks_are_errors_naming_file_and_line(self):
        cases = {
            "{{-BLOCK A-}}\nopen": ("block A has no END A",),
            "{{-BLOCK A-}}{{-END B-}}": ("line 1", "END B where END A belongs"),
            "x\n{{-END A-}}": ("line 2", "END A where no END belongs"),
            "{{-BLOCK A-}}{{-END A-}}{{-BLOCK A-}}{{-END A-}}": ("block A is defined twice",),
            "{{-BLOCK A-}}{{-BLOCK A-}}{{-END A-}}{{-END A-}}": ("block A is defined twice",),
            "{{-BLOCK main-}}{{-END main-}}": ("block name 'main'",),
            "{{-BLOCK A B-}}": ("malformed directive",),
            "{{-BLOCK A}}": ("malformed directive",),
            "{{-END -}}": ("malformed directive",),
            "{{-EXTENDS\tlayout.html-}}": ("malformed directive",),
        }
        for text, fragments in cases.items():
            with self.subTest(text=text):
                self.write(self.pages, "404.html", text)
                self.assertLoadFails("404.html", *fragments)

    def test_error_in_a_layout_names_the_layout(self):
        self.write(self.pages, "layout.html", "{{-BLOCK MAIN-}}")
        self.assertLoadFails(os.path.join(self.pages, "layout.html"), "block MAIN has no END")


class ErrorPagesTest(unittest.TestCase):
    """The shipped pages in error_pages/ and other_templates/."""

    @classmethod
    def setUpClass(cls):
        cls.templates = TemplateSet.load(ERROR_PAGES, TEMPLATES)

    def test_every_sent_status_has_its_own_page(self):
        self.assertEqual(set(self.templates.error_pages), set(SENT_STATUSES))

    def test_every_page_shows_status_reason_detail_and_signature(self):
        for status in SENT_STATUSES + (UNSENT_STATUS,):
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
        for status in SENT_STATUSES + (UNSENT_STATUS,):
            with self.subTest(status=status):
                error = HTTPError(status, HOSTILE, headers=[("Location", '/"><script>/')])
                page = self.templates.render_error(error, HOSTILE).decode("utf-8")
                self.assertNotIn("<script>", page)
                self.assertNotIn('"><', page)
                self.assertIn("&lt;script&gt;", page)

    def test_pages_load_nothing_from_elsewhere(self):
        pages = {status: self.templates.render_error(HTTPError(status), SIGNATURE).decode()
                 for status in SENT_STATUSES}
        pages["listing"] = self.templates.listing.render({"PATH": "/"}, raw={"ROWS": ""})
        for page_name, page in pages.items():
            # The one link is the icon, inline: browsers then never ask for /favicon.ico.
            self.assertEqual(re.findall(r"<link[^>]*>", page), [ICON_LINK], page_name)
            # The listing's one script is inline, and what it loads is on this site.
            self.assertLessEqual(page.count("<script"), 1 if page_name == "listing" else 0)
            for marker in ("<script src", "src=", "@import", "url("):
                with self.subTest(page=page_name, marker=marker):
                    self.assertNotIn(marker, page)
            self.assertNotRegex(page, r"""(?:src|href)=["']?(?:[a-z]+:)?//""", page_name)

    def test_every_shipped_page_extends_the_one_layout(self):
        names = [os.path.join(ERROR_PAGES, f"{status}.html") for status in SENT_STATUSES]
        names += [os.path.join(ERROR_PAGES, "error.html"), os.path.join(TEMPLATES, "dir.html")]
        for name in names:
            with self.subTest(name=name), open(name, encoding="utf-8") as file:
                text = file.read()
                self.assertTrue(text.startswith("{{-EXTENDS layout.html-}}\n"))
                for own_head in ("<head", "<style", "<link", "<html", "<!DOCTYPE"):
                    self.assertNotIn(own_head, text)

    def test_every_shipped_status_renders_with_the_layouts_head(self):
        with open(os.path.join(ERROR_PAGES, "layout.html"), encoding="utf-8") as file:
            layout = file.read()
        opening = layout[:layout.index("{{-")]
        stylesheet = layout[layout.index("<style>\n"):layout.index("{{-BLOCK STYLE-}}")]
        self.assertIn("prefers-color-scheme", stylesheet)
        self.assertIn(ICON_LINK, layout)
        pages = {status: self.templates.render_error(HTTPError(status), SIGNATURE).decode()
                 for status in SENT_STATUSES + (UNSENT_STATUS,)}
        pages["listing"] = self.templates.listing.render({"PATH": "/", "SIGNATURE": SIGNATURE},
                                                         raw={"ROWS": ""})
        for page_name, page in pages.items():
            with self.subTest(page=page_name):
                self.assertTrue(page.startswith(opening))
                self.assertIn(stylesheet, page)
                self.assertIn(ICON_LINK, page)
                self.assertEqual(page.count("<head>"), 1)
                self.assertTrue(page.endswith(f"<address>{SIGNATURE}</address>\n</main>\n"
                                              "</body>\n</html>\n"))

    def test_every_page_keeps_its_own_message(self):
        messages = set()
        for status in SENT_STATUSES:
            page = self.templates.render_error(HTTPError(status), SIGNATURE).decode()
            messages.add(re.search(r"</h1>\n(<p>.*</p>)\n<p class=\"detail\">", page).group(1))
        self.assertEqual(len(messages), len(SENT_STATUSES))

    def test_error_pages_are_not_indexed_but_listings_may_be(self):
        page = self.templates.render_error(HTTPError(404), SIGNATURE).decode()
        self.assertIn('<meta name="robots" content="noindex">', page)
        listing = self.templates.listing.render({"PATH": "/"}, raw={"ROWS": ""})
        self.assertNotIn("robots", listing)

    def test_redirect_page_links_to_location(self):
        for status in (301, 303, 308):
            with self.subTest(status=status):
                error = HTTPError(status, headers=[("Location", "/a%20b/?q=1&r=2")])
                page = self.templates.render_error(error, SIGNATURE).decode("utf-8")
                self.assertIn('<a href="/a%20b/?q=1&amp;r=2">/a%20b/?q=1&amp;r=2</a>', page)
                self.assertIn(f'<p class="code">{status}</p>', page)

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


class LivePagesTest(unittest.TestCase):
    """The rendered pages as a client gets them from the real server."""

    @classmethod
    def setUpClass(cls):
        cls.base = tempfile.mkdtemp(prefix="nex-pages-")
        cls.root = os.path.join(cls.base, "root")
        os.makedirs(os.path.join(cls.root, "folder"))
        for path in (os.path.join(cls.base, "outside.txt"), os.path.join(cls.root, ".hidden"),
                     os.path.join(cls.root, "folder", "a.txt")):
            with open(path, "wb") as file:
                file.write(b"text")
        os.symlink(os.path.join(cls.base, "outside.txt"), os.path.join(cls.root, "out-link"))
        cls.server = NexServer(cls.root).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.base, ignore_errors=True)

    def get(self, target):
        """``(status, body text)`` of a GET for ``target`` (as sent, percent-encoded)."""
        with self.server.connect() as sock:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\n\r\n"
                         .encode("ascii"))
            status, headers, body = ResponseReader(sock).read()
        self.assertTrue(headers["content-type"].startswith("text/html"), headers)
        return status, body.decode("utf-8")

    def test_404_names_the_missing_path_escaped(self):
        status, page = self.get("/%3Cscript%3Ealert(%22x%22)%3C/script%3E%27q%27.html")
        self.assertEqual(status, 404)
        self.assertNotIn("<script", page)
        self.assertIn('<p class="detail">The requested path '
                      "/&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#x27;q&#x27;.html "
                      "was not found.</p>", page)

    def test_refused_paths_get_the_same_page_as_missing_ones(self):
        pages = {}
        for target, named in (("/missing", "/missing"), ("/.hidden", "/.hidden"),
                              ("/%2Ehidden", "/.hidden"), ("/out-link", "/out-link"),
                              ("/folder/a.txt/", "/folder/a.txt/")):
            status, page = self.get(target)
            self.assertEqual(status, 404, target)
            self.assertIn(f"The requested path {named} was not found.", page)
            pages[target] = page.replace(named, "PATH")
        self.assertEqual(len(set(pages.values())), 1, pages)

    def test_error_pages_and_listings_carry_the_inline_icon(self):
        for target, expected in (("/", 200), ("/folder/", 200), ("/missing", 404),
                                 ("/folder", 301), ("/%zz", 400)):
            with self.subTest(target=target):
                status, page = self.get(target)
                self.assertEqual(status, expected)
                self.assertIn(ICON_LINK, page)


class BrokenLayoutStartUpTest(unittest.TestCase):
    def test_layout_loop_stops_start_up_with_one_line_and_status_2(self):
        base = tempfile.mkdtemp(prefix="nex-broken-layout-")
        self.addCleanup(shutil.rmtree, base)
        pages = os.path.join(base, "error_pages")
        shutil.copytree(ERROR_PAGES, pages)
        with open(os.path.join(pages, "layout.html"), "w", encoding="utf-8") as file:
            file.write("{{-EXTENDS layout.html-}}\n")
        settings = os.path.join(base, "settings.conf")
        write_settings(settings, {"server": {"error_pages": pages, "templates": TEMPLATES}})
        result = subprocess.run([sys.executable, os.path.join(REPO, "server.py"), "--config",
                                 settings, "--root", base, "--port", "0"],
                                capture_output=True, text=True, timeout=60, cwd=REPO,
                                stdin=subprocess.DEVNULL)
        self.assertEqual(result.returncode, 2, result.stderr)
        layout = os.path.join(pages, "layout.html")
        self.assertRegex(result.stderr, r"\Anex: templates extend each other in a loop: "
                                        rf".*{re.escape(f'{layout} -> {layout}')}\n\Z")


if __name__ == "__main__":
    unittest.main()
