#!/usr/bin/env bash
# Debian's amqp-tools (rabbitmq-c) against Warren: declare, publish, get,
# consume. Run by integration/clients_test.go with AMQP_URL set.
set -euo pipefail
: "${AMQP_URL:?AMQP_URL is not set}"
fail() { echo "FAIL: $*" >&2; exit 1; }

# Start clean (a durable queue outlives an interrupted run).
amqp-delete-queue -u "$AMQP_URL" -q c_tools_queue >/dev/null 2>&1 || true
q=$(amqp-declare-queue -u "$AMQP_URL" -q c_tools_queue -d)
[ "$q" = c_tools_queue ] || fail "declare printed '$q'"
gen=$(amqp-declare-queue -u "$AMQP_URL" -q "")
case "$gen" in amq.gen-*) ;; *) fail "server-named queue '$gen'";; esac

for i in 1 2 3 4; do
  amqp-publish -u "$AMQP_URL" -r c_tools_queue -p -C text/plain -H "x-n: $i" -b "message $i"
done
echo -n "from stdin" | amqp-publish -u "$AMQP_URL" -e amq.direct -r c_tools_queue_route || fail "publish from stdin"

got=$(amqp-get -u "$AMQP_URL" -q c_tools_queue)
[ "$got" = "message 1" ] || fail "amqp-get printed '$got'"

# amqp-consume runs the command once per message with the body on stdin.
out=$(timeout 10 amqp-consume -u "$AMQP_URL" -q c_tools_queue -c 3 -p 1 -- sh -c 'cat; echo')
expected=$'message 2\nmessage 3\nmessage 4'
[ "$out" = "$expected" ] || fail "amqp-consume printed '$out'"

# Empty now: amqp-get exits non-zero on an empty queue.
if amqp-get -u "$AMQP_URL" -q c_tools_queue >/dev/null 2>&1; then fail "queue not empty"; fi

# An exclusive server-named queue bound to amq.fanout (amqp-consume needs -r
# with -e, and binds nothing for -r "": fanout ignores the key anyway).
( timeout 10 amqp-consume -u "$AMQP_URL" -e amq.fanout -r any -x -c 2 cat > "${TMPDIR:-/tmp}/c_tools_fanout.$$" ) &
consumer=$!
for _ in $(seq 1 50); do
  sleep 0.1
  amqp-publish -u "$AMQP_URL" -e amq.fanout -b "fan" || fail "publish to amq.fanout"
  if ! kill -0 $consumer 2>/dev/null; then break; fi
done
wait $consumer || fail "fanout consumer did not get 2 messages"
[ "$(cat "${TMPDIR:-/tmp}/c_tools_fanout.$$")" = "fanfan" ] || fail "fanout consumer printed '$(cat "${TMPDIR:-/tmp}/c_tools_fanout.$$")'"
rm -f "${TMPDIR:-/tmp}/c_tools_fanout.$$"

amqp-delete-queue -u "$AMQP_URL" -q c_tools_queue >/dev/null
if amqp-get -u "$AMQP_URL" -q c_tools_queue >/dev/null 2>&1; then fail "queue survived delete"; fi
# Over TLS: password login, verifying the server against the test CA.
# rabbitmq-c 0.11 checks the host name against DNS names only (not IP
# SANs), so dial "localhost", which the test certificate names.
: "${AMQPS_URL:?AMQPS_URL is not set}"
AMQPS_URL=${AMQPS_URL/127.0.0.1/localhost}
tq=$(amqp-declare-queue -u "$AMQPS_URL" --ssl --cacert "$TLS_CA" -q c_tools_tls)
[ "$tq" = c_tools_tls ] || fail "TLS declare printed '$tq'"
amqp-publish -u "$AMQPS_URL" --ssl --cacert "$TLS_CA" -r c_tools_tls -b "over tls"
got=$(amqp-get -u "$AMQPS_URL" --ssl --cacert "$TLS_CA" -q c_tools_tls)
[ "$got" = "over tls" ] || fail "TLS amqp-get printed '$got'"
amqp-delete-queue -u "$AMQPS_URL" --ssl --cacert "$TLS_CA" -q c_tools_tls >/dev/null
echo "amqp-tools: ok"
