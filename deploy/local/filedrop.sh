#!/usr/bin/env bash
# The filedrop processes on this machine: one control plane and two workers, built from this
# checkout, with state under var/local/ and logs in var/local/logs/.
#
#   deploy/local/filedrop.sh start | stop | status
source "$(dirname "$0")/common.sh"
cd "$ROOT"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
LOGS="$STATE/logs"
mkdir -p "$LOGS"

# Both binaries share the staging directory and the secret key.
export FILEDROP_STAGING__DIR="$STATE/staging"
export FILEDROP_SECRETS__KEY_FILE="$STATE/secret.key"

start() {
  [[ -x "$BIN/filedrop-control-plane" && -x "$BIN/filedrop-worker" ]] || {
    log "building filedrop"
    cargo build --workspace --bins --locked
  }
  if port_open "$CONTROL_PLANE_PORT"; then
    log "something already listens on 127.0.0.1:$CONTROL_PLANE_PORT; 'filedrop.sh stop' first"
    return 1
  fi
  # A token belongs to its run store: a new store gets a new token.
  [[ -f "$STATE/runs.db" ]] || rm -f "$STATE/token"
  log "starting the control plane on 127.0.0.1:$CONTROL_PLANE_PORT and two workers"
  FILEDROP_RUN_STORE__URL="sqlite://$STATE/runs.db" \
    FILEDROP_LISTEN_ADDR="127.0.0.1:$CONTROL_PLANE_PORT" \
    nohup "$BIN/filedrop-control-plane" --config deploy/config/control-plane.example.toml \
    >"$LOGS/control-plane.log" 2>&1 &
  echo $! >"$STATE/control-plane.pid"
  for n in 1 2; do
    nohup "$BIN/filedrop-worker" --config deploy/config/worker.example.toml \
      >"$LOGS/worker-$n.log" 2>&1 &
    echo $! >"$STATE/worker-$n.pid"
  done
  if ! wait_port "$CONTROL_PLANE_PORT" 60 "the control plane"; then
    tail -n 30 "$LOGS/control-plane.log" >&2
    return 1
  fi
  # The local tenant's API token, made once per run store and kept in var/local/token.
  if [[ ! -s "$STATE/token" ]]; then
    log "creating an API token for the tenant 'local' (kept in $STATE/token)"
    (umask 077 && FILEDROP_RUN_STORE__URL="sqlite://$STATE/runs.db" \
      "$BIN/filedrop-control-plane" --config deploy/config/control-plane.example.toml \
      token create --tenant local --name quickstart >"$STATE/token")
  fi
  sleep 1
  for n in 1 2; do
    if ! kill -0 "$(cat "$STATE/worker-$n.pid")" 2>/dev/null; then
      echo "worker $n exited; its log:" >&2
      head -n 30 "$LOGS/worker-$n.log" >&2
      return 1
    fi
  done
}

stop() {
  for n in 1 2; do stop_pidfile "$STATE/worker-$n.pid"; done
  stop_pidfile "$STATE/control-plane.pid"
}

status() {
  for name in control-plane worker-1 worker-2; do
    if [[ -f "$STATE/$name.pid" ]] && kill -0 "$(cat "$STATE/$name.pid")" 2>/dev/null; then
      printf '%-14s running (pid %s)\n' "$name" "$(cat "$STATE/$name.pid")"
    else
      printf '%-14s stopped\n' "$name"
    fi
  done
}

case "${1:-status}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
