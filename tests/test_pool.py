"""The thread pool: parked threads take the next connection; idle ones end."""

from __future__ import annotations

import os
import threading
import unittest
from typing import Any, Callable, List, Set

from nex.process.pool import ThreadPool, _Parked
from tests.support import (SOCKET_TIMEOUT, NexServer, ResponseReader, alpha_root, get,
                           wait_until)


def hand(pool: ThreadPool, item: object, call: Callable[[Any], None], name: str) -> bool:
    """Give ``pool`` one piece of work, a burst of one; whether a thread will take it."""
    return not pool.run_all([(item, call, name)])


class ThreadPoolTest(unittest.TestCase):
    def setUp(self) -> None:
        self.ran: List[threading.Thread] = []
        self.names: List[str] = []
        self.done = threading.Semaphore(0)

    def record(self, item: str) -> None:
        self.ran.append(threading.current_thread())
        self.names.append(threading.current_thread().name)
        self.done.release()

    def run_one(self, pool: ThreadPool, name: str) -> threading.Thread:
        self.assertTrue(hand(pool, name, self.record, name))
        self.assertTrue(self.done.acquire(timeout=SOCKET_TIMEOUT))
        return self.ran[-1]

    def test_a_parked_thread_takes_the_next_work_named_after_it(self) -> None:
        pool = ThreadPool(idle_seconds=SOCKET_TIMEOUT)
        self.addCleanup(pool.close)
        first = self.run_one(pool, "Client-1 127.0.0.1:1000")
        wait_until(lambda: pool._parked, what="the thread to park")
        second = self.run_one(pool, "Client-2 127.0.0.1:1001")
        self.assertIs(first, second)
        self.assertEqual(self.names, ["Client-1 127.0.0.1:1000", "Client-2 127.0.0.1:1001"])

    def test_busy_threads_are_not_handed_work_a_new_thread_starts(self) -> None:
        pool = ThreadPool(idle_seconds=SOCKET_TIMEOUT)
        self.addCleanup(pool.close)
        release = threading.Event()
        started = threading.Semaphore(0)
        threads: Set[threading.Thread] = set()

        def hold(item: int) -> None:
            threads.add(threading.current_thread())
            started.release()
            release.wait(SOCKET_TIMEOUT)

        for number in range(3):
            self.assertTrue(hand(pool, number, hold, f"hold-{number}"))
        for _ in range(3):
            self.assertTrue(started.acquire(timeout=SOCKET_TIMEOUT))
        release.set()
        self.assertEqual(len(threads), 3)

    def test_an_idle_thread_ends(self) -> None:
        pool = ThreadPool(idle_seconds=0.05)
        self.addCleanup(pool.close)
        thread = self.run_one(pool, "short")
        wait_until(lambda: not thread.is_alive(), what="the idle thread to end")
        self.assertEqual(pool._parked, [])

    def test_close_ends_the_parked_threads(self) -> None:
        pool = ThreadPool(idle_seconds=SOCKET_TIMEOUT)
        thread = self.run_one(pool, "parked")
        wait_until(lambda: pool._parked, what="the thread to park")
        pool.close()
        thread.join(SOCKET_TIMEOUT)
        self.assertFalse(thread.is_alive())


class _DeferredStarts(ThreadPool):
    """A pool whose thread starts are recorded (with the thread that asked) and made by the
    test, one at a time, so the order of events is the test's."""

    def __init__(self) -> None:
        super().__init__(idle_seconds=SOCKET_TIMEOUT)
        self.asked: List[threading.Thread] = []

    def _start_thread(self) -> None:
        self.asked.append(threading.current_thread())

    def launch(self) -> threading.Thread:
        """Make one recorded start."""
        thread = threading.Thread(target=self._serve, args=(_Parked(),), daemon=True)
        thread.start()
        return thread


class PoolGrowthTest(unittest.TestCase):
    """The caller of run() never waits for more than one start; new threads grow the pool."""

    def setUp(self) -> None:
        self.release = threading.Event()
        self.held: List[str] = []
        self.threads: List[threading.Thread] = []
        self.lock = threading.Lock()

    def hold(self, item: str) -> None:
        with self.lock:
            self.held.append(item)
            self.threads.append(threading.current_thread())
        self.release.wait(SOCKET_TIMEOUT)

    def pool(self) -> _DeferredStarts:
        pool = _DeferredStarts()
        self.addCleanup(pool.close)
        self.addCleanup(self.release.set)
        return pool

    def test_work_that_finds_no_parked_thread_waits_for_the_one_on_its_way(self) -> None:
        pool = self.pool()
        for number in range(5):
            self.assertTrue(hand(pool, f"w{number}", self.hold, f"w{number}"))
        self.assertEqual(pool.asked, [threading.current_thread()])
        self.assertEqual([work[0] for work in pool._waiting], ["w0", "w1", "w2", "w3", "w4"])

    def test_each_new_thread_starts_more_while_work_waits_one_per_work(self) -> None:
        pool = self.pool()
        for number in range(5):
            self.assertTrue(hand(pool, f"w{number}", self.hold, f"w{number}"))
        for launched in range(5):
            self.assertGreater(len(pool.asked), launched)
            pool.launch()
            wait_until(lambda: len(self.held) > launched, what=f"work {launched} to run")
        self.assertEqual(self.held, ["w0", "w1", "w2", "w3", "w4"])  # first come, first served
        self.assertEqual(len(set(self.threads)), 5)
        self.assertEqual(len(pool.asked), 5)  # no thread more than the work
        self.assertEqual(pool.asked[0], threading.current_thread())
        self.assertEqual(pool.asked[1:3], [self.threads[0]] * 2)  # the first started two
        self.assertEqual(pool._starting, 0)

    def test_a_thread_done_with_its_work_takes_waiting_work_before_parking(self) -> None:
        pool = self.pool()
        done = threading.Semaphore(0)
        ran: List[threading.Thread] = []

        def record(item: str) -> None:
            ran.append(threading.current_thread())
            done.release()

        gate = threading.Event()
        self.assertTrue(hand(pool, "first",
                             lambda item: (gate.wait(SOCKET_TIMEOUT), record(item)), "first"))
        first = pool.launch()
        # No thread parked or on its way: asks for one.
        self.assertTrue(hand(pool, "second", record, "second"))
        self.assertEqual(len(pool.asked), 2)
        gate.set()
        for _ in range(2):
            self.assertTrue(done.acquire(timeout=SOCKET_TIMEOUT))
        self.assertEqual(ran, [first, first])
        late = pool.launch()  # finds no work waiting: ends
        late.join(SOCKET_TIMEOUT)
        self.assertFalse(late.is_alive())
        self.assertEqual(pool._starting, 0)

    def test_a_thread_that_cannot_start_gives_the_work_back(self) -> None:
        class Failing(ThreadPool):
            def _start_thread(self) -> None:
                raise RuntimeError("can't start new thread")

        pool = Failing()
        work = ("work", self.hold, "work")
        self.assertEqual(pool.run_all([work]), [work])
        self.assertEqual(list(pool._waiting), [])
        self.assertEqual(pool._starting, 0)


    def test_a_burst_is_queued_whole_before_its_one_thread_starts(self) -> None:
        pool = self.pool()
        self.assertEqual(pool.run_all([(f"w{number}", self.hold, f"w{number}")
                                       for number in range(5)]), [])
        self.assertEqual(pool.asked, [threading.current_thread()])  # one start asked for
        pool.launch()
        wait_until(lambda: self.held == ["w0"], what="the first work to run")
        # The first thread saw the other four waiting and started two more at once.
        self.assertEqual(pool.asked[1:], [self.threads[0]] * 2)

    def test_a_burst_whose_thread_cannot_start_is_handed_back_whole(self) -> None:
        class Failing(ThreadPool):
            def _start_thread(self) -> None:
                raise RuntimeError("can't start new thread")

        pool = Failing()
        works = [(f"w{number}", self.hold, f"w{number}") for number in range(3)]
        self.assertEqual(pool.run_all(works), works)
        self.assertEqual((list(pool._waiting), pool._starting), ([], 0))


class BurstOverSocketsTest(unittest.TestCase):
    def test_every_connection_of_a_burst_is_answered(self) -> None:
        server = NexServer(alpha_root(self))
        self.addCleanup(server.stop)
        server.start()
        connections = [server.connect() for _ in range(60)]
        for sock in connections:
            self.addCleanup(sock.close)
        for sock in connections:
            sock.sendall(b"GET /a.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        for sock in connections:
            status, _, body = ResponseReader(sock).read()
            self.assertEqual((status, body), (200, b"alpha"))


@unittest.skipUnless(os.path.isdir("/proc/self/task"), "counts threads through /proc")
class ReuseOverSocketsTest(unittest.TestCase):
    """The real server: one connection after another is served without a thread apiece."""

    def test_sequential_connections_reuse_one_thread(self) -> None:
        server = NexServer(alpha_root(self))
        self.addCleanup(server.stop)
        server.start()
        seen: Set[str] = set(os.listdir(f"/proc/{server.pid}/task"))
        before = len(seen)
        for _ in range(20):
            self.assertEqual(get(server)[2], b"alpha")
            seen |= set(os.listdir(f"/proc/{server.pid}/task"))
        # A thread per connection would show 20 new thread ids.  A connection that comes
        # before the last one's thread has parked starts one (and that one up to GROWTH
        # more), so a loaded machine shows a few, never one apiece.
        self.assertLessEqual(len(seen), before + 10, sorted(seen))


class ParkedThreadReferenceTest(unittest.TestCase):
    def test_a_parked_thread_lets_its_last_work_go(self) -> None:
        import gc
        import weakref

        class Work:
            pass

        pool = ThreadPool(idle_seconds=SOCKET_TIMEOUT)
        self.addCleanup(pool.close)
        done = threading.Event()
        work = Work()
        gone = weakref.ref(work)
        self.assertTrue(hand(pool, work, lambda item: done.set(), "once"))
        self.assertTrue(done.wait(SOCKET_TIMEOUT))
        del work
        wait_until(lambda: pool._parked, what="the thread to park")
        gc.collect()
        self.assertIsNone(gone())
