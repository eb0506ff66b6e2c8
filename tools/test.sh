#!/usr/bin/env bash
# The README's test command: set up everything the suite needs on a fresh machine, then lint and
# run the whole suite.
#
#   1. a headless Chromium for the report tests: Debian's chromium-headless-shell, installed with
#      apt-get when no browser is found (about 20 s; needs root or password-less sudo). Set
#      EVODISC_BROWSER to use another Chromium-family binary instead;
#   2. a virtual environment .venv with evodisc and its test extras (CPU PyTorch 2.13.0);
#   3. ruff, then pytest on every core (pytest-xdist).
#
# Extra arguments go to pytest: bash tools/test.sh tests/test_store.py -x
set -euo pipefail
cd "$(dirname "$0")/.."

BROWSER_PACKAGE=chromium-headless-shell

find_browser() {  # the first candidate that is an executable and answers --version
    local candidate path
    for candidate in "${EVODISC_BROWSER:-}" "$BROWSER_PACKAGE" chromium chromium-browser; do
        path=$(command -v "$candidate" 2>/dev/null) || continue
        if [[ -n "$candidate" && -x "$path" ]] && "$path" --version >/dev/null 2>&1; then
            echo "$path"
            return 0
        fi
    done
    return 1
}

install_browser() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        sudo -n true 2>/dev/null || return 1
        sudo=(sudo -n)
    fi
    command -v apt-get >/dev/null || return 1
    echo "tools/test.sh: installing $BROWSER_PACKAGE for the report tests (apt-get, about 20 s)" >&2
    "${sudo[@]}" apt-get update -qq >/dev/null &&
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$BROWSER_PACKAGE" >/dev/null
}

if [[ -n "${EVODISC_BROWSER:-}" ]] && ! [[ -x $(command -v "$EVODISC_BROWSER" 2>/dev/null) ]]; then
    echo "tools/test.sh: EVODISC_BROWSER=$EVODISC_BROWSER is not an executable" >&2
    exit 2
fi
if ! browser=$(find_browser); then
    if ! install_browser || ! browser=$(find_browser); then
        echo "tools/test.sh: the report tests need a headless Chromium: install Debian's" \
            "$BROWSER_PACKAGE (apt-get install $BROWSER_PACKAGE) or set EVODISC_BROWSER to a" \
            "Chromium binary, then run this again" >&2
        exit 2
    fi
fi
export EVODISC_BROWSER="$browser"

python3 -m venv .venv
. .venv/bin/activate
pip install torch==2.13.0 -e ".[test]"
ruff check .
pytest -n auto "$@"
