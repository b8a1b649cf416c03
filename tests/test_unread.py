"""What a client has sent, looked at without waiting (nex.process.unread)."""

import socket
import unittest

from nex.process.unread import already_sent, drain, input_waiting


class PairTestCase(unittest.TestCase):
    """Tests on a connected pair of sockets: :meth:`pair` gives the server's end and the
    client's, closed when the test ends."""

    def pair(self):
        server, client = socket.socketpair()
        self.addCleanup(server.close)
        self.addCleanup(client.close)
        return server, client


class UnreadTest(PairTestCase):
    def test_nothing_sent_is_nothing_waiting(self) -> None:
        server, _ = self.pair()
        self.assertFalse(input_waiting(server, False))
        self.assertIsNone(already_sent(server, 100))

    def test_sent_bytes_wait_until_read(self) -> None:
        server, client = self.pair()
        client.sendall(b"GET / HTTP/1.1\r\n")
        self.assertTrue(input_waiting(server, False))
        self.assertTrue(input_waiting(server, False))  # looking takes nothing
        self.assertEqual(already_sent(server, 100), b"GET / HTTP/1.1\r\n")
        self.assertFalse(input_waiting(server, False))

    def test_a_closed_side_counts_as_input(self) -> None:
        # A close is news too: the reader must see it rather than wait.
        server, client = self.pair()
        client.shutdown(socket.SHUT_WR)
        self.assertTrue(input_waiting(server, False))
        self.assertEqual(already_sent(server, 100), b"")

    def test_a_waitall_read_takes_nothing_until_all_has_come(self) -> None:
        server, client = self.pair()
        client.sendall(b"abc")
        self.assertIsNone(already_sent(server, 5, socket.MSG_WAITALL))
        client.sendall(b"de")
        self.assertEqual(already_sent(server, 5, socket.MSG_WAITALL), b"abcde")


class DrainTest(PairTestCase):
    def test_what_comes_is_read_until_the_client_closes(self) -> None:
        server, client = self.pair()
        client.sendall(b"x" * 100_000)
        client.shutdown(socket.SHUT_WR)
        drain(server, 30, 1 << 20)
        self.assertEqual(server.recv(10), b"")  # all of it was taken, and the end

    def test_it_stops_after_the_most_bytes(self) -> None:
        # A client that never stops sending holds the thread no longer than ``most`` bytes.
        server, client = self.pair()
        client.sendall(b"x" * 100_000)
        drain(server, 30, 10)
        self.assertTrue(input_waiting(server, False))

    def test_it_stops_when_the_time_is_up(self) -> None:
        server, _ = self.pair()
        drain(server, 0.05, 1 << 20)  # a silent client: returns, raises nothing

    def test_a_reset_ends_it_quietly(self) -> None:
        server, client = socket.socketpair()
        self.addCleanup(server.close)
        client.close()
        drain(server, 30, 1 << 20)


if __name__ == "__main__":
    unittest.main()
