"""What a WebDAV request names: a URL path to a :class:`Resource` under GET's rules.

WebDAV names folders with or without their slash and never serves index files, so it does
not use :func:`nex.files.paths.resolve`; it takes the same steps with the resolver's own
pieces on the path routing decoded once (:func:`split_path`: dot segments, no escaped
slashes): :func:`hidden` (dotfiles and upload temporary files are 404), :func:`lookup` (the
symlink policy), and for the members of a folder what a listing shows
(:func:`nex.files.listing.read_folder`: the entries GET would serve and the access checker
lets be read).  A name the symlink policy refuses is 404, the answer a missing one gets.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, List, Optional, Sequence, Tuple

from nex.files.davlocks import Where
from nex.files.listing import read_folder
from nex.files.paths import (Checker, Target, encode_path, entry_path, hidden, lookup,
                             not_found, refuse_along)
from nex.files.upload import UploadFolder
from nex.http.conditional import make_etag
from nex.http.errors import HTTPError

if TYPE_CHECKING:
    from nex.process.config import Config

@dataclass
class Resource:
    """A URL path's ``segments`` and, when it is mapped, its path on disk and ``os.stat``."""

    segments: List[str]
    fs_path: Optional[str] = None
    stat: Optional[os.stat_result] = None

    @property
    def path(self) -> Tuple[str, ...]:
        """The segments as a tuple, as a lock names the URL path it was taken on."""
        return tuple(self.segments)

    @property
    def exists(self) -> bool:
        """Whether something is at this path."""
        return self.stat is not None

    @property
    def collection(self) -> bool:
        """Whether this is a folder (a WebDAV collection)."""
        return self.stat is not None and stat.S_ISDIR(self.stat.st_mode)

    @property
    def url_path(self) -> str:
        """The decoded URL path, a folder's ending in ``/``, as the access checker and
        messages name it."""
        path = "/" + "/".join(self.segments)
        return path + "/" if self.collection and self.segments else path

    @property
    def href(self) -> str:
        """The percent-encoded path a ``207`` body names it by."""
        return encode_path(self.segments, folder=self.collection)

    @property
    def etag(self) -> Optional[str]:
        """A file's strong ETag, as GET gives it; None for a folder or nothing."""
        if self.stat is None or self.collection:
            return None
        return make_etag(self.stat.st_size, self.stat.st_mtime_ns)

    def real_path(self) -> str:
        """The path on disk after symlinks, for the access checker."""
        return os.path.realpath(self.fs_path) if self.fs_path else ""


def locate(segments: Sequence[str], config: Config) -> Where:
    """The resource the decoded URL path ``segments`` names as a lock takes it: its entry's
    place (:func:`entry_path`) and, when that is a link, where it leads, so that a lock on
    a link binds both."""
    entry = entry_path(segments, config)
    # The entry's folders are resolved already: only the entry itself may be a link.
    if not os.path.islink(entry):
        return Where(tuple(segments), (_place(entry),))
    return Where(tuple(segments), (_place(entry), _place(os.path.realpath(entry))))


def locate_entry(segments: Sequence[str], config: Config) -> Where:
    """The entry the decoded URL path ``segments`` names as a request that makes, replaces
    or removes it changes it: the entry alone, a link as a link (what it leads to stays)."""
    return Where(tuple(segments), (_place(entry_path(segments, config)),))


def locate_members(segments: Sequence[str], config: Config) -> Where:
    """The folder the decoded URL path ``segments`` names as a request that adds or removes
    one of its members changes it: where it really is, through any link."""
    real = os.path.realpath(os.path.join(config.document_root, *segments))
    return Where(tuple(segments), (_place(real),))


def _place(path: str) -> Tuple[str, ...]:
    """The absolute ``path`` as a place of :class:`~nex.files.davlocks.Where`."""
    return tuple(part for part in path.split("/") if part)


def find_segments(segments: List[str], config: Config) -> Resource:
    """The resource the decoded URL path ``segments`` name; unmapped when missing or when
    the symlink policy refuses it, 404 when a segment is hidden."""
    if any(hidden(segment, config.dotfiles) for segment in segments):
        raise not_found("/" + "/".join(segments))
    try:
        fs_path, found = lookup(config, segments)
    except HTTPError as error:
        if error.status != 404:
            raise
        return Resource(segments)
    if not (stat.S_ISREG(found.st_mode) or stat.S_ISDIR(found.st_mode)):
        return Resource(segments)
    return Resource(segments, fs_path, found)


def members(folder: Resource, config: Config,
            may: Optional[Checker] = None) -> Iterator[Resource]:
    """The members of ``folder`` its listing shows, in its order: those GET would serve
    and ``may`` (None: anything) lets be read.  403 when the folder cannot be read, 404 when
    it has gone, both raised by this call, before any member is taken."""
    target = Target("directory", folder.fs_path, folder.url_path, folder.stat)
    return (Resource(folder.segments + [name], os.path.join(folder.fs_path, name), found)
            for name, _, found in read_folder(target, config, may))


def parent_folder(resource: Resource, config: Config,
                  may: Optional[Checker] = None) -> UploadFolder:
    """The open folder that holds ``resource``; 409 when it is missing (RFC 4918 §9.3.1,
    §9.7.1: intermediate collections are never made) and ``may`` lets it be written there
    (else :class:`Refused`, as for an upload), 403 for the root itself."""
    refuse_root(resource)
    shown = "/" + "/".join(resource.segments[:-1])
    try:
        return UploadFolder(resource.segments[:-1], config, shown, may)
    except HTTPError as error:
        if error.status != 404:
            raise
        raise HTTPError(409, f"The folder {shown} does not exist.") from None


def refuse_root(resource: Resource) -> None:
    """403 when ``resource`` is the root folder, which is never replaced, moved or removed."""
    if not resource.segments:
        raise HTTPError(403, "The root folder cannot be replaced, moved or removed.")


def must_exist(resource: Resource, config: Config, may: Checker, action: str) -> Resource:
    """``resource``, or when it is unmapped its 404, unless ``may`` refuses ``action`` where
    it would lie (:func:`refuse_along`: a missing name tells no more than a present one)."""
    if not resource.exists:
        refuse_along(resource.segments, resource.url_path, config, may, action)
        raise not_found(resource.url_path)
    return resource
