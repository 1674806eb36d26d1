#!/usr/bin/env bash
# Runs the whole test suite. DATABASE_URL=postgres://… runs it on PostgreSQL instead of SQLite.
source "$(dirname "$0")/_setup.sh"

# The Redis broker tests need a Redis server: TEST_REDIS_URL's (default database 15 of 127.0.0.1:6379) when it
# answers; otherwise, for a loopback address, a private redis-server of this run's own (Debian's package) on a free
# loopback port, stopped when the run ends.
TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
redis_address="${TEST_REDIS_URL#redis://}"; redis_database="${redis_address#*/}"; redis_address="${redis_address%%/*}"
redis_address="${redis_address##*@}"; redis_host="${redis_address%%:*}"; redis_port="${redis_address##*:}"
[ "$redis_port" != "$redis_host" ] || redis_port=6379
[ "$redis_database" != "${TEST_REDIS_URL#redis://}" ] || redis_database=0

redis_answers() {  # a PING over bash's /dev/tcp: host, port
  { exec 3<>"/dev/tcp/$1/$2" && printf 'PING\r\n' >&3 && read -r -t 5 reply <&3 && exec 3>&- \
      && [[ "$reply" == +PONG* ]]; } 2>/dev/null
}

start_private_redis=false
if ! redis_answers "$redis_host" "$redis_port"; then
  case "$redis_host" in
    127.0.0.1|localhost|::1) start_private_redis=true ;;
  esac
fi

# The browser tests drive Debian's Chromium (never a browser download), the demo-corpus tests speak with
# espeak-ng and sox, and a private Redis is Debian's redis-server: install whichever is missing where apt-get can
# (root or sudo).
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
if $start_private_redis && ! command -v redis-server >/dev/null 2>&1; then missing+=(redis-server); fi
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "Installing ${missing[*]} for the browser, demo-corpus and Redis broker tests"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

redis_pid=""
redis_dir=""
stop_private_redis() {
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
  fi
  [ -z "$redis_dir" ] || rm -rf "$redis_dir"
}
trap stop_private_redis EXIT

if $start_private_redis; then
  if command -v redis-server >/dev/null 2>&1; then
    redis_dir="$(mktemp -d -t audioml-test-redis.XXXXXX)"
    port="$("$PYTHON_BIN" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$redis_dir" \
      --logfile "$redis_dir/redis.log" &
    redis_pid=$!
    for _ in $(seq 50); do redis_answers 127.0.0.1 "$port" && break; sleep 0.2; done
    if redis_answers 127.0.0.1 "$port"; then
      echo "No Redis at $TEST_REDIS_URL: started a private redis-server on 127.0.0.1:$port for this run"
      TEST_REDIS_URL="redis://127.0.0.1:$port/$redis_database"
    else
      export AUDIOML_TEST_REDIS_SKIP="no Redis at $TEST_REDIS_URL and the private redis-server did not start (see $redis_dir/redis.log)"
    fi
  else
    export AUDIOML_TEST_REDIS_SKIP="no Redis at $TEST_REDIS_URL and no redis-server to start (apt-get install redis-server)"
  fi
elif ! redis_answers "$redis_host" "$redis_port"; then
  export AUDIOML_TEST_REDIS_SKIP="no Redis at $TEST_REDIS_URL (not a loopback address: start it, or point TEST_REDIS_URL at one)"
fi
export TEST_REDIS_URL
[ -z "${AUDIOML_TEST_REDIS_SKIP:-}" ] || echo "Warning: the Redis broker tests will be skipped: $AUDIOML_TEST_REDIS_SKIP" >&2

"$PYTHON_BIN" -m pytest "$@"
