"""Signals and process start, against real server processes: SIGHUP reloads a lone Nex as
it reloads workers, --pid-file, and a second Ctrl+C that ends every process with status 130
and no traceback."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import unittest
from typing import Callable, List, Optional, Tuple
from unittest import mock

from nex.process import listener, run
from nex.process.assembly import assemble
from nex.process.listener import ForceStop, Server
from nex.process.signals import FORCE_SIGNAL
from nex.process.log import Logger
from tests.support import (LARGE, REPO, SOCKET_TIMEOUT, EchoOrigin, NexServer, ResponseReader,
                           in_process_server, proxy_settings, quiet_config, read_all)
from tests.support import (alpha_root, check_reloaded, children, get, hold_a_request, large_root,
                           reload_under_traffic, run_server, running, stalled_download,
                           wait_until)
from tests.support.access import write_users



class SingleProcessReloadTest(unittest.TestCase):
    """SIGHUP in a lone Nex (plain HTTP): the settings are read again, as with workers."""

    def setUp(self) -> None:
        self.root = alpha_root(self)
        self.server = NexServer(self.root, settings={
            "timeouts": {"request_head": 60, "keep_alive": 60, "shutdown_grace": 60},
            "caching": {"cache_control": "no-cache"}})
        self.addCleanup(self.server.stop)
        self.server.start()

    def test_sighup_no_longer_kills_a_plain_process_and_applies_new_settings(self) -> None:
        server = self.server
        with server.connect() as kept:
            reader = hold_a_request(kept)
            server.replace_in_settings("cache_control = no-cache", "cache_control = max-age=60")
            server.signal(signal.SIGHUP)
            server.wait_for_access_log(lambda text: "settings reloaded" in text)
            check_reloaded(self, server, kept, reader, fresh=5)
        self.assertIsNone(server.process.poll())
        self.assertEqual(server.error_log(), "")
        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait(), 0)

    def test_reloads_under_a_stream_of_new_connections_lose_none(self) -> None:
        # The replaced server closed the connections it had accepted but not yet read a
        # request from: their clients saw a reset or an empty reply.
        server = self.server
        reload_under_traffic(self, server,
                             lambda: server.access_log().count("settings reloaded"))

    def test_a_pipelined_request_does_not_cut_short_the_answer_before_it(self) -> None:
        # The replaced server closed the connection after its answer with the client's
        # next request unread in the socket: the reset that made destroyed the part of the
        # answer not yet sent, and the next request went unanswered.
        server = self.server
        size = 8 * 1024 * 1024  # more than the sockets' buffers take at once
        with open(os.path.join(self.root, "big.bin"), "wb") as out:
            out.truncate(size)
        with server.connect() as sock:
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
            reader = ResponseReader(sock)
            reader.buffer = sock.recv(1024)  # it is answering, the request read
            sock.sendall(b"GET /a.txt HTTP/1.1\r\nHost: a\r\n\r\n")
            server.signal(signal.SIGHUP)
            server.wait_for_access_log(lambda text: "settings reloaded" in text)
            status, headers, body = reader.read()
            self.assertEqual((status, len(body)), (200, size))
            status, headers, body = reader.read()
            self.assertEqual((status, headers["connection"], body), (200, "close", b"alpha"))
            self.assertEqual(read_all(sock), b"")

    def test_broken_settings_keep_the_running_ones_with_one_line(self) -> None:
        server = self.server
        with open(server.settings_path, "a") as f:
            f.write("[files]\nlisting = maybe\n")
        server.signal(signal.SIGHUP)
        wait_until(lambda: "settings not reloaded" in server.error_log(), what="the refusal line")
        lines = server.error_log().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("warning: settings not reloaded, Nex keeps the running ones: ", lines[0])
        self.assertIn("[files] listing = maybe: must be yes, no", lines[0])
        self.assertEqual(get(server)[1]["cache-control"], "no-cache")

    def test_a_template_that_fails_to_load_keeps_the_listener_serving(self) -> None:
        server = self.server
        templates = os.path.join(self.root, "..", os.path.basename(self.root) + "-templates")
        shutil.copytree(os.path.join(REPO, "other_templates"), templates)
        self.addCleanup(shutil.rmtree, templates, True)
        with open(os.path.join(templates, "dir.html"), "wb") as out:
            out.write(b"\xff\xfe not UTF-8")
        server.replace_in_settings(os.path.join(REPO, "other_templates"), templates)
        server.signal(signal.SIGHUP)
        wait_until(lambda: "settings not reloaded" in server.error_log(), what="the refusal line")
        self.assertIn("dir.html", server.error_log())
        for _ in range(3):
            self.assertEqual(get(server)[2], b"alpha")

    def test_more_workers_wait_for_a_restart(self) -> None:
        # A lone process cannot become a supervisor; bind and port are flags here.
        server = self.server
        server.replace_in_settings("[server]\n", "[server]\nworkers = 2\n")
        server.signal(signal.SIGHUP)
        wait_until(lambda: "settings not reloaded" in server.error_log(), what="the refusal line")
        self.assertIn("workers changes only when Nex restarts", server.error_log())
        self.assertEqual(get(server)[2], b"alpha")
        self.assertEqual(children(server.pid), set())


def accepted_connection(test: unittest.TestCase, server: NexServer) -> socket.socket:
    """A connection to ``server`` once its process has accepted it (holds the descriptor of
    the connection's server end), so that a signal sent next finds it accepted, not waiting
    in the listen queue for the next server; closed when ``test`` ends."""
    sock = server.connect()
    test.addCleanup(sock.close)
    wait_until(lambda: accepted_by(server.pid, sock), what="the connection to be accepted")
    return sock


def accepted_by(pid: int, sock: socket.socket) -> bool:
    """Whether process ``pid`` holds the server end of the loopback connection ``sock``.

    The kernel's table of TCP sockets gives that end's inode, 0 while it waits to be
    accepted; a count of the process's descriptors would also count any other it opened.
    """
    local = "0100007F:%04X" % sock.getpeername()[1]
    remote = "0100007F:%04X" % sock.getsockname()[1]
    with open("/proc/net/tcp") as table:
        inodes = [fields[9] for fields in map(str.split, table)
                  if fields[1] == local and fields[2] == remote]
    if not inodes or inodes[0] == "0":
        return False
    folder = f"/proc/{pid}/fd"
    held = set()
    for name in os.listdir(folder):
        with contextlib.suppress(OSError):
            held.add(os.readlink(os.path.join(folder, name)))
    return f"socket:[{inodes[0]}]" in held


class SilentConnectionReloadTest(unittest.TestCase):
    """A connection the replaced server accepted and waited for in vain is closed at the end
    of ``shutdown_grace`` as it was sent: silently."""

    def test_a_silent_connection_is_no_transfer_still_busy(self) -> None:
        # With request_head longer than shutdown_grace, each reload while a browser held a
        # silent pre-connection logged "1 connection(s) still busy after the shutdown
        # grace period": a warning for nothing that went wrong.
        server = NexServer(alpha_root(self), settings={
            "timeouts": {"request_head": 60, "shutdown_grace": 1}})
        self.addCleanup(server.stop)
        server.start()
        silent = accepted_connection(self, server)
        server.signal(signal.SIGHUP)
        self.assertEqual(read_all(silent), b"")  # at the end of shutdown_grace
        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait(), 0)
        self.assertEqual(server.error_log(), "")


class TunnelAfterReloadTest(unittest.TestCase):
    """A server making way for a reload opens no new tunnel on the settings it replaced."""

    def test_connect_on_a_connection_from_before_the_reload_is_503(self) -> None:
        # A client that connected just before a reload could open a CONNECT tunnel on the
        # old server, under the old settings (the proxy on, a port since refused), and keep
        # it for as long as it carried traffic.
        echo = EchoOrigin()
        self.addCleanup(echo.close)
        server = NexServer(alpha_root(self), settings={
            **proxy_settings(connect_ports=str(echo.port)),
            "timeouts": {"request_head": 60, "shutdown_grace": 60}})
        self.addCleanup(server.stop)
        server.start()
        early = accepted_connection(self, server)
        server.replace_in_settings(f"connect_ports = {echo.port}", "connect_ports = 443")
        server.signal(signal.SIGHUP)
        server.wait_for_access_log(lambda text: "settings reloaded" in text)
        early.sendall(f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\n"
                      f"Host: 127.0.0.1:{echo.port}\r\n\r\n".encode())
        reply = read_all(early)
        self.assertTrue(reply.startswith(b"HTTP/1.1 503 "), reply[:200])
        self.assertIn(b"\r\nRetry-After: 0\r\n", reply)
        with server.connect() as late:  # the new server judges by the new settings
            late.sendall(f"CONNECT 127.0.0.1:{echo.port} HTTP/1.1\r\n"
                         f"Host: 127.0.0.1:{echo.port}\r\n\r\n".encode())
            with late.makefile("rb") as replies:
                self.assertTrue(replies.readline().startswith(b"HTTP/1.1 403 "))


class ReloadDuringBurstTest(unittest.TestCase):
    """A reload ends the taking of queued clients: the next server takes the queue over."""

    def test_a_reload_leaves_the_queue_to_the_next_server(self) -> None:
        # The accept loop took queued clients off the listen queue until none was left,
        # whether or not a reload was asked for: under a sustained burst a SIGHUP waited,
        # and the old settings went on serving new clients.
        server = in_process_server(self, quiet_config(self))
        self.addCleanup(server.listener.close)
        clients = [socket.create_connection(("127.0.0.1", server.port), SOCKET_TIMEOUT)
                   for _ in range(5)]
        for client in clients:
            self.addCleanup(client.close)
        first, address = server.listener.accept()
        server.reload_requested = True
        server._hand_out(first, address, time.monotonic())
        server.listener.setblocking(False)
        left = []
        while True:
            try:
                left.append(server.listener.accept()[0])
            except BlockingIOError:
                break
        for sock in left:
            sock.close()
        self.assertEqual(len(left), 4)


class _FifoReader:
    """Reads a FIFO in a thread, across the writers that open and close it, until closed."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # lets a blocked writer go on
        self._data = bytearray()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                data = b""
            if data:
                self._data += data
            else:  # no writer right now, or nothing written yet
                self._closed.wait(0.05)

    def text(self) -> str:
        return self._data.decode("utf-8", "replace")

    def close(self) -> None:
        self._closed.set()
        self._thread.join(SOCKET_TIMEOUT)
        os.close(self._fd)


def cache_control(server: NexServer) -> Optional[str]:
    """The Cache-Control of a page asked for on a new connection; None when the connection
    was reset: while workers are replaced, one stopping closes a connection it accepted
    before its request came (see :mod:`nex.process.supervisor`), which the client sees as
    a reset."""
    try:
        return get(server)[1]["cache-control"]
    except ConnectionError:
        return None


class PidFileTest(unittest.TestCase):
    """--pid-file: the process to signal, written while Nex runs and removed at exit."""

    def setUp(self) -> None:
        self.root = alpha_root(self)
        self.pid_file = os.path.join(self.root, "..", os.path.basename(self.root) + ".pid")
        self.addCleanup(lambda: os.path.exists(self.pid_file) and os.remove(self.pid_file))

    def start(self, workers: int) -> NexServer:
        server = NexServer(self.root, settings={"server": {"workers": workers},
                                                "caching": {"cache_control": "no-cache"}})
        server.args += ["--pid-file", self.pid_file]
        self.addCleanup(server.stop)
        return server.start()

    def test_the_reload_recipe_reaches_the_process_and_the_file_goes_at_exit(self) -> None:
        for workers in (1, 2):
            with self.subTest(workers=workers):
                server = self.start(workers)
                with open(self.pid_file) as f:
                    self.assertEqual(f.read(), f"{server.pid}\n")  # the supervisor's, too
                server.replace_in_settings("cache_control = no-cache", "cache_control = max-age=60")
                # kill -HUP $(cat nex.pid)
                with open(self.pid_file) as f:
                    os.kill(int(f.read()), signal.SIGHUP)
                wait_until(lambda: cache_control(server) == "max-age=60",
                           what="the new settings")
                server.signal(signal.SIGTERM)
                self.assertEqual(server.wait(), 0)
                self.assertFalse(os.path.exists(self.pid_file))

    def test_a_reload_sent_as_soon_as_the_pid_file_appears_does_not_kill_nex(self) -> None:
        # The access log is a FIFO, so Nex's start-up stops in its open() until a reader
        # comes: a SIGHUP sent then, after the pid file appeared, must wait for Nex's
        # handler instead of ending Nex with the signal's default action.
        for workers in (1, 2):
            with self.subTest(workers=workers):
                folder = tempfile.mkdtemp(prefix="nex-fifo-")
                self.addCleanup(shutil.rmtree, folder, True)
                fifo = os.path.join(folder, "access.log")
                os.mkfifo(fifo)
                server = NexServer(self.root, settings={"server": {"workers": workers},
                                                        "logging": {"access_log": fifo}})
                server.args += ["--pid-file", self.pid_file]
                self.addCleanup(server.stop)
                started: List[BaseException] = []

                def start() -> None:
                    try:
                        server.start()
                    except BaseException as error:  # reported in the test's thread
                        started.append(error)
                starting = threading.Thread(target=start)
                starting.start()
                wait_until(lambda: os.path.exists(self.pid_file), what="the pid file")
                with open(self.pid_file) as f:
                    os.kill(int(f.read()), signal.SIGHUP)
                access = _FifoReader(fifo)
                self.addCleanup(access.close)
                starting.join(SOCKET_TIMEOUT)
                self.assertEqual(started, [])
                # A lone Nex says so in its access stream, a supervisor in the error log.
                # Asked before then, a worker being replaced may close the connection it just
                # accepted (as a replaced worker does), so the request waits for the reload.
                wait_until(lambda: "settings reloaded" in access.text() + server.error_log(),
                           what="the held reload")
                self.assertEqual(get(server)[2], b"alpha")
                server.signal(signal.SIGTERM)
                self.assertEqual(server.wait(), 0)

    def test_a_pid_file_that_cannot_be_written_stops_start_up_with_one_line(self) -> None:
        missing = os.path.join(self.root, "no", "such", "folder", "nex.pid")
        result = run_server("--root", self.root, "--port", "0", "--pid-file", missing)
        self.assertEqual((result.returncode, result.stdout, result.stderr),
                         (2, "", f"nex: --pid-file {missing}: cannot write it: "
                                 "No such file or directory\n"))


class SecondCtrlCTest(unittest.TestCase):
    """A second Ctrl+C, or a SIGQUIT, stops at once with status 130 and no traceback: with
    workers as alone."""

    def stalled_download(self, workers: int) -> Tuple[NexServer, socket.socket]:
        """A server with a 600 s grace sending a large file to a client that reads no more."""
        return stalled_download(self, large_root(self), {"server": {"workers": workers},
                                                         "timeouts": {"shutdown_grace": 600}})

    def workers(self, server: NexServer) -> List[int]:
        """The pids of the server's two workers, once both run."""
        return sorted(wait_until(lambda: children(server.pid)
                                 if len(children(server.pid)) == 2 else None,
                                 what="two workers"))

    def ctrl_c(self, pids: List[int]) -> None:
        """SIGINT to each process, as a terminal sends it to its whole foreground group."""
        for pid in pids:
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:  # a worker with nothing in flight stopped already
                pass

    def assert_forced_stop(self, server: NexServer, pids: List[int]) -> None:
        self.assertEqual(server.wait(), 130)  # long before the 600 s grace
        wait_until(lambda: not any(running(pid) for pid in pids), what="every process to exit")
        self.assertNotIn("Traceback", server.stderr())
        self.assertNotIn("Traceback", server.error_log())
        self.assertNotIn("warning", server.error_log())

    def test_from_a_terminal_with_workers(self) -> None:
        server, _ = self.stalled_download(workers=2)
        pids = [server.pid] + self.workers(server)
        self.ctrl_c(pids)
        wait_until(lambda: "Ctrl+C again" in server.stderr(), what="the worker's waiting line")
        self.ctrl_c(pids)
        self.assert_forced_stop(server, pids)

    def test_the_terminals_sigint_after_the_supervisors_sigterm_is_the_same_ctrl_c(self) -> None:
        # One Ctrl+C reaches the supervisor and each worker, and the SIGTERM the supervisor
        # passes on can reach a worker before the terminal's SIGINT does.
        server, client = self.stalled_download(workers=2)
        workers = self.workers(server)
        server.signal(signal.SIGINT)
        wait_until(lambda: "Ctrl+C again" in server.stderr(), what="the worker's waiting line")
        self.ctrl_c(workers)
        wait_until(lambda: not any(signal_pending(pid, signal.SIGINT) for pid in workers),
                   what="the workers to take their SIGINT")
        while client.recv(1 << 20):  # the transfer finishes: nothing cut it short
            pass
        self.assertEqual(server.wait(), 0)
        self.assertNotIn("stopping now", server.stderr())
        self.assertIn(f" 200 {LARGE} ", server.access_log())

    def test_twice_to_the_supervisor_alone(self) -> None:
        server, _ = self.stalled_download(workers=2)
        pids = [server.pid] + self.workers(server)
        server.signal(signal.SIGINT)
        wait_until(lambda: "Ctrl+C again" in server.stderr(), what="the worker's waiting line")
        server.signal(signal.SIGINT)
        self.assert_forced_stop(server, pids)

    def test_alone(self) -> None:
        server, _ = self.stalled_download(workers=1)
        server.signal(signal.SIGINT)
        wait_until(lambda: "Ctrl+C again" in server.stderr(), what="the waiting line")
        server.signal(signal.SIGINT)
        self.assert_forced_stop(server, [server.pid])
        self.assertIn("stopping now", server.stderr())

    def test_sigquit_alone(self) -> None:
        # An operator's SIGQUIT, whose default action would dump core.
        server, _ = self.stalled_download(workers=1)
        server.signal(signal.SIGQUIT)
        self.assert_forced_stop(server, [server.pid])
        self.assertIn("stopping now", server.stderr())

    def test_sigquit_to_the_supervisor(self) -> None:
        server, _ = self.stalled_download(workers=2)
        pids = [server.pid] + self.workers(server)
        server.signal(signal.SIGQUIT)
        self.assert_forced_stop(server, pids)


class StopSignalRulesTest(unittest.TestCase):
    """Which signals make a second Ctrl+C, for a lone server and a supervised one (a
    worker), called as the signal handler is, in order."""

    def server(self, *, supervised: bool) -> Server:
        server = in_process_server(self, quiet_config(self), supervised=supervised)
        self.addCleanup(server.listener.close)  # most never serve, which would close it
        return server

    def test_the_handlers_take_no_lock(self) -> None:
        # A second signal can run its handler in the main thread while the first handler is
        # still running there: a lock the first one holds would never be released.
        locks = (type(threading.Lock()), type(threading.RLock()))
        taken: List[object] = []

        def watch(frame: object, event: str, called: object) -> None:
            if event == "c_call" and isinstance(getattr(called, "__self__", None), locks):
                taken.append(called)

        for supervised, signals in ((False, (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)),
                                    (True, (signal.SIGTERM, signal.SIGINT, FORCE_SIGNAL))):
            server = self.server(supervised=supervised)
            sys.setprofile(watch)
            try:
                for signum in signals:
                    try:
                        run._on_signal(server, signum, None, not supervised)
                    except ForceStop:
                        pass
            finally:
                sys.setprofile(None)
        self.assertEqual(taken, [])

    def test_a_lone_server_counts_sigterm_as_the_first(self) -> None:
        server = self.server(supervised=False)
        server.handle_signal(signal.SIGTERM, None)
        with self.assertRaises(ForceStop):
            server.handle_signal(signal.SIGINT, None)
        server.handle_signal(signal.SIGINT, None)  # once: any later signal changes nothing

    def test_nothing_is_raised_once_serving_has_ended(self) -> None:
        # A Ctrl+C that comes while the process closes its logs and exits.
        server = self.server(supervised=False)
        server.handle_signal(signal.SIGTERM, None)
        server.serve_forever()  # stopping already: it returns at once
        server.handle_signal(signal.SIGINT, None)

    def test_a_worker_counts_only_sigint(self) -> None:
        server = self.server(supervised=True)
        server.handle_signal(signal.SIGTERM, None)  # its supervisor's, passing a Ctrl+C on
        server.handle_signal(signal.SIGINT, None)  # the terminal's, of the same Ctrl+C
        self.assertTrue(server.stopping.is_set())
        with self.assertRaises(ForceStop):
            server.handle_signal(signal.SIGINT, None)

    def test_the_supervisors_stop_now_after_its_sigterm(self) -> None:
        server = self.server(supervised=True)
        server.handle_signal(signal.SIGTERM, None)
        with self.assertRaises(ForceStop):
            server.handle_signal(FORCE_SIGNAL, None)

    def test_the_supervisors_stop_now_taken_first(self) -> None:
        # Both pending at once, the lower-numbered SIGQUIT is handled before SIGTERM: the
        # server then stops at once rather than waiting for its transfers.
        server = self.server(supervised=True)
        server.handle_signal(FORCE_SIGNAL, None)
        server.handle_signal(signal.SIGTERM, None)
        self.assertTrue(server.stopping.is_set())
        with self.assertRaises(ForceStop):
            server.serve_forever()


class ReloadCtrlCTest(unittest.TestCase):
    """A Ctrl+C while a lone Nex reloads its settings counts as it would otherwise: the
    signal reaches the server being replaced, and the new one takes it over."""

    def replaced(self) -> Tuple[Server, Callable[[], Server]]:
        """A server whose accept loop ended for a reload, and what makes its successor."""
        config = quiet_config(self)
        old = in_process_server(self, config)
        self.addCleanup(old.listener.close)
        old.reload_requested = True
        old.serve_forever()  # returns, still serving its connections

        def reloaded() -> Server:
            retiring: List[Tuple[threading.Thread, Server]] = []
            new = run._reloaded(old, lambda: config, retiring)
            self.addCleanup(new.logger.close)
            for thread, _ in retiring:
                thread.join(SOCKET_TIMEOUT)
            return new
        return old, reloaded

    def test_a_ctrl_c_during_the_reload_and_one_after_make_two(self) -> None:
        old, reloaded = self.replaced()
        old.handle_signal(signal.SIGINT, None)
        new = reloaded()
        self.assertTrue(new.stopping.is_set())
        with self.assertRaises(ForceStop):
            new.handle_signal(signal.SIGINT, None)

    def test_two_during_the_reload_stop_the_new_server_at_once(self) -> None:
        old, reloaded = self.replaced()
        old.handle_signal(signal.SIGINT, None)
        old.handle_signal(signal.SIGINT, None)
        faults: List[BaseException] = []
        with mock.patch.object(threading, "excepthook",
                               lambda hook: faults.append(hook.exc_value)):
            new = reloaded()  # retiring the old server raises nothing in its thread
        self.assertEqual(faults, [])
        with self.assertRaises(ForceStop):
            new.serve_forever()

    def test_a_second_ctrl_c_after_a_refused_reload_stops_at_once(self) -> None:
        server, _ = stalled_download(self, large_root(self),
                                     {"timeouts": {"shutdown_grace": 600}})
        server.replace_in_settings("[timeouts]", "[timeouts]\nrequest_head = soon")
        server.signal(signal.SIGHUP)
        wait_until(lambda: "settings not reloaded" in server.error_log(), what="the refusal")
        server.signal(signal.SIGINT)
        wait_until(lambda: "Ctrl+C again" in server.stderr(), what="the waiting line")
        server.signal(signal.SIGINT)
        self.assertEqual(server.wait(), 130)


def signal_pending(pid: int, signum: int) -> bool:
    """Whether ``signum`` waits to be delivered to process ``pid`` (False once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            lines = dict(line.split(":", 1) for line in status)
    except FileNotFoundError:
        return False
    pending = int(lines["SigPnd"], 16) | int(lines["ShdPnd"], 16)
    return bool(pending >> (signum - 1) & 1)


class CleartextWarningTest(unittest.TestCase):
    """Workers start as a lone Nex does: the warning that passwords cross the network
    unencrypted is logged with workers too."""

    def test_logged_with_workers(self) -> None:
        root = tempfile.mkdtemp(prefix="nex-root-")
        self.addCleanup(shutil.rmtree, root, True)
        users = os.path.join(root, "..", os.path.basename(root) + ".users")
        write_users(users, {"ann": "secret password"})
        self.addCleanup(os.remove, users)
        for workers in (1, 2):
            with self.subTest(workers=workers):
                server = NexServer(root, settings={"server": {"workers": workers},
                                                   "auth": {"users_file": users}},
                                   bind="0.0.0.0")
                self.addCleanup(server.stop)
                server.start()
                wait_until(lambda: "without TLS" in server.error_log(), what="the warning")
                server.stop()


class ReloadRaceTest(unittest.TestCase):
    """A stop that arrives while a reload builds the new server stops the new one too."""

    def test_a_stop_during_the_reload_is_not_lost(self) -> None:
        config = quiet_config(self)
        logger = Logger.from_config(config)
        old = Server(config, lambda port: assemble(config, port, on_error=logger.warning),
                     logger)
        self.addCleanup(old.listener.close)
        retiring: List[Tuple[threading.Thread, Server]] = []
        old.handle_signal(signal.SIGTERM, None)  # while the settings were read
        new = run._reloaded(old, lambda: config, retiring)
        for thread, _ in retiring:
            thread.join(SOCKET_TIMEOUT)
        self.assertIsNot(new, old)
        self.assertTrue(new.stopping.is_set())
        new.serve_forever()  # returns at once, stopping
        new.logger.close()


class RetiredServerStopTest(unittest.TestCase):
    """Stopping a lone Nex after a reload ends at once what its retired servers still wait
    for, as it ends the new server's own waits: one server after another each took up to
    a wake interval (half a second) more, so that a stop after a few reloads, each with a
    browser's silent pre-connection, took seconds."""

    def test_a_stop_ends_the_wait_for_a_first_request_at_once(self) -> None:
        config = quiet_config(self, request_head_timeout=60, shutdown_grace=60)
        server = in_process_server(self, config)
        self.addCleanup(server.listener.close)
        wakeup, woken = os.pipe()
        for fd in (wakeup, woken):
            os.set_blocking(fd, False)
            self.addCleanup(os.close, fd)
        serving = threading.Thread(target=server.serve_forever, args=(wakeup,), daemon=True)
        serving.start()
        client = socket.create_connection(("127.0.0.1", server.port), timeout=SOCKET_TIMEOUT)
        self.addCleanup(client.close)
        wait_until(lambda: server._live, what="the connection to be accepted")
        server.reload_requested = True  # as SIGHUP does, and the signal's wake-up
        os.write(woken, b"\0")
        serving.join(SOCKET_TIMEOUT)
        # Far longer than the test waits: only being told ends the retired server's wait.
        with mock.patch.object(listener, "_WAKE_INTERVAL_SECONDS", 60):
            retiring = threading.Thread(target=server.retire, daemon=True)
            retiring.start()
            wait_until(lambda: server.stopping.is_set(), what="the retired server to stop")
            server.cut_tunnels()  # what stopping Nex does
            retiring.join(SOCKET_TIMEOUT / 2)
        self.assertFalse(retiring.is_alive(), "the retired server still waits")
        self.assertEqual(read_all(client), b"")


class WebDavLocksReloadTest(unittest.TestCase):
    """A reload of a lone Nex keeps the WebDAV locks clients hold, as replaced workers keep
    the table they share: a lock lost in a reload would let another client write over the
    locked file."""

    def test_a_reload_keeps_the_lock_table(self) -> None:
        config = dataclasses.replace(quiet_config(self), webdav="write")
        logger = Logger.from_config(config)
        old = Server(config, lambda port: assemble(config, port, on_error=logger.warning),
                     logger)
        self.addCleanup(old.listener.close)
        retiring: List[Tuple[threading.Thread, Server]] = []
        old.handle_signal(signal.SIGTERM, None)  # so that the new server stops at once
        new = run._reloaded(old, lambda: config, retiring)
        for thread, _ in retiring:
            thread.join(SOCKET_TIMEOUT)
        self.assertIsNot(new, old)
        self.assertIs(new.dispatcher.dav.locks, old.dispatcher.dav.locks)
        new.serve_forever()
        new.logger.close()


class StackSizeReloadTest(unittest.TestCase):
    """A reload sizes the threads started after it by the settings read again."""

    def test_a_reload_to_the_default_stack_size_brings_the_default_back(self) -> None:
        config = quiet_config(self)
        self.addCleanup(threading.stack_size, threading.stack_size())
        threading.stack_size(256 * 1024)  # as a start with thread_stack_size = 256K left it
        logger = Logger.from_config(config)
        old = Server(dataclasses.replace(config, thread_stack_size=256 * 1024),
                     lambda port: assemble(config, port, on_error=logger.warning), logger)
        self.addCleanup(old.listener.close)
        retiring: List[Tuple[threading.Thread, Server]] = []
        old.handle_signal(signal.SIGTERM, None)  # so that the new server stops at once
        new = run._reloaded(old, lambda: dataclasses.replace(config, thread_stack_size=0),
                            retiring)
        for thread, _ in retiring:
            thread.join(SOCKET_TIMEOUT)
        self.assertIsNot(new, old)
        self.assertEqual(threading.stack_size(), 0)
        new.serve_forever()
        new.logger.close()
