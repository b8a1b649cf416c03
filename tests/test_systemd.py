"""systemd: readiness notices over a fake $NOTIFY_SOCKET, socket activation through Debian's
systemd-socket-activate, and the shipped unit files checked by systemd-analyze verify."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from typing import List, Optional, Tuple
from unittest import mock

from nex.process import systemd
from tests.support import REPO, SOCKET_TIMEOUT, START_TIMEOUT, NexServer, exchange, \
    free_port, requires_openssl
from tests.support import temp_root

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
UNITS = os.path.join(REPO, "contrib", "systemd")
_UCRED = struct.Struct("3i")


class FakeNotifySocket:
    """A datagram socket standing in for systemd's: it receives each notice with the pid of
    the process that sent it (SO_PASSCRED)."""

    def __init__(self, test: unittest.TestCase) -> None:
        folder = tempfile.mkdtemp(prefix="nex-notify-")
        test.addCleanup(shutil.rmtree, folder, True)
        self.path = os.path.join(folder, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        test.addCleanup(self.sock.close)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)

    def environment(self):
        """The environment a server started within sees the socket in."""
        return mock.patch.dict(os.environ, {"NOTIFY_SOCKET": self.path})

    def receive(self, timeout: Optional[float] = START_TIMEOUT) -> Optional[Tuple[int, List[str]]]:
        """The next notice as (sender's pid, lines); None when none came within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(_UCRED.size))
        except (BlockingIOError, socket.timeout):
            return None
        pid = 0
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = _UCRED.unpack(payload[:_UCRED.size])[0]
        return pid, data.decode("utf-8").split("\n")

    def wait_for(self, line: str) -> List[Tuple[int, List[str]]]:
        """The notices up to and including the first holding ``line``."""
        notices = []
        while True:
            notice = self.receive()
            if notice is None:
                raise AssertionError(f"no notice with {line!r} after {notices!r}")
            notices.append(notice)
            if line in notice[1]:
                return notices


class NotifyTests(unittest.TestCase):
    """notify() and activated_listener() without systemd."""

    def test_nothing_is_sent_without_notify_socket(self) -> None:
        with mock.patch.dict(os.environ, {}, clear=True):
            self.assertFalse(systemd.notify("READY=1"))

    def test_notice_reaches_a_socket_path(self) -> None:
        fake = FakeNotifySocket(self)
        with fake.environment():
            self.assertTrue(systemd.notify("READY=1", "STATUS=serving"))
        self.assertEqual(fake.receive(), (os.getpid(), ["READY=1", "STATUS=serving"]))

    def test_notice_reaches_an_abstract_socket(self) -> None:
        name = f"nex-test-{os.getpid()}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind("\0" + name)
            with mock.patch.dict(os.environ, {"NOTIFY_SOCKET": "@" + name}):
                self.assertTrue(systemd.notify("STOPPING=1"))
            listener.settimeout(SOCKET_TIMEOUT)
            self.assertEqual(listener.recv(100), b"STOPPING=1")

    def test_missing_listener_is_ignored(self) -> None:
        with mock.patch.dict(os.environ, {"NOTIFY_SOCKET": "/nonexistent/notify"}):
            self.assertFalse(systemd.notify("READY=1"))

    def test_reloading_notice_carries_the_monotonic_clock(self) -> None:
        lines = systemd.reloading_lines("reloading")
        self.assertEqual(lines[0], "RELOADING=1")
        self.assertRegex(lines[1], r"^MONOTONIC_USEC=[1-9][0-9]*$")
        self.assertEqual(lines[2], "STATUS=reloading")

    def test_sockets_meant_for_another_process_are_not_taken(self) -> None:
        with mock.patch.dict(os.environ, {"LISTEN_PID": str(os.getpid() + 1),
                                          "LISTEN_FDS": "1"}):
            self.assertIsNone(systemd.activated_listener())
            self.assertNotIn("LISTEN_FDS", os.environ)
            self.assertNotIn("LISTEN_PID", os.environ)

    def test_no_passed_socket_is_an_error(self) -> None:
        with mock.patch.dict(os.environ, {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "0"}):
            with self.assertRaisesRegex(systemd.ActivationError, "passed no socket"):
                systemd.activated_listener()

    def test_without_activation_nothing_is_taken(self) -> None:
        with mock.patch.dict(os.environ, {}, clear=True):
            self.assertIsNone(systemd.activated_listener())


_GET = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        return exchange(sock, _GET)


def get_from(server: NexServer) -> bytes:
    """GET /hello.txt from ``server`` over HTTP or HTTPS, as it speaks."""
    if server.scheme == "http":
        return get(server.port)
    with server.connect_tls() as sock:
        return exchange(sock, _GET)


class NoticeSequenceTests(unittest.TestCase):
    """The real server tells a fake systemd what it does, in order, from the main process."""

    def setUp(self) -> None:
        self.root = temp_root(self, {"hello.txt": b"hello\n"})
        self.notices = FakeNotifySocket(self)

    def start(self, server: NexServer) -> NexServer:
        with self.notices.environment():
            server.start()
        self.addCleanup(server.stop)
        return server

    def assert_all_from(self, pid: int, notices) -> None:
        self.assertEqual({sender for sender, _ in notices}, {pid}, notices)

    def check_sequence(self, server: NexServer) -> None:
        ready = self.notices.wait_for("READY=1")
        self.assert_all_from(server.pid, ready)
        self.assertTrue(any(line.startswith("STATUS=serving") for line in ready[-1][1]), ready)
        self.assertIn(b"hello", get_from(server))
        server.signal(signal.SIGHUP)
        reload = self.notices.wait_for("RELOADING=1")
        self.assertTrue(any(re.fullmatch(r"MONOTONIC_USEC=\d+", line) for line in reload[-1][1]))
        reload += self.notices.wait_for("READY=1")
        self.assert_all_from(server.pid, reload)
        self.assertEqual(sum("READY=1" in lines for _, lines in reload), 1, reload)
        self.assertIn(b"hello", get_from(server))
        server.signal(signal.SIGTERM)
        stopping = self.notices.wait_for("STOPPING=1")
        self.assertEqual(server.wait(), 0)
        rest = []
        while True:
            notice = self.notices.receive(0)
            if notice is None:
                break
            rest.append(notice)
        self.assert_all_from(server.pid, stopping + rest)
        self.assertNotIn("READY=1", [line for _, lines in rest for line in lines])

    @requires_openssl
    def test_single_process_notices_ready_reloading_ready_stopping(self) -> None:
        self.check_sequence(self.start(NexServer(self.root, tls=True)))

    def test_workers_are_silent_and_the_supervisor_notices(self) -> None:
        self.check_sequence(self.start(NexServer(self.root, {"server": {"workers": 2}})))


@unittest.skipIf(SOCKET_ACTIVATE is None,
                 "systemd-socket-activate (Debian's systemd package) is not installed")
class SocketActivationTests(unittest.TestCase):
    """systemd-socket-activate listens and passes the socket; Nex serves on it."""

    def setUp(self) -> None:
        self.root = temp_root(self, {"hello.txt": b"hello\n"})

    def activated(self, *options: str, settings=None) -> Tuple[NexServer, int]:
        """A server started by systemd-socket-activate, which runs Nex once the first
        client connects: that first client's answer comes back with it."""
        port = free_port()
        server = NexServer(self.root, settings)
        server.args = [SOCKET_ACTIVATE, *options, "-l", f"127.0.0.1:{port}"] + server.args
        self.addCleanup(server.stop)
        return server, port

    def start_by_first_client(self, server: NexServer, port: int) -> bytes:
        """Start ``server`` and be its first client, which makes systemd-socket-activate
        run Nex; return the answer."""
        starter = threading.Thread(target=server.start)
        starter.start()
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                try:
                    return get(port)
                except ConnectionRefusedError:  # not listening yet
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            starter.join()

    def test_single_process_serves_on_the_passed_socket(self) -> None:
        server, port = self.activated()
        self.assertIn(b"hello", self.start_by_first_client(server, port))
        self.assertEqual(server.port, port)  # not the --port 0 it was also given
        self.assertIn(b"hello", get(port))
        self.assertEqual(server.stop(), 0)

    def test_workers_serve_on_the_passed_socket(self) -> None:
        server, port = self.activated(settings={"server": {"workers": 2}})
        self.assertIn(b"hello", self.start_by_first_client(server, port))
        self.assertEqual(server.port, port)
        self.assertIn("with 2 workers", server.stdout())
        for _ in range(6):
            self.assertIn(b"hello", get(port))
        self.assertEqual(server.stop(), 0)

    def test_datagram_socket_is_refused_in_one_line(self) -> None:
        server, port = self.activated("--datagram")
        process = subprocess.Popen(server.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, cwd=REPO, stdin=subprocess.DEVNULL)
        self.addCleanup(process.kill)
        deadline = time.monotonic() + START_TIMEOUT
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            while process.poll() is None and time.monotonic() < deadline:
                client.sendto(b"x", ("127.0.0.1", port))  # the datagram that starts Nex
                time.sleep(0.05)
        _, stderr = process.communicate(timeout=START_TIMEOUT)
        done = subprocess.CompletedProcess(server.args, process.returncode, "", stderr)
        self.assertEqual(done.returncode, 2)
        self.assertRegex(done.stderr, r"(?m)^nex: descriptor 3 from systemd is not a "
                                      r"listening TCP socket")


@unittest.skipIf(SYSTEMD_ANALYZE is None,
                 "systemd-analyze (Debian's systemd package) is not installed")
class UnitFileTests(unittest.TestCase):
    """contrib/systemd/nex.service and nex.socket pass systemd-analyze verify cleanly."""

    def test_units_verify_without_a_warning(self) -> None:
        folder = tempfile.mkdtemp(prefix="nex-units-")
        self.addCleanup(shutil.rmtree, folder, True)
        for name in ("nex.service", "nex.socket"):
            with open(os.path.join(UNITS, name), encoding="utf-8") as unit:
                text = unit.read()
            # verify wants each command to exist: the installed nex is not there in a checkout.
            text = text.replace("/usr/local/bin/nex", sys.executable)
            with open(os.path.join(folder, name), "w", encoding="utf-8") as out:
                out.write(text)
        done = subprocess.run([SYSTEMD_ANALYZE, "verify", os.path.join(folder, "nex.service"),
                               os.path.join(folder, "nex.socket")],
                              capture_output=True, text=True, timeout=START_TIMEOUT)
        self.assertEqual((done.returncode, done.stderr), (0, ""))

    def test_service_is_notify_type_and_checks_before_reload(self) -> None:
        with open(os.path.join(UNITS, "nex.service"), encoding="utf-8") as unit:
            lines = [line.strip() for line in unit if not line.startswith("#")]
        self.assertIn("Type=notify", lines)
        reloads = [line for line in lines if line.startswith("ExecReload=")]
        self.assertTrue(reloads[0].endswith("--check-config"), reloads)
        self.assertEqual(reloads[1], "ExecReload=/bin/kill -HUP $MAINPID")
        for setting in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes"):
            self.assertIn(setting, lines)
        self.assertTrue(any(line.startswith("ReadWritePaths=") for line in lines))


if __name__ == "__main__":
    unittest.main()
