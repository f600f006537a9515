#!/bin/bash
# A follower's catch-up by a chunked snapshot (docs/benchmarks.md): three
# bin/warren nodes on 127.0.0.1, a quorum queue declared on node 1, node 3
# stopped, N persistent 100-byte messages published on node 1 with
# confirms, node 3 started again. Prints the time from node 3's start to
# its "snapshot restored" log line, the snapshot log lines (the sender is
# the queue's leader, node 1 unless the leadership moved), and the peak RSS
# of each node from node 3's start on.
#
#	make build && N=1000000 integration/bench/snapcatchup.sh
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:-bin/warren}
N=${N:-1000000}
D=${D:-/tmp/snapcatchup-run}
go build -o "$D.client" ./integration/bench/snapcatchup || exit 1
CLIENT=$D.client
rm -rf "$D"; mkdir -p "$D"
SEEDS=127.0.0.1:25711,127.0.0.1:25712,127.0.0.1:25713
start() { i=$1
  "$BIN" --node-name "warren$i@localhost" --data-dir "$D/n$i" --amqp-listen "127.0.0.1:570$i" --http-listen "127.0.0.1:1570$i" \
    --prometheus-listen "" --cluster-listen "127.0.0.1:2571$i" --cluster-seeds $SEEDS --log-level info >> "$D/n$i.log" 2>&1 &
  echo $! > "$D/pid$i"; }
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null; }
sample() { # pid, file to keep the peak in
  local max=0; while kill -0 "$1" 2>/dev/null; do r=$(rss "$1"); [ -n "$r" ] && [ "$r" -gt "$max" ] && max=$r && echo $max > "$2"; sleep 0.5; done; }
stopall() { for i in 1 2 3; do kill -TERM "$(cat "$D/pid$i")" 2>/dev/null; done; wait; }
trap stopall EXIT
for i in 1 2 3; do start $i; done
sleep 4
"$CLIENT" -url amqp://guest:guest@127.0.0.1:5701/ -declare || exit 1
sleep 2
kill -TERM "$(cat "$D/pid3")"; wait "$(cat "$D/pid3")" 2>/dev/null
echo "node 3 stopped; filling $N"
"$CLIENT" -url amqp://guest:guest@127.0.0.1:5701/ -n "$N" -size 100 || exit 1
sleep 2
for i in 1 2; do
  P=$(cat "$D/pid$i"); echo "node $i RSS after the fill: $(rss "$P") kB"
  sample "$P" "$D/max$i" &
done
T0=$(date +%s.%N)
start 3; P3=$(cat "$D/pid3")
sample "$P3" "$D/max3" &
for _ in $(seq 1 1200); do grep -q "snapshot restored" "$D/n3.log" && break; sleep 0.1; done
T1=$(date +%s.%N)
echo "node 3 start to snapshot restored: $(echo "$T1 - $T0" | bc) s"
sleep 3
grep "snapshot sent\|snapshot received\|snapshot restored\|snapshot for a follower" "$D"/n?.log | cut -c1-400
echo "peak RSS kB: node 1 $(cat "$D/max1") node 2 $(cat "$D/max2") node 3 $(cat "$D/max3"); node 3 data: $(du -sh "$D/n3" | cut -f1)"
echo "messages (node 3): $("$CLIENT" -url amqp://guest:guest@127.0.0.1:5703/ -count)"
