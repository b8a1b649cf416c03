"""Tests for nex.process.cli: flags, the default settings file, and exit status 2 on a bad
setting."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from typing import Tuple
from unittest import mock

from nex import SERVER_SOFTWARE, __version__
from nex.site.passwords import hash_password, parse_hash, parse_users
from nex.process.cli import main
from nex.process.config import Config, load_config
from tests.support import REPO, START_TIMEOUT, ResponseReader, wait_for_line
from tests.support.settings import (SHIPPED_SETTINGS, CommandLineCase, WorkingDirectory,
                                    fake_server, fake_supervisor, make_site, run,
                                    shipped_folders, write_settings)


class BadSettingTests(CommandLineCase):
    """A bad setting prints one line, ``nex: <message>``, and exits 2 without serving."""

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
        self.assertIsNotNone(config)
        self.assertEqual(config.port, 8123)
        self.assertEqual(config.document_root, str(folder / "public_html"))

    def test_serve_status_is_returned(self) -> None:
        path = write_settings(make_site(self))
        self.assertEqual(run(["--config", str(path)], result=3)[0], 3)

    def test_default_config_is_read_when_it_exists(self) -> None:
        path = write_settings(make_site(self), {("server", "port"): "8124"})
        config = run([], default_config=path)[3]
        self.assertIsNotNone(config)
        self.assertEqual(config.port, 8124)

    def test_config_flag_wins_over_the_default_file(self) -> None:
        folder = make_site(self)
        default = write_settings(folder, {("server", "port"): "99999"})
        chosen = write_settings(folder, {("server", "port"): "8125"}, name="chosen.conf")
        config = run(["--config", str(chosen)], default_config=default)[3]
        self.assertIsNotNone(config)
        self.assertEqual(config.port, 8125)

    def test_missing_default_config_means_builtin_defaults(self) -> None:
        shipped = shipped_folders(self, "checkout")
        here = make_site(self)
        with WorkingDirectory(here):
            status, _, err, config = run([], default_config=here / "absent.conf")
        self.assertEqual((status, err), (0, ""))
        self.assertIsNotNone(config)
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
        self.assertIsNotNone(config)
        self.assertEqual((config.port, config.bind, config.document_root),
                         (0, "::1", str(other / "public_html")))
        self.assertEqual(config.templates, str(folder / "other_templates"))

    def test_cors_and_zip_flags(self) -> None:
        folder = make_site(self)
        path = write_settings(folder, {("cors", "allow_origins"): "https://app.example",
                                       ("files", "zip_download"): "no"})
        config = run(["--config", str(path)])[3]
        self.assertIsNotNone(config)
        self.assertEqual((config.cors_allow_origins, config.zip_download),
                         (("https://app.example",), False))
        config = run(["--config", str(path), "--cors", "--zip"])[3]
        self.assertIsNotNone(config)
        self.assertEqual((config.cors_allow_origins, config.zip_download), (("*",), True))

    def test_cors_and_zip_are_off_by_default(self) -> None:
        config = run(["--config", str(write_settings(make_site(self)))])[3]
        self.assertIsNotNone(config)
        self.assertEqual((config.cors_allow_origins, config.zip_download), ((), False))

    def test_relative_root_resolves_against_the_current_folder(self) -> None:
        folder = make_site(self)
        here = make_site(self)
        path = write_settings(folder)
        with WorkingDirectory(here):
            config = run(["--config", str(path), "--root", "public_html"])[3]
        self.assertIsNotNone(config)
        self.assertEqual(config.document_root, str(here / "public_html"))

    def test_upload_flag_wins_over_the_file(self) -> None:
        folder = make_site(self)
        off = write_settings(folder)
        on = write_settings(folder, {("files", "upload"): "yes"}, name="on.conf")
        for argv, expected in (([], False), (["--upload"], True), (["--no-upload"], False)):
            for path, file_value in ((off, False), (on, True)):
                with self.subTest(argv=argv, file_value=file_value):
                    config = run(["--config", str(path)] + argv)[3]
                    self.assertIsNotNone(config)
                    self.assertEqual(config.upload, file_value if not argv else expected)

    def test_webdav_flag_wins_over_the_file_and_alone_means_write(self) -> None:
        folder = make_site(self)
        path = write_settings(folder, {("files", "webdav"): "read"})
        for argv, expected in (([], "read"), (["--webdav"], "write"),
                               (["--webdav", "no"], "no"), (["--webdav=read"], "read")):
            with self.subTest(argv=argv):
                config = run(["--config", str(path)] + argv)[3]
                self.assertIsNotNone(config)
                self.assertEqual(config.webdav, expected)
        status, _, err, _ = run(["--config", str(path), "--webdav", "all"])
        self.assertEqual(status, 2)
        self.assertIn("--webdav", err)

    def test_bind_localhost(self) -> None:
        path = write_settings(make_site(self))
        config = run(["--config", str(path), "--bind", "localhost"])[3]
        self.assertIsNotNone(config)
        self.assertEqual(config.bind, "localhost")


class AuthFileFlagTests(unittest.TestCase):
    """--auth-file names the users file; a bad one stops Nex with one line."""

    def setUp(self) -> None:
        self.folder = make_site(self)
        self.users = self.folder / "users"

    def test_flag_reaches_the_config_and_protects_the_whole_site(self) -> None:
        self.users.write_text(f"alice:{hash_password('x', n=1024, r=1, p=1)}\n")
        path = write_settings(self.folder)
        config = run(["--config", str(path), "--auth-file", str(self.users)])[3]
        self.assertIsNotNone(config)
        self.assertEqual((config.auth_users_file, config.auth_protect),
                         (str(self.users), ("/",)))

    def test_bad_line_stops_start_up_with_one_line(self) -> None:
        self.users.write_text(f"alice:{hash_password('x', n=1024, r=1, p=1)}\nbob:\n")
        path = write_settings(self.folder)
        status, out, err, config = run(["--config", str(path), "--auth-file", str(self.users)])
        self.assertEqual((status, out, config), (2, "", None))
        self.assertEqual(err, f"nex: --auth-file {self.users}: {self.users} line 2: the hash is"
                              " not scrypt$<n>$<r>$<p>$<salt>$<key> (use nex --hash-password"
                              " USER)\n")


class ProxyFlagTests(unittest.TestCase):
    """--proxy turns the forward proxy on, over whatever the file says."""

    def test_flag_sets_enabled(self) -> None:
        path = write_settings(make_site(self), {("proxy", "enabled"): "no"})
        config = run(["--config", str(path), "--proxy"])[3]
        self.assertIsNotNone(config)
        self.assertTrue(config.proxy_enabled)

    def test_without_the_flag_the_file_decides(self) -> None:
        folder = make_site(self)
        for text, expected in (("yes", True), ("no", False)):
            with self.subTest(text=text):
                path = write_settings(folder, {("proxy", "enabled"): text})
                config = run(["--config", str(path)])[3]
                self.assertIsNotNone(config)
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
                mock.patch("nex.process.cli.hash_password",
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
        self.assertEqual(list(parse_users(out.encode("utf-8"))), [user])

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

    def test_terminal_asks_again_when_the_passwords_differ(self) -> None:
        status, out, err = self.hash("alice", tty=True,
                                     typed=("s3cret", "s3cre7", "n3w", "n3w"))
        self.assertEqual((status, err), (0, "The two passwords differ; type them again.\n"))
        self.assert_line_for(out, "alice", "n3w")

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


class WorkersTests(unittest.TestCase):
    """--workers: one worker is the plain server; more go to the supervisor."""

    def test_one_worker_runs_the_server_in_this_process(self) -> None:
        path = write_settings(make_site(self))
        with fake_supervisor() as supervise:
            config = run(["--config", str(path), "--workers", "1"])[3]
        self.assertIsNotNone(config)
        self.assertEqual(config.workers, 1)
        supervise.assert_not_called()

    def test_several_workers_go_to_the_supervisor_and_its_status_is_returned(self) -> None:
        folder = make_site(self)
        path = write_settings(folder, {("server", "workers"): "2"})
        with fake_supervisor(result=5) as supervise, fake_server() as serve:
            status = main(["--config", str(path), "--workers", "3", "--port", "0"])
        self.assertEqual(status, 5)
        serve.assert_not_called()
        config, load = supervise.call_args[0]
        self.assertEqual((config.workers, config.port), (3, 0))
        # A reload reads the file again with the same flags on top.
        write_settings(folder, {("server", "workers"): "2", ("server", "port"): "81",
                                ("caching", "cache_control"): "max-age=60"})
        reloaded = load()
        self.assertEqual((reloaded.workers, reloaded.port, reloaded.cache_control),
                         (3, 0, "max-age=60"))

    def test_workers_from_the_file(self) -> None:
        path = write_settings(make_site(self), {("server", "workers"): "4"})
        with fake_supervisor() as supervise:
            run(["--config", str(path)])
        self.assertEqual(supervise.call_args[0][0].workers, 4)

    def test_auto_is_one_per_cpu(self) -> None:
        path = write_settings(make_site(self))
        with fake_supervisor() as supervise, mock.patch("nex.process.values.cpu_count",
                                                        return_value=6):
            run(["--config", str(path), "--workers", "auto"])
        self.assertEqual(supervise.call_args[0][0].workers, 6)

    def test_bad_worker_counts_are_refused(self) -> None:
        path = write_settings(make_site(self))
        for value in ("0", "257", "two", "-1"):
            with self.subTest(value=value):
                status, out, err, config = run(["--config", str(path), f"--workers={value}"])
                self.assertEqual((status, out, config), (2, "", None))
                self.assertEqual(err, f"nex: --workers {value}: must be auto or an integer"
                                      " from 1 to 256\n")


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
        for text in ("--port", "--bind", "--root", "--config", "--workers", "auto",
                     "--version", "settings.conf", "--cors", "--zip", "--upload", "--no-upload",
                     "allow_origins = *", "zip_download = yes",
                     "--auth-file FILE", "--hash-password USER", "USER:hash line",
                     "0 picks any free port", "current folder", "/srv/nex/settings.conf"):
            self.assertIn(text, words)

    def test_help_of_an_installed_nex_points_to_write_config(self) -> None:
        with mock.patch.dict(os.environ, {"COLUMNS": "100"}):
            status, out, _, _ = run(["--help"])
        self.assertEqual(status, 0)
        words = " ".join(out.split())
        self.assertIn("--write-config FILE writes one with every key at its default", words)
        self.assertIn("Without --config Nex runs on built-in defaults and serves the current"
                      " folder.", words)
        self.assertNotIn("server.py", words)

    def test_unknown_flag_is_a_usage_error(self) -> None:
        status, _, err, config = run(["--prot", "80"])
        self.assertEqual((status, config), (2, None))
        self.assertIn("unrecognized arguments: --prot", err)

    def test_flag_without_value_is_a_usage_error(self) -> None:
        status, _, err, config = run(["--port"])
        self.assertEqual((status, config), (2, None))
        self.assertIn("expected one argument", err)


class VersionTests(unittest.TestCase):
    """One version, written once in nex/__init__.py."""

    def test_server_software_is_derived_from_the_version(self) -> None:
        self.assertRegex(__version__, r"\A[0-9]+\.[0-9]+\.[0-9]+\Z")
        self.assertEqual(SERVER_SOFTWARE, f"Nex/{__version__}")
        self.assertEqual(run(["--version"])[1], f"Nex {__version__}\n")

    def test_setup_py_reads_the_same_version(self) -> None:
        result = subprocess.run([sys.executable, "setup.py", "--version"], cwd=REPO,
                                capture_output=True, text=True, timeout=120,
                                stdin=subprocess.DEVNULL)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.splitlines()[-1], __version__)


class WriteConfigTests(unittest.TestCase):
    """--write-config FILE writes the shipped settings.conf and stops."""

    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="nex-write-")).resolve()
        self.addCleanup(shutil.rmtree, self.folder)

    def test_writes_the_shipped_settings_file(self) -> None:
        path = self.folder / "settings.conf"
        status, out, err, config = run(["--write-config", str(path)])
        self.assertEqual((status, err, config), (0, "", None))
        self.assertIn(str(path), out)
        self.assertEqual(path.read_bytes(), SHIPPED_SETTINGS.read_bytes())
        written = load_config(str(path), {"document_root": str(self.folder)})
        self.assertEqual(written.port, Config.port)

    def test_an_existing_file_is_never_overwritten(self) -> None:
        path = self.folder / "settings.conf"
        path.write_text("[server]\nport = 81\n")
        status, out, err, config = run(["--write-config", str(path)])
        self.assertEqual((status, out, config), (2, "", None))
        self.assertEqual(err, f"nex: {path} already exists; Nex does not overwrite it (remove"
                              " it or name another file)\n")
        self.assertEqual(path.read_text(), "[server]\nport = 81\n")

    def test_a_file_that_cannot_be_created_is_an_error(self) -> None:
        path = self.folder / "missing" / "settings.conf"
        status, out, err, config = run(["--write-config", str(path)])
        self.assertEqual((status, out, config), (2, "", None))
        self.assertEqual(err, f"nex: cannot write {path}: No such file or directory\n")


class MovedSettingsFileTest(unittest.TestCase):
    """The settings guide's example: the shipped settings.conf copied to /etc/nex and named
    there."""

    def test_documented_example_starts_and_serves(self) -> None:
        guide = (Path(REPO) / "docs" / "settings.md").read_text(encoding="utf-8")
        example = "python3 server.py --root /srv/share --config /etc/nex/settings.conf"
        self.assertTrue(example in guide, f"docs/settings.md no longer shows {example!r}")
        base = Path(tempfile.mkdtemp(prefix="nex-moved-")).resolve()
        self.addCleanup(shutil.rmtree, base)
        etc, share = base / "etc" / "nex", base / "srv" / "share"
        etc.mkdir(parents=True)
        share.mkdir(parents=True)
        shutil.copy(SHIPPED_SETTINGS, etc / "settings.conf")
        (share / "hello.txt").write_bytes(b"hello from /srv/share\n")
        out_path = base / "stdout"
        with open(out_path, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, os.path.join(REPO, "server.py"), "--root", str(share),
                 "--config", str(etc / "settings.conf"), "--port", "0"],
                cwd=base, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            port = wait_for_banner(out_path, process, share)
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                reader = ResponseReader(sock)
                sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
                status, headers, body = reader.read()
                self.assertEqual((status, body), (200, b"hello from /srv/share\n"))
                self.assertEqual(headers["server"], f"Nex/{__version__}")
                sock.sendall(b"GET /missing HTTP/1.1\r\nHost: localhost\r\n"
                             b"Accept: text/html\r\n\r\n")
                status, _, page = reader.read()
                self.assertEqual(status, 404)
                self.assertIn(f"{SERVER_SOFTWARE} Server at localhost Port {port}".encode(),
                              page)
        finally:
            process.send_signal(signal.SIGTERM)
            self.assertEqual(process.wait(START_TIMEOUT), 0)


def wait_for_banner(out_path: Path, process: subprocess.Popen, root: Path) -> int:
    """The port from the start-up line ``Nex/VERSION serving ROOT at URL``."""
    banner = re.compile(rf"{re.escape(SERVER_SOFTWARE)} serving {re.escape(str(root))}"
                        r" at http://127\.0\.0\.1:([0-9]+)/ ")
    match = wait_for_line(str(out_path), process, banner)
    if match:
        return int(match.group(1))
    raise AssertionError(f"Nex did not start: {out_path.read_text(errors='replace')!r}")


if __name__ == "__main__":
    unittest.main()
