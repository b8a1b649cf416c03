"""The check that fails a test module which leaves descriptors open: a nose2 plugin.

Around each test module's tests (with its classes' set-up and tear-down) the plugin notes
the process's open file descriptors, from ``/proc/self/fd``, and the ResourceWarnings Python
gives when it collects a socket or file nobody closed.  A last test appended to the module,
``DescriptorCheck.test_module_left_nothing_open``, fails naming each descriptor still open
and each such warning.  ``nose2.cfg`` at the top of the checkout turns the plugin on; it
checks modules that nose2 loads whole (a run of one class or test is not checked), and only
where ``/proc/self/fd`` exists.
"""

from __future__ import annotations

import os
import threading
import unittest
import warnings
from typing import Dict, List

from nose2.events import Plugin

from tests.support.server import wait_until

_FD_FOLDER = "/proc/self/fd"
#: How long descriptors closed by threads still finishing their work may take to go.
GRACE_SECONDS = 10.0

_lock = threading.Lock()
#: Every ResourceWarning seen in the run, as text, in order.
_resource_warnings: List[str] = []


def own_descriptors() -> Dict[int, str]:
    """This process's open descriptors and what each refers to (``socket:[inode]``, a path)."""
    found = {}
    for name in os.listdir(_FD_FOLDER):
        try:
            target = os.readlink(f"{_FD_FOLDER}/{name}")
        except OSError:
            continue  # the listing's own descriptor, closed by now
        found[int(name)] = target
    return found


class DescriptorCheck(unittest.TestCase):
    """The last test of a checked module; ``suite`` is the module's :class:`CheckedModule`."""

    suite: "CheckedModule"

    def test_module_left_nothing_open(self) -> None:
        before = self.suite.descriptors

        def left_open() -> Dict[int, str]:
            now = own_descriptors()
            return {fd: target for fd, target in now.items() if before.get(fd) != target}
        wait_until(lambda: not left_open(), GRACE_SECONDS, 0.05)
        leaked = left_open()
        with _lock:
            collected = _resource_warnings[self.suite.first_warning:]
        problems = [f"descriptor {fd} left open: {target}"
                    for fd, target in sorted(leaked.items())]
        problems += [f"collected unclosed: {text}" for text in collected]
        if problems:
            self.fail(f"{self.suite.module} left resources open:\n" + "\n".join(problems))


class CheckedModule(unittest.TestSuite):
    """A module's tests, then its :class:`DescriptorCheck`, noting what was open first."""

    def __init__(self, module: str, tests: unittest.TestSuite) -> None:
        super().__init__([tests])
        self.module = module
        self.descriptors: Dict[int, str] = {}
        self.first_warning = 0
        check = type("DescriptorCheck", (DescriptorCheck,), {"__module__": module, "suite": self})
        self.addTest(check("test_module_left_nothing_open"))

    def run(self, result, debug=False):
        self.descriptors = own_descriptors()
        with _lock:
            self.first_warning = len(_resource_warnings)
        return super().run(result, debug)


class DescriptorCheckPlugin(Plugin):
    """Wraps each module nose2 loads in a :class:`CheckedModule`, and records every
    ResourceWarning (still showing it as Python would)."""

    configSection = "descriptor-check"
    alwaysOn = True

    def startTestRun(self, event) -> None:
        warnings.simplefilter("always", ResourceWarning)
        shown = warnings.showwarning

        def record(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, ResourceWarning):
                with _lock:
                    _resource_warnings.append(f"{message} ({filename}:{lineno})")
            shown(message, category, filename, lineno, file, line)
        warnings.showwarning = record

    def moduleLoadedSuite(self, event) -> None:
        if os.path.isdir(_FD_FOLDER) and event.suite.countTestCases():
            event.suite = CheckedModule(event.module.__name__, event.suite)
