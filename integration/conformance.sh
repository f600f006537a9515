#!/usr/bin/env bash
# Runs amqp091-go's own integration suite (../shared/conformance/amqp091-go.sh)
# against a fresh bin/warren on the default ports 5672/15672 (the suite's
# recovery tests call the management API at localhost:15672).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runner="$root/../shared/conformance/amqp091-go.sh"
[ -f "$runner" ] || { echo "conformance: $runner not found" >&2; exit 2; }
data=$(mktemp -d)
"$root/bin/warren" --data-dir "$data" --log-level warn &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 50); do
  (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break
  sleep 0.1
done
bash "$runner" "amqp://guest:guest@127.0.0.1:5672/"
