#!/usr/bin/env bash
# make bench-compare: amqpbench scenarios against Warren and RabbitMQ 3.10.8
# on this machine, alternating brokers run by run, then a summary written
# into docs/benchmarks.md (between the bench-compare markers) and printed.
#
#   compare.sh [SCENARIOS] [ROUNDS] [DURATION]
#     default: "backlog connections transient ack confirm fanout latency scaling" 3 10s
#   backlog (1,000,000 messages) and connections (10,000) run once per broker,
#   first, on fresh nodes; the others ROUNDS times. transient, fanout and
#   latency also run against integration/bench/nullbroker (the client's own
#   ceiling).
#   scaling is `warrenctl perf` with 4 producers and 4 consumers over 16
#   queues (amqpbench has one queue per scenario), broker CPU from /proc.
#   Needs ../shared/tools (amqpbench, rabbitmq-oracle.sh) beside the
#   project. NO_DOCS=1 only prints.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=$(cd "$root/../shared" && pwd)
scenarios=${1:-"backlog connections transient ack confirm fanout latency scaling"}
rounds=${2:-3}
duration=${3:-10s}
out=${OUT:-/tmp/warren-bench.jsonl}
wport=5682
started=$(date +%s)

(cd "$shared/tools/amqpbench" && go build -o /tmp/amqpbench .)
(cd "$root" && go build -o bin/warren ./cmd/warren && go build -o bin/warrenctl ./cmd/warrenctl &&
  go build -o /tmp/warren-nullbroker ./integration/bench/nullbroker)
# A fresh node each time (its RSS figures depend on what ran before).
stop_oracle() {
  local p
  p=$(cat /tmp/rabbitmq-oracle-5673/pid 2>/dev/null || true)
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
    timeout 60 bash "$shared/tools/rabbitmq-oracle.sh" stop 5673 >/dev/null 2>&1 || kill -9 "$p" 2>/dev/null || true
  fi
}
data=$(mktemp -d)
wpid=
rpid=
# fresh_brokers: (re)starts both brokers on empty data directories, so no
# scenario inherits another's state (RSS, Badger or Mnesia compaction debt).
fresh_brokers() {
  if [ -n "$wpid" ]; then kill "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null || true; fi
  stop_oracle
  rm -rf /tmp/rabbitmq-oracle-5673 "$data"
  mkdir -p "$data"
  bash "$shared/tools/rabbitmq-oracle.sh" start 5673 >/dev/null
  rpid=$(bash "$shared/tools/rabbitmq-oracle.sh" pid 5673)
  "$root/bin/warren" --amqp-listen 127.0.0.1:$wport --http-listen "" --prometheus-listen "" --data-dir "$data" --log-level warn &
  wpid=$!
  sleep 0.5
}
/tmp/warren-nullbroker -listen 127.0.0.1:5699 2>/dev/null &
npid=$!
trap 'kill $wpid $npid 2>/dev/null; wait $wpid 2>/dev/null; rm -rf "$data"; stop_oracle' EXIT

# scaling: 4 producers and 4 consumers (auto-ack) over 16 queues with
# warrenctl perf; one JSON line like amqpbench's, broker CPU from /proc.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
scaling() {
  local b=$1 url=$2 pid=$3 t0 t1 s0 s1 txt
  t0=$(cpu_ticks "$pid"); s0=$(date +%s.%N)
  txt=$("$root/bin/warrenctl" --amqp-url "$url" perf --producers 4 --consumers 4 --queues 16 \
    --queue-pattern "scaling-$$-%d" --prefetch 0 --duration "$duration" 2>&1) || true
  t1=$(cpu_ticks "$pid"); s1=$(date +%s.%N)
  python3 - "$b" "$t0" "$t1" "$s0" "$s1" "$txt" <<'PY'
import json, re, sys
b, t0, t1, s0, s1, txt = sys.argv[1:]
m = re.search(r"summary: ([\d.]+)s, sent (\d+) \(\d+ msg/s\), received (\d+)", txt)
r = {"label": b, "scenario": "scaling", "ok": bool(m)}
if m:
    secs, sent, recv = float(m.group(1)), int(m.group(2)), int(m.group(3))
    cpu = (float(t1) - float(t0)) / 100
    r.update(publish_rate=sent / secs, consume_rate=recv / secs,
             broker={"cpu_s": cpu, "cores": cpu / (float(s1) - float(s0)),
                     "cpu_s_per_100k": cpu / recv * 1e5 if recv else None})
else:
    r["errors"] = [txt[-300:]]
print(json.dumps(r))
PY
}

: > "$out"
for s in $scenarios; do
  case $s in
    backlog) args=(-count 1000000); n=1 ;;
    scaling) args=(); n=$rounds ;;
    connections) args=(-conns 10000 -conn-parallel 8); n=1 ;;
    latency) args=(-rate 1000 -duration "$duration"); n=$rounds ;;
    *) args=(-duration "$duration"); n=$rounds ;;
  esac
  # backlog and connections each start on fresh nodes; the throughput
  # scenarios share a pair started fresh after them.
  case $s in
    backlog|connections) fresh_brokers; started_group=0 ;;
    *) [ "${started_group:-0}" = 1 ] || { fresh_brokers; started_group=1; } ;;
  esac
  brokers="warren rabbitmq"
  case $s in transient|fanout|latency) brokers="warren rabbitmq null" ;; esac
  for r in $(seq 1 "$n"); do
    for b in $brokers; do
      case $b in
        warren) url=amqp://guest:guest@127.0.0.1:$wport/; pid=$wpid ;;
        rabbitmq) url=amqp://guest:guest@127.0.0.1:5673/; pid=$rpid ;;
        null) url=amqp://guest:guest@127.0.0.1:5699/; pid=$npid ;;
      esac
      echo "$(date +%T) $s round $r $b" >&2
      if [ "$s" = scaling ]; then
        scaling "$b" "$url" "$pid" >> "$out"
        sleep 2
        continue
      fi
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
