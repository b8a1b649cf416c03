"""The memory of concurrent folder downloads: N zips of one large folder at once.

Makes a folder of ``--files`` small files (default 10,000, in 100 sub-folders; with
``--flat`` all in the one folder), starts Nex
(``server.py``) on a loopback port with ``zip_download`` on and ``max_concurrent_zips`` at
``--clients``, and has ``--clients`` (default 8) threads each download the folder as a zip
at the same time, reading slowly so that every archive is in progress at once.  It reports
the server's peak resident memory (``VmHWM`` of the process) before and after, and the
number and size of the archives.

Usage: ``python3 bench/zipmem.py [--files 10000] [--clients 8] [--flat]``.

Measured on 2026-12-07 (2 shared cores): 8 zips of 10,000 files peak at 71 MiB for the
whole process in 100 folders, 77 MiB all in one folder (26 MiB idle); before the folder was
walked lazily and the central directory packed, 119 and 116 MiB.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_URL = re.compile(r"http://127\.0\.0\.1:(\d+)/")


def make_folder(root: str, files: int, flat: bool) -> None:
    """``files`` files of 200 bytes under ``root/big/``, 100 per sub-folder or all in it."""
    for index in range(files):
        folder = os.path.join(root, "big", "" if flat else f"part-{index // 100:03d}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"file-{index:05d}.txt"), "wb") as out:
            out.write(b"%05d " % index * 33)


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (``VmHWM``), in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def download(port: int, sizes: List[int]) -> None:
    """Download the folder as a zip, reading in small pieces with pauses."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.request("GET", "/big/?download=zip")
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"status {response.status}")
    total = 0
    while True:
        piece = response.read(64 * 1024)
        if not piece:
            break
        total += len(piece)
        time.sleep(0.001)
    sizes.append(total)
    connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--flat", action="store_true", help="all files in one folder")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="nex-zipmem-")
    try:
        root = os.path.join(work, "root")
        make_folder(root, args.files, args.flat)
        settings = os.path.join(work, "settings.conf")
        with open(settings, "w", encoding="utf-8") as out:
            out.write(f"[files]\nzip_download = yes\nmax_concurrent_zips = {args.clients}\n")
        stdout_path = os.path.join(work, "stdout")
        with open(stdout_path, "wb") as stdout:
            server = subprocess.Popen(
                [sys.executable, os.path.join(REPO, "server.py"), "--config", settings,
                 "--root", root, "--port", "0", "--bind", "127.0.0.1"],
                stdout=stdout, stderr=subprocess.DEVNULL, cwd=REPO)
        try:
            deadline = time.monotonic() + 30
            port = 0
            while not port and time.monotonic() < deadline:
                with open(stdout_path, encoding="utf-8") as text:
                    match = _URL.search(text.read())
                port = int(match.group(1)) if match else 0
                time.sleep(0.05)
            idle = peak_rss_kib(server.pid)
            sizes: List[int] = []
            threads = [threading.Thread(target=download, args=(port, sizes))
                       for _ in range(args.clients)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
            peak = peak_rss_kib(server.pid)
        finally:
            server.terminate()
            server.wait(30)
        print(f"{args.clients} concurrent zips of a {args.files}-file folder: "
              f"{len(sizes)} done in {elapsed:.1f} s, {sizes[0] / 1024 / 1024:.1f} MiB each")
        print(f"server peak RSS: idle {idle / 1024:.1f} MiB, during {peak / 1024:.1f} MiB")
        return 0 if len(sizes) == args.clients else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
