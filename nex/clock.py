"""Times of day as text, formatted once per second however many responses need them."""

from __future__ import annotations

import time
from typing import Callable


class SecondText:
    """``format(second)`` for the current second, recomputed only when the second changes.

    Threads may race on the refresh; each writes the same correct value, so no lock.
    """

    __slots__ = ("_format", "_second", "_text")

    def __init__(self, format: Callable[[int], str]) -> None:
        self._format = format
        self._second = -1
        self._text = ""

    def now(self) -> str:
        """The text for the current second."""
        second = int(time.time())
        if second != self._second:
            self._text = self._format(second)
            self._second = second
        return self._text
