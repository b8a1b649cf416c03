"""Packaging for Nex: ``pip install .`` gives the ``nex`` command.

The error pages, the listing template and settings.conf live at the top of the checkout
(``error_pages/``, ``other_templates/``, ``settings.conf``) so that ``python3 server.py`` finds
them; the package ships them inside ``nex/`` so that an installed ``nex`` finds them too
(``nex --write-config`` copies the shipped settings.conf).
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

from nex import __version__


class BuildWithSettings(build_py):
    """build_py that also copies the checkout's settings.conf into the built package."""

    def run(self):
        super().run()
        self.copy_file("settings.conf", os.path.join(self.build_lib, "nex", "settings.conf"))


setup(
    name="nex",
    version=__version__,
    description="A multi-threaded HTTP/1.1 file server in pure Python",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=["nex", "nex.http", "nex.files", "nex.site", "nex.proxy", "nex.process",
              "nex.error_pages", "nex.other_templates"],
    package_dir={"nex.error_pages": "error_pages", "nex.other_templates": "other_templates"},
    package_data={"nex.error_pages": ["*.html"], "nex.other_templates": ["*.html", "*.js"]},
    cmdclass={"build_py": BuildWithSettings},
    entry_points={"console_scripts": ["nex = nex.process.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3 :: Only",
        "Topic :: Internet :: WWW/HTTP :: HTTP Servers",
        "Environment :: Console",
    ],
)
