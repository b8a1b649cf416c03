"""Test harness: the real Nex server in a child process on an ephemeral loopback port."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, Mapping, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Generous: CI machines under load can be slow to start a Python process.
START_TIMEOUT = 30.0
SOCKET_TIMEOUT = 30.0
_URL = re.compile(r"http://(\[[^\]]+\]|[^:/]+):(\d+)/")


def write_settings(path: str, settings: Mapping[str, Mapping[str, object]]) -> None:
    """Write a settings file from ``{section: {key: value}}``."""
    with open(path, "w", encoding="utf-8") as out:
        for section, values in settings.items():
            out.write(f"[{section}]\n")
            for key, value in values.items():
                out.write(f"{key} = {value}\n")
            out.write("\n")


class NexServer:
    """Start ``server.py`` on port 0 with a settings file built for the test, and stop it.

    ``settings`` overrides per section; logs go to files in a private folder whose paths are
    ``access_log_path`` and ``error_log_path``.
    """

    def __init__(self, root: str, settings: Optional[Mapping[str, Mapping[str, object]]] = None,
                 bind: str = "127.0.0.1") -> None:
        self.root = root
        self.workdir = tempfile.mkdtemp(prefix="nex-test-")
        self.access_log_path = os.path.join(self.workdir, "access.log")
        self.error_log_path = os.path.join(self.workdir, "error.log")
        merged: Dict[str, Dict[str, object]] = {
            "server": {"error_pages": os.path.join(REPO, "error_pages"),
                       "templates": os.path.join(REPO, "other_templates")},
            "logging": {"access_log": self.access_log_path, "error_log": self.error_log_path,
                        "log_colour": "never"},
        }
        for section, values in (settings or {}).items():
            merged.setdefault(section, {}).update(values)
        self.settings_path = os.path.join(self.workdir, "settings.conf")
        write_settings(self.settings_path, merged)
        self.args = [sys.executable, os.path.join(REPO, "server.py"), "--config",
                     self.settings_path, "--port", "0", "--root", root, "--bind", bind]
        self.process: Optional[subprocess.Popen] = None
        self.host = ""
        self.port = 0

    def start(self) -> "NexServer":
        """Start the server and wait for its start-up line."""
        self.stdout_path = os.path.join(self.workdir, "stdout")
        self.stderr_path = os.path.join(self.workdir, "stderr")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(self.args, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL, cwd=REPO)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = _URL.search(self.stdout())
            if match:
                self.host = match.group(1).strip("[]")
                self.port = int(match.group(2))
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"Nex did not start: {self.stdout()!r} {self.stderr()!r}")

    @property
    def url(self) -> str:
        """The base URL, ending in ``/``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def pid(self) -> int:
        return self.process.pid

    def connect(self, timeout: float = SOCKET_TIMEOUT) -> socket.socket:
        """A new client socket connected to the server."""
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def stdout(self) -> str:
        return _read_text(self.stdout_path)

    def stderr(self) -> str:
        return _read_text(self.stderr_path)

    def access_log(self) -> str:
        return _read_text(self.access_log_path)

    def wait_for_access_log(self, predicate, timeout: float = START_TIMEOUT) -> str:
        """The access log once ``predicate(text)`` holds (lines are written in batches)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.access_log()
            if predicate(text) or time.monotonic() > deadline:
                return text
            time.sleep(0.05)

    def error_log(self) -> str:
        return _read_text(self.error_log_path)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = START_TIMEOUT) -> int:
        return self.process.wait(timeout)

    def stop(self) -> Optional[int]:
        """Stop the server (SIGTERM, then SIGKILL if it hangs) and remove its folder."""
        code = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
        elif self.process is not None:
            code = self.process.returncode
        shutil.rmtree(self.workdir, ignore_errors=True)
        return code

    def __enter__(self) -> "NexServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _read_text(path: str) -> str:
    """The file's text so far; empty while the server has not created it."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def exchange(sock: socket.socket, data: bytes) -> bytes:
    """Send ``data`` and read until the server closes the connection."""
    sock.sendall(data)
    return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes."""
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class ResponseReader:
    """Reads whole HTTP/1.1 responses, one at a time, from a keep-alive socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection mid-response")
        self.buffer += chunk

    def read(self, head_only: bool = False):
        """``(status, headers dict with lower-case names, body)`` of the next response."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: Dict[str, str] = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_only or status in (204, 304) else int(headers.get("content-length", 0))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body
