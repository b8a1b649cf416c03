"""workers = N: the supervisor's rules, and real worker processes on one port.

The functional tests find the workers and the connections they hold through /proc (Linux):
a worker is a child of the supervisor process, and a connection belongs to the process whose
descriptors hold its socket's inode in /proc/net/tcp.  Nothing is added to responses.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest
from typing import Dict, Set
from unittest import mock

from nex import SERVER_SOFTWARE
from nex.process.config import Config
from nex.process.log import SupervisorLog, error_line
from nex.process.supervisor import (FIRST_RESTART_DELAY, MAX_RESTART_DELAY, describe_exit,
                                    restart_delay, worker_config)
from tests.support import (REPO, NexServer, ResponseReader, duplex, fetch_all_at_once,
                           merge_settings, read_all, write_settings)
from tests.support import (EchoOrigin, alpha_root, check_reloaded, children, get, hold_a_request,
                           open_tunnel, process_state, reload_under_traffic, running,
                           wait_until)

ON_LINUX = sys.platform.startswith("linux")
_TCP_LISTEN, _TCP_ESTABLISHED = "0A", "01"
#: Starts Nex with every worker accepting on the supervisor's one listener (no SO_REUSEPORT).
_SHARED_LISTENER = ("import sys, nex.process.supervisor; "
                    "nex.process.supervisor.REUSE_PORT = False; "
                    "from nex.process.cli import main; sys.exit(main(sys.argv[1:]))")


# --- the rules, without processes ------------------------------------------------------------

class WorkerConfigTest(unittest.TestCase):
    def test_caps_are_divided_among_the_workers_rounding_down(self):
        config = worker_config(Config(workers=4, max_connections=1024,
                                      max_connections_per_client=130, backlog=64))
        self.assertEqual((config.max_connections, config.max_connections_per_client),
                         (256, 32))
        self.assertEqual(config.backlog, 64)

    def test_every_worker_admits_at_least_one_connection(self):
        config = worker_config(Config(workers=8, max_connections=3,
                                      max_connections_per_client=1))
        self.assertEqual((config.max_connections, config.max_connections_per_client), (1, 1))

    def test_login_failure_budgets_are_divided_not_multiplied(self):
        # Issue: each worker counted failures on its own, so N workers gave N times the guesses.
        config = worker_config(Config(workers=4, auth_max_failures_per_minute=10,
                                      proxy_auth_failures_per_minute=0))
        self.assertEqual((config.auth_max_failures_per_minute,
                          config.proxy_auth_failures_per_minute), (2, 0))
        config = worker_config(Config(workers=8, proxy_auth_failures_per_minute=3))
        self.assertEqual(config.proxy_auth_failures_per_minute, 1)

    def test_one_worker_keeps_the_caps(self):
        config = Config(workers=1, max_connections=10, max_connections_per_client=5)
        self.assertEqual(worker_config(config), config)


class RestartDelayTest(unittest.TestCase):
    def test_first_restart_is_at_once_then_the_pause_doubles_up_to_the_cap(self):
        delays = [restart_delay(n) for n in range(1, 12)]
        self.assertEqual(delays[:4], [0.0, FIRST_RESTART_DELAY, 2 * FIRST_RESTART_DELAY,
                                      4 * FIRST_RESTART_DELAY])
        self.assertEqual(delays, sorted(delays))
        self.assertEqual(delays[-1], MAX_RESTART_DELAY)

    def test_a_long_run_of_failures_stays_at_the_cap(self):
        self.assertEqual(restart_delay(10 ** 6), MAX_RESTART_DELAY)


class DescribeExitTest(unittest.TestCase):
    def test_exit_status_and_signal(self):
        self.assertEqual(describe_exit(3 << 8), "exited with status 3")
        self.assertEqual(describe_exit(0), "exited with status 0")
        self.assertEqual(describe_exit(signal.SIGKILL), "was killed by signal SIGKILL")


class SupervisorLogTest(unittest.TestCase):
    def test_lines_are_appended_in_the_error_log_format(self):
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        path = os.path.join(folder, "error.log")
        with open(path, "w") as existing:
            existing.write("before\n")
        log = SupervisorLog(path)
        log.info("worker 1 started (pid 7)")
        log.warning("worker 1 (pid 7) exited with status 1; restarting it now")
        log.close()
        with open(path) as written:
            lines = written.read().splitlines()
        self.assertEqual(lines[0], "before")
        stamp = r"\[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] "
        self.assertRegex(lines[1], stamp + r"info: worker 1 started \(pid 7\)\Z")
        self.assertRegex(lines[2], stamp + r"warning: worker 1 \(pid 7\) exited with status 1;"
                                           r" restarting it now\Z")

    def test_the_time_stamp_is_the_loggers_own(self):
        # A format of its own (strftime's %b follows the locale) could drift from the
        # workers' lines in the same file.
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        log = SupervisorLog(os.path.join(folder, "error.log"))
        with mock.patch("time.time", return_value=86400.0 * 365):
            log.warning("w")
            expected = error_line("warning", "w")
        log.close()
        with open(os.path.join(folder, "error.log")) as written:
            self.assertEqual(written.read(), expected)
        self.assertEqual(expected, "[01/Jan/1971:00:00:00 +0000] warning: w\n")


# --- what /proc shows ------------------------------------------------------------------------



def socket_inodes(pid: int) -> Set[int]:
    """The inodes of the sockets among ``pid``'s open descriptors."""
    inodes = set()
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return inodes
    for name in names:
        try:
            target = os.readlink(os.path.join(folder, name))
        except FileNotFoundError:
            continue
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match:
            inodes.add(int(match.group(1)))
    return inodes


def tcp_sockets(port: int, state: str) -> Dict[int, int]:
    """IPv4 TCP sockets on local ``port`` in ``state``: inode → remote port."""
    found = {}
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            if local_port == port and fields[3] == state:
                found[int(fields[9])] = int(fields[2].split(":")[1], 16)
    return found


def listeners_of(pid: int, port: int) -> Set[int]:
    """The inodes of the sockets listening on ``port`` that ``pid`` holds."""
    return socket_inodes(pid) & set(tcp_sockets(port, _TCP_LISTEN))





# --- real processes --------------------------------------------------------------------------

@unittest.skipUnless(ON_LINUX, "finds workers and connections through /proc")
class WorkersTest(unittest.TestCase):
    def setUp(self):
        self.root = alpha_root(self)

    def start(self, workers: int = 4, settings: Dict[str, Dict[str, object]] = None,
              shared_listener: bool = False) -> NexServer:
        server = NexServer(self.root, settings=merge_settings({"server": {"workers": workers}},
                                                              settings))
        if shared_listener:
            server.args[1:2] = ["-c", _SHARED_LISTENER]
        self.addCleanup(server.stop)
        server.start()
        self.assertIn(f"with {workers} workers", server.stdout())
        self.assertEqual(len(re.findall(r"http://", server.stdout())), 1)
        return server

    def workers(self, server: NexServer, count: int, besides: Set[int] = frozenset()) -> Set[int]:
        """The worker pids, once there are ``count`` of them and each listens; workers in
        ``besides`` (replaced, still finishing their responses) are not counted."""
        def listening():
            pids = children(server.pid) - besides
            return pids if len(pids) == count and all(
                listeners_of(pid, server.port) for pid in pids) else None
        return wait_until(listening,
                          what=f"{count} listening workers")  # type: ignore[return-value]

    def test_one_worker_is_one_process_without_a_supervisor(self):
        server = NexServer(self.root, settings={"server": {"workers": 1}})
        self.addCleanup(server.stop)
        server.start()
        self.assertNotIn("workers", server.stdout())
        self.assertEqual(len(listeners_of(server.pid, server.port)), 1)
        self.assertEqual(children(server.pid), set())
        self.assertEqual(get(server)[2], b"alpha")

    def test_each_worker_listens_on_the_port_with_its_own_socket(self):
        server = self.start(workers=3)
        pids = self.workers(server, 3)
        sockets = [listeners_of(pid, server.port) for pid in pids]
        self.assertTrue(all(len(held) == 1 for held in sockets), sockets)
        self.assertEqual(len(set.union(*sockets)), 3)  # no worker holds another's listener
        # The supervisor keeps every listener, for the worker that will replace its holder.
        self.assertEqual(listeners_of(server.pid, server.port), set.union(*sockets))
        self.assertEqual(get(server)[2], b"alpha")

    def test_connections_spread_over_more_than_one_worker(self):
        server = self.start(workers=4)
        pids = self.workers(server, 4)
        clients = []
        try:
            for _ in range(40):
                sock = server.connect()
                clients.append(sock)
                sock.sendall(b"GET /a.txt HTTP/1.1\r\nHost: a\r\n\r\n")
                self.assertEqual(ResponseReader(sock).read()[2], b"alpha")
            # Each connection is open and answered: its server side is held by one worker.
            client_ports = {sock.getsockname()[1] for sock in clients}
            served = {inode for inode, remote in
                      tcp_sockets(server.port, _TCP_ESTABLISHED).items()
                      if remote in client_ports}
            self.assertEqual(len(served), len(clients))
            holders = {pid: socket_inodes(pid) & served for pid in pids}
            self.assertEqual(sum(len(held) for held in holders.values()), len(clients))
            self.assertGreater(sum(1 for held in holders.values() if held), 1, holders)
        finally:
            for sock in clients:
                sock.close()

    def test_200_concurrent_clients_and_every_access_line_whole(self):
        files = {f"/f{n}.bin": os.urandom(1024 << n) for n in range(6)}
        for path, data in files.items():
            with open(self.root + path, "wb") as f:
                f.write(data)
        server = self.start(workers=4, settings={"server": {
            "backlog": 512, "max_connections_per_client": 2048}})
        fetch_all_at_once(self, server, files)

    def test_a_killed_worker_is_restarted_and_nex_keeps_serving(self):
        server = self.start(workers=2)
        pids = self.workers(server, 2)
        victim = min(pids)
        listener = listeners_of(victim, server.port)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: f"(pid {victim}) was killed by signal SIGKILL; restarting it"
                   in server.error_log(), what="the restart line")
        now = self.workers(server, 2)
        self.assertNotIn(victim, now)
        self.assertIn(max(pids), now)
        (successor,) = now - pids
        self.assertEqual(listeners_of(successor, server.port), listener)
        for _ in range(10):
            self.assertEqual(get(server)[2], b"alpha")

    def test_connections_waiting_for_a_dead_worker_are_served_by_its_successor(self):
        server = self.start(workers=2)
        pids = self.workers(server, 2)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)  # no worker accepts: connections wait in the queues
        wait_until(lambda: all(process_state(pid)[0] == "T" for pid in pids),
                   what="the workers to stop")
        clients = []
        try:
            for _ in range(10):
                sock = server.connect()
                clients.append(sock)
                sock.sendall(b"GET /a.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            for sock in clients:
                self.assertEqual(ResponseReader(sock).read()[:3:2], (200, b"alpha"))
        finally:
            for sock in clients:
                sock.close()
        self.assertFalse(self.workers(server, 2) & pids)

    def test_sigterm_lets_a_large_download_finish_and_every_process_exits(self):
        data = os.urandom(64 * 1024 * 1024)
        with open(os.path.join(self.root, "large.bin"), "wb") as f:
            f.write(data)
        server = self.start(workers=2)
        pids = self.workers(server, 2)
        with server.connect() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(b"GET /large.bin HTTP/1.1\r\nHost: a\r\n\r\n")
            first = sock.recv(65536)
            self.assertTrue(first.startswith(b"HTTP/1.1 200 "))
            server.signal(signal.SIGTERM)
            rest = read_all(sock)
        body = (first + rest).split(b"\r\n\r\n", 1)[1]
        self.assertEqual(hashlib.sha256(body).digest(), hashlib.sha256(data).digest())
        self.assertEqual(server.wait(), 0)
        self.assertFalse([pid for pid in pids if running(pid)])
        errors = server.error_log()
        self.assertIn(f"info: {SERVER_SOFTWARE} stopped", errors)
        self.assertNotIn("warning", errors)
        self.assertNotIn("Traceback", server.stderr())

    def test_sighup_applies_new_settings_and_old_connections_get_their_answer(self):
        server = self.start(workers=2, settings={
            "timeouts": {"request_head": 60, "keep_alive": 60, "shutdown_grace": 60},
            "caching": {"cache_control": "no-cache"}})
        old = self.workers(server, 2)
        with server.connect() as kept:
            reader = hold_a_request(kept)
            server.replace_in_settings("cache_control = no-cache", "cache_control = max-age=60")
            server.signal(signal.SIGHUP)
            wait_until(lambda: "settings reloaded: 2 workers" in server.error_log(),
                       what="the reload line")
            # The old workers stop accepting; until they exit they finish what they hold.
            wait_until(lambda: not any(listeners_of(pid, server.port) for pid in old),
                       what="the old workers to close their listeners")
            new = self.workers(server, 2, besides=old)
            self.assertEqual({inode for pid in new for inode in listeners_of(pid, server.port)},
                             listeners_of(server.pid, server.port))
            check_reloaded(self, server, kept, reader, fresh=10)
        wait_until(lambda: not any(running(pid) for pid in old), what="the old workers to exit")
        self.assertNotIn("warning", server.error_log())

    def test_reloads_under_a_stream_of_new_connections_lose_none(self):
        # A replaced worker closed the connections it had accepted but not yet read a
        # request from: their clients saw a reset or an empty reply.
        server = self.start(workers=2)
        self.workers(server, 2)
        reload_under_traffic(self, server,
                             lambda: server.error_log().count("settings reloaded: 2 workers"))

    def test_sighup_leaves_open_tunnels_to_drain_on_the_old_settings(self):
        # Issue: a reload cut every CONNECT tunnel and WebSocket after shutdown_grace.
        echo = EchoOrigin()
        self.addCleanup(echo.close)
        server = self.start(workers=2, settings={
            "proxy": {"enabled": "yes", "denied_destinations": "", "connect_ports": echo.port},
            "timeouts": {"shutdown_grace": 1}})
        old = self.workers(server, 2)
        with server.connect() as tunnel:
            open_tunnel(tunnel, echo.port)
            self.assertEqual(duplex(tunnel, b"before", 6), b"before")
            server.signal(signal.SIGHUP)
            wait_until(lambda: "1 tunnel(s) left to drain" in server.error_log(),
                       what="the old worker to leave its tunnel open")
            self.workers(server, 2, besides=old)
            self.assertEqual(duplex(tunnel, b"after the reload", 16), b"after the reload")
        wait_until(lambda: not any(running(pid) for pid in old), what="the old workers to exit")
        self.assertNotIn("closing them", server.error_log())

    def test_stopping_nex_cuts_the_draining_tunnels(self):
        echo = EchoOrigin()
        self.addCleanup(echo.close)
        server = self.start(workers=2, settings={
            "proxy": {"enabled": "yes", "denied_destinations": "", "connect_ports": echo.port},
            "timeouts": {"shutdown_grace": 1}})
        with server.connect() as tunnel:
            open_tunnel(tunnel, echo.port)
            server.signal(signal.SIGHUP)
            wait_until(lambda: "1 tunnel(s) left to drain" in server.error_log(),
                       what="the old worker to leave its tunnel open")
            server.signal(signal.SIGTERM)
            self.assertEqual(server.wait(), 0)
            self.assertEqual(read_all(tunnel), b"")

    def test_sighup_can_change_the_number_of_workers(self):
        server = self.start(workers=2)
        first = self.workers(server, 2)
        for count, line in ((3, "workers = 2"), (1, "workers = 3")):
            server.replace_in_settings(line, f"workers = {count}")
            server.signal(signal.SIGHUP)
            wait_until(lambda: f"settings reloaded: {count} workers" in server.error_log(),
                       what=f"the reload to {count} workers")
            pids = wait_until(lambda: children(server.pid) - first
                              if len(children(server.pid) - first) == count else None,
                              what=f"{count} new workers")
            first |= pids
            wait_until(lambda: children(server.pid) == pids, what="the replaced workers to exit")
            self.assertEqual(len(listeners_of(server.pid, server.port)), count)
            for _ in range(5):
                self.assertEqual(get(server)[2], b"alpha")

    def test_sighup_with_broken_settings_keeps_the_workers_and_logs_one_line(self):
        server = self.start(workers=2)
        pids = self.workers(server, 2)
        lines_before = server.error_log().count("\n")
        with open(server.settings_path, "a") as f:
            f.write("[files]\nlisting = maybe\n")
        server.signal(signal.SIGHUP)
        wait_until(lambda: "settings not reloaded" in server.error_log(), what="the refusal line")
        for _ in range(10):
            self.assertEqual(get(server)[2], b"alpha")
        self.assertEqual(children(server.pid), pids)
        new_lines = server.error_log().splitlines()[lines_before:]
        self.assertEqual(len(new_lines), 1, new_lines)
        self.assertIn("warning: settings not reloaded, the workers keep theirs: ", new_lines[0])
        self.assertIn("[files] listing = maybe: must be yes, no", new_lines[0])

    def test_caps_are_shared_out_among_the_workers(self):
        # Two workers with a total of two connections admit one each: of six connections held
        # open at once, at most two are served, whatever worker the kernel picks for each.
        server = self.start(workers=2, settings={"server": {"max_connections": 2}})
        self.workers(server, 2)
        statuses = []
        clients = []
        try:
            for _ in range(6):
                sock = server.connect()
                clients.append(sock)
                try:
                    sock.sendall(b"GET /a.txt HTTP/1.1\r\nHost: a\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # refused and closed before the request: the 503 is still there
                statuses.append(ResponseReader(sock).read()[0])
        finally:
            for sock in clients:
                sock.close()
        self.assertIn(statuses.count(200), (1, 2), statuses)
        self.assertEqual(statuses.count(503), 6 - statuses.count(200), statuses)

    def test_workers_stop_when_the_supervisor_is_killed(self):
        server = self.start(workers=2)
        pids = self.workers(server, 2)
        server.process.kill()
        server.wait()
        wait_until(lambda: not any(running(pid) for pid in pids),
                   what="the orphaned workers to stop")

    def test_without_so_reuseport_workers_share_the_supervisors_listener(self):
        server = self.start(workers=2, shared_listener=True)
        pids = self.workers(server, 2)
        shared = listeners_of(server.pid, server.port)
        self.assertEqual(len(shared), 1)
        for pid in pids:
            self.assertEqual(listeners_of(pid, server.port), shared)
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: f"(pid {victim}) was killed" in server.error_log(),
                   what="the restart line")
        self.workers(server, 2)
        for _ in range(10):
            self.assertEqual(get(server)[2], b"alpha")
        self.assertEqual(server.stop(), 0)


class StartUpErrorTest(unittest.TestCase):
    """Problems found before serving: one line from the supervisor, exit status 2."""

    def setUp(self):
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder)

    def run_nex(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, os.path.join(REPO, "server.py"),
                               "--workers", "3", "--root", self.folder, *args],
                              capture_output=True, text=True, timeout=60, cwd=REPO,
                              stdin=subprocess.DEVNULL)

    def assert_refused(self, result: subprocess.CompletedProcess, message: str) -> None:
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stdout, "")
        self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
        self.assertIn(message, result.stderr)

    def test_port_in_use(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = self.run_nex("--port", str(port))
        self.assert_refused(result, f"nex: cannot listen on 127.0.0.1 port {port}: ")

    @unittest.skipUnless(hasattr(socket, "SO_REUSEPORT"), "needs SO_REUSEPORT")
    def test_port_in_use_by_a_listener_that_shares_its_port(self):
        with socket.socket() as taken:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = self.run_nex("--port", str(port))
        self.assert_refused(result, f"nex: cannot listen on 127.0.0.1 port {port}: ")

    def test_missing_root(self):
        result = self.run_nex("--port", "0", "--root", os.path.join(self.folder, "absent"))
        self.assert_refused(result, "absent")

    def test_template_that_is_not_utf8(self):
        pages = os.path.join(self.folder, "pages")
        os.mkdir(pages)
        with open(os.path.join(pages, "error.html"), "wb") as f:
            f.write(b"\xff{{-STATUS_CODE-}}")
        settings = os.path.join(self.folder, "settings.conf")
        write_settings(settings, {"server": {
            "error_pages": pages, "templates": os.path.join(REPO, "other_templates")}})
        result = self.run_nex("--port", "0", "--config", settings)
        self.assert_refused(result, "is not UTF-8")


if __name__ == "__main__":
    unittest.main()
