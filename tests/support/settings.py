"""Settings files and the command line without a server: a site folder, its settings, and
main() run with the listener or the supervisor stood in for."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
import types
import unittest
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Tuple, Union
from unittest import mock

import nex
from nex.process.cli import main
from nex.process.config import Config, ConfigError, load_config
from tests.support.server import REPO

#: The settings file Nex ships.
SHIPPED_SETTINGS = Path(REPO) / "settings.conf"


def make_site(test: unittest.TestCase) -> Path:
    """A temporary folder with public_html/, error_pages/error.html, other_templates/dir.html."""
    folder = Path(tempfile.mkdtemp(prefix="nex-config-")).resolve()
    test.addCleanup(shutil.rmtree, folder)
    (folder / "public_html").mkdir()
    (folder / "error_pages").mkdir()
    (folder / "error_pages" / "error.html").write_text("{{-STATUS-}}\n")
    (folder / "other_templates").mkdir()
    (folder / "other_templates" / "dir.html").write_text("{{-ENTRIES-}}\n")
    return folder


def refusal(path: Optional[Union[str, os.PathLike]],
            overrides: Optional[Mapping[str, object]] = None) -> str:
    """The message of the ConfigError with which ``load_config`` refuses ``path`` and
    ``overrides``; fails if it accepts them."""
    try:
        load_config(path, overrides)
    except ConfigError as error:
        return str(error)
    raise AssertionError(f"{path} and {overrides} were accepted")


def settings_text(values: Mapping[Tuple[str, str], str] = {}) -> str:
    """INI text naming the site's folders, plus ``values`` keyed by (section, key)."""
    sections: Dict[str, Dict[str, str]] = {"server": {
        "document_root": "public_html", "error_pages": "error_pages",
        "templates": "other_templates"}}
    for (section, key), value in values.items():
        sections.setdefault(section, {})[key] = value
    lines = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {value}" for key, value in keys.items())
    return "\n".join(lines) + "\n"


def write_settings(folder: Path, values: Mapping[Tuple[str, str], str] = {},
                   name: str = "settings.conf") -> Path:
    """Write settings_text(values) into ``folder`` and return the file's path."""
    path = folder / name
    path.write_text(settings_text(values), encoding="utf-8")
    return path


def bad_value_message(path: Path, section: str, key: str, value: str, reason: str) -> str:
    """The whole ConfigError message BAD_VALUES promises for one entry."""
    shown = value if value and value.isprintable() else repr(value)
    if reason.startswith("unknown section"):
        return f"{path} [{section}]: {reason}"
    return f"{path} [{section}] {key} = {shown}: {reason}"


class WorkingDirectory:
    """Run a block with ``folder`` as the current directory."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __enter__(self) -> None:
        self.previous = os.getcwd()
        os.chdir(self.folder)

    def __exit__(self, *exc_info: object) -> None:
        os.chdir(self.previous)


def shipped_folders(test: unittest.TestCase, layout: str) -> Path:
    """Point ``nex.__file__`` at a fake install whose shipped folders sit per ``layout``.

    ``package``: nex/error_pages and nex/other_templates; ``checkout``: beside nex/.
    Returns the folder that holds them.
    """
    root = make_site(test)
    package = root / "nex"
    package.mkdir()
    (package / "__init__.py").write_text("")
    if layout == "package":
        for name in ("error_pages", "other_templates"):
            shutil.move(str(root / name), str(package / name))
    patcher = mock.patch.object(nex, "__file__", str(package / "__init__.py"))
    patcher.start()
    test.addCleanup(patcher.stop)
    return package if layout == "package" else root




@contextlib.contextmanager
def fake_server(result: int = 0) -> Iterator[mock.Mock]:
    """Stand in for nex.process.run so main() stops at run_server(config, ...) instead of
    listening."""
    module = types.ModuleType("nex.process.run")
    module.run_server = mock.Mock(return_value=result)  # type: ignore[attr-defined]
    with mock.patch.dict(sys.modules, {"nex.process.run": module}):
        yield module.run_server  # type: ignore[attr-defined]


@contextlib.contextmanager
def fake_supervisor(result: int = 0) -> Iterator[mock.Mock]:
    """Stand in for nex.process.supervisor so main() stops at supervise(config, load)."""
    module = types.ModuleType("nex.process.supervisor")
    module.supervise = mock.Mock(return_value=result)  # type: ignore[attr-defined]
    with mock.patch.dict(sys.modules, {"nex.process.supervisor": module}):
        yield module.supervise  # type: ignore[attr-defined]


def run(argv: List[str], default_config: Optional[Path] = None,
        result: int = 0) -> Tuple[int, str, str, Optional[Config]]:
    """main(argv): exit status, stdout, stderr and the Config serve() got (None: not called)."""
    out, err = io.StringIO(), io.StringIO()
    with fake_server(result) as serve, contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        status = main(argv, default_config=default_config)
    config = serve.call_args[0][0] if serve.called else None
    return status, out.getvalue(), err.getvalue(), config


class CommandLineCase(unittest.TestCase):
    """Tests of main() that expect it to refuse to start."""

    def assert_refused(self, argv: List[str], message: str,
                       default_config: Optional[Path] = None) -> None:
        """main(argv) prints one line, ``nex: <message>``, and exits 2 without serving."""
        status, out, err, config = run(argv, default_config)
        self.assertEqual((status, out, err), (2, "", f"nex: {message}\n"))
        self.assertIsNone(config)
