"""Uploads without sockets: PUT and form POST through a real Dispatcher and BodyReader."""

from __future__ import annotations

import errno
import fcntl
import os
import unittest
from typing import Callable, ContextManager, Dict, Iterable, List, Tuple
from unittest import mock

from nex.site.routing import Dispatcher
from nex.http.errors import HTTPError
from nex.files.filecache import SmallFileCache
from nex.http.request import Headers, Request
from nex.http.response import Response
from nex.files.paths import split_path
from nex.files.pending import PendingFile
from nex.files.upload import (FILE_METHODS, FOLDER_METHODS, UPLOAD_METHODS, UploadFolder,
                              allowed_methods)
from tests.support import (BOUNDARY, FORM_TYPE, HTML, body_bytes, fields, file_part, form_body,
                           part)
from tests.support.upload import UploadTestCase, race


class PutTest(UploadTestCase):
    """PUT /folder/name: a new file, a refused or allowed replacement, and its headers."""

    def test_new_file_is_201_with_location_and_etag(self) -> None:
        response = self.request("PUT", "/dir/new%20file.txt", b"fresh bytes")
        self.assertEqual(response.status, 201)
        self.assertEqual(fields(response)["location"], "/dir/new%20file.txt")
        self.assertEqual(body_bytes(response), b"/dir/new%20file.txt\n")
        self.assertEqual(self.read("dir/new file.txt"), b"fresh bytes")
        served = self.site().respond(Request(
            "GET", "/dir/new%20file.txt", "/dir/new%20file.txt", "", "HTTP/1.1",
            Headers([("Host", "localhost")]), "localhost", True), None, "127.0.0.1")
        self.addCleanup(served.release)
        self.assertEqual(fields(served)["etag"], fields(response)["etag"])
        self.assertNoTemporaryFiles()

    def test_file_in_the_root(self) -> None:
        self.assertEqual(self.request("PUT", "/top.txt", b"x").status, 201)
        self.assertEqual(self.read("top.txt"), b"x")

    def test_empty_body_makes_an_empty_file(self) -> None:
        self.assertEqual(self.request("PUT", "/dir/empty", b"").status, 201)
        self.assertEqual(self.read("dir/empty"), b"")

    def test_body_in_many_pieces(self) -> None:
        data = bytes(range(256)) * 1000
        pieces = [data[at:at + 777] for at in range(0, len(data), 777)]
        self.assertEqual(self.request("PUT", "/dir/big.bin", data, pieces=pieces).status, 201)
        self.assertEqual(self.read("dir/big.bin"), data)

    def test_chunked_body(self) -> None:
        response = self.request("PUT", "/dir/chunked.txt", b"a chunked body", framing="chunked")
        self.assertEqual(response.status, 201)
        self.assertEqual(self.read("dir/chunked.txt"), b"a chunked body")

    def test_existing_file_is_409_and_kept_when_overwriting_is_off(self) -> None:
        error = self.refusal(409, "PUT", "/hello.txt", b"replacement")
        self.assertIn("/hello.txt", error.detail)
        self.assertEqual(self.read("hello.txt"), b"hello, world\n")
        self.assertEqual(self.exchange.received, 0)  # refused before the body was read
        self.assertNoTemporaryFiles()

    def test_existing_file_is_replaced_with_204_when_overwriting_is_on(self) -> None:
        response = self.request("PUT", "/hello.txt", b"replacement", upload_overwrite=True)
        self.assertEqual(response.status, 204)
        self.assertNotIn("location", fields(response))
        self.assertIn("etag", fields(response))
        self.assertEqual(self.read("hello.txt"), b"replacement")
        self.assertNoTemporaryFiles()

    def test_folder_name_is_409(self) -> None:
        self.refusal(409, "PUT", "/dir", b"x")
        self.refusal(409, "PUT", "/dir", b"x", upload_overwrite=True)
        self.assertTrue(os.path.isdir(os.path.join(self.root, "dir")))

    def test_folder_address_is_405_with_the_folder_methods(self) -> None:
        for target in ("/", "/dir/", "/dir/.", "/new/"):
            with self.subTest(target=target):
                error = self.refusal(405, "PUT", target, b"x")
                self.assertEqual(error.headers, (("Allow", "GET, HEAD, OPTIONS, POST"),))

    def test_missing_folder_is_404_and_nothing_is_made(self) -> None:
        error = self.refusal(404, "PUT", "/nope/a.txt", b"x")
        self.assertEqual(error.detail, "The requested path /nope/a.txt was not found.")
        self.refusal(404, "PUT", "/hello.txt/a.txt", b"x")
        self.assertFalse(os.path.exists(os.path.join(self.root, "nope")))

    def test_preconditions(self) -> None:
        site = self.site(upload_overwrite=True)
        etag = fields(self.request("PUT", "/p.txt", b"one", site=site))["etag"]
        self.refusal(412, "PUT", "/p.txt", b"two", headers=[("If-None-Match", "*")], site=site)
        self.refusal(412, "PUT", "/p.txt", b"two", headers=[("If-Match", '"other"')], site=site)
        self.refusal(412, "PUT", "/q.txt", b"two", headers=[("If-Match", "*")], site=site)
        self.assertEqual(self.read("p.txt"), b"one")
        response = self.request("PUT", "/p.txt", b"two", headers=[("If-Match", etag)], site=site)
        self.assertEqual(response.status, 204)
        self.assertEqual(self.read("p.txt"), b"two")
        response = self.request("PUT", "/q.txt", b"new", headers=[("If-None-Match", "*")],
                                site=site)
        self.assertEqual(response.status, 201)

    def test_conflict_wins_over_preconditions(self) -> None:
        # RFC 9110 §13.2.1: without the conditions the answer would be 409, so they are
        # not evaluated.
        self.refusal(409, "PUT", "/hello.txt", b"x", headers=[("If-Match", '"no"')])

    def test_body_over_the_limit_is_413_before_it_is_read(self) -> None:
        site = self.site(max_upload_size=10)
        self.refusal(413, "PUT", "/dir/big", b"x" * 11, site=site,
                     headers=[("Expect", "100-continue")])
        self.assertEqual(self.exchange.continues, 0)
        self.assertEqual(self.names("dir"), [])
        self.assertEqual(self.request("PUT", "/dir/fits", b"x" * 10, site=site).status, 201)

    def test_upload_limit_replaces_the_request_body_limit(self) -> None:
        data = b"x" * (self.config.max_request_body + 1)
        self.assertEqual(self.request("PUT", "/dir/big", data).status, 201)
        self.assertEqual(len(self.read("dir/big")), len(data))

    def test_chunked_body_over_the_limit_is_413_and_leaves_nothing(self) -> None:
        site = self.site(max_upload_size=10)
        self.refusal(413, "PUT", "/dir/big", b"x" * 11, framing="chunked", site=site)
        self.assertEqual(self.names("dir"), [])

    def test_client_leaving_mid_body_leaves_nothing(self) -> None:
        error = self.refusal(400, "PUT", "/dir/cut.bin", b"", length=100,
                             pieces=[b"x" * 40, b"y" * 40])
        self.assertTrue(error.close)
        self.assertEqual(self.names("dir"), [])

    def test_broken_chunked_framing_leaves_nothing(self) -> None:
        self.refusal(400, "PUT", "/dir/bad", framing="chunked", pieces=[b"5\r\nabcdeXX"])
        self.assertEqual(self.names("dir"), [])

    def test_temporary_file_is_hidden_while_the_body_arrives(self) -> None:
        seen: List[List[str]] = []

        def look(index: int) -> None:
            seen.append(self.names("dir"))
            if index:
                site = self.site(dotfiles=True)
                for name in seen[-1]:
                    response = site.respond(Request("GET", "/dir/" + name, "/dir/" + name, "",
                                                    "HTTP/1.1", Headers([("Host", "h")]), "h",
                                                    True), None, "127.0.0.1")
                    self.assertEqual(response.status, 404)

        self.request("PUT", "/dir/slow.txt", b"abcdef", pieces=[b"abc", b"def"],
                     before_piece=look)
        self.assertEqual(len(seen[1]), 1)
        self.assertTrue(seen[1][0].startswith(".nex-upload-"))
        self.assertEqual(self.names("dir"), ["slow.txt"])


class NameTest(UploadTestCase):
    """Names and places GET would refuse cannot be uploaded to."""

    def test_dot_segments_stay_inside_the_root(self) -> None:
        for target in ("/../outside/x.txt", "/dir/../../outside/y.txt",
                       "/%2e%2e/%2E%2E/outside/z.txt"):
            with self.subTest(target=target):
                self.refusal(404, "PUT", target, b"x")  # /outside/ is not in the root
        self.assertEqual(self.request("PUT", "/dir/../../../w.txt", b"w").status, 201)
        self.assertEqual(self.read("w.txt"), b"w")
        self.assertEqual(sorted(os.listdir(self.outside)), ["secret.txt"])

    def test_malformed_paths_are_400(self) -> None:
        for target in ("/dir/a%2fb", "/dir/a%5cb", "/dir/a%00b", "/dir/%ff", "/dir/a\\b"):
            with self.subTest(target=target):
                self.refusal(400, "PUT", target, b"x")

    def test_names_that_are_not_plain_are_400(self) -> None:
        for target in ("/dir/a%0Ab", "/dir/tab%09", "/dir/del%7F", "/dir/" + "n" * 300):
            with self.subTest(target=target):
                self.refusal(400, "PUT", target, b"x")
        self.assertEqual(self.names("dir"), [])

    def test_dotfiles_are_404_unless_allowed(self) -> None:
        for target in ("/dir/.env", "/.hidden/a.txt", "/dir/.git/config"):
            with self.subTest(target=target):
                error = self.refusal(404, "PUT", target, b"x")
                self.assertIn(target.replace("%2e", "."), error.detail)
        self.assertEqual(self.request("PUT", "/dir/.env", b"x", dotfiles=True).status, 201)

    def test_temporary_file_names_are_refused_even_with_dotfiles(self) -> None:
        self.refusal(404, "PUT", "/dir/.nex-upload-0123", b"x", dotfiles=True)

    def test_symlinked_folder_outside_the_root_is_refused(self) -> None:
        os.symlink(self.outside, os.path.join(self.root, "out"))
        for policy in ("inside", "never"):
            with self.subTest(policy=policy):
                self.refusal(404, "PUT", "/out/x.txt", b"x", symlinks=policy)
        self.assertEqual(sorted(os.listdir(self.outside)), ["secret.txt"])

    def test_symlinked_folder_inside_the_root_follows_the_policy(self) -> None:
        os.symlink("dir", os.path.join(self.root, "alias"))
        self.refusal(404, "PUT", "/alias/x.txt", b"x", symlinks="never")
        self.assertEqual(self.request("PUT", "/alias/x.txt", b"x").status, 201)
        self.assertEqual(self.read("dir/x.txt"), b"x")

    def test_symlink_to_a_file_outside_is_never_written_through(self) -> None:
        os.symlink(os.path.join(self.outside, "secret.txt"), os.path.join(self.root, "s.txt"))
        self.refusal(404, "PUT", "/s.txt", b"pwned", upload_overwrite=True)
        self.refusal(404, "POST", "/", form_body(file_part("s.txt", b"pwned")),
                     headers=[FORM_TYPE], upload_overwrite=True)
        with open(os.path.join(self.outside, "secret.txt"), "rb") as secret:
            self.assertEqual(secret.read(), b"secret\n")
        self.assertTrue(os.path.islink(os.path.join(self.root, "s.txt")))

    def test_allowed_symlink_is_replaced_not_written_through(self) -> None:
        os.symlink("hello.txt", os.path.join(self.root, "link.txt"))
        response = self.request("PUT", "/link.txt", b"new", upload_overwrite=True)
        self.assertEqual(response.status, 204)
        self.assertFalse(os.path.islink(os.path.join(self.root, "link.txt")))
        self.assertEqual(self.read("link.txt"), b"new")
        self.assertEqual(self.read("hello.txt"), b"hello, world\n")

    def test_special_file_is_refused_like_get(self) -> None:
        os.mkfifo(os.path.join(self.root, "pipe"))
        self.refusal(404, "PUT", "/pipe", b"x", upload_overwrite=True)


class ProtectedLinkTest(UploadTestCase):
    """A dangling link into a protected folder: a PUT through it asks for the login, as a
    GET does, instead of telling a stranger with a 404 that nothing is there."""

    def test_put_through_a_dangling_link_is_401_as_get_is(self) -> None:
        self.protect("/private/")
        os.makedirs(os.path.join(self.root, "private"))
        os.symlink("../private/missing.txt", os.path.join(self.root, "dir", "door.txt"))
        self.refusal(401, "GET", "/dir/door.txt", length=0)
        self.refusal(401, "PUT", "/dir/door.txt", b"x", upload_overwrite=True)
        self.assertTrue(os.path.islink(os.path.join(self.root, "dir", "door.txt")))
        self.assertFalse(os.path.exists(os.path.join(self.root, "private", "missing.txt")))


class RaceTest(UploadTestCase):
    """Names taken while a body arrives are never overwritten; files vanish with failures."""

    def take(self, name: str) -> Callable[[int], None]:
        def before_piece(index: int) -> None:
            if index == 1:
                self.write(name, b"someone else's")
        return before_piece

    def test_file_made_during_a_put_is_not_overwritten(self) -> None:
        self.refusal(409, "PUT", "/dir/r.txt", b"mine", pieces=[b"mi", b"ne"],
                     before_piece=self.take("dir/r.txt"))
        self.assertEqual(self.read("dir/r.txt"), b"someone else's")
        self.assertNoTemporaryFiles()

    def test_if_none_match_star_keeps_a_file_made_during_the_put(self) -> None:
        self.refusal(412, "PUT", "/dir/r.txt", b"mine", pieces=[b"mi", b"ne"],
                     headers=[("If-None-Match", "*")], before_piece=self.take("dir/r.txt"),
                     upload_overwrite=True)
        self.assertEqual(self.read("dir/r.txt"), b"someone else's")

    def test_if_match_keeps_a_file_changed_during_the_put(self) -> None:
        for condition in ("If-Match", "If-Unmodified-Since"):
            with self.subTest(condition=condition):
                self.write("dir/r.txt", b"known")
                response = self.request("HEAD", "/dir/r.txt", length=0)
                response.release()
                headers = [(condition, dict(response.headers)["ETag"]
                            if condition == "If-Match" else "Fri, 01 Jan 2100 00:00:00 GMT")]
                self.refusal(412, "PUT", "/dir/r.txt", b"mine", pieces=[b"mi", b"ne"],
                             headers=headers, before_piece=self.take("dir/r.txt"),
                             upload_overwrite=True)
                self.assertEqual(self.read("dir/r.txt"), b"someone else's")
                self.assertNoTemporaryFiles()

    def test_conditions_that_pin_nothing_let_a_changed_file_be_replaced(self) -> None:
        # If-Match: * asks only for some file; an invalid date is ignored (RFC 9110 §13.1.4).
        for headers in ([("If-Match", "*")], [("If-Unmodified-Since", "garbage")]):
            with self.subTest(headers=headers):
                self.write("dir/r.txt", b"known")
                response = self.request("PUT", "/dir/r.txt", b"mine", pieces=[b"mi", b"ne"],
                                        headers=headers, before_piece=self.take("dir/r.txt"),
                                        upload_overwrite=True)
                self.assertEqual(response.status, 204)
                self.assertEqual(self.read("dir/r.txt"), b"mine")

    def test_if_match_star_keeps_the_name_free_of_a_file_deleted_during_the_put(self) -> None:
        self.write("dir/r.txt", b"known")

        def delete(index: int) -> None:
            if index == 1:
                os.unlink(os.path.join(self.root, "dir", "r.txt"))
        self.refusal(412, "PUT", "/dir/r.txt", b"mine", pieces=[b"mi", b"ne"],
                     headers=[("If-Match", "*")], before_piece=delete, upload_overwrite=True)
        self.assertFalse(os.path.exists(os.path.join(self.root, "dir", "r.txt")))
        self.assertNoTemporaryFiles()

    def test_the_answer_tells_what_the_naming_found(self) -> None:
        # 201 or 204 says whether a file was replaced when the upload took the name, not
        # when its body began.
        response = self.request("PUT", "/dir/r.txt", b"mine", pieces=[b"mi", b"ne"],
                                before_piece=self.take("dir/r.txt"), upload_overwrite=True)
        self.assertEqual(response.status, 204)
        self.assertEqual(self.read("dir/r.txt"), b"mine")

        def delete(index: int) -> None:
            if index == 1:
                os.unlink(os.path.join(self.root, "dir", "r.txt"))
        response = self.request("PUT", "/dir/r.txt", b"again", pieces=[b"aga", b"in"],
                                before_piece=delete, upload_overwrite=True)
        self.assertEqual(response.status, 201)
        self.assertEqual(fields(response)["location"], "/dir/r.txt")

    def test_without_hard_links_a_claim_is_made_first(self) -> None:
        with mock.patch("os.link", side_effect=OSError(errno.EPERM, "no links")):
            self.assertEqual(self.request("PUT", "/dir/a.txt", b"via rename").status, 201)
            self.refusal(409, "PUT", "/dir/r.txt", b"mine", pieces=[b"mi", b"ne"],
                         before_piece=self.take("dir/r.txt"))
        self.assertEqual(self.read("dir/a.txt"), b"via rename")
        self.assertEqual(self.read("dir/r.txt"), b"someone else's")
        self.assertNoTemporaryFiles()

    def test_failed_move_onto_a_claim_removes_the_claim(self) -> None:
        with mock.patch("os.link", side_effect=OSError(errno.EPERM, "no links")), \
                mock.patch("os.rename", side_effect=OSError(errno.EIO, "disk error")):
            with self.assertRaises(OSError):
                self.request("PUT", "/dir/a.txt", b"x")
        self.assertEqual(self.names("dir"), [])

    def test_other_link_failures_are_not_hidden(self) -> None:
        with mock.patch("os.link", side_effect=OSError(errno.EIO, "disk error")):
            with self.assertRaises(OSError):
                self.request("PUT", "/dir/a.txt", b"x")
        self.assertEqual(self.names("dir"), [])

    def test_temporary_name_in_use_is_drawn_again(self) -> None:
        self.write("dir/.nex-upload-aaaa", b"another upload")
        with mock.patch("secrets.token_hex", side_effect=["aaaa", "bbbb"]):
            self.assertEqual(self.request("PUT", "/dir/a.txt", b"x").status, 201)
        self.assertEqual(self.read("dir/.nex-upload-aaaa"), b"another upload")
        self.assertEqual(self.names("dir"), [".nex-upload-aaaa", "a.txt"])

    def test_full_disk_is_507_and_leaves_nothing(self) -> None:
        with mock.patch("os.write", side_effect=OSError(errno.ENOSPC, "full")):
            self.refusal(507, "PUT", "/dir/a.txt", b"x")
        self.assertEqual(self.names("dir"), [])

    def test_read_only_folder_is_403(self) -> None:
        with mock.patch("os.open", side_effect=OSError(errno.EROFS, "read-only")):
            self.refusal(403, "PUT", "/dir/a.txt", b"x")

    def test_form_file_taken_at_commit_undoes_the_form(self) -> None:
        body = form_body(file_part("first.txt", b"1"), file_part("second.txt", b"2"))
        cut = body.index(b"--" + BOUNDARY.encode() + b"--")
        self.refusal(409, "POST", "/dir/", body, headers=[FORM_TYPE],
                     pieces=[body[:cut], body[cut:]], before_piece=self.take("dir/second.txt"))
        self.assertEqual(self.names("dir"), ["second.txt"])
        self.assertEqual(self.read("dir/second.txt"), b"someone else's")


class ConditionRaceTest(UploadTestCase):
    """Conditions judged on a name stay sound: two writers to it are ordered, so what one
    judged is not replaced by the other between its judgement and its rename, and no
    replacement shares the ETag of the file it replaced."""

    def if_match_known(self, name: str) -> List[Tuple[str, str]]:
        """An ``If-Match`` naming the ETag of the file ``name``, written now."""
        self.write(name, b"known")
        response = self.request("HEAD", "/" + name, length=0)
        response.release()
        return [("If-Match", dict(response.headers)["ETag"])]

    def test_two_puts_with_the_same_if_match_do_not_both_replace_the_file(self) -> None:
        known = self.if_match_known("dir/r.txt")
        outcomes: Dict[str, object] = {}

        def put(who: str, data: bytes) -> None:
            try:
                outcomes[who] = self.request("PUT", "/dir/r.txt", data, headers=known,
                                             upload_overwrite=True).status
            except HTTPError as error:
                outcomes[who] = error.status

        # Unordered, the second PUT finds the known file still there and replaces it, and
        # the first then replaces the second's file unseen.  (Sizes differ: an ETag is
        # size and time, and file times move in ticks.)
        race(lambda: put("first", b"first!"), lambda: put("second", b"second!!"))
        self.assertEqual(outcomes, {"first": 204, "second": 412})
        self.assertEqual(self.read("dir/r.txt"), b"first!")
        self.assertNoTemporaryFiles()

    def test_a_replacement_within_one_clock_tick_gets_an_etag_of_its_own(self) -> None:
        # File times move in ticks: a file of the same size written within the same tick
        # as the one it replaces would otherwise share its ETag (size and time).
        site = self.site(upload_overwrite=True)
        old_etag = fields(self.request("PUT", "/dir/t.txt", b"one", site=site))["etag"]
        there = os.stat(os.path.join(self.root, "dir", "t.txt"))
        finish = PendingFile.finish

        def in_the_same_tick(pending: PendingFile) -> None:
            finish(pending)
            os.utime(pending.temp_name, ns=(there.st_mtime_ns, there.st_mtime_ns),
                     dir_fd=pending.folder.fd)
            pending.mtime_ns = there.st_mtime_ns

        with mock.patch.object(PendingFile, "finish", in_the_same_tick):
            response = self.request("PUT", "/dir/t.txt", b"two", site=site)
        new_etag = fields(response)["etag"]
        self.assertNotEqual(new_etag, old_etag)
        served = self.request("HEAD", "/dir/t.txt", length=0, site=site)
        served.release()
        self.assertEqual(dict(served.headers)["ETag"], new_etag)
        self.assertEqual(self.read("dir/t.txt"), b"two")
        # The client that still holds the old ETag is told the file changed.
        self.refusal(412, "PUT", "/dir/t.txt", b"six", headers=[("If-Match", old_etag)],
                     site=site)

    def test_no_replacement_within_one_tick_gets_the_etag_of_an_earlier_one(self) -> None:
        # Three versions within one tick, the second of any size: the third, written at
        # the first one's time, must not get the first one's ETag back.
        site = self.site(upload_overwrite=True)
        for between in (b"two", b"four"):
            with self.subTest(between=between):
                target = f"/dir/{len(between)}.txt"
                first = fields(self.request("PUT", target, b"one", site=site))["etag"]
                tick = os.stat(os.path.join(self.root, target[1:])).st_mtime_ns
                with written_at(tick):
                    self.request("PUT", target, between, site=site)
                    third = fields(self.request("PUT", target, b"six", site=site))["etag"]
                self.assertNotEqual(third, first)
                served = self.request("HEAD", target, length=0, site=site)
                served.release()
                self.assertEqual(dict(served.headers)["ETag"], third)
                self.refusal(412, "PUT", target, b"ten", headers=[("If-Match", first)],
                             site=site)
                self.assertEqual(self.read(target[1:]), b"six")

    def test_a_link_replaced_within_one_tick_of_its_file_gives_no_etag_back(self) -> None:
        # GET follows the link: the ETag a client holds is that of the file it leads to,
        # written in the tick of the replacement, not that of the older link itself.
        os.makedirs(os.path.join(self.root, "other"))
        link = os.path.join(self.root, "dir", "r.txt")
        os.symlink("../other/r.txt", link)
        os.utime(link, ns=(0, 0), follow_symlinks=False)
        site = self.site(upload_overwrite=True)
        self.request("PUT", "/other/r.txt", b"one", site=site)
        served = self.request("HEAD", "/dir/r.txt", length=0, site=site)
        served.release()
        old_etag = dict(served.headers)["ETag"]
        with written_at(os.stat(link).st_mtime_ns):
            new_etag = fields(self.request("PUT", "/dir/r.txt", b"two", site=site))["etag"]
        self.assertNotEqual(new_etag, old_etag)
        self.refusal(412, "PUT", "/dir/r.txt", b"six", headers=[("If-Match", old_etag)],
                     site=site)
        self.assertEqual(self.read("dir/r.txt"), b"two")

    def test_a_file_system_that_will_not_set_times_still_takes_the_replacement(self) -> None:
        # Setting a time needs the file's owner where merely writing does not (a share
        # mounted for another user): the replacement is stored, its time as it was.
        site = self.site(upload_overwrite=True)
        self.request("PUT", "/dir/t.txt", b"one", site=site)
        there = os.stat(os.path.join(self.root, "dir", "t.txt"))
        refused = OSError(errno.EPERM, os.strerror(errno.EPERM))
        with written_at(there.st_mtime_ns), mock.patch("os.utime", side_effect=refused):
            response = self.request("PUT", "/dir/t.txt", b"two", site=site)
        self.assertEqual(response.status, 204)
        self.assertEqual(self.read("dir/t.txt"), b"two")
        served = self.request("HEAD", "/dir/t.txt", length=0, site=site)
        served.release()
        self.assertEqual(dict(served.headers)["ETag"], fields(response)["etag"])
        self.assertNoTemporaryFiles()

    def test_a_folder_another_program_keeps_locked_is_503_after_a_while(self) -> None:
        # flock(1) around a backup script: the upload waits a bounded time, then is
        # refused with a retry, leaving nothing; once the folder is free it goes through.
        other = os.open(os.path.join(self.root, "dir"), os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, other)
        fcntl.flock(other, fcntl.LOCK_EX)
        with mock.patch("nex.files.upload.FOLDER_WAIT_SECONDS", 0.05):
            error = self.refusal(503, "PUT", "/dir/w.txt", b"new")
        self.assertEqual(dict(error.headers)["Retry-After"], "5")
        self.assertNoTemporaryFiles()
        self.assertEqual(self.names("dir"), [])
        fcntl.flock(other, fcntl.LOCK_UN)
        self.assertEqual(self.request("PUT", "/dir/w.txt", b"new").status, 201)

    def test_the_hold_keeps_out_every_other_descriptor_of_the_folder(self) -> None:
        # A lock of the open file description, not of a thread: it binds other processes
        # (workers) too, each of which opens the folder anew.
        folder = UploadFolder(["dir"], self.config, "/dir/")
        self.addCleanup(folder.close)
        other = os.open(os.path.join(self.root, "dir"), os.O_RDONLY | os.O_DIRECTORY)
        self.addCleanup(os.close, other)
        with folder.held():
            with self.assertRaises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_UN)

    def test_a_form_waits_for_a_put_that_judged_the_name(self) -> None:
        known = self.if_match_known("dir/r.txt")
        outcomes: Dict[str, object] = {}

        def put() -> None:
            outcomes["put"] = self.request("PUT", "/dir/r.txt", b"put", headers=known,
                                           upload_overwrite=True).status

        def post() -> None:
            outcomes["form"] = self.request(
                "POST", "/dir/", form_body(file_part("r.txt", b"form")),
                headers=[FORM_TYPE], upload_overwrite=True).status

        race(put, post)
        # The form came second: its file is the one left, and the PUT's condition was
        # judged on the file it replaced.
        self.assertEqual(outcomes, {"put": 204, "form": 200})
        self.assertEqual(self.read("dir/r.txt"), b"form")


def written_at(mtime_ns: int) -> ContextManager[object]:
    """Every upload meanwhile finished at the modification time ``mtime_ns``, as files
    written within one tick of the file system's clock are."""
    finish, utime = PendingFile.finish, os.utime

    def finish_at(pending: PendingFile) -> None:
        finish(pending)
        utime(pending.temp_name, ns=(mtime_ns, mtime_ns), dir_fd=pending.folder.fd)
        pending.mtime_ns = mtime_ns

    return mock.patch.object(PendingFile, "finish", finish_at)


class FileCacheTest(UploadTestCase):
    """The small-file cache never serves the bytes an upload replaced."""

    def get(self, site: Dispatcher, target: str) -> bytes:
        response = site.respond(Request("GET", target, target, "", "HTTP/1.1",
                                        Headers([("Host", "h")]), "h", True), None,
                                "127.0.0.1")
        self.addCleanup(response.release)
        return body_bytes(response)

    def test_replaced_file_is_served_fresh_at_once(self) -> None:
        site = self.site(SmallFileCache(1 << 20), upload_overwrite=True)
        self.assertEqual(self.get(site, "/hello.txt"), b"hello, world\n")
        self.assertEqual(self.get(site, "/hello.txt"), b"hello, world\n")  # from the cache
        self.request("PUT", "/hello.txt", b"HELLO, WORLD\n", site=site)  # same size, same second
        self.assertEqual(self.get(site, "/hello.txt"), b"HELLO, WORLD\n")
        self.request("POST", "/", form_body(file_part("hello.txt", b"third version")),
                     headers=[FORM_TYPE], site=site)
        self.assertEqual(self.get(site, "/hello.txt"), b"third version")


class FormTest(UploadTestCase):
    """POST of multipart/form-data to a folder's address."""

    def post(self, target: str, body: bytes, headers: Iterable[Tuple[str, str]] = (FORM_TYPE,),
             **options) -> Response:
        return self.request("POST", target, body, headers=headers, **options)

    def test_several_files_and_a_field(self) -> None:
        body = form_body(part('form-data; name="note"', b"ignored"),
                         file_part("a.txt", b"first\r\n"), file_part("b c.bin", bytes(range(256))))
        response = self.post("/dir/", body)
        self.assertEqual(response.status, 201)
        self.assertNotIn("location", fields(response))
        self.assertEqual(fields(response)["content-type"], "text/plain; charset=utf-8")
        self.assertEqual(body_bytes(response), b"/dir/a.txt\n/dir/b%20c.bin\n")
        self.assertEqual(self.names("dir"), ["a.txt", "b c.bin"])
        self.assertEqual(self.read("dir/b c.bin"), bytes(range(256)))

    def test_one_file_gets_a_location(self) -> None:
        response = self.post("/", form_body(file_part("é.txt", b"x")))
        self.assertEqual(response.status, 201)
        self.assertEqual(fields(response)["location"], "/%C3%A9.txt")

    def test_browser_is_sent_back_to_the_listing(self) -> None:
        for target, location in (("/dir/", "/dir/"), ("/dir/?sort=size", "/dir/?sort=size"),
                                 ("/", "/")):
            with self.subTest(target=target):
                name = f"{len(target)}.txt"
                error = self.refusal(303, "POST", target, form_body(file_part(name, b"x")),
                                     headers=[FORM_TYPE, HTML])
                self.assertIn(("Location", location), error.headers)

    def test_replacing_every_file_is_200(self) -> None:
        response = self.post("/", form_body(file_part("hello.txt", b"new")),
                             upload_overwrite=True)
        self.assertEqual(response.status, 200)
        self.assertNotIn("location", fields(response))
        self.assertEqual(self.read("hello.txt"), b"new")

    def test_existing_file_is_409_and_nothing_is_written(self) -> None:
        body = form_body(file_part("new.txt", b"x"), file_part("hello.txt", b"y"))
        self.refusal(409, "POST", "/", body, headers=[FORM_TYPE])
        self.assertEqual(self.names(), ["dir", "hello.txt"])
        self.assertEqual(self.read("hello.txt"), b"hello, world\n")

    def test_file_names_are_reduced_to_their_last_component(self) -> None:
        body = form_body(file_part("../../outside/evil.txt", b"1"),
                         file_part("C:\\Users\\me\\win.txt", b"2"),
                         file_part("/etc/passwd", b"3"))
        self.assertEqual(self.post("/dir/", body).status, 201)
        self.assertEqual(self.names("dir"), ["evil.txt", "passwd", "win.txt"])
        self.assertEqual(sorted(os.listdir(self.outside)), ["secret.txt"])

    def test_refused_file_names(self) -> None:
        for filename, status in (("..", 400), ("a/..", 400), ("dir/", 400), (".env", 404),
                                 ("a/.env", 404), (".nex-upload-1", 404), ("x" * 300, 400),
                                 ("tab\t.txt", 400), ("dir", 409)):
            with self.subTest(filename=filename):
                self.refusal(status, "POST", "/", form_body(file_part(filename, b"x")),
                             headers=[FORM_TYPE])
        self.assertEqual(self.names(), ["dir", "hello.txt"])
        self.assertEqual(self.post("/", form_body(file_part(".env", b"x")),
                                   dotfiles=True).status, 201)

    def test_form_without_a_file_is_400(self) -> None:
        for body in (form_body(part('form-data; name="note"', b"x")),
                     form_body(file_part("", b""))):
            with self.subTest(body=body):
                error = self.refusal(400, "POST", "/", body, headers=[FORM_TYPE])
                self.assertEqual(error.detail, "The form holds no file.")

    def test_malformed_or_truncated_form_leaves_nothing(self) -> None:
        whole = form_body(file_part("one.txt", b"1" * 100), file_part("two.txt", b"2" * 100))
        for body in (whole[:-20], whole[:whole.index(b"two.txt")], whole.replace(b"--\r\n", b"")):
            with self.subTest(body=body[-30:]):
                self.refusal(400, "POST", "/dir/", body, headers=[FORM_TYPE])
                self.assertEqual(self.names("dir"), [])

    def test_client_leaving_mid_form_leaves_nothing(self) -> None:
        whole = form_body(file_part("one.txt", b"1" * 100), file_part("two.txt", b"2" * 100))
        self.refusal(400, "POST", "/dir/", b"", headers=[FORM_TYPE], length=len(whole),
                     pieces=[whole[:len(whole) - 30]])
        self.assertEqual(self.names("dir"), [])

    def test_same_name_twice_is_409(self) -> None:
        body = form_body(file_part("a.txt", b"1"), file_part("dir/a.txt", b"2"))
        self.refusal(409, "POST", "/", body, headers=[FORM_TYPE], upload_overwrite=True)
        self.assertEqual(self.names(), ["dir", "hello.txt"])

    def test_limits(self) -> None:
        three = form_body(*[file_part(f"{n}.txt", b"x") for n in range(3)])
        self.refusal(413, "POST", "/dir/", three, headers=[FORM_TYPE], max_upload_files=2)
        self.assertEqual(self.post("/dir/", three, max_upload_files=3).status, 201)
        fields_only = form_body(*[part(f'form-data; name="f{n}"', b"v") for n in range(101)],
                                file_part("z.txt", b"z"))
        self.refusal(413, "POST", "/", fields_only, headers=[FORM_TYPE])
        big_field = form_body(part('form-data; name="f"', b"v" * 70000), file_part("z", b"z"))
        self.refusal(413, "POST", "/", big_field, headers=[FORM_TYPE])
        self.refusal(413, "POST", "/", three, headers=[FORM_TYPE], max_upload_size=100)
        self.assertEqual(self.names(), ["dir", "hello.txt"])
        self.assertEqual(self.names("dir"), ["0.txt", "1.txt", "2.txt"])

    def test_content_type(self) -> None:
        body = form_body(file_part("a.txt", b"x"))
        self.refusal(415, "POST", "/", body, headers=[("Content-Type", "text/plain")])
        self.refusal(415, "POST", "/", body, headers=[])
        self.refusal(400, "POST", "/", body, headers=[("Content-Type", "multipart/form-data")])
        other = ("Content-Type", "multipart/form-data; boundary=other")
        self.refusal(400, "POST", "/", body, headers=[other])
        self.assertEqual(self.names(), ["dir", "hello.txt"])

    def test_empty_body_is_400(self) -> None:
        self.refusal(400, "POST", "/", b"", headers=[FORM_TYPE])

    def test_file_address_is_405_with_the_file_methods(self) -> None:
        error = self.refusal(405, "POST", "/hello.txt", form_body(file_part("a", b"x")),
                             headers=[FORM_TYPE])
        self.assertEqual(error.headers, (("Allow", "GET, HEAD, OPTIONS, PUT"),))

    def test_folder_without_its_slash_is_308(self) -> None:
        error = self.refusal(308, "POST", "/dir?x=1", form_body(file_part("a", b"x")),
                             headers=[FORM_TYPE])
        self.assertIn(("Location", "/dir/?x=1"), error.headers)

    def test_missing_or_hidden_folder_is_404(self) -> None:
        os.mkdir(os.path.join(self.root, ".private"))
        for target in ("/nope/", "/nope", "/.private/", "/hello.txt/"):
            with self.subTest(target=target):
                self.refusal(404, "POST", target, form_body(file_part("a", b"x")),
                             headers=[FORM_TYPE])
        self.assertEqual(os.listdir(os.path.join(self.root, ".private")), [])


class OriginTest(UploadTestCase):
    """Uploads a page of another site makes a browser send are refused."""

    def test_other_sites_are_403(self) -> None:
        for origin in ("http://evil.example", "null", "http://localhost.evil.example",
                       "https://localhost:8080", "http://localhost:8080", "file://",
                       "https://localhost"):
            with self.subTest(origin=origin):
                self.refusal(403, "PUT", "/dir/a.txt", b"x", headers=[("Origin", origin)])
                self.refusal(403, "POST", "/dir/", form_body(file_part("a.txt", b"x")),
                             headers=[FORM_TYPE, ("Origin", origin)])
        self.assertEqual(self.names("dir"), [])

    def test_the_same_site_is_allowed(self) -> None:
        for index, origin in enumerate(("http://localhost", "HTTP://LocalHost:80",
                                        "http://localhost:80")):
            with self.subTest(origin=origin):
                response = self.request("PUT", f"/dir/{index}", b"x",
                                        headers=[("Origin", origin)])
                self.assertEqual(response.status, 201)


class DispatchTest(UploadTestCase):
    """Methods and Allow with uploads on; the listing's form."""

    def test_allowed_methods(self) -> None:
        self.assertEqual(allowed_methods(None), UPLOAD_METHODS)
        self.assertEqual(allowed_methods(split_path("/")[1]), FOLDER_METHODS)
        self.assertEqual(allowed_methods(split_path("/a/b/..")[1]), FOLDER_METHODS)
        self.assertEqual(allowed_methods(split_path("/a")[1]), FILE_METHODS)

    def test_options_and_405_list_the_upload_methods(self) -> None:
        site = self.site()
        for method, target, allow in (("OPTIONS", "*", "GET, HEAD, OPTIONS, POST, PUT"),
                                      ("OPTIONS", "/hello.txt", "GET, HEAD, OPTIONS, PUT"),
                                      ("OPTIONS", "/dir/", "GET, HEAD, OPTIONS, POST")):
            with self.subTest(method=method, target=target):
                request = Request(method, target, "" if target == "*" else target, "",
                                  "HTTP/1.1", Headers([("Host", "h")]), "h", True)
                self.assertEqual(site.respond(request, None, "127.0.0.1").headers,
                                 [("Allow", allow)])
        for target, allow in (("/hello.txt", "GET, HEAD, OPTIONS, PUT"),
                              ("/dir/", "GET, HEAD, OPTIONS, POST")):
            with self.subTest(method="DELETE", target=target):
                self.assertEqual(self.refusal(405, "DELETE", target).headers, (("Allow", allow),))

    def test_listing_shows_the_upload_form(self) -> None:
        request = Request("GET", "/dir/", "/dir/", "", "HTTP/1.1", Headers([("Host", "h")]),
                          "h", True)
        page = body_bytes(self.site().respond(request, None, "127.0.0.1")).decode("utf-8")
        self.assertIn('<form class="upload" method="post" enctype="multipart/form-data">', page)
        self.assertIn('<input type="file" name="file" multiple required>', page)


class UploadOffTest(UploadTestCase):
    """With uploads off, PUT and POST are 405 as ever and nothing is read or written."""

    settings = {"upload": False}

    def test_put_and_post_are_405_with_the_read_methods(self) -> None:
        for method, target in (("PUT", "/dir/a.txt"), ("POST", "/dir/"), ("PUT", "/hello.txt")):
            with self.subTest(method=method, target=target):
                error = self.refusal(405, method, target, form_body(file_part("a.txt", b"x")),
                                     headers=[FORM_TYPE])
                self.assertEqual(error.headers, (("Allow", "GET, HEAD, OPTIONS"),))
                self.assertEqual(self.exchange.received, 0)
        self.assertEqual(self.names("dir"), [])
        self.assertEqual(self.read("hello.txt"), b"hello, world\n")

    def test_listing_has_no_form(self) -> None:
        request = Request("GET", "/dir/", "/dir/", "", "HTTP/1.1", Headers([("Host", "h")]),
                          "h", True)
        page = body_bytes(self.site().respond(request, None, "127.0.0.1"))
        self.assertNotIn(b'enctype="multipart/form-data"', page)


if __name__ == "__main__":
    unittest.main()
