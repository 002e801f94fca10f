#!/usr/bin/env bash
# Runs every check and test of the project on this machine, installing and starting what they
# need first: the Python tools (moto, pyarrow, pytest, buf), RabbitMQ and PostgreSQL. The
# integration tests start their own moto servers and filedrop processes, and run twice: with
# SQLite as the run store, then with PostgreSQL.
#
#   bash deploy/local/test.sh
source "$(dirname "$0")/common.sh"
cd "$ROOT"

bash deploy/local/services.sh install
bash deploy/local/services.sh install s3s-fs
bash deploy/local/services.sh start rabbitmq
bash deploy/local/services.sh start postgres
# A broker started by services.sh is an isolated node with its own rabbitmqctl.
if [[ -x "$STATE/rabbitmq/rabbitmqctl" ]]; then
  export FILEDROP_TEST_RABBITMQCTL="$STATE/rabbitmq/rabbitmqctl"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

log "buf lint"
"$VENV/bin/buf" lint

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "building binaries and tests"
# The integration tests run the real binaries: build them, in the same profile, first.
cargo build --workspace --bins --tests --locked

log "cargo nextest run (unit, crate and integration tests, Python interop included)"
FILEDROP_VENV="$VENV" cargo nextest run --workspace --locked --no-fail-fast

log "the integration tests again, with PostgreSQL as the control plane's run store"
FILEDROP_VENV="$VENV" FILEDROP_TEST_RUN_STORE=postgres \
  cargo nextest run --workspace --locked --no-fail-fast -E 'package(filedrop-integration-tests)'
