"""Tests for nex.cli: flags, the default settings file, and exit status 2 on a bad setting."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import types
import unittest
from pathlib import Path
from typing import Iterator, List, Optional, Tuple
from unittest import mock

from nex import __version__
from nex.auth import hash_password, parse_hash
from nex.cli import main
from nex.config import Config
from tests.support import REPO, START_TIMEOUT
from tests.test_config import (BAD_VALUES, WorkingDirectory, bad_value_message, make_site,
                               shipped_folders, write_settings)


@contextlib.contextmanager
def fake_server(result: int = 0) -> Iterator[mock.Mock]:
    """Stand in for nex.server so main() stops at serve(config) instead of listening."""
    module = types.ModuleType("nex.server")
    module.serve = mock.Mock(return_value=result)  # type: ignore[attr-defined]
    with mock.patch.dict(sys.modules, {"nex.server": module}):
        yield module.serve  # type: ignore[attr-defined]


def run(argv: List[str], default_config: Optional[Path] = None,
        result: int = 0) -> Tuple[int, str, str, Optional[Config]]:
    """main(argv): exit status, stdout, stderr and the Config serve() got (None: not called)."""
    out, err = io.StringIO(), io.StringIO()
    with fake_server(result) as serve, contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        status = main(argv, default_config=default_config)
    config = serve.call_args[0][0] if serve.called else None
    return status, out.getvalue(), err.getvalue(), config


class BadSettingTests(unittest.TestCase):
    """A bad setting prints one line, ``nex: <message>``, and exits 2 without serving."""

    def assert_refused(self, argv: List[str], message: str,
                       default_config: Optional[Path] = None) -> None:
        status, out, err, config = run(argv, default_config)
        self.assertEqual((status, out, err), (2, "", f"nex: {message}\n"))
        self.assertIsNone(config)

    def test_each_bad_value_in_the_file(self) -> None:
        folder = make_site(self)
        for section, key, value, reason in BAD_VALUES:
            with self.subTest(section=section, key=key, value=value):
                path = write_settings(folder, {(section, key): value})
                self.assert_refused(["--config", str(path)],
                                    bad_value_message(path, section, key, value, reason))

    def test_each_bad_value_in_the_default_file(self) -> None:
        folder = make_site(self)
        for section, key, value, reason in BAD_VALUES[:5]:
            with self.subTest(section=section, key=key, value=value):
                path = write_settings(folder, {(section, key): value})
                self.assert_refused([], bad_value_message(path, section, key, value, reason),
                                    default_config=path)

    def test_bad_flags_are_named(self) -> None:
        path = write_settings(make_site(self))
        for argv, message in (
                (["--port", "70000"], "--port 70000: must be an integer from 0 to 65535"),
                (["--port", "-1"], "--port -1: must be an integer from 0 to 65535"),
                (["--port=abc"], "--port abc: must be an integer from 0 to 65535"),
                (["--bind", "example.com"], "--bind example.com: must be an IPv4 or IPv6"
                                            " address (without brackets) or localhost"),
                (["--bind", "[::1]"], "--bind [::1]: must be an IPv4 or IPv6 address"
                                      " (without brackets) or localhost")):
            with self.subTest(argv=argv):
                self.assert_refused(["--config", str(path)] + argv, message)

    def test_missing_root(self) -> None:
        folder = make_site(self)
        path = write_settings(folder)
        with WorkingDirectory(folder):
            self.assert_refused(["--config", str(path), "--root", "htdocs"],
                                f"--root htdocs: folder {folder / 'htdocs'} does not exist")

    def test_missing_config_file(self) -> None:
        folder = make_site(self)
        missing = folder / "missing.conf"
        self.assert_refused(["--config", str(missing)],
                            f"{missing}: settings file does not exist")

    def test_unparsable_config_file(self) -> None:
        folder = make_site(self)
        path = folder / "settings.conf"
        path.write_text("port = 8080\n")
        self.assert_refused(["--config", str(path)],
                            f"{path} line 1: expected a [section] header first")

    def test_bad_setting_prints_no_traceback(self) -> None:
        path = write_settings(make_site(self), {("server", "port"): "99999"})
        status, _, err, _ = run(["--config", str(path)])
        self.assertEqual(status, 2)
        self.assertNotIn("Traceback", err)
        self.assertEqual(len(err.splitlines()), 1)


class GoodRunTests(unittest.TestCase):
    """Good settings reach serve(config), and its status becomes main's."""

    def test_config_file_reaches_serve(self) -> None:
        folder = make_site(self)
        path = write_settings(folder, {("server", "port"): "8123"})
        status, out, err, config = run(["--config", str(path)])
        self.assertEqual((status, out, err), (0, "", ""))
        assert config is not None
        self.assertEqual(config.port, 8123)
        self.assertEqual(config.document_root, str(folder / "public_html"))

    def test_serve_status_is_returned(self) -> None:
        path = write_settings(make_site(self))
        self.assertEqual(run(["--config", str(path)], result=3)[0], 3)

    def test_default_config_is_read_when_it_exists(self) -> None:
        path = write_settings(make_site(self), {("server", "port"): "8124"})
        config = run([], default_config=path)[3]
        assert config is not None
        self.assertEqual(config.port, 8124)

    def test_config_flag_wins_over_the_default_file(self) -> None:
        folder = make_site(self)
        default = write_settings(folder, {("server", "port"): "99999"})
        chosen = write_settings(folder, {("server", "port"): "8125"}, name="chosen.conf")
        config = run(["--config", str(chosen)], default_config=default)[3]
        assert config is not None
        self.assertEqual(config.port, 8125)

    def test_missing_default_config_means_builtin_defaults(self) -> None:
        shipped = shipped_folders(self, "checkout")
        here = make_site(self)
        with WorkingDirectory(here):
            status, _, err, config = run([], default_config=here / "absent.conf")
        self.assertEqual((status, err), (0, ""))
        assert config is not None
        self.assertEqual(config.port, Config.port)
        self.assertEqual(config.document_root, str(here))
        self.assertEqual(config.templates, str(shipped / "other_templates"))

    def test_flags_win_over_the_file(self) -> None:
        folder = make_site(self)
        other = make_site(self)
        path = write_settings(folder, {("server", "port"): "8000",
                                       ("server", "bind"): "0.0.0.0"})
        config = run(["--config", str(path), "--port", "0", "--bind", "::1",
                      "--root", str(other / "public_html")])[3]
        assert config is not None
        self.assertEqual((config.port, config.bind, config.document_root),
                         (0, "::1", str(other / "public_html")))
        self.assertEqual(config.templates, str(folder / "other_templates"))

    def test_relative_root_resolves_against_the_current_folder(self) -> None:
        folder = make_site(self)
        here = make_site(self)
        path = write_settings(folder)
        with WorkingDirectory(here):
            config = run(["--config", str(path), "--root", "public_html"])[3]
        assert config is not None
        self.assertEqual(config.document_root, str(here / "public_html"))

    def test_bind_localhost(self) -> None:
        path = write_settings(make_site(self))
        config = run(["--config", str(path), "--bind", "localhost"])[3]
        assert config is not None
        self.assertEqual(config.bind, "localhost")


class ProxyFlagTests(unittest.TestCase):
    """--proxy turns the forward proxy on, over whatever the file says."""

    def test_flag_sets_enabled(self) -> None:
        path = write_settings(make_site(self), {("proxy", "enabled"): "no"})
        config = run(["--config", str(path), "--proxy"])[3]
        assert config is not None
        self.assertTrue(config.proxy_enabled)

    def test_without_the_flag_the_file_decides(self) -> None:
        folder = make_site(self)
        for text, expected in (("yes", True), ("no", False)):
            with self.subTest(text=text):
                path = write_settings(folder, {("proxy", "enabled"): text})
                config = run(["--config", str(path)])[3]
                assert config is not None
                self.assertIs(config.proxy_enabled, expected)

    def test_flag_does_not_hide_a_bad_file_value(self) -> None:
        path = write_settings(make_site(self), {("proxy", "enabled"): "maybe"})
        status, _, err, config = run(["--config", str(path), "--proxy"])
        self.assertEqual((status, config), (2, None))
        self.assertEqual(err, f"nex: {path} [proxy] enabled = maybe: must be yes, no, true,"
                              " false, on or off\n")


class FakeStdin(io.StringIO):
    """Standard input that is, or is not, a terminal."""

    def __init__(self, text: str, tty: bool) -> None:
        super().__init__(text)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class HashPasswordTests(unittest.TestCase):
    """--hash-password USER prints a users-file line and never starts the server."""

    def hash(self, user: str, stdin: str = "", tty: bool = False,
             typed: Tuple[str, ...] = ()) -> Tuple[int, str, str]:
        with mock.patch("sys.stdin", FakeStdin(stdin, tty)), \
                mock.patch("getpass.getpass", side_effect=list(typed)) as asked, \
                mock.patch("nex.cli.hash_password",
                           side_effect=lambda password: hash_password(password, n=1024, r=1)):
            status, out, err, config = run(["--hash-password", user, "--port", "99999"])
        self.assertIsNone(config)
        self.assertEqual(asked.call_count, len(typed))
        return status, out, err

    def assert_line_for(self, out: str, user: str, password: str) -> None:
        self.assertTrue(out.endswith("\n"))
        name, stored = out[:-1].split(":", 1)
        self.assertEqual(name, user)
        self.assertTrue(parse_hash(stored).verify(password))

    def test_password_from_a_pipe(self) -> None:
        for stdin in ("s3cret\n", "s3cret", "s3cret\r\n", "s3cret\nignored\n"):
            with self.subTest(stdin=stdin):
                status, out, err = self.hash("alice", stdin)
                self.assertEqual((status, err), (0, ""))
                self.assert_line_for(out, "alice", "s3cret")

    def test_password_keeps_its_blanks(self) -> None:
        status, out, _ = self.hash("alice", " two words \n")
        self.assertEqual(status, 0)
        self.assert_line_for(out, "alice", " two words ")

    def test_unicode_user_and_password(self) -> None:
        status, out, _ = self.hash("j\u00fcrgen", "gr\u00fcn\n")
        self.assertEqual(status, 0)
        self.assert_line_for(out, "j\u00fcrgen", "gr\u00fcn")

    def test_terminal_asks_twice(self) -> None:
        status, out, err = self.hash("alice", tty=True, typed=("s3cret", "s3cret"))
        self.assertEqual((status, err), (0, ""))
        self.assert_line_for(out, "alice", "s3cret")

    def test_terminal_passwords_that_differ(self) -> None:
        self.assertEqual(self.hash("alice", tty=True, typed=("s3cret", "s3cre7")),
                         (1, "", "nex: the two passwords differ\n"))

    def test_empty_password(self) -> None:
        for stdin in ("", "\n"):
            with self.subTest(stdin=stdin):
                self.assertEqual(self.hash("alice", stdin),
                                 (1, "", "nex: the password is empty\n"))

    def test_password_with_control_characters(self) -> None:
        self.assertEqual(self.hash("alice", "a\tb\n"),
                         (1, "", "nex: a password cannot hold control characters\n"))

    def test_server_py_reads_a_piped_password(self) -> None:
        result = subprocess.run([sys.executable, os.path.join(REPO, "server.py"),
                                 "--hash-password", "alice"], input="s3cret\n",
                                capture_output=True, text=True, timeout=START_TIMEOUT)
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assert_line_for(result.stdout, "alice", "s3cret")

    def test_bad_user_names(self) -> None:
        for user, reason in (("a:b", "a user name cannot hold ':'"),
                             ("#root", "a user name cannot start with '#'"),
                             ("", "a user name cannot be empty")):
            with self.subTest(user=user):
                self.assertEqual(self.hash(user, "pw\n"),
                                 (2, "", f"nex: --hash-password {user!r}: {reason}\n"))


class UsageTests(unittest.TestCase):
    """--help, --version and usage errors answer without loading settings or serving."""

    def test_version(self) -> None:
        status, out, err, config = run(["--version"])
        self.assertEqual((status, out, err, config), (0, f"Nex {__version__}\n", "", None))

    def test_help_explains_every_flag_and_the_settings_file(self) -> None:
        with mock.patch.dict(os.environ, {"COLUMNS": "100"}):  # argparse wraps to this width
            status, out, _, config = run(["--help"],
                                         default_config=Path("/srv/nex/settings.conf"))
        self.assertEqual((status, config), (0, None))
        words = " ".join(out.split())
        for text in ("--port", "--bind", "--root", "--config", "--version", "settings.conf",
                     "--proxy", "--hash-password USER", "USER:hash line",
                     "0 picks any free port", "current folder", "/srv/nex/settings.conf"):
            self.assertIn(text, words)

    def test_unknown_flag_is_a_usage_error(self) -> None:
        status, _, err, config = run(["--prot", "80"])
        self.assertEqual((status, config), (2, None))
        self.assertIn("unrecognized arguments: --prot", err)

    def test_flag_without_value_is_a_usage_error(self) -> None:
        status, _, err, config = run(["--port"])
        self.assertEqual((status, config), (2, None))
        self.assertIn("expected one argument", err)


if __name__ == "__main__":
    unittest.main()
