#!/usr/bin/env bash
# Install what the Nex test suite needs, then run all of it with nose2.
#
# Python test dependencies come from tests/requirements.txt.  The browser tests need Debian's
# chromium and chromium-driver; they are installed here when apt-get is available and we are
# root (or have sudo).  Without them the browser tests skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    if $sudo true 2>/dev/null; then
      echo "Installing chromium and chromium-driver for the browser tests..."
      $sudo apt-get update -qq >/dev/null || true
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver \
        >/dev/null || echo "WARNING: could not install chromium; browser tests will skip."
    else
      echo "WARNING: no root or sudo to install chromium; browser tests will skip."
    fi
  fi
fi

exec python3 -m nose2 --verbose --start-dir . --top-level-directory . "$@"
