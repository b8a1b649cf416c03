"""The README and docs/ say what Nex does: their examples run and their settings exist.

Two checks read every Markdown file there is (README.md and docs/*.md), so a guide added later
is checked too:

- Every line of a ``sh`` code block that starts Nex (``python3 server.py …`` or ``nex …``) runs
  in a private folder, with HOME there and paths under /etc/ and /srv/ moved inside it.  What a
  line names is made first (a folder for --root, the shipped settings for --config, a
  certificate for --tls-cert, a users file for --auth-file), and its port becomes 0 and its
  address 127.0.0.1, so it listens on a free loopback port.  A line that serves
  must print its address, answer a request and stop with status 0 on SIGTERM; a line that does
  one thing and exits (--hash-password, --write-config, --check-config, --version, --help)
  must exit with 0.
- Every documented setting (a row of a Markdown table whose first column is ``key``, under a
  heading naming its ``[section]``) is a key of that section in settings.conf, and every key
  of settings.conf is documented so.
"""

from __future__ import annotations

import configparser
import glob
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import unittest
from typing import Dict, Iterator, List, Set, Tuple

from nex.site.passwords import hash_password
from tests.support import (REPO, START_TIMEOUT, OPENSSL, ResponseReader, describe_processes,
                           make_certificate, wait_for_line)

#: Flags that take no value.
SWITCHES = {"--proxy", "--cors", "--zip", "--upload", "--no-upload", "--tls-self-signed",
            "--version", "--help", "-h", "--check-config"}
#: Flags after which Nex does one thing and exits.
ONE_SHOT = {"--hash-password", "--write-config", "--version", "--help", "-h", "--check-config"}
_SERVING = re.compile(r"serving .* at (https?)://127\.0\.0\.1:(\d+)/")
_SECTION_HEADING = re.compile(r"^#+ .*`\[([a-z_]+)\]`")
_KEY_ROW = re.compile(r"^\| `([a-z_]+)` \|")


def markdown_files() -> List[str]:
    """README.md and every Markdown file in docs/."""
    return [os.path.join(REPO, "README.md")] + sorted(
        glob.glob(os.path.join(REPO, "docs", "*.md")))


def shell_blocks(path: str) -> Iterator[Tuple[int, List[str]]]:
    """Each ``sh`` code block of ``path``: its first line number and its logical lines
    (backslash continuations joined)."""
    with open(path, encoding="utf-8") as source:
        lines = source.read().split("\n")
    block: List[str] = []
    start, inside, language = 0, False, ""
    for number, line in enumerate(lines, 1):
        fence = line.strip()
        if fence.startswith("```"):
            if inside:
                if language in ("sh", "bash", "shell"):
                    yield start, _join_continuations(block)
                inside, block = False, []
            else:
                inside, language, start = True, fence[3:].strip(), number + 1
        elif inside:
            block.append(line.strip())


def _join_continuations(lines: List[str]) -> List[str]:
    joined: List[str] = []
    pending = ""
    for line in lines:
        if line.endswith("\\"):
            pending += line[:-1] + " "
        else:
            joined.append(pending + line)
            pending = ""
    return joined


def nex_arguments(line: str) -> List[str]:
    """The arguments of the Nex command in a shell ``line``; [] when it does not start Nex."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return []
    commands: List[List[str]] = [[]]
    for word in words:
        if word in ("|", "&&", ";", "||"):
            commands.append([])
        else:
            commands[-1].append(word)
    for command in commands:
        if command[:2] == ["python3", "server.py"]:
            return _before_redirection(command[2:])
        if command and (command[0] == "nex" or command[0].endswith("/bin/nex")):
            return _before_redirection(command[1:])
    return []


def _before_redirection(arguments: List[str]) -> List[str]:
    for index, word in enumerate(arguments):
        if word.startswith(">") or word.startswith("<"):
            return arguments[:index]
    return arguments


def nex_examples() -> List[Tuple[str, int, str]]:
    """(file, line, command) of every shell line in the docs that starts Nex."""
    found = []
    for path in markdown_files():
        for start, lines in shell_blocks(path):
            for offset, line in enumerate(lines):
                if nex_arguments(line):
                    found.append((os.path.relpath(path, REPO), start + offset, line))
    return found


def flag_values(arguments: List[str]) -> Dict[str, str]:
    """``{flag: value}`` for the flags of ``arguments`` that take a value."""
    values: Dict[str, str] = {}
    for flag, value in zip(arguments, arguments[1:]):
        if flag.startswith("-") and not value.startswith("-"):
            values[flag] = value
    return values


#: The sandbox's ``python3``: runs server.py (or nex-cli.py, the installed ``nex``) with the port
#: made 0 and the address 127.0.0.1, else Python as asked.
_PYTHON3 = f"""#!{sys.executable}
import os, sys
arguments = sys.argv[1:]
if arguments and os.path.basename(arguments[0]) in ("server.py", "nex-cli.py"):
    start = 1
    switches = {{{", ".join(repr(flag) for flag in sorted(SWITCHES))}}}
    rest, port, bind, index = [], False, False, start
    while index < len(arguments):
        word = arguments[index]
        if word in ("--port", "-b", "--bind") and index + 1 < len(arguments):
            port, bind = port or word == "--port", bind or word != "--port"
            rest += [word, "0" if word == "--port" else "127.0.0.1"]
            index += 2
        elif word.startswith("-") and word not in switches and index + 1 < len(arguments):
            rest += arguments[index:index + 2]
            index += 2
        elif word.isdigit():
            rest.append("0")
            port = True
            index += 1
        else:
            rest.append(word)
            index += 1
    arguments = arguments[:start] + rest + ([] if port else ["--port", "0"]) + (
        [] if bind else ["--bind", "127.0.0.1"])
os.execv(sys.executable, [sys.executable] + arguments)
"""


class Sandbox:
    """A private folder holding a copy of server.py and settings.conf, a HOME, and
    ``python3`` and ``nex`` commands that run this checkout's Nex on a free loopback port."""

    def __init__(self, test: unittest.TestCase) -> None:
        self.root = tempfile.mkdtemp(prefix="nex-docs-")
        test.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.home = os.path.join(self.root, "home")
        os.makedirs(os.path.join(self.home, "nex-env", "bin"))
        shutil.copy2(os.path.join(REPO, "server.py"), self.root)
        shutil.copy2(os.path.join(REPO, "settings.conf"), self.root)
        os.makedirs(os.path.join(self.root, "public_html"))
        binaries = os.path.join(self.root, "bin")
        os.makedirs(binaries)
        python3 = os.path.join(binaries, "python3")
        self._command(python3, _PYTHON3)
        with open(os.path.join(binaries, "nex-cli.py"), "w", encoding="utf-8") as out:
            out.write("import sys\nfrom nex.process.cli import main\nsys.exit(main())\n")
        nex = f"#!/bin/sh\nexec {python3} {binaries}/nex-cli.py \"$@\"\n"
        for path in (os.path.join(binaries, "nex"),
                     os.path.join(self.home, "nex-env", "bin", "nex")):
            self._command(path, nex)
        self.env = {**os.environ, "HOME": self.home, "PYTHONPATH": REPO,
                    "PATH": binaries + os.pathsep + os.environ.get("PATH", "")}

    @staticmethod
    def _command(path: str, text: str) -> None:
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)

    def localise(self, line: str) -> str:
        """``line`` with absolute paths under /etc/ and /srv/ moved into the sandbox."""
        return re.sub(r"(?<![\w.~/-])/(etc|srv)/", lambda m: f"{self.root}/{m.group(1)}/", line)

    def path(self, word: str) -> str:
        """A path as the shell in the sandbox reads it."""
        if word.startswith("~/"):
            return os.path.join(self.home, word[2:])
        return os.path.join(self.root, word)

    def prepare(self, command: str, arguments: List[str]) -> None:
        """Make what the Nex ``arguments`` of ``command`` name and the reader would already
        have, and the folder of each file the command writes to."""
        words = shlex.split(command, comments=True)
        for redirection, target in zip(words, words[1:]):
            if redirection in (">", ">>"):
                os.makedirs(os.path.dirname(self.path(target)), exist_ok=True)
        values = flag_values(arguments)
        for flag in ("--root", "-d", "--directory"):
            if flag in values:
                os.makedirs(self.path(values[flag]), exist_ok=True)
        if "--config" in values and not os.path.exists(self.path(values["--config"])):
            config = self.path(values["--config"])
            os.makedirs(os.path.join(os.path.dirname(config), "public_html"), exist_ok=True)
            shutil.copy2(os.path.join(REPO, "settings.conf"), config)
        if "--auth-file" in values and not os.path.exists(self.path(values["--auth-file"])):
            self._write(self.path(values["--auth-file"]), f"alice:{hash_password('s3cret')}\n")
        if "--write-config" in values:
            target = self.path(values["--write-config"])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.exists(target):
                os.remove(target)
        if "--tls-cert" in values:
            certificate, key = self.path(values["--tls-cert"]), self.path(values["--tls-key"])
            if OPENSSL is None:
                raise unittest.SkipTest("the openssl command is not installed")
            folder = tempfile.mkdtemp(dir=self.root)
            made_certificate, made_key = make_certificate(folder)
            for made, wanted in ((made_certificate, certificate), (made_key, key)):
                os.makedirs(os.path.dirname(wanted), exist_ok=True)
                shutil.copy2(made, wanted)

    @staticmethod
    def _write(path: str, text: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)


class ShellExampleTests(unittest.TestCase):
    """Every shell line of the docs that starts Nex runs as written."""

    def test_the_docs_have_examples_that_start_nex(self) -> None:
        files = {path for path, _, _ in nex_examples()}
        self.assertIn("README.md", files)

    def test_every_example_that_starts_nex_runs(self) -> None:
        sandbox = Sandbox(self)
        for path, number, line in nex_examples():
            with self.subTest(file=path, line=number, command=line):
                command = sandbox.localise(line)
                arguments = nex_arguments(command)
                sandbox.prepare(command, arguments)
                if ONE_SHOT & set(arguments):
                    self.assert_runs_and_exits(sandbox, command)
                else:
                    self.assert_serves(sandbox, command)

    def assert_runs_and_exits(self, sandbox: Sandbox, command: str) -> None:
        result = subprocess.run(["bash", "-c", command], cwd=sandbox.root, env=sandbox.env,
                                input="s3cret\n", capture_output=True, text=True,
                                timeout=START_TIMEOUT * 2)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def assert_serves(self, sandbox: Sandbox, command: str) -> None:
        log = os.path.join(sandbox.root, "nex.out")
        with open(log, "wb") as out:
            # Its own process group, so that SIGTERM reaches Nex and not only bash.
            process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=sandbox.root,
                                       env=sandbox.env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            scheme, port = self.wait_until_serving(log, process)
            if scheme == "http":
                with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close"
                                 b"\r\n\r\n")
                    status = ResponseReader(sock).read()[0]
                self.assertLess(status, 500)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                status = process.wait(START_TIMEOUT)
            except subprocess.TimeoutExpired:
                left = describe_processes(process.pid)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                with open(log, encoding="utf-8", errors="replace") as out:
                    self.fail(f"still running {START_TIMEOUT:g} s after SIGTERM: {left}; "
                              f"it printed: {out.read()}")
        with open(log, encoding="utf-8", errors="replace") as out:
            self.assertEqual(status, 0, out.read())

    @staticmethod
    def wait_until_serving(log: str, process: subprocess.Popen) -> Tuple[str, int]:
        match = wait_for_line(log, process, _SERVING)
        if match is None:
            with open(log, encoding="utf-8", errors="replace") as out:
                raise AssertionError(f"Nex did not start: {out.read()}")
        return match.group(1), int(match.group(2))


def documented_settings() -> Dict[Tuple[str, str], str]:
    """``{(section, key): where}`` for every key row of a settings table in the docs."""
    found: Dict[Tuple[str, str], str] = {}
    for path in markdown_files():
        section = ""
        in_key_table = False
        with open(path, encoding="utf-8") as source:
            for number, line in enumerate(source, 1):
                heading = _SECTION_HEADING.match(line)
                if heading:
                    section = heading.group(1)
                if line.startswith("| key |"):
                    in_key_table = True
                elif not line.startswith("|"):
                    in_key_table = False
                row = _KEY_ROW.match(line)
                if in_key_table and row:
                    where = f"{os.path.relpath(path, REPO)} line {number}"
                    found[(section, row.group(1))] = where
    return found


def shipped_settings() -> Set[Tuple[str, str]]:
    """Every (section, key) of settings.conf; the [mime] keys are extensions, not settings."""
    parser = configparser.ConfigParser(comment_prefixes=("#", ";"), interpolation=None)
    parser.read(os.path.join(REPO, "settings.conf"), encoding="utf-8")
    return {(section, key) for section in parser.sections() if section != "mime"
            for key in parser[section]}


class SettingsReferenceTests(unittest.TestCase):
    """The settings the docs describe are the settings Nex has."""

    def test_every_documented_setting_is_in_settings_conf(self) -> None:
        shipped = shipped_settings()
        for (section, key), where in documented_settings().items():
            with self.subTest(setting=f"[{section}] {key}", where=where):
                self.assertTrue((section, key) in shipped,
                                f"{where} documents [{section}] {key}, which settings.conf"
                                " does not have")

    def test_every_key_of_settings_conf_is_documented(self) -> None:
        documented = documented_settings()
        for section, key in sorted(shipped_settings()):
            with self.subTest(setting=f"[{section}] {key}"):
                self.assertTrue((section, key) in documented,
                                f"settings.conf has [{section}] {key}, which no table row in"
                                " README.md or docs/ documents")


if __name__ == "__main__":
    unittest.main()
