#!/usr/bin/env bash
# Runs AudioML: the web panel on http://127.0.0.1:${PORT:-8000} plus the background workers. Ctrl-C stops all.
source "$(dirname "$0")/_setup.sh"

"$PYTHON_BIN" manage.py migrate --noinput
"$PYTHON_BIN" manage.py createcachetable
"$PYTHON_BIN" manage.py collectstatic --noinput --verbosity 0
"$PYTHON_BIN" manage.py ensure_admin
# Files a crash left without their rows (older than SWEEP_MIN_AGE_SECONDS, so no other instance's upload).
"$PYTHON_BIN" manage.py sweep

# Prometheus counters from an earlier run would mix with this one's.
PROMETHEUS_DIR="${PROMETHEUS_MULTIPROC_DIR:-${AUDIOML_DATA_DIR:-$ROOT/data}/prometheus}"
rm -rf "$PROMETHEUS_DIR" && mkdir -p "$PROMETHEUS_DIR"

HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
pids=()
stop_all() {
  trap - INT TERM EXIT
  echo
  echo "Stopping AudioML…"
  # Signal each process we started on its own: SIGTERM to a whole qcluster process group can hang it.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all INT TERM EXIT

# Each child runs in its own session, so Ctrl-C reaches only this script, which then stops them one by one.
setsid "$PYTHON_BIN" -m gunicorn audioml.wsgi:application --bind "$HOST:$PORT" \
  --workers "${WEB_WORKERS:-2}" --threads "${WEB_THREADS:-4}" --timeout 300 --access-logfile - --no-control-socket &
pids+=($!)
setsid "$PYTHON_BIN" manage.py qcluster &
pids+=($!)
Q_CLUSTER_NAME=training setsid "$PYTHON_BIN" manage.py qcluster &
pids+=($!)

echo "AudioML is running at http://$HOST:$PORT/ (press Ctrl-C to stop)"
# Stop everything as soon as any one process exits.
wait -n "${pids[@]}"
