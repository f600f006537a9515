package main

import (
	"encoding/json"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

// oracleListeners is the "node" and "listeners" of GET /api/overview from
// RabbitMQ 3.10.8 (AMQP on 127.0.0.1:5673, management on 15673), verbatim
// but for an amqp/ssl listener and a second node added for the test.
const oracleListeners = `{
  "node": "oracle5673@localhost",
  "listeners": [
    {"node": "oracle5673@localhost", "protocol": "amqp", "ip_address": "127.0.0.1", "port": 5673,
     "socket_opts": {"backlog": 128, "nodelay": true, "linger": [true, 0], "exit_on_close": false}},
    {"node": "oracle5673@localhost", "protocol": "clustering", "ip_address": "::", "port": 25673, "socket_opts": []},
    {"node": "oracle5673@localhost", "protocol": "http", "ip_address": "::", "port": 15673,
     "socket_opts": {"cowboy_opts": {"sendfile": false}, "ip": "127.0.0.1", "port": 15673}},
    {"node": "other@localhost", "protocol": "amqp", "ip_address": "10.0.0.9", "port": 5680},
    {"node": "oracle5673@localhost", "protocol": "amqp/ssl", "ip_address": "::", "port": 5674}
  ]
}`

func TestAMQPListener(t *testing.T) {
	var oracle overview
	require.NoError(t, json.Unmarshal([]byte(oracleListeners), &oracle))
	parse := func(s string) overview {
		var o overview
		require.NoError(t, json.Unmarshal([]byte(s), &o))
		return o
	}
	for _, tc := range []struct {
		name         string
		o            overview
		mgmt         string
		scheme, host string
	}{
		{"RabbitMQ's own listener, on its address", oracle, "http://127.0.0.1:15673", "amqp", "127.0.0.1:5673"},
		{"https prefers amqp/ssl; :: is the management host", oracle, "https://broker.example:15671", "amqps", "broker.example:5674"},
		{"wildcard IPv4", parse(`{"node":"n","listeners":[{"node":"n","protocol":"amqp","ip_address":"0.0.0.0","port":5700}]}`),
			"http://mq.local:15672", "amqp", "mq.local:5700"},
		{"wildcard IPv6 with an IPv6 management host", parse(`{"node":"n","listeners":[{"node":"n","protocol":"amqp","ip_address":"::","port":5700}]}`),
			"http://[::1]:15672", "amqp", "[::1]:5700"},
		{"a specific IPv6 address", parse(`{"node":"n","listeners":[{"node":"n","protocol":"amqp","ip_address":"fd00::5","port":5700}]}`),
			"http://mq.local:15672", "amqp", "[fd00::5]:5700"},
		{"another node's when the answering one has none", parse(`{"node":"n","listeners":[{"node":"m","protocol":"amqp","ip_address":"::","port":5701}]}`),
			"http://mq.local:15672", "amqp", "mq.local:5701"},
		{"only TLS, over http", parse(`{"node":"n","listeners":[{"node":"n","protocol":"amqp/ssl","ip_address":"::","port":5671}]}`),
			"http://mq.local:15672", "amqps", "mq.local:5671"},
		{"no AMQP listener", parse(`{"node":"n","listeners":[{"node":"n","protocol":"http","ip_address":"::","port":15672}]}`),
			"http://mq.local:15672", "amqp", ""},
		{"no listeners field (Warren before it had one)", parse(`{"node":"n"}`), "http://mq.local:15672", "amqp", ""},
	} {
		mu, err := url.Parse(tc.mgmt)
		require.NoError(t, err)
		scheme, host := tc.o.amqpListener(mu)
		require.Equal(t, tc.scheme+" "+tc.host, scheme+" "+host, tc.name)
	}
}
