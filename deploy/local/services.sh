#!/usr/bin/env bash
# Local services on loopback: RabbitMQ, the moto S3/STS/IAM server (authentication on) and,
# on request, PostgreSQL and s3s-fs. Installs what is missing.
#
#   deploy/local/services.sh install [s3s-fs]  Python tools (virtualenv), file tools (gzip, zstd,
#                                              bzip2, unzip, tar, gpg) and RabbitMQ if missing;
#                                              or s3s-fs (cargo install, for the tests)
#   deploy/local/services.sh start [SERVICE]   rabbitmq and moto (default), or one of
#                                              rabbitmq | postgres | moto | s3s-fs
#   deploy/local/services.sh stop [SERVICE]
#   deploy/local/services.sh status
#
# moto's credentials (an IAM user allowed s3:*) are written to var/local/moto.env.
# Ports: FILEDROP_AMQP_PORT (5672), FILEDROP_MOTO_PORT (5000), FILEDROP_S3S_PORT (8014); state
# directory: FILEDROP_LOCAL_STATE (var/local). A RabbitMQ already listening is reused; otherwise
# an isolated node is started under the state directory, with its own configuration and a
# rabbitmqctl wrapper (var/local/rabbitmq/rabbitmqctl).
source "$(dirname "$0")/common.sh"

install_python() {
  local stamp
  stamp="$(sha256sum "$REQUIREMENTS" | cut -c1-16)"
  if [[ -f "$VENV/.stamp" && "$(cat "$VENV/.stamp")" == "$stamp" ]]; then
    return 0
  fi
  log "installing Python tools into $VENV (moto, pyarrow, pytest, buf)"
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian's system Python keeps venv support in a separate package.
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  echo "$stamp" >"$VENV/.stamp"
}

# The standard tools the tests judge delivered files with.
install_file_tools() {
  local missing=()
  command -v gzip >/dev/null || missing+=(gzip)
  command -v zstd >/dev/null || missing+=(zstd)
  command -v bzip2 >/dev/null || missing+=(bzip2)
  command -v unzip >/dev/null || missing+=(unzip)
  command -v tar >/dev/null || missing+=(tar)
  command -v gpg >/dev/null || missing+=(gnupg)
  if ((${#missing[@]} > 0)); then
    log "installing ${missing[*]} (Debian packages)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

install_rabbitmq() {
  if port_open "$AMQP_PORT" || command -v rabbitmq-server >/dev/null || [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]]; then
    return 0
  fi
  log "installing RabbitMQ (Debian package)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
}

start_rabbitmq() {
  if port_open "$AMQP_PORT"; then
    log "RabbitMQ already listening on 127.0.0.1:$AMQP_PORT"
    return 0
  fi
  install_rabbitmq
  log "starting RabbitMQ as an isolated node under $STATE/rabbitmq"
  local base="$STATE/rabbitmq"
  mkdir -p "$base/home" "$base/mnesia" "$base/log"
  local bin=/usr/lib/rabbitmq/bin
  [[ -x "$bin/rabbitmq-server" ]] || bin="$(dirname "$(command -v rabbitmq-server)")"
  # Its own configuration files, so nothing under /etc/rabbitmq (listeners, node name) applies.
  printf 'listeners.tcp.local = 127.0.0.1:%s\n' "$AMQP_PORT" >"$base/rabbitmq.conf"
  : >"$base/rabbitmq-env.conf"
  echo '[].' >"$base/enabled_plugins"
  export HOME="$base/home" RABBITMQ_MNESIA_BASE="$base/mnesia" RABBITMQ_LOG_BASE="$base/log" \
    RABBITMQ_NODENAME="filedrop@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$AMQP_PORT" RABBITMQ_PID_FILE="$base/rabbitmq.pid" \
    RABBITMQ_CONFIG_FILE="$base/rabbitmq.conf" RABBITMQ_CONF_ENV_FILE="$base/rabbitmq-env.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins" RABBITMQ_DIST_PORT=$((AMQP_PORT + 20000))
  "$bin/rabbitmq-server" -detached
  "$bin/rabbitmqctl" -n filedrop@localhost wait --timeout 120 "$base/rabbitmq.pid" >/dev/null
  wait_port "$AMQP_PORT" 60 RabbitMQ
  # rabbitmqctl for this node (its own cookie and name), used by the broker tests.
  cat >"$base/rabbitmqctl" <<WRAPPER
#!/usr/bin/env bash
HOME="$base/home" exec "$bin/rabbitmqctl" -n filedrop@localhost "\$@"
WRAPPER
  chmod +x "$base/rabbitmqctl"
}

# PostgreSQL, for the run store of a cluster and its tests: the machine's server (Debian's
# package, trusting loopback connections), started when it is not listening.
PG_PORT=5432
install_postgres() {
  if ! command -v psql >/dev/null || ! command -v pg_dump >/dev/null; then
    log "installing the PostgreSQL client tools (the tests use psql and pg_dump)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null
  fi
  if port_open "$PG_PORT" || command -v pg_ctlcluster >/dev/null; then
    return 0
  fi
  log "installing PostgreSQL (Debian package)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  # The tests connect as postgres over loopback without a password.
  local hba
  for hba in /etc/postgresql/*/main/pg_hba.conf; do
    sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/' "$hba"
  done
}

start_postgres() {
  install_postgres
  if port_open "$PG_PORT"; then
    log "PostgreSQL already listening on 127.0.0.1:$PG_PORT"
    return 0
  fi
  log "starting PostgreSQL"
  local cluster
  for cluster in /etc/postgresql/*/main; do
    pg_ctlcluster "$(basename "$(dirname "$cluster")")" main start || true
  done
  wait_port "$PG_PORT" 60 PostgreSQL
}

stop_rabbitmq() {
  local base="$STATE/rabbitmq"
  if [[ -f "$base/rabbitmq.pid" ]]; then
    "$base/rabbitmqctl" stop >/dev/null 2>&1 || true
    rm -f "$base/rabbitmq.pid" "$base/rabbitmqctl"
  else
    log "RabbitMQ was not started by these scripts; leaving it running"
  fi
}

start_moto() {
  install_python
  if port_open "$MOTO_PORT"; then
    if [[ -f "$STATE/moto.env" ]]; then
      log "moto already listening on 127.0.0.1:$MOTO_PORT"
      return 0
    fi
    echo "port $MOTO_PORT is taken by something else; set FILEDROP_MOTO_PORT" >&2
    return 1
  fi
  log "starting moto server on 127.0.0.1:$MOTO_PORT (S3, STS, IAM; authentication on)"
  nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$STATE/moto.log" 2>&1 &
  echo $! >"$STATE/moto.pid"
  wait_port "$MOTO_PORT" 30 moto
  "$VENV/bin/python" "$ROOT/deploy/local/moto_setup.py" --endpoint "http://127.0.0.1:$MOTO_PORT" \
    --bucket filedrop-demo --format env >"$STATE/moto.env"
  log "moto ready: credentials in $STATE/moto.env, bucket filedrop-demo"
}

# s3s-fs, an S3 server on a directory that checks checksums and conditional writes; the
# integration tests start their own from there.
install_s3s() {
  if [[ -x "$S3S_BIN" ]] && "$S3S_BIN" --version 2>/dev/null | grep -qF "$S3S_VERSION"; then
    return 0
  fi
  log "installing s3s-fs $S3S_VERSION (cargo install, a few minutes)"
  # Built apart from the project's target directory, so its features do not disturb the
  # project's build cache.
  env -u CARGO_TARGET_DIR cargo install --locked --force s3s-fs --version "$S3S_VERSION" \
    --features binary
}

start_s3s() {
  if port_open "$S3S_PORT"; then
    log "s3s-fs already listening on 127.0.0.1:$S3S_PORT"
    return 0
  fi
  install_s3s
  mkdir -p "$STATE/s3s-fs/filedrop-demo"
  log "starting s3s-fs on 127.0.0.1:$S3S_PORT"
  nohup "$S3S_BIN" --host 127.0.0.1 --port "$S3S_PORT" --access-key filedrop-local \
    --secret-key filedrop-local-secret "$STATE/s3s-fs" >"$STATE/s3s-fs.log" 2>&1 &
  echo $! >"$STATE/s3s-fs.pid"
  wait_port "$S3S_PORT" 30 s3s-fs
  printf 'S3S_ENDPOINT=http://127.0.0.1:%s\nS3S_ACCESS_KEY_ID=filedrop-local\nS3S_SECRET_ACCESS_KEY=filedrop-local-secret\n' \
    "$S3S_PORT" >"$STATE/s3s-fs.env"
}

status() {
  for entry in "RabbitMQ:$AMQP_PORT" "PostgreSQL:$PG_PORT" "moto:$MOTO_PORT" "s3s-fs:$S3S_PORT"; do
    if port_open "${entry#*:}"; then state=up; else state=down; fi
    printf '%-11s 127.0.0.1:%-6s %s\n' "${entry%%:*}" "${entry#*:}" "$state"
  done
}

command="${1:-status}"
service="${2:-}"
case "$command" in
  install)
    case "$service" in
      "") install_python; install_file_tools; install_rabbitmq ;;
      s3s-fs) install_s3s ;;
      *) echo "unknown service $service" >&2; exit 2 ;;
    esac ;;
  start)
    case "$service" in
      "") start_rabbitmq; start_moto ;;
      rabbitmq) start_rabbitmq ;;
      postgres) start_postgres ;;
      moto) start_moto ;;
      s3s-fs) start_s3s ;;
      *) echo "unknown service $service" >&2; exit 2 ;;
    esac ;;
  stop)
    case "$service" in
      "") stop_pidfile "$STATE/moto.pid"; rm -f "$STATE/moto.env"; stop_pidfile "$STATE/s3s-fs.pid" ;;
      rabbitmq) stop_rabbitmq ;;
      moto) stop_pidfile "$STATE/moto.pid"; rm -f "$STATE/moto.env" ;;
      s3s-fs) stop_pidfile "$STATE/s3s-fs.pid" ;;
      *) echo "unknown service $service" >&2; exit 2 ;;
    esac ;;
  status) status ;;
  *) echo "usage: $0 install [s3s-fs] | start|stop|status [rabbitmq|postgres|moto|s3s-fs]" >&2; exit 2 ;;
esac
