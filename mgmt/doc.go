// Package mgmt is Warren's HTTP API, shaped like RabbitMQ's management API
// (/api/...). For now it serves the health endpoints; it talks to the broker
// through the small Broker interface it declares.
package mgmt
