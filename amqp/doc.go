// Package amqp is Warren's AMQP 0-9-1 wire format: frames, the method structs
// generated from the specification's XML (spec_gen.go), field tables, content
// properties and the protocol error type.
//
// It has no goroutines, no state and no logging. Every length read from the
// wire is checked against what remains of the frame before anything is
// allocated, and every decoder is fuzzed (see fuzz_test.go).
package amqp

//go:generate go run ./internal/gen -o spec_gen.go
