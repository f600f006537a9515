package amqp

import "math"

func bitsOf64(f float64) uint64 { return math.Float64bits(f) }
func bitsOf32(f float32) uint32 { return math.Float32bits(f) }
