"""Logs that rotate: SIGUSR1 reopens the log files, driven by the shipped logrotate file;
the JSON and combined access lines with their duration, bytes, upstream and refusal reason."""

from __future__ import annotations

import json
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
from unittest import mock

from nex.http.errors import HTTPError
from nex.process.log import SupervisorLog
from tests.support import REPO, SOCKET_TIMEOUT, START_TIMEOUT, NexServer, ProxyTestCase, \
    exchange, ok, proxy_settings, socketpair_dispatcher, wait_until
from tests.support.logs import FIXED_TEXT, FIXED_TIME, LoggerTestCase, read_all
from tests.support import temp_root

LOGROTATE = shutil.which("logrotate")
SHIPPED = os.path.join(REPO, "contrib", "logrotate", "nex")


class ReopenTest(LoggerTestCase):
    """Logger.reopen and SupervisorLog.reopen: new files under the old names, nothing lost."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="nex-reopen-")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.path = os.path.join(self.folder, "access.log")

    def test_lines_after_reopen_go_to_the_new_file(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        logger = self.logger(access=fd, owned=[fd], paths={fd: self.path})
        logger.message("before")
        self.assertEqual(wait_until(lambda: _text(self.path)), "before\n")
        os.rename(self.path, self.path + ".1")
        logger.reopen()
        logger.message("after")
        logger.close()  # writes out what is left
        with open(self.path + ".1") as old, open(self.path) as new:
            self.assertEqual((old.read(), new.read()), ("before\n", "after\n"))

    def test_a_file_that_cannot_be_opened_keeps_the_old_one_and_says_so(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
        self.addCleanup(os.close, fd)
        logger = self.logger(access=fd, paths={fd: self.path})
        os.rename(self.path, os.path.join(self.folder, "moved.log"))
        shutil.rmtree(self.folder)  # the folder is gone: the name cannot be opened again
        logger.reopen()
        logger.message("still logged")
        logger.close()  # writes out what is left
        self.assertEqual(read_all(fd), "still logged\n")
        self.assertRegex(self.errors(), r"warning: cannot reopen .*access\.log, the old file "
                                        r"stays in use: No such file or directory\n$")

    def test_supervisor_log_reopens(self) -> None:
        log = SupervisorLog(self.path)
        self.addCleanup(log.close)
        log.info("one")
        os.rename(self.path, self.path + ".1")
        log.reopen()
        log.info("two")
        with open(self.path) as new:
            self.assertRegex(new.read(), r"^\[[^\]]+\] info: two\n$")


class JsonLineTest(LoggerTestCase):
    """[logging] format = json: one object per line with the fields operators query."""

    def test_fields_of_a_proxied_request(self) -> None:
        logger = self.logger(json_format=True)
        with mock.patch("nex.process.log.time.time", return_value=FIXED_TIME + 0.25):
            logger.access("192.0.2.7", "GET http://example.org/a HTTP/1.1", 200, 1234,
                          "http://r/", "curl/8.0", user="alice", duration_us=1500,
                          received=99, upstream="example.org:80")
        record = json.loads(self.logged(logger))
        self.assertEqual(record, {
            "time": "2021-01-05T09:03:07.250Z", "client": "192.0.2.7", "user": "alice",
            "method": "GET", "target": "http://example.org/a", "protocol": "HTTP/1.1",
            "status": 200, "bytes_in": 99, "bytes_out": 1234, "duration_us": 1500,
            "referer": "http://r/", "user_agent": "curl/8.0", "upstream": "example.org:80"})

    def test_refusal_has_a_reason_and_a_raw_request(self) -> None:
        logger = self.logger(json_format=True)
        logger.access("::1", "-", 429, 0, None, None, refusal="max_connections_per_client")
        record = json.loads(self.logged(logger))
        self.assertEqual((record["method"], record["target"], record["request"]),
                         (None, None, "-"))
        self.assertEqual(record["reason"], "max_connections_per_client")
        self.assertNotIn("upstream", record)

    def test_a_request_cannot_forge_a_second_json_line(self) -> None:
        logger = self.logger(json_format=True)
        forged = '{"client":"1.2.3.4","status":200}'
        logger.access("127.0.0.1", f"GET /\r\n{forged} HTTP/1.1", 400, 0, f'"\n{forged}',
                      "agent\x85\u2028")
        text = self.logged(logger)
        self.assertEqual(text.count("\n"), 1)
        self.assertTrue(text.isascii())
        self.assertEqual(json.loads(text)["referer"], f'"\n{forged}')

    def test_no_colour_in_json(self) -> None:
        logger = self.logger(json_format=True, colour=True)
        logger.access("127.0.0.1", "GET / HTTP/1.1", 404, 5, None, None)
        self.assertNotIn("\x1b", self.logged(logger))


class CombinedReasonTest(LoggerTestCase):
    """The combined line: the duration last, then reason=TOKEN for Nex's own refusals."""

    def test_reason_follows_the_duration_only_when_set(self) -> None:
        logger = self.logger()
        with mock.patch("nex.process.log.time.time", return_value=FIXED_TIME):
            logger.access("10.0.0.9", "CONNECT a.example:25 HTTP/1.1", 403, 10, None, None,
                          duration_us=42, refusal="port")
            logger.access("10.0.0.9", "GET / HTTP/1.1", 200, 10, None, None, duration_us=7)
        self.assertEqual(self.logged(logger).splitlines(), [
            f'10.0.0.9 - - [{FIXED_TEXT}] "CONNECT a.example:25 HTTP/1.1" 403 10 "-" "-" 42 '
            'reason=port',
            f'10.0.0.9 - - [{FIXED_TEXT}] "GET / HTTP/1.1" 200 10 "-" "-" 7'])


class RefusalCarryTest(unittest.TestCase):
    """An HTTPError's refusal token reaches the response the logger reads, as its user does."""

    def test_error_page_carries_the_refusal(self) -> None:
        root = tempfile.mkdtemp(prefix="nex-refusal-")
        self.addCleanup(shutil.rmtree, root, True)
        error = HTTPError(403, "This proxy does not tunnel to port 25.")
        error.refusal = "port"
        response = socketpair_dispatcher(root).error_response(error)
        self.assertEqual((response.status, response.refusal), (403, "port"))
        self.assertIsNone(socketpair_dispatcher(root).error_response(HTTPError(404)).refusal)


def request(port: int, path: str, extra: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        return exchange(sock, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                              .encode() + extra + b"\r\n")


class ServedLinesTest(unittest.TestCase):
    """The real server's lines: bytes in and out, duration, refusal reasons."""

    def setUp(self) -> None:
        self.root = temp_root(self, {"hello.txt": b"hello\n"})

    def test_json_line_counts_the_bytes_both_ways(self) -> None:
        with NexServer(self.root, {"logging": {"format": "json"},
                                   "files": {"upload": "yes"}}) as server:
            head = (b"PUT /up.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
                    b"Connection: close\r\n\r\n")
            with server.connect() as sock:
                self.assertIn(b" 201 ", exchange(sock, head + b"12345"))
            get = request(server.port, "/hello.txt")
            log = server.wait_for_access_log(lambda text: text.count("\n") >= 2)
        put_record, get_record = [json.loads(line) for line in log.splitlines()]
        self.assertEqual((put_record["method"], put_record["target"], put_record["status"],
                          put_record["bytes_in"]), ("PUT", "/up.txt", 201, len(head) + 5))
        self.assertEqual((get_record["status"], get_record["bytes_out"]), (200, 6))
        self.assertEqual(get_record["bytes_in"],
                         len(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        self.assertTrue(get.endswith(b"hello\n"))
        for record in (put_record, get_record):
            self.assertIsInstance(record["duration_us"], int)
            self.assertGreaterEqual(record["duration_us"], 0)
            self.assertEqual(record["client"], "127.0.0.1")

    def test_cap_refusal_is_logged_with_its_reason(self) -> None:
        with NexServer(self.root, {"server": {"max_connections_per_client": 1}}) as server:
            with server.connect() as held:
                held.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
                held.recv(1)  # served: the connection now counts
                refused = request(server.port, "/hello.txt")
                self.assertTrue(refused.startswith(b"HTTP/1.1 429 "), refused[:40])
            log = server.wait_for_access_log(lambda text: "429" in text)
        self.assertRegex(log, r'(?m)"-" 429 \d+ "-" "-" \d+ reason=max_connections_per_client$')


def run_load(port: int, stop: threading.Event, sent: list, failures: list) -> None:
    """GET /hello.txt?N with N counting up, one connection each, until ``stop``."""
    number = 0
    while not stop.is_set():
        number += 1
        try:
            answer = request(port, f"/hello.txt?{number}")
        except OSError as error:
            failures.append(f"{number}: {error}")
            continue
        if not answer.startswith(b"HTTP/1.1 200 "):
            failures.append(f"{number}: {answer[:40]!r}")
        sent.append(number)


@unittest.skipIf(LOGROTATE is None, "logrotate is not installed")
class LogrotateTest(unittest.TestCase):
    """contrib/logrotate/nex rotates a live Nex's logs: the file is moved, SIGUSR1 makes Nex
    write the next lines to a new file, and no line is lost or written twice."""

    def setUp(self) -> None:
        self.root = temp_root(self, {"hello.txt": b"hello\n"})

    def test_shipped_file_parses(self) -> None:
        state = os.path.join(self.root, "state")
        done = subprocess.run([LOGROTATE, "--debug", "--state", state, SHIPPED],
                              capture_output=True, text=True, timeout=START_TIMEOUT)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertNotIn("error", done.stderr.lower())

    def rotate(self, server: NexServer) -> None:
        """Run logrotate with the shipped file, aimed at the server's folder and pid."""
        with open(SHIPPED, encoding="utf-8") as shipped:
            text = shipped.read()
        self.assertIn("/var/log/nex/*.log {", text)
        text = text.replace("/var/log/nex/*.log", os.path.join(server.workdir, "*.log"))
        text, count = re.subn(r"(?m)^(\s*)systemctl kill .*$",
                              rf"\1kill -USR1 {server.pid}", text)
        self.assertEqual(count, 1)
        config = os.path.join(self.root, "logrotate.conf")
        with open(config, "w", encoding="utf-8") as out:
            out.write(text)
        done = subprocess.run([LOGROTATE, "--force", "--state",
                               os.path.join(self.root, "state"), config],
                              capture_output=True, text=True, timeout=START_TIMEOUT)
        self.assertEqual(done.returncode, 0, done.stderr)

    def check_rotation(self, settings, reload_first: bool = False) -> None:
        with NexServer(self.root, settings) as server:
            if reload_first:  # a lone Nex then serves and logs through a new server
                server.signal(signal.SIGHUP)
                server.wait_for_access_log(lambda text: "settings reloaded" in text)
            stop, sent, failures = threading.Event(), [], []
            load = threading.Thread(target=run_load, args=(server.port, stop, sent, failures))
            load.start()
            try:
                server.wait_for_access_log(lambda text: text.count("\n") >= 20)
                self.rotate(server)
                rotated = server.access_log_path + ".1"
                self.assertTrue(os.path.exists(rotated))
                deadline = time.monotonic() + START_TIMEOUT
                while server.access_log().count("\n") < 20 and time.monotonic() < deadline:
                    time.sleep(0.05)
            finally:
                stop.set()
                load.join(START_TIMEOUT)
            self.assertEqual(failures, [])
            expected = [f"GET /hello.txt?{number} HTTP/1.1" for number in sent]
            deadline = time.monotonic() + START_TIMEOUT
            while True:  # each worker writes its lines in batches of its own
                with open(rotated, encoding="utf-8") as old:
                    old_lines = old.read().splitlines()
                new_lines = server.access_log().splitlines()
                logged = [re.search(r'"([^"]*)"', line).group(1)
                          for line in old_lines + new_lines if "hello.txt" in line]
                if len(logged) >= len(expected) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            self.assertGreaterEqual(len(new_lines), 20)
            self.assertEqual(sorted(logged), sorted(expected))  # none lost, none twice
            self.assertTrue(os.path.exists(server.error_log_path))  # reopened too
            self.assertIsNone(server.process.poll())

    def test_single_process(self) -> None:
        self.check_rotation({})

    def test_single_process_after_a_reload(self) -> None:
        self.check_rotation({}, reload_first=True)

    def test_workers(self) -> None:
        self.check_rotation({"server": {"workers": 2}})


if __name__ == "__main__":
    unittest.main()


class ProxiedJsonLineTest(ProxyTestCase):
    """A proxied request's JSON line names its upstream."""

    settings = {**proxy_settings(), "logging": {"format": "json"}}

    def test_upstream_is_the_origin(self) -> None:
        origin = self.origin(lambda exchange: ok(b"from the origin"))
        response, body = self.fetch("GET", origin.url("/up?json"))
        self.assertEqual((response.status, body), (200, b"from the origin"))
        log = self.server.wait_for_access_log(lambda text: "/up?json" in text)
        record = json.loads(next(line for line in log.splitlines() if "/up?json" in line))
        self.assertEqual(record["upstream"], f"127.0.0.1:{origin.port}")
        self.assertEqual((record["method"], record["target"], record["bytes_out"]),
                         ("GET", origin.url("/up?json"), len(b"from the origin")))


def _text(path: str) -> str:
    """What the file at ``path`` holds."""
    with open(path, encoding="utf-8") as file:
        return file.read()
