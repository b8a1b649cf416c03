"""Start Nex from a checkout: ``python3 server.py`` serves public_html/ per settings.conf."""

import sys
from pathlib import Path

from nex.process.cli import main

if __name__ == "__main__":
    sys.exit(main(default_config=Path(__file__).with_name("settings.conf")))
