"""WebDAV's changes of names, each made in the hold of the folder whose names it changes.

MKCOL, DELETE, COPY and MOVE (:mod:`nex.files.davwrite`) make, remove and rename entries as
uploads name their files (:mod:`nex.files.upload`): in the folder's hold
(:meth:`~nex.files.upload.UploadFolder.held`), taken before WebDAV's locks are held still,
with what the change depends on looked at again inside (the ``If`` header, the locks, what
has the name).  A change is then ordered with every upload's naming in that folder, in every
thread and worker: neither lands between the other's second look and its change, so a MOVE
or a DELETE never undoes unseen what a conditional PUT judged, nor the PUT theirs.  A MOVE
holds both its folders, always in the order of their inodes and once when the two are one
(:func:`held_in_order`), so that two MOVEs the opposite ways between two folders wait for
each other instead of each holding the folder the other waits for.

A hold lasts a few system calls, never a walk over a tree.  A folder to be removed (by a
DELETE, or at a Destination a COPY or MOVE replaces) leaves its name in the hold by one
rename to a hidden name in the same folder (:func:`clear`), where no URL reaches it, and is
removed after the hold (:func:`remove_cleared`), each folder below in its own hold, so that
an upload which opened one before it left its name is waited for.  A DELETE whose removal
fails part way gives what is left its name back, as a removal in place would have left it;
a replaced folder that cannot be removed whole stays hidden.  What is left under such a name
(by that, or by a crash) is removed at start-up (:mod:`nex.files.leftovers`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from typing import FrozenSet, Iterator, List, Optional, Sequence, Tuple

from nex.files.oserrors import storage_error
from nex.files.paths import UPLOAD_TEMP_PREFIX
from nex.files.upload import UploadFolder, folder_held
from nex.http.errors import HTTPError

#: The hidden name of a folder or file taken from its name, until it is removed: one an
#: upload's temporary file could have (never served, listed or walked), told apart by its end.
CLEARED_NAME = re.compile(re.escape(UPLOAD_TEMP_PREFIX) + r"[0-9a-f]{32}\.gone")
#: How often the removal of a folder empties it again when something was made in it meanwhile
#: (by a request that opened it before it left its name).
_EMPTYING_TRIES = 3
#: How many levels below the folder removed a removal goes, twice what WebDAV makes
#: (``MAX_FOLDER_DEPTH``) and refuses to walk past: the removal recurses and holds a folder
#: open per level, and a tree made deeper meanwhile, or left so by a crash, must neither
#: exhaust the recursion limit nor keep Nex from starting.
_REMOVAL_DEPTH = 128
#: Where a folder lies: its device and the id of its mount, which alone tells a bind mount of
#: the same file system apart (None where ``/proc/self/fdinfo`` cannot say).
Mount = Tuple[int, Optional[int]]
_MOUNT_ID = re.compile(rb"^mnt_id:\s*([0-9]+)$", re.MULTILINE)
#: Mount points by the URL path segments that reach them.
MountPoints = FrozenSet[Tuple[str, ...]]
#: The octal escapes of blanks and backslashes in ``/proc/self/mountinfo``'s paths.
_MOUNTINFO_ESCAPE = re.compile(rb"\\([0-7]{3})")


@contextlib.contextmanager
def held_in_order(*folders: UploadFolder) -> Iterator[None]:
    """Hold each of ``folders`` (:meth:`UploadFolder.held`) once, however many paths or
    descriptors reach it, in the order of their devices and inodes: requests that hold the
    same two folders take them in the same order, so none waits for the other in turn."""
    unique = {folder.identity: folder for folder in folders}
    with contextlib.ExitStack() as stack:
        for identity in sorted(unique):
            stack.enter_context(unique[identity].held())
        yield


def entry_at(path: str) -> Optional[os.stat_result]:
    """The entry at ``path`` itself (a link as a link), or None when nothing is there."""
    try:
        return os.lstat(path)
    except OSError:
        return None


def entry_in(folder: UploadFolder, name: str) -> Optional[os.stat_result]:
    """The entry ``name`` of ``folder`` itself (a link as a link), or None when there is
    none."""
    try:
        return os.stat(name, dir_fd=folder.fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise storage_error(error) from None


def still_judged(folder: UploadFolder, name: str, judged: Optional[os.stat_result]
                 ) -> Optional[os.stat_result]:
    """What has ``name`` in ``folder`` now (looked at in its hold) of what the request
    judged there, ``judged``: None when nothing has it, or nothing was judged.

    A file replaced meanwhile by another file is taken as it is now, as a run of the two
    requests one after the other would.  A folder in the place of another entry, or another
    entry in the place of a folder, is ``409``: what was judged of it (whether it and all
    below it may go) says nothing of what is there now.
    """
    if judged is None:
        return None
    now = entry_in(folder, name)
    if now is not None and (now.st_dev, now.st_ino) != (judged.st_dev, judged.st_ino) and (
            stat.S_ISDIR(now.st_mode) or stat.S_ISDIR(judged.st_mode)):
        raise HTTPError(409, f"{folder.shown(name)} was replaced while the request was being "
                             "checked; send it again.")
    return now


def left_by_nex(folder: str, name: str) -> bool:
    """Whether the entry ``name`` of the folder at ``folder`` is Nex's own, to go with the
    folder: an upload's temporary file or a resumable upload's data (a file, never a link),
    or a folder taken from its name to be removed (:data:`CLEARED_NAME`).  Hidden as they
    are, they are no client's files, and any client can leave one for as long as
    ``upload_expiry``; counted as hidden files, they would keep the folder from going."""
    if not name.startswith(UPLOAD_TEMP_PREFIX):
        return False
    found = entry_at(os.path.join(folder, name))
    return found is not None and (stat.S_ISREG(found.st_mode) or (
        stat.S_ISDIR(found.st_mode) and CLEARED_NAME.fullmatch(name) is not None))


def clear(folder: UploadFolder, name: str) -> str:
    """In ``folder``'s hold: take the entry ``name`` from its name, renaming it to a hidden
    one, which is returned, to be removed after the hold (:func:`remove_cleared`)."""
    hidden = UPLOAD_TEMP_PREFIX + secrets.token_hex(16) + ".gone"
    try:
        os.rename(name, hidden, src_dir_fd=folder.fd, dst_dir_fd=folder.fd)
    except OSError as error:
        raise storage_error(error) from None
    return hidden


@contextlib.contextmanager
def cleared(folder: UploadFolder, name: str, there: Optional[os.stat_result]
            ) -> Iterator[Optional[str]]:
    """:func:`clear` the entry ``name`` (``there``; None: nothing to clear) for the block to
    put something in its place; the block gets its hidden name (None when nothing was
    cleared).  When the block fails, the entry has its name back if nothing took it."""
    if there is None:
        yield None
        return
    hidden = clear(folder, name)
    try:
        yield hidden
    except BaseException:
        _put_back(folder, hidden, name)
        raise


def remove_cleared(folder: UploadFolder, hidden: str, name: Optional[str] = None) -> None:
    """Remove the entry ``hidden`` of ``folder`` that :func:`clear` took from its name, with
    all it holds, after the hold.  Should that fail part way, what is left gets ``name``
    back (in the hold) when one is given and nothing has it, and the failure is raised (a
    DELETE's); without ``name`` (something took its place) it stays hidden, to be removed
    at start-up, and the request that replaced it stands."""
    try:
        remove_entry(folder.fd, hidden)
    except (HTTPError, OSError):
        if name is None:
            return
        with folder.held():
            _put_back(folder, hidden, name)
        raise


def _put_back(folder: UploadFolder, hidden: str, name: str) -> None:
    """Give the cleared entry ``hidden`` its ``name`` again, if nothing has it (held)."""
    with contextlib.suppress(OSError):
        if entry_in(folder, name) is None:
            os.rename(hidden, name, src_dir_fd=folder.fd, dst_dir_fd=folder.fd)


def mount_of(fd: int) -> Mount:
    """The :data:`Mount` of the folder open as ``fd``."""
    device = os.fstat(fd).st_dev
    try:
        info = os.open(f"/proc/self/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return device, None
    try:
        found = _MOUNT_ID.search(os.read(info, 4096))
    finally:
        os.close(info)
    return device, int(found.group(1)) if found else None


def mount_at(path: str) -> Mount:
    """The :data:`Mount` of the folder at ``path``, a link not followed; ``OSError`` when it
    cannot be opened."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return mount_of(fd)
    finally:
        os.close(fd)


def mounts_below(segments: Sequence[str], real_path: str) -> MountPoints:
    """The URL path segments of what is mounted below the folder whose segments and real path
    these are, a file or a folder, another file system or a bind mount of the same one (from
    Linux's ``/proc/self/mountinfo``; none where it cannot be read).  The folder's entries
    lie below it as their segments say until a link, which a walk does not follow."""
    try:
        with open("/proc/self/mountinfo", "rb") as table:
            # Lines end in LF alone: a CR is a path's own, which the kernel leaves unescaped.
            lines = table.read().split(b"\n")
    except OSError:
        return frozenset()
    prefix = real_path.rstrip("/") + "/"
    found = set()
    for line in lines:
        fields = line.split(b" ")
        if len(fields) > 4:
            point = os.fsdecode(_MOUNTINFO_ESCAPE.sub(
                lambda escape: bytes([int(escape.group(1), 8)]), fields[4]))
            if point.startswith(prefix):
                found.add((*segments, *point[len(prefix):].split("/")))
    return frozenset(found)


def remove_entry(dir_fd: int, name: str) -> None:
    """Remove the entry ``name`` of the folder open as ``dir_fd``: a link itself (never
    what it leads to), a file, or a folder with everything in it; one gone already is
    passed over."""
    try:
        found = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(found.st_mode):
            _remove_tree(name, dir_fd, mount_of(dir_fd))
        else:
            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise HTTPError(409, "Files were written into the folder while it was being "
                                 "removed.") from None
        if error.errno == errno.EXDEV:
            raise HTTPError(409, "Something is mounted inside the folder.") from None
        raise storage_error(error) from None


def _remove_tree(name: str, dir_fd: int, mount: Mount, depth: int = 0) -> None:
    """Remove the folder ``name`` of the folder open as ``dir_fd`` with all it holds, each
    entry through the descriptor of its own folder and no link ever followed (what
    ``shutil.rmtree(dir_fd=)`` does from Python 3.11 on, here on 3.9 too).  ``depth`` levels
    lie above it; what lies more than :data:`_REMOVAL_DEPTH` levels below the top stays,
    and the removal fails as for files written meanwhile (``ENOTEMPTY``).  Nor does it go
    into another mount than ``mount``, that of the folder above the top (``EXDEV``): what is
    mounted at the folder or inside it stays, another file system or a bind mount of the
    same one, as with ``rm --one-file-system`` and more.

    Each folder is emptied and removed in its own hold, after the folders it holds and
    never while holding another: an upload that opened it before it left its name, and
    holds it for its naming, is waited for, and its file goes too; one that comes after
    finds the folder gone.
    """
    if depth > _REMOVAL_DEPTH:
        raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY))
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                 dir_fd=dir_fd)
    try:
        if mount_of(fd) != mount:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        for tries_left in reversed(range(_EMPTYING_TRIES)):
            for folder in _entries(fd, folders=True):
                _remove_tree(folder, fd, mount, depth + 1)
            with folder_held(fd):
                for file in _entries(fd, folders=False):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(file, dir_fd=fd)
                try:
                    if not _entries(fd, folders=True):
                        os.rmdir(name, dir_fd=dir_fd)
                        return
                except OSError as error:  # an upload's temporary file, begun meanwhile
                    if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
            if not tries_left:
                raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY))
    finally:
        os.close(fd)


def _entries(fd: int, folders: bool) -> List[str]:
    """The names of the folders (``folders``), or of everything else, in the folder open as
    ``fd``; a link is never a folder here."""
    with os.scandir(fd) as entries:
        return [entry.name for entry in entries
                if entry.is_dir(follow_symlinks=False) == folders]
