# Shared settings of the local scripts. Sourced, not run.
# Everything listens on loopback; state lives under var/local/ in the repository.

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${FILEDROP_LOCAL_STATE:-$ROOT/var/local}"
REQUIREMENTS="$ROOT/deploy/local/requirements.txt"
# The virtualenv is kept outside the clone so fresh clones on one machine share it; its stamp
# is the hash of requirements.txt, so a change of pins rebuilds it.
VENV="${FILEDROP_VENV:-$HOME/.cache/filedrop/venv}"
MOTO_PORT="${FILEDROP_MOTO_PORT:-5000}"
S3S_PORT="${FILEDROP_S3S_PORT:-8014}"
S3S_VERSION="0.14.1"
S3S_BIN="${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"
AMQP_PORT="${FILEDROP_AMQP_PORT:-5672}"
CONTROL_PLANE_PORT="${FILEDROP_CONTROL_PLANE_PORT:-50051}"
mkdir -p "$STATE"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds what
  local deadline=$((SECONDS + $2))
  until port_open "$1"; do
    if ((SECONDS > deadline)); then
      echo "$3 did not open 127.0.0.1:$1 within $2 s" >&2
      return 1
    fi
    sleep 0.2
  done
}

# Stops the process in a pid file, politely first.
stop_pidfile() {
  local file="$1"
  [[ -f "$file" ]] || return 0
  local pid
  pid="$(cat "$file")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# Starts RabbitMQ, moto, a fresh build and the filedrop processes, and exports moto's
# credentials (MOTO_ENDPOINT, MOTO_ACCESS_KEY_ID, MOTO_SECRET_ACCESS_KEY) for the caller.
start_local_stack() {
  bash "$ROOT/deploy/local/services.sh" install
  bash "$ROOT/deploy/local/services.sh" start
  log "building filedrop (the first build takes several minutes)"
  (cd "$ROOT" && cargo build --workspace --bins --locked)
  bash "$ROOT/deploy/local/filedrop.sh" stop
  bash "$ROOT/deploy/local/filedrop.sh" start
  set -a
  source "$STATE/moto.env"
  set +a
}
