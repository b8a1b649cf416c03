"""Stand-ins the unit tests give the code: a clock that moves only when told, and a file
replaced the way careful editors save it."""

from __future__ import annotations

import os


class FakeClock:
    """A ``time.monotonic`` stand-in: it answers ``now``, which a test sets or moves."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rewrite(path: str, text: str) -> None:
    """Replace the file at ``path`` with ``text``: a new file renamed over the old one."""
    with open(path + ".new", "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(path + ".new", path)
