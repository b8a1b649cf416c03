"""Uploads a crash left behind: temporary files no upload in progress owns any more.

An upload streams into ``.nex-upload-<random>`` beside its target and renames it into place
(:mod:`nex.files.upload`); when Nex is killed part way (``kill -9``, a power cut) the
temporary file stays.  The resolver and the listings never show such names, and
:func:`remove_stale_uploads`, run once at start-up, deletes them.

A temporary file is stale when it has not been written to for :func:`stale_after` seconds:
an upload in progress writes at least once per ``request_head`` time-out (a body that pauses
longer is dropped and its file removed), so a file untouched for much longer belongs to no
one, not even to another Nex sharing the folder.  The partial data of a resumable upload
(:mod:`nex.files.resumable`, ``.nex-upload-<token>``) is its client's until
``[files] upload_expiry`` has passed since its last byte, so it is spared until then and an
upload resumes after a restart.

A folder WebDAV took from its name to remove it (:func:`nex.files.davnames.cleared`,
``.nex-upload-<random>.gone``) and a crash left part way is removed whole, once nothing has
renamed or changed it for as long as a temporary file's grace: no URL reaches it, and
nothing is to be kept of it.
"""

from __future__ import annotations

import os
import stat
import time
from typing import TYPE_CHECKING, NamedTuple

from nex.files.davnames import CLEARED_NAME, remove_entry
from nex.files.paths import UPLOAD_TEMP_PREFIX
from nex.http.errors import HTTPError
from nex.files.resumable import TOKEN

if TYPE_CHECKING:
    from nex.process.config import Config

#: The least time a temporary file must have been left alone to count as stale, seconds.
MIN_STALE_AFTER = 60.0


def stale_after(config: Config) -> float:
    """Seconds without a write after which an upload's temporary file is stale."""
    return max(MIN_STALE_AFTER, 2 * config.request_head_timeout)


class Removed(NamedTuple):
    """What :func:`remove_stale_uploads` removed: temporary files of uploads, and folders
    WebDAV was removing."""

    uploads: int
    folders: int

    def message(self) -> str:
        """The start-up line that tells what was removed ("" for nothing)."""
        parts = [f"{count} {one if count == 1 else many}" for count, one, many in
                 ((self.uploads, "unfinished upload", "unfinished uploads"),
                  (self.folders, "folder being deleted", "folders being deleted")) if count]
        return f"removed {' and '.join(parts)} left by an earlier run" if parts else ""


def remove_stale_uploads(config: Config) -> Removed:
    """Delete the stale temporary files of uploads under the document root, the partial data
    of resumable uploads among them only once it expired, and the folders WebDAV was
    removing; how many of each.

    The walk follows no symlink, so it stays inside the root; a folder that cannot be read,
    or a file that goes away meanwhile, is passed over.  It keeps a list of the folders
    still to read rather than recursing (as ``os.walk`` does before Python 3.12), so a
    tree nested deeper than the interpreter's recursion limit cannot stop Nex starting.
    """
    now = time.time()
    cutoff = now - stale_after(config)
    resumable_cutoff = min(cutoff, now - config.upload_expiry)
    uploads = removed_folders = 0
    folders = [config.document_root]
    while folders:
        try:
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if CLEARED_NAME.fullmatch(entry.name):
                                if _left_alone(entry, cutoff):
                                    _remove_folder(entry)
                                    removed_folders += 1
                            else:
                                folders.append(entry.path)
                        elif entry.name.startswith(UPLOAD_TEMP_PREFIX) and _stale(
                                entry, resumable_cutoff if TOKEN.fullmatch(
                                    entry.name, len(UPLOAD_TEMP_PREFIX)) else cutoff):
                            os.unlink(entry.path)
                            uploads += 1
                    except OSError:
                        continue
        except OSError:
            continue
    return Removed(uploads, removed_folders)


def _remove_folder(entry: "os.DirEntry[str]") -> None:
    """Remove the folder ``entry`` with all it holds, following no link; OSError when
    something stays."""
    parent = os.open(os.path.dirname(entry.path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        remove_entry(parent, entry.name)
    except HTTPError as error:
        raise OSError(f"{entry.path}: {error}") from None
    finally:
        os.close(parent)


def _left_alone(entry: "os.DirEntry[str]", cutoff: float) -> bool:
    """Whether the folder ``entry`` was last renamed or changed before ``cutoff``: one that
    another Nex on the same root took from its name or empties just now is its to remove
    (or, should that fail, to give its name back).  A rename changes the folder's own ctime,
    not its mtime."""
    found = entry.stat(follow_symlinks=False)
    return max(found.st_mtime, found.st_ctime) < cutoff


def _stale(entry: "os.DirEntry[str]", cutoff: float) -> bool:
    """Whether ``entry`` is a regular file last written before ``cutoff`` (a link is not)."""
    found = entry.stat(follow_symlinks=False)
    return stat.S_ISREG(found.st_mode) and found.st_mtime < cutoff
