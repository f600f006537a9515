//go:build linux

package stream

import (
	"os"
	"syscall"
)

// fdatasync syncs f's data (and the size, which a growing segment needs)
// without its other metadata.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
