#!/usr/bin/env bash
# make bench-shovel: shovel throughput, medians of SHOVEL_BENCH_RUNS runs
# (default 3) of SHOVEL_BENCH_MESSAGES persistent messages (default 100,000)
# of SHOVEL_BENCH_SIZE bytes (default 256), on-confirm, prefetch 1000:
#   RabbitMQ → Warren   Warren's shovel (on the destination), source a RabbitMQ node
#   Warren → Warren     Warren's shovel on one Warren, source another Warren
#   Warren → RabbitMQ   Warren's shovel (on the source), destination a RabbitMQ node
#   RabbitMQ → RabbitMQ RabbitMQ 3.10.8's own shovel between two oracle nodes
# RabbitMQ nodes come from ../shared/tools/rabbitmq-oracle.sh (ports 5741,
# 5742), Warren from bin/warren (5743, 5744); all are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../../.."
oracle=${ORACLE:-../shared/tools/rabbitmq-oracle.sh}
N=${SHOVEL_BENCH_MESSAGES:-100000}
SIZE=${SHOVEL_BENCH_SIZE:-256}
RUNS=${SHOVEL_BENCH_RUNS:-3}
A=5741 B=5742 W1=5743 W2=5744
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for port in $A $B; do rabbitmqctl -n "oracle${port}@localhost" stop >/dev/null 2>&1 || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

for port in $A $B; do
  "$oracle" start $port $((port + 10000)) >/dev/null
  RABBITMQ_ENABLED_PLUGINS_FILE="/tmp/rabbitmq-oracle-${port}/enabled_plugins" \
    rabbitmq-plugins -n "oracle${port}@localhost" enable rabbitmq_shovel rabbitmq_shovel_management >/dev/null
done
for port in $W1 $W2; do
  ./bin/warren --amqp-listen 127.0.0.1:$port --http-listen 127.0.0.1:$((port + 10000)) --prometheus-listen "" \
    --data-dir "$tmp/w$port" --log-level warn 2>"$tmp/w$port.log" &
  pids+=($!)
done
for port in $W1 $W2; do
  for _ in $(seq 100); do curl -sf -u guest:guest http://127.0.0.1:$((port + 10000))/api/overview >/dev/null && break; sleep 0.1; done
done
go build -o "$tmp/bench" ./integration/bench/shovel

amqp() { echo "amqp://guest:guest@127.0.0.1:$1/%2F"; }
run() { # name src-amqp dest-amqp api src-uri dest-uri
  "$tmp/bench" -messages "$N" -size "$SIZE" -name "$1" -src-amqp "$2" -dest-amqp "$3" -api "$4" -src-uri "$5" -dest-uri "$6"
}
results="$tmp/results"
for r in $(seq "$RUNS"); do
  run rabbitmq-to-warren "$(amqp $A)" "$(amqp $W1)" http://127.0.0.1:$((W1 + 10000)) "$(amqp $A)" amqp:// | tee -a "$results"
  run warren-to-warren "$(amqp $W2)" "$(amqp $W1)" http://127.0.0.1:$((W1 + 10000)) "$(amqp $W2)" amqp:// | tee -a "$results"
  run warren-to-rabbitmq "$(amqp $W1)" "$(amqp $A)" http://127.0.0.1:$((W1 + 10000)) amqp:// "$(amqp $A)" | tee -a "$results"
  run rabbitmq-to-rabbitmq "$(amqp $A)" "$(amqp $B)" http://127.0.0.1:$((B + 10000)) "$(amqp $A)" amqp:// | tee -a "$results"
done
python3 - "$results" "$N" "$SIZE" "$RUNS" <<'PY'
import json, statistics, sys
path, n, size, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
by = {}
for line in open(path):
    r = json.loads(line)
    by.setdefault(r["scenario"], []).append(r["msg_per_s"])
base = statistics.median(by["rabbitmq-to-rabbitmq"])
print(f"\n{n} persistent messages of {size} B, on-confirm, prefetch 1000, median of {runs} runs\n")
print("| shovel | msg/s (median) | runs | vs RabbitMQ → RabbitMQ |")
print("| --- | --- | --- | --- |")
for name in ["rabbitmq-to-warren", "warren-to-warren", "warren-to-rabbitmq", "rabbitmq-to-rabbitmq"]:
    v = by[name]
    label = name.replace("-to-", " → ").replace("rabbitmq", "RabbitMQ").replace("warren", "Warren")
    print(f"| {label} | {statistics.median(v):,.0f} | {', '.join(f'{x:,.0f}' for x in v)} | {statistics.median(v) / base:.2f}× |")
PY
