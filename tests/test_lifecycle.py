"""Start-up, shutdown and many clients at once, against the real server process."""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import signal
import socket
import tempfile
import threading
import unittest
from typing import List, Tuple
from unittest import mock

from nex.process.config import Config
from nex.process import supervisor
from nex.process.listener import Server, bind_listener
from tests.support import (NexServer, ResponseReader, fetch_all_at_once, in_process_server,
                           quiet_config, read_all, write_settings)
from tests.support import run_server




class StartUpTest(unittest.TestCase):
    def setUp(self):
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder)

    def test_bad_setting_stops_start_up_with_one_line_and_status_2(self):
        path = os.path.join(self.folder, "bad.conf")
        write_settings(path, {"server": {"port": "99999"}})
        result = run_server("--config", path)
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
        self.assertIn("[server] port = 99999", result.stderr)
        self.assertNotIn("Traceback", result.stderr)

    def test_missing_document_root_is_named(self):
        result = run_server("--root", os.path.join(self.folder, "absent"), "--port", "0")
        self.assertEqual(result.returncode, 2)
        self.assertIn("absent", result.stderr)
        self.assertNotIn("Traceback", result.stderr)

    def test_port_in_use_is_a_clear_error(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = str(taken.getsockname()[1])
            result = run_server("--port", port, "--root", self.folder)
        self.assertEqual(result.returncode, 2)
        self.assertIn(f"cannot listen on 127.0.0.1 port {port}", result.stderr)
        self.assertNotIn("Traceback", result.stderr)

    def test_help_explains_every_flag(self):
        result = run_server("--help")
        self.assertEqual(result.returncode, 0)
        for flag in ("--port", "--bind", "--root", "--config"):
            self.assertIn(flag, result.stdout)

    def ipv6_server(self, bind: str, data: bytes) -> NexServer:
        """A Nex bound to the IPv6 address ``bind`` serving ``/x.txt`` (``data``); the test is
        skipped on a machine that cannot bind there."""
        if not socket.has_ipv6:
            self.skipTest("no IPv6 on this machine")
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind((bind, 0))
        except OSError:
            self.skipTest(f"no {bind} on this machine")
        with open(os.path.join(self.folder, "x.txt"), "wb") as f:
            f.write(data)
        return NexServer(self.folder, bind=bind)

    def test_ipv6_loopback(self):
        with self.ipv6_server("::1", b"six") as server:
            self.assertIn("http://[::1]:", server.stdout())
            with server.connect() as sock:
                sock.sendall(b"GET /x.txt HTTP/1.1\r\nHost: [::1]\r\n\r\n")
                self.assertEqual(ResponseReader(sock).read()[2], b"six")


    def test_dual_stack_listener_logs_ipv4_clients_as_ipv4(self):
        with self.ipv6_server("::", b"four") as server:
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
                sock.sendall(b"GET /x.txt HTTP/1.1\r\nHost: a\r\n\r\n")
                self.assertEqual(ResponseReader(sock).read()[2], b"four")
            log = server.wait_for_access_log(lambda text: "GET /x.txt" in text)
        self.assertTrue(log.startswith("127.0.0.1 - - ["), log)


class ShutdownTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root)
        self.data = os.urandom(64 * 1024 * 1024)
        with open(os.path.join(self.root, "large.bin"), "wb") as f:
            f.write(self.data)

    def test_sigterm_lets_a_large_transfer_finish_and_exits_0(self):
        server = NexServer(self.root).start()
        self.addCleanup(server.stop)
        with server.connect() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(b"GET /large.bin HTTP/1.1\r\nHost: a\r\n\r\n")
            first = sock.recv(65536)  # the response has started
            self.assertTrue(first.startswith(b"HTTP/1.1 200 "))
            server.signal(signal.SIGTERM)
            rest = read_all(sock)
        # read_all returned: the server closed the connection once the response was complete.
        head, body = (first + rest).split(b"\r\n\r\n", 1)
        self.assertEqual(hashlib.sha256(body).digest(), hashlib.sha256(self.data).digest())
        self.assertEqual(server.wait(), 0)
        self.assertNotIn("Traceback", server.stderr())

    def test_sigint_closes_idle_keep_alive_connections_and_exits_0(self):
        with open(os.path.join(self.root, "a.txt"), "wb") as f:
            f.write(b"a")
        server = NexServer(self.root, settings={"timeouts": {"keep_alive": "60"}}).start()
        self.addCleanup(server.stop)
        with server.connect() as sock:
            sock.sendall(b"GET /a.txt HTTP/1.1\r\nHost: a\r\n\r\n")
            reader = ResponseReader(sock)
            self.assertEqual(reader.read()[2], b"a")
            server.signal(signal.SIGINT)
            self.assertEqual(server.wait(), 0)  # without waiting out the 60 s keep-alive
            self.assertEqual(read_all(sock), b"")
        self.assertNotIn("Traceback", server.stderr())


class ManyClientsTest(unittest.TestCase):
    CLIENTS = 200

    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root)
        self.files = {}
        for n in range(8):
            data = os.urandom(1024 * (1 << n))  # 1 KiB to 128 KiB: memory and sendfile paths
            self.files[f"/f{n}.bin"] = data
            with open(os.path.join(self.root, f"f{n}.bin"), "wb") as f:
                f.write(data)

    def test_200_concurrent_clients_are_all_served_byte_exact(self):
        server = NexServer(self.root, settings={
            "server": {"backlog": "512", "max_connections_per_client": "512"}}).start()
        self.addCleanup(server.stop)
        fetch_all_at_once(self, server, self.files, self.CLIENTS)


class ListenBacklogTest(unittest.TestCase):
    """The listen queue: [server] backlog, capped by the kernel's somaxconn when readable."""

    def listened_with(self, backlog: int, somaxconn) -> int:
        """The backlog bind_listener passes to listen() when reading somaxconn gives ``somaxconn``
        (bytes, or an exception to raise)."""
        if isinstance(somaxconn, Exception):
            kernel = mock.Mock(side_effect=somaxconn)
        else:
            kernel = mock.mock_open(read_data=somaxconn)
        with mock.patch("nex.process.listener.open", kernel, create=True), \
                mock.patch.object(socket.socket, "listen") as listen:
            bind_listener(Config(port=0, backlog=backlog)).close()
        kernel.assert_called_once_with("/proc/sys/net/core/somaxconn", "rb")
        return listen.call_args[0][0]

    def test_default_is_1024(self):
        self.assertEqual(Config().backlog, 1024)

    def test_the_supervisors_listeners_are_capped_too(self):
        # The first listener is bound without listening, then listens with SO_REUSEPORT.
        kernel = mock.mock_open(read_data=b"128\n")
        with mock.patch("nex.process.listener.open", kernel, create=True), \
                mock.patch.object(socket.socket, "listen") as listen:
            supervisor._first_listener(Config(port=0, backlog=100000)).close()
        self.assertEqual([call[0][0] for call in listen.call_args_list], [128])

    def test_kernel_limit_caps_the_backlog(self):
        cases = [(1024, b"4096\n", 1024), (1024, b"128\n", 128), (5, b"128\n", 5),
                 (1024, b"", 1024), (1024, b"-1\n", 1024), (1024, b"0\n", 1024),
                 (1024, b"lots\n", 1024), (1024, FileNotFoundError(2, "absent"), 1024),
                 (1024, PermissionError(13, "denied"), 1024)]
        for backlog, somaxconn, expected in cases:
            with self.subTest(backlog=backlog, somaxconn=somaxconn):
                self.assertEqual(self.listened_with(backlog, somaxconn), expected)


class WorkerThreadTest(unittest.TestCase):
    """The listener in-process, to see its worker threads."""

    def test_worker_threads_are_named_after_their_client(self):
        server = in_process_server(self, quiet_config(self))
        listener = threading.Thread(target=server.serve_forever)
        listener.start()
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as first, \
                    socket.create_connection(("127.0.0.1", server.port), timeout=30) as second:
                for sock in (first, second):
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                    ResponseReader(sock).read()
                names = {thread.name for thread in threading.enumerate()}
                for sock in (first, second):
                    port = sock.getsockname()[1]
                    self.assertIn(f"Client-1 127.0.0.1:{port}", names)
        finally:
            server.stop()
            listener.join(30)
        self.assertFalse(listener.is_alive())


class ListenQueueTest(unittest.TestCase):
    """Clients that queue are taken off the listen queue and handed to the pool in one
    burst before any worker starts, so a queue that fills faster than threads start never
    overflows, and the pool grows towards the whole burst at once."""

    def setUp(self):
        self.config = quiet_config(self)

    def serve_queued_clients(self, server: Server, count: int) -> List[Tuple[int, bool]]:
        """Connect ``count`` clients before ``server`` accepts, serve them all, and return,
        for each burst handed to the pool, how many clients it held and whether clients
        still waited in the listen queue then."""
        clients = [socket.create_connection(("127.0.0.1", server.port), timeout=30)
                   for _ in range(count)]
        for client in clients:
            self.addCleanup(client.close)
        bursts = []
        run_all = server._pool.run_all

        def counting_run_all(works):
            bursts.append((len(works), queued(server.listener)))
            return run_all(works)

        server._pool.run_all = counting_run_all
        listener = threading.Thread(target=server.serve_forever)
        listener.start()
        try:
            for client in clients:
                client.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                self.assertEqual(ResponseReader(client).read()[0], 200)
        finally:
            server.stop()
            listener.join(30)
        self.assertEqual(sum(size for size, _ in bursts), count)
        return bursts

    def test_queued_clients_go_to_the_pool_in_one_burst_before_any_worker_starts(self):
        # Handing them over one by one waited for a thread to start for each: under load,
        # new clients then got threads at the rate the interpreter lock let threads start.
        server = in_process_server(self, self.config)
        self.assertEqual(self.serve_queued_clients(server, 20), [(20, False)])

    def test_a_listener_shared_with_other_processes_is_not_drained(self):
        # Another process could take the client a poll reported, and the accept would wait.
        server = in_process_server(self, self.config, listener=bind_listener(self.config),
                                   shared=True)
        self.assertEqual(self.serve_queued_clients(server, 5), [(1, True)] * 4 + [(1, False)])


def queued(listener: socket.socket) -> bool:
    """Whether a connection waits in ``listener``'s accept queue."""
    return bool(select.select([listener], [], [], 0)[0])


if __name__ == "__main__":
    unittest.main()
