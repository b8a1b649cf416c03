"""Debian's HAProxy in front of two Nex processes, with contrib/haproxy/haproxy.cfg: PROXY
protocol v2 carries the clients' addresses, requests are spread over both, a graceful stop of
one under load loses no request, and a restarted Nex rejoins."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
from typing import List

from tests.support import (REPO, SOCKET_TIMEOUT, START_TIMEOUT, NexServer, exchange,
                           free_port)

HAPROXY = shutil.which("haproxy")
SHIPPED = os.path.join(REPO, "contrib", "haproxy", "haproxy.cfg")
#: HAProxy connects to Nex from this address, and clients connect to HAProxy from another:
#: Nex must log the client's, which only the PROXY header tells it.
BALANCER, CLIENT = "127.0.0.2", "127.0.0.3"
LOAD_REQUESTS = 240
LOAD_THREADS = 4


def get(port: int, path: str) -> bytes:
    """GET ``path`` through HAProxy from the client address."""
    with socket.socket() as sock:
        sock.settimeout(SOCKET_TIMEOUT)
        sock.bind((CLIENT, 0))
        sock.connect(("127.0.0.1", port))
        return exchange(sock, f"GET {path} HTTP/1.1\r\nHost: www\r\nConnection: close\r\n\r\n"
                        .encode())


def haproxy_config(front: int, backends: List[int]) -> str:
    """The shipped configuration aimed at loopback ports, checking every 200 ms."""
    with open(SHIPPED, encoding="utf-8") as shipped:
        text = shipped.read()
    replacements = [
        (r"(?m)^    bind :80$", f"    bind 127.0.0.1:{front}"),
        (r"(?m)^    server nex1 10\.0\.0\.11:8080$", f"    server nex1 127.0.0.1:{backends[0]}"),
        (r"(?m)^    server nex2 10\.0\.0\.12:8080$", f"    server nex2 127.0.0.1:{backends[1]}"),
        (r"(?m)^(    default-server send-proxy-v2 check-send-proxy check) inter 1s (.*)$",
         rf"\1 inter 200ms \2 source {BALANCER}"),
    ]
    for pattern, replacement in replacements:
        text, count = re.subn(pattern, replacement, text)
        assert count == 1, pattern
    return text


def nex(root: str, port: int) -> NexServer:
    server = NexServer(root, {"server": {"proxy_protocol": "v2"},
                              "logging": {"trusted_proxies": BALANCER},
                              "timeouts": {"shutdown_grace": 20}})
    server.args[server.args.index("--port") + 1] = str(port)
    return server


@unittest.skipIf(HAPROXY is None, "haproxy (Debian's haproxy package) is not installed")
class HAProxyTest(unittest.TestCase):
    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="nex-haproxy-")
        self.addCleanup(shutil.rmtree, self.root, True)
        for name, text in (("hello.txt", "hello\n"), ("health.txt", "ok\n")):
            with open(os.path.join(self.root, name), "w") as out:
                out.write(text)
        self.ports = [free_port(), free_port()]
        self.servers = [nex(self.root, port).start() for port in self.ports]
        for index in range(2):
            self.addCleanup(lambda index=index: self.servers[index].stop())
        self.front = free_port()
        config = os.path.join(self.root, "haproxy.cfg")
        with open(config, "w", encoding="utf-8") as out:
            out.write(haproxy_config(self.front, self.ports))
        self.haproxy = subprocess.Popen([HAPROXY, "-db", "-f", config],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL)
        self.addCleanup(self.stop_haproxy)
        self.wait_until_both_serve()

    def stop_haproxy(self) -> None:
        self.haproxy.terminate()
        try:
            self.haproxy.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.haproxy.kill()
            self.haproxy.wait()
        self.haproxy.stderr.close()

    def wait_until_both_serve(self, marker: str = "warm") -> None:
        """Send requests until each Nex has answered one (both pass their health checks)."""
        deadline = time.monotonic() + START_TIMEOUT
        number = 0
        while not all(f"?{marker}" in server.access_log() for server in self.servers):
            self.assertLess(time.monotonic(), deadline, "both Nex never served")
            number += 1
            try:
                get(self.front, f"/hello.txt?{marker}{number}")
            except OSError:
                pass  # HAProxy not listening yet
            time.sleep(0.05)

    def lines(self, server: NexServer, marker: str) -> List[str]:
        return [line for line in server.access_log().splitlines() if marker in line]

    def test_client_addresses_reach_the_logs_and_requests_spread(self) -> None:
        answers = [get(self.front, f"/hello.txt?spread{number}") for number in range(20)]
        for answer in answers:
            self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer[:40])
        deadline = time.monotonic() + START_TIMEOUT
        while (sum(len(self.lines(server, "?spread")) for server in self.servers) < 20
               and time.monotonic() < deadline):
            time.sleep(0.05)
        counts = [len(self.lines(server, "?spread")) for server in self.servers]
        self.assertEqual(sum(counts), 20)
        self.assertGreaterEqual(min(counts), 5, counts)  # round robin: about half each
        for server in self.servers:
            for line in self.lines(server, "?spread"):
                self.assertTrue(line.startswith(f"{CLIENT} - - ["), line)
            # Health checks come as LOCAL: they are logged under HAProxy's own address.
            self.assertIn(f'{BALANCER} - - [', server.access_log())

    def test_graceful_stop_under_load_loses_nothing_and_a_restart_rejoins(self) -> None:
        failures: List[str] = []
        done = []
        lock = threading.Lock()

        def load(thread: int) -> None:
            for number in range(LOAD_REQUESTS // LOAD_THREADS):
                try:
                    answer = get(self.front, f"/hello.txt?load{thread}-{number}")
                    ok = answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"hello\n")
                except OSError as error:
                    answer, ok = repr(error).encode(), False
                with lock:
                    done.append(1)
                    if not ok:
                        failures.append(answer[:60].decode("latin-1"))

        threads = [threading.Thread(target=load, args=(index,)) for index in range(LOAD_THREADS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while len(done) < LOAD_REQUESTS // 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.servers[0].signal(signal.SIGTERM)  # in the middle of the load
        self.assertEqual(self.servers[0].wait(START_TIMEOUT), 0)
        for thread in threads:
            thread.join(START_TIMEOUT * 4)
        self.assertEqual(len(done), LOAD_REQUESTS)
        self.assertEqual(failures, [])
        self.servers[1].wait_for_access_log(
            lambda text: text.count("?load") > LOAD_REQUESTS // 4)
        self.assertGreater(len(self.lines(self.servers[1], "?load")), LOAD_REQUESTS // 4)

        self.servers[0].stop()
        self.servers[0] = nex(self.root, self.ports[0]).start()  # the same port again
        self.wait_until_both_serve("rejoin")


if __name__ == "__main__":
    unittest.main()
