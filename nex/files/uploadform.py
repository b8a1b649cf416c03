"""The form upload: a POST of ``multipart/form-data`` (RFC 7578) to a folder's address.

Each file of the form takes the steps a PUT's file takes (:mod:`nex.files.upload`), and the
files are named together once the whole body has been parsed, so a form that is malformed
or ends early leaves nothing.  Should a name be taken between its check and the end of the
body, the form answers ``409`` and the files it had already named are removed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, List, Optional, Set, Tuple

from nex.files.paths import (Checker, encode_path, hidden, not_found, redirect_location,
                             resolve_segments, split_path)
from nex.files.pending import PendingFile
from nex.files.upload import (FILE_METHODS, NAME_SEPARATORS, TEXT_PLAIN, Hold, UploadFolder,
                              exists_error, folder_error, holding, take_body)
from nex.http.body import BodyReader
from nex.http.errors import HTTPError, size_limit
from nex.http.framing import HeadLimits
from nex.http.multipart import MultipartParser, Part, form_boundary
from nex.http.negotiation import media_ranges
from nex.http.request import Request
from nex.http.response import Response

if TYPE_CHECKING:
    from nex.process.config import Config


def post_form(request: Request, body: Optional[BodyReader], config: Config,
              may: Optional[Checker] = None, path: Optional[Tuple[List[str], bool]] = None,
              guard: Optional[Callable[[str], None]] = None,
              hold: Optional[Hold] = None) -> Response:
    """Answer ``POST``: store the files of a ``multipart/form-data`` form in the folder.

    ``may``, ``path`` and ``hold`` are as for :func:`put_file`; ``guard`` (WebDAV's locks)
    may refuse each file by its name as its part begins.  A file's address gets 405, a
    folder's without its slash 308 (which keeps the method).  Besides :func:`put_file`'s
    refusals it raises 415 for another content type, 400 for a malformed form, one without
    files, or a file name that is not a plain name, 409 for a form naming one file twice,
    and 413 for more files than ``max_upload_files`` or more or larger plain fields than the
    request-head limits allow.
    """
    segments, is_folder = split_path(request.path) if path is None else path
    if not is_folder:
        try:
            resolve_segments(segments, is_folder, request.query, config, may)
        except HTTPError as error:
            if error.status == 301:
                raise HTTPError(308, error.detail, headers=error.headers) from None
            raise
        raise HTTPError(405, "A file's address takes PUT; forms are posted to a folder.",
                        headers=[("Allow", ", ".join(FILE_METHODS))])
    boundary = form_boundary(request.headers.get("Content-Type"))
    shown = "/" + "".join(segment + "/" for segment in segments)
    if any(hidden(segment, config.dotfiles) for segment in segments):
        raise not_found(shown)
    folder = UploadFolder(segments, config, shown, may)
    form = _FormFiles(folder, HeadLimits.from_config(config), config.max_upload_files, guard,
                      hold)
    try:
        parser = MultipartParser(boundary, form, form.limits)
        take_body(body, config.max_upload_size, parser.feed)
        parser.finish()
        if not form.files:
            raise HTTPError(400, "The form holds no file.")
        form.commit()
        folder.sync()
    finally:
        form.discard()
        folder.close()
    if _wants_html(request.headers.get("Accept")):
        count = len(form.files)
        raise HTTPError(303, f"{count} file{'' if count == 1 else 's'} uploaded.",
                        headers=[("Location", redirect_location(segments, request.query))])
    paths = [encode_path(segments + [pending.name]) for pending in form.files]
    created = not all(pending.replaced for pending in form.files)
    headers = [("Location", paths[0])] if created and len(paths) == 1 else []
    return Response(201 if created else 200, headers + [TEXT_PLAIN],
                    body=("".join(path + "\n" for path in paths).encode("ascii"),))


class _FormFiles:
    """The files of one form while it is parsed, as its :class:`PartHandler`.

    Each file part goes into a temporary file; plain fields are dropped, bounded like
    header fields (at most ``limits.header_count`` of them, each at most
    ``limits.header_block`` bytes).  :meth:`commit` names the files once the form is whole;
    :meth:`discard` removes whatever was not named.  ``guard`` and ``hold`` are
    :func:`post_form`'s.
    """

    def __init__(self, folder: UploadFolder, limits: HeadLimits, max_files: int,
                 guard: Optional[Callable[[str], None]], hold: Optional[Hold]) -> None:
        self.folder, self.limits, self.max_files, self.guard = folder, limits, max_files, guard
        self.hold = hold
        self.files: List[PendingFile] = []
        self._names: Set[str] = set()
        self._current: Optional[PendingFile] = None
        self._fields = 0
        self._field_size = 0

    def start_part(self, part: Part) -> None:
        """Open a temporary file for a file part; count a field."""
        self._current = None
        if not part.filename:  # a plain field, or a file input left empty (filename="")
            self._fields += 1
            self._field_size = 0
            if self._fields > self.limits.header_count:
                raise HTTPError(413, "The form has too many fields (max_header_count ="
                                     f" {self.limits.header_count}).")
            return
        # Some senders give a whole path: only its last component names the file.
        name = NAME_SEPARATORS.split(part.filename)[-1]
        shown = self.folder.shown(name)
        if name in self._names:
            raise HTTPError(409, f"The form holds two files named {shown}.")
        if len(self.files) >= self.max_files:
            raise HTTPError(413, f"A form may upload at most {self.max_files} files"
                                 f" (max_upload_files = {self.max_files}).")
        self.folder.check(name)
        if self.guard is not None:
            self.guard(name)
        pending = self.folder.create(name)
        self.files.append(pending)
        self._names.add(name)
        self._current = pending

    def part_data(self, data: memoryview) -> None:
        """Write a file part's data; count a field's."""
        if self._current is not None:
            self._current.write(data)
            return
        self._field_size += len(data)
        if self._field_size > self.limits.header_block:
            raise HTTPError(413, "A form field is too large ("
                                 f"{size_limit('max_header_block', self.limits.header_block)}).")

    def end_part(self) -> None:
        """Finish a file part."""
        if self._current is not None:
            self._current.finish()

    def commit(self) -> None:
        """Name every file (423 before any is named, where ``hold`` finds one locked now); if
        one name is taken meanwhile, remove the new files named before it and refuse with
        409."""
        replace = self.folder.config.upload_overwrite
        with self.folder.held(), holding(self.hold, [pending.name for pending in self.files]):
            for index, pending in enumerate(self.files):
                try:
                    pending.commit(replace)
                except (FileExistsError, IsADirectoryError) as error:
                    for earlier in self.files[:index]:
                        if not earlier.replaced:
                            earlier.withdraw()
                    shown = self.folder.shown(pending.name)
                    if isinstance(error, IsADirectoryError):
                        raise folder_error(shown) from None
                    raise exists_error(shown) from None

    def discard(self) -> None:
        """Remove every temporary file left."""
        for pending in self.files:
            pending.discard()


def _wants_html(accept: Optional[str]) -> bool:
    """Whether the ``Accept`` field lists ``text/html``, as a browser's form submission does."""
    ranges = media_ranges(accept) if accept is not None else None
    return ranges is not None and any(
        (media.kind, media.subtype) == ("text", "html") for media in ranges)
