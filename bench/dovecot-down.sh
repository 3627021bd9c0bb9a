#!/usr/bin/env bash
# Stop the private Dovecot started by bench/dovecot-up.sh DIR.
#   bench/dovecot-down.sh DIR
# Only the master process recorded in DIR/run/master.pid is signalled.
set -uo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
DIR=$(realpath -m "$1")
PIDFILE=$DIR/run/master.pid
[ -f "$PIDFILE" ] || exit 0
PID=$(cat "$PIDFILE")
if kill -0 "$PID" 2>/dev/null; then
  kill -TERM "$PID"
  for _ in $(seq 100); do
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$PID" 2>/dev/null; then
    echo "dovecot master $PID did not exit; sending KILL" >&2
    kill -KILL "$PID" 2>/dev/null || true
  fi
fi
rm -f "$PIDFILE"
exit 0
