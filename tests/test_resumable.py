"""Resumable uploads without sockets: creation, offset retrieval, append and cancellation
(draft-ietf-httpbis-resumable-upload-15) through a real Dispatcher and BodyReader."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import time
from typing import Dict, Iterator, List, Tuple
from unittest import mock

from nex.files import resumable
from nex.files.leftovers import remove_stale_uploads, stale_after
from nex.files.pending import PendingFile
from nex.files.upload import UploadFolder
from nex.http.errors import HTTPError
from nex.http.response import Response
from tests.support.upload import ALICE, UploadTestCase

PARTIAL = ("Content-Type", "application/partial-upload")


def fields_of(response: Response) -> Dict[str, str]:
    return {name.lower(): value for name, value in response.headers}


class ResumableCase(UploadTestCase):
    """Helpers: create an upload, append to it, ask for its offset."""

    def create(self, data: bytes, complete: bool = False, target: str = "/dir/big.bin",
               **options) -> Tuple[Response, str]:
        """Create an upload of ``target`` with ``data``; the response and the resource's path."""
        headers = [("Upload-Complete", "?1" if complete else "?0"),
                   *options.pop("headers", ())]
        response = self.request(options.pop("method", "PUT"), target, data, headers=headers,
                                **options)
        location = fields_of(response).get("location", "")
        return response, location

    def append(self, resource: str, offset: int, data: bytes, complete: bool = False,
               headers=(), **options) -> Response:
        return self.request("PATCH", resource, data, headers=[
            PARTIAL, ("Upload-Offset", str(offset)),
            ("Upload-Complete", "?1" if complete else "?0"), *headers], **options)

    def offset(self, resource: str) -> Dict[str, str]:
        return fields_of(self.request("HEAD", resource, length=0))

    def refuse_completion(self, resource: str) -> None:
        """Complete the upload ``resource`` (2 bytes so far, overwriting on): 412."""
        self.refusal(412, "PATCH", resource, b"c", headers=[
            PARTIAL, ("Upload-Offset", "2"), ("Upload-Complete", "?1")], upload_overwrite=True)

    def etag(self, target: str) -> str:
        """The ETag GET gives ``target``."""
        response = self.request("HEAD", target, length=0)
        response.release()
        return fields_of(response)["etag"]

    def partials(self, folder: str = "dir"):
        return [name for name in self.names(folder) if name.startswith(".nex-upload-")]


class CreationTest(ResumableCase):

    def test_incomplete_creation_is_201_with_the_resource_and_104_before_the_body(self) -> None:
        response, location = self.create(b"first part")
        self.assertEqual(response.status, 201)
        fields = fields_of(response)
        self.assertRegex(location, r"^/dir/big\.bin\?upload=[0-9a-f]{32}rn[0-9a-f]{16}$")
        self.assertEqual((fields["upload-offset"], fields["upload-complete"]), ("10", "?0"))
        self.assertEqual(fields["cache-control"], "no-store")
        [(status, interim)] = self.exchange.interims
        self.assertEqual(status, 104)
        self.assertEqual(dict(interim)["Location"], location)
        self.assertEqual(dict(interim)["Upload-Limit"],
                         f"max-size={self.config.max_upload_size}, expires=86400")
        self.assertNotIn("big.bin", self.names("dir"))
        self.assertEqual(len(self.partials()), 1)

    def test_complete_creation_is_answered_as_put(self) -> None:
        response, location = self.create(b"whole file", complete=True)
        self.assertEqual(response.status, 201)
        self.assertEqual(location, "/dir/big.bin")
        self.assertIn("etag", fields_of(response))
        self.assertEqual(self.read("dir/big.bin"), b"whole file")
        self.assertEqual(self.partials(), [])

    def test_a_post_to_a_file_address_creates_an_upload_too(self) -> None:
        response, location = self.create(b"abc", complete=True, method="POST")
        self.assertEqual((response.status, location), (201, "/dir/big.bin"))

    def test_declared_length_is_kept_in_the_token(self) -> None:
        _, location = self.create(b"ab", headers=[("Upload-Length", "5")])
        self.assertRegex(location, r"r5n[0-9a-f]{16}$")
        self.assertEqual(self.offset(location)["upload-length"], "5")

    def test_length_over_max_upload_size_is_413_before_anything_is_written(self) -> None:
        error = self.refusal(413, "PUT", "/dir/big.bin", b"", headers=[
            ("Upload-Complete", "?0"), ("Upload-Length", str(self.config.max_upload_size + 1))])
        self.assertIn("(max_upload_size = 100M)", error.detail)
        self.assertEqual(self.partials(), [])

    def test_upload_length_differing_from_a_complete_body_is_400(self) -> None:
        self.refusal(400, "PUT", "/dir/big.bin", b"abc",
                     headers=[("Upload-Complete", "?1"), ("Upload-Length", "4")])

    def test_malformed_fields_are_400(self) -> None:
        for field in [("Upload-Complete", "?2"), ("Upload-Complete", "1"),
                      ("Upload-Complete", "?1 "), ("Upload-Complete", "true")]:
            with self.subTest(field=field):
                self.refusal(400, "PUT", "/dir/big.bin", b"x", headers=[field])
        for value in ["-1", "+5", "1_0", "0x10", "1234567890123456", ""]:
            with self.subTest(length=value):
                self.refusal(400, "PUT", "/dir/big.bin", b"x", headers=[
                    ("Upload-Complete", "?0"), ("Upload-Length", value)])

    def test_an_existing_file_is_409_without_overwrite_as_for_put(self) -> None:
        self.refusal(409, "PUT", "/hello.txt", b"x", headers=[("Upload-Complete", "?0")])
        self.assertEqual(self.partials(""), [])

    def test_a_missing_folder_is_404_and_a_hidden_one_too(self) -> None:
        self.refusal(404, "PUT", "/nowhere/a.bin", b"x", headers=[("Upload-Complete", "?0")])
        os.mkdir(os.path.join(self.root, ".hidden"))
        self.refusal(404, "PUT", "/.hidden/a.bin", b"x", headers=[("Upload-Complete", "?0")])

    def test_uploads_from_another_site_are_403(self) -> None:
        self.refusal(403, "PUT", "/dir/a.bin", b"x", headers=[
            ("Upload-Complete", "?0"), ("Origin", "http://evil.example")])

    def test_dns_rebinding_host_cannot_create_append_or_cancel(self) -> None:
        self.refusal(403, "PUT", "/dir/a.bin", b"x", headers=[("Upload-Complete", "?0")],
                     host="rebound.example")
        self.assertEqual(self.partials(), [])
        _, resource = self.create(b"ab")
        self.refusal(403, "PATCH", resource, b"c", headers=[
            PARTIAL, ("Upload-Offset", "2"), ("Upload-Complete", "?1")], host="rebound.example")
        self.refusal(403, "DELETE", resource, length=0, host="rebound.example")
        self.assertEqual(self.offset(resource)["upload-offset"], "2")

    def test_writes_need_uploads_on_and_a_login_where_protected(self) -> None:
        self.protect("/dir/")
        self.refusal(401, "PUT", "/dir/a.bin", b"x", headers=[("Upload-Complete", "?0")])
        self.assertEqual(self.partials(), [])
        response, _ = self.create(b"x", headers=[ALICE])
        self.assertEqual(response.status, 201)

    def test_a_link_into_a_protected_folder_takes_no_anonymous_upload(self) -> None:
        os.mkdir(os.path.join(self.root, "private"))
        os.symlink("../private", os.path.join(self.root, "dir", "door"))
        self.protect("/private/")
        self.refusal(401, "PUT", "/dir/door/a.bin", b"x", headers=[("Upload-Complete", "?0")])
        self.assertEqual(self.partials("private"), [])
        response, location = self.create(b"x", target="/dir/door/a.bin", headers=[ALICE])
        self.assertEqual(response.status, 201)
        # The upload resource is as closed to anonymous clients as the file it makes.
        self.refusal(401, "HEAD", location, length=0)
        self.refusal(401, "PATCH", location, b"y", headers=[
            PARTIAL, ("Upload-Offset", "1"), ("Upload-Complete", "?1")])
        self.refusal(401, "DELETE", location, length=0)
        self.assertEqual(len(self.partials("private")), 1)
        response = self.append(location, 1, b"y", complete=True, headers=[ALICE])
        self.assertEqual(response.status, 201)
        with open(os.path.join(self.root, "private", "a.bin"), "rb") as stored:
            self.assertEqual(stored.read(), b"xy")

    def test_uploads_off_leave_upload_complete_to_405(self) -> None:
        self.refusal(405, "PATCH", "/dir/a.bin?upload=x", b"", upload=False)


class AppendTest(ResumableCase):

    def test_appends_resume_at_the_offset_and_the_last_one_names_the_file(self) -> None:
        _, resource = self.create(b"one,")
        response = self.append(resource, 4, b"two,")
        self.assertEqual(response.status, 204)
        self.assertEqual(fields_of(response)["upload-offset"], "8")
        self.assertEqual(self.offset(resource)["upload-offset"], "8")
        response = self.append(resource, 8, b"three", complete=True)
        self.assertEqual(response.status, 201)
        self.assertEqual(self.read("dir/big.bin"), b"one,two,three")
        self.assertEqual(self.partials(), [])
        self.refusal(404, "HEAD", resource, length=0)

    def test_wrong_offset_is_409_naming_the_right_one(self) -> None:
        _, resource = self.create(b"12345")
        error = self.refusal(409, "PATCH", resource, b"6789", headers=[
            PARTIAL, ("Upload-Offset", "3"), ("Upload-Complete", "?1")])
        self.assertIn(("Upload-Offset", "5"), error.headers)
        self.assertEqual(self.offset(resource)["upload-offset"], "5")

    def test_an_interrupted_append_keeps_what_arrived(self) -> None:
        _, resource = self.create(b"")
        self.refusal(400, "PATCH", resource, b"", length=10, pieces=[b"abcd"], headers=[
            PARTIAL, ("Upload-Offset", "0"), ("Upload-Complete", "?1")])
        self.assertEqual(self.offset(resource)["upload-offset"], "4")
        self.append(resource, 4, b"efghij", complete=True)
        self.assertEqual(self.read("dir/big.bin"), b"abcdefghij")

    def test_an_interrupted_creation_keeps_what_arrived(self) -> None:
        with self.assertRaises(HTTPError):
            self.request("PUT", "/dir/big.bin", b"", length=10, pieces=[b"abc"],
                         headers=[("Upload-Complete", "?1")])
        [(_, interim)] = self.exchange.interims
        resource = dict(interim)["Location"]
        self.assertRegex(resource, r"r10n[0-9a-f]{16}$")
        fields = self.offset(resource)
        self.assertEqual((fields["upload-offset"], fields["upload-length"]), ("3", "10"))

    def test_a_completing_append_short_of_the_length_is_400_and_keeps_the_data(self) -> None:
        _, resource = self.create(b"ab", headers=[("Upload-Length", "5")])
        self.refusal(400, "PATCH", resource, b"c", headers=[
            PARTIAL, ("Upload-Offset", "2"), ("Upload-Complete", "?1")])
        self.assertEqual(self.offset(resource)["upload-offset"], "3")

    def test_an_append_past_the_length_is_400(self) -> None:
        _, resource = self.create(b"ab", headers=[("Upload-Length", "3")])
        self.refusal(400, "PATCH", resource, b"cd", headers=[
            PARTIAL, ("Upload-Offset", "2"), ("Upload-Complete", "?1")])
        self.assertEqual(self.offset(resource)["upload-offset"], "2")

    def test_an_append_beyond_max_upload_size_is_413_naming_the_whole_limit(self) -> None:
        _, resource = self.create(b"ab")
        for framing in ("length", "chunked"):
            with self.subTest(framing=framing):
                error = self.refusal(413, "PATCH", resource, b"x" * 20, headers=[
                    PARTIAL, ("Upload-Offset", "2"), ("Upload-Complete", "?1")],
                    framing=framing, max_upload_size=10)
                # Not the 8 bytes that were left: the setting as it stands.
                self.assertIn("(max_upload_size = 10)", error.detail)

    def test_another_content_type_is_415(self) -> None:
        _, resource = self.create(b"ab")
        self.refusal(415, "PATCH", resource, b"c", headers=[
            ("Content-Type", "application/octet-stream"), ("Upload-Offset", "2"),
            ("Upload-Complete", "?0")])

    def test_a_missing_offset_is_400(self) -> None:
        _, resource = self.create(b"ab")
        self.refusal(400, "PATCH", resource, b"c", headers=[PARTIAL, ("Upload-Complete", "?0")])

    def test_an_append_while_another_runs_is_409(self) -> None:
        _, resource = self.create(b"ab")
        [partial] = self.partials()
        with open(os.path.join(self.root, "dir", partial), "rb") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            error = self.refusal(409, "PATCH", resource, b"c", headers=[
                PARTIAL, ("Upload-Offset", "2"), ("Upload-Complete", "?0")])
            self.assertIn(("Retry-After", "1"), error.headers)
        self.append(resource, 2, b"c")

    def test_an_append_while_the_creation_still_writes_is_409_not_interleaved(self) -> None:
        refusals = []

        def append_meanwhile(index: int) -> None:
            if index != 1:
                return
            [(_, interim)] = self.exchange.interims
            resource = dict(interim)["Location"]
            outer = self.exchange
            try:
                self.append(resource, 2, b"XX")
            except HTTPError as error:
                refusals.append(error.status)
            self.exchange = outer
        self.request("PUT", "/dir/big.bin", b"", length=4, pieces=[b"ab", b"cd"],
                     headers=[("Upload-Complete", "?1")], before_piece=append_meanwhile)
        self.assertEqual(refusals, [409])
        self.assertEqual(self.read("dir/big.bin"), b"abcd")

    def test_an_append_while_the_completion_waits_for_its_folder_is_409(self) -> None:
        # The completion waits while another upload names a file in the folder: no append
        # may slip in meanwhile and change the file after it is named.
        _, resource = self.create(b"abcd")
        refusals = []
        held = UploadFolder.held

        @contextlib.contextmanager
        def append_meanwhile(folder: UploadFolder) -> Iterator[None]:
            try:
                self.append(resource, 4, b"EXTRA")
            except HTTPError as error:
                refusals.append(error.status)
            with held(folder):
                yield

        with mock.patch.object(UploadFolder, "held", append_meanwhile):
            response = self.append(resource, 4, b"", complete=True)
        self.assertEqual(refusals, [409])
        self.assertEqual(self.read("dir/big.bin"), b"abcd")
        self.assertEqual(fields_of(response)["etag"], self.etag("/dir/big.bin"))

    def test_an_append_that_locks_the_upload_once_it_is_named_is_404(self) -> None:
        # It opened the partial data before the completion named it, and got its lock
        # after: it must not write to the named file, which overwriting lets it find.
        _, resource = self.create(b"abcd", upload_overwrite=True)
        lock = resumable._lock
        completions: List[int] = []

        def complete_first(pending: PendingFile) -> None:
            if not completions:
                completions.append(0)  # the completion's own lock is taken as it was
                completions[0] = self.append(resource, 4, b"", complete=True,
                                             upload_overwrite=True).status
            lock(pending)

        with mock.patch.object(resumable, "_lock", complete_first):
            self.refusal(404, "PATCH", resource, b"EXTRA", headers=[
                PARTIAL, ("Upload-Offset", "4"), ("Upload-Complete", "?0")],
                upload_overwrite=True)
        self.assertEqual(completions, [201])
        self.assertEqual(self.read("dir/big.bin"), b"abcd")

    def test_a_name_taken_meanwhile_is_409_at_completion(self) -> None:
        _, resource = self.create(b"ab")
        self.write("dir/big.bin", b"someone else's")
        self.refusal(409, "PATCH", resource, b"c", headers=[
            PARTIAL, ("Upload-Offset", "2"), ("Upload-Complete", "?1")])
        self.assertEqual(self.read("dir/big.bin"), b"someone else's")

    def test_if_none_match_at_creation_still_holds_at_completion(self) -> None:
        # The client asked for no file to be replaced; one made meanwhile is kept (412),
        # also with overwriting on.
        _, resource = self.create(b"ab", headers=[("If-None-Match", "*")],
                                  upload_overwrite=True)
        self.assertRegex(resource, r"rxn[0-9a-f]{16}$")
        self.write("dir/big.bin", b"someone else's")
        self.refuse_completion(resource)
        self.assertEqual(self.read("dir/big.bin"), b"someone else's")
        # The data stays, for the client to complete once the name is free.
        os.unlink(os.path.join(self.root, "dir", "big.bin"))
        self.assertEqual(self.append(resource, 3, b"", complete=True,
                                     upload_overwrite=True).status, 201)
        self.assertEqual(self.read("dir/big.bin"), b"abc")

    def test_if_match_at_creation_still_holds_at_completion(self) -> None:
        # The client asked to replace the file it knew; one changed meanwhile is kept (412).
        for condition in ("If-Match", "If-Unmodified-Since"):
            with self.subTest(condition=condition):
                self.write("dir/big.bin", b"known")
                value = (self.etag("/dir/big.bin") if condition == "If-Match"
                         else "Fri, 01 Jan 2100 00:00:00 GMT")
                _, resource = self.create(b"ab", headers=[(condition, value)],
                                          upload_overwrite=True)
                self.assertRegex(resource, r"rm[0-9a-f]+-[0-9a-f]+n[0-9a-f]{16}$")
                self.write("dir/big.bin", b"someone else's")
                self.refuse_completion(resource)
                self.assertEqual(self.read("dir/big.bin"), b"someone else's")
                # It never could complete now: the upload is cancelled, its data gone.
                self.refusal(404, "HEAD", resource, length=0)
                self.assertEqual(self.partials(), [])

    def test_if_match_lets_the_unchanged_file_be_replaced_at_completion(self) -> None:
        # Also a file modified before 1970, whose ETag holds a negative time.
        for mtime_ns in (None, -100 * 10**9):
            with self.subTest(mtime_ns=mtime_ns):
                path = self.write("dir/big.bin", b"known")
                if mtime_ns is not None:
                    os.utime(path, ns=(mtime_ns, mtime_ns))
                etag = self.etag("/dir/big.bin")
                _, resource = self.create(b"ab", headers=[("If-Match", etag)],
                                          upload_overwrite=True)
                self.assertEqual(self.offset(resource)["upload-offset"], "2")
                self.assertEqual(self.append(resource, 2, b"c", complete=True,
                                             upload_overwrite=True).status, 204)
                self.assertEqual(self.read("dir/big.bin"), b"abc")

    def test_a_completion_after_the_file_was_replaced_is_newer_than_it(self) -> None:
        # The data came in before someone else replaced the file, and the completion after
        # that: a client holding their file's Last-Modified must not be told Not Modified.
        _, resource = self.create(b"mine", upload_overwrite=True)
        now = time.time_ns()
        arrived = now - 200 * 10**9
        os.utime(os.path.join(self.root, "dir", self.partials()[0]), ns=(arrived, arrived))
        replaced = now - 100 * 10**9
        os.utime(self.write("dir/big.bin", b"theirs"), ns=(replaced, replaced))
        theirs = self.request("HEAD", "/dir/big.bin", length=0)
        theirs.release()
        self.assertEqual(self.append(resource, 4, b"", complete=True,
                                     upload_overwrite=True).status, 204)
        self.assertEqual(self.read("dir/big.bin"), b"mine")
        mine = self.request("HEAD", "/dir/big.bin", length=0, headers=[
            ("If-Modified-Since", fields_of(theirs)["last-modified"])])
        mine.release()
        self.assertEqual(mine.status, 200)

    def test_if_match_star_needs_a_file_there_at_completion(self) -> None:
        self.write("dir/big.bin", b"known")
        _, resource = self.create(b"ab", headers=[("If-Match", "*")], upload_overwrite=True)
        self.assertRegex(resource, r"rmn[0-9a-f]{16}$")
        self.write("dir/big.bin", b"changed, and still there")
        self.assertEqual(self.append(resource, 2, b"c", complete=True,
                                     upload_overwrite=True).status, 204)
        self.write("dir/big.bin", b"known")
        _, resource = self.create(b"ab", headers=[("If-Match", "*")], upload_overwrite=True)
        os.unlink(os.path.join(self.root, "dir", "big.bin"))
        self.refuse_completion(resource)
        self.assertFalse(os.path.exists(os.path.join(self.root, "dir", "big.bin")))

    def test_the_token_completes_the_upload_under_its_own_name_only(self) -> None:
        _, resource = self.create(b"ab")
        token = resource.partition("?")[2]
        for method in ("HEAD", "PATCH", "DELETE"):
            with self.subTest(method=method):
                self.refusal(404, method, "/dir/other.bin?" + token, length=0, headers=[
                    PARTIAL, ("Upload-Offset", "2"), ("Upload-Complete", "?1")])
        self.assertFalse(os.path.exists(os.path.join(self.root, "dir", "other.bin")))
        self.assertEqual(self.append(resource, 2, b"c", complete=True).status, 201)
        self.assertEqual(self.read("dir/big.bin"), b"abc")

    def test_a_token_made_before_names_were_bound_still_works(self) -> None:
        _, resource = self.create(b"ab")
        old = re.sub(r"n[0-9a-f]{16}$", "", resource)
        os.rename(os.path.join(self.root, "dir", ".nex-upload-" + resource.partition("=")[2]),
                  os.path.join(self.root, "dir", ".nex-upload-" + old.partition("=")[2]))
        self.assertEqual(self.append(old, 2, b"c", complete=True).status, 201)
        self.assertEqual(self.read("dir/big.bin"), b"abc")

    def test_the_token_is_bound_to_its_folder(self) -> None:
        _, resource = self.create(b"ab")
        token = resource.partition("?")[2]
        self.refusal(404, "HEAD", "/other.bin?" + token, length=0)

    def test_malformed_and_unknown_tokens_are_404(self) -> None:
        for token in ["", "../hello.txt", "0" * 32 + "r", "x" * 33, "0" * 32]:
            with self.subTest(token=token):
                self.refusal(404, "HEAD", f"/dir/big.bin?upload={token}", length=0)

    def test_a_plain_put_temporary_file_is_not_an_upload_resource(self) -> None:
        seen = []

        def peek(index: int) -> None:
            seen.extend(name for name in os.listdir(os.path.join(self.root, "dir"))
                        if name.startswith(".nex-upload-"))
        self.request("PUT", "/dir/plain.bin", b"abc", pieces=[b"a", b"bc"], before_piece=peek)
        token = seen[0][len(".nex-upload-"):]
        self.refusal(404, "HEAD", f"/dir/plain.bin?upload={token}", length=0)


class ExpiryAndCancelTest(ResumableCase):

    def test_an_expired_upload_is_404_and_removed(self) -> None:
        _, resource = self.create(b"ab")
        [partial] = self.partials()
        old = time.time() - self.config.upload_expiry - 10
        os.utime(os.path.join(self.root, "dir", partial), (old, old))
        self.refusal(404, "PATCH", resource, b"c", headers=[
            PARTIAL, ("Upload-Offset", "2"), ("Upload-Complete", "?1")])
        self.assertEqual(self.partials(), [])

    def test_upload_limit_counts_down_the_expiry(self) -> None:
        _, resource = self.create(b"ab")
        [partial] = self.partials()
        old = time.time() - 3600
        os.utime(os.path.join(self.root, "dir", partial), (old, old))
        limit = self.offset(resource)["upload-limit"]
        expires = int(limit.rpartition("expires=")[2])
        self.assertLessEqual(expires, 86400 - 3600)
        self.assertGreater(expires, 86400 - 3700)

    def test_delete_cancels_the_upload(self) -> None:
        _, resource = self.create(b"ab")
        self.assertEqual(self.request("DELETE", resource, length=0).status, 204)
        self.assertEqual(self.partials(), [])
        self.refusal(404, "DELETE", resource, length=0)
        self.assertNotIn("big.bin", self.names("dir"))

    def test_options_and_other_methods_on_the_resource(self) -> None:
        _, resource = self.create(b"ab")
        response = self.request("OPTIONS", resource, length=0)
        self.assertEqual(fields_of(response)["allow"], "HEAD, OPTIONS, PATCH, DELETE")
        self.refusal(405, "GET", resource, length=0)


class LeftoversTest(ResumableCase):
    """The start-up clean-up and resumable uploads: partial data is its client's until
    ``upload_expiry``, however long ago the last request ended."""

    def backdate(self, name: str, seconds: float) -> None:
        past = time.time() - seconds
        os.utime(os.path.join(self.root, "dir", name), (past, past))

    def test_start_up_clean_up_spares_a_partial_upload_younger_than_upload_expiry(self) -> None:
        _, resource = self.create(b"first")
        [partial] = self.partials()
        crash = f".nex-upload-{'0' * 32}"
        self.write(f"dir/{crash}", b"half")
        # Both untouched far longer than an upload in progress may be: the crash's file is
        # stale, the partial upload is not (upload_expiry is 24 hours).
        self.backdate(partial, 2 * 3600)
        self.backdate(crash, 2 * 3600)
        self.assertGreater(2 * 3600, stale_after(self.config))
        self.assertEqual(remove_stale_uploads(self.config), (1, 0))
        self.assertEqual(self.partials(), [partial])
        self.assertEqual(self.offset(resource)["upload-offset"], "5")
        self.assertEqual(self.append(resource, 5, b" and last", complete=True).status, 201)
        self.assertEqual(self.read("dir/big.bin"), b"first and last")

    def test_start_up_clean_up_removes_an_expired_partial_upload(self) -> None:
        self.create(b"first")
        [partial] = self.partials()
        self.backdate(partial, self.config.upload_expiry + 60)
        self.assertEqual(remove_stale_uploads(self.config), (1, 0))
        self.assertEqual(self.partials(), [])

    def test_a_short_upload_expiry_still_spares_uploads_in_progress(self) -> None:
        config = dataclasses.replace(self.config, upload_expiry=60,
                                     request_head_timeout=600.0)
        self.create(b"first")
        [partial] = self.partials()
        self.backdate(partial, 120)  # past upload_expiry, not stale for a body in progress
        self.assertEqual(remove_stale_uploads(config), (0, 0))
        self.assertEqual(self.partials(), [partial])
