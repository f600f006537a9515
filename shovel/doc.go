// Package shovel runs RabbitMQ's dynamic shovels: runtime parameters of
// component "shovel" (PUT /api/parameters/shovel/{vhost}/{name}) that move
// messages from a queue or exchange of one broker to a queue or exchange of
// another, both spoken to over AMQP 0-9-1, as RabbitMQ's rabbitmq_shovel
// plugin does (https://www.rabbitmq.com/shovel-dynamic.html).
//
// The package owns the definition format and its validation (def.go, with
// RabbitMQ 3.10's texts), the URIs (uri.go: "amqp://" without a host is
// this broker, reached through server.DialLocal; amqp:// and amqps:// with
// RabbitMQ's TLS query options are other brokers), one worker per shovel
// (worker.go) and the Manager that starts and stops workers as parameters
// change and reports their state for /api/shovels (manager.go). How a
// worker runs sessions one after another and how the manager follows the
// node that runs them (lifecycle.go) is package federation's too.
//
// Both ends use github.com/rabbitmq/amqp091-go, the client RabbitMQ's own
// Go users run: a shovel is an AMQP client of both brokers, and a
// well-kept client is better than a second one written here.
//
// Acknowledgement modes are RabbitMQ's: on-confirm (the default) acks a
// message at the source only after the destination confirmed it, so that
// no message is lost when either side dies (at least once); on-publish acks
// once it is sent; no-ack consumes without acks (at most once).
package shovel
