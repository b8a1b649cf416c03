"""--check-config: the settings, users file, certificate and templates checked without serving."""

from __future__ import annotations

import os
import subprocess
import sys
import unittest

from tests.support import REPO, START_TIMEOUT, make_certificate, requires_openssl, \
    write_settings
from tests.support.settings import make_site, run


class CheckConfigTests(unittest.TestCase):
    """main(["--check-config", ...]) prints ok or one line, returns 0 or 2, never serves."""

    def setUp(self) -> None:
        self.site = make_site(self)
        self.settings = self.site / "settings.conf"

    def write(self, settings) -> None:
        write_settings(self.settings, settings)

    def test_good_settings_print_ok_and_do_not_serve(self) -> None:
        self.write({"server": {"document_root": "public_html"}})
        status, out, err, served = run(["--config", str(self.settings), "--check-config"])
        self.assertEqual((status, out, err, served), (0, "ok\n", "", None))

    def test_bad_setting_prints_the_one_line_error(self) -> None:
        self.write({"server": {"document_root": "public_html", "port": "99999"}})
        status, out, err, served = run(["--config", str(self.settings), "--check-config"])
        self.assertEqual((status, out, served), (2, "", None))
        self.assertEqual(err, f"nex: {self.settings} [server] port = 99999: must be an "
                              "integer from 0 to 65535\n")

    def test_bad_users_file_fails_the_check(self) -> None:
        (self.site / "users").write_text("not a users line\n")
        self.write({"server": {"document_root": "public_html"}, "auth": {"users_file": "users"}})
        status, out, err, _ = run(["--config", str(self.settings), "--check-config"])
        self.assertEqual((status, out), (2, ""))
        self.assertIn("[auth] users_file", err)
        self.assertEqual(err.count("\n"), 1)

    def test_broken_template_fails_the_check(self) -> None:
        (self.site / "other_templates" / "dir.html").write_text("{{-BLOCK rows-}} no end\n")
        self.write({"server": {"document_root": "public_html", "templates": "other_templates"}})
        status, out, err, _ = run(["--config", str(self.settings), "--check-config"])
        self.assertEqual((status, out), (2, ""))
        self.assertRegex(err, r"^nex: template .*dir\.html.*\n$")

    @requires_openssl
    def test_key_that_does_not_match_the_certificate_fails_the_check(self) -> None:
        certificate, _ = make_certificate(str(self.site), "one")
        _, other_key = make_certificate(str(self.site), "two")
        self.write({"server": {"document_root": "public_html"},
                    "tls": {"certificate": certificate, "key": other_key}})
        status, out, err, _ = run(["--config", str(self.settings), "--check-config"])
        self.assertEqual((status, out), (2, ""))
        self.assertTrue(err.startswith("nex: ") and err.count("\n") == 1, err)

    def test_command_checks_and_exits_without_listening(self) -> None:
        self.write({"server": {"document_root": "public_html", "port": "1"}})
        done = subprocess.run([sys.executable, os.path.join(REPO, "server.py"), "--config",
                               str(self.settings), "--check-config"], capture_output=True,
                              text=True, timeout=START_TIMEOUT, cwd=REPO)
        self.assertEqual((done.returncode, done.stdout, done.stderr), (0, "ok\n", ""))


if __name__ == "__main__":
    unittest.main()
