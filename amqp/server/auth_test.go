package server

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGuestIsLoopbackOnly(t *testing.T) {
	s := New(Config{})
	s.users["alice"] = NewUser("alice", "pw")
	local := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1}
	remote := &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}
	_, ok := s.authenticate("guest", "guest", local)
	require.True(t, ok)
	_, ok = s.authenticate("guest", "guest", remote)
	require.False(t, ok, "guest from a non-loopback address")
	_, ok = s.authenticate("alice", "pw", remote)
	require.True(t, ok, "other users may connect from anywhere")
	_, ok = s.authenticate("guest", "nope", local)
	require.False(t, ok)
}

func TestPasswordHashIsRabbitMQs(t *testing.T) {
	// Hashes read from RabbitMQ 3.10.8's /api/users after
	// `rabbitmqctl add_user alice s3cret`, and its default guest user.
	for pw, hash := range map[string]string{
		"s3cret": "LtE8L/eOUz2F2+XRKjO4R1nlbF109rMItj9A+iWRaHnfajpv",
		"guest":  "+6bguYtJaSLwD8m4HfBylIHTTmKSdo7uIWaLl9O6lxh5Bg/K",
	} {
		u := &User{PasswordHash: hash}
		require.True(t, u.CheckPassword(pw), pw)
		require.False(t, u.CheckPassword(pw+"x"), pw)
	}
	require.Len(t, HashPassword("x"), 48, "base64 of 4 + 32 bytes")
	require.NotEqual(t, HashPassword("x"), HashPassword("x"), "salted")
}

func TestParseSASL(t *testing.T) {
	u, p, ok := parseSASL("PLAIN", "\x00bob\x00secret")
	require.True(t, ok)
	require.Equal(t, [2]string{"bob", "secret"}, [2]string{u, p})
	_, _, ok = parseSASL("PLAIN", "nonul")
	require.False(t, ok)
	_, _, ok = parseSASL("EXTERNAL", "")
	require.False(t, ok)
	// AMQPLAIN: a table body without its length prefix.
	resp := "\x05LOGINS\x00\x00\x00\x03bob\x08PASSWORDS\x00\x00\x00\x06secret"
	u, p, ok = parseSASL("AMQPLAIN", resp)
	require.True(t, ok)
	require.Equal(t, [2]string{"bob", "secret"}, [2]string{u, p})
}
