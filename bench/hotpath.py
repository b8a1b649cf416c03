"""The cost of one request on Nex's hot path, measured inside one process.

Runs Nex's real listener and connection code in this process on a loopback port, sends
requests one after another over a single keep-alive connection from this process's main
thread, and reports for each case:

* the server's CPU time per request (user and system time of the whole process, less the
  client thread's own), in microseconds;
* with ``--profile``, the Python function calls per request in the worker thread and the
  functions that take most of its time (``cProfile``);
* with ``--count``, the Python calls and bytecode instructions the worker thread runs per
  request (``sys.settrace``), and the instructions of each stage (:data:`STAGES`: each
  instruction counts for the innermost stage running).  These do not depend on other load on
  the machine, so two versions of Nex can be compared by them where CPU time is too noisy to
  show a change of a few per cent; they leave out the time spent in C (system calls,
  built-ins).  In the running server an instruction costs about 40 ns;
* with ``--machine``, the machine instructions per request, C included, counted by
  valgrind's cachegrind (Debian: ``apt-get install valgrind``): this script runs twice
  under it, with ``--requests`` and five times as many, and the difference is divided by the
  difference in requests, so that start-up drops out.  The count is the whole process's
  (the client thread's few system calls too) and, like ``--count``, does not depend on
  other load, but it also shows what a change costs in C: allocations, string work,
  regular expressions, the interpreter build itself.

Cases: a cached 1 KiB file; a 10 KiB HTML page asked for with a browser's
``Accept-Encoding``; a 404; the listing of a folder of 500 files; a random 64 KiB range of
a 32 MiB file; and, when nginx is installed, the 1 KiB file through the forward proxy
(``proxy``: an absolute-form request relayed to nginx serving the same folder from a process
of its own, so that only the proxy's work is counted; ``proxy-vary``: the same with a counter
in the query and a unique ``X-Request-Id`` from nginx, so that no head repeats, as with
``bench/proxies.py --vary``).  The access log goes to a file, as in
production.

Usage: ``python3 bench/hotpath.py [--requests 2000] [--profile | --count | --machine]
[--cases 1k,404]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import platform
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

import bench  # noqa: E402
from bench import BROWSER_ENCODINGS, BIG_FILE_SIZE, RANGE_SIZE, make_root  # noqa: E402
from nex.process import connection as connection_module  # noqa: E402
from nex.process.assembly import assemble  # noqa: E402
from nex.process.config import load_config  # noqa: E402
from nex.files.filecache import SETTLED_NS  # noqa: E402
from nex.process.log import Logger  # noqa: E402
from nex.process.listener import Server  # noqa: E402

#: The stages ``--count`` reports, by the function (module, name) that runs each; whatever
#: runs outside them is the connection loop, the routing and the glue between stages.
STAGES = {
    ("connection", "_read_request"): "request head: receive, scan, parse",
    ("static", "serve_file"): "file handler",
    ("routing", "error_response"): "error page",
    ("handler", "claims"): "proxy: claim the request",
    ("forwarding", "parse_absolute_target"): "proxy: target and admission",
    ("handler", "_admit"): "proxy: target and admission",
    ("forwarding", "origin_request_head"): "proxy: origin request head",
    ("upstream", "connect"): "proxy: pool (take, check, give back)",
    ("upstream", "release"): "proxy: pool (take, check, give back)",
    ("handler", "_send_request"): "proxy: send to the origin",
    ("upstream", "_receive_head"): "proxy: receive the response head",
    ("upstream", "parse_response_head"): "proxy: parse the response head",
    ("handler", "_relay"): "proxy: client response built",
    ("response", "write_response"): "writer",
    ("connection", "_log"): "access log",
}
_OTHER_STAGE = "connection loop, routing, glue"


def stage_of(frame) -> str:  # type: ignore[no-untyped-def]
    """The innermost stage running ``frame`` (see :data:`STAGES`)."""
    while frame is not None:
        code = frame.f_code
        stage = STAGES.get((os.path.basename(code.co_filename)[:-3], code.co_name))
        if stage is not None:
            return stage
        frame = frame.f_back
    return _OTHER_STAGE


def request(path: str, *headers: str) -> bytes:
    """A GET for ``path`` with ``headers``."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "User-Agent: hotpath", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def random_range() -> bytes:
    """A GET for a random 64 KiB range of the big file."""
    first = random.randrange(BIG_FILE_SIZE - RANGE_SIZE)
    return request("/big.bin", f"Range: bytes={first}-{first + RANGE_SIZE - 1}")


#: The nginx origin of the ``proxy`` cases: its port, set once nginx is started.
_ORIGIN = {"port": 0, "counter": 0}

#: nginx serves the folder again under ``/varied/``, each response with a unique identifier.
_VARIED_ORIGIN = "location /varied/ {{ alias {root}/; add_header X-Request-Id $request_id; }}"


def varied_proxy_request() -> bytes:
    """An absolute-form GET for the 1 KiB file with a query no request before carried."""
    _ORIGIN["counter"] += 1
    return request(f"http://127.0.0.1:{_ORIGIN['port']}/varied/1k.bin?n={_ORIGIN['counter']}")


CASES: Dict[str, Callable[[], bytes]] = {
    "1k": lambda: request("/1k.bin"),
    "html": lambda: request("/page.html", f"Accept-Encoding: {BROWSER_ENCODINGS}"),
    "404": lambda: request("/missing.html"),
    "listing": lambda: request("/folder/"),
    "ranges": random_range,
    "proxy": lambda: request(f"http://127.0.0.1:{_ORIGIN['port']}/1k.bin"),
    "proxy-vary": varied_proxy_request,
}

def start_nginx(root: str, work: str) -> subprocess.Popen:
    """nginx serving ``root`` on a free loopback port (in ``_ORIGIN``), once it accepts."""
    running = bench.start_nginx(root, work, None, _VARIED_ORIGIN.format(root=root))
    _ORIGIN["port"] = int(running.url.rsplit(":", 1)[1].strip("/"))
    return running.process


def read_response(sock: socket.socket, pending: bytearray) -> None:
    """Read one response with a Content-Length body from ``sock``."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(262144)
        if not chunk:
            raise SystemExit("the server closed the connection")
        pending += chunk
    end = pending.index(b"\r\n\r\n") + 4
    head = bytes(pending[:end]).lower()
    at = head.index(b"content-length: ") + len(b"content-length: ")
    length = int(head[at:head.index(b"\r\n", at)])
    while len(pending) < end + length:
        chunk = sock.recv(262144)
        if not chunk:
            raise SystemExit("the server closed the connection")
        pending += chunk
    del pending[:end + length]


def _cpu() -> Tuple[float, float]:
    """``(user, system)`` seconds of this process less those of the calling thread."""
    process = resource.getrusage(resource.RUSAGE_SELF)
    thread = resource.getrusage(resource.RUSAGE_THREAD)
    return process.ru_utime - thread.ru_utime, process.ru_stime - thread.ru_stime


def run_case(port: int, make: Callable[[], bytes], count: int) -> Tuple[float, float]:
    """Send ``count`` requests over one connection; return the server's user and system
    CPU µs per request."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        pending = bytearray()
        for _ in range(50):  # warm caches, the connection and its worker thread
            sock.sendall(make())
            read_response(sock, pending)
        requests = [make() for _ in range(count)]
        user_before, system_before = _cpu()
        for data in requests:
            sock.sendall(data)
            read_response(sock, pending)
        user_after, system_after = _cpu()
    return ((user_after - user_before) / count * 1e6,
            (system_after - system_before) / count * 1e6)


def by_place(stats: pstats.Stats) -> List[Tuple[str, float]]:
    """Own time summed by Nex module, by other Python file, and by built-in (system calls
    and C functions), largest first; waiting for the next request (``recv``) apart."""
    places: Dict[str, float] = {}
    for (filename, _, name), (_, _, own, _, _) in stats.stats.items():  # type: ignore
        if filename == "~":
            place = "built-in " + name.strip("<>{}").replace("built-in method ", "")
        elif os.path.join(REPO, "nex") in filename:
            place = "nex/" + os.path.basename(filename)
        else:
            place = "Python library " + os.path.basename(filename)
        places[place] = places.get(place, 0.0) + own
    return sorted(places.items(), key=lambda item: -item[1])


_INSTRUCTIONS = re.compile(r"I\s+refs:\s+([0-9,]+)")


def machine_instructions(case: str, requests: int) -> float:
    """Machine instructions per request of ``case`` (see ``--machine``)."""
    counts = (requests, 5 * requests)
    runs = [subprocess.Popen(["valgrind", "--tool=cachegrind", "--cache-sim=no",
                              "--cachegrind-out-file=/dev/null", sys.executable,
                              os.path.abspath(__file__), "--cases", case, "--rounds", "1",
                              "--requests", str(count)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for count in counts]
    totals = []
    for run in runs:
        _, errors = run.communicate()
        found = _INSTRUCTIONS.search(errors)
        if run.returncode != 0 or found is None:
            raise SystemExit(f"cachegrind failed:\n{errors[-2000:]}")
        totals.append(int(found.group(1).replace(",", "")))
    return (totals[1] - totals[0]) / (counts[1] - counts[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per case; the cheapest is reported, since other work "
                             "on the machine only ever adds time")
    parser.add_argument("--profile", action="store_true",
                        help="profile the worker thread with cProfile")
    parser.add_argument("--count", action="store_true",
                        help="count the worker thread's Python calls and bytecode instructions")
    parser.add_argument("--machine", action="store_true",
                        help="count machine instructions per request with valgrind")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument("--top", type=int, default=25, help="functions shown per profile")
    options = parser.parse_args()
    if options.machine:
        if shutil.which("valgrind") is None:
            raise SystemExit("--machine needs valgrind (Debian: apt-get install valgrind)")
        print(f"Python {platform.python_version()} at {sys.executable}")
        for name in options.cases.split(","):
            print(f"{name:10} {machine_instructions(name, options.requests) / 1000:8.1f} "
                  "thousand machine instructions per request")
        return 0
    root = make_root()
    # A folder served for a while has settled: what Nex remembers about it is trusted.
    newest = max(os.stat(path).st_ctime_ns for path in (root, os.path.join(root, "folder")))
    time.sleep(max(0.0, (newest + SETTLED_NS - time.time_ns()) / 1e9 + 0.1))
    work = tempfile.mkdtemp(prefix="nex-hotpath-")
    cases = options.cases.split(",")
    origin = None
    proxied = [name for name in cases if name.startswith("proxy")]
    if proxied:
        if shutil.which("nginx") is None:
            print(f"{', '.join(proxied)} left out: nginx is not installed")
            cases = [name for name in cases if name not in proxied]
        else:
            os.chmod(root, 0o755)  # nginx's workers read the files as an unprivileged user
            os.chmod(work, 0o755)
            origin = start_nginx(root, work)
    profiles: List[cProfile.Profile] = []
    if options.profile:
        serve = connection_module.Connection.serve

        def profiled_serve(self) -> None:
            profile = cProfile.Profile()
            profiles.append(profile)
            profile.runcall(serve, self)

        connection_module.Connection.serve = profiled_serve
    counts: List[Dict[str, int]] = []
    if options.count:
        serve = connection_module.Connection.serve

        def counted_serve(self) -> None:
            tally: Dict[str, int] = {"calls": 0}
            counts.append(tally)

            def counting(stage: str):  # type: ignore[no-untyped-def]
                tally.setdefault(stage, 0)

                def count(frame, event, _):  # type: ignore[no-untyped-def]
                    if event == "opcode":
                        tally[stage] += 1
                    return count
                return count

            counters = {stage: counting(stage) for stage in [*STAGES.values(), _OTHER_STAGE]}

            def trace(frame, event, _):  # type: ignore[no-untyped-def]
                tally["calls"] += 1
                frame.f_trace_opcodes = True
                return counters[stage_of(frame)]

            sys.settrace(trace)
            try:
                serve(self)
            finally:
                sys.settrace(None)

        connection_module.Connection.serve = counted_serve
    try:
        config = load_config(None, {"document_root": root, "port": 0,
                                    "access_log": os.path.join(work, "access.log"),
                                    "proxy_enabled": origin is not None,
                                    "proxy_denied_destinations": ""})
        logger = Logger.from_config(config)
        server = Server(config, lambda port: assemble(config, port, on_error=logger.warning),
                        logger)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        for name in cases:
            profiles.clear()
            counts.clear()
            rounds = 1 if options.profile or options.count else options.rounds
            user, system = min((run_case(server.port, CASES[name], options.requests)
                                for _ in range(rounds)), key=sum)
            print(f"{name:8} {user + system:8.1f} µs of server CPU per request "
                  f"({user:.1f} user, {system:.1f} system)")
            if profiles or counts:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:  # the counts are whole once the worker ends
                    with server._lock:
                        if not server._live:
                            break
                    time.sleep(0.01)
            if counts:
                served = options.requests + 50
                tally = counts[0]
                calls = tally.pop("calls")
                print(f"         {calls / served:.1f} Python calls and "
                      f"{sum(tally.values()) / served:.0f} bytecode instructions per request:")
                for stage, instructions in sorted(tally.items(), key=lambda item: -item[1]):
                    if instructions:
                        print(f"         {instructions / served:8.0f}  {stage}")
            if profiles:
                out = io.StringIO()
                stats = pstats.Stats(profiles[0], stream=out)
                served = options.requests + 50
                print(f"         {stats.total_calls / served:.0f} function calls per request "
                      "in the worker thread; its time (under the profiler) by where it is "
                      "spent, µs per request:")
                for place, seconds in by_place(stats):
                    print(f"         {seconds / served * 1e6:8.1f}  {place}")
                stats.sort_stats("tottime").print_stats(options.top)
                print("\n".join(out.getvalue().splitlines()[6:]))
        server.stop()
        thread.join(30)
        logger.close()
    finally:
        if origin is not None:
            origin.terminate()
            origin.wait(15)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
