"""Running one piece of work on many threads at once, for the tests that hammer a shared table."""

from __future__ import annotations

import threading
from typing import Callable, List

JOIN_TIMEOUT = 180.0


def run_at_once(work: Callable[[int], None], threads: int = 8) -> List[str]:
    """Run ``work(seed)`` for each seed from 0 to ``threads - 1`` on a thread of its own, all at
    once; wait for them and return what went wrong (each fault raised, after its seed, and each
    thread still running after ``JOIN_TIMEOUT``), so that the test asserts the list is empty."""
    faults: List[str] = []

    def run(seed: int) -> None:
        try:
            work(seed)
        except BaseException as error:  # collected for the main thread
            faults.append(f"{seed}: {error!r}")

    started = [threading.Thread(target=run, args=(seed,)) for seed in range(threads)]
    for thread in started:
        thread.start()
    for seed, thread in enumerate(started):
        thread.join(JOIN_TIMEOUT)
        if thread.is_alive():
            faults.append(f"thread {seed} still running after {JOIN_TIMEOUT} s")
    return faults
