"""The upload panel without sockets: the script's address, its caching, and the listing's
form that loads it, told what the server allows."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from nex.files.filecache import SmallFileCache
from nex.files.uploadpage import UploadPage
from nex.files.webdav import WebDav
from nex.site.hosts import HostValidator
from nex.site.routing import Dispatcher
from tests.support import REPO
from tests.support.upload import UploadTestCase

SHIPPED = os.path.join(REPO, "other_templates")


class UploadPageTest(UploadTestCase):

    def site(self, file_cache: Optional[SmallFileCache] = None, **settings) -> Dispatcher:
        config = dataclasses.replace(self.config, **settings)
        return Dispatcher(config, self.templates, HostValidator(["*"]), "sig", file_cache,
                          dav=WebDav.for_site(config),
                          upload_page=UploadPage.load(config.templates, SHIPPED))

    def test_the_script_is_served_at_its_address_and_revalidated(self) -> None:
        response = self.request("GET", "/?nex=upload.js", length=0)
        headers = dict(response.headers)
        self.assertEqual(headers["Content-Type"], "text/javascript; charset=utf-8")
        with open(os.path.join(SHIPPED, "upload.js"), "rb") as shipped:
            self.assertEqual(b"".join(response.body), shipped.read())
        again = self.request("GET", "/?nex=upload.js", length=0,
                             headers=[("If-None-Match", headers["ETag"])])
        self.assertEqual(again.status, 304)

    def test_a_templates_folder_may_bring_its_own_script(self) -> None:
        folder = os.path.join(self.base, "templates")
        os.mkdir(folder)
        with open(os.path.join(folder, "upload.js"), "wb") as out:
            out.write(b"// mine\n")
        self.assertEqual(UploadPage.load(folder, SHIPPED).script, b"// mine\n")

    def test_the_listing_loads_the_script_with_what_is_allowed(self) -> None:
        page = b"".join(self.request("GET", "/dir/", length=0, allow_delete=True).body)
        self.assertIn(b'<form class="upload" method="post" enctype="multipart/form-data">',
                      page)
        self.assertIn(b'<script src="/?nex=upload.js" defer data-mkcol="1" data-rename="0"'
                      b' data-delete="1"></script>', page)

    def test_other_queries_on_the_root_are_the_listing(self) -> None:
        page = b"".join(self.request("GET", "/?nex=other.js", length=0).body)
        self.assertIn(b"<table>", page)
