// Package federation runs RabbitMQ's federation (rabbitmq_federation,
// https://www.rabbitmq.com/federation.html) on the downstream side:
// upstreams are runtime parameters of components "federation-upstream"
// and "federation-upstream-set" (def.go, with RabbitMQ 3.10's validation
// texts), and a policy with the key federation-upstream,
// federation-upstream-set ("all" or a set's name) or
// federation-upstream-pattern federates the exchanges and queues it
// applies to.
//
// The Manager (manager.go) watches policies, upstreams, exchanges and
// bindings (server.WatchTopology) and keeps one link per federated object
// and upstream. An exchange link (exchange.go) sets up on the upstream what
// RabbitMQ's does — a queue "federation: X -> <cluster name>", an
// x-federation-upstream exchange bound from the upstream exchange with X's
// bindings, kept in step — and republishes what arrives into X with
// x-received-from. A queue link (queue.go) consumes from the upstream queue
// while the local queue is empty and has consumers. Status lists the links
// for /api/federation-links.
//
// The upstream side (the x-federation-upstream exchange type that stops
// loops and counts hops) is the broker's (amqp/server/federation.go), so
// that RabbitMQ's own federation plugin can use Warren as its upstream.
//
// URIs, dialing (this broker through server.DialLocal for "amqp://"), the
// validation helpers and the life of a link (Options.Watch, Run, DialFirst
// and Collect: a link lives as a shovel's worker does) are package
// shovel's.
package federation
