"""The package's layers import only downward, and no module imports itself in a cycle.

The layers, lowest first: the top-level modules of ``nex``, then ``http``, ``files``,
``site``, ``proxy`` and ``process``.  Imports kept for type annotations alone sit under
``if TYPE_CHECKING:`` and are not counted.
"""

from __future__ import annotations

import ast
import unittest
from pathlib import Path
from typing import Dict, Set

import nex

PACKAGE = Path(nex.__file__).resolve().parent
LAYERS = ("", "http", "files", "site", "proxy", "process")
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 2 and parts[1] in LAYERS else 0


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def runtime_imports(path: Path) -> Set[str]:
    """The ``nex`` modules that ``path`` imports when it runs (not for type checking)."""
    found: Set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names if alias.name.startswith("nex"))
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module.startswith("nex"):
                    found.add(child.module)
                    for alias in child.names:
                        candidate = f"{child.module}.{alias.name}"
                        if (PACKAGE.parent
                                / candidate.replace(".", "/")).with_suffix(".py").exists():
                            found.add(candidate)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _graph() -> Dict[str, Set[str]]:
    return {_module_name(path): runtime_imports(path) for path in PACKAGE.rglob("*.py")}


class LayerTest(unittest.TestCase):
    def test_every_module_is_in_a_known_layer(self):
        for path in PACKAGE.rglob("*.py"):
            parts = path.relative_to(PACKAGE).parts
            self.assertTrue(len(parts) == 1 or parts[0] in LAYERS, path)

    def test_imports_go_only_downward(self):
        for module, imports in _graph().items():
            for imported in imports:
                with self.subTest(module=module, imported=imported):
                    self.assertLessEqual(_layer(imported), _layer(module))

    def test_no_import_cycle(self):
        graph = _graph()
        done: Set[str] = set()

        def walk(module: str, trail: tuple) -> None:
            if module in trail:
                self.fail(" -> ".join(trail[trail.index(module):] + (module,)))
            if module in done:
                return
            for imported in graph.get(module, ()):
                if imported != module and not module.startswith(imported + "."):
                    walk(imported, trail + (module,))
            done.add(module)

        for module in sorted(graph):
            walk(module, ())

    def test_no_module_is_much_longer_than_a_screenful_of_screens(self):
        for path in PACKAGE.rglob("*.py"):
            with self.subTest(path=path.name):
                lines = path.read_text(encoding="utf-8").count("\n")
                self.assertLessEqual(lines, MAX_LINES)
