#!/usr/bin/env bash
# The quickstart: installs and starts what is missing (RabbitMQ, a moto S3 server with
# authentication on), builds filedrop, starts a control plane and two workers, streams a
# generated 1,000,000-row table through Arrow Flight, and shows the delivered files.
#
#   bash deploy/local/quickstart.sh
# Stop everything with: bash deploy/local/filedrop.sh stop && bash deploy/local/services.sh stop
source "$(dirname "$0")/common.sh"
cd "$ROOT"

start_local_stack
FILEDROP_TOKEN="$(cat "$STATE/token")" \
  "${CARGO_TARGET_DIR:-$ROOT/target}/debug/filedrop-sample-export" \
  --control-plane "http://127.0.0.1:$CONTROL_PLANE_PORT"

cat <<TXT

Read the files back (credentials of the local moto server are in var/local/moto.env):

  set -a; source var/local/moto.env; set +a
  $VENV/bin/python - <<'PY'
import os, pyarrow.dataset as ds, pyarrow.fs as fs
s3 = fs.S3FileSystem(access_key=os.environ["MOTO_ACCESS_KEY_ID"],
                     secret_key=os.environ["MOTO_SECRET_ACCESS_KEY"],
                     endpoint_override=os.environ["MOTO_ENDPOINT"].removeprefix("http://"),
                     scheme="http", region="us-east-1", force_virtual_addressing=False)
table = ds.dataset("filedrop-demo/quickstart/", filesystem=s3, format="parquet",
                   exclude_invalid_files=True).to_table()
print(table.num_rows, "rows")
print(table.slice(0, 5))
PY

Logs: var/local/logs/. Stop: bash deploy/local/filedrop.sh stop && bash deploy/local/services.sh stop
TXT
