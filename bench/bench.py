"""Nex against the standard library's http.server, on the same machine in the same run.

Serves one folder with both servers on loopback and measures, with ``wrk``:

* requests/s for a 1 KiB file over keep-alive connections,
* requests/s for the same file with a new connection per request,
* MB/s for a 16 MiB file,
* with ``--many``: 1,000 concurrent keep-alive connections on the 1 KiB file against Nex,
  reporting requests/s, errors and Nex's peak resident memory,
* with ``--workers``: requests/s for the 1 KiB file over keep-alive connections with
  ``--workers 1`` and ``--workers 2``, and their ratio.  Nothing is pinned to a core, and wrk
  runs on the same machine, so the servers and the load generator share the cores.
* with ``--proxy``: requests/s for the 1 KiB file fetched through a forward proxy over
  keep-alive connections (wrk sends absolute-form request lines from a Lua script), for Nex
  with ``--proxy``, tinyproxy and proxy.py in turn, against the same origin (nginx when
  installed, else a second Nex), and Nex's ratio to each.  With two or more CPUs the proxy
  runs alone on CPU 1 and wrk and the origin on CPU 0 (``taskset``), so each proxy has one
  core.  Each proxy logs as it does by default, to a file.  The proxies take turns for
  three rounds, and each one's median round is reported, with the requests it served per
  second of processor time (its own and its child processes'), which other load on the
  machine disturbs less than requests/s.

Usage: ``python3 bench/bench.py [--duration 10] [--many] [--workers] [--proxy]``.  Needs
``wrk`` (Debian: ``apt-get install wrk``); ``--proxy`` compares with ``tinyproxy`` (Debian:
``apt-get install tinyproxy``, run here in the foreground with a generated configuration)
and proxy.py (``pip install proxy.py``, e.g. in a throw-away virtual environment; give its
``proxy`` command with ``--proxy-py``), leaving out those not installed.  The standard
library server runs as HTTP/1.1 with ``TCP_NODELAY`` on its sockets, so Nagle's algorithm
does not make it look slower than it is.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_STDLIB_SERVER = r"""
import functools, http.server, socket, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def log_message(self, *args):
        pass
handler = functools.partial(Handler, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
print("http://127.0.0.1:%d/" % server.server_address[1], flush=True)
server.serve_forever()
"""


def start(args: list, env=None) -> tuple:
    """Start a server process and return it with the URL it prints first."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, cwd=REPO, env=env)
    line = process.stdout.readline()
    match = re.search(r"http://[^ ]+/", line)
    if not match:
        process.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return process, match.group(0)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wrk(url: str, duration: int, connections: int, threads: int, close: bool = False,
        script: str = "", prefix: tuple = ()) -> dict:
    """Run wrk and return requests/s, transfer MB/s, total requests and error count.

    ``script`` is a Lua file for wrk; ``prefix`` goes before the command (``taskset``)."""
    args = [*prefix, "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s",
            "--timeout", "10s"]
    if close:
        args += ["-H", "Connection: close"]
    if script:
        args += ["-s", script]
    output = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", output)
    scale = {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}[transfer.group(2)]
    total = int(re.search(r"(\d+) requests in", output).group(1))
    errors = closed = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
        closed = int(socket_errors.group(2))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
    return {"rps": rps, "mbps": float(transfer.group(1)) * scale, "requests": total,
            "errors": errors, "closed": closed}


def peak_rss_mb(pid: int) -> float:
    """The peak resident set size of ``pid`` in MB (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_root() -> str:
    root = tempfile.mkdtemp(prefix="nex-bench-")
    with open(os.path.join(root, "1k.bin"), "wb") as f:
        f.write(os.urandom(1024))
    with open(os.path.join(root, "16m.bin"), "wb") as f:
        f.write(os.urandom(16 * 1024 * 1024))
    return root


def nex_args(root: str, settings: str, workers: int = 1) -> list:
    return [sys.executable, os.path.join(REPO, "server.py"), "--config", settings,
            "--port", "0", "--root", root, "--workers", str(workers)]


def write_settings(folder: str, access_log: str, extra: str = "") -> str:
    path = os.path.join(folder, "settings.conf")
    with open(path, "w") as f:
        f.write(f"[server]\nerror_pages = {REPO}/error_pages\ntemplates = {REPO}/other_templates\n"
                f"{extra}\n[logging]\naccess_log = {access_log}\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--many", action="store_true",
                        help="also run 1,000 concurrent keep-alive connections against Nex")
    parser.add_argument("--workers", action="store_true",
                        help="also compare Nex with --workers 1 and --workers 2 (1 KiB, "
                             "keep-alive)")
    parser.add_argument("--proxy", action="store_true",
                        help="also compare Nex --proxy with tinyproxy and proxy.py (1 KiB "
                             "through the proxy, keep-alive)")
    parser.add_argument("--tinyproxy", default=shutil.which("tinyproxy"),
                        help="the tinyproxy command (default: tinyproxy on PATH)")
    parser.add_argument("--proxy-py", default=shutil.which("proxy"),
                        help="proxy.py's proxy command (default: proxy on PATH)")
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    root = make_root()
    workdir = tempfile.mkdtemp(prefix="nex-bench-conf-")
    try:
        settings = write_settings(workdir, os.path.join(workdir, "access.log"))
        servers = {
            "nex": nex_args(root, settings),
            "http.server": [sys.executable, "-c", _STDLIB_SERVER, root],
        }
        # One wrk thread leaves the server a core of its own for the small-file cases; the
        # large file needs two, since a single wrk thread cannot read as fast as either
        # server sends.
        cases = [("1 KiB keep-alive, req/s", "1k.bin", 50, 1, False, "rps"),
                 ("1 KiB new connection each, req/s", "1k.bin", 50, 1, True, "rps"),
                 ("16 MiB file, MB/s", "16m.bin", 4, 2, False, "mbps")]
        results = {}
        for name, args in servers.items():
            process, url = start(args)
            try:
                for label, path, connections, threads, close, key in cases:
                    result = wrk(url + path, options.duration, connections, threads, close)
                    results[(name, label)] = result[key]
            finally:
                stop(process)
        print(f"{'case':36} {'nex':>12} {'http.server':>12} {'ratio':>7}")
        for label, *_ in cases:
            nex, stdlib = results[("nex", label)], results[("http.server", label)]
            print(f"{label:36} {nex:12.1f} {stdlib:12.1f} {nex / stdlib:6.2f}x")
        if options.many:
            many_settings = write_settings(workdir, os.path.join(workdir, "many.log"),
                                           "max_connections = 2048\n"
                                           "max_connections_per_client = 2048\nbacklog = 1024")
            process, url = start(nex_args(root, many_settings))
            try:
                result = wrk(url + "1k.bin", options.duration, 1000, 1)
                rss = peak_rss_mb(process.pid)
            finally:
                stop(process)
            print(f"1,000 keep-alive connections: {result['rps']:.1f} req/s, "
                  f"{result['requests']} requests, {result['errors']} errors, "
                  f"peak RSS {rss:.1f} MB")
        if options.workers:
            compare_workers(root, settings, options.duration)
        if options.proxy:
            compare_proxies(root, workdir, options)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def compare_workers(root: str, settings: str, duration: int) -> None:
    """Print 1 KiB keep-alive requests/s with one and with two worker processes."""
    rates = {}
    errors = {}
    for workers in (1, 2):
        process, url = start(nex_args(root, settings, workers))
        try:
            result = wrk(url + "1k.bin", duration, 50, 1)
        finally:
            stop(process)
        rates[workers], errors[workers] = result["rps"], result["errors"]
    print(f"1 KiB keep-alive, 50 connections: --workers 1 {rates[1]:.1f} req/s, "
          f"--workers 2 {rates[2]:.1f} req/s ({errors[1]} and {errors[2]} errors), "
          f"ratio {rates[2] / rates[1]:.2f}x")


_NGINX_CONFIG = """\
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {folder}/nginx-body;
    proxy_temp_path {folder}/nginx-proxy;
    fastcgi_temp_path {folder}/nginx-fastcgi;
    uwsgi_temp_path {folder}/nginx-uwsgi;
    scgi_temp_path {folder}/nginx-scgi;
    keepalive_requests 1000000;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""
_TINYPROXY_CONFIG = """\
Port {port}
Listen 127.0.0.1
Timeout 600
MaxClients 1024
Allow 127.0.0.1
LogFile "{folder}/tinyproxy.log"
LogLevel Info
"""
#: How many times each proxy is measured.
_PROXY_ROUNDS = 3
#: wrk sends every request in absolute-form, as a client of a forward proxy does.
_ABSOLUTE_FORM = """\
wrk.path = "http://127.0.0.1:{port}/1k.bin"
wrk.headers["Host"] = "127.0.0.1:{port}"
"""


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_on(args: list, port: int, log: str) -> subprocess.Popen:
    """Start a server that listens on ``port`` and wait until it accepts connections."""
    with open(log, "ab") as output:
        process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=REPO)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{args[0]} exited at once; see {log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)
    stop(process)
    raise SystemExit(f"{args[0]} did not listen on port {port}; see {log}")


def cpu_seconds(pid: int) -> float:
    """The processor time (user and system) used so far by ``pid`` and the processes it
    started (proxy.py runs its workers as child processes)."""
    parents = {}
    times = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = int(fields[11]) + int(fields[12])
    family, grown = {pid}, True
    while grown:
        children = {child for child, parent in parents.items() if parent in family}
        grown = not children <= family
        family |= children
    return sum(times.get(member, 0) for member in family) / os.sysconf("SC_CLK_TCK")


def pinned(cpu: int) -> tuple:
    """A command prefix running the command on ``cpu`` alone, when the machine has two CPUs
    and taskset; else nothing."""
    if shutil.which("taskset") and len(os.sched_getaffinity(0)) >= 2:
        return ("taskset", "-c", str(cpu))
    return ()


def compare_proxies(root: str, workdir: str, options: argparse.Namespace) -> None:
    """Print 1 KiB keep-alive requests/s through Nex --proxy, tinyproxy and proxy.py, each
    on one core, to the same origin."""
    os.chmod(root, 0o755)  # nginx's workers read the files as an unprivileged user
    origin_port = free_port()
    if shutil.which("nginx"):
        config = os.path.join(workdir, "nginx.conf")
        with open(config, "w") as f:
            f.write(_NGINX_CONFIG.format(folder=workdir, port=origin_port, root=root))
        origin_name, origin_args = "nginx", ["nginx", "-c", config, "-p", workdir]
    else:
        origin_settings = write_settings(workdir, os.path.join(workdir, "origin.log"))
        origin_name = "Nex"
        origin_args = nex_args(root, origin_settings)
        origin_args[origin_args.index("--port") + 1] = str(origin_port)
    script = os.path.join(workdir, "absolute-form.lua")
    with open(script, "w") as f:
        f.write(_ABSOLUTE_FORM.format(port=origin_port))
    proxies = {}
    nex_settings = write_settings(workdir, os.path.join(workdir, "proxy-access.log"),
                                  "[proxy]\nenabled = yes\ndenied_destinations =\n")
    nex_port = free_port()
    nex = nex_args(root, nex_settings)
    nex[nex.index("--port") + 1] = str(nex_port)
    proxies["nex"] = (nex, nex_port)
    if options.tinyproxy:
        port = free_port()
        config = os.path.join(workdir, "tinyproxy.conf")
        with open(config, "w") as f:
            f.write(_TINYPROXY_CONFIG.format(port=port, folder=workdir))
        proxies["tinyproxy"] = ([options.tinyproxy, "-d", "-c", config], port)
    if options.proxy_py:
        port = free_port()
        proxies["proxy.py"] = ([options.proxy_py, "--hostname", "127.0.0.1", "--port", str(port),
                                "--num-workers", "1", "--num-acceptors", "1",
                                "--log-file", os.path.join(workdir, "proxy-py.log")], port)
    origin = start_on([*pinned(0), *origin_args], origin_port,
                      os.path.join(workdir, "origin.out"))
    runs: dict = {name: [] for name in proxies}
    try:
        # Rounds in turn, so that a burst of load elsewhere on the machine does not fall on
        # one proxy only; each proxy's median round is reported.
        for _ in range(_PROXY_ROUNDS):
            for name, (args, port) in proxies.items():
                process = start_on([*pinned(1), *args], port,
                                   os.path.join(workdir, f"{name}.out"))
                try:
                    before = cpu_seconds(process.pid)
                    result = wrk(f"http://127.0.0.1:{port}/", options.duration, 50, 1,
                                 script=script, prefix=pinned(0))
                    result["per_cpu"] = result["requests"] / max(
                        cpu_seconds(process.pid) - before, 0.01)
                    runs[name].append(result)
                finally:
                    stop(process)
    finally:
        stop(origin)
    results = {name: sorted(rounds, key=lambda result: result["rps"])[len(rounds) // 2]
               for name, rounds in runs.items()}
    cores = "one core each" if pinned(1) else "cores not pinned"
    print(f"1 KiB through the proxy, keep-alive, 50 connections, origin {origin_name} "
          f"({cores}), median of {_PROXY_ROUNDS} rounds:")
    for name, result in results.items():
        # A read error is wrk finding the connection closed: a proxy that closes after
        # every response (no keep-alive) makes one per request.
        print(f"  {name:10} {result['rps']:10.1f} req/s  {result['per_cpu']:10.1f} req per "
              f"CPU-second  ({result['errors']} errors, {result['closed']} of them "
              f"connections closed after a response)")
    nex = results["nex"]
    for name in ("tinyproxy", "proxy.py"):
        if name in results:
            print(f"  nex / {name}: {nex['rps'] / results[name]['rps']:.2f}x req/s, "
                  f"{nex['per_cpu'] / results[name]['per_cpu']:.2f}x req per CPU-second")
        else:
            print(f"  {name} not installed: left out")


if __name__ == "__main__":
    sys.exit(main())
