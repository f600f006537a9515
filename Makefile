# Warren: make run starts a broker, make test runs every test.
GO        ?= go
BIN       := bin
DATA_DIR  ?= ./data
FUZZTIME  ?= 10s
BENCHTIME ?= 1s

.PHONY: shovel-test bench-shovel run-cluster stop-cluster cluster-faults test-oracle conn-test soak fuzz-long bench-compare bench-profile all build run test test-short lint generate check-generated fuzz bench conformance clean kill-test client-deps

all: build

build:
	$(GO) build -o $(BIN)/warren ./cmd/warren
	$(GO) build -o $(BIN)/warrenctl ./cmd/warrenctl

# Starts a broker on :5672 (AMQP) and :15672 (HTTP) with the default guest
# user, which may connect from loopback only, like RabbitMQ.
run: build
	./$(BIN)/warren --data-dir $(DATA_DIR)

# Three nodes on loopback forming one cluster, in the background: node N
# (1..3) is warrenN@localhost with AMQP on 567(1+N), HTTP on 1567(1+N),
# Prometheus on 1569(1+N) and the cluster listener on 2567(1+N); data and
# log (warren.log) in $(DATA_DIR)/nodeN, pid in $(DATA_DIR)/nodeN/warren.pid.
# make stop-cluster stops them (SIGTERM).
CLUSTER_SEEDS := 127.0.0.1:25672,127.0.0.1:25673,127.0.0.1:25674
run-cluster: build
	@for n in 1 2 3; do \
	  d=$(DATA_DIR)/node$$n; mkdir -p $$d; \
	  if [ -f $$d/warren.pid ] && kill -0 $$(cat $$d/warren.pid) 2>/dev/null; then echo "node $$n already runs (pid $$(cat $$d/warren.pid))"; continue; fi; \
	  p=$$((n+1)); \
	  nohup ./$(BIN)/warren --node-name warren$$n@localhost --data-dir $$d \
	    --amqp-listen 127.0.0.1:567$$p --http-listen 127.0.0.1:1567$$p --prometheus-listen 127.0.0.1:1569$$p \
	    --cluster-listen 127.0.0.1:2567$$p --cluster-seeds $(CLUSTER_SEEDS) >>$$d/warren.log 2>&1 & \
	  echo $$! >$$d/warren.pid; \
	  echo "warren$$n@localhost: amqp://127.0.0.1:567$$p  http://127.0.0.1:1567$$p  log $$d/warren.log"; \
	done
	@for i in $$(seq 100); do ./$(BIN)/warrenctl --url http://127.0.0.1:15672 cluster status 2>/dev/null | grep -q ' true  *true  *true' && break; sleep 0.1; done
	@./$(BIN)/warrenctl --url http://127.0.0.1:15672 cluster status

stop-cluster:
	@for n in 1 2 3; do \
	  f=$(DATA_DIR)/node$$n/warren.pid; \
	  if [ -f $$f ]; then kill $$(cat $$f) 2>/dev/null && echo "stopped node $$n"; rm -f $$f; fi; \
	done

# Every test, with the race detector, integration tests included (the real
# client libraries among them: see client-deps).
test: lint check-generated client-deps
	$(GO) test -race -count=1 -timeout 20m ./...

# The integration tests against RabbitMQ 3.10.8 instead of an in-process
# Warren (integration/oracle.sh starts it with ../shared/tools/rabbitmq-oracle.sh
# on ORACLE_PORT, default 5673, and its management API on ORACLE_MGMT_PORT,
# default 15673, and stops it afterwards): what they expect of the broker is
# what RabbitMQ does. Prints how many ran, passed and skipped as Warren-only.
# Not part of make test.
test-oracle:
	GO=$(GO) ./integration/oracle.sh

# The clients the integration tests drive: amqplib and playwright-core from
# npm (pinned in integration/clients/node and integration/web lock files);
# pika, Celery, amqp-tools, Chromium and rabbitmq-server (for its
# rabbitmqadmin, /usr/bin/rabbitmqadmin) from Debian (installed with apt-get
# when missing, which needs root).
DEBIAN_CLIENTS := python3-pika python3-celery amqp-tools chromium docker-compose file rabbitmq-server
client-deps:
	@if ! command -v amqp-publish >/dev/null || ! command -v chromium >/dev/null || ! command -v docker-compose >/dev/null || ! command -v file >/dev/null || ! command -v rabbitmqadmin >/dev/null || ! /usr/bin/python3 -c 'import pika, celery' 2>/dev/null; then \
	  echo "installing $(DEBIAN_CLIENTS)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DEBIAN_CLIENTS); fi
	@if [ ! -d integration/clients/node/node_modules/amqplib ]; then \
	  cd integration/clients/node && npm ci --no-audit --no-fund; fi
	@if [ ! -d integration/web/node_modules/playwright-core ]; then \
	  cd integration/web && npm ci --no-audit --no-fund; fi

test-short:
	$(GO) test -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

generate:
	$(GO) generate ./...

# Regenerates into a temp file and fails when the committed code differs.
check-generated:
	@tmp=$$(mktemp -d); cd amqp && $(GO) run ./internal/gen -o $$tmp/spec_gen.go && \
	  diff -q $$tmp/spec_gen.go spec_gen.go >/dev/null || { echo "amqp/spec_gen.go is stale: run make generate"; rm -rf $$tmp; exit 1; }; \
	  rm -rf $$tmp

# A short pass of every fuzz target.
FUZZ_PKGS := amqp exchange cluster/multiraft cluster/transport cluster/wal
fuzz:
	@for pkg in $(FUZZ_PKGS); do \
	  for t in $$($(GO) test -list 'Fuzz.*' ./$$pkg | grep ^Fuzz); do \
	    echo "fuzz $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./$$pkg || exit 1; \
	  done; \
	done

# Warren against RabbitMQ 3.10.8 on this machine; rewrites docs/benchmarks.md.
# Every fuzz target for FUZZLONG (default 10m) each; the inputs the fuzzer
# found interesting are copied into the package's testdata/fuzz so that
# `go test` replays them from then on (commit them).
FUZZLONG ?= 10m
fuzz-long:
	@cache=$$($(GO) env GOCACHE)/fuzz/github.com/warren-mq/warren; \
	for pkg in $(FUZZ_PKGS); do \
	  for t in $$($(GO) test -list 'Fuzz.*' ./$$pkg | grep ^Fuzz); do \
	    echo "fuzz $$pkg $$t for $(FUZZLONG)"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZLONG) ./$$pkg || exit 1; \
	    if [ -d $$cache/$$pkg/$$t ]; then mkdir -p $$pkg/testdata/fuzz/$$t && cp -n $$cache/$$pkg/$$t/* $$pkg/testdata/fuzz/$$t/ 2>/dev/null; fi; \
	    echo "corpus $$pkg/testdata/fuzz/$$t: $$(ls $$pkg/testdata/fuzz/$$t 2>/dev/null | wc -l) inputs"; \
	  done; \
	done

# CONNS connections (default 10,000) to bin/warren, each with a channel, an
# exclusive queue and a consumer; prints the broker's RSS per connection.
CONNS ?= 10000
conn-test:
	WARREN_CONNS=$(CONNS) $(GO) test -count=1 -timeout 20m -run TestManyConnections -v ./integration

# The SIGKILL soak: publish/consume/ack/nack/reject/TTL/dead-letter with a
# kill and restart every SOAK_KILL_EVERY, for SOAK (default 30m).
SOAK ?= 30m
SOAK_KILL_EVERY ?= 20s
soak:
	WARREN_SOAK=$(SOAK) WARREN_SOAK_KILL_EVERY=$(SOAK_KILL_EVERY) $(GO) test -count=1 -timeout 2h -run TestSoakWithKills -v ./integration

bench-compare:
	./integration/bench/compare.sh

# Three Warren nodes against the three-node RabbitMQ 3.10.8 cluster of
# ../shared/tools/rabbitmq-cluster.sh: amqpbench transient and confirm
# (publish on node 1, consume on node 2) and 10,000 durable queue declares
# with bindings; prints a markdown table (about 20 minutes, most of it the
# declares).
.PHONY: bench-cluster
bench-cluster:
	./integration/bench/cluster.sh

# A CPU profile of Warren under each amqpbench scenario (top functions printed,
# profiles kept in /tmp/warren-profiles).
bench-profile:
	./integration/bench/profile.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./amqp/... ./exchange/... ./queue/...
	$(GO) test -run '^$$' -bench PublishDeliver -benchmem -benchtime 1000000x ./integration

# amqp091-go's own integration suite against a fresh Warren on 127.0.0.1:5672.
conformance: build
	./integration/conformance.sh

clean:
	rm -rf $(BIN)

# The cluster fault tests (partition through a fault-injecting proxy,
# SIGSTOP of the leader, kill -9 of the leader under a stream of declares),
# each for ROUNDS rounds (default 10; make test runs one).
ROUNDS ?= 10
cluster-faults:
	WARREN_CLUSTER_FAULT_ROUNDS=$(ROUNDS) $(GO) test -race -count=1 -timeout 60m -run TestClusterFault -v ./integration

# The chaos test of quorum queues and streams (integration/chaos_test.go),
# Jepsen-style: a three-node cluster under confirmed publishing and acked
# consuming (stream consumers read from first and resume after the last
# offset they acked), with
# every kind of fault (kill -9 of the leader, of a follower, of two nodes in
# turn or at once, of all three; SIGSTOP of the leader; the leader, a
# follower or one link cut off) for CHAOS_ROUNDS rounds each on a cluster of
# its own, then as many random faults; each run checks that no confirmed
# message was lost and nothing unpublished delivered, and logs one "CHAOS
# key=value ..." line. Also the short run of make test and the minimal
# reproductions of what it found. CHAOS_TYPES (quorum, stream or both,
# comma separated) picks the queue types, CHAOS_SEED and CHAOS_FAULTS (comma
# separated kinds, or mixed) the seed and the runs; CHAOS_DURATION bounds
# each type's runs (faults stop once a run's share is spent).
CHAOS_ROUNDS ?= 10
CHAOS_DURATION ?= 90m
CHAOS_TYPES ?= quorum,stream
.PHONY: chaos
chaos:
	WARREN_CHAOS_ROUNDS=$(CHAOS_ROUNDS) WARREN_CHAOS_DURATION=$(CHAOS_DURATION) WARREN_CHAOS_SEED=$(CHAOS_SEED) WARREN_CHAOS_FAULTS=$(CHAOS_FAULTS) \
	  WARREN_CHAOS_TYPES=$(CHAOS_TYPES) $(GO) test -count=1 -timeout 300m -run 'TestChaos' -v ./integration

# The shovel tests against RabbitMQ 3.10.8 at full size: SHOVEL_MESSAGES
# (default 100,000) persistent messages RabbitMQ → Warren → RabbitMQ through
# two shovels, each broker SIGKILLed and restarted twice during the transfer,
# every message checked to arrive at least once; and RabbitMQ's own shovel
# into Warren. make test runs them with 10,000 (they skip without
# rabbitmq-server or ../shared/tools/rabbitmq-oracle.sh).
SHOVEL_MESSAGES ?= 100000
shovel-test:
	WARREN_SHOVEL_MESSAGES=$(SHOVEL_MESSAGES) $(GO) test -count=1 -timeout 30m -run 'TestShovel|TestRabbitMQShovel|TestWarrenctlShovel' -v ./integration

# Shovel throughput: RabbitMQ → Warren and Warren → Warren (Warren's
# shovel) against RabbitMQ → RabbitMQ (RabbitMQ's shovel between two
# oracle nodes); prints a table for docs/benchmarks.md.
bench-shovel: build
	./integration/bench/shovel/run.sh

# The SIGKILL durability test, repeated: N kill/restart rounds (default 50).
N ?= 50
kill-test:
	WARREN_KILL_ROUNDS=$(N) $(GO) test -count=1 -timeout 30m -run TestSIGKILLLosesNoConfirmedMessage -v ./integration
