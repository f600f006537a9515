#!/usr/bin/env bash
# make bench-cluster: a three-node Warren cluster against the three-node
# RabbitMQ 3.10.8 cluster of ../shared/tools/rabbitmq-cluster.sh, on loopback,
# alternating brokers run by run; prints a markdown table.
#
#   cluster.sh [ROUNDS] [DURATION] [DECLARES]      default: 3 10s 10000
#
# 1. amqpbench `transient` and `confirm` (durable queue, persistent
#    messages, confirms), publishing on node 1, to a queue on node 2,
#    consumed on node 3 (-url node 1, -consume-url node 3). amqpbench declares
#    its queue through node 1; in both brokers a policy
#    `queue-master-locator: min-masters` on ^amqpbench- places it on the node
#    with the fewest queues, and two placeholder queues on nodes 1 and 3 (not
#    matched by the policy) make that node 2 (checked with a probe queue
#    before the runs). Broker CPU is summed over the three nodes from
#    /proc/PID/stat before and after each run; RSS is the three nodes' VmRSS
#    summed after the run.
# 2. DECLARES durable queues, each bound to a durable direct exchange, through
#    node 1 (integration/bench/declare: one connection, DECLARE_CHANNELS
#    channels, default 4), then every node's management API must list them
#    all. Once per broker, at the end (the clusters are stopped and their data
#    removed afterwards, so nothing is deleted).
#
# Ports (loopback only; checked free first): RabbitMQ AMQP RMQ_BASE..+2
# (default 5780; management +10000, distribution +20000), Warren AMQP
# WARREN_BASE..+2 (default 5790), HTTP +10000, cluster +20000. Raw results:
# $BENCH_OUT (default /tmp/warren-cluster-bench.jsonl); Warren's logs:
# $BENCH_LOGS (default /tmp/warren-cluster-bench-logs). SCENARIOS (default
# "transient confirm") and SKIP_DECLARE=1 narrow the run; QUEUE_TYPE=quorum
# runs the scenarios on quorum queues (amqpbench -queue-type quorum: a Raft
# group of the three nodes in both brokers). FAILOVER=1 ends with one run
# per broker of integration/bench/failover: a quorum queue, a publisher with
# confirms on a node that does not lead, the leader's node killed (SIGKILL),
# the time until the next confirm. IDLE_QUORUM=N (before FAILOVER) declares N
# quorum queues through node 1 in each broker, lets them sit idle for 30 s,
# and reports the three nodes' RSS growth per 1,000 queues and their CPU
# while idle. BROKERS=warren runs Warren alone (RabbitMQ is not started; the
# table's RabbitMQ columns stay empty).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=$(cd "$root/../shared" && pwd)
rounds=${1:-3}
duration=${2:-10s}
declares=${3:-10000}
scenarios=${SCENARIOS-"transient confirm"}
brokers=${BROKERS:-warren rabbitmq}
with_rmq=0
case " $brokers " in *" rabbitmq "*) with_rmq=1 ;; esac
qtype=${QUEUE_TYPE:-}
qflag=()
if [ -n "$qtype" ]; then qflag=(-queue-type "$qtype"); fi
channels=${DECLARE_CHANNELS:-4}
rbase=${RMQ_BASE:-5780}
wbase=${WARREN_BASE:-5790}
out=${BENCH_OUT:-/tmp/warren-cluster-bench.jsonl}
logs=${BENCH_LOGS:-/tmp/warren-cluster-bench-logs}
started=$(date +%s)

for p in $rbase $((rbase + 1)) $((rbase + 2)) $((rbase + 10000)) $((rbase + 10001)) $((rbase + 10002)) \
  $wbase $((wbase + 1)) $((wbase + 2)) $((wbase + 10000)) $((wbase + 10001)) $((wbase + 10002)) \
  $((wbase + 20000)) $((wbase + 20001)) $((wbase + 20002)); do
  if ss -Hltn "sport = :$p" | grep -q .; then echo "port $p is in use; set RMQ_BASE / WARREN_BASE" >&2; exit 1; fi
done

(cd "$shared/tools/amqpbench" && go build -o /tmp/amqpbench .)
(cd "$root" && go build -o bin/warren ./cmd/warren && go build -o /tmp/warren-bench-declare ./integration/bench/declare &&
  go build -o /tmp/warren-bench-failover ./integration/bench/failover)

data=$(mktemp -d /tmp/warren-cluster-bench-XXXXXX)
rm -rf "$logs"; mkdir -p "$logs"
wpids=()
rpids=()
rmq_started=0
stop_all() {
  local p
  for p in "${wpids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${wpids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  wpids=()
  if [ "$rmq_started" = 1 ]; then
    timeout 120 bash "$shared/tools/rabbitmq-cluster.sh" stop "$rbase" >/dev/null 2>&1 || true
    for p in "${rpids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf /tmp/rabbitmq-oracle-$rbase /tmp/rabbitmq-oracle-$((rbase + 1)) /tmp/rabbitmq-oracle-$((rbase + 2))
    rmq_started=0
  fi
  rm -rf "$data"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

wurl() { echo "amqp://guest:guest@127.0.0.1:$((wbase + $1))/"; }
rurl() { echo "amqp://guest:guest@127.0.0.1:$((rbase + $1))/"; }
whttp() { echo "http://127.0.0.1:$((wbase + 10000 + $1))"; }
rhttp() { echo "http://127.0.0.1:$((rbase + 10000 + $1))"; }

# Warren: three nodes naming each other as seeds, fresh data directories.
seeds="127.0.0.1:$((wbase + 20000)),127.0.0.1:$((wbase + 20001)),127.0.0.1:$((wbase + 20002))"
for i in 0 1 2; do
  "$root/bin/warren" --node-name "warren$((i + 1))@localhost" --data-dir "$data/warren$((i + 1))" \
    --amqp-listen "127.0.0.1:$((wbase + i))" --http-listen "127.0.0.1:$((wbase + 10000 + i))" \
    --prometheus-listen "" --cluster-listen "127.0.0.1:$((wbase + 20000 + i))" --cluster-seeds "$seeds" \
    --log-level warn >"$logs/warren$((i + 1)).log" 2>&1 &
  wpids+=($!)
done
# Formed when every node sees three running members and one leader.
for _ in $(seq 1 120); do
  ok=0
  for i in 0 1 2; do
    curl -fsS -u guest:guest "$(whttp $i)/api/cluster" 2>/dev/null | python3 -c '
import json, sys
n = json.load(sys.stdin)["nodes"]
sys.exit(0 if len(n) == 3 and all(m.get("running") for m in n) and any(m.get("leader") for m in n) else 1)' 2>/dev/null && ok=$((ok + 1))
  done
  [ $ok = 3 ] && break
  sleep 0.5
done
[ $ok = 3 ] || { echo "the Warren cluster did not form; logs in $logs" >&2; exit 1; }

# RabbitMQ: three nodes clustered by rabbitmq-cluster.sh, fresh directories.
if [ $with_rmq = 1 ]; then
  rm -rf /tmp/rabbitmq-oracle-$rbase /tmp/rabbitmq-oracle-$((rbase + 1)) /tmp/rabbitmq-oracle-$((rbase + 2))
  rmq_started=1
  timeout 300 bash "$shared/tools/rabbitmq-cluster.sh" start "$rbase" >/dev/null
  mapfile -t rpids < <(bash "$shared/tools/rabbitmq-cluster.sh" pids "$rbase")
fi
echo "$(date +%T) warren pids ${wpids[*]}, rabbitmq pids ${rpids[*]}" >&2

# Placement: the min-masters policy, placeholders on nodes 1 and 3, and a
# probe declared through node 1 that must land on node 2.
place() { # place HTTP0 HTTP1 HTTP2 NODE2NAME
  local h
  curl -fsS -u guest:guest -X PUT -H 'content-type: application/json' "$1/api/policies/%2F/bench-place" \
    -d '{"pattern":"^amqpbench-","apply-to":"queues","definition":{"queue-master-locator":"min-masters"}}' >/dev/null
  for h in "$1" "$3"; do
    for i in 1 2; do
      curl -fsS -u guest:guest -X PUT -H 'content-type: application/json' "$h/api/queues/%2F/place-$i-${h##*:}" \
        -d '{"durable":true}' >/dev/null
    done
  done
  curl -fsS -u guest:guest -X PUT -H 'content-type: application/json' "$1/api/queues/%2F/amqpbench-probe" -d '{"durable":true}' >/dev/null
  local node=""
  for _ in $(seq 1 50); do
    node=$(curl -fsS -u guest:guest "$1/api/queues/%2F/amqpbench-probe" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("node",""))' 2>/dev/null || true)
    [ -n "$node" ] && break
    sleep 0.2
  done
  curl -fsS -u guest:guest -X DELETE "$1/api/queues/%2F/amqpbench-probe" >/dev/null
  echo "$(date +%T) a queue declared through node 1 lives on $node" >&2
  [ "$node" = "$4" ] || { echo "placement failed: expected $4" >&2; exit 1; }
}
place "$(whttp 0)" "$(whttp 1)" "$(whttp 2)" "warren2@localhost"
[ $with_rmq = 0 ] || place "$(rhttp 0)" "$(rhttp 1)" "$(rhttp 2)" "$(curl -fsS -u guest:guest "$(rhttp 1)/api/overview" | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"])')"

ticks() { local p s=""; for p in "$@"; do s+="$(awk '{print $14 + $15}' "/proc/$p/stat") "; done; echo "$s"; }
rss() { local p s=""; for p in "$@"; do s+="$(awk '/^VmRSS/ {print $2}' "/proc/$p/status") "; done; echo "$s"; }
# annotate JSON T0 T1 RSS: adds the cluster's CPU and RSS to a result line.
annotate() {
  python3 -c '
import json, sys
line, t0, t1, rss = sys.argv[1:]
try:
    r = json.loads(line)
except ValueError:
    r = {"ok": False, "errors": [line[-300:]]}
d = [(int(b) - int(a)) / 100 for a, b in zip(t0.split(), t1.split())]
r["cluster"] = {"cpu_s_nodes": d, "cpu_s": sum(d), "rss_kb_nodes": [int(x) for x in rss.split()],
                "rss_kb": sum(int(x) for x in rss.split())}
n = r.get("delivered") or r.get("queues")
if n:
    r["cluster"]["cpu_s_per_100k"] = sum(d) / n * 1e5
print(json.dumps(r))' "$@"
}

: >"$out"
failed=0
for s in $scenarios; do
  for r in $(seq 1 "$rounds"); do
    for b in $brokers; do
      if [ $b = warren ]; then pids=("${wpids[@]}"); u0=$(wurl 0); u1=$(wurl 2)
      else pids=("${rpids[@]}"); u0=$(rurl 0); u1=$(rurl 2); fi
      echo "$(date +%T) $s round $r $b" >&2
      t0=$(ticks "${pids[@]}")
      set +e
      line=$(/tmp/amqpbench -url "$u0" -consume-url "$u1" -scenario "$s" -duration "$duration" "${qflag[@]}" \
        -pid "${pids[0]}" -json -label "$b" 2>"$logs/amqpbench-$s-$r-$b.txt")
      rc=$?
      set -e
      t1=$(ticks "${pids[@]}")
      annotate "${line:-not json}" "$t0" "$t1" "$(rss "${pids[@]}")" >>"$out"
      if [ $rc != 0 ]; then
        failed=1
        echo "  FAILED (exit $rc): /tmp/amqpbench -url $u0 -consume-url $u1 -scenario $s -duration $duration; see $logs/amqpbench-$s-$r-$b.txt" >&2
        tail -3 "$logs/amqpbench-$s-$r-$b.txt" >&2
      fi
      sleep 2
    done
  done
done

if [ "${SKIP_DECLARE:-}" != 1 ]; then
  for b in $brokers; do
    if [ $b = warren ]; then pids=("${wpids[@]}"); u0=$(wurl 0); v="$(whttp 0),$(whttp 1),$(whttp 2)"
    else pids=("${rpids[@]}"); u0=$(rurl 0); v="$(rhttp 0),$(rhttp 1),$(rhttp 2)"; fi
    echo "$(date +%T) declare $declares queues + bindings, $channels channels, $b" >&2
    t0=$(ticks "${pids[@]}")
    set +e
    line=$(timeout 1200 /tmp/warren-bench-declare -url "$u0" -n "$declares" -channels "$channels" \
      -verify-http "$v" -cleanup=false -label "$b" 2>"$logs/declare-$b.txt")
    rc=$?
    set -e
    t1=$(ticks "${pids[@]}")
    annotate "${line:-not json}" "$t0" "$t1" "$(rss "${pids[@]}")" >>"$out"
    [ $rc = 0 ] || { failed=1; echo "  FAILED (exit $rc); see $logs/declare-$b.txt" >&2; }
  done
fi

if [ -n "${IDLE_QUORUM:-}" ]; then
  for b in $brokers; do
    if [ $b = warren ]; then pids=("${wpids[@]}"); u0=$(wurl 0); else pids=("${rpids[@]}"); u0=$(rurl 0); fi
    echo "$(date +%T) $IDLE_QUORUM idle quorum queues, $b" >&2
    r0=$(rss "${pids[@]}")
    set +e
    line=$(timeout 1200 /tmp/warren-bench-declare -url "$u0" -n "$IDLE_QUORUM" -channels "$channels" -queue-type quorum \
      -cleanup=false -prefix "idle-q" -label "$b" 2>"$logs/idle-quorum-$b.txt")
    rc=$?
    set -e
    sleep 30
    t0=$(ticks "${pids[@]}")
    sleep 10
    t1=$(ticks "${pids[@]}")
    r1=$(rss "${pids[@]}")
    python3 -c '
import json, sys
b, n, r0, r1, t0, t1, line = sys.argv[1:]
d = sum(int(y) - int(x) for x, y in zip(t0.split(), t1.split())) / 100
grow = (sum(map(int, r1.split())) - sum(map(int, r0.split()))) / 1024
try:
    decl = json.loads(line)
except ValueError:
    decl = {"ok": False}
print(json.dumps({"scenario": "idle-quorum", "label": b, "queues": int(n), "ok": bool(decl.get("ok")),
                  "queues_per_s": decl.get("queues_per_s"), "rss_mb_before": sum(map(int, r0.split())) / 1024,
                  "rss_mb_after": sum(map(int, r1.split())) / 1024, "rss_mb_per_1000": grow / int(n) * 1000,
                  "idle_cpu_cores": d / 10}))' "$b" "$IDLE_QUORUM" "$r0" "$r1" "$t0" "$t1" "${line:-not json}" >>"$out"
    tail -1 "$out" >&2
    [ $rc = 0 ] || failed=1
  done
fi

if [ "${FAILOVER:-}" = 1 ]; then
  for b in $brokers; do
    if [ $b = warren ]; then
      us="$(wurl 0),$(wurl 1),$(wurl 2)"; hs="$(whttp 0),$(whttp 1),$(whttp 2)"
      ns="warren1@localhost,warren2@localhost,warren3@localhost"; ps=$(IFS=,; echo "${wpids[*]}")
    else
      us="$(rurl 0),$(rurl 1),$(rurl 2)"; hs="$(rhttp 0),$(rhttp 1),$(rhttp 2)"
      ns="oracle$rbase@localhost,oracle$((rbase + 1))@localhost,oracle$((rbase + 2))@localhost"; ps=$(IFS=,; echo "${rpids[*]}")
    fi
    echo "$(date +%T) failover $b" >&2
    set +e
    line=$(/tmp/warren-bench-failover -urls "$us" -apis "$hs" -names "$ns" -pids "$ps" -label "$b" 2>>"$logs/failover-$b.txt")
    rc=$?
    set -e
    echo "{\"scenario\": \"failover\", \"result\": ${line:-null}}" >>"$out"
    echo "  $line" >&2
    [ $rc = 0 ] || failed=1
  done
fi

elapsed=$(($(date +%s) - started))
stop_all
python3 - "$out" "$elapsed" "$rounds" "$duration" "$channels" <<'PY'
import json, statistics, sys
path, elapsed, rounds, duration, channels = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]
def fmt(x, d=0):
    return f"{x:,.{d}f}"
def med(vals, d=0):
    if not vals:
        return "–"
    m = statistics.median(vals)
    return f"{fmt(m, d)} ({fmt(min(vals), d)}–{fmt(max(vals), d)}, {len(vals)} runs)" if len(vals) > 1 else fmt(m, d)
print(f"Three nodes each, publish on node 1 to a queue on node 2, consume on node 3, {rounds} × {duration} per broker, alternating; "
      "msg/s = deliveries per second (confirm: confirmed publishes per second); CPU = broker CPU seconds per 100k "
      "deliveries summed over the three nodes; RSS = the three nodes' VmRSS summed after the run.\n")
print("| scenario | Warren msg/s | RabbitMQ msg/s | ratio | Warren CPU s/100k | RabbitMQ CPU s/100k | CPU ratio | Warren RSS MB | RabbitMQ RSS MB | other load, cores | failed runs |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
fo = [r["result"] for r in rows if r.get("scenario") == "failover" and r.get("result")]
idle = [r for r in rows if r.get("scenario") == "idle-quorum"]
rows = [r for r in rows if r.get("scenario") not in ("failover", "idle-quorum")]
for s in dict.fromkeys(r.get("scenario") for r in rows if r.get("scenario") != "declare"):
    cell = {}
    bad = []
    # amqpbench's host_other_cores: CPU used by neither node 1 nor the tool
    # (the other two nodes are in it too; this machine's other work is the rest).
    other = [r["broker"]["host_other_cores"] for r in rows if r.get("scenario") == s and r.get("ok") and "broker" in r]
    for b in ("warren", "rabbitmq"):
        rs = [r for r in rows if r.get("scenario") == s and r.get("label") == b]
        ok = [r for r in rs if r.get("ok")]
        bad += [f"{b} {len(rs) - len(ok)}"] if len(rs) != len(ok) else []
        rate = [r.get("confirm_rate") or r["consume_rate"] for r in ok]
        cpu = [r["cluster"]["cpu_s_per_100k"] for r in ok if "cpu_s_per_100k" in r["cluster"]]
        rss = [r["cluster"]["rss_kb"] / 1024 for r in ok]
        cell[b] = (rate, cpu, rss)
    (wr, wc, wm), (rr, rc, rm) = cell["warren"], cell["rabbitmq"]
    ratio = f"{statistics.median(wr) / statistics.median(rr):.2f}×" if wr and rr else "–"
    cratio = f"{statistics.median(wc) / statistics.median(rc):.3f}" if wc and rc else "–"
    print(f"| {s} | {med(wr)} | {med(rr)} | {ratio} | {med(wc, 2)} | {med(rc, 2)} | {cratio} | "
          f"{fmt(max(wm)) if wm else '–'} | {fmt(max(rm)) if rm else '–'} | {med(other, 2) if other else '–'} | {', '.join(bad) or 'none'} |")
dec = [r for r in rows if r.get("scenario") == "declare"]
if dec:
    print(f"\nDeclaring durable queues, each with one binding, through node 1 (one connection, {channels} channels); "
          "every node's management API then lists them all:\n")
    print("| broker | queues | queues/s (declare + bind) | seconds | cluster CPU s | RSS after MB | every node lists all | ok |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in dec:
        nodes = r.get("nodes") or []
        allok = "yes" if nodes and all(n["queues"] == r["queues"] and n["bindings"] == r["queues"] for n in nodes) else "no"
        print(f"| {r.get('label')} | {fmt(r.get('queues', 0))} | {fmt(r.get('queues_per_s', 0))} | {r.get('declare_s', 0):.1f} | "
              f"{r['cluster']['cpu_s']:.1f} | {fmt(r['cluster']['rss_kb'] / 1024)} | {allok} | {'yes' if r.get('ok') else 'no: ' + '; '.join(r.get('errors', []))[:200]} |")
if idle:
    print("\nIdle quorum queues (declared through node 1, groups of the three nodes), after 30 s idle:\n")
    print("| broker | queues | declared per s | RSS MB before → after (3 nodes) | MB per 1,000 queues | CPU while idle, cores (3 nodes) | ok |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in idle:
        print(f"| {r['label']} | {r['queues']:,} | {(r.get('queues_per_s') or 0):.0f} | {r['rss_mb_before']:.0f} → {r['rss_mb_after']:.0f} | {r['rss_mb_per_1000']:.0f} | {r['idle_cpu_cores']:.3f} | {'yes' if r['ok'] else 'no'} |")
if fo:
    print("\nQuorum queue failover: the leader's node killed (SIGKILL) under a publisher with confirms on another node:\n")
    print("| broker | leader killed | seconds to the next confirm | ok |")
    print("| --- | --- | --- | --- |")
    for r in fo:
        print(f"| {r.get('label')} | {r.get('leader', '–')} | {r.get('seconds_to_next_confirm', float('nan')):.2f} | {'yes' if r.get('ok') else 'no: ' + str(r.get('error'))} |")
print(f"\n{elapsed} s in all; raw results in {path}.")
PY
exit $failed
