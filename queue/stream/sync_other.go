//go:build !linux

package stream

import "os"

func fdatasync(f *os.File) error { return f.Sync() }
