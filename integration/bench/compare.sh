#!/usr/bin/env bash
# make bench-compare: amqpbench scenarios against Warren and RabbitMQ 3.10.8
# on this machine, alternating brokers run by run, then a summary written
# into docs/benchmarks.md (between the bench-compare markers) and printed.
#
#   compare.sh [SCENARIOS] [ROUNDS] [DURATION]
#     default: "backlog connections transient ack confirm fanout latency" 3 10s
#   backlog (1,000,000 messages) and connections (10,000) run once per broker,
#   first, on fresh nodes; the others ROUNDS times. Needs ../shared/tools
#   (amqpbench, rabbitmq-oracle.sh) beside the project. NO_DOCS=1 only prints.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=$(cd "$root/../shared" && pwd)
scenarios=${1:-"backlog connections transient ack confirm fanout latency"}
rounds=${2:-3}
duration=${3:-10s}
out=${OUT:-/tmp/warren-bench.jsonl}
wport=5682
started=$(date +%s)

(cd "$shared/tools/amqpbench" && go build -o /tmp/amqpbench .)
(cd "$root" && go build -o bin/warren ./cmd/warren)
# A fresh node each time (its RSS figures depend on what ran before).
stop_oracle() {
  local p
  p=$(cat /tmp/rabbitmq-oracle-5673/pid 2>/dev/null || true)
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
    timeout 60 bash "$shared/tools/rabbitmq-oracle.sh" stop 5673 >/dev/null 2>&1 || kill -9 "$p" 2>/dev/null || true
  fi
}
stop_oracle
rm -rf /tmp/rabbitmq-oracle-5673
bash "$shared/tools/rabbitmq-oracle.sh" start 5673 >/dev/null
rpid=$(bash "$shared/tools/rabbitmq-oracle.sh" pid 5673)

data=$(mktemp -d)
"$root/bin/warren" --amqp-listen 127.0.0.1:$wport --http-listen "" --prometheus-listen "" --data-dir "$data" --log-level warn &
wpid=$!
trap 'kill $wpid 2>/dev/null; wait $wpid 2>/dev/null; rm -rf "$data"; stop_oracle' EXIT
sleep 0.5

: > "$out"
for s in $scenarios; do
  case $s in
    backlog) args=(-count 1000000); n=1 ;;
    connections) args=(-conns 10000 -conn-parallel 8); n=1 ;;
    latency) args=(-rate 1000 -duration "$duration"); n=$rounds ;;
    *) args=(-duration "$duration"); n=$rounds ;;
  esac
  for r in $(seq 1 "$n"); do
    for b in warren rabbitmq; do
      if [ $b = warren ]; then url=amqp://guest:guest@127.0.0.1:$wport/; pid=$wpid
      else url=amqp://guest:guest@127.0.0.1:5673/; pid=$rpid; fi
      echo "$(date +%T) $s round $r $b" >&2
      /tmp/amqpbench -url "$url" -scenario "$s" "${args[@]}" -pid "$pid" -json -label "$b" 2>/dev/null >> "$out" ||
        echo "{\"label\":\"$b\",\"scenario\":\"$s\",\"ok\":false}" >> "$out"
      sleep 2
    done
  done
done
elapsed=$(( $(date +%s) - started ))
doc=""
[ "${NO_DOCS:-}" = 1 ] || doc="$root/docs/benchmarks.md"
python3 "$here/summarize.py" "$out" "$elapsed" "$doc"
