"""The writer: a :class:`Response` onto a socket, file bodies through ``socket.sendfile``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO, List, NamedTuple, Optional, Sequence, Tuple, Union


class FileSlice(NamedTuple):
    """``count`` bytes of the response's file, starting at ``offset``."""

    offset: int
    count: int


BodyPiece = Union[bytes, FileSlice]


@dataclass
class Response:
    """A reply ready to write.

    ``headers`` are the handler's own; the writer adds ``Date``, ``Server``,
    ``Content-Length`` (computed from ``body``) and ``Connection``.  ``body`` is a sequence of
    pieces: bytes, or :class:`FileSlice` ranges of ``file``, an open binary file that the
    writer closes when done.  A handler answers HEAD with the very response it gives GET; the
    writer leaves the body out.  ``close`` asks for the connection to close afterwards.
    """

    status: int
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: Sequence[BodyPiece] = ()
    file: Optional[BinaryIO] = None
    close: bool = False

    @property
    def content_length(self) -> int:
        """The number of body bytes GET would carry."""
        return sum(piece.count if isinstance(piece, FileSlice) else len(piece)
                   for piece in self.body)
