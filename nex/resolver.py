"""The resolver: a request's URL path to a safe filesystem :class:`Target`, or an error."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """What a URL path names on disk.

    ``kind`` is ``"file"`` or ``"directory"`` (a directory reaches the handler only when it has
    no index file and listings are on).  ``fs_path`` is the absolute path to open,
    ``url_path`` the decoded, normalised URL path (``"/media/a b.mp4"``, directories end in
    ``/``), and ``stat`` the ``os.stat`` result of ``fs_path``.
    """

    kind: str
    fs_path: str
    url_path: str
    stat: os.stat_result
