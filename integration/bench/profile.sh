#!/usr/bin/env bash
# make bench-profile: a CPU profile of Warren under each amqpbench scenario.
#
#   profile.sh [SCENARIOS] [SECONDS]
#     default: "transient ack confirm fanout latency backlog" 8
#
# Starts bin/warren with --pprof on a loopback HTTP port, runs each scenario
# and takes /debug/pprof/profile for its middle SECONDS, then prints the top
# functions (flat and cumulative) of each profile. Profiles are kept in
# $OUT (default /tmp/warren-profiles) for `go tool pprof -http`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=$(cd "$root/../shared" && pwd)
scenarios=${1:-"transient ack confirm fanout latency backlog"}
secs=${2:-8}
out=${OUT:-/tmp/warren-profiles}
wport=5684
hport=15684
mkdir -p "$out"

(cd "$shared/tools/amqpbench" && go build -o /tmp/amqpbench .)
(cd "$root" && go build -o bin/warren ./cmd/warren)
data=$(mktemp -d)
"$root/bin/warren" --amqp-listen 127.0.0.1:$wport --http-listen 127.0.0.1:$hport --prometheus-listen "" \
  --pprof --data-dir "$data" --log-level warn &
wpid=$!
trap 'kill $wpid 2>/dev/null; wait $wpid 2>/dev/null; rm -rf "$data"' EXIT
sleep 0.5

for s in $scenarios; do
  case $s in
    backlog) args=(-count 1000000) ;;
    latency) args=(-rate 1000 -duration $((secs + 4))s) ;;
    *) args=(-duration $((secs + 4))s) ;;
  esac
  echo "== $s" >&2
  /tmp/amqpbench -url amqp://guest:guest@127.0.0.1:$wport/ -scenario "$s" "${args[@]}" -pid $wpid \
    > "$out/$s.txt" 2>&1 &
  bpid=$!
  sleep 2
  curl -sf -o "$out/$s.pprof" "http://127.0.0.1:$hport/debug/pprof/profile?seconds=$secs"
  wait $bpid || echo "amqpbench $s failed: $(tail -3 "$out/$s.txt")" >&2
  echo "### $s"
  grep -E 'consume|confirmed|drain|p99|cpu' "$out/$s.txt" | head -6 || true
  echo '```'
  go tool pprof -top -nodecount 25 "$root/bin/warren" "$out/$s.pprof" 2>/dev/null | sed -n '1,32p'
  echo '```'
  sleep 1
done
