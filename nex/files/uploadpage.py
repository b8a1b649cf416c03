"""The upload panel of a listing: the plain form, and the script that builds on it.

With uploads on, a listing shows the multipart form of :mod:`nex.files.upload`, which works
without JavaScript, and loads ``upload.js`` (from the templates folder, else the one shipped
with Nex) from ``/?nex=upload.js``.  The script adds drag-and-drop of files and folders,
uploads them with the resumable protocol (:mod:`nex.files.resumable`) showing progress per
file and in total, cancels, resumes by itself after a lost connection or a restart of Nex,
offers to keep both files on a conflict, and adds New folder, Rename and Delete (MKCOL, MOVE,
DELETE) where ``allow_rename`` and ``allow_delete`` permit.  The form tells the script what
is allowed in the ``data-`` attributes of its ``<script>`` element.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

from nex.files.templates import TemplateError
from nex.files.upload import UPLOAD_FORM
from nex.http.conditional import not_modified
from nex.http.request import Request
from nex.http.response import Response

if TYPE_CHECKING:
    from nex.process.config import Config

#: The query on ``/`` that asks for the script.
SCRIPT_QUERY = "nex=upload.js"


class UploadPage:
    """The script's bytes, read once at start-up, and the form that loads it."""

    def __init__(self, script: bytes, modified: int) -> None:
        self.script = script
        self.modified = modified
        self.etag = f'"{hashlib.sha256(script).hexdigest()[:20]}"'

    @classmethod
    def load(cls, templates: str, shipped: str) -> UploadPage:
        """The page with ``upload.js`` from the folder ``templates``, else from ``shipped``;
        ``TemplateError`` when it cannot be read."""
        path = os.path.join(templates, "upload.js")
        if not os.path.isfile(path):
            path = os.path.join(shipped, "upload.js")
        try:
            with open(path, "rb") as source:
                return cls(source.read(), int(os.fstat(source.fileno()).st_mtime))
        except OSError as error:
            raise TemplateError(f"cannot read the upload script {path}: {error.strerror}"
                                ) from None

    def form(self, config: Config) -> str:
        """The form a listing shows, and the script, told what it may offer."""
        return (f'{UPLOAD_FORM}<script src="/?{SCRIPT_QUERY}" defer data-mkcol="1"'
                f' data-rename="{int(config.allow_rename)}"'
                f' data-delete="{int(config.allow_delete)}"></script>')

    def claims(self, request: Request) -> bool:
        """Whether ``request`` asks for the script."""
        return (request.method in ("GET", "HEAD") and request.path == "/"
                and request.query == SCRIPT_QUERY)

    def serve(self, request: Request) -> Response:
        """The script (``304`` when the client has it already)."""
        headers = [("ETag", self.etag), ("Cache-Control", "no-cache")]
        if not_modified(request.headers, request.method, self.etag, self.modified):
            return Response(304, headers)
        return Response(200, [("Content-Type", "text/javascript; charset=utf-8"), *headers],
                        body=(self.script,))
