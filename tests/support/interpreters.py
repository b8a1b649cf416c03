"""The other Python interpreters on this machine that Nex supports (3.9 and newer).

They are pyenv's versions (``$PYENV_ROOT/versions/*/bin/python``, ``~/.pyenv`` by default)
and ``python3.X`` commands on PATH; one per minor version, the current interpreter's own
excluded.  ``tests/run.sh`` runs the suite again on the oldest and the newest of them, and
``tests/test_versions.py`` compares Nex's answers on those with this interpreter's.

``python -m tests.support.interpreters`` prints the oldest and the newest, one path a line.

A free-threaded build (CPython 3.13t and later, built ``--disable-gil``) is looked for
apart: ``python -m tests.support.interpreters --free-threaded`` prints the one that
``NEX_FREE_THREADED_PYTHON`` names, else the newest ``python3.1Xt`` on PATH, or nothing;
``tests/run.sh`` runs the concurrency tests on it.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

#: The oldest Python version Nex supports.
OLDEST_SUPPORTED = (3, 9)
#: The commands free-threaded builds install, newest first.
FREE_THREADED_COMMANDS = ("python3.15t", "python3.14t", "python3.13t")
_VERSION = re.compile(r"Python (3)\.([0-9]+)\.[0-9]+\S*\s*")


def _version(path: str) -> Tuple[int, int]:
    """``(major, minor)`` of the interpreter at ``path``; ``(0, 0)`` when it does not run."""
    try:
        result = subprocess.run([path, "--version"], capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return (0, 0)
    match = _VERSION.fullmatch(result.stdout + result.stderr)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _candidates() -> List[str]:
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(os.path.join(pyenv, "versions", "*", "bin", "python3")))
    for minor in range(OLDEST_SUPPORTED[1], 20):
        command = shutil.which(f"python3.{minor}")
        if command:
            found.append(command)
    return found


def other_interpreters() -> List[Tuple[Tuple[int, int], str]]:
    """``((major, minor), path)`` of each supported interpreter but this one's version,
    oldest first; the first path found for a version is kept.  Free-threaded builds are
    left to :func:`free_threaded`."""
    current = sys.version_info[:2]
    by_version: Dict[Tuple[int, int], str] = {}
    for path in _candidates():
        version = _version(path)
        if (version >= OLDEST_SUPPORTED and version != current and version not in by_version
                and not is_free_threaded(path)):
            by_version[version] = path
    return sorted(by_version.items())


def oldest_and_newest() -> List[str]:
    """The paths of the oldest and the newest other interpreters (one when only one)."""
    found = [path for _, path in other_interpreters()]
    return list(dict.fromkeys(found[:1] + found[-1:]))


def is_free_threaded(path: str) -> bool:
    """Whether the interpreter at ``path`` runs and is a free-threaded build."""
    try:
        result = subprocess.run(
            [path, "-c", "import sysconfig; print(sysconfig.get_config_var('Py_GIL_DISABLED'))"],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.stdout == "1\n"


def free_threaded() -> Optional[str]:
    """The free-threaded interpreter to run the concurrency tests on, or None.

    ``NEX_FREE_THREADED_PYTHON`` names it; a name that is not a free-threaded interpreter
    raises ``ValueError`` rather than letting a run test a GIL build.  Else it is the first
    of :data:`FREE_THREADED_COMMANDS` on PATH that is one.
    """
    named = os.environ.get("NEX_FREE_THREADED_PYTHON")
    if named:
        if not is_free_threaded(named):
            raise ValueError(f"NEX_FREE_THREADED_PYTHON={named} is not a free-threaded Python")
        return named
    for command in FREE_THREADED_COMMANDS:
        path = shutil.which(command)
        if path and is_free_threaded(path):
            return path
    return None


if __name__ == "__main__":
    if sys.argv[1:] == ["--free-threaded"]:
        try:
            found = free_threaded()
        except ValueError as error:
            sys.exit(str(error))
        if found:
            print(found)
    else:
        for path in oldest_and_newest():
            print(path)
