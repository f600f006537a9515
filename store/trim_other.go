//go:build !linux

package store

// trimMappedFiles is a no-op where Warren does not know the mapping layout.
func trimMappedFiles(string) int64 { return 0 }
