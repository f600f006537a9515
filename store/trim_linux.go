//go:build linux

package store

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// trimMappedFiles drops this process's resident pages of Badger's
// memory-mapped table and value-log files. Badger writes and reads SSTables
// through mmap, so every table it writes stays resident and counts towards
// the broker's RSS although the kernel could drop it at any time; with a
// deep queue that is hundreds of megabytes. MADV_DONTNEED on a shared file
// mapping only unmaps the pages from this process: their contents stay in
// the page cache (dirty ones are still written back), and a later read
// faults them back in. It returns the bytes of mappings advised.
func trimMappedFiles(dir string) int64 {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0
	}
	defer f.Close()
	abs, err := filepath.Abs(dir)
	if err != nil {
		return 0
	}
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		path := fields[5]
		if !strings.HasPrefix(path, abs+string(filepath.Separator)) ||
			!(strings.HasSuffix(path, ".sst") || strings.HasSuffix(path, ".vlog")) {
			continue
		}
		if !strings.Contains(fields[1], "s") { // shared mappings only
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), syscall.MADV_DONTNEED); errno == 0 {
			total += int64(end - start)
		}
	}
	return total
}
