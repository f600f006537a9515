package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFlagsAnywhere(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		// Already in order: unchanged.
		{"list queues", "list queues"},
		{"--format json list queues", "--format json list queues"},
		{"declare queue --durable --arg x-max-length=1000 orders", "declare queue --durable --arg x-max-length=1000 orders"},
		// Global flags after the command or its arguments go first.
		{"list queues --format json", "--format json list queues"},
		{"list --format=json queues", "--format=json list queues"},
		{"list queues --vhost shop -u bob", "--vhost shop -u bob list queues"},
		// Command flags after the arguments go after the command.
		{"list queues --all-vhosts --name ^orders", "list --all-vhosts --name ^orders queues"},
		{"get orders --count 5 --format json", "--format json get --count 5 orders"},
		{"get orders -n 5", "get -n 5 orders"},
		{"declare queue orders --durable --arg x-max-length=1000", "declare queue --durable --arg x-max-length=1000 orders"},
		{"declare queue orders --durable=false", "declare queue --durable=false orders"},
		// A bool flag takes no value: the next word stays an argument.
		{"declare queue --durable orders", "declare queue --durable orders"},
		// A flag's value is taken whatever it looks like.
		{"publish --routing-key -x hello", "publish --routing-key -x hello"},
		{"publish hello --routing-key -x", "publish --routing-key -x hello"},
		{"declare policy cap --pattern ^o --priority -1 --definition max-length=10", "declare policy --pattern ^o --priority -1 --definition max-length=10 cap"},
		// The deepest command that defines a flag owns it; before that
		// command's name, it is the application's.
		{"declare user alice --password s3cret", "declare user --password s3cret alice"},
		{"--password admin declare user --password s3cret alice", "--password admin declare user --password s3cret alice"},
		{"declare user alice -p admin --password s3cret", "-p admin declare user --password s3cret alice"},
		{"--vhost staging declare permission alice --configure ^app-", "--vhost staging declare permission --configure ^app- alice"},
		// "-" is an argument (stdin); "--" ends the flags and is kept before
		// arguments that start with '-'.
		{"publish - --routing-key orders", "publish --routing-key orders -"},
		{"publish --routing-key orders -- -x", "publish --routing-key orders -- -x"},
		{"publish -- --not-a-flag --routing-key k", "publish -- --not-a-flag --routing-key k"},
		{"get -- orders", "get orders"},
		// Help anywhere after a command is that command's help.
		{"list queues --help", "list --help"},
		{"declare queue orders -h", "declare queue -h"},
		{"declare -h queue orders --durable", "declare queue --durable -h"},
		{"-h list", "list -h"},
		{"--help", "--help"},
		{"help list", "help list"},
		// Unknown flags stay with the command where urfave/cli rejects them.
		{"list queues --bogus", "list --bogus queues"},
		{"perf --duration 2s -x 2 -y 2", "perf --duration 2s -x 2 -y 2"},
		{"consume orders --count 1 --amqp-url amqp://h:1/", "--amqp-url amqp://h:1/ consume --count 1 orders"},
		// An unknown command is not descended into.
		{"declare bogus --durable x", "declare --durable bogus x"},
	} {
		in := append([]string{"warrenctl"}, strings.Fields(tc.in)...)
		got, err := flagsAnywhere(newApp(), in)
		require.NoError(t, err, "warrenctl %s", tc.in)
		require.Equal(t, "warrenctl "+tc.want, strings.Join(got, " "), "warrenctl %s", tc.in)
	}
}

func TestFlagsAnywhereMissingValue(t *testing.T) {
	for _, in := range []string{"get orders --count", "list queues --format", "publish x -k"} {
		_, err := flagsAnywhere(newApp(), append([]string{"warrenctl"}, strings.Fields(in)...))
		var ue usageError
		require.ErrorAs(t, err, &ue, in)
		require.Contains(t, err.Error(), "flag needs an argument: "+in[strings.LastIndex(in, " ")+1:])
	}
}
