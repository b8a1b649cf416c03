"""The resolver: a request's URL path to a safe filesystem :class:`Target`, or an error.

The order of the steps is the point:

1. check the path as sent (ASCII, no control characters, no backslash, well-formed escapes,
   no escaped ``/`` or ``\\``), then percent-decode it exactly once, as UTF-8, refusing NUL;
2. split it into segments and drop ``.``, ``..`` and empty ones *on the text*, so no
   request can name anything above the document root however it is spelled;
3. refuse hidden names (:func:`hidden`): dotfiles unless ``dotfiles`` is on, and the
   temporary files of uploads in progress always;
4. only then look at the disk, under the ``symlinks`` policy;
5. directories: redirect to the slash form, serve an index file, list, or refuse.

Refusals that would tell whether something exists (dotfiles, symlinks the policy forbids,
paths that leave the root) are all ``404``, the same answer a missing file gets: one detail
naming the decoded path that was asked for, whatever the reason.

:func:`servable_entry` applies the same rules to one entry of a listed folder, so listings
and folder downloads hold exactly the entries a GET of their links would serve.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple, Union
from urllib.parse import quote, unquote_to_bytes

from nex.files.misses import MissCache
from nex.files.oserrors import NOT_FOUND, reply_for
from nex.http.errors import HTTPError


class Target(NamedTuple):
    """What a URL path names on disk.

    ``kind`` is ``"file"`` or ``"directory"`` (a directory reaches the handler only when it has
    no index file and listings are on).  ``fs_path`` is the absolute path to open,
    ``url_path`` the decoded, normalised URL path (``"/media/a b.mp4"``, directories end in
    ``/``), and ``stat`` the ``os.stat`` result of ``fs_path``.  ``folder`` is the ``os.lstat``
    of the folder holding ``fs_path`` when the resolver took it on its way there (None
    otherwise), so that a handler can tell whether that folder changed without asking again.
    """

    kind: str
    fs_path: str
    url_path: str
    stat: os.stat_result
    folder: Optional[os.stat_result] = None


# Printable ASCII but backslash: anything else in a request path is malformed (RFC 3986 §2),
# and a backslash is a separator to some file systems and proxies.
_RAW_PATH = re.compile(r"[!-\[\]-~]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Escapes that would change the segments once decoded: "/" and "\".
_SEPARATOR_ESCAPE = re.compile(r"%(?:2[Ff]|5[Cc])")
# Characters left as they are in a redirect's path: RFC 3986 pchar without "%" (quote()
# always keeps the unreserved ones).  Everything else, CR and LF among it, is escaped.
_PATH_SAFE = "!$&'()*+,;=:@"
_QUERY_SAFE = _PATH_SAFE + "/?%"
#: The name start of an upload's temporary file (:mod:`nex.files.upload`): never served or listed,
#: so a half-written upload is never seen.
UPLOAD_TEMP_PREFIX = ".nex-upload-"
# Lookups that fail this way mean "nothing servable here".
# Characters that disguise a name: C0 and C1 controls, DEL, and the Unicode format
# characters (general category Cf: bidi controls, zero-width characters, the soft hyphen).
_DISGUISING = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    "\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]")
#: The access checker routing gives handlers (:meth:`nex.site.access.AccessPolicy.checker`):
#: ``may(action, url_path, real_path) -> bool``.
Checker = Callable[[str, str, str], bool]


def resolve(path: str, query: str, config, may: Optional[Checker] = None,
            misses: Optional[MissCache] = None) -> Target:
    """The file or directory that ``path`` (percent-encoded, as sent) names under the root.

    ``path`` is decoded with :func:`split_path`; the rest is :func:`resolve_segments`.
    """
    segments, trailing_slash = split_path(path)
    return resolve_segments(segments, trailing_slash, query, config, may, misses)


def resolve_segments(segments: List[str], trailing_slash: bool, query: str, config,
                     may: Optional[Checker] = None,
                     misses: Optional[MissCache] = None) -> Target:
    """The file or directory that the decoded path ``segments`` (from :func:`split_path`,
    with ``trailing_slash``) names under the root: :func:`find_target`, its 404 raised."""
    found = find_target(segments, trailing_slash, query, config, may, misses)
    if isinstance(found, HTTPError):
        raise found
    return found


def find_target(segments: List[str], trailing_slash: bool, query: str, config,
                may: Optional[Checker] = None,
                misses: Optional[MissCache] = None) -> Union[Target, HTTPError]:
    """The file or directory that the decoded path ``segments`` (from :func:`split_path`,
    with ``trailing_slash``) names under the root, or the 404 when nothing may be served
    there.

    The 404 is returned, not raised: the commonest answer after a file, and on some
    interpreters (CPython before 3.11.7, gh-109181) an exception raised through a few calls
    costs more than all the rest of a remembered miss's answer.

    ``query`` (as sent, without ``?``) is only carried into a redirect.  The 404 is for
    anything missing or hidden (dotfiles, symlinks the policy refuses).  Raises ``HTTPError``
    403 when listings are off or the file system denies access, and 301 with a path-only
    ``Location`` for a directory asked for without its trailing slash.  With ``may`` (the
    access checker), a file or the index file a folder is served by that may not be read,
    a folder that may not be listed, and a missing path where the policy refuses reading
    (:func:`refuse_along`) raise :class:`Refused`, before any other answer.  ``misses``,
    when given, remembers paths found missing and answers them again, after the policy, while
    the folder lacking them is unchanged (:mod:`nex.files.misses`), index files among them.
    """
    url_path = "/" + "/".join(segments)
    # The decoded path that was asked for, as a 404 names it: a folder's with its slash.
    asked_for = url_path + "/" if segments and trailing_slash else url_path
    dotfiles = config.dotfiles
    for segment in segments:
        if segment[0] == "." and hidden(segment, dotfiles):
            return not_found(asked_for)
    if misses is not None:
        missing = misses.missing(asked_for)
        if missing is not None:
            # The policy is asked as on the walk: a miss never answers for a refusal.
            refuse_along(segments, url_path, config, may, "read")
            return not_found(missing)
    try:
        fs_path, st, folder = _walk(config.document_root, segments, config.symlinks, dotfiles)
    except OSError as error:
        if error.errno in NOT_FOUND:
            refuse_along(segments, url_path, config, may, "read")
            if misses is not None and error.errno == errno.ENOENT:
                misses.record(asked_for, config.document_root.rstrip("/") + url_path,
                              config.document_root, asked_for)
            return not_found(asked_for)
        raise _os_error(error) from None
    except HTTPError:  # a link the symlinks policy refuses: as if missing
        refuse_along(segments, url_path, config, may, "read")
        return not_found(asked_for)
    regular = stat.S_ISREG(st.st_mode)
    # Asked before any answer that tells what is there (a 404 for a file's address with a
    # slash, a redirect, an index file, a listing).
    if may is not None and not may_reach(may, "read" if regular else "list", segments,
                                         url_path, real_path(fs_path, config), config):
        raise Refused()
    if regular:
        if trailing_slash:
            return not_found(asked_for)
        return Target("file", fs_path, url_path, st, folder)
    if not stat.S_ISDIR(st.st_mode):
        return not_found(asked_for)
    if segments and not trailing_slash:
        raise HTTPError(301, "The folder's address ends with a slash.",
                        headers=[("Location", redirect_location(segments, query))])
    if segments:
        url_path += "/"
    for name in config.index_files:
        # An index file is a path like any other: one found missing is remembered, and a
        # folder listed again costs a stat of it per name instead of a walk.
        index_url = url_path + name
        if misses is not None and misses.missing(index_url) is not None:
            continue
        try:
            index_path, index_st, _ = _walk(config.document_root, [*segments, name],
                                            config.symlinks, dotfiles)
        except OSError as error:
            if misses is not None and error.errno == errno.ENOENT:
                misses.record(index_url, config.document_root.rstrip("/") + index_url,
                              config.document_root, index_url)
            # Nothing to serve there, as lookup() would answer: the next name is tried.  A
            # fault goes up as it is.
            if error.errno not in NOT_FOUND and reply_for(error) is None:
                raise
            continue
        except HTTPError:  # a link the policy refuses
            continue
        if stat.S_ISREG(index_st.st_mode):
            if may is not None and not may("read", url_path + name,
                                           real_path(index_path, config)):
                raise Refused()
            # Unless a link led elsewhere, the index file's folder is the one just looked at.
            same_folder = index_path == fs_path.rstrip("/") + "/" + name
            return Target("file", index_path, url_path, index_st, st if same_folder else None)
    if not config.listing:
        raise HTTPError(403, "Folder listings are turned off.")
    return Target("directory", fs_path, url_path, st, folder)


class Refused(HTTPError):
    """The access policy refuses the request's own target (``403``; routing asks an
    anonymous client to log in instead)."""

    def __init__(self) -> None:
        super().__init__(403, "You may not access this address.")


def refuse_along(segments: Sequence[str], url_path: str, config,
                 may: Optional[Checker], action: str) -> None:
    """Raise :class:`Refused` when ``may`` refuses ``action`` where the decoded path
    ``segments`` (shown as ``url_path``) ends, whether or not anything is there, or where a
    link on its way lies (:func:`passes_through`).

    Through a link into a protected folder, a 404 for a missing name beside a 401 for a
    present one would tell anyone which names the folder holds, and so would any answer
    through a link that leads out of it again; so a path is judged by where it would be,
    the links that exist on the way resolved, and by where each of those links lies.
    Under ``symlinks = never`` no link is followed and there is nothing to judge.
    """
    if may is None or config.symlinks == "never":
        return
    links, real = passes_through(segments, config)
    if real is None or not may(action, url_path, real) or not all(
            may(action, url_path, link) for link in links):
        raise Refused()


def may_reach(may: Checker, action: str, segments: Sequence[str], url_path: str,
              real: str, config) -> bool:
    """Whether the access checker ``may`` lets ``action`` be done on what the decoded URL
    path ``segments`` (``url_path``: ``/`` and the segments joined by ``/``) names, whose
    real path is ``real``: judged where it leads and, when a link on the way led elsewhere,
    where each link it passes lies (:func:`passes_through`).  Without a link on the way this
    costs one comparison.
    """
    if not may(action, url_path, real):
        return False
    if not segments or real == config.document_root.rstrip("/") + url_path:
        return True
    links, end = passes_through(segments, config)
    return end is not None and all(may(action, url_path, link) for link in links)


#: The most links :func:`passes_through` follows on one path, as the kernel follows at most
#: 40 when it resolves one; a path through more is not judged, and is refused.
MAX_LINKS = 40


def passes_through(segments: Sequence[str], config) -> Tuple[List[str], Optional[str]]:
    """Where each link lies that the decoded path ``segments`` passes under the document
    root, and the real path it ends at, whether or not anything is there (None past
    :data:`MAX_LINKS` links).

    A path is judged where it ends, and that covers every folder above the end; but a link
    on the way jumps elsewhere, leaving the folders before it unjudged.  Where the link
    lies is the last of them, below all the others: judging it judges them.  (A path
    through a protected folder would otherwise answer a stranger by what a link in it
    leads to, and tell the names the folder holds.)  One ``lstat`` a segment, and a
    ``realpath`` a link, which costs an ``lstat`` for each folder above its target.
    """
    current = _real_root(config.document_root)
    links: List[str] = []
    for index, segment in enumerate(segments):
        candidate = os.path.join(current, segment)
        try:
            found = os.lstat(candidate)
        except OSError:  # missing, or not to be looked into: nothing below it is a link
            return links, os.path.join(candidate, *segments[index + 1:])
        if stat.S_ISLNK(found.st_mode):
            if len(links) == MAX_LINKS:
                return links, None
            links.append(candidate)
            candidate = os.path.realpath(candidate)
        current = candidate
    return links, current


def entry_path(segments: Sequence[str], config) -> str:
    """Where the entry the decoded URL path ``segments`` names lies itself: its folder's
    real path and its name, a link's own place (the resolver gives a link's target as its
    ``fs_path``); whether or not anything is there."""
    if not segments:
        return _real_root(config.document_root)
    folder = os.path.join(config.document_root, *segments[:-1])
    return os.path.join(os.path.realpath(folder), segments[-1])


def real_path(fs_path: str, config) -> str:
    """``fs_path`` (from :func:`resolve` or :func:`lookup`) with every symlink resolved.

    Under ``symlinks = never`` or ``inside`` the resolver already returns a real path (the
    root is a real path, and a followed link is resolved whole), so this costs nothing;
    under ``always`` it asks the file system.
    """
    return os.path.realpath(fs_path) if config.symlinks == "always" else fs_path


def servable_entry(folder: Target, name: str, config) -> Optional[os.stat_result]:
    """The ``os.stat`` of the entry ``name`` of ``folder`` when GET would serve it, else None.

    ``folder`` is a directory :func:`resolve` returned under ``config``.  The entry is
    servable when its link (the name percent-encoded whole) decodes back to exactly ``name``
    (a name holding a backslash, or that is not UTF-8, cannot be asked for), the dotfile rule
    allows it, and it is a regular file or a folder under the symlink policy: ``never``
    refuses a link, ``inside`` follows one only when its target stays inside the root, and
    ``always`` follows any.  These are the checks :func:`resolve` makes, started from the
    folder already resolved; listings and folder downloads show exactly these entries.
    """
    try:
        if _decode("/" + quote(name, safe=""))[0] != (name,):
            return None
    except (HTTPError, UnicodeEncodeError):
        return None
    if hidden(name, config.dotfiles):
        return None
    path = folder.fs_path.rstrip("/") + "/" + name
    try:
        if config.symlinks == "always":
            st = os.stat(path)
        else:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                if config.symlinks == "never":
                    return None
                st = _inside(config.document_root, path, config.dotfiles)[1]
    except (HTTPError, OSError):
        return None
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return st
    return None


def disguised(name: str) -> bool:
    """Whether ``name`` holds a control or format character (C0, DEL, C1, bidi controls,
    zero-width characters): such a name can pass for another, so uploads refuse it."""
    return _DISGUISING.search(name) is not None


def shown_name(name: str) -> str:
    """``name`` as pages show it: each control or format character as ``\\uXXXX``."""
    return _DISGUISING.sub(lambda match: f"\\u{ord(match.group()):04X}", name)


def hidden(name: str, dotfiles: bool) -> bool:
    """Whether ``name`` is never served or listed: a dotfile unless ``dotfiles`` is on, and
    an upload's temporary file (:data:`UPLOAD_TEMP_PREFIX`) always, in any letter case,
    since a case-insensitive file system opens it by any."""
    return name.startswith(".") and (
        not dotfiles or name[:len(UPLOAD_TEMP_PREFIX)].lower() == UPLOAD_TEMP_PREFIX)


def not_found(url_path: str) -> HTTPError:
    """The one 404 for a path that is missing or refused; the page escapes ``url_path``."""
    return HTTPError(404, f"The requested path {url_path} was not found.")


def split_path(path: str) -> Tuple[List[str], bool]:
    """The decoded, normalised segments of a request path, and whether it names a folder.

    Decodes percent-escapes exactly once (so ``%252e`` is the name ``%2e``) and resolves
    ``.`` and ``..`` the way RFC 3986 §5.2.4 does, never climbing above ``/``; empty segments
    (``//``) are dropped.  The second value is True when the path ends in ``/`` or in a dot
    segment (``/a/b/..`` is ``/a/``).  Raises ``HTTPError(400)`` for a path that is not
    origin-form ASCII, contains a backslash, a malformed escape, an escaped ``/`` or ``\\``,
    NUL, or bytes that are not UTF-8 (overlong forms such as ``%C0%AE`` among them).
    The list is the caller's own; the decoding behind it is remembered (:func:`_decoded`).
    """
    segments, folder = _decoded(path)
    return list(segments), folder


def _decode(path: str) -> Tuple[Tuple[str, ...], bool]:
    """:func:`split_path`'s answer for ``path``, the segments as a tuple."""
    if not path.startswith("/") or not _RAW_PATH.fullmatch(path):
        raise HTTPError(400, "The request path contains characters that must be escaped.")
    decoded = _percent_decode(path) if "%" in path else path
    segments: List[str] = []
    parts = decoded.split("/")
    for part in parts:
        if part == "..":
            if segments:
                segments.pop()
        elif part and part != ".":
            segments.append(part)
    return tuple(segments), parts[-1] in ("", ".", "..")


#: How many request paths :func:`_decoded` remembers.
DECODED_PATHS = 256
#: :func:`_decode` for the request paths asked for most recently.  The answer follows from
#: the path alone and is immutable, and clients ask for the same few paths again and again;
#: a refusal raises, so it is never remembered.  Listings decode their entries' names with
#: :func:`_decode` itself, so that a folder of many names does not push out the paths asked
#: for.  The bound keeps it within ``DECODED_PATHS`` paths of at most a request line each.
_decoded = functools.lru_cache(maxsize=DECODED_PATHS)(_decode)


def _percent_decode(path: str) -> str:
    """``path`` with its percent-escapes decoded once, as UTF-8, refusing dangerous bytes."""
    if _BAD_ESCAPE.search(path):
        raise HTTPError(400, "The request path contains a malformed percent-escape.")
    if _SEPARATOR_ESCAPE.search(path):
        raise HTTPError(400, "The request path contains an escaped slash or backslash.")
    raw = unquote_to_bytes(path)
    if b"\0" in raw:
        raise HTTPError(400, "The request path contains a NUL byte.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, "The request path is not valid UTF-8.") from None


def lookup(config, segments: Sequence[str]) -> Tuple[str, os.stat_result]:
    """The path to open for ``segments`` under the document root and its ``os.stat``, per
    the ``symlinks`` policy and the ``dotfiles`` rule of ``config``.

    ``"always"`` follows symlinks anywhere: a single ``os.stat``.  ``"never"`` and
    ``"inside"`` ``lstat`` each component below the root (the root itself may be a link):
    with no link on the way the path is inside the root by construction, and the last
    ``lstat`` is the ``stat``.  On the first link ``"never"`` refuses; ``"inside"`` resolves
    the whole path with ``realpath`` and refuses it unless it stays within the root's real
    path and holds no name :func:`hidden` hides (under ``dotfiles``), then returns that real
    path so the file opened is the one that was checked.  Raises ``HTTPError`` 404 for
    anything missing or refused, 403 when access is denied.
    """
    try:
        fs_path, st, _ = _walk(config.document_root, segments, config.symlinks,
                               config.dotfiles)
    except OSError as exc:
        raise _os_error(exc) from None
    return fs_path, st


def _walk(root: str, segments: Sequence[str], policy: str, dotfiles: bool
          ) -> Tuple[str, os.stat_result, Optional[os.stat_result]]:
    """:func:`lookup`, with the ``os.lstat`` of the folder holding the path when it took
    one (None otherwise); a failed system call raises its ``OSError`` as it is."""
    # Segments hold no "/" and the root is absolute, so plain joins are exact.
    base = root.rstrip("/")
    if policy == "always" or not segments:
        fs_path = base + "".join(["/" + segment for segment in segments]) or "/"
        return fs_path, os.stat(fs_path), None
    current = base
    folder = st = None
    for segment in segments:
        current += "/" + segment
        folder, st = st, os.lstat(current)
        if stat.S_ISLNK(st.st_mode):
            if policy == "never":
                raise HTTPError(404, "The requested resource was not found.")
            return _inside(root, base + "".join(["/" + segment for segment in segments]),
                           dotfiles) + (None,)
    return current, st, folder


@functools.lru_cache(maxsize=16)
def _real_root(root: str) -> str:
    """The real path of the document root, resolved once per root rather than on every
    request that meets a link.  The settings already hold the root's real path, so this is
    that path; should a root given as a link be pointed elsewhere while Nex runs, links are
    judged against the folder it led to at first, which refuses more, never less."""
    return os.path.realpath(root)


def _inside(root: str, fs_path: str, dotfiles: bool) -> Tuple[str, os.stat_result]:
    """``fs_path`` resolved through its links, and its stat, when it stays under ``root``.

    The real path's names below the root are judged as a URL's are: a link does not make a
    dotfile (a ``.git`` folder in a served checkout, say) servable under another name.
    """
    real_root = _real_root(root)
    real = os.path.realpath(fs_path)
    if real != real_root:
        if not real.startswith(os.path.join(real_root, "")) or any(
                name[0] == "." and hidden(name, dotfiles)
                for name in real[len(real_root) + 1:].split("/")):
            raise HTTPError(404, "The requested resource was not found.")
    return real, os.stat(real)


def _os_error(exc: OSError) -> Exception:
    """The HTTPError a failed lookup stands for; unexpected failures go up unchanged."""
    return reply_for(exc) or exc


def encode_path(segments: Sequence[str], folder: bool = False) -> str:
    """The URL path of ``segments``, a folder's ending in ``/``, for a ``Location`` header.

    Every segment is percent-encoded again (as UTF-8) so nothing from the request — CR, LF,
    spaces, non-ASCII — reaches the header raw.  The result starts with exactly one ``/``
    (the root is ``/``), so it cannot be read as a protocol-relative ``//host`` URL.
    """
    path = "/" + "/".join(quote(segment, safe=_PATH_SAFE) for segment in segments)
    return path + "/" if folder and segments else path


def redirect_location(segments: Sequence[str], query: str) -> str:
    """The path-only ``Location`` of the folder ``segments`` with its trailing slash, and
    ``query`` (percent-encoded the same way) when there is one."""
    location = encode_path(segments, folder=True)
    if query:
        location += "?" + quote(query, safe=_QUERY_SAFE)
    return location
