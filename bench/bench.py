"""Nex side by side with other file servers, on one core each, in the same run.

Serves one generated folder on loopback with Nex and with each peer that is installed:

* ``http.server``: the standard library's ``ThreadingHTTPServer`` with
  ``SimpleHTTPRequestHandler``, set to HTTP/1.1, ``TCP_NODELAY`` on its sockets and a listen
  backlog of 1024, so neither Nagle's algorithm nor a queue of 5 makes it look slower than
  it is;
* ``twisted``: ``twisted.web.static.File`` on the default reactor, ``TCP_NODELAY`` set;
* ``aiohttp``: ``web.static`` with ``show_index=True`` (aiohttp sets ``TCP_NODELAY``);
* ``copyparty``: the folder as one read-only volume, quiet (``-q``, its log to a file),
  thumbnails off, one core for downloads (``-j 1``);
* ``base``: Nex from another checkout given with ``--base`` (the code before a change), with
  the same settings, so a change is measured against what it changes in the same run;
* ``floor``: ``bench/floor.py`` on the interpreter Nex runs on, a thread-per-connection
  server cut to its system calls (files from memory, ranges with ``sendfile``, a fixed 404;
  no parsing, checks or log): what this design costs in CPython before Nex does any work.
  It sits out ``html`` and ``listing``, and each goal's line says what ratio it reaches;
* ``nginx``: a generated configuration on a loopback port: one worker process,
  ``sendfile on``, ``tcp_nopush off``, ``tcp_nodelay on``, ``autoindex on``,
  ``keepalive_requests 1000000`` (Nex sets no cap either), ``worker_connections 4096``.

Every server writes its access log to a file in a temporary folder (Nex, nginx, twisted
and aiohttp with their own loggers, ``http.server`` through ``log_message``).  Each server
runs pinned to CPU 0 with ``taskset``, and ``wrk`` (one thread) to CPU 1, so each server
has exactly one core and the load generator another.  The scenarios, with ``wrk``:

* ``1k``: a 1 KiB file, 50 keep-alive connections (requests/s);
* ``1k-new``: the same with ``Connection: close``, a new connection per request;
* ``html``: a 10 KiB HTML page, 50 keep-alive connections, sent with a browser's
  ``Accept-Encoding: gzip, deflate, br`` (no precompressed sidecar exists);
* ``404``: a missing file, 50 keep-alive connections;
* ``listing``: the listing of a folder of 500 files, 50 keep-alive connections;
* ``ranges``: a random 64 KiB range (at any byte offset, picked by a wrk Lua script) of a
  32 MiB file, 50 keep-alive connections (MB/s of response bytes; a server that answers a
  Range with the whole file is left out);
* ``1k-vary``: the 1 KiB file, 50 keep-alive connections, every request with a counter in its
  query (a wrk Lua script), so that no two request heads are the same and a cache of parsed
  heads never hits, as with a mix of many clients and URLs;
* ``many``: the 1 KiB file over 1,000 keep-alive connections from one host (Nex with its
  per-client cap raised to 2,048), reporting socket errors and time-outs, the listen-queue
  drops the kernel counted meanwhile (``TcpExtListenDrops`` in ``/proc/net/netstat``, for
  the whole machine) and the server's peak resident memory (VmHWM of it and its children).

Printed: each figure with the server's CPU time per request (user and system time of the
server's processes during the run, divided by the requests served: steadier than the rate
on a machine others share), its ratio to Nex's (Nex / peer: 2.00x means Nex served twice as
much) and the goals per scenario, met or missed.  ``--rounds N`` measures every server N
times; in each round every server is started (all pinned to CPU 0, idle but the one under
load), and each scenario is run against the servers back to back, in the opposite order
every other round.  Each figure is the server's best round (other work on the machine only
ever slows a run), with the errors, time-outs and drops of all rounds; each ratio, and so
each goal, is the median over the rounds of the ratio within one round, whose two figures
were measured a few seconds apart (on a shared VM the machine's speed drifts by a third
over minutes).  ``--markdown`` prints the table
for README.md as well.  ``--workers`` adds the old comparison of Nex with ``--workers 1``
and ``--workers 2`` (not pinned, since two workers need two cores).

Usage::

    python3 bench/bench.py [--duration 5] [--rounds 1] [--servers nex,nginx]
                           [--scenarios 1k,404] [--peer-python /path/to/python]
                           [--markdown] [--workers]

Needs ``wrk`` and ``taskset`` (Debian: ``apt-get install wrk util-linux``); the peers are
optional (``apt-get install nginx-light``; ``pip install twisted aiohttp`` into the
interpreter given as ``--peer-python``, for instance a throwaway virtual environment: they
are never Nex's dependencies; ``pip install copyparty`` the same way).  With the default 5
seconds per measurement and one round the whole run takes about four minutes.

``--defaults`` measures what a user gets without tuning: the 1 KiB keep-alive scenario with
the default settings not pinned (the server may run on either CPU, wrk stays on CPU 1),
beside ``workers = auto`` not pinned and one process pinned to CPU 0, for Nex and for the
``--base`` checkout when given, in turns, ``--rounds`` times.

``--python PATH`` runs Nex on that interpreter instead of the one running the benchmark.
``--free-threaded PATH`` measures what a free-threaded Python (3.13t and later) gives: the
``--scenarios`` (say ``1k,1k-new``) for Nex on this interpreter (or ``--python``), one
process not pinned and pinned to CPU 0 and ``workers = 2`` not pinned, and on the
free-threaded PATH, one process not pinned and pinned, wrk on CPU 1, in turns, ``--rounds``
times, each with its ratios to the first.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_CPU = "0"
CLIENT_CPU = "1"
BIG_FILE_SIZE = 32 * 1024 * 1024
RANGE_SIZE = 64 * 1024
LISTED_FILES = 500
BROWSER_ENCODINGS = "gzip, deflate, br"

_STDLIB_SERVER = r"""
import functools, http.server, socket, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def log_message(self, format, *args):
        log.write("%s - - [%s] %s\n" % (self.address_string(), self.log_date_time_string(),
                                         format % args))
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
log = open(sys.argv[2], "a", buffering=1)
handler = functools.partial(Handler, directory=sys.argv[1])
server = Server(("127.0.0.1", 0), handler)
print("http://127.0.0.1:%d/" % server.server_address[1], flush=True)
server.serve_forever()
"""

_TWISTED_SERVER = r"""
import sys
from twisted.internet import reactor
from twisted.web import http, server, static
class Channel(http.HTTPChannel):
    def connectionMade(self):
        super().connectionMade()
        self.transport.setTcpNoDelay(True)
site = server.Site(static.File(sys.argv[1]), logPath=sys.argv[2])
site.protocol = Channel
port = reactor.listenTCP(0, site, backlog=1024, interface="127.0.0.1")
print("http://127.0.0.1:%d/" % port.getHost().port, flush=True)
reactor.run()
"""

_AIOHTTP_SERVER = r"""
import asyncio, logging, sys
from aiohttp import web
access = logging.getLogger("aiohttp.access")
access.setLevel(logging.INFO)
access.addHandler(logging.FileHandler(sys.argv[2]))
access.propagate = False
async def main():
    app = web.Application()
    app.router.add_static("/", sys.argv[1], show_index=True)
    runner = web.AppRunner(app, access_log=access)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print("http://127.0.0.1:%d/" % port, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

_NGINX_CONFIG = """\
{user}worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {work}/nginx-access.log;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    fastcgi_temp_path {work}/nginx-fastcgi;
    uwsgi_temp_path {work}/nginx-uwsgi;
    scgi_temp_path {work}/nginx-scgi;
    sendfile on;
    tcp_nopush off;
    tcp_nodelay on;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        root {root};
        autoindex on;{server_extra}
    }}
}}
"""


class Scenario(NamedTuple):
    """One measurement: what wrk asks for, and which of its figures counts."""

    key: str
    label: str
    path: str
    connections: int
    headers: Tuple[str, ...] = ()
    script: str = ""  # a wrk Lua script (a template taking path, last_start and size)
    unit: str = "req/s"


_RANGE_SCRIPT = """\
math.randomseed(os.time())
request = function()
    local first = math.random(0, {last_start})
    return wrk.format("GET", "{path}",
                      {{["Range"] = "bytes=" .. first .. "-" .. (first + {size} - 1)}})
end
"""
#: Every request different (no two heads alike, so no parse cache of a server hits).
_VARY_SCRIPT = """\
counter = 0
request = function()
    counter = counter + 1
    return wrk.format("GET", "{path}?n=" .. counter)
end
"""

SCENARIOS = (
    Scenario("1k", "1 KiB, keep-alive, 50 connections", "1k.bin", 50),
    Scenario("1k-new", "1 KiB, new connection per request", "1k.bin", 50,
             ("Connection: close",)),
    Scenario("html", "10 KiB HTML, keep-alive, Accept-Encoding: gzip, deflate, br",
             "page.html", 50, (f"Accept-Encoding: {BROWSER_ENCODINGS}",)),
    Scenario("404", "404, keep-alive", "missing.html", 50),
    Scenario("listing", "listing of 500 files, keep-alive", "folder/", 50),
    Scenario("ranges", "random 64 KiB ranges of 32 MiB, keep-alive", "big.bin", 50,
             script=_RANGE_SCRIPT, unit="MB/s"),
    Scenario("1k-vary", "1 KiB, keep-alive, every request different (a counter in the query)",
             "1k.bin", 50, script=_VARY_SCRIPT),
    Scenario("many", "1 KiB, 1,000 keep-alive connections", "1k.bin", 1000),
)
SERVERS = ("nex", "base", "floor", "http.server", "twisted", "aiohttp", "copyparty", "nginx")
#: (scenario, peer, least Nex / peer ratio) to reach on one core.
GOALS = (("1k", "http.server", 3.0), ("1k", "nginx", 0.33), ("1k-new", "nginx", 0.3),
         ("1k-new", "twisted", 1.2), ("404", "nginx", 0.25), ("listing", "nginx", 1.0),
         ("ranges", "nginx", 0.4))
#: Scenarios ``bench/floor.py`` does not take part in: it neither compresses nor lists.
FLOOR_SKIPS = frozenset({"html", "listing"})
MAX_PEAK_RSS_MIB = 150
HTML_WITHIN = 0.10


class Result(NamedTuple):
    """What one wrk run measured."""

    rate: float
    requests: int
    socket_errors: int
    timeouts: int
    non_success: int
    listen_drops: int = 0
    peak_rss_mib: float = float("nan")
    cpu_us: float = float("nan")


# --- the served folder ------------------------------------------------------------------------

def make_root() -> str:
    """A folder holding every file the scenarios ask for."""
    root = tempfile.mkdtemp(prefix="nex-bench-")
    with open(os.path.join(root, "1k.bin"), "wb") as f:
        f.write(os.urandom(1024))
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(os.urandom(BIG_FILE_SIZE))
    paragraph = ("<p>Nex serves files over HTTP/1.1: keep-alive, ranges, validators and "
                 "listings, one thread per connection.</p>\n")
    body = paragraph * (10 * 1024 // len(paragraph))
    page = f"<!DOCTYPE html>\n<html><head><title>Page</title></head><body>\n{body}"
    page = page[:10 * 1024 - len("</body></html>\n")] + "</body></html>\n"
    with open(os.path.join(root, "page.html"), "w") as f:
        f.write(page)
    folder = os.path.join(root, "folder")
    os.mkdir(folder)
    for number in range(LISTED_FILES):
        with open(os.path.join(folder, f"file-{number:03d}.txt"), "w") as f:
            f.write("x" * number)
    os.chmod(root, 0o755)
    return root


# --- servers --------------------------------------------------------------------------------

class Running(NamedTuple):
    """A server started for the run: its process and the URL it serves on."""

    process: subprocess.Popen
    url: str


def pinned(args: List[str], cpu: Optional[str]) -> List[str]:
    """``args`` run on ``cpu`` only (None: anywhere)."""
    return args if cpu is None else ["taskset", "-c", cpu] + args


def start_printing(args: List[str], cpu: Optional[str]) -> Running:
    """Start a server that prints its URL first; return it once it has."""
    process = subprocess.Popen(pinned(args, cpu), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    line = process.stdout.readline()
    match = re.search(r"http://[^ ]+/", line)
    if not match:
        process.kill()
        raise SystemExit(f"{args[0]} did not start: {line!r}")
    return Running(process, match.group(0))


def free_port() -> int:
    """A loopback port free at the moment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(process: subprocess.Popen, port: int, what: str) -> Running:
    """``process`` once it accepts connections on ``port``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return Running(process, f"http://127.0.0.1:{port}/")
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{what} did not start")


def start_copyparty(python: str, root: str, work: str, cpu: Optional[str]) -> Running:
    """Start copyparty serving ``root`` read-only on a free loopback port."""
    port = free_port()
    args = [python, "-m", "copyparty", "-i", "127.0.0.1", "-p", str(port), "-v", f"{root}:/:r",
            "-q", "--no-thumb", "-j", "1", "--hist", os.path.join(work, "copyparty-hist"),
            "-lo", os.path.join(work, "copyparty-access.txt")]
    process = subprocess.Popen(pinned(args, cpu), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    return wait_for_port(process, port, "copyparty")


def write_nginx_config(root: str, work: str, port: int, server_extra: str = "") -> str:
    """Write the nginx configuration that serves ``root`` on ``port``, with its files in
    ``work``; its path.  The other benchmarks use it too, so nginx is one peer everywhere.
    ``server_extra`` is more directives for the server block."""
    config = os.path.join(work, "nginx.conf")
    with open(config, "w") as f:
        # As root, the worker would otherwise run as nobody and could not read the folder.
        f.write(_NGINX_CONFIG.format(user="user root;\n" if os.geteuid() == 0 else "",
                                     work=work, port=port, root=root,
                                     server_extra=server_extra and f"\n        {server_extra}"))
    return config


def start_nginx(root: str, work: str, cpu: Optional[str], server_extra: str = "") -> Running:
    """Start nginx with a generated configuration on a free loopback port (``server_extra``:
    more directives for its server block)."""
    port = free_port()
    config = write_nginx_config(root, work, port, server_extra)
    process = subprocess.Popen(pinned(["nginx", "-c", config, "-p", work], cpu),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wait_for_port(process, port, f"nginx (see {work}/nginx-error.log)")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if the server has not ended within 15 seconds."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def has_module(python: str, module: str) -> bool:
    """Whether ``python`` can import ``module``."""
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


def write_settings(folder: str, access_log: str, extra: str = "", name: str = "settings",
                   repo: str = REPO) -> str:
    """A Nex settings file ``name.conf`` with ``repo``'s pages and ``access_log``."""
    path = os.path.join(folder, f"{name}.conf")
    with open(path, "w") as f:
        f.write(f"[server]\nerror_pages = {repo}/error_pages\ntemplates = {repo}/other_templates\n"
                f"{extra}\n[logging]\naccess_log = {access_log}\n")
    return path


def nex_args(root: str, settings: str, workers: Optional[str] = "1",
             repo: str = REPO, python: str = sys.executable) -> List[str]:
    """The command that starts ``repo``'s Nex on ``python`` on a free port (``workers``
    None: as the settings say)."""
    return ([python, os.path.join(repo, "server.py"), "--config", settings,
             "--port", "0", "--root", root]
            + ([] if workers is None else ["--workers", workers]))


#: Nex's settings for the 1,000 connections from one address of the ``many`` scenario.
MANY_CLIENTS = "max_connections = 2048\nmax_connections_per_client = 2048\nbacklog = 1024"


def launcher(name: str, root: str, work: str, peer_python: str, base: Optional[str] = None,
             python: str = sys.executable):
    """A function that starts server ``name`` pinned as asked, or None when not installed;
    Nex runs on ``python``."""
    log = os.path.join(work, f"{name}-access.log")
    if name in ("nex", "base"):
        repo = REPO if name == "nex" else base
        if repo is None:
            return None
        settings = write_settings(work, log, MANY_CLIENTS, name=name, repo=repo)
        return lambda cpu: start_printing(nex_args(root, settings, repo=repo, python=python),
                                          cpu)
    if name == "floor":
        return lambda cpu: start_printing([python, os.path.join(REPO, "bench", "floor.py"),
                                           root], cpu)
    if name == "copyparty":
        if not has_module(peer_python, "copyparty"):
            return None
        return lambda cpu: start_copyparty(peer_python, root, work, cpu)
    if name == "http.server":
        return lambda cpu: start_printing([sys.executable, "-c", _STDLIB_SERVER, root, log], cpu)
    if name in ("twisted", "aiohttp"):
        if not has_module(peer_python, name):
            return None
        script = _TWISTED_SERVER if name == "twisted" else _AIOHTTP_SERVER
        return lambda cpu: start_printing([peer_python, "-c", script, root, log], cpu)
    if name != "nginx":
        raise SystemExit(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
    if shutil.which("nginx") is None:
        return None
    return lambda cpu: start_nginx(root, work, cpu)


# --- measuring ------------------------------------------------------------------------------

def listen_drops() -> int:
    """The kernel's count of connections dropped at a full listen queue (whole machine)."""
    with open("/proc/net/netstat") as netstat:
        lines = [line.split() for line in netstat if line.startswith("TcpExt:")]
    names, values = lines[0], lines[1]
    return int(values[names.index("ListenDrops")])


def family(pid: int) -> List[int]:
    """``pid`` and its child processes (nginx's worker, Nex's worker processes)."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            pids += [int(child) for child in children.read().split()]
    except OSError:
        pass
    return pids


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of ``pid`` and its child processes, all threads, so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for each in family(pid):
        try:
            with open(f"/proc/{each}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def peak_rss_mib(pid: int) -> float:
    """The largest peak resident set (VmHWM) of ``pid`` and its child processes, in MiB."""
    peak = float("nan")
    for each in family(pid):
        try:
            with open(f"/proc/{each}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        kib = int(line.split()[1])
                        peak = kib / 1024 if peak != peak else max(peak, kib / 1024)
        except OSError:
            pass
    return peak


def answers_ranges(url: str) -> bool:
    """Whether the server answers a Range request for the big file with 206."""
    host, port = re.match(r"http://([^:/]+):(\d+)/", url).groups()
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", "/big.bin", headers={"Range": "bytes=0-1"})
        response = connection.getresponse()
        response.read()
        return response.status == 206
    finally:
        connection.close()


class WrkOutput(NamedTuple):
    """The figures of one wrk report."""

    rps: float
    mbps: float
    requests: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int
    non_success: int


def read_wrk(output: str) -> WrkOutput:
    """The figures in wrk's printed report ``output`` (error counts 0 when it prints none)."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", output)
    mbps = float(transfer.group(1)) * {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}[
        transfer.group(2)]
    counts = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)
    connect, read, write, timeouts = (int(n) for n in counts.groups()) if counts else (0,) * 4
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkOutput(rps, mbps, int(re.search(r"(\d+) requests in", output).group(1)), connect,
                     read, write, timeouts, int(non2xx.group(1)) if non2xx else 0)


def wrk(url: str, scenario: Scenario, duration: int, work: str, cpu: Optional[str]) -> Result:
    """Run wrk for ``scenario`` against ``url`` and return what it measured."""
    args = ["wrk", "-t1", f"-c{scenario.connections}", f"-d{duration}s", "--timeout", "10s"]
    for header in scenario.headers:
        args += ["-H", header]
    if scenario.script:
        script = os.path.join(work, f"{scenario.key}.lua")
        with open(script, "w") as f:
            f.write(scenario.script.format(last_start=BIG_FILE_SIZE - RANGE_SIZE,
                                           path="/" + scenario.path, size=RANGE_SIZE))
        args += ["-s", script]
    completed = subprocess.run(pinned(args + [url + scenario.path], cpu), capture_output=True,
                               text=True)
    output = completed.stdout
    if completed.returncode != 0 or "Requests/sec" not in output:
        raise SystemExit(f"wrk failed: {completed.stderr or output}")
    figures = read_wrk(output)
    return Result(figures.mbps if scenario.unit == "MB/s" else figures.rps, figures.requests,
                  figures.connect_errors + figures.read_errors + figures.write_errors,
                  figures.timeouts, figures.non_success)


def measure(name: str, running: Running, scenario: Scenario, duration: int, work: str,
            pin: bool) -> Optional[Result]:
    """Run ``scenario`` against server ``name``; None when it sits the scenario out."""
    if (scenario.key == "ranges" and not answers_ranges(running.url)) or (
            name == "floor" and scenario.key in FLOOR_SKIPS):
        return None
    drops, cpu = listen_drops(), cpu_seconds(running.process.pid)
    result = wrk(running.url, scenario, duration, work, CLIENT_CPU if pin else None)
    result = result._replace(
        listen_drops=listen_drops() - drops,
        peak_rss_mib=peak_rss_mib(running.process.pid),
        cpu_us=(cpu_seconds(running.process.pid) - cpu) / max(result.requests, 1) * 1e6)
    print(f"  {name:12} {scenario.key:8} {describe(scenario, result)}", flush=True)
    return result


#: What one round measured: each server's result of each scenario (None: sat it out).
RoundResults = Dict[str, Dict[str, Optional[Result]]]


def measure_round(starts: Dict[str, Callable[[Optional[str]], Running]], order: List[str],
                  scenarios: List[Scenario], duration: int, work: str, pin: bool
                  ) -> RoundResults:
    """One round: every server started, then each scenario run against them one after the
    other in ``order``, and every server stopped.

    The servers of one scenario are measured back to back (the others wait idle), so that
    the machine's speed, which drifts on a shared VM, moves little between the figures a
    ratio is made of.
    """
    running: Dict[str, Running] = {}
    try:
        for name in order:
            running[name] = starts[name](SERVER_CPU if pin else None)
        results: RoundResults = {name: {} for name in order}
        for scenario in scenarios:
            for name in order:
                results[name][scenario.key] = measure(name, running[name], scenario, duration,
                                                      work, pin)
        return results
    finally:
        for each in running.values():
            stop(each.process)


def ratio(rounds: List[RoundResults], key: str, name: str, peer: str) -> Optional[float]:
    """The median over the rounds of ``name``'s rate over ``peer``'s in scenario ``key``,
    each taken within one round; None when no round measured both."""
    ratios = [measured[name][key].rate / measured[peer][key].rate for measured in rounds
              if measured.get(name, {}).get(key) is not None
              and measured.get(peer, {}).get(key) is not None and measured[peer][key].rate]
    return statistics.median(ratios) if ratios else None


def merge(earlier: Optional[Result], later: Optional[Result]) -> Optional[Result]:
    """Two rounds of one measurement as one: the higher rate and the lower CPU time per
    request (work of others on the machine only ever lowers the one and raises the other),
    but every error, time-out and listen-queue drop of both, and the higher peak memory."""
    if earlier is None or later is None:
        return later if earlier is None else earlier
    best = later if later.rate > earlier.rate else earlier
    return best._replace(socket_errors=earlier.socket_errors + later.socket_errors,
                         timeouts=earlier.timeouts + later.timeouts,
                         non_success=earlier.non_success + later.non_success,
                         listen_drops=earlier.listen_drops + later.listen_drops,
                         peak_rss_mib=max(earlier.peak_rss_mib, later.peak_rss_mib),
                         cpu_us=min(earlier.cpu_us, later.cpu_us))


# --- reporting ------------------------------------------------------------------------------

def describe(scenario: Scenario, result: Result, cpu: bool = True) -> str:
    """One measurement as text, with any errors; ``cpu`` adds the server's CPU time per
    request."""
    text = f"{result.rate:,.1f} {scenario.unit}"
    if cpu:
        text += f", {result.cpu_us:,.0f} µs CPU/request"
    problems = []
    if result.socket_errors:
        problems.append(f"{result.socket_errors} socket errors")
    if result.timeouts:
        problems.append(f"{result.timeouts} time-outs")
    if result.non_success and scenario.key != "404":
        problems.append(f"{result.non_success} non-2xx/3xx")
    return text + (f" ({', '.join(problems)})" if problems else "")


def cell(scenario: Scenario, results: RoundResults, rounds: List[RoundResults], name: str,
         cpu: bool = True) -> str:
    """The table cell of server ``name``: its best round's figure and Nex's ratio to it
    (:func:`ratio`)."""
    result = results[name].get(scenario.key)
    if result is None:
        return "no ranges" if scenario.key == "ranges" else "–"
    text = describe(scenario, result, cpu)
    nex_ratio = None if name == "nex" else ratio(rounds, scenario.key, "nex", name)
    if nex_ratio is not None:
        text += f" ({nex_ratio:.2f}×)"
    return text


def goals(results: RoundResults, rounds: List[RoundResults]) -> List[str]:
    """Each goal as one line: what was asked, what was measured, met or missed."""
    lines = []
    nex = results["nex"]
    for key, peer, least in GOALS:
        nex_ratio = ratio(rounds, key, "nex", peer)
        if nex_ratio is None:
            continue
        floor = ratio(rounds, key, "floor", peer)
        beside = f"; the floor reaches {floor:.2f}×" if floor is not None else ""
        lines.append(f"{key}: Nex / {peer} = {nex_ratio:.2f}× (goal ≥ {least:g}×{beside}) "
                     f"{'met' if nex_ratio >= least else 'MISSED'}")
    if "html" in nex and "1k" in nex:
        share = nex["html"].rate / nex["1k"].rate
        lines.append(f"html: {share:.2f} of Nex's 1 KiB rate (goal ≥ {1 - HTML_WITHIN:.2f}) "
                     f"{'met' if share >= 1 - HTML_WITHIN else 'MISSED'}")
    if "many" in nex:
        many = nex["many"]
        met = (many.timeouts == 0 and many.listen_drops == 0
               and many.peak_rss_mib <= MAX_PEAK_RSS_MIB)
        lines.append(f"many: {many.timeouts} time-outs, {many.socket_errors} socket errors, "
                     f"{many.listen_drops} listen-queue drops, peak RSS "
                     f"{many.peak_rss_mib:.0f} MiB (goal 0, 0, ≤ {MAX_PEAK_RSS_MIB} MiB) "
                     f"{'met' if met else 'MISSED'}")
    return lines


def report(scenarios: List[Scenario], results: RoundResults, rounds: List[RoundResults],
           markdown: bool) -> None:
    """Print the table (plain, and as Markdown when asked) and the goals."""
    names = [name for name in SERVERS if name in results]
    print()
    for scenario in scenarios:
        print(scenario.label)
        for name in names:
            print(f"    {name:12} {cell(scenario, results, rounds, name)}")
    print()
    for line in goals(results, rounds):
        print(line)
    if markdown:
        print()
        print("| scenario | " + " | ".join(names) + " |")
        print("| --- |" + " --- |" * len(names))
        for scenario in scenarios:
            print(f"| {scenario.label} ({scenario.unit}) | "
                  + " | ".join(cell(scenario, results, rounds, name, cpu=False)
                               for name in names)
                  + " |")
        many = results["nex"].get("many")
        if many is not None:
            print(f"\nNex with 1,000 connections: {many.listen_drops} listen-queue drops, "
                  f"peak RSS {many.peak_rss_mib:.0f} MiB")


def compare_workers(root: str, work: str, duration: int, python: str) -> None:
    """Print 1 KiB keep-alive requests/s with one and with two worker processes (unpinned)."""
    settings = write_settings(work, os.path.join(work, "workers.log"))
    rates = {}
    for workers in ("1", "2"):
        running = start_printing(nex_args(root, settings, workers, python=python), None)
        try:
            rates[workers] = wrk(running.url, SCENARIOS[0], duration, work, None)
        finally:
            stop(running.process)
    print(f"1 KiB keep-alive, 50 connections, not pinned: --workers 1 {rates['1'].rate:,.1f} "
          f"req/s, --workers 2 {rates['2'].rate:,.1f} req/s, ratio "
          f"{rates['2'].rate / rates['1'].rate:.2f}×")


#: What a user may run: (label, workers setting or None for the default, server CPU).
CONFIGURATIONS = (("default settings, not pinned", None, None),
                  ("workers = auto, not pinned", "auto", None),
                  ("workers = 1, pinned to one CPU", "1", SERVER_CPU))


def measure_once(args: List[str], cpu: Optional[str], scenario: Scenario, duration: int,
                 work: str) -> Result:
    """Start the server ``args`` on ``cpu`` (None: on any), run ``scenario`` with wrk on
    CPU 1, and stop it; what wrk measured, with the server's CPU time per request."""
    running = start_printing(args, cpu)
    try:
        cpu_before = cpu_seconds(running.process.pid)
        result = wrk(running.url, scenario, duration, work, CLIENT_CPU)
        return result._replace(cpu_us=(cpu_seconds(running.process.pid) - cpu_before)
                               / max(result.requests, 1) * 1e6)
    finally:
        stop(running.process)


def compare_defaults(root: str, work: str, duration: int, rounds: int,
                     base: Optional[str], python: str) -> None:
    """Print the 1 KiB keep-alive rate of each of :data:`CONFIGURATIONS`, for Nex and the
    ``base`` checkout, measured in turns; each figure the best of ``rounds``."""
    repos = [("nex", REPO)] + ([("base", base)] if base else [])
    best: Dict[Tuple[str, str], Result] = {}
    for _ in range(rounds):
        for label, workers, cpu in CONFIGURATIONS:
            for name, repo in repos:
                settings = write_settings(work, os.path.join(work, f"{name}-defaults.log"),
                                          name=f"{name}-defaults", repo=repo)
                result = measure_once(nex_args(root, settings, workers, repo, python), cpu,
                                      SCENARIOS[0], duration, work)
                print(f"  {name:5} {label:32} {describe(SCENARIOS[0], result)}", flush=True)
                best[(name, label)] = merge(best.get((name, label)), result)
    print("\n1 KiB keep-alive, 50 connections, wrk on CPU 1:")
    for label, _, _ in CONFIGURATIONS:
        print(f"    {label:32} " + "   ".join(
            f"{name} {describe(SCENARIOS[0], best[(name, label)])}" for name, _ in repos))


def python_name(python: str) -> str:
    """``3.X`` of the interpreter at ``python``, with a ``t`` for a free-threaded build."""
    return subprocess.run(
        [python, "-c", "import sys, sysconfig; print('%d.%d%s' % (*sys.version_info[:2], "
                       "'t' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''))"],
        capture_output=True, text=True, check=True).stdout.strip()


def describe_python(python: str) -> str:
    """``Python 3.X.Y at PATH`` for the interpreter at ``python``: builds of one version
    differ in speed (a distribution's, optimized with profiles and link-time, against a
    plain build from source), so a report names the one it measured."""
    version = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    return f"Python {version} at {python}"


def compare_free_threaded(root: str, work: str, scenarios: List[Scenario], duration: int,
                          rounds: int, python: str, threaded: str) -> None:
    """Print each of ``scenarios`` for Nex on ``python`` (one process not pinned and pinned
    to one CPU, ``workers = 2`` not pinned) and on the free-threaded ``threaded`` (one
    process, not pinned and pinned), measured in turns; each figure the best of ``rounds``,
    with its ratio to the first configuration's."""
    gil, free = python_name(python), python_name(threaded)
    configurations = ((f"{gil}, workers = 1, not pinned", python, "1", None),
                      (f"{gil}, workers = 1, pinned to one CPU", python, "1", SERVER_CPU),
                      (f"{gil}, workers = 2, not pinned", python, "2", None),
                      (f"{free}, workers = 1, not pinned", threaded, "1", None),
                      (f"{free}, workers = 1, pinned to one CPU", threaded, "1", SERVER_CPU))
    settings = write_settings(work, os.path.join(work, "free-threaded.log"), MANY_CLIENTS,
                              name="free-threaded")
    best: Dict[Tuple[str, str], Result] = {}
    for _ in range(rounds):
        for scenario in scenarios:
            for label, interpreter, workers, cpu in configurations:
                result = measure_once(nex_args(root, settings, workers, python=interpreter),
                                      cpu, scenario, duration, work)
                print(f"  {scenario.key:8} {label:38} {describe(scenario, result)}",
                      flush=True)
                best[(scenario.key, label)] = merge(best.get((scenario.key, label)), result)
    for scenario in scenarios:
        print(f"\n{scenario.label}, wrk on CPU 1:")
        first = best[(scenario.key, configurations[0][0])]
        for label, _, _, _ in configurations:
            result = best[(scenario.key, label)]
            print(f"    {label:38} {describe(scenario, result)} "
                  f"({result.rate / first.rate:.2f}× the rate, "
                  f"{result.cpu_us / first.cpu_us:.2f}× the CPU)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of every server and scenario; each figure is the best "
                             "round's, errors and drops are those of all rounds")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="comma-separated servers to run (those not installed are skipped)")
    parser.add_argument("--scenarios", default=",".join(s.key for s in SCENARIOS),
                        help="comma-separated scenarios to run")
    parser.add_argument("--peer-python", default=sys.executable,
                        help="the interpreter with twisted and aiohttp installed")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin servers to CPU 0 and wrk to CPU 1")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument("--workers", action="store_true",
                        help="also compare Nex with --workers 1 and --workers 2 (unpinned)")
    parser.add_argument("--base", metavar="CHECKOUT",
                        help="also run the Nex of this checkout (the code before a change)")
    parser.add_argument("--defaults", action="store_true",
                        help="only compare the default settings unpinned with workers = auto "
                             "and with one pinned process")
    parser.add_argument("--python", default=sys.executable, metavar="PATH",
                        help="the interpreter Nex runs on (default: this one)")
    parser.add_argument("--free-threaded", metavar="PATH",
                        help="only compare Nex on --python (one process, pinned or not, and "
                             "workers = 2) with Nex on this free-threaded interpreter")
    options = parser.parse_args()
    needed = ["wrk"] + ([] if options.no_pin else ["taskset"])
    for command in needed:
        if shutil.which(command) is None:
            raise SystemExit(f"{command} is needed")
    if not options.no_pin and (os.cpu_count() or 1) < 2:
        raise SystemExit("pinning needs two CPUs; use --no-pin")
    wanted = options.scenarios.split(",")
    scenarios = [scenario for scenario in SCENARIOS if scenario.key in wanted]
    root = make_root()
    work = tempfile.mkdtemp(prefix="nex-bench-work-")
    os.chmod(work, 0o755)
    if options.defaults or options.free_threaded:
        try:
            if options.free_threaded:
                compare_free_threaded(root, work, scenarios, options.duration,
                                      options.rounds, options.python, options.free_threaded)
            else:
                compare_defaults(root, work, options.duration, options.rounds, options.base,
                                 options.python)
        finally:
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
        return 0
    try:
        results: Dict[str, Dict[str, Optional[Result]]] = {}
        starts = {}
        print(f"Nex on {describe_python(options.python)}; the Python peers on "
              f"{describe_python(options.peer_python)}", flush=True)
        for name in ["nex"] + [n for n in options.servers.split(",") if n != "nex"]:
            start = launcher(name, root, work, options.peer_python, options.base,
                             options.python)
            if start is None:
                print(f"  {name}: not installed, skipped", flush=True)
            else:
                starts[name] = start
        rounds: List[RoundResults] = []
        names = list(starts)
        for round_number in range(1, options.rounds + 1):
            if options.rounds > 1:
                print(f"round {round_number} of {options.rounds}", flush=True)
            # Every other round the other way round, so a drift of the machine's speed
            # favours no server.
            order = names if round_number % 2 else names[::-1]
            measured = measure_round(starts, order, scenarios, options.duration, work,
                                     not options.no_pin)
            rounds.append(measured)
            for name, by_scenario in measured.items():
                earlier = results.setdefault(name, {})
                for key, result in by_scenario.items():
                    earlier[key] = merge(earlier.get(key), result)
        report(scenarios, results, rounds, options.markdown)
        if options.workers:
            compare_workers(root, work, options.duration, options.python)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
