"""WebDAV's methods that change the namespace (RFC 4918 §9.3, §9.6, §9.8, §9.9): MKCOL,
DELETE, COPY and MOVE.

Each takes the steps a PUT takes (:mod:`nex.files.upload`): names GET would serve, the
target's folder opened and worked in by descriptor, a file that exists replaced only with
``upload_overwrite``, ``max_upload_size`` bounding what a COPY writes, and the access
checker asked for every entry touched: ``write`` for the target, a COPY or MOVE's
Destination and each entry a DELETE, MOVE or replacement removes, ``read`` for what a COPY
reads.  A refused target or Destination is :class:`nex.files.paths.Refused` (routing asks
an anonymous client to log in).  DELETE needs ``[files] allow_delete`` and MOVE
``[files] allow_rename``.  A folder is deleted (or replaced) only when every entry below it
may be: a folder holding entries the checker refuses, or hidden ones (which a client cannot
see, so cannot mean to delete), is answered ``207`` naming each refusal, and nothing goes.
Folders nest at most :data:`MAX_FOLDER_DEPTH` levels below the root for MKCOL, COPY and MOVE
to make them there (``403`` beyond), so that every walk over a tree stays bounded; a tree
made deeper by other means is refused part by part, never walked past that depth.
A COPY of a folder in which a member fails is answered ``207`` naming the failure where the
copy would have been (RFC 4918 §9.8.3).  What lies below a folder that failed is skipped,
and the copy goes on with the other members, unless every later one would fail alike: the
size bound used up, a lock taken on the destination meanwhile, a full disk.
Every name is made, removed or renamed in the hold of its folder, with the ``If`` header,
the locks and what has the name looked at again there (:mod:`nex.files.davnames`), so that
it is ordered with every upload's naming in that folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from typing import (TYPE_CHECKING, ContextManager, Iterator, List, NamedTuple, Optional,
                    Sequence, Set, Tuple, Union)
from urllib.parse import urlsplit

from nex.files.davlocks import HeldLocks, LockTable, Where
from nex.files.davnames import (MountPoints, clear, cleared, entry_at, entry_in, held_in_order,
                                left_by_nex, mount_at, mount_of, mounts_below, remove_cleared,
                                still_judged)
from nex.files.davresource import (Resource, find_segments, locate, locate_entry,
                                   locate_members, members, must_exist, parent_folder,
                                   refuse_root)
from nex.files.davxml import XML_TYPE, multistatus, status_response
from nex.files.listing import entry_order
from nex.files.paths import (Checker, Refused, Target, encode_path, entry_path, not_found,
                             refuse_along, servable_entry, split_path)
from nex.files.oserrors import storage_error
from nex.files.upload import Hold, UploadFolder, store
from nex.http.body import BodyReader
from nex.http.errors import HTTPError, reason_phrase, size_limit
from nex.http.request import Request
from nex.http.response import Response

if TYPE_CHECKING:
    from nex.process.config import Config

_COPY_PIECE = 1024 * 1024
#: The most URL path segments a folder made by MKCOL, COPY or MOVE may have.  Real trees stay
#: far shallower; the walks over a tree (COPY, MOVE, DELETE) recurse and hold a folder open
#: per level, so this keeps them well within the interpreter's recursion limit and the
#: descriptors one request may hold.
MAX_FOLDER_DEPTH = 64
#: Failures of a member that every later member would meet too (the size bound used up, a
#: lock on the destination, a full disk): a folder's copy stops at the first, so that its
#: 207 names what failed rather than each member left.
_ENDS_THE_COPY = frozenset({413, 423, 507})


class _CopyEnded(Exception):
    """A folder's copy stopped at a failure named in its 207 (see :data:`_ENDS_THE_COPY`)."""


def mkcol(request: Request, body: Optional[BodyReader], target: Resource, config: Config,
          locks: LockTable, may: Checker) -> Response:
    """MKCOL ``target``: make one folder; 201, 405 where something exists, 409 without its
    parent, 415 for a body (Nex knows no MKCOL body)."""
    if body is not None and (body.length is None or body.length > 0):
        raise HTTPError(415, "MKCOL takes no body here.")
    may_write(target, may)  # before a 405 or a 409 tells what is there
    if target.exists:
        raise HTTPError(405, f"{target.url_path} exists already.",
                        headers=[("Allow", "OPTIONS, PROPFIND, DELETE, COPY, MOVE")])
    folder = parent_folder(target, config, may)
    try:
        may_write(target, may, folder)
        name = target.segments[-1]
        with folder.held(), _checked_again(request, locks, config, target,
                                           changes(target.segments, config, False)):
            folder.check(name)
            _check_depth(target.segments)
            try:
                os.mkdir(name, dir_fd=folder.fd)
            except FileExistsError:
                raise HTTPError(405, f"{target.url_path} exists already.") from None
            except OSError as error:
                raise storage_error(error) from None
        folder.sync()
    finally:
        folder.close()
    return Response(201, [("Location", target.href + "/")])


def delete(request: Request, target: Resource, config: Config, locks: LockTable,
           may: Checker) -> Response:
    """DELETE ``target``, a file, or a folder with everything below it: 204, or 207 naming
    what may not go (and then nothing went)."""
    if not config.allow_delete:
        raise HTTPError(403, "Deleting is turned off here.")
    may_write(must_exist(target, config, may, "write"), may)
    refuse_root(target)  # before a walk of everything, whose answer could only be this
    changed = changes(target.segments, config, True)
    check(request, locks, config, target, changed)
    judged = entry_at(entry_path(target.segments, config))
    # A link goes alone, whatever it leads to; a folder with everything in it.
    walked = judged is not None and stat.S_ISDIR(judged.st_mode)
    refused = list(_refused_below(target, config, may)) if walked else []
    if refused:
        return Response(207, [XML_TYPE], body=multistatus(
            status_response(href, 403, reason_phrase(403)) for href in refused))
    folder = parent_folder(target, config)
    try:
        may_write(target, may, folder)
        name = target.segments[-1]
        with folder.held(), _checked_again(request, locks, config, target, changed):
            there = still_judged(folder, name, judged)
            if there is None:
                raise not_found(target.url_path)
            hidden = None
            if stat.S_ISDIR(there.st_mode):
                hidden = clear(folder, name)  # what it holds goes after the hold
            else:
                try:
                    os.unlink(name, dir_fd=folder.fd)  # a link itself, never where it leads
                except OSError as error:
                    raise storage_error(error) from None
        folder.sync()
        if hidden is not None:
            remove_cleared(folder, hidden, name)
            folder.sync()
    finally:
        folder.close()
    locks.forget(locate_entry(target.segments, config))
    return Response(204)


def copy_or_move(request: Request, source: Resource, config: Config, locks: LockTable,
                 may: Checker, move: bool) -> Response:
    """COPY or MOVE ``source`` to the ``Destination``: 201 for a new name, 204 for one
    replaced, 207 naming the members of a folder that could not be copied, 412 when it
    exists and ``Overwrite: F``, 409 without its parent, 502 on another server."""
    if move and not config.allow_rename:
        raise HTTPError(403, "Moving and renaming are turned off here.")
    must_exist(source, config, may, "write" if move else "read")
    destination = _destination(request, config)
    # Before anything answers what is there: the Destination may pass a protected folder.
    refuse_along(destination.segments, destination.url_path, config, may, "read")
    overwrite = _overwrite(request.headers.get("Overwrite"))
    infinite = _copy_depth(request.headers.get("Depth"), move)
    if destination.segments[:len(source.segments)] == source.segments:
        raise HTTPError(403, "A resource cannot be copied or moved onto or into itself.")
    if source.segments[:len(destination.segments)] == destination.segments:
        raise _holds_the_source()
    # The entry itself, a link as a link: what a MOVE renames, where it lies.
    entry = entry_path(source.segments, config)
    moved = entry_at(entry) if move else None
    if not may("write" if move else "read", source.url_path, source.real_path()) or (
            move and not may("write", source.url_path, entry)):
        raise Refused()
    may_write(destination, may)  # before a lock, a 412 or a 409 tells what is there
    if source.collection:
        _check_depth(destination.segments)  # before anything there is replaced
    changed = changes(destination.segments, config, True)
    if move:
        changed += changes(source.segments, config, True)
    check(request, locks, config, source, changed)
    if destination.exists and not overwrite:
        raise HTTPError(412, f"{destination.url_path} exists, and Overwrite is F.")
    if not (move or source.collection) and source.stat.st_size > config.max_upload_size:
        raise _too_large(config)  # before anything at the Destination is replaced
    folder = parent_folder(destination, config, may)
    failed: List[str] = []  # a 207's responses, one per member that could not be copied
    replaced = False  # whether something had the Destination's name as it was taken
    try:
        may_write(destination, may, folder)
        name = destination.segments[-1]
        _check_landing(source, entry, folder, name, move)
        # A folder's members are read before anything at the Destination is replaced, so
        # that a source which cannot be read leaves the Destination as it was.
        listed = members(source, config, may) if (
            source.collection and infinite and not move) else None
        if move and source.collection and not os.path.islink(entry) and list(_refused_below(
                source, config, may, _Landing(len(source.segments), destination.segments,
                                              os.path.join(folder.real_path, name)))):
            raise HTTPError(403, f"{source.url_path} holds entries that may not be moved "
                                 f"there, or would nest deeper than {MAX_FOLDER_DEPTH} "
                                 "levels.")
        # What may be replaced at the Destination, as judged here; looked at again as the
        # name is taken.
        judged = entry_in(folder, name) if destination.exists else None
        if destination.exists and (destination.collection or source.collection):
            if not config.upload_overwrite:
                folder.check(name)  # the overwrite rule's own 409
            if destination.collection and not config.allow_delete:
                raise HTTPError(403, f"Replacing the folder {destination.url_path} would "
                                     "delete it, and deleting is turned off here.")
            # Only a folder itself goes with what it holds; a file or a link goes alone.
            if (judged is not None and stat.S_ISDIR(judged.st_mode)
                    and list(_refused_below(destination, config, may))):
                raise HTTPError(403, f"{destination.url_path} holds entries that may not "
                                     "be replaced.")
        else:
            folder.check(name)  # name rules; a file there is replaced only as PUT would

        # Every name is taken with the locks checked again and held still (423 for a lock
        # taken meanwhile), in the hold of the folder it is taken in.
        def hold(names: Sequence[str]) -> ContextManager[None]:
            return _checked_again(request, locks, config, source, changed)
        if move:
            replaced = _move(source, moved, folder, name, judged, config, hold)
            locks.forget(locate_entry(source.segments, config))
        elif source.collection:
            with contextlib.suppress(_CopyEnded):
                replaced = _copy_tree(source, folder, name, infinite, config, may,
                                      [config.max_upload_size], set(), hold, failed, listed,
                                      judged)
        else:
            replaced = _copy_file(source, folder, name, config, [config.max_upload_size],
                                  hold, judged, exclusive=not overwrite)
        folder.sync()
    finally:
        folder.close()
    if failed:
        return Response(207, [XML_TYPE], body=multistatus(failed))
    if replaced:
        return Response(204)
    return Response(201, [("Location", destination.href)])


def check(request: Request, locks: Union[LockTable, HeldLocks], config: Config,
          target: Resource, changed: List[Tuple[Where, bool]]) -> None:
    """The ``If`` header and the locks (the table's, or held still) for a request on
    ``target`` changing ``changed`` (:func:`changes`, each with whether what is below it
    changes too)."""
    locks.check(request.headers.get("If"), locate(target.segments, config), changed,
                lambda path: find_segments(list(path), config).etag)


def changes(segments: List[str], config: Config, below: bool) -> List[Tuple[Where, bool]]:
    """What making, replacing or removing the entry at the decoded URL path ``segments``
    changes, as the locks see it: the entry (with ``below``, all it holds too), and the
    members of the folder it lies in."""
    return [(locate_entry(segments, config), below),
            (locate_members(segments[:-1], config), False)]


@contextlib.contextmanager
def _checked_again(request: Request, locks: LockTable, config: Config, target: Resource,
                   changed: List[Tuple[Where, bool]]) -> Iterator[None]:
    """:func:`check` made again, with every lock held as it is until the block ends."""
    with locks.held_still() as held:
        check(request, held, config, target, changed)
        yield


def may_write(target: Resource, may: Checker, folder: Optional[UploadFolder] = None
               ) -> None:
    """:class:`Refused` unless the checker lets ``target`` be written: by where it leads
    when it exists, and with its ``folder`` open, also by where the entry itself lies (a
    link replaced or removed lies in that folder, wherever it leads); an unmapped one
    without ``folder`` by its URL path alone (to be asked again once its folder is
    open)."""
    reals = {target.real_path()} if target.exists else set()
    if folder is not None:  # the same path as where it leads, unless it is a link
        reals.add(os.path.join(folder.real_path, target.segments[-1]))
    for real in reals or {""}:
        if not may("write", target.url_path, real):
            raise Refused()


class _Landing(NamedTuple):
    """Where a MOVE puts the tree it walks: its top's segments now (``depth`` of them), and
    the URL path ``segments`` and the ``real_path`` that top will have."""

    depth: int
    segments: List[str]
    real_path: str

    def may_hold(self, member: Resource, may: Checker) -> bool:
        """Whether ``member`` of the tree may be written where it will be, and, a folder,
        lies no deeper than :data:`MAX_FOLDER_DEPTH` there."""
        below = member.segments[self.depth:]
        url_path = "/" + "/".join(self.segments + below)
        deep_enough = len(self.segments) + len(below) <= MAX_FOLDER_DEPTH
        return ((deep_enough or not member.collection)
                and may("write", url_path, os.path.join(self.real_path, *below)))


def _refused_below(folder: Resource, config: Config, may: Checker,
                   landing: Optional[_Landing] = None, mounts: Optional[MountPoints] = None
                   ) -> Iterator[str]:
    """The hrefs of what keeps ``folder`` from going: members the checker will not let be
    written, folders (the first one named) holding entries a client cannot see (but Nex's own,
    :func:`~nex.files.davnames.left_by_nex`, which go with them, unless something is mounted
    there), and folders deeper than :data:`MAX_FOLDER_DEPTH`, which are not walked; and, but
    for a MOVE (a rename carries a mount along), mount points, ``mounts`` (those below the
    folder the walk began at) or folders on another device: a removal never goes into what
    is mounted (:func:`~nex.files.davnames.remove_entry`).  With ``landing`` (a MOVE), also
    members that may not be written where they would land, or would lie too deep there."""
    target = Target("directory", folder.fs_path, folder.url_path, folder.stat)
    try:
        names = os.listdir(folder.fs_path)
    except OSError:
        yield folder.href
        return
    if landing is None and mounts is None:
        mounts = mounts_below(folder.segments, folder.real_path())
    found = []
    for name in names:
        if not left_by_nex(folder.fs_path, name):
            found.append((name, servable_entry(target, name, config)))
        elif mounts and any(point[:len(folder.segments) + 1] == (*folder.segments, name)
                            for point in mounts):
            found.append((name, None))  # a mount in Nex's own entry stays: so does the folder
    if any(entry is None for _, entry in found):
        yield folder.href
        return
    # In a listing's order, as a 207 names them.
    found.sort(key=lambda pair: entry_order(pair[0], stat.S_ISDIR(pair[1].st_mode)))
    for name, entry in found:
        member = Resource(folder.segments + [name], os.path.join(folder.fs_path, name), entry)
        if not may("write", member.url_path, member.real_path()) or (
                landing is not None and not landing.may_hold(member, may)) or (
                mounts and tuple(member.segments) in mounts):
            yield member.href
        elif member.collection and not os.path.islink(member.fs_path):
            if len(member.segments) > MAX_FOLDER_DEPTH or (
                    landing is None and entry.st_dev != folder.stat.st_dev):
                yield member.href
            else:
                yield from _refused_below(member, config, may, landing, mounts)


def _move(source: Resource, moved: Optional[os.stat_result], folder: UploadFolder, name: str,
          judged: Optional[os.stat_result], config: Config, hold: Hold) -> bool:
    """Rename ``source`` (the entry itself, a link as a link, judged to be ``moved``) to
    ``name`` in ``folder``, replacing what was judged there (``judged``; a name taken
    meanwhile is not replaced: 412); whether something was replaced.  Both folders are held
    around the rename, and ``hold`` checks the locks again."""
    origin = parent_folder(source, config)
    old = source.segments[-1]
    hidden = None
    try:
        with held_in_order(origin, folder), hold([name]):
            if still_judged(origin, old, moved) is None:
                raise not_found(source.url_path)
            there = still_judged(folder, name, judged)
            if there is None and entry_in(folder, name) is not None:
                raise _made_meanwhile(folder, name)
            # rename(2) puts a folder in the place of an empty folder alone, and lets
            # nothing but a folder replace a folder.
            folder_moved = moved is not None and stat.S_ISDIR(moved.st_mode)
            with cleared(folder, name, there if there is not None and (
                    folder_moved or stat.S_ISDIR(there.st_mode)) else None) as hidden:
                _rename(origin, old, folder, name, there is not None or folder_moved)
        origin.sync()
    finally:
        origin.close()
    if hidden is not None:
        remove_cleared(folder, hidden)
    return there is not None


def _rename(origin: UploadFolder, old: str, folder: UploadFolder, name: str,
            replace: bool) -> None:
    """Rename ``old`` in ``origin`` to ``name`` in ``folder``: without ``replace`` by a
    link, which no name taken meanwhile, by another program, lets through (412)."""
    try:
        if replace:
            os.rename(old, name, src_dir_fd=origin.fd, dst_dir_fd=folder.fd)
        else:
            os.link(old, name, src_dir_fd=origin.fd, dst_dir_fd=folder.fd,
                    follow_symlinks=False)
            os.unlink(old, dir_fd=origin.fd)
    except FileExistsError:
        raise _made_meanwhile(folder, name) from None
    except OSError as error:
        raise storage_error(error) from None


def _made_meanwhile(folder: UploadFolder, name: str) -> HTTPError:
    """412 for a Destination ``name`` in ``folder`` that was free when judged, and is not
    as the request takes it."""
    return HTTPError(412, f"{folder.shown(name)} was made meanwhile.")


def _copy_file(source: Resource, folder: UploadFolder, name: str, config: Config,
               budget: List[int], hold: Hold, judged: Optional[os.stat_result] = None,
               exclusive: bool = False) -> bool:
    """Copy the file ``source`` to ``name`` in ``folder`` as a PUT of its content would
    store it, its name taken in ``hold``, replacing what was judged there (``judged``; a
    folder too), and with ``exclusive`` (``Overwrite: F``) no file made meanwhile; whether
    something was replaced.  ``budget`` (bytes left of ``max_upload_size``) bounds what a
    COPY writes.  The policy is asked whether ``name`` may be written."""
    folder.check_access(name)
    budget[0] -= source.stat.st_size
    if budget[0] < 0:
        raise _too_large(config)
    pending = folder.create(name)
    hidden = None
    try:
        try:
            with open(source.fs_path, "rb", buffering=0) as original:
                while True:
                    piece = original.read(_COPY_PIECE)
                    if not piece:
                        break
                    pending.write(piece)
        except OSError as error:
            raise storage_error(error) from None
        pending.finish()  # synced before any hold
        # A folder there leaves its name in the hold the file takes it in (store() holds
        # the folder again); a file is replaced by the rename itself.
        replacing = judged is not None and stat.S_ISDIR(judged.st_mode)
        with folder.held() if replacing else contextlib.nullcontext():
            there = still_judged(folder, name, judged) if replacing else None
            with cleared(folder, name, there) as hidden:
                store(pending, exclusive, hold)
    finally:
        pending.discard()
    if hidden is not None:
        remove_cleared(folder, hidden)
    return pending.replaced or hidden is not None


def _copy_tree(source: Resource, folder: UploadFolder, name: str, infinite: bool,
               config: Config, may: Checker, budget: List[int],
               seen: Set[Tuple[int, int]], hold: Hold, failed: List[str],
               listed: Optional[Iterator[Resource]] = None,
               judged: Optional[os.stat_result] = None) -> bool:
    """Copy the folder ``source`` to ``name`` in ``folder``: the folder, and with
    ``infinite`` every member GET would serve and the checker lets be read, once each
    (a link back up the tree, or into the copy, is not followed round); each name is taken
    in ``hold``; ``listed`` are its members when the caller read them already.  What was
    judged to have the name (``judged``) is replaced; whether something was.

    A member that cannot be copied is added to ``failed`` (a 207's response naming where
    its copy would be, with the refusal's status) and nothing below it is copied, as RFC
    4918 §9.8.3 asks; the walk goes on with the next member, or for a failure in
    :data:`_ENDS_THE_COPY` ends (:class:`_CopyEnded`).  The folder itself failing raises,
    as the copy of a file does; so does one deeper than :data:`MAX_FOLDER_DEPTH`.
    """
    _check_depth(folder.segments + [name])
    folder.check_access(name)
    identity = (source.stat.st_dev, source.stat.st_ino)
    if not infinite or identity in seen:
        listed = None
    elif listed is None:
        # Read before the copy is made, so that a folder which cannot be read leaves no
        # empty copy behind when it is named as failed.
        listed = members(source, config, may)
    replaced = _make_folder(folder, name, hold, judged)
    if listed is None:
        return replaced
    seen.add(identity)
    copy = UploadFolder(folder.segments + [name], config, "/".join(folder.segments + [name]),
                        folder.may)
    try:
        # A link may lead the walk into the copy itself: it is copied, never walked.
        made = os.fstat(copy.fd)
        seen.add((made.st_dev, made.st_ino))
        for member in listed:
            try:
                if member.collection:
                    if os.path.islink(member.fs_path):
                        # Walked on at its real path, as a zip's walk goes on
                        # (folder_below), so that what lies below is judged where it
                        # really is.
                        member = Resource(member.segments, os.path.realpath(member.fs_path),
                                          member.stat)
                    _copy_tree(member, copy, member.segments[-1], True, config, may, budget,
                               seen, hold, failed)
                else:
                    _copy_file(member, copy, member.segments[-1], config, budget, hold)
            except HTTPError as error:
                href = encode_path(copy.segments + [member.segments[-1]],
                                   folder=member.collection)
                failed.append(status_response(href, error.status, reason_phrase(error.status)))
                if error.status in _ENDS_THE_COPY:
                    raise _CopyEnded() from None
        copy.sync()
    finally:
        copy.close()
    return replaced


def _make_folder(folder: UploadFolder, name: str, hold: Hold,
                 judged: Optional[os.stat_result]) -> bool:
    """Make the folder ``name`` in ``folder``, in its hold and in ``hold``, replacing
    what was judged to have the name (``judged``); whether something was replaced."""
    with folder.held(), hold([name]):
        there = still_judged(folder, name, judged)
        with cleared(folder, name, there) as hidden:
            try:
                os.mkdir(name, dir_fd=folder.fd)
            except FileExistsError:  # made meanwhile, by another request
                raise HTTPError(409, f"{folder.shown(name)} was made meanwhile.") from None
            except OSError as error:
                raise storage_error(error) from None
    if hidden is not None:
        remove_cleared(folder, hidden)
    return there is not None


def _check_landing(source: Resource, entry: str, folder: UploadFolder, name: str,
                   move: bool) -> None:
    """403 unless ``source``, whose entry lies at ``entry``, may be put at ``name`` in the
    open ``folder``, judged where both really are (the folder's links resolved, the
    entry's own not): never into what is copied or moved, nor onto a folder that holds the
    source's entry or (a COPY) what it leads to, which replacing would delete; and a MOVE
    never to another mount, which ``rename`` cannot reach."""
    landing = os.path.join(folder.real_path, name)
    # A MOVE renames the entry itself, a link as a link; a COPY copies what it leads to.
    carried = entry if move else source.real_path()
    if _within(landing, carried):
        raise HTTPError(403, "A resource cannot be copied or moved onto or into itself.")
    if _within(entry, landing) or _within(carried, landing):
        raise _holds_the_source()
    if move and mount_at(os.path.dirname(entry)) != mount_of(folder.fd):
        raise HTTPError(403, "Nex moves only within one file system, and one mount of it; "
                             "copy, then delete.")


def _holds_the_source() -> HTTPError:
    """403 for a Destination that holds the source: replacing it would delete the source."""
    return HTTPError(403, "A resource cannot be copied or moved onto a folder that holds it.")


def _within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (both real paths)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _too_large(config: Config) -> HTTPError:
    """413 for a COPY that would write more than ``max_upload_size``."""
    return HTTPError(413, "The copy is larger than one upload may be ("
                          f"{size_limit('max_upload_size', config.max_upload_size)}).")


def _check_depth(segments: Sequence[str]) -> None:
    """403 for a folder to be made with more than :data:`MAX_FOLDER_DEPTH` segments."""
    if len(segments) > MAX_FOLDER_DEPTH:
        raise HTTPError(403, f"Folders nest at most {MAX_FOLDER_DEPTH} levels deep here.")


#: What no URI holds (RFC 3986 §2): blanks and control characters.
_NOT_IN_A_URI = re.compile(r"[\x00-\x20\x7f]")


def _destination(request: Request, config: Config) -> Resource:
    """The resource the ``Destination`` header names (RFC 4918 §10.3); 400 when missing or
    malformed, 502 when it names another server."""
    value = request.headers.get("Destination")
    if value is None:
        raise HTTPError(400, "COPY and MOVE name a Destination.")
    # A URI holds no blank or control character (RFC 3986 §2); urlsplit would drop a tab
    # and name another resource than the one sent.
    if _NOT_IN_A_URI.search(value):
        raise HTTPError(400, "The Destination holds a character no URL holds.")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise HTTPError(400, "The Destination is not a URL.") from None
    if parts.scheme or parts.netloc:
        if (parts.scheme.lower() not in ("http", "https")
                or parts.netloc.lower() != request.host.lower()):
            raise HTTPError(502, "The Destination is on another server.")
    if not parts.path.startswith("/"):
        raise HTTPError(400, "The Destination is not an absolute path.")
    return find_segments(split_path(parts.path)[0], config)


def _overwrite(value: Optional[str]) -> bool:
    """The ``Overwrite`` header (RFC 4918 §10.6): T (the default) or F; else 400."""
    if value is None or value == "T":
        return True
    if value == "F":
        return False
    raise HTTPError(400, "Overwrite is T or F.")


def _copy_depth(value: Optional[str], infinity_only: bool) -> bool:
    """Whether a COPY goes below a folder: ``Depth`` 0 or infinity (the default); a MOVE
    takes infinity alone (RFC 4918 §9.8.3, §9.9.2); 400 otherwise."""
    if value is None or value.lower() == "infinity":
        return True
    if value == "0" and not infinity_only:
        return False
    raise HTTPError(400, "Depth is 0 or infinity for COPY, infinity for MOVE.")
