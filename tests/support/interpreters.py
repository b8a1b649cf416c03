"""The other Python interpreters on this machine that Nex supports (3.9 and newer).

They are pyenv's versions (``$PYENV_ROOT/versions/*/bin/python``, ``~/.pyenv`` by default)
and ``python3.X`` commands on PATH; one per minor version, the current interpreter's own
excluded.  ``tests/run.sh`` runs the suite again on the oldest and the newest of them, and
``tests/test_versions.py`` compares Nex's answers on those with this interpreter's.

``python -m tests.support.interpreters`` prints the oldest and the newest, one path a line.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from typing import Dict, List, Tuple

#: The oldest Python version Nex supports.
OLDEST_SUPPORTED = (3, 9)
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
    oldest first; the first path found for a version is kept."""
    current = sys.version_info[:2]
    by_version: Dict[Tuple[int, int], str] = {}
    for path in _candidates():
        version = _version(path)
        if version >= OLDEST_SUPPORTED and version != current:
            by_version.setdefault(version, path)
    return sorted(by_version.items())


def oldest_and_newest() -> List[str]:
    """The paths of the oldest and the newest other interpreters (one when only one)."""
    found = [path for _, path in other_interpreters()]
    return list(dict.fromkeys(found[:1] + found[-1:]))


if __name__ == "__main__":
    for path in oldest_and_newest():
        print(path)
