#!/usr/bin/env bash
# Runs the whole test suite. DATABASE_URL=postgres://… runs it on PostgreSQL instead of SQLite.
source "$(dirname "$0")/_setup.sh"
exec "$PYTHON_BIN" -m pytest "$@"
