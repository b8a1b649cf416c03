"""The CONNECT relay: bytes both ways, half-closes, bounded buffers, idle time-out, errors."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
import unittest
from typing import Callable, Dict, List, Optional, Tuple

from nex.proxy.tunnel import BUFFER_SIZE, relay
from tests.support import client_context, duplex, make_certificate, requires_openssl, tcp_pair
from tests.support import receive_exactly

SOCKET_TIMEOUT = 30.0
SIZE = 10 * 1024 * 1024


def receive_all(sock: socket.socket) -> bytes:
    """Everything ``sock`` receives until EOF."""
    sock.settimeout(SOCKET_TIMEOUT)
    chunks = []
    while True:
        chunk = sock.recv(256 * 1024)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)




class TLSPairs:
    """Connected TCP pairs on loopback whose client end speaks TLS to a server end, as a
    client of Nex over HTTPS does: ``make()`` returns ``(client, server)`` with the
    handshake done."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="nex-tunnel-")
        certificate, key = make_certificate(self.folder)
        self.server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_context.load_cert_chain(certificate, key)
        self.client_context = client_context(certificate)

    def make(self) -> Tuple[socket.socket, socket.socket]:
        near, far = tcp_pair()
        accepted: Dict[str, ssl.SSLSocket] = {}
        server = threading.Thread(target=lambda: accepted.setdefault(
            "sock", self.server_context.wrap_socket(far, server_side=True)), daemon=True)
        server.start()
        client = self.client_context.wrap_socket(near, server_hostname="localhost")
        server.join(SOCKET_TIMEOUT)
        return client, accepted["sock"]

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class Tunnel:
    """``relay`` running in a thread between a client pair and an origin pair.

    ``client`` and ``origin`` are the far ends a test talks through; the relay owns the
    other ends.  ``client_pair`` makes the client's pair when it differs (TLS); ``before``
    runs once the pairs exist, before the relay starts.
    """

    def __init__(self, make_pair: Callable[[], Tuple[socket.socket, socket.socket]],
                 idle_timeout: float = SOCKET_TIMEOUT, pending: bytes = b"",
                 client_pair: Optional[Callable[[], Tuple[socket.socket, socket.socket]]]
                 = None, before: Callable[["Tunnel"], None] = lambda tunnel: None,
                 linger: float = SOCKET_TIMEOUT) -> None:
        self.client, relay_client = (client_pair or make_pair)()
        relay_origin, self.origin = make_pair()
        for sock in (self.client, self.origin):
            sock.settimeout(SOCKET_TIMEOUT)
        self.sockets = (self.client, relay_client, relay_origin, self.origin)
        self.result: Dict[str, Tuple[int, int]] = {}
        before(self)
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       args=(relay_client, relay_origin, idle_timeout, pending,
                                             linger))
        self.thread.start()

    def _run(self, relay_client: socket.socket, relay_origin: socket.socket,
             idle_timeout: float, pending: bytes, linger: float) -> None:
        self.result["counts"] = relay(relay_client, relay_origin, idle_timeout, pending,
                                      linger)

    def wait(self) -> Tuple[int, int]:
        self.thread.join(SOCKET_TIMEOUT)
        if self.thread.is_alive():
            raise AssertionError("the relay did not end")
        return self.result["counts"]

    def close(self) -> None:
        """Close the test's ends, let the relay see them go and end, then close its ends."""
        self.client.close()
        self.origin.close()
        self.thread.join(SOCKET_TIMEOUT)
        for sock in self.sockets:
            sock.close()


class RelayTestCase(unittest.TestCase):
    def tunnel(self, make_pair: Callable[[], Tuple[socket.socket, socket.socket]] = tcp_pair,
               **options) -> Tunnel:
        tunnel = Tunnel(make_pair, **options)
        self.addCleanup(tunnel.close)
        return tunnel

    def run_parallel(self, *jobs: Callable[[], object]) -> List[object]:
        """Run ``jobs`` in threads; their results in order (exceptions re-raised)."""
        results: List[object] = [None] * len(jobs)

        def run(index: int, job: Callable[[], object]) -> None:
            try:
                results[index] = job()
            except BaseException as error:  # re-raised in the test's thread
                results[index] = error
        threads = [threading.Thread(target=run, args=(index, job), daemon=True)
                   for index, job in enumerate(jobs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(SOCKET_TIMEOUT)
            self.assertFalse(thread.is_alive(), "a job did not finish")
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results


class BothWaysTest(RelayTestCase):
    def exchange(self, make_pair: Callable[[], Tuple[socket.socket, socket.socket]]) -> None:
        upward, downward = os.urandom(SIZE), os.urandom(SIZE)
        tunnel = self.tunnel(make_pair, pending=b"early bytes")

        def send(sock: socket.socket, data: bytes) -> None:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        _, _, at_origin, at_client = self.run_parallel(
            lambda: send(tunnel.client, upward), lambda: send(tunnel.origin, downward),
            lambda: receive_all(tunnel.origin), lambda: receive_all(tunnel.client))
        self.assertEqual(hashlib.sha256(at_origin).digest(),
                         hashlib.sha256(b"early bytes" + upward).digest())
        self.assertEqual(hashlib.sha256(at_client).digest(), hashlib.sha256(downward).digest())
        self.assertEqual(tunnel.wait(), (SIZE + len(b"early bytes"), SIZE))

    def test_ten_megabytes_both_ways_over_loopback_tcp(self) -> None:
        self.exchange(tcp_pair)

    def test_ten_megabytes_both_ways_over_socketpairs(self) -> None:
        self.exchange(socket.socketpair)

    def test_pending_bytes_go_first_even_without_more(self) -> None:
        tunnel = self.tunnel(pending=b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(tunnel.origin.recv(100), b"GET / HTTP/1.1\r\n\r\n")


class HalfCloseTest(RelayTestCase):
    def test_client_eof_reaches_the_origin_which_still_answers(self) -> None:
        tunnel = self.tunnel()
        tunnel.client.sendall(b"request")
        tunnel.client.shutdown(socket.SHUT_WR)
        self.assertEqual(receive_all(tunnel.origin), b"request")  # data, then EOF
        tunnel.origin.sendall(b"answer after the client's EOF")
        tunnel.origin.shutdown(socket.SHUT_WR)
        self.assertEqual(receive_all(tunnel.client), b"answer after the client's EOF")
        self.assertEqual(tunnel.wait(), (7, 29))

    def test_origin_eof_reaches_the_client_which_still_sends(self) -> None:
        tunnel = self.tunnel()
        tunnel.origin.sendall(b"banner")
        tunnel.origin.shutdown(socket.SHUT_WR)
        self.assertEqual(receive_all(tunnel.client), b"banner")
        tunnel.client.sendall(b"more from the client")
        tunnel.client.shutdown(socket.SHUT_WR)
        self.assertEqual(receive_all(tunnel.origin), b"more from the client")
        self.assertEqual(tunnel.wait(), (20, 6))

    def test_relay_runs_until_both_sides_ended(self) -> None:
        tunnel = self.tunnel()
        tunnel.client.shutdown(socket.SHUT_WR)
        self.assertEqual(receive_all(tunnel.origin), b"")
        tunnel.origin.sendall(b"still open")
        self.assertEqual(tunnel.client.recv(100), b"still open")
        self.assertTrue(tunnel.thread.is_alive())
        tunnel.origin.shutdown(socket.SHUT_WR)
        self.assertEqual(tunnel.wait(), (0, 10))


class BoundedBufferTest(RelayTestCase):
    def test_a_reader_that_stops_stops_the_sender(self) -> None:
        tunnel = self.tunnel()
        data = os.urandom(16 * 1024 * 1024)
        progress = {"sent": 0}

        def send() -> None:
            view = memoryview(data)
            while view:
                count = tunnel.client.send(view[:64 * 1024])
                progress["sent"] += count
                view = view[count:]
            tunnel.client.shutdown(socket.SHUT_WR)
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        # Wait until the sender has made no progress for a while: it is blocked.
        deadline, last, still_since = time.monotonic() + SOCKET_TIMEOUT, -1, time.monotonic()
        while time.monotonic() < deadline:
            if progress["sent"] != last:
                last, still_since = progress["sent"], time.monotonic()
            elif time.monotonic() - still_since > 1.0:
                break
            time.sleep(0.05)
        # Socket buffers and one 64 KiB relay buffer hold far less than 16 MiB.
        self.assertTrue(sender.is_alive())
        self.assertLess(progress["sent"], len(data))
        self.assertEqual(receive_all(tunnel.origin), data)
        sender.join(SOCKET_TIMEOUT)


class EndingTest(RelayTestCase):
    def test_idle_time_out(self) -> None:
        tunnel = self.tunnel(idle_timeout=0.3)
        self.assertEqual(tunnel.wait(), (0, 0))

    def test_traffic_keeps_the_tunnel_open(self) -> None:
        tunnel = self.tunnel(idle_timeout=2.0)
        for index in range(15):  # 3 s of traffic in 0.2 s gaps: longer than the time-out
            tunnel.client.sendall(b"%02d" % index)
            self.assertEqual(tunnel.origin.recv(2), b"%02d" % index)
            time.sleep(0.2)
        self.assertTrue(tunnel.thread.is_alive())
        self.assertEqual(tunnel.wait(), (30, 0))  # then it idles out

    def test_reset_ends_the_relay(self) -> None:
        tunnel = self.tunnel()
        tunnel.origin.sendall(b"partial")
        self.assertEqual(tunnel.client.recv(100), b"partial")
        # SO_LINGER with a zero time-out makes close() send a reset instead of a FIN.
        tunnel.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        tunnel.client.close()
        self.assertEqual(tunnel.wait(), (0, 7))

    def test_tunnel_to_a_silent_origin_outlives_its_client_only_by_the_linger(self) -> None:
        # Issue: a client that closed its tunnel left the thread, both sockets and its slot
        # to a silent origin until the whole idle time-out (300 s) had passed.
        tunnel = self.tunnel(idle_timeout=3600.0, linger=0.3)
        tunnel.client.close()
        self.assertEqual(receive_all(tunnel.origin), b"")  # the half-close was passed on
        self.assertEqual(tunnel.wait(), (0, 0))

    def test_traffic_after_a_half_close_keeps_the_tunnel_open(self) -> None:
        tunnel = self.tunnel(idle_timeout=3600.0, linger=1.0)
        tunnel.client.shutdown(socket.SHUT_WR)
        self.assertEqual(receive_all(tunnel.origin), b"")
        for index in range(8):  # 1.6 s of answers in 0.2 s gaps: longer than the linger
            tunnel.origin.sendall(b"%d" % index)
            self.assertEqual(tunnel.client.recv(1), b"%d" % index)
            time.sleep(0.2)
        self.assertTrue(tunnel.thread.is_alive())
        self.assertEqual(tunnel.wait(), (0, 8))  # then it ends within the linger

    def test_full_close_of_one_side_half_closes_the_other(self) -> None:
        tunnel = self.tunnel()
        tunnel.origin.close()
        self.assertEqual(receive_all(tunnel.client), b"")
        tunnel.client.shutdown(socket.SHUT_WR)
        self.assertEqual(tunnel.wait(), (0, 0))


@requires_openssl
class TLSClientTest(RelayTestCase):
    """The client's end is TLS, as on a Nex serving HTTPS: the tunnel runs inside it."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.pairs = TLSPairs()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.pairs.close()

    def tls_tunnel(self, **options) -> Tunnel:
        return self.tunnel(client_pair=self.pairs.make, **options)

    def test_ten_megabytes_both_ways(self) -> None:
        upward, downward = os.urandom(SIZE), os.urandom(SIZE)
        tunnel = self.tls_tunnel(pending=b"early bytes")

        received = threading.Event()

        def receive_up() -> bytes:
            data = receive_exactly(tunnel.origin, SIZE + len(b"early bytes"))
            received.set()
            return data

        def send_down() -> None:
            tunnel.origin.sendall(downward)
            # The origin's EOF ends a tunnel to a TLS client: it comes after the upload.
            received.wait(SOCKET_TIMEOUT)
            tunnel.origin.shutdown(socket.SHUT_WR)
        # The client's TLS socket is used by one thread only: OpenSSL's are not thread-safe.
        _, at_origin, at_client = self.run_parallel(
            send_down, receive_up, lambda: duplex(tunnel.client, upward, SIZE))
        self.assertEqual(hashlib.sha256(at_origin).digest(),
                         hashlib.sha256(b"early bytes" + upward).digest())
        self.assertEqual(hashlib.sha256(at_client).digest(), hashlib.sha256(downward).digest())
        self.assertEqual(tunnel.wait(), (SIZE + len(b"early bytes"), SIZE))

    def test_bytes_held_decrypted_in_the_ssl_object_are_relayed(self) -> None:
        # The relay's buffer starts 100 bytes short of full, so its first read takes 100
        # bytes of the client's one 16 KiB record; the rest waits inside the SSL object,
        # where no readiness event announces it.
        pending = os.urandom(BUFFER_SIZE - 100)
        record = os.urandom(16 * 1024)
        tunnel = self.tls_tunnel(pending=pending,
                                 before=lambda tunnel: tunnel.client.sendall(record))
        self.assertEqual(receive_exactly(tunnel.origin, len(pending) + len(record)),
                         pending + record)

    def test_origin_eof_ends_the_tunnel_after_its_bytes(self) -> None:
        tunnel = self.tls_tunnel()
        tunnel.origin.sendall(b"last words")
        tunnel.origin.shutdown(socket.SHUT_WR)
        self.assertEqual(tunnel.wait(), (0, 10))
        self.assertEqual(tunnel.client.recv(100), b"last words")

    def test_client_eof_reaches_the_origin(self) -> None:
        # Under TLS an EOF without the closure alert is an error that ends the session,
        # so nothing goes back; the origin still learns that the client has finished.
        tunnel = self.tls_tunnel()
        tunnel.client.sendall(b"request")
        socket.socket.shutdown(tunnel.client, socket.SHUT_WR)
        self.assertEqual(receive_all(tunnel.origin), b"request")
        tunnel.origin.shutdown(socket.SHUT_WR)
        self.assertEqual(tunnel.wait(), (7, 0))


if __name__ == "__main__":
    unittest.main()
