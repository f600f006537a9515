#!/usr/bin/env bash
# Runs amqpbench scenarios against Warren and RabbitMQ 3.10.8 on this machine,
# alternating brokers run by run, and prints one JSON line per run.
#
#   compare.sh [SCENARIOS] [ROUNDS] [DURATION]
#     default: "transient ack fanout" 3 10s
# Needs ../shared/tools (amqpbench, rabbitmq-oracle.sh) beside the project.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=$(cd "$root/../shared" && pwd)
scenarios=${1:-"transient ack fanout"}
rounds=${2:-3}
duration=${3:-10s}
out=${OUT:-/tmp/warren-bench.jsonl}
wport=5682

(cd "$shared/tools/amqpbench" && go build -o /tmp/amqpbench .)
(cd "$root" && go build -o bin/warren ./cmd/warren)
bash "$shared/tools/rabbitmq-oracle.sh" start 5673 >/dev/null
rpid=$(bash "$shared/tools/rabbitmq-oracle.sh" pid 5673 2>/dev/null || rabbitmqctl -n oracle5673@localhost status 2>/dev/null | awk '/OS PID/ {print $3}')

data=$(mktemp -d)
"$root/bin/warren" --amqp-listen 127.0.0.1:$wport --http-listen "" --data-dir "$data" --log-level warn &
wpid=$!
trap 'kill $wpid 2>/dev/null; wait $wpid 2>/dev/null; rm -rf "$data"' EXIT
sleep 0.5

: > "$out"
for s in $scenarios; do
  for r in $(seq 1 "$rounds"); do
    for b in warren rabbitmq; do
      if [ $b = warren ]; then url=amqp://guest:guest@127.0.0.1:$wport/; pid=$wpid
      else url=amqp://guest:guest@127.0.0.1:5673/; pid=$rpid; fi
      /tmp/amqpbench -url "$url" -scenario "$s" -duration "$duration" -pid "$pid" -json -label "$b" 2>/dev/null >> "$out" || echo "{\"label\":\"$b\",\"scenario\":\"$s\",\"failed\":true}" >> "$out"
      sleep 2
    done
  done
done
python3 "$here/summarize.py" "$out"
