"""The thread pool: parked threads take the next connection; idle ones end."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import unittest
from typing import List, Set

from nex.process.pool import ThreadPool
from tests.support import SOCKET_TIMEOUT, NexServer, get, wait_until



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
        pool.run(name, self.record, name)
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
            pool.run(number, hold, f"hold-{number}")
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


@unittest.skipUnless(os.path.isdir("/proc/self/task"), "counts threads through /proc")
class ReuseOverSocketsTest(unittest.TestCase):
    """The real server: one connection after another is served without a thread apiece."""

    def test_sequential_connections_reuse_one_thread(self) -> None:
        root = tempfile.mkdtemp(prefix="nex-root-")
        self.addCleanup(shutil.rmtree, root, True)
        with open(os.path.join(root, "a.txt"), "wb") as out:
            out.write(b"alpha")
        server = NexServer(root)
        self.addCleanup(server.stop)
        server.start()
        seen: Set[str] = set(os.listdir(f"/proc/{server.pid}/task"))
        before = len(seen)
        for _ in range(20):
            self.assertEqual(get(server)[2], b"alpha")
            seen |= set(os.listdir(f"/proc/{server.pid}/task"))
        # A thread per connection would show 20 new thread ids; a connection that comes
        # before the last one's thread has parked may start one more.
        self.assertLessEqual(len(seen), before + 5, sorted(seen))


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
        pool.run(work, lambda item: done.set(), "once")
        self.assertTrue(done.wait(SOCKET_TIMEOUT))
        del work
        wait_until(lambda: pool._parked, what="the thread to park")
        gc.collect()
        self.assertIsNone(gone())
