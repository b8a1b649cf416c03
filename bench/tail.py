"""The tail at 1,000 clients: does every keep-alive connection get answered, and how soon?

wrk reports a rate, a latency histogram and a count of "time-outs"; it does not say how
many of its connections never received a byte.  This scenario does.  It opens ``--clients``
(1,000) keep-alive connections to a server on loopback at once, sends a request for a 1 KiB
file on each, and on every connection that is answered asks again at once, so that the
answered connections keep the server as busy as wrk would while the rest wait.  For each
connection it records when its first response byte came, counted from the moment the
client started connecting, and after ``--duration`` seconds (10) it stops by itself and
reports:

* how many connections had their first response byte by 1 s, 5 s and the end of the run;
* the distribution of first-response times (p50, p90, p99, max) over the answered ones;
* time-outs (never answered during the run) and connections refused or reset;
* the responses completed in all (the load the answered connections made);
* listen-queue drops the kernel counted meanwhile (``TcpExtListenDrops``, whole machine);
* the server's peak resident memory (VmHWM of it and its children).

The server runs pinned to CPU 0 with ``taskset`` and this client (one thread, ``epoll``) to
CPU 1, as in ``bench/bench.py``, whose served folder, server settings (the per-client cap
raised to 2,048, ``backlog = 1024``) and measuring helpers it reuses.  ``--base CHECKOUT``
also runs the Nex of another checkout (the code before a change) in the same run, each
server ``--rounds`` times in turn.

``--wrk`` also loads each server with ``wrk -c 1000`` (keep-alive, one thread, 10 s
time-out) for the same duration and counts, from the client side with ``ss -tni``
(``bytes_received``), the connections that have not received a byte at 1 s, 5 s and half a
second before the end, with wrk's rate and time-outs: the issue's own check, with wrk's
heavier load.

Usage::

    python3 bench/tail.py [--clients 1000] [--duration 10] [--rounds 1] [--base CHECKOUT]
                          [--no-pin] [--markdown] [--wrk] [--python PATH]

``--python PATH`` runs Nex on that interpreter (a free-threaded build, say) while this
client stays on the one running it.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import resource
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, NamedTuple, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))

from bench import (CLIENT_CPU, SERVER_CPU, launcher, listen_drops, make_root,  # noqa: E402
                   peak_rss_mib, stop)

#: The marks the answered connections are counted at, in seconds after the start.
MARKS = (1.0, 5.0)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]+)[ \t]*\r\n", re.IGNORECASE)


class TailResult(NamedTuple):
    """What one run of the scenario measured."""

    clients: int
    duration: float
    #: Seconds from the start of connecting to each answered connection's first byte.
    first: List[float]
    failed: int
    responses: int
    listen_drops: int
    peak_rss_mib: float

    def answered_by(self, seconds: float) -> int:
        """How many connections had their first response byte within ``seconds``."""
        return sum(1 for delay in self.first if delay <= seconds)

    def percentile(self, share: float) -> float:
        """The first-response time below which ``share`` of the answered connections lie."""
        if not self.first:
            return float("nan")
        ordered = sorted(self.first)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    @property
    def timeouts(self) -> int:
        """Connections neither answered nor failed by the end of the run."""
        return self.clients - len(self.first) - self.failed


class _Client:
    """One keep-alive connection: its socket, what it has read, and when it was answered."""

    __slots__ = ("sock", "buffer", "needed", "first", "started")

    def __init__(self, sock: socket.socket, started: float) -> None:
        self.sock = sock
        self.buffer = b""
        self.needed = -1  # bytes of the current response, once its head is in
        self.first: Optional[float] = None
        self.started = started


def run_clients(host: str, port: int, path: str, clients: int, duration: float) -> TailResult:
    """Open ``clients`` connections to ``host:port`` at once, ask for ``path`` on each and
    again on each answer, for ``duration`` seconds; what was measured (without the
    server's figures)."""
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n").encode("ascii")
    poller = select.epoll()
    opened: List[_Client] = []
    by_fd: Dict[int, _Client] = {}
    failed = responses = 0
    start = time.monotonic()
    for _ in range(clients):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = time.monotonic()
        if sock.connect_ex((host, port)) not in (0, errno.EINPROGRESS):
            failed += 1
            sock.close()
            continue
        client = by_fd[sock.fileno()] = _Client(sock, started)
        opened.append(client)
        poller.register(sock.fileno(), select.EPOLLOUT)
    deadline = start + duration
    try:
        while by_fd:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for fd, events in poller.poll(min(left, 0.5)):
                client = by_fd[fd]
                if events & select.EPOLLOUT:
                    # Connected (or failed): send the first request, then wait for answers.
                    try:
                        client.sock.send(request)
                        poller.modify(fd, select.EPOLLIN)
                        continue
                    except OSError:
                        failed += 1
                        _drop(poller, by_fd, fd)
                        continue
                try:
                    data = client.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    failed += client.first is None
                    _drop(poller, by_fd, fd)
                    continue
                if client.first is None:
                    client.first = time.monotonic() - client.started
                client.buffer += data
                while True:
                    if client.needed < 0:
                        head_end = client.buffer.find(b"\r\n\r\n")
                        if head_end < 0:
                            break
                        length = _CONTENT_LENGTH.search(client.buffer, 0, head_end + 2)
                        client.needed = head_end + 4 + (int(length.group(1)) if length else 0)
                    if len(client.buffer) < client.needed:
                        break
                    client.buffer = client.buffer[client.needed:]
                    client.needed = -1
                    responses += 1
                    client.sock.send(request)
    finally:
        for client in by_fd.values():
            client.sock.close()
        poller.close()
    first = [client.first for client in opened if client.first is not None]
    return TailResult(clients, duration, first, failed, responses, 0, float("nan"))


def _drop(poller: "select.epoll", by_fd: Dict[int, _Client], fd: int) -> None:
    """Stop watching the connection on ``fd`` and close it."""
    poller.unregister(fd)
    by_fd.pop(fd).sock.close()


def measure(name: str, start, root: str, clients: int, duration: float,
            pin: bool) -> TailResult:
    """Start server ``name`` and run the scenario against it once."""
    running = start(SERVER_CPU if pin else None)
    try:
        match = re.match(r"http://([^:/]+):([0-9]+)/", running.url)
        drops = listen_drops()
        result = run_clients(match.group(1), int(match.group(2)), "/1k.bin", clients,
                             duration)
        return result._replace(listen_drops=listen_drops() - drops,
                               peak_rss_mib=peak_rss_mib(running.process.pid))
    finally:
        stop(running.process)


def unanswered(port: int) -> Tuple[int, int]:
    """From the client side (``ss -tni``): the established connections to ``port`` on
    loopback, and how many of them have not received a byte."""
    listing = subprocess.run(["ss", "-tniH", "state", "established", "dst",
                              f"127.0.0.1:{port}"], capture_output=True, text=True).stdout
    connections = listing.count(f"127.0.0.1:{port}")
    return connections, connections - len(re.findall(r"bytes_received:[1-9]", listing))


def measure_wrk(name: str, start, clients: int, duration: float, pin: bool) -> str:
    """Run ``wrk -c clients`` (keep-alive) against server ``name`` and count, with ``ss``,
    its connections not yet answered at each mark and near the end; one line of figures."""
    running = start(SERVER_CPU if pin else None)
    try:
        port = int(re.search(r":([0-9]+)/", running.url).group(1))
        drops = listen_drops()
        began = time.monotonic()
        args = ["wrk", "-t1", f"-c{clients}", f"-d{duration:g}s", "--timeout", "10s",
                running.url + "1k.bin"]
        load = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        counts = []
        for mark in MARKS + (duration - 0.5,):
            time.sleep(max(0.0, began + mark - time.monotonic()))
            connections, waiting = unanswered(port)
            counts.append(f"{waiting} of {connections} at {mark:g} s")
        output = load.communicate()[0]
        rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
        timeouts = re.search(r"timeout (\d+)", output)
        return (f"wrk {float(rate.group(1)) if rate else float('nan'):,.0f} req/s, "
                f"{timeouts.group(1) if timeouts else 0} time-outs, unanswered "
                f"{', '.join(counts)}, {listen_drops() - drops} listen drops, peak RSS "
                f"{peak_rss_mib(running.process.pid):.0f} MiB")
    finally:
        stop(running.process)


def describe(result: TailResult) -> str:
    """One line of figures for ``result``."""
    marks = ", ".join(f"{result.answered_by(mark)} by {mark:g} s" for mark in MARKS)
    return (f"answered {marks}, {len(result.first)} by {result.duration:g} s of "
            f"{result.clients}; first byte p50 {result.percentile(0.5):.3f} s, "
            f"p90 {result.percentile(0.9):.3f} s, p99 {result.percentile(0.99):.3f} s, "
            f"max {max(result.first, default=float('nan')):.3f} s; "
            f"{result.timeouts} time-outs, {result.failed} failed, "
            f"{result.responses} responses, {result.listen_drops} listen drops, "
            f"peak RSS {result.peak_rss_mib:.0f} MiB")


def markdown(results: Dict[str, List[TailResult]]) -> str:
    """A Markdown table with one row per run."""
    lines = ["| server | run | by 1 s | by 5 s | by end | p50 | p90 | p99 | max | time-outs"
             " | failed | responses | listen drops | peak RSS |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
             " ---: | ---: | ---: |"]
    for name, runs in results.items():
        for number, result in enumerate(runs, 1):
            lines.append(
                f"| {name} | {number} | {result.answered_by(1.0)} | {result.answered_by(5.0)} | "
                f"{len(result.first)} | {result.percentile(0.5) * 1000:.0f} ms | "
                f"{result.percentile(0.9) * 1000:.0f} ms | "
                f"{result.percentile(0.99) * 1000:.0f} ms | "
                f"{max(result.first, default=float('nan')) * 1000:.0f} ms | "
                f"{result.timeouts} | {result.failed} | {result.responses:,} | "
                f"{result.listen_drops} | {result.peak_rss_mib:.0f} MiB |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000, help="connections to open")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each server, in turn")
    parser.add_argument("--base", metavar="CHECKOUT",
                        help="also run the Nex of this checkout (the code before a change)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the server to CPU 0 and this client to CPU 1")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument("--wrk", action="store_true",
                        help="also load each server with wrk and count its unanswered "
                             "connections with ss")
    parser.add_argument("--python", default=sys.executable, metavar="PATH",
                        help="the interpreter Nex runs on (default: this one)")
    options = parser.parse_args()
    pin = not options.no_pin
    if pin:
        if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
            raise SystemExit("pinning needs taskset and two CPUs; use --no-pin")
        os.sched_setaffinity(0, {int(CLIENT_CPU)})  # wrk and ss, started here, too
    if options.wrk and (shutil.which("wrk") is None or shutil.which("ss") is None):
        raise SystemExit("--wrk needs wrk and ss (iproute2)")
    needed = options.clients + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    root = make_root()
    work = tempfile.mkdtemp(prefix="nex-tail-work-")
    os.chmod(work, 0o755)
    results: Dict[str, List[TailResult]] = {}
    try:
        starts = {"nex": launcher("nex", root, work, sys.executable, python=options.python)}
        if options.base:
            starts["base"] = launcher("base", root, work, sys.executable, options.base,
                                      options.python)
        for _ in range(options.rounds):
            for name, start in starts.items():
                result = measure(name, start, root, options.clients, options.duration, pin)
                results.setdefault(name, []).append(result)
                print(f"  {name:5} {describe(result)}", flush=True)
                if options.wrk:
                    line = measure_wrk(name, start, options.clients, options.duration, pin)
                    print(f"  {name:5} {line}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    if options.markdown:
        print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
