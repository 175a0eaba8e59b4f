#!/usr/bin/env bash
# `make run`'s last step: the job worker (qcluster) and the web server side by side.
# Ctrl-C, or either of them exiting, stops both and waits for them: no process is left behind.
set -u
PY=${PY:-.venv/bin/python}
ADDR=${ADDR:-127.0.0.1:8000}
export DEBUG=${DEBUG:-on}

"$PY" manage.py qcluster &
worker=$!
"$PY" manage.py runserver "$ADDR" &
web=$!

stop() {
  trap - INT TERM
  # qcluster stops its workers gracefully on SIGTERM; runserver's reloader passes it on.
  kill -TERM "$web" "$worker" 2>/dev/null
  wait "$worker" "$web" 2>/dev/null
}
trap 'stop; exit 0' INT TERM
wait -n "$worker" "$web"
status=$?
echo "pastq: a process exited (status $status); stopping the other." >&2
stop
exit "$status"
