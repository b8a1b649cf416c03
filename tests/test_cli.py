"""Tests for nex.cli: flags, the default settings file, and exit status 2 on a bad setting."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import types
import unittest
from pathlib import Path
from typing import Iterator, List, Optional, Tuple
from unittest import mock

from nex import __version__
from nex.cli import main
from nex.config import Config
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

    def test_upload_flag_wins_over_the_file(self) -> None:
        folder = make_site(self)
        off = write_settings(folder)
        on = write_settings(folder, {("files", "upload"): "yes"}, name="on.conf")
        for argv, expected in (([], False), (["--upload"], True), (["--no-upload"], False)):
            for path, file_value in ((off, False), (on, True)):
                with self.subTest(argv=argv, file_value=file_value):
                    config = run(["--config", str(path)] + argv)[3]
                    assert config is not None
                    self.assertEqual(config.upload, file_value if not argv else expected)

    def test_bind_localhost(self) -> None:
        path = write_settings(make_site(self))
        config = run(["--config", str(path), "--bind", "localhost"])[3]
        assert config is not None
        self.assertEqual(config.bind, "localhost")


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
        for text in ("--port", "--bind", "--root", "--upload", "--no-upload", "--config",
                     "--version", "settings.conf",
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
