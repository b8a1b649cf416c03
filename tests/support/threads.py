"""Work run in several threads at once, for the tests that hammer a table the server's
threads share (on a free-threaded Python they really do run at once)."""

from __future__ import annotations

import threading
from typing import Callable, List

from tests.support.server import START_TIMEOUT


def run_in_threads(work: Callable[[int], None], count: int = 8) -> None:
    """Run ``work(index)`` in ``count`` threads released together, ``index`` from 0; raise
    the first exception any of them raised, or ``AssertionError`` if one never finishes."""
    barrier = threading.Barrier(count)
    errors: List[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(START_TIMEOUT)
            work(index)
        except BaseException as error:  # re-raised in the caller's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,), daemon=True)
               for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(START_TIMEOUT)
        if thread.is_alive():
            raise AssertionError("a thread did not finish its work")
    if errors:
        raise errors[0]
