#!/usr/bin/env bash
# Runs the whole test suite. DATABASE_URL=postgres://… runs it on PostgreSQL instead of SQLite.
source "$(dirname "$0")/_setup.sh"

# The browser tests drive Debian's Chromium (never a browser download) and the demo-corpus tests speak with
# espeak-ng and sox: install whichever is missing where apt-get can (root or sudo).
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "Installing ${missing[*]} for the browser and demo-corpus tests"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

exec "$PYTHON_BIN" -m pytest "$@"
