"""Forward-proxy benchmark: 1 KiB through Nex --proxy, squid, tinyproxy and proxy.py, same origin.

wrk sends absolute-form request lines (a Lua script) over 50 keep-alive connections to each
proxy in turn, every proxy relaying to the same origin (nginx when installed, else a second
Nex).  With two or more CPUs the proxy runs alone on CPU 1 and wrk and the origin on CPU 0
(``taskset``), so each proxy has one core.  Each proxy logs as it does by default, to a file.
The proxies take turns for three rounds, and each one's median round is reported, with the
requests it served per second of processor time (its own and its child processes'), which
other load on the machine disturbs less than requests/s, and Nex's ratio to the others.

``--vary`` makes every exchange different, as a mix of many clients and resources would: each
request carries a counter in its query and nginx adds a unique ``X-Request-Id`` to each
response, so no head repeats and Nex's parse caches (which remember the last heads parsed)
never hit.

Usage: ``python3 bench/proxies.py [--duration 10] [--base CHECKOUT] [--vary]``.  Needs ``wrk``;
compares with squid (Debian: ``apt-get install squid``, run here in the foreground, without a
disk or memory cache, from a configuration, pid file and logs in a temporary folder: the system's
``/etc/squid`` and its service are left alone), ``tinyproxy`` (Debian: ``apt-get install
tinyproxy``, run here in the foreground with a generated configuration) and proxy.py (``pip
install proxy.py``, e.g. in a throw-away virtual environment; give its ``proxy`` command with
``--proxy-py``), leaving out those not installed.
``--base`` adds, as ``base``, the Nex of another checkout (the code before a change) to the
same rounds.  ``relay`` is ``bench/relay.py``, a thread-per-connection relay cut to its system
calls: the floor of the design in Python, for what no change inside Nex's stages can go below.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import (REPO, cpu_seconds, describe_python, free_port, make_root, nex_args,  # noqa: E402
                   read_wrk, stop, write_nginx_config, write_settings)

_TINYPROXY_CONFIG = """\
Port {port}
Listen 127.0.0.1
Timeout 600
MaxClients 1024
Allow 127.0.0.1
LogFile "{folder}/tinyproxy.log"
LogLevel Info
"""
#: squid without a cache, answering loopback clients only; ``pinger_enable off`` spares the
#: ICMP helper process, ``shutdown_lifetime 0`` lets SIGTERM end it at once.
_SQUID_CONFIG = """\
http_port 127.0.0.1:{port}
http_access allow localhost
http_access deny all
cache deny all
cache_mem 0 MB
cache_store_log none
pinger_enable off
shutdown_lifetime 0 seconds
pid_filename {folder}/squid.pid
access_log stdio:{folder}/squid-access.log
cache_log {folder}/squid-cache.log
coredump_dir {folder}
"""
#: How many times each proxy is measured.
_PROXY_ROUNDS = 3
#: wrk sends every request in absolute-form, as a client of a forward proxy does.
_ABSOLUTE_FORM = """\
wrk.path = "http://127.0.0.1:{port}/1k.bin"
wrk.headers["Host"] = "127.0.0.1:{port}"
"""
#: With ``--vary``: a counter in the query, so that no two request heads are the same.
_VARIED = """counter = 0
request = function()
    counter = counter + 1
    return wrk.format(nil, "http://127.0.0.1:{port}/1k.bin?n=" .. counter)
end
"""
#: With ``--vary``: nginx marks each response with a unique identifier.
_VARIED_ORIGIN = "add_header X-Request-Id $request_id;"


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


def pinned(cpu: int) -> tuple:
    """A command prefix running the command on ``cpu`` alone, when the machine has two CPUs
    and taskset; else nothing."""
    if shutil.which("taskset") and len(os.sched_getaffinity(0)) >= 2:
        return ("taskset", "-c", str(cpu))
    return ()


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
    figures = read_wrk(output)
    errors = (figures.connect_errors + figures.read_errors + figures.write_errors
              + figures.timeouts + figures.non_success)
    return {"rps": figures.rps, "mbps": figures.mbps, "requests": figures.requests,
            "errors": errors, "closed": figures.read_errors}



def proxy_py_python(command: Optional[str]) -> str:
    """``, proxy.py on Python …`` for proxy.py's ``command`` (the interpreter its script
    starts), or nothing without proxy.py."""
    if not command:
        return ""
    with open(command, "rb") as script:
        first_line = script.readline().decode("utf-8", "replace")
    if not first_line.startswith("#!"):
        return ""
    return f", proxy.py on {describe_python(first_line[2:].split()[0])}"


def compare_proxies(root: str, workdir: str, options: argparse.Namespace) -> None:
    """Print 1 KiB keep-alive requests/s through Nex --proxy, squid, tinyproxy and proxy.py,
    each on one core, to the same origin."""
    os.chmod(root, 0o755)  # nginx's workers read the files as an unprivileged user
    origin_port = free_port()
    if shutil.which("nginx"):
        config = write_nginx_config(root, workdir, origin_port,
                                    _VARIED_ORIGIN if options.vary else "")
        origin_name, origin_args = "nginx", ["nginx", "-c", config, "-p", workdir]
    else:
        origin_settings = write_settings(workdir, os.path.join(workdir, "origin.log"))
        origin_name = "Nex"
        origin_args = nex_args(root, origin_settings)
        origin_args[origin_args.index("--port") + 1] = str(origin_port)
    script = os.path.join(workdir, "absolute-form.lua")
    with open(script, "w") as f:
        f.write(_ABSOLUTE_FORM.format(port=origin_port))
        if options.vary:
            f.write(_VARIED.format(port=origin_port))
    proxies = {}
    for name, repo in [("nex", REPO)] + ([("base", options.base)] if options.base else []):
        settings = write_settings(workdir, os.path.join(workdir, f"{name}-access.log"),
                                  "[proxy]\nenabled = yes\ndenied_destinations =\n",
                                  name=name, repo=repo)
        port = free_port()
        args = nex_args(root, settings, repo=repo)
        args[args.index("--port") + 1] = str(port)
        proxies[name] = (args, port)
    if options.squid:
        port = free_port()
        config = os.path.join(workdir, "squid.conf")
        with open(config, "w") as f:
            f.write(_SQUID_CONFIG.format(port=port, folder=workdir))
        # squid, started as root, drops to its own user before it writes its logs.
        os.chmod(workdir, 0o777)
        proxies["squid"] = ([options.squid, "-N", "-f", config], port)
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
    port = free_port()
    proxies["relay"] = ([sys.executable, os.path.join(REPO, "bench", "relay.py"), str(port),
                         str(origin_port)], port)
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
    varied = ", every request and response different" if options.vary else ""
    print(f"1 KiB through the proxy, keep-alive, 50 connections{varied}, origin {origin_name} "
          f"({cores}), median of {_PROXY_ROUNDS} rounds; Nex on "
          f"{describe_python(sys.executable)}{proxy_py_python(options.proxy_py)}:")
    for name, result in results.items():
        # A read error is wrk finding the connection closed: a proxy that closes after
        # every response (no keep-alive) makes one per request.
        print(f"  {name:10} {result['rps']:10.1f} req/s  {result['per_cpu']:10.1f} req per "
              f"CPU-second  ({result['errors']} errors, {result['closed']} of them "
              f"connections closed after a response)")
    nex = results["nex"]
    for name in ("base", "relay", "squid", "tinyproxy", "proxy.py"):
        if name in results:
            print(f"  nex / {name}: {nex['rps'] / results[name]['rps']:.2f}x req/s, "
                  f"{nex['per_cpu'] / results[name]['per_cpu']:.2f}x req per CPU-second")
        elif name != "base":
            print(f"  {name} not installed: left out")



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--squid", default=shutil.which("squid") or (
        "/usr/sbin/squid" if os.access("/usr/sbin/squid", os.X_OK) else None),
                        help="the squid command (default: squid on PATH or in /usr/sbin)")
    parser.add_argument("--base", metavar="CHECKOUT",
                        help="also measure the Nex of this checkout (the code before a change)")
    parser.add_argument("--tinyproxy", default=shutil.which("tinyproxy"),
                        help="the tinyproxy command (default: tinyproxy on PATH)")
    parser.add_argument("--vary", action="store_true",
                        help="make every request and response head different")
    parser.add_argument("--proxy-py", default=shutil.which("proxy"),
                        help="proxy.py's proxy command (default: proxy on PATH)")
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    root = make_root()
    workdir = tempfile.mkdtemp(prefix="nex-bench-proxy-")
    try:
        compare_proxies(root, workdir, options)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
