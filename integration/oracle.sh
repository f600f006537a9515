#!/usr/bin/env bash
# make test-oracle: the integration tests against RabbitMQ 3.10.8, started
# here (../shared/tools/rabbitmq-oracle.sh installs it when missing) and
# stopped on exit, failure included. The tests that state RabbitMQ's
# behaviour must pass there; the ones that need Warren itself skip with a
# "Warren-only:" reason. Prints how many ran, passed, failed and skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
oracle=${ORACLE:-../shared/tools/rabbitmq-oracle.sh}
port=${ORACLE_PORT:-5673}
mport=${ORACLE_MGMT_PORT:-15673}
GO=${GO:-go}

"$oracle" start "$port" "$mport" || exit 1
# The plugins whose exchange types and shovels Warren builds in and whose
# tests run there too (consistent-hash, random, shovel).
RABBITMQ_ENABLED_PLUGINS_FILE="/tmp/rabbitmq-oracle-${port}/enabled_plugins" rabbitmq-plugins -n "oracle${port}@localhost" enable rabbitmq_consistent_hash_exchange rabbitmq_random_exchange rabbitmq_shovel rabbitmq_shovel_management >/dev/null || exit 1
log=$(mktemp)
# The tool's stop waits for a pid file that a node it started through
# setpriv never writes: stop the node by the tool's node name, and fall back
# on the tool's stop, bounded, only when that failed.
stop() {
  rabbitmqctl -n "oracle${port}@localhost" stop >/dev/null 2>&1 || timeout 60 "$oracle" stop "$port"
  rm -f "$log"
}
trap stop EXIT

WARREN_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:$port/" WARREN_TEST_API_URL="http://127.0.0.1:$mport" \
  $GO test -count=1 -timeout 30m -v ./integration 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

# Top-level tests only (subtests are indented); a skip counts as Warren-only
# when its test logged the warrenOnly reason.
awk '
/^=== RUN   Test[^\/]*$/ { why = "" }
/^    [A-Za-z0-9_]+\.go:[0-9]+: Warren-only: / { why = $0; sub(/^.*Warren-only: /, "", why) }
/^--- PASS: Test/ { ran++; pass++ }
/^--- FAIL: Test/ { ran++; fail++; failed = failed "\n  " $3 }
/^--- SKIP: Test/ {
  if (why != "") { wo++; wol = wol sprintf("\n  %-52s %s", $3, why) } else { other++; otherl = otherl "\n  " $3 }
}
END {
  printf "\ntest-oracle against RabbitMQ: %d tests ran, %d passed, %d failed, %d skipped as Warren-only", ran, pass, fail, wo
  if (other) printf ", %d skipped otherwise", other
  printf "\n"
  if (fail) printf "failed:%s\n", failed
  if (other) printf "skipped, not as Warren-only:%s\n", otherl
  printf "Warren-only:%s\n", wol
}' "$log"
exit "$rc"
