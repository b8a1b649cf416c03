"""The shim older tools expect; the packaging itself is in pyproject.toml.

The error pages, the listing template and settings.conf live at the top of the checkout so that
``python3 server.py`` finds them; the package ships them inside ``nex/`` so that an installed
``nex`` finds them too.  pyproject.toml maps the two template folders; this adds settings.conf,
which is a single file beside the package.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithSettings(build_py):
    """build_py that also copies the checkout's settings.conf into the built package."""

    def run(self):
        super().run()
        self.copy_file("settings.conf", os.path.join(self.build_lib, "nex", "settings.conf"))


setup(cmdclass={"build_py": BuildWithSettings})
