"""An uploaded file on its way: a temporary file in its folder, written, synced, then named.

Every upload (a PUT, a form's file, a resumable upload's data, a WebDAV COPY) writes into a
new ``.nex-upload-…`` file that :class:`~nex.files.upload.UploadFolder` creates in the
target folder, and :meth:`PendingFile.commit` gives it its name by one rename (or a hard
link, where nothing may be replaced), in the folder's hold.  A replacement's modification
time is moved on when it is not later than the replaced file's, so that its ETag (size and
time) is its own (:meth:`PendingFile._stand_apart`).  Whatever ends an upload early
discards the temporary file.
"""

from __future__ import annotations

import errno
import os
import time
from typing import TYPE_CHECKING, Optional, Tuple

from nex.files.oserrors import storage_error

if TYPE_CHECKING:
    from nex.files.upload import UploadFolder

#: How a file of an upload is made: new (never one that exists), never through a link.
CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: link(2) fails this way on file systems without hard links.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP})
#: How far a replacement's modification time is moved to differ from the file it replaces:
#: one nanosecond, else the whole second, else two (FAT keeps times in steps of two).
_TIME_STEPS_NS = (1, 1_000_000_000, 2_000_000_000)


class PendingFile:
    """One uploaded file on its way: a temporary file in its folder until :meth:`commit`."""

    def __init__(self, folder: "UploadFolder", name: str, temp_name: str, descriptor: int) -> None:
        self.folder = folder
        self.name = name
        self.temp_name = temp_name
        #: Whether the commit replaced what had the name (its answer: 204, not 201).
        self.replaced = False
        self.size = 0
        self.mtime_ns = 0
        self._identity: Tuple[int, int] = (0, 0)
        self._descriptor: Optional[int] = descriptor
        self._temp_exists = True

    def fileno(self) -> int:
        """The descriptor of the temporary file, until it is finished or kept."""
        return self._descriptor

    def write(self, data: bytes) -> None:
        """Append ``data`` (bytes or a view) to the file."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._descriptor, view):]
        except OSError as error:
            raise storage_error(error) from None

    def finish(self) -> None:
        """The content is complete: sync it to disk and close it (once; again does
        nothing)."""
        if self._descriptor is None:
            return
        descriptor, self._descriptor = self._descriptor, None
        try:
            os.fsync(descriptor)
            status = os.fstat(descriptor)
        except OSError as error:
            raise storage_error(error) from None
        finally:
            os.close(descriptor)
        self.size, self.mtime_ns = status.st_size, status.st_mtime_ns
        self._identity = (status.st_dev, status.st_ino)

    def commit(self, replace: bool) -> None:
        """Give the finished file its name, replacing a file that has it only if ``replace``.

        Raises ``FileExistsError`` when the name is taken and not to be replaced,
        ``IsADirectoryError`` when a folder has it.
        """
        folder = self.folder.fd
        if replace:
            try:
                os.stat(self.name, dir_fd=folder, follow_symlinks=False)
                self.replaced = True
            except FileNotFoundError:
                self.replaced = False
            if self.replaced:
                self._stand_apart()
            os.replace(self.temp_name, self.name, src_dir_fd=folder, dst_dir_fd=folder)
        else:
            self.replaced = False
            try:
                os.link(self.temp_name, self.name, src_dir_fd=folder, dst_dir_fd=folder)
            except OSError as error:
                if error.errno not in _NO_HARD_LINKS:
                    raise
                # Without hard links, claim the name with a file of our own, then move the
                # upload onto the claim: a name taken meanwhile still fails, as above.
                os.close(os.open(self.name, CREATE_NEW, 0o666, dir_fd=folder))
                try:
                    os.rename(self.temp_name, self.name, src_dir_fd=folder, dst_dir_fd=folder)
                except OSError:
                    os.unlink(self.name, dir_fd=folder)
                    raise
            else:
                os.unlink(self.temp_name, dir_fd=folder)
        self._temp_exists = False

    def _stand_apart(self) -> None:
        """Move the finished file's modification time past that of the file it is to
        replace, and to the present at least, when it is not later already: as after two
        writes within a tick of the file system's clock (a few milliseconds; a second or two
        on some file systems), or for a resumable upload whose data came in before the file
        was replaced.

        An ETag is the size and the time: the same ETag would let a client holding the old
        one pass ``If-Match`` and replace the new file unseen, and keep a cache's old copy
        fresh, as an earlier ``Last-Modified`` would answer its ``If-Modified-Since`` with
        ``304``.  Whatever the sizes, each version is later than the one it replaced, so none
        gets the ETag of any earlier one: three versions in one tick would otherwise give
        the third the first one's when the second's size differed.  A link to be replaced
        counts as the file it leads to, whose ETag GET gave.  The first step the file system
        keeps is taken; one that will not set a file's times (a share mounted for another
        user: that needs the owner) leaves it.
        """
        folder = self.folder.fd
        try:
            there = os.stat(self.name, dir_fd=folder)
        except OSError:
            return
        if self.mtime_ns > there.st_mtime_ns:
            return
        for step in _TIME_STEPS_NS:
            wanted = max(there.st_mtime_ns + step, time.time_ns())
            try:
                os.utime(self.temp_name, ns=(wanted, wanted), dir_fd=folder,
                         follow_symlinks=False)
            except OSError:
                return
            self.mtime_ns = os.stat(self.temp_name, dir_fd=folder,
                                    follow_symlinks=False).st_mtime_ns
            if self.mtime_ns > there.st_mtime_ns:
                return

    def withdraw(self) -> None:
        """Remove the committed file again, if its name still holds it."""
        try:
            found = os.stat(self.name, dir_fd=self.folder.fd, follow_symlinks=False)
            if (found.st_dev, found.st_ino) == self._identity:
                os.unlink(self.name, dir_fd=self.folder.fd)
        except FileNotFoundError:
            pass

    def keep(self) -> None:
        """Close the temporary file and leave it there: a resumable upload's partial data."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
        self._temp_exists = False

    def discard(self) -> None:
        """Close and remove the temporary file, if it is still there."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
        if self._temp_exists:
            self._temp_exists = False
            try:
                os.unlink(self.temp_name, dir_fd=self.folder.fd)
            except FileNotFoundError:
                pass
