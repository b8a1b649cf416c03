"""Start-up checks: ``workers = 2`` refuses what ``workers = 1`` refuses, with the same line.

The supervisor makes every load a worker makes before it starts any worker
(:func:`nex.process.startup.check_startup`), so each case below runs the real ``server.py``
with one process and with two workers and expects the same one ``nex:`` line on stderr,
exit status 2, nothing on stdout (no start-up line), no worker started (the supervisor would
say so on stderr, its error log here) and no pid file left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import unittest
from typing import Dict, Mapping, Optional

from nex.files.templates import TemplateError
from nex.files.uploadpage import UploadPage
from nex.process.config import Config
from nex.process.log import Logger
from nex.process.startup import (StartupError, check_startup, log_failure, open_logger,
                                 restart_only_change)
from nex.process.worker import fault_line
from tests.support import (REPO, get, START_TIMEOUT, NexServer, make_certificate, open_descriptors,
                           requires_openssl, wait_until, write_settings)

#: Runs server.py with a UDP socket as the one systemd passed (LISTEN_PID is this process,
#: which exec keeps).
_WITH_A_DATAGRAM_SOCKET = (
    "import os, socket, sys; udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
    "os.dup2(udp.fileno(), 3); os.set_inheritable(3, True); "
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
    "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")
#: Runs server.py told that systemd passed two sockets, where it passed none.
_WITHOUT_THE_SOCKETS_NAMED = (
    "import os, sys; os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='2'); "
    "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")
#: Runs server.py with the server class of run_server() failing as nothing foresaw.
_WITH_A_FAULTY_SERVER = (
    "import sys, nex.process.run\n"
    "def fault(*args, **kwargs):\n"
    "    raise RuntimeError('simulated fault\\nover two lines')\n"
    "nex.process.run.Server = fault\n"
    "from nex.process.cli import main; sys.exit(main(sys.argv[1:]))")


def unix_socket_file(test: unittest.TestCase, path: str) -> None:
    """Make ``path`` a Unix socket: it exists and is writable, yet open() fails (ENXIO)."""
    sock = socket.socket(socket.AF_UNIX)
    test.addCleanup(sock.close)
    sock.bind(path)


def listening_socket(test: unittest.TestCase) -> int:
    """A port a socket of the test listens on."""
    sock = socket.socket()
    test.addCleanup(sock.close)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock.getsockname()[1]


class StartupFolder(unittest.TestCase):
    """A folder to serve, with room for settings, certificates and logs."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="nex-startcheck-")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.root = os.path.join(self.folder, "public_html")
        os.mkdir(self.root)

    def path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def settings(self, settings: Mapping[str, Mapping[str, object]]) -> str:
        path = self.path("settings.conf")
        write_settings(path, settings)
        return path


class SameRefusalTest(StartupFolder):
    """Each start-up problem: the same one line and status 2 with one process and with two
    workers, before any worker starts."""

    def refusal(self, *args: str, settings: Optional[Mapping[str, Mapping[str, object]]] = None,
                prefix: tuple = ()) -> str:
        """The one line Nex refuses to start with, the same for workers = 1 and 2."""
        if settings is not None:
            args += ("--config", self.settings(settings))
        lines: Dict[int, str] = {}
        pid_file = self.path("nex.pid")
        for workers in (1, 2):
            with self.subTest(workers=workers):
                result = subprocess.run(
                    [sys.executable, *prefix, os.path.join(REPO, "server.py"), "--root",
                     self.root, "--port", "0", "--workers", str(workers), "--pid-file",
                     pid_file, *args],
                    capture_output=True, text=True, timeout=START_TIMEOUT, cwd=REPO,
                    stdin=subprocess.DEVNULL)
                self.assertEqual((result.returncode, result.stdout), (2, ""), result.stderr)
                self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
                self.assertTrue(result.stderr.startswith("nex: "), result.stderr)
                self.assertFalse(os.path.exists(pid_file))
                lines[workers] = result.stderr
        self.assertEqual(lines[1], lines[2])
        return lines[1]

    @requires_openssl
    def test_certificate_that_is_not_pem(self) -> None:
        _, key = make_certificate(self.folder, "a")
        with open(self.path("junk.crt"), "w") as out:
            out.write("not a certificate\n")
        line = self.refusal("--tls-cert", self.path("junk.crt"), "--tls-key", key)
        self.assertEqual(line, f"nex: TLS certificate {self.path('junk.crt')} holds no PEM "
                               "certificate\n")

    @requires_openssl
    def test_key_that_does_not_belong_to_the_certificate(self) -> None:
        certificate, _ = make_certificate(self.folder, "a")
        _, other_key = make_certificate(self.folder, "b")
        line = self.refusal("--tls-cert", certificate, "--tls-key", other_key)
        self.assertEqual(line, f"nex: TLS key {other_key} does not belong to certificate "
                               f"{certificate}\n")

    @requires_openssl
    def test_key_file_that_is_missing(self) -> None:
        certificate, _ = make_certificate(self.folder, "a")
        line = self.refusal(settings={"tls": {"certificate": certificate,
                                              "key": self.path("absent.key")}})
        self.assertIn("[tls] key", line)
        self.assertIn("does not exist", line)

    def test_access_log_that_cannot_be_opened(self) -> None:
        log = self.path("access.log")
        unix_socket_file(self, log)
        line = self.refusal(settings={"logging": {"access_log": log}})
        self.assertTrue(line.startswith(f"nex: [logging] access_log = {log}: cannot open it: "),
                        line)

    def test_error_log_that_cannot_be_opened(self) -> None:
        log = self.path("error.log")
        unix_socket_file(self, log)
        line = self.refusal(settings={"logging": {"error_log": log}})
        self.assertTrue(line.startswith(f"nex: [logging] error_log = {log}: cannot open it: "),
                        line)

    def test_broken_template(self) -> None:
        templates = self.path("templates")
        shutil.copytree(os.path.join(REPO, "other_templates"), templates)
        with open(os.path.join(templates, "dir.html"), "w") as out:
            out.write("{{-BLOCK rows-}} no end\n")
        line = self.refusal(settings={"server": {"templates": templates}})
        self.assertRegex(line, r"^nex: template .*dir\.html")

    def test_users_file_that_is_not_a_users_file(self) -> None:
        with open(self.path("users"), "w") as out:
            out.write("not a users line\n")
        line = self.refusal(settings={"auth": {"users_file": self.path("users")}})
        self.assertIn("[auth] users_file", line)

    def test_port_in_use(self) -> None:
        port = listening_socket(self)
        line = self.refusal("--port", str(port))
        self.assertTrue(line.startswith(f"nex: cannot listen on 127.0.0.1 port {port}: "), line)

    def test_metrics_port_in_use(self) -> None:
        port = listening_socket(self)
        line = self.refusal(settings={"metrics": {"enabled": "yes", "port": port}})
        self.assertTrue(line.startswith(f"nex: cannot listen for metrics on 127.0.0.1 port "
                                        f"{port}: "), line)

    def test_socket_from_systemd_that_is_not_a_listener(self) -> None:
        line = self.refusal(prefix=("-c", _WITH_A_DATAGRAM_SOCKET))
        self.assertEqual(line, "nex: descriptor 3 from systemd is not a listening TCP socket "
                               "(use ListenStream= with an address and port)\n")

    def test_sockets_systemd_names_but_did_not_pass(self) -> None:
        line = self.refusal(prefix=("-c", _WITHOUT_THE_SOCKETS_NAMED))
        self.assertTrue(line.startswith("nex: LISTEN_FDS=2: descriptor 3 from systemd is not "
                                        "open: "), line)


class CheckConfigTest(StartupFolder):
    """--check-config says what a start would say, with or without workers."""

    def check(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, os.path.join(REPO, "server.py"), "--root",
                               self.root, "--check-config", *args], capture_output=True,
                              text=True, timeout=START_TIMEOUT, cwd=REPO,
                              stdin=subprocess.DEVNULL)

    def test_a_log_file_that_cannot_be_opened_is_found_as_a_start_finds_it(self) -> None:
        log = self.path("access.log")
        unix_socket_file(self, log)
        config = self.settings({"logging": {"access_log": log}})
        started = subprocess.run([sys.executable, os.path.join(REPO, "server.py"), "--root",
                                  self.root, "--port", "0", "--workers", "2", "--config",
                                  config], capture_output=True, text=True,
                                 timeout=START_TIMEOUT, cwd=REPO, stdin=subprocess.DEVNULL)
        for workers in ("1", "2"):
            with self.subTest(workers=workers):
                result = self.check("--workers", workers, "--config", config)
                self.assertEqual((result.returncode, result.stdout, result.stderr),
                                 (2, "", started.stderr))

    def test_a_log_file_not_there_yet_is_not_created(self) -> None:
        log = self.path("access.log")
        result = self.check("--workers", "2", "--config",
                            self.settings({"logging": {"access_log": log}}))
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "ok\n", ""))
        self.assertFalse(os.path.exists(log))


class WorkerFaultTest(StartupFolder):
    """A worker that fails for a reason the supervisor could not foresee: one line naming
    it, relayed by the supervisor, and no traceback."""

    def test_an_unforeseen_fault_is_relayed_in_one_line(self) -> None:
        result = subprocess.run(
            [sys.executable, "-c", _WITH_A_FAULTY_SERVER, "--root", self.root, "--port", "0",
             "--workers", "2"], capture_output=True, text=True, timeout=START_TIMEOUT,
            cwd=REPO, stdin=subprocess.DEVNULL)
        self.assertEqual((result.returncode, result.stdout), (2, ""))
        self.assertNotIn("Traceback", result.stderr)
        self.assertRegex(result.stderr, r"^nex: worker 1 could not start: RuntimeError: "
                                        r"simulated fault over two lines \(.+:\d+ in fault\)\n$")


class ReloadTest(StartupFolder):
    """SIGHUP with workers checks the new settings as a start does, once, before any new
    worker starts."""

    def test_a_log_file_that_cannot_be_opened_keeps_the_workers_in_one_line(self) -> None:
        with open(os.path.join(self.root, "a.txt"), "w") as out:
            out.write("hello\n")
        server = NexServer(self.root, settings={"server": {"workers": 2}}).start()
        self.addCleanup(server.stop)
        log = self.path("access.log")
        unix_socket_file(self, log)
        with open(server.settings_path, encoding="utf-8") as settings:
            text = settings.read()
        with open(server.settings_path, "w", encoding="utf-8") as settings:
            settings.write(text.replace(f"access_log = {server.access_log_path}",
                                        f"access_log = {log}"))
        server.signal(signal.SIGHUP)
        refused = (f"warning: settings not reloaded, the workers keep theirs: [logging] "
                   f"access_log = {log}: cannot open it: ")
        wait_until(lambda: refused in server.error_log(), START_TIMEOUT, what="the refusal")
        self.assertEqual(server.error_log().count("settings not reloaded"), 1)
        self.assertNotIn("could not start", server.error_log())
        self.assertEqual(get(server)[2], b"hello\n")
        self.assertEqual(server.stop(), 0)


class CheckStartupTest(StartupFolder):
    """check_startup() and its pieces, without a server."""

    def config(self, **values: object) -> Config:
        return Config(**{"document_root": self.root,
                         "error_pages": os.path.join(REPO, "error_pages"),
                         "templates": os.path.join(REPO, "other_templates"), **values})

    def test_good_settings_pass_leaving_no_descriptor_and_no_thread(self) -> None:
        before, threads = open_descriptors(os.getpid()), threading.active_count()
        check_startup(self.config(access_log=self.path("access.log"), upload=True,
                                  webdav="write", proxy_enabled=True))
        self.assertEqual((open_descriptors(os.getpid()), threading.active_count()),
                         (before, threads))
        self.assertTrue(os.path.exists(self.path("access.log")))

    def test_without_create_logs_a_missing_log_is_left_missing(self) -> None:
        check_startup(self.config(error_log=self.path("error.log")), create_logs=False)
        self.assertFalse(os.path.exists(self.path("error.log")))

    def test_each_failure_is_one_line(self) -> None:
        log = self.path("socket.log")
        unix_socket_file(self, log)
        with open(self.path("junk.crt"), "w") as out:
            out.write("junk\n")
        for values, start in [
                ({"tls_certificate": self.path("junk.crt"), "tls_key": self.path("junk.crt")},
                 f"TLS certificate {self.path('junk.crt')} holds no PEM certificate"),
                ({"access_log": log}, f"[logging] access_log = {log}: cannot open it: "),
                ({"error_log": log}, f"[logging] error_log = {log}: cannot open it: "),
                ({"templates": self.folder}, f"cannot read template {self.folder}/dir.html")]:
            with self.subTest(values=values):
                with self.assertRaises(StartupError) as caught:
                    check_startup(self.config(**values))
                self.assertTrue(str(caught.exception).startswith(start), caught.exception)
                self.assertNotIn("\n", str(caught.exception))

    def test_a_log_that_fails_after_another_opened_leaves_nothing_open(self) -> None:
        log = self.path("socket.log")
        unix_socket_file(self, log)
        before = open_descriptors(os.getpid())
        with self.assertRaises(StartupError):
            open_logger(self.config(access_log=self.path("access.log"), error_log=log))
        self.assertEqual(open_descriptors(os.getpid()), before)
        with self.assertRaises(OSError):
            Logger.from_config(self.config(access_log=self.path("access.log"), error_log=log))
        self.assertEqual(open_descriptors(os.getpid()), before)

    def test_log_failure_names_the_key_of_the_file(self) -> None:
        config = self.config(access_log="/a.log", error_log="/e.log")
        error = OSError(6, "No such device or address", "/e.log")
        self.assertEqual(str(log_failure(config, error)),
                         "[logging] error_log = /e.log: cannot open it: No such device or address")

    def test_upload_script_that_cannot_be_read_is_a_template_error(self) -> None:
        with self.assertRaises(TemplateError) as caught:
            UploadPage.load(self.folder, self.path("absent"))
        self.assertIn(os.path.join(self.path("absent"), "upload.js"), str(caught.exception))


class RestartOnlyTest(unittest.TestCase):
    """The one rule, for a lone Nex and the supervisor, of what a reload cannot change."""

    def test_a_changed_port_names_itself(self) -> None:
        self.assertEqual(restart_only_change(Config(port=8000), Config(port=8001)),
                         "port changes only when Nex restarts")

    def test_other_changes_pass(self) -> None:
        self.assertIsNone(restart_only_change(Config(workers=1), Config(workers=2)))

    def test_the_caller_adds_names(self) -> None:
        self.assertEqual(restart_only_change(Config(workers=1), Config(workers=2),
                                             ("bind", "workers")),
                         "workers changes only when Nex restarts")


class FaultLineTest(unittest.TestCase):
    def test_type_message_and_place_in_one_line(self) -> None:
        try:
            raise ValueError("first\nsecond")
        except ValueError as error:
            line = fault_line(error)
        self.assertRegex(line, r"^ValueError: first second \(.*test_start_checks\.py:\d+ in "
                               r"test_type_message_and_place_in_one_line\)$")

    def test_an_exception_without_message_or_traceback(self) -> None:
        self.assertEqual(fault_line(RuntimeError()), "RuntimeError")


if __name__ == "__main__":
    unittest.main()
