#!/usr/bin/env bash
# Install what the Nex test suite needs, then run all of it with nose2; then run it again on
# the oldest and the newest other Python 3.9+ on the machine, and the concurrency tests on a
# free-threaded Python when there is one (see docs/testing.md).
#
# The Python test dependencies (tests/requirements.txt) never go into the system Python: they
# go into the virtual environment this runs in, else into .venv/ in the checkout, created here
# with `python3 -m venv` (Debian and Ubuntu need the python3-venv package for that; it is
# installed when apt-get is available and we are root or have sudo).  The browser tests need
# Debian's chromium and chromium-driver, the TLS tests the openssl and curl commands, the
# WebDAV tests rclone and cadaver; they
# are installed the same way, and without them those tests skip and say why.  apt-get waits at most 10 minutes for another apt or dpkg to finish.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo -n"

can_apt() {
  command -v apt-get >/dev/null 2>&1 && $sudo true 2>/dev/null
}

apt_get() {
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"
}

venv_works() {
  [ -x .venv/bin/python ] && .venv/bin/python -m pip --version >/dev/null 2>&1
}

if python3 -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
  python=python3  # already inside a virtual environment
else
  if ! venv_works; then
    rm -rf .venv
    if ! python3 -m venv .venv >/dev/null 2>&1; then
      rm -rf .venv
      if can_apt; then
        echo "Installing python3-venv to create the test environment in .venv/..."
        apt_get update -qq >/dev/null || true
        apt_get install -y -qq python3-venv >/dev/null \
          || echo "WARNING: could not install python3-venv."
      fi
      if ! python3 -m venv .venv; then
        rm -rf .venv
        echo "ERROR: cannot create .venv/; install python3-venv (Debian, Ubuntu) and run" \
          "this again." >&2
        exit 1
      fi
    fi
  fi
  python=.venv/bin/python
fi

"$python" -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt

# Debian packages some tests drive: a browser, the openssl and curl commands (test
# certificates, a real HTTPS client), rclone and cadaver (real WebDAV clients), and for the
# production tests haproxy, logrotate and systemd (systemd-socket-activate, systemd-analyze).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v rclone >/dev/null 2>&1 || missing+=(rclone)
command -v cadaver >/dev/null 2>&1 || missing+=(cadaver)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v logrotate >/dev/null 2>&1 || missing+=(logrotate)
command -v systemd-socket-activate >/dev/null 2>&1 || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  if can_apt; then
    echo "Installing ${missing[*]} for the browser, TLS, WebDAV, client and production tests..."
    apt_get update -qq >/dev/null || true
    apt_get install -y -qq "${missing[@]}" >/dev/null \
      || echo "WARNING: could not install ${missing[*]}; the tests needing them will skip."
  else
    echo "WARNING: no root or sudo to install ${missing[*]}; the tests needing them will skip."
  fi
fi

status=0
# The other interpreters' runs (below) go in the background beside the main run, each
# with its output in .test-logs/, shown whole once it has ended: on two or more cores the
# whole command then takes about as long as the main run alone.
rm -rf .test-logs
mkdir -p .test-logs
background=()  # "pid|title|log" of each run started
trap 'kill $(jobs -p) 2>/dev/null; exit 130' INT TERM  # Ctrl+C stops them too
start_run() {  # start_run TITLE LOG COMMAND...: COMMAND in the background, output in LOG
  local title=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  background+=("$!|$title|$log")
  echo "Started in the background: $title (output in $log)"
}

# The same suite on the oldest and the newest other supported interpreters (pyenv's
# versions, python3.X on PATH), each in its own .venv-3.X/ with the test requirements, so
# that a version-specific break fails too.  Without test names, they run the suite but
# for the browser and load tests (OTHER_PYTHONS_SKIP), which add minutes and nothing that
# differs by Python.  NEX_OTHER_PYTHONS=no skips this part.
OTHER_PYTHONS_SKIP="test_browser test_cors_browser test_upload_browser test_overload test_socket_fuzz"
if [ "${NEX_OTHER_PYTHONS:-yes}" != no ]; then
  names=("$@")
  if [ ${#names[@]} -eq 0 ]; then
    for path in tests/test_*.py; do
      module=$(basename "$path" .py)
      case " $OTHER_PYTHONS_SKIP " in *" $module "*) continue ;; esac
      names+=("tests.$module")
    done
  fi
  mapfile -t others < <("$python" -m tests.support.interpreters)
  for other in "${others[@]}"; do
    version=$("$other" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    venv=".venv-$version"
    if ! { [ -x "$venv/bin/python" ] || "$other" -m venv "$venv"; } \
        || ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
             -r tests/requirements.txt; then
      echo "ERROR: cannot set up $venv for Python $version." >&2
      status=1
      continue
    fi
    start_run "the suite on Python $version ($other)" ".test-logs/python-$version.log" \
      "$venv/bin/python" -m nose2 --start-dir . --top-level-directory . "${names[@]}"
  done
fi

# The concurrency tests (those that hammer Nex's shared tables from threads, and serve
# many connections at once) on a free-threaded Python, 3.13t or later, found by
# tests.support.interpreters: NEX_FREE_THREADED_PYTHON=/path/to/python, else
# python3.15t/3.14t/3.13t on PATH.  In its own .venv-3.Xt/; PYTHON_GIL=0 keeps the GIL off
# whatever a test-only package loads, so the run tests what it says (test_free_threaded
# checks without it that Nex itself never turns the GIL on).  With test names, those tests.
# NEX_OTHER_PYTHONS=no or NEX_FREE_THREADED=no skips this part.
FREE_THREADED_TESTS="test_free_threaded test_opencache test_misses test_templates test_static
  test_filecache test_listing test_pool test_newcomers test_connection test_log test_metrics
  test_proxy test_upstream test_dns test_webdav test_resumable test_access test_auth
  test_tunnel"
if [ "${NEX_OTHER_PYTHONS:-yes}" != no ] && [ "${NEX_FREE_THREADED:-yes}" != no ]; then
  if ! threaded=$("$python" -m tests.support.interpreters --free-threaded); then
    status=1
  elif [ -z "$threaded" ]; then
    echo "Free-threaded run skipped: no python3.13t, python3.14t or python3.15t on PATH" \
      "(name one with NEX_FREE_THREADED_PYTHON=/path/to/python)."
  else
    version=$("$threaded" -c 'import sys; print("%d.%dt" % sys.version_info[:2])')
    names=("$@")
    if [ ${#names[@]} -eq 0 ]; then
      for module in $FREE_THREADED_TESTS; do names+=("tests.$module"); done
    fi
    venv=".venv-$version"
    if ! { [ -x "$venv/bin/python" ] || "$threaded" -m venv "$venv"; }; then
      echo "ERROR: cannot set up $venv for Python $version." >&2
      status=1
    else
      # Wheels only, one requirement at a time: some have no free-threaded wheel yet
      # (cryptography; hypothesis's newest needs Rust), and the tests needing those skip.
      # Done again only when the requirements change.
      if ! cmp -s tests/requirements.txt "$venv/requirements.txt"; then
        grep -v '^ *#' tests/requirements.txt | while read -r requirement; do
          [ -n "$requirement" ] || continue
          "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            --only-binary=:all: "$requirement" >/dev/null 2>&1 \
            || echo "WARNING: no wheel of $requirement for Python $version; the tests" \
                    "needing it skip."
        done
        cp tests/requirements.txt "$venv/requirements.txt"
      fi
      start_run "the concurrency tests on free-threaded Python $version ($threaded)" \
        ".test-logs/python-$version.log" \
        env PYTHON_GIL=0 "$venv/bin/python" -m nose2 --start-dir . --top-level-directory . \
        "${names[@]}"
    fi
  fi
fi

echo
echo "=== The suite on $("$python" --version 2>&1) ($python) ==="
"$python" -m nose2 --verbose --start-dir . --top-level-directory . "$@" || status=$?

for run in "${background[@]}"; do
  IFS='|' read -r pid title log <<<"$run"
  result=0
  wait "$pid" || result=$?
  echo
  echo "=== $title ==="
  cat "$log"
  if [ "$result" != 0 ]; then
    echo "FAILED: $title (status $result)"
    status=$result
  fi
done
exit $status
