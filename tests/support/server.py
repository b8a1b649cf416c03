"""The real Nex server in a child process on an ephemeral loopback port, and waiting for things."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from typing import TYPE_CHECKING, Callable, Dict, Iterator, Mapping, Optional, Set, Tuple, TypeVar

if TYPE_CHECKING:
    from nex.process.config import Config
    from nex.process.connection import Connection
    from nex.process.listener import Server
    from nex.process.newcomers import Newcomers
    from nex.process.tls import ServerTLS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: Generous: CI machines under load can be slow to start a Python process.
START_TIMEOUT = 30.0
SOCKET_TIMEOUT = 30.0
#: How long a test waits for something the server should do on its own (close an idle
#: connection, let a thread end, write a log line) before calling it a failure.
SETTLE_DEADLINE = 30.0
#: A Combined Log Format line as Nex writes it.
COMBINED_LOG_LINE = re.compile(
    r'(?P<client>[0-9a-f.:]+) - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] '
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<size>\d+|-) '
    r'"(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*" \d+')
_URL = re.compile(r"(https?)://(\[[^\]]+\]|[^:/]+):(\d+)/")
#: The openssl command, which makes the certificates of the HTTPS tests.
OPENSSL = shutil.which("openssl")
requires_openssl = unittest.skipIf(OPENSSL is None,
                                   "the openssl command, which makes test certificates, "
                                   "is not installed")
_CERTIFICATE_CONFIG = """\
[req]
distinguished_name = name
x509_extensions = leaf
prompt = no
[name]
CN = localhost
[leaf]
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
"""


T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = SETTLE_DEADLINE,
               interval: float = 0.02, what: Optional[str] = None) -> T:
    """Call ``condition`` until it returns something true or ``timeout`` seconds have passed;
    its last answer (so a false one means the time ran out).  Given ``what``, running out of
    time fails the test instead, naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        answer = condition()
        if answer or time.monotonic() > deadline:
            if not answer and what is not None:
                raise AssertionError(f"timed out waiting for {what}")
            return answer
        time.sleep(interval)


def make_certificate(folder: str, name: str = "server") -> Tuple[str, str]:
    """A new self-signed certificate for localhost, 127.0.0.1 and ::1 and its key, made by
    the openssl command as ``folder/NAME.crt`` and ``folder/NAME.key``."""
    config = os.path.join(folder, f"{name}.cnf")
    with open(config, "w", encoding="ascii") as out:
        out.write(_CERTIFICATE_CONFIG)
    certificate = os.path.join(folder, f"{name}.crt")
    key = os.path.join(folder, f"{name}.key")
    subprocess.run([OPENSSL, "req", "-x509", "-config", config, "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                    "-out", certificate, "-days", "2"],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return certificate, key


def client_context(certificate: str) -> ssl.SSLContext:
    """A client context that trusts only ``certificate`` and offers ALPN h2 and http/1.1,
    as browsers do."""
    context = ssl.create_default_context(cafile=certificate)
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def write_settings(path: str, settings: Mapping[str, Mapping[str, object]]) -> None:
    """Write a settings file from ``{section: {key: value}}``."""
    with open(path, "w", encoding="utf-8") as out:
        for section, values in settings.items():
            out.write(f"[{section}]\n")
            for key, value in values.items():
                out.write(f"{key} = {value}\n")
            out.write("\n")


def merge_settings(*layers: Optional[Mapping[str, Mapping[str, object]]]
                   ) -> Dict[str, Dict[str, object]]:
    """The settings by section that ``layers`` give, each laid key by key over those before."""
    merged: Dict[str, Dict[str, object]] = {}
    for layer in layers:
        for section, values in (layer or {}).items():
            merged.setdefault(section, {}).update(values)
    return merged


class NexServer:
    """Start ``server.py`` on port 0 with a settings file built for the test, and stop it.

    ``settings`` overrides per section; logs go to files in a private folder whose paths are
    ``access_log_path`` and ``error_log_path``.  With ``tls`` the server speaks HTTPS with a
    certificate made for it (``certificate_path``, ``key_path``; needs the openssl command).
    """

    def __init__(self, root: str, settings: Optional[Mapping[str, Mapping[str, object]]] = None,
                 bind: str = "127.0.0.1", tls: bool = False) -> None:
        self.root = root
        self.workdir = tempfile.mkdtemp(prefix="nex-test-")
        self.access_log_path = os.path.join(self.workdir, "access.log")
        self.error_log_path = os.path.join(self.workdir, "error.log")
        merged = merge_settings({
            "server": {"error_pages": os.path.join(REPO, "error_pages"),
                       "templates": os.path.join(REPO, "other_templates")},
            "logging": {"access_log": self.access_log_path, "error_log": self.error_log_path,
                        "log_colour": "never"},
        }, settings)
        self.settings_path = os.path.join(self.workdir, "settings.conf")
        write_settings(self.settings_path, merged)
        self.args = [sys.executable, os.path.join(REPO, "server.py"), "--config",
                     self.settings_path, "--port", "0", "--root", root, "--bind", bind]
        if tls:
            self.certificate_path, self.key_path = make_certificate(self.workdir)
            self.args += ["--tls-cert", self.certificate_path, "--tls-key", self.key_path]
        self.process: Optional[subprocess.Popen] = None
        self.scheme = ""
        self.host = ""
        self.port = 0

    def start(self) -> "NexServer":
        """Start the server and wait for its start-up line."""
        self.stdout_path = os.path.join(self.workdir, "stdout")
        self.stderr_path = os.path.join(self.workdir, "stderr")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(self.args, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL, cwd=REPO)
        match = wait_for_line(self.stdout_path, self.process, _URL)
        if match:
            self.scheme = match.group(1)
            self.host = match.group(2).strip("[]")
            self.port = int(match.group(3))
            return self
        self.stop()
        raise RuntimeError(f"Nex did not start: {self.stdout()!r} {self.stderr()!r}")

    @property
    def url(self) -> str:
        """The base URL, ending in ``/``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/"

    @property
    def pid(self) -> int:
        return self.process.pid

    def connect(self, timeout: float = SOCKET_TIMEOUT) -> socket.socket:
        """A new client socket connected to the server."""
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def connect_tls(self, context: Optional[ssl.SSLContext] = None,
                    timeout: float = SOCKET_TIMEOUT) -> ssl.SSLSocket:
        """A new client connection to an HTTPS server, its handshake done; by default it
        trusts the server's certificate and offers ALPN h2 and http/1.1."""
        context = context or client_context(self.certificate_path)
        sock = self.connect(timeout)
        try:
            return context.wrap_socket(sock, server_hostname="localhost")
        except BaseException:
            sock.close()
            raise

    def stdout(self) -> str:
        return _read_text(self.stdout_path)

    def stderr(self) -> str:
        return _read_text(self.stderr_path)

    def replace_in_settings(self, old: str, new: str) -> None:
        """Replace ``old`` by ``new`` in the settings file (for a reload to read)."""
        with open(self.settings_path) as f:
            text = f.read()
        if old not in text:
            raise AssertionError(f"{old!r} is not in the settings file:\n{text}")
        with open(self.settings_path, "w") as f:
            f.write(text.replace(old, new))

    def access_log(self) -> str:
        return _read_text(self.access_log_path)

    def wait_for_access_log(self, predicate, timeout: float = START_TIMEOUT) -> str:
        """The access log once ``predicate(text)`` holds (lines are written in batches)."""
        wait_until(lambda: predicate(self.access_log()), timeout, 0.05)
        return self.access_log()

    def error_log(self) -> str:
        return _read_text(self.error_log_path)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = START_TIMEOUT) -> int:
        """The exit status, once the process exits within ``timeout``."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"Nex did not exit within {timeout:g} s: "
                                 f"{describe_processes(self.pid)}; its stderr ends "
                                 f"{self.stderr()[-1000:]!r}") from None

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


def children(pid: int) -> Set[int]:
    """The live (not zombie) child processes of ``pid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = process_state(int(entry))
            if stat is not None and stat[1] == pid and stat[0] != "Z":
                found.add(int(entry))
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    stat = process_state(pid)
    return stat is not None and stat[0] != "Z"


def process_state(pid: int) -> Optional[Tuple[str, int]]:
    """(state, parent pid) of ``pid``, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return fields[0], int(fields[1])


def describe_processes(pid: int) -> str:
    """``pid`` and its children, for a failure message: each one's state and where its
    threads wait in the kernel (``futex_wait_queue x3``)."""
    lines = []
    for each in [pid] + sorted(children(pid)):
        state = process_state(each)
        if state is None:
            continue
        waits: Dict[str, int] = {}
        try:
            for thread in os.listdir(f"/proc/{each}/task"):
                with open(f"/proc/{each}/task/{thread}/wchan") as wchan:
                    where = wchan.read()
                where = "running" if where in ("", "0") else where
                waits[where] = waits.get(where, 0) + 1
        except OSError:  # it ended meanwhile
            continue
        threads = ", ".join(f"{where} x{count}" for where, count in sorted(waits.items()))
        lines.append(f"pid {each} ({state[0]}): {threads}")
    return "; ".join(lines) or "none left"


def _read_text(path: str) -> str:
    """The file's text so far; empty while the server has not created it."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_for_line(path: str, process: subprocess.Popen,
                  pattern: "re.Pattern[str]") -> "Optional[re.Match[str]]":
    """``pattern``'s first match in the file at ``path``, waiting while ``process`` runs (at most
    START_TIMEOUT); None if it never appears."""
    wait_until(lambda: pattern.search(_read_text(path)) or process.poll() is not None,
               START_TIMEOUT)
    return pattern.search(_read_text(path))


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


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with a reset (RST) instead of an orderly close: SO_LINGER with a zero
    time-out, the way a dropped network looks to the server."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


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


def capture_log(test) -> "CapturedLog":
    """A Logger for ``test`` writing to temporary files, closed when the test ends."""
    return CapturedLog(test)


class CapturedLog:
    """A :class:`nex.process.log.Logger` over two temporary files; ``access()`` and ``errors()``
    close it and read back what it wrote, so they come after the last line a test logs."""

    def __init__(self, test) -> None:
        from nex.process.log import Logger
        self._access, self._errors = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        test.addCleanup(self._access.close)
        test.addCleanup(self._errors.close)
        self.logger = Logger(self._access.fileno(), self._errors.fileno())
        test.addCleanup(self.logger.close)

    def access(self) -> str:
        """The access log: the logger is closed first, so that it has written everything."""
        self.logger.close()
        return os.pread(self._access.fileno(), 1 << 20, 0).decode("utf-8")

    def errors(self) -> str:
        """The error log: the logger is closed first, so that it has written everything."""
        self.logger.close()
        return os.pread(self._errors.fileno(), 1 << 20, 0).decode("utf-8")


def socketpair_dispatcher(root: str):
    """A Dispatcher serving ``root`` with the shipped templates and any Host, for tests that
    run a Connection over a socket pair."""
    from nex.process.config import Config
    from nex.site.routing import Dispatcher
    from nex.site.hosts import HostValidator
    from nex.files.templates import TemplateSet
    config = Config(document_root=root, error_pages=os.path.join(REPO, "error_pages"),
                    templates=os.path.join(REPO, "other_templates"))
    return Dispatcher(config, TemplateSet.load(config.error_pages, config.templates),
                      HostValidator(("*",)), "Nex test")


def tcp_pair() -> Tuple[socket.socket, socket.socket]:
    """Two connected TCP sockets on loopback: the connecting end, then the accepted one
    (``MSG_WAITALL`` waits on these, unlike on an AF_UNIX socket pair)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        near = socket.create_connection(listener.getsockname(), SOCKET_TIMEOUT)
        far, _ = listener.accept()
    return near, far


@contextlib.contextmanager
def connection_over_socketpair(site, logger, *, tls: Optional["ServerTLS"] = None,
                               readmit=None, newcomers: Optional["Newcomers"] = None,
                               sent: bytes = b"", tcp: bool = False
                               ) -> Iterator[Tuple["Connection", socket.socket]]:
    """A Connection serving ``site`` on a thread of its own over a socket pair (over TCP on
    loopback with ``tcp``), with ``tls``, ``readmit`` and ``newcomers`` as the listener
    would pass them, the client having ``sent`` its first bytes before the thread starts:
    yields it and the client's end; then closes that end and waits for the loop to end,
    failing if it does not."""
    from nex.process.connection import Connection
    if tcp:
        client_end, server_end = tcp_pair()
    else:
        server_end, client_end = socket.socketpair()
    client_end.settimeout(SOCKET_TIMEOUT)
    connection = Connection(server_end, "127.0.0.1", site, logger, threading.Event(), tls,
                            readmit=readmit, newcomers=newcomers)
    client_end.sendall(sent)
    worker = threading.Thread(target=connection.serve)
    worker.start()
    try:
        with client_end:
            yield connection, client_end
    finally:
        worker.join(SOCKET_TIMEOUT)
    if worker.is_alive():
        raise AssertionError("the connection loop did not end")


def quiet_config(test: unittest.TestCase, **values: str) -> "Config":
    """Settings for an in-process server on an ephemeral port that logs nothing, over a
    document root removed when ``test`` ends; ``values`` are further settings."""
    from nex.process.config import load_config
    root = tempfile.mkdtemp(prefix="nex-root-")
    test.addCleanup(shutil.rmtree, root, True)
    return load_config(None, {"document_root": root, "port": 0,
                              "access_log": os.devnull, "error_log": os.devnull,
                              "error_pages": os.path.join(REPO, "error_pages"),
                              "templates": os.path.join(REPO, "other_templates"), **values})


def in_process_server(test: unittest.TestCase, config: "Config", **server_args) -> "Server":
    """The listener (a :class:`~nex.process.listener.Server`) for ``config`` in this process,
    not yet serving, with a logger closed when ``test`` ends; ``server_args`` go to it."""
    from nex.process.assembly import assemble
    from nex.process.listener import Server
    from nex.process.log import Logger
    logger = Logger.from_config(config)
    test.addCleanup(logger.close)
    return Server(config, lambda port: assemble(config, port, on_error=logger.warning),
                  logger, **server_args)


def http_request(server: "NexServer", method: str, target: str, body: Optional[bytes] = None,
                 headers: Optional[Mapping[str, str]] = None
                 ) -> Tuple[int, Dict[str, str], bytes]:
    """One request to ``server`` on a fresh connection, the target sent exactly as given;
    ``(status, headers with lower-case names, body)``, a chunked body decoded."""
    import http.client
    connection = http.client.HTTPConnection(server.host, server.port, timeout=SOCKET_TIMEOUT)
    try:
        connection.request(method, target, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        data = response.read()
        return (response.status, {name.lower(): value for name, value in response.getheaders()},
                data)
    finally:
        connection.close()


def tls_pair(tls: ServerTLS, context: ssl.SSLContext
             ) -> Tuple[ssl.SSLSocket, ssl.SSLSocket]:
    """Both ends of a TLS connection over a socket pair, the handshake done: the server end
    wrapped by ``tls``, the client end by ``context``."""
    server_end, client_end = socket.socketpair()
    server_end.settimeout(SOCKET_TIMEOUT)
    client_end.settimeout(SOCKET_TIMEOUT)
    server = tls.wrap(server_end)
    client = context.wrap_socket(client_end, server_hostname="localhost",
                                 do_handshake_on_connect=False)
    helper = threading.Thread(target=client.do_handshake)
    helper.start()
    try:
        server.do_handshake()
    finally:
        helper.join(SOCKET_TIMEOUT)
    return server, client


def run_server(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``server.py ARGS`` from the repository to its end; its completed process, output
    captured as text."""
    return subprocess.run([sys.executable, os.path.join(REPO, "server.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          stdin=subprocess.DEVNULL)
